"""The executor's errors: in the tree, documented, picklable; the package's namespace."""

from __future__ import annotations

import inspect
import pickle

import pytest

import idlegrid.provider
from idlegrid import IdlegridError, UnavailableError
from idlegrid.provider import (
    ExecutorBusy,
    ExecutorClosed,
    JobCrashed,
    JobError,
    JobFailed,
    JobTimeout,
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


def test_error_classes_sit_in_the_tree_and_are_documented() -> None:
    tree = idlegrid.provider._errors.__doc__ or ""
    for name in idlegrid.provider._errors.__all__:
        cls = getattr(idlegrid.provider, name)
        assert issubclass(cls, IdlegridError)
        assert cls.__doc__, name
        assert name in tree, name
    for cls in (JobFailed, JobCrashed, JobTimeout):
        assert issubclass(cls, JobError)
    for cls in (ExecutorBusy, ExecutorClosed):
        assert issubclass(cls, UnavailableError)


def test_public_namespace_matches_all() -> None:
    module = idlegrid.provider
    public = {
        n
        for n, obj in vars(module).items()
        if not n.startswith("_") and not inspect.ismodule(obj) and n != "annotations"
    }
    assert public == set(module.__all__)
