"""The provider node: runs allowed jobs for paying clients.

Worker processes import this package when they start, so it imports only light
modules (no web3, no HTTP server): a heavy import here is paid by every worker start.
"""

from ._errors import (
    ClientBusy,
    ExecutorBusy,
    ExecutorClosed,
    JobCrashed,
    JobError,
    JobFailed,
    JobTimeout,
    OutputTooLarge,
)
from ._executor import (
    Executor,
    ExecutorLimits,
    ExecutorStats,
    Outcome,
    ProcessExecutor,
    check_task_names,
)

__all__ = [
    "ClientBusy",
    "Executor",
    "ExecutorBusy",
    "ExecutorClosed",
    "ExecutorLimits",
    "ExecutorStats",
    "JobCrashed",
    "JobError",
    "JobFailed",
    "JobTimeout",
    "Outcome",
    "OutputTooLarge",
    "ProcessExecutor",
    "check_task_names",
]
