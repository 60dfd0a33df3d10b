"""The executor's errors: picklable with their attributes, under the branches callers catch."""

from __future__ import annotations

import pickle

import pytest

from idlegrid import ClientBusy, IdlegridError, PaymentRequired, UnavailableError
from idlegrid.executor import (
    ExecutorBusy,
    ExecutorClosed,
    JobCrashed,
    JobError,
    JobFailed,
    JobTimeout,
    OutputTooLarge,
)

TASK = "pkg.mod:fn"


@pytest.mark.parametrize(
    "error",
    [
        JobFailed("ValueError", "bad", task=TASK, traceback="Traceback ..."),
        JobCrashed("worker exited", task=TASK, exitcode=-9),
        JobTimeout("too slow", task=TASK, seconds=1.5),
        ExecutorBusy("busy"),
        ExecutorClosed("closed"),
        OutputTooLarge("too big", task=TASK, size=10, limit=4),
        ClientBusy("wait"),
        PaymentRequired("top up", chain=True),
    ],
)
def test_errors_survive_pickling(error: IdlegridError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_job_failed_says_what_raised() -> None:
    error = JobFailed("ValueError", "bad", task=TASK)
    assert (error.exc_type, error.message, error.task) == ("ValueError", "bad", TASK)
    assert str(error) == f"{TASK} raised ValueError: bad"


def test_job_errors_and_busy_errors_sit_where_callers_catch_them() -> None:
    for cls in (JobFailed, JobCrashed, JobTimeout):
        assert issubclass(cls, JobError)
    for busy_cls in (ExecutorBusy, ExecutorClosed):
        assert issubclass(busy_cls, UnavailableError)
