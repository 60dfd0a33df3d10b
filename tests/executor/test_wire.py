"""Errors crossing from a worker as data: captured, encoded, decoded, rebuilt."""

from __future__ import annotations

import pytest

from idlegrid import BlobNotFound, ContractReverted, InvalidInput, UsageError
from idlegrid.executor import JobFailed
from idlegrid.executor._wire import MAX_MESSAGE, RemoteError

TASK = "pkg.mod:fn"


def cross(exc: BaseException) -> Exception:
    """``exc`` as the executor's caller sees it, after a trip through the wire format."""
    try:
        raise exc
    except BaseException as raised:
        report = RemoteError.capture(raised)
    return RemoteError.decode(report.encode()).to_exception(TASK)


def test_foreign_exception_becomes_job_failed() -> None:
    error = cross(ZeroDivisionError("division by zero"))
    assert isinstance(error, JobFailed)
    assert (error.exc_type, error.message, error.task) == (
        "ZeroDivisionError",
        "division by zero",
        TASK,
    )
    assert "ZeroDivisionError" in error.traceback


def test_foreign_class_is_named_with_its_module() -> None:
    error = cross(pytest.UsageError("x"))
    assert isinstance(error, JobFailed)
    assert error.exc_type.endswith("UsageError") and "." in error.exc_type


@pytest.mark.parametrize(
    "original",
    [
        InvalidInput("rows must be > 0"),
        UsageError("plain branch"),
        BlobNotFound("ab" * 32),
        ContractReverted("market: stale voucher", function="JobMarket.redeem"),
    ],
)
def test_idlegrid_error_keeps_its_class_text_and_attributes(original: Exception) -> None:
    error = cross(original)
    assert type(error) is type(original)
    assert str(error) == str(original)
    public = {k: v for k, v in vars(original).items() if not k.startswith("_")}
    assert {k: getattr(error, k) for k in public} == public
    assert any(TASK in note for note in getattr(error, "__notes__", []))


def test_long_message_is_cut() -> None:
    error = cross(ValueError("x" * 100_000))
    assert isinstance(error, JobFailed)
    assert len(error.message) == MAX_MESSAGE


def test_unprintable_exception_still_crosses() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    error = cross(Unprintable())
    assert isinstance(error, JobFailed)
    assert "unprintable" in error.message


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"classes": ["x"]}'])
def test_unreadable_report_becomes_job_failed(body: bytes) -> None:
    error = RemoteError.decode(body).to_exception(TASK)
    assert isinstance(error, JobFailed)
    assert error.exc_type == "RuntimeError"


def test_memory_error_is_recognised() -> None:
    assert RemoteError.capture(MemoryError()).out_of_memory
    assert not RemoteError.capture(ValueError()).out_of_memory
