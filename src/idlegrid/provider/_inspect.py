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
from collections import OrderedDict
from concurrent.futures.process import BrokenProcessPool

from .._exceptions import IdlegridError, InvalidInput
from ..workloads._inspect_child import ModelFacts, count, init, ready

__all__ = ["ModelFacts", "ModelInspector"]


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
                initializer=init,
                initargs=(self.memory_mb, os.getpid()),
            )
        return self._pool

    def start(self) -> None:
        """Start the helper process now, so that the first model does not wait for it."""
        self._executor().submit(ready)

    @property
    def counting(self) -> int:
        """Models being counted now or waiting for their turn (``/v1/stats``)."""
        return len(self._pending)

    @property
    def cached(self) -> int:
        """Models whose count or refusal the node remembers."""
        return len(self._known)

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
                future = self._executor().submit(count, path, data)
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
