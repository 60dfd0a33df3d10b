"""What a node needs to know of a model (``ModelFacts``: its FLOP count, whether it must
be metered, its declared inputs), computed once per model, away from the event loop.

Counting parses the model and infers its shapes: C++ code that holds the GIL for
as long as a large graph takes, so a thread would still stall the event loop. The
count runs in one spawned helper process instead, with a memory limit and a time
limit (past it the process is killed and replaced), and the node remembers the
answer, a count or the reason the model was refused, for the latest models (LRU).
Two jobs that name the same new model wait for one count.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from .._exceptions import IdlegridError, InvalidInput

__all__ = ["ModelFacts", "ModelInspector"]


@dataclass(frozen=True)
class ModelFacts:
    """What the node needs to know of a model, as plain data (the node imports no onnx)."""

    flops_per_row: int
    #: why the FLOP count is not exact and a job must be metered; None when it is exact
    metering: str | None
    #: the inputs a job feeds: name, shape (None: a symbolic dim), numpy dtype string
    inputs: tuple[tuple[str, tuple[int | None, ...], str], ...]


def _init(memory_mb: int | None, node: int) -> None:
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


def _count(path: str | None, data: bytes | None) -> ModelFacts:
    from ..workloads import model_info

    if path is not None:
        with open(path, "rb") as f:
            data = f.read()
    assert data is not None
    info = model_info(data)
    inputs = tuple((s.name, s.shape, s.dtype.str) for s in info.inputs)
    return ModelFacts(info.flops_per_row, info.metering, inputs)


def _ready() -> int:
    from ..workloads import count_flops  # noqa: F401  (import it now, not at the first model)

    return os.getpid()


class ModelInspector:
    """FLOPs per row of stored models, counted in a helper process and cached."""

    def __init__(self, *, cache: int, timeout_s: float, memory_mb: int | None) -> None:
        self.cache, self.timeout_s, self.memory_mb = cache, timeout_s, memory_mb
        self._known: OrderedDict[str, ModelFacts | InvalidInput] = OrderedDict()
        self._pending: dict[str, asyncio.Future[ModelFacts]] = {}
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._turn = asyncio.Lock()

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init,
                initargs=(self.memory_mb, os.getpid()),
            )
        return self._pool

    def start(self) -> None:
        """Start the helper process now, so that the first model does not wait for it."""
        self._executor().submit(_ready)

    def known(self, digest: str) -> int | None:
        """The cached count of ``digest``; raises the cached refusal; None if not counted."""
        found = self._known.get(digest)
        if found is None:
            return None
        self._known.move_to_end(digest)
        if isinstance(found, InvalidInput):
            raise InvalidInput(str(found))
        return found.flops_per_row

    async def flops(self, digest: str, *, path: str | None, data: bytes | None) -> int:
        """FLOPs per row of the model ``digest`` (its file ``path``, or its bytes ``data``)."""
        return (await self.cost(digest, path=path, data=data)).flops_per_row

    async def cost(self, digest: str, *, path: str | None, data: bytes | None) -> ModelFacts:
        """FLOPs per row of the model ``digest`` and whether it needs metering."""
        known = self._known.get(digest)
        if known is not None:
            if isinstance(known, InvalidInput):
                raise InvalidInput(str(known))
            self._known.move_to_end(digest)
            return known
        pending = self._pending.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._count(digest, path, data))
            self._pending[digest] = pending
            pending.add_done_callback(lambda _: self._pending.pop(digest, None))
        return await asyncio.shield(pending)

    async def _count(self, digest: str, path: str | None, data: bytes | None) -> ModelFacts:
        async with self._turn:  # one model at a time: a kill on timeout hits only its own
            try:
                future = self._executor().submit(_count, path, data)
                flops = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
            except TimeoutError:
                self._kill()
                refusal = InvalidInput(f"counting the model's FLOPs took over {self.timeout_s:g}s")
            except BrokenProcessPool:  # killed: out of memory
                self._kill()
                refusal = InvalidInput("the model cannot be parsed within the node's memory limit")
            except InvalidInput as exc:
                refusal = exc
            except IdlegridError:
                raise
            except Exception as exc:  # MemoryError, or a parser's own error
                refusal = InvalidInput(f"the model cannot be parsed: {type(exc).__name__}: {exc}")
            else:
                self._remember(digest, flops)
                return flops
        self._remember(digest, refusal)
        raise refusal

    def _remember(self, digest: str, value: ModelFacts | InvalidInput) -> None:
        self._known[digest] = value
        self._known.move_to_end(digest)
        while len(self._known) > self.cache:
            self._known.popitem(last=False)

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())  # no public way to kill one
        for process in processes:
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the helper process."""
        self._kill()
