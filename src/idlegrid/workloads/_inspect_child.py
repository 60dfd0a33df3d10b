"""The helper-process side of a node's model inspection (see ``provider._inspect``).

It lives outside ``idlegrid.provider`` so that the spawned helper imports only what a
count needs (onnx, numpy), not the node's web server and chain client: importing the
provider package costs a process about 4 CPU-seconds, this module under one.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass

__all__ = ["ModelFacts", "count", "init", "ready"]


@dataclass(frozen=True)
class ModelFacts:
    """What the node needs to know of a model, as plain data (it never parses a model)."""

    flops_per_row: int
    #: why the FLOP count is not exact and a job must be metered; None when it is exact
    metering: str | None
    #: the inputs a job feeds: name, shape (None: a symbolic dim), numpy dtype string
    inputs: tuple[tuple[str, tuple[int | None, ...], str], ...]


def init(memory_mb: int | None, node: int) -> None:
    """In the helper process: a memory limit, and an exit as soon as the node is gone.

    ``node`` is the node's pid, passed in: a node killed while this process was still
    starting has already made it an orphan, and its parent now would be someone else.
    """
    if memory_mb is not None:
        import resource

        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if sys.platform == "linux":  # die with the node, even if it is killed
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != node:  # the node died before the line above took effect
        os._exit(0)
    threading.Thread(target=_exit_with, args=(node,), daemon=True).start()


def _exit_with(node: int) -> None:
    # the pool's queues hold both ends of their pipes here, so the helper never sees the
    # node hang up: watch the parent instead
    while os.getppid() == node:
        time.sleep(0.5)
    os._exit(0)


def count(path: str | None, data: bytes | None) -> ModelFacts:
    from . import model_info

    if path is not None:
        with open(path, "rb") as f:
            data = f.read()
    assert data is not None
    info = model_info(data)
    inputs = tuple((s.name, s.shape, s.dtype.str) for s in info.inputs)
    return ModelFacts(info.flops_per_row, info.metering, inputs)


def ready() -> int:
    from . import count_flops  # noqa: F401  (import it now, not at the first model)

    return os.getpid()
