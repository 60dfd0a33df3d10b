"""Errors of the executor that the central tree does not have yet.

They belong in ``idlegrid/_exceptions.py`` and live here until they are moved::

    IdlegridError
    ├── UnavailableError
    │   ├── ExecutorBusy            every worker is busy and the queue is full
    │   ├── ExecutorClosed          the executor is closed; the job did not run or was dropped
    │   └── ClientBusy              the client has as many jobs running or queued as it may
    └── JobError                    a job could not finish on this node
        ├── JobFailed               the task raised a foreign exception; ``exc_type`` names it
        ├── JobCrashed              the worker died while running the job, and was replaced
        ├── JobTimeout              the job ran past its wall-time limit; its worker was killed
        └── OutputTooLarge          the job's output is larger than the worker may return

An idlegrid error raised by a task is not wrapped: it comes back as its own class.
Each class can be pickled with its attributes, so a job error can cross processes.
"""

from __future__ import annotations

from functools import partial

from .._exceptions import IdlegridError, UnavailableError

__all__ = [
    "ClientBusy",
    "ExecutorBusy",
    "ExecutorClosed",
    "JobCrashed",
    "JobError",
    "JobFailed",
    "JobTimeout",
    "OutputTooLarge",
]


class ExecutorBusy(UnavailableError):
    """Every worker is busy and the queue is full; retry later or on another node."""


class ExecutorClosed(UnavailableError):
    """The executor is closed or closing; the job was not run, or its result was dropped."""


class ClientBusy(UnavailableError):
    """The client already has as many jobs running or queued on this node as it may (429)."""


class JobError(IdlegridError):
    """A job could not finish on this node: it raised, crashed or ran too long."""

    def __init__(self, message: str, *, task: str = "") -> None:
        self.task = task
        super().__init__(message)


class JobFailed(JobError):
    """The task raised an exception that is not an idlegrid error; ``exc_type`` names its class."""

    def __init__(self, exc_type: str, message: str, *, task: str = "", traceback: str = "") -> None:
        self.exc_type = exc_type
        self.message = message
        #: the worker's formatted traceback, for the node's log (cut to its last few KiB)
        self.traceback = traceback
        super().__init__(f"{task or 'task'} raised {exc_type}: {message}", task=task)

    def __reduce__(self) -> tuple[object, ...]:
        # args hold the formatted text: rebuild from the parts, then restore other attributes
        rebuild = partial(type(self), task=self.task, traceback=self.traceback)
        return (rebuild, (self.exc_type, self.message), self.__dict__)


class JobCrashed(JobError):
    """The worker died while running the job (signal, exit, out of memory); it was replaced."""

    def __init__(self, message: str, *, task: str = "", exitcode: int | None = None) -> None:
        #: the worker's exit status: negative for a signal, None if unknown (out of memory)
        self.exitcode = exitcode
        super().__init__(message, task=task)


class JobTimeout(JobError):
    """The job ran past its wall-time limit; its worker was killed and replaced."""

    def __init__(self, message: str, *, task: str = "", seconds: float = 0.0) -> None:
        #: the wall-time limit the job ran past
        self.seconds = seconds
        super().__init__(message, task=task)


class OutputTooLarge(JobError):
    """The job's output is larger than a worker may return; it was dropped in the worker."""

    def __init__(self, message: str, *, task: str = "", size: int = 0, limit: int = 0) -> None:
        #: bytes the output has (or would have), and the most a worker returns
        self.size = size
        self.limit = limit
        super().__init__(message, task=task)
