"""The node's logs: JSON lines or text, and every record of a job names it and its channel,
in the job's tasks and threads alike; a record outside a job names none."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from idlegrid import ConfigError
from idlegrid.provider import LOG_FORMAT_ENV, configure_logging, log_format
from idlegrid.provider._logs import (
    JobContextFilter,
    JsonLineFormatter,
    TextFormatter,
    current_job,
    job_context,
)

log = logging.getLogger("idlegrid.provider.test")
JOB_A = "0x" + "aa" * 32
JOB_B = "0x" + "bb" * 32
CHANNEL_A = bytes([1]) * 32
CHANNEL_B = bytes([2]) * 32


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The JSON lines of every record of ``idlegrid.*`` emitted during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter())
    handler.addFilter(JobContextFilter())
    logger = logging.getLogger("idlegrid")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_holds_time_level_logger_message_and_the_extra_fields(
    json_lines: io.StringIO,
) -> None:
    # Execute
    log.info("served %d rows", 3, extra={"kind": "onnx", "units": 10**20})

    # Assert
    [record] = _records(json_lines)
    assert list(record)[:4] == ["ts", "level", "logger", "message"]
    assert record["level"] == "INFO" and record["logger"] == "idlegrid.provider.test"
    assert record["message"] == "served 3 rows"
    assert record["kind"] == "onnx" and record["units"] == 10**20  # exact, a JSON number
    ts = datetime.fromisoformat(str(record["ts"]))
    assert ts.utcoffset() == timedelta(0)
    assert "job_id" not in record and "channel" not in record  # outside a job: no such keys


def test_records_inside_a_job_name_it_and_its_channel_and_only_there(
    json_lines: io.StringIO,
) -> None:
    # Execute
    log.info("before")
    with job_context("0x" + "AA" * 32, CHANNEL_A) as job:
        log.warning("inside")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("after")

    # Assert
    before, inside, failed, after = _records(json_lines)
    assert job.job_id == JOB_A  # lower-case hex
    for record in (inside, failed):
        assert record["job_id"] == JOB_A and record["channel"] == "0x" + CHANNEL_A.hex()
        assert list(record)[4:6] == ["job_id", "channel"]
    assert "ValueError: boom" in str(failed["exc_info"])
    assert "job_id" not in before and "job_id" not in after
    assert current_job() is None


def test_a_job_s_tasks_and_threads_carry_its_context_and_two_jobs_do_not_mix(
    json_lines: io.StringIO,
) -> None:
    """Two jobs interleaved on one event loop, each logging from its task, from a child
    task, from ``asyncio.to_thread`` and from a thread pool it hands its context to."""
    pool = ThreadPoolExecutor(max_workers=2)

    async def handle(job_id: str, channel: bytes, turn: asyncio.Event, mine: asyncio.Event) -> None:
        with job_context(job_id, channel):
            log.info("task")
            await turn.wait()  # the other job logs meanwhile
            await asyncio.create_task(_child())
            await asyncio.to_thread(log.info, "to_thread")
            ctx = contextvars.copy_context()
            await asyncio.wrap_future(pool.submit(ctx.run, log.info, "pool"))
            mine.set()

    async def _child() -> None:
        log.info("child task")

    async def body() -> None:
        a_turn, b_turn, a_done, b_done = (asyncio.Event() for _ in range(4))
        a = asyncio.create_task(handle(JOB_A, CHANNEL_A, a_turn, a_done))
        b = asyncio.create_task(handle(JOB_B, CHANNEL_B, b_turn, b_done))
        await asyncio.sleep(0)
        a_turn.set()  # a goes on while b waits, then b while a is done
        await a_done.wait()
        b_turn.set()
        await asyncio.gather(a, b)
        log.info("outside")

    try:
        asyncio.run(body())
    finally:
        pool.shutdown()

    records = _records(json_lines)
    channels = {JOB_A: "0x" + CHANNEL_A.hex(), JOB_B: "0x" + CHANNEL_B.hex()}
    by_job: dict[str, list[str]] = {JOB_A: [], JOB_B: []}
    for record in records[:-1]:
        job_id = str(record["job_id"])
        assert record["channel"] == channels[job_id]
        by_job[job_id].append(str(record["message"]))
    expected = ["task", "child task", "to_thread", "pool"]
    assert by_job == {JOB_A: expected, JOB_B: expected}
    assert records[-1]["message"] == "outside" and "job_id" not in records[-1]


def test_a_thread_started_without_the_context_names_no_job(json_lines: io.StringIO) -> None:
    """The reason the executor hands a job's context on: a plain thread starts empty."""
    with job_context(JOB_A, CHANNEL_A):
        thread = threading.Thread(target=log.info, args=("plain thread",))
        thread.start()
        thread.join()

    [record] = _records(json_lines)
    assert "job_id" not in record


def test_text_lines_name_the_job_and_channel_short() -> None:
    # Prepare
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    handler.addFilter(JobContextFilter())
    record = logging.LogRecord("idlegrid.provider", logging.INFO, __file__, 1, "done", (), None)

    # Execute
    handler.handle(record)
    with job_context(JOB_A, CHANNEL_A):
        handler.handle(logging.makeLogRecord(record.__dict__ | {"msg": "in a job"}))

    # Assert
    outside, inside = stream.getvalue().splitlines()
    assert outside.endswith("+00:00 INFO idlegrid.provider: done")
    assert inside.endswith(f"in a job [job {JOB_A[:10]}… channel 0x{CHANNEL_A.hex()[:8]}…]")


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (False, {}, "text"),
        (True, {}, "json"),
        (False, {LOG_FORMAT_ENV: "json"}, "json"),
        (False, {LOG_FORMAT_ENV: " JSON "}, "json"),
        (False, {LOG_FORMAT_ENV: "text"}, "text"),
        (True, {LOG_FORMAT_ENV: "text"}, "json"),
    ],
)
def test_the_format_comes_from_the_flag_or_the_environment(
    flag: bool, env: dict[str, str], expected: str
) -> None:
    assert log_format(flag, env) == expected


def test_an_unknown_format_in_the_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=LOG_FORMAT_ENV):
        log_format(False, {LOG_FORMAT_ENV: "xml"})


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger, idlegrid's level and warnings capture back after the test."""
    root, ours = logging.getLogger(), logging.getLogger("idlegrid")
    handlers, level, our_level = list(root.handlers), root.level, ours.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        ours.setLevel(our_level)
        logging.captureWarnings(False)


@pytest.mark.usefixtures("root_logging")
def test_configure_logging_writes_json_lines_of_idlegrid_and_of_others_warnings() -> None:
    # Prepare
    first = configure_logging("text", stream=io.StringIO())
    stream = io.StringIO()

    # Execute: a second call replaces the first handler
    handler = configure_logging("json", level="DEBUG", stream=stream)
    with job_context(JOB_B, CHANNEL_B):
        logging.getLogger("idlegrid.executor").debug("ours, debug")
        logging.getLogger("somelib").info("theirs, info: left out")
        logging.getLogger("somelib").warning("theirs, warning")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a Python warning", UserWarning, stacklevel=1)

    # Assert
    root = logging.getLogger()
    assert handler in root.handlers and first not in root.handlers
    records = _records(stream)
    assert [r["message"] for r in records[:2]] == ["ours, debug", "theirs, warning"]
    assert all(r["job_id"] == JOB_B for r in records[:2])
    assert records[2]["logger"] == "py.warnings" and "a Python warning" in str(records[2])


def test_a_failed_job_is_logged_at_info_by_its_error_s_class_only(
    json_lines: io.StringIO,
) -> None:
    # Prepare: the error's text quotes the client's model
    from idlegrid.provider._node import _Bill, _log_job_done

    bill = _Bill(7, 70, b"\0" * 32, "JobFailed: node 'secret_layer' failed", None, None)
    ok = _Bill(7, 70, b"\0" * 32, None, "", None)
    logging.getLogger("idlegrid").setLevel(logging.INFO)

    # Execute
    with job_context(JOB_A, CHANNEL_A):
        _log_job_done(SimpleNamespace(kind="onnx", seq=3), "failed", bill, 0.25)  # type: ignore[arg-type]
        _log_job_done(SimpleNamespace(kind="onnx", seq=4), "ok", ok, 0.25)  # type: ignore[arg-type]

    # Assert: the failure at info, the success (debug) not at all
    [record] = _records(json_lines)
    assert record["level"] == "INFO" and record["message"].startswith("job failed (JobFailed)")
    assert (record["error"], record["units"], record["amount"], record["seq"]) == (
        "JobFailed",
        7,
        70,
        3,
    )
    assert "secret_layer" not in json_lines.getvalue()
