"""Splitting a batch across providers, with fail-over.

Shards wait in one queue; each chosen provider pulls from it with a few jobs
in flight. Every way a shard can go wrong ends in one of three places, never in
a stray exception:

* fail-over: a provider that dies, times out or returns something that does not
  check out loses its shard back to the queue and is backed off; a provider that
  refuses the work (its limits or policy, :class:`ProviderRefused`) is left out
  of this batch without being counted as failing. Another provider takes the
  shard, so the batch completes while any provider is left.
* one more try: a job that ran past a provider's time limit (billed) goes back to
  the queue once, for another provider.
* one error for the whole batch: a job that is wrong for the model
  (:class:`ModelRejected`), a second timeout, a chain or payment error, or no
  provider left (:class:`NoProviders`, with what each said).

A shard is paid for only once its result is accepted, or (a billed failure) once
the provider proved the time the client's own job used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .._exceptions import IdlegridError, NoProviders, UnavailableError
from ._model import ModelRejected
from ._selection import Backoff
from ._session import JobTimedOut, ProviderFailed, ProviderRefused, ProviderSession

__all__ = ["NoProviders", "Shard", "dispatch", "make_shards"]


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
    refused: dict[str, str] = {}  # provider -> why it refused this batch
    timed_out: dict[int, dict[str, str]] = {}  # shard -> providers it timed out on, why
    start = time.monotonic()

    def fail_over(session: ProviderSession, exc: BaseException, stop: asyncio.Event) -> None:
        if isinstance(exc, ProviderRefused):
            refused[session.address] = str(exc)
        if not stop.is_set():
            stop.set()
            if not isinstance(exc, ProviderRefused):
                backoff.fail(session.address, time.time())
            if on_failover is not None:
                on_failover(session.address, str(exc))

    async def worker(session: ProviderSession, stop: asyncio.Event) -> None:
        while not stop.is_set() and not fatal:
            try:
                shard = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if session.address in timed_out.get(shard.index, {}):
                queue.put_nowait(shard)  # for another provider
                return
            try:
                results[shard.index] = await run(session, shard)
            except JobTimedOut as exc:
                queue.put_nowait(shard)
                tried = timed_out.setdefault(shard.index, {})
                tried[session.address] = str(exc)
                if len(tried) > 1:
                    fatal.append(_timed_out(tried))
                return
            except ModelRejected as exc:
                queue.put_nowait(shard)
                fatal.append(exc)
                return
            except (ProviderFailed, UnavailableError) as exc:
                queue.put_nowait(shard)
                fail_over(session, exc, stop)
                return
            except Exception as exc:  # a chain or payment error: the batch cannot go on
                queue.put_nowait(shard)
                fatal.append(exc)
                return
            backoff.succeed(session.address)
            if on_done is not None:
                on_done(shard, session.address)

    async def drive(session: ProviderSession) -> None:
        stop = asyncio.Event()
        try:
            await prepare(session)
        except (ProviderFailed, UnavailableError) as exc:
            fail_over(session, exc, stop)
            return
        except Exception as exc:
            fatal.append(exc)
            return
        # never more in flight than the provider lets one client have (else 429s)
        width = max(1, min(inflight, session.limits.max_jobs_per_client))
        await asyncio.gather(*(worker(session, stop) for _ in range(width)))

    while len(results) < len(shards):
        if fatal:
            raise _one(fatal)
        if time.monotonic() - start > deadline_s:
            raise NoProviders(f"batch not finished within {deadline_s:.0f}s")
        now = time.time()
        everyone = [s for s in await sessions() if s.address not in refused]
        if not everyone:
            raise NoProviders(_why_none(refused))
        usable = [s for s in everyone if backoff.available(s.address, now)]
        pending = {shard.index for shard in _peek(queue)}
        if (
            usable
            and pending
            and all({s.address for s in usable} <= set(timed_out.get(i, {})) for i in pending)
        ):  # only shards that timed out on every provider left to try them
            raise _timed_out(timed_out[min(pending)])
        if not usable:
            await asyncio.sleep(0.5)
            everyone = [s for s in await sessions() if s.address not in refused]
            if not [s for s in everyone if backoff.available(s.address, time.time())] and all(
                backoff.failures(s.address) >= 3 for s in everyone
            ):
                raise NoProviders(
                    f"{len(shards) - len(results)} shards left and every provider failed"
                )
            continue
        await asyncio.gather(*(drive(s) for s in usable[:max_providers]))
    if fatal:
        raise _one(fatal)
    return results


def _peek(queue: asyncio.Queue[Shard]) -> list[Shard]:
    """The shards waiting in ``queue`` (without taking them)."""
    items: list[Shard] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    for item in items:
        queue.put_nowait(item)
    return items


def _one(errors: list[BaseException]) -> BaseException:
    """The error a batch ends with: a model error first, then any idlegrid error."""
    for kind in (ModelRejected, IdlegridError):
        for exc in errors:
            if isinstance(exc, kind):
                return exc
    return errors[0]


def _timed_out(tried: dict[str, str]) -> ModelRejected:
    where = "; ".join(f"{address}: {why}" for address, why in tried.items())
    return ModelRejected(
        f"a job ran past the time limit on {len(tried)} provider(s) (each billed the time "
        f"it used): {where}. Send fewer rows per job (rows_per_shard) or a lighter model"
    )


def _why_none(refused: dict[str, str]) -> str:
    if not refused:
        return "no active, reachable provider serves this workload"
    why = "; ".join(refused.values())
    return f"every provider refused the work: {why}"
