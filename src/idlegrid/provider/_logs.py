"""The node's logs: every record emitted while a job is handled names the job and its
channel, in text lines or, on request, JSON lines (``idlegrid node start --log-json``,
or ``IDLEGRID_LOG_FORMAT=json``).

The job is a context variable, set where the node takes a job (``job_context`` in
``ProviderNode.run_job``). asyncio tasks and ``asyncio.to_thread`` inherit it, and the
executor runs a job's timer and reports its crash in the context the job was submitted
from (``Job.context``). :class:`JobContextFilter`, on the handler, copies it into each
record as ``job_id`` and ``channel``; a record emitted outside a job has neither key.

A JSON line holds ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the job's
``job_id`` and ``channel`` (0x-hex) and the fields a call passed as ``extra``; with
python-json-logger. Nothing the node logs names a key or carries a request body.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from .._exceptions import ConfigError

__all__ = [
    "LOG_FORMAT_ENV",
    "JobContext",
    "JobContextFilter",
    "JsonLineFormatter",
    "LogFormat",
    "TextFormatter",
    "configure_logging",
    "current_job",
    "job_context",
    "log_format",
]

#: the environment variable that selects the log format: ``text`` (default) or ``json``
LOG_FORMAT_ENV = "IDLEGRID_LOG_FORMAT"

LogFormat = Literal["text", "json"]

#: the name of the handler ``configure_logging`` installs (a second call replaces it)
_HANDLER = "idlegrid"


@dataclass(frozen=True, slots=True)
class JobContext:
    """The job being handled: its id and the channel that pays it, both 0x-hex."""

    job_id: str
    channel: str


_JOB: ContextVar[JobContext | None] = ContextVar("idlegrid_log_job", default=None)


@contextmanager
def job_context(job_id: str, channel: bytes) -> Iterator[JobContext]:
    """Records emitted inside (and in the tasks and threads started inside) name this job."""
    job = JobContext(job_id.lower(), "0x" + channel.hex())
    token = _JOB.set(job)
    try:
        yield job
    finally:
        _JOB.reset(token)


def current_job() -> JobContext | None:
    """The job being handled in this context, or None."""
    return _JOB.get()


class JobContextFilter(logging.Filter):
    """Copies the job being handled, if any, into each record (``job_id``, ``channel``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = _JOB.get()
        if job is not None:
            record.job_id = job.job_id
            record.channel = job.channel
        return True


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """``ts level logger: message``, then the job and its channel (short) in a job."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            return line
        return f"{line} [job {job_id[:10]}… channel {getattr(record, 'channel', '')[:10]}…]"


#: the keys a JSON line starts with, in this order (the call's ``extra`` fields follow)
_FIRST = ("ts", "level", "logger", "message", "job_id", "channel")


class JsonLineFormatter(JsonFormatter):
    """One JSON object per record: ts, level, logger, message, then the context fields."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="ts",
            # uvicorn passes its message again, with colour codes, as ``color_message``
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        first = {k: log_data.pop(k) for k in _FIRST if k in log_data}
        return {**first, **log_data}


def log_format(json_flag: bool, environ: Mapping[str, str] = os.environ) -> LogFormat:
    """``json`` with the flag or ``IDLEGRID_LOG_FORMAT=json``, else ``text``; ConfigError
    when the variable holds anything else."""
    value = environ.get(LOG_FORMAT_ENV, "").strip().lower() or "text"
    if value not in ("text", "json"):
        raise ConfigError(f"{LOG_FORMAT_ENV} must be text or json, not {value!r}")
    return "json" if json_flag or value == "json" else "text"


def configure_logging(
    fmt: LogFormat = "text", *, level: int | str = logging.INFO, stream: IO[str] | None = None
) -> logging.Handler:
    """Write log records to ``stream`` (stderr) in ``fmt``, one line each: idlegrid's from
    ``level`` up, other libraries' warnings and errors. Replaces the handler an earlier
    call installed; returns the new one."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    formatter: logging.Formatter = JsonLineFormatter() if fmt == "json" else TextFormatter()
    handler.setFormatter(formatter)
    handler.addFilter(JobContextFilter())
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # other libraries: what goes wrong only
    logging.getLogger("idlegrid").setLevel(level)
    logging.captureWarnings(True)  # Python's warnings too, in the same format
    return handler
