"""Run allowed tasks by name in worker processes, with limits: the executor any node role uses.

Worker processes import this package when they start, so it imports only the standard
library and idlegrid's light modules (no web3, no HTTP server).
"""

from .._exceptions import (
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
from ._worker import output_limit

__all__ = [
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
    "output_limit",
]
