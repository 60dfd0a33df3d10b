"""Task functions for the executor tests; they run inside worker processes.

Each takes the payload bytes and returns bytes. Where a test needs to see which
process ran a job, or when, the task says so in its result (JSON).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from pathlib import Path

from idlegrid import BlobNotFound, InvalidInput

_calls = 0


def name(fn: object) -> str:
    """The allow-list name of a task function in this module."""
    return f"{__name__}:{getattr(fn, '__name__')}"  # noqa: B009


def echo(payload: bytes) -> bytes:
    return payload


def span(payload: bytes) -> bytes:
    """Sleep for ``payload`` seconds; return pid, start and end (monotonic, machine-wide)."""
    start = time.monotonic()
    time.sleep(float(payload))
    return json.dumps({"pid": os.getpid(), "start": start, "end": time.monotonic()}).encode()


def count_calls(payload: bytes) -> bytes:
    """How many jobs this worker has run through this task: state kept between jobs."""
    global _calls
    _calls += 1
    return json.dumps({"pid": os.getpid(), "calls": _calls}).encode()


def sleep_forever(payload: bytes) -> bytes:
    """Write this worker's pid into the directory ``payload`` names, then never return."""
    if payload:
        (Path(payload.decode()) / str(os.getpid())).write_text("")
    while True:
        time.sleep(3600)


def exit_hard(payload: bytes) -> bytes:
    os._exit(1)


def segfault(payload: bytes) -> bytes:
    ctypes.string_at(0)
    return b"unreachable"


def raise_value_error(payload: bytes) -> bytes:
    raise ValueError(payload.decode())


def raise_invalid_input(payload: bytes) -> bytes:
    raise InvalidInput(payload.decode())


def raise_blob_not_found(payload: bytes) -> bytes:
    raise BlobNotFound(payload.decode())


def raise_unloaded_error(payload: bytes) -> bytes:
    """An InvalidInput subclass that exists only in the worker."""
    unloaded = type("Unloaded", (InvalidInput,), {})
    raise unloaded(payload.decode())


def return_text(payload: bytes) -> str:
    return payload.decode()


def allocate_mib(payload: bytes) -> bytes:
    block = bytearray(int(payload) * 2**20)
    return b"%d" % len(block)


def make_bytes(payload: bytes) -> bytes:
    """``int(payload)`` bytes of a repeating pattern."""
    n = int(payload)
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def touch(payload: bytes) -> bytes:
    """Create the file ``payload`` names (proof that the task ran)."""
    Path(payload.decode()).touch()
    return b""


def heavy_modules(payload: bytes) -> bytes:
    """Which of the node's heavy libraries (chain, HTTP) a worker has imported by starting."""
    heavy = ("web3", "eth_tester", "vyper", "fastapi", "starlette", "uvicorn")
    return json.dumps(sorted(m for m in heavy if m in sys.modules)).encode()


def loaded(payload: bytes) -> bytes:
    """Which of the modules ``payload`` names (comma-separated) the worker had loaded
    before this job."""
    return json.dumps([m for m in payload.decode().split(",") if m in sys.modules]).encode()


def where(payload: bytes) -> bytes:
    """The worker's working directory: its path, its mode and what it holds."""
    cwd = Path.cwd()
    return json.dumps(
        {"cwd": str(cwd), "mode": cwd.stat().st_mode & 0o777, "files": os.listdir(cwd)}
    ).encode()


def leave_a_file(payload: bytes) -> bytes:
    """Write a file into the working directory (it must not outlive the worker)."""
    Path("left-behind").write_bytes(payload)
    return str(Path.cwd()).encode()


def burn(payload: bytes) -> bytes:
    """Spin the CPU for ``int(payload)`` rounds of arithmetic."""
    total = 0
    for i in range(int(payload)):
        total += i * i % 7
    return b"%d" % total
