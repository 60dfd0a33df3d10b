"""Splitting a batch across providers, with fail-over.

Shards wait in one queue; each chosen provider pulls from it with a few jobs
in flight. A provider that dies, times out or returns something that does
not check out loses its shard back to the queue and is backed off; another
provider takes the shard, so the batch completes while any provider is left.
A shard is paid for only once its result is accepted, so a failed provider
is never paid for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .._exceptions import UnavailableError
from ._selection import Backoff
from ._session import JobRejected, ProviderFailed, ProviderSession

__all__ = ["NoProviders", "Shard", "dispatch", "make_shards"]


class NoProviders(UnavailableError):
    """No provider is left that could finish the work."""


@dataclass(frozen=True)
class Shard:
    index: int
    rows: np.ndarray


def make_shards(inputs: np.ndarray, rows_per_shard: int) -> list[Shard]:
    if rows_per_shard < 1:
        raise ValueError("rows_per_shard must be >= 1")
    return [
        Shard(i, inputs[start : start + rows_per_shard])
        for i, start in enumerate(range(0, inputs.shape[0], rows_per_shard))
    ]


RunShard = Callable[[ProviderSession, Shard], Awaitable[np.ndarray]]
Prepare = Callable[[ProviderSession], Awaitable[None]]
Sessions = Callable[[], Awaitable[Sequence[ProviderSession]]]


async def dispatch(
    shards: Sequence[Shard],
    sessions: Sessions,
    run: RunShard,
    *,
    prepare: Prepare,
    backoff: Backoff,
    inflight: int = 2,
    max_providers: int = 8,
    deadline_s: float = 600.0,
    on_done: Callable[[Shard, str], None] | None = None,
    on_failover: Callable[[str, str], None] | None = None,
) -> dict[int, np.ndarray]:
    """Run every shard somewhere; return outputs by shard index."""
    queue: asyncio.Queue[Shard] = asyncio.Queue()
    for shard in shards:
        queue.put_nowait(shard)
    results: dict[int, np.ndarray] = {}
    fatal: list[BaseException] = []
    start = time.monotonic()

    async def worker(session: ProviderSession, stop: asyncio.Event) -> None:
        while not stop.is_set() and not fatal:
            try:
                shard = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                results[shard.index] = await run(session, shard)
            except JobRejected as exc:
                queue.put_nowait(shard)
                fatal.append(exc)
                return
            except (ProviderFailed, UnavailableError) as exc:
                queue.put_nowait(shard)
                if not stop.is_set():
                    stop.set()
                    backoff.fail(session.address, time.time())
                    if on_failover is not None:
                        on_failover(session.address, str(exc))
                return
            backoff.succeed(session.address)
            if on_done is not None:
                on_done(shard, session.address)

    async def drive(session: ProviderSession) -> None:
        try:
            await prepare(session)
        except (ProviderFailed, UnavailableError) as exc:
            backoff.fail(session.address, time.time())
            if on_failover is not None:
                on_failover(session.address, str(exc))
            return
        stop = asyncio.Event()
        await asyncio.gather(*(worker(session, stop) for _ in range(inflight)))

    while len(results) < len(shards):
        if fatal:
            raise fatal[0]
        if time.monotonic() - start > deadline_s:
            raise NoProviders(f"batch not finished within {deadline_s:.0f}s")
        now = time.time()
        everyone = await sessions()
        if not everyone:
            raise NoProviders("no active, reachable provider serves this workload")
        usable = [s for s in everyone if backoff.available(s.address, now)]
        if not usable:
            await asyncio.sleep(0.5)
            everyone = await sessions()
            if not [s for s in everyone if backoff.available(s.address, time.time())] and all(
                backoff.failures(s.address) >= 3 for s in everyone
            ):
                raise NoProviders(
                    f"{len(shards) - len(results)} shards left and every provider failed"
                )
            continue
        await asyncio.gather(*(drive(s) for s in usable[:max_providers]))
    if fatal:
        raise fatal[0]
    return results
