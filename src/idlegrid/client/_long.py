"""Long-running jobs on the client: a :class:`Run` of a long kind, segment by segment.

A run (``Client.start``) is driven from the client's loop: each segment is one short
job on one provider, checked like any other (bill, receipt signature, result hash,
dtype and shape) and vouchered at once (``POST /v1/vouchers``) before the next one is
sent, so that neither side is exposed for more than one segment. Each accepted segment
is a :class:`Progress` event: its step, metrics, the units and tokens spent so far,
the checkpoint's sha256. The client keeps the last checkpoint: when its provider dies
(connection refused, a dropped answer, a result that does not check out), the run goes
on from that checkpoint on another provider, and each provider is paid for the
segments it delivered, nothing more.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import InvalidInput
from ..protocol import npy_bytes
from ..workloads import LongPlan
from ._dispatch import NoProviders
from ._selection import rank
from ._session import Bill, ProviderFailed, ProviderSession

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["Failover", "Progress", "Run", "RunResult", "SignedSegment"]

#: segments' worth of deposit a channel is opened (or topped up) with for a run
DEPOSIT_SEGMENTS = 4


@dataclass(frozen=True)
class Progress:
    """A segment received, checked and vouchered."""

    step: int  # steps done so far
    total: int  # steps of the whole run
    metrics: dict[str, float]
    units: int  # units paid for so far, over every provider
    amount: int  # tokens (wei) paid so far
    provider: str  # who ran this segment
    checkpoint: str  # sha256 of the checkpoint after it


@dataclass(frozen=True)
class SignedSegment:
    """A segment as the provider signed it: what a dispute of it needs."""

    start: int
    steps: int
    provider: str
    fields: dict[str, Any]  # the segment's spec fields, as its receipt hashes them
    receipt: Any  # the Receipt the client rebuilt and checked
    signature: str  # the provider's signature over it, hex
    output_npy: bytes  # the output as signed (its sha256 is the receipt's result hash)


@dataclass(frozen=True)
class Failover:
    """The run's provider failed at ``step``: the run goes on elsewhere from there."""

    step: int
    provider: str
    reason: str


@dataclass
class RunResult:
    """How a run ended: its result, where it stopped, and who was paid for what."""

    output: np.ndarray
    steps: int  # steps done (fewer than asked when cancelled)
    cancelled: bool
    checkpoint: bytes  # the last checkpoint (.npy), to resume from
    segments: dict[str, int] = field(default_factory=dict)  # by provider
    paid: dict[str, int] = field(default_factory=dict)  # tokens (wei) by provider
    failovers: list[Failover] = field(default_factory=list)


class Run:
    """A long job under way (``Client.start``); its methods block (no asyncio needed)."""

    def __init__(self, plan: LongPlan) -> None:
        self.plan = plan
        self._events: queue.Queue[Progress | Failover | None] = queue.Queue()
        self._cancel = threading.Event()
        self._future: Future[RunResult] | None = None
        #: the last checkpoint received: (step, .npy bytes), or None before the first
        self.checkpoint: tuple[int, bytes] | None = None
        #: the segments received, as signed (node-driven runs; the caller may clear it)
        self.signed: list[SignedSegment] = []

    def events(self, timeout: float | None = None) -> Iterator[Progress | Failover]:
        """Progress and fail-over events as they come, until the run ends."""
        while True:
            event = self._events.get(timeout=timeout)
            if event is None:
                self._events.put(None)  # a second reader ends too
                return
            yield event

    def result(self, timeout: float | None = None) -> RunResult:
        """The run's result once it ends (raises what ended it, if it failed)."""
        assert self._future is not None
        return self._future.result(timeout)

    def cancel(self) -> None:
        """Stop after the segment under way (it is paid for; its checkpoint is kept)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def done(self) -> bool:
        return self._future is not None and self._future.done()


async def drive(client: Client, run: Run, resume: tuple[int, bytes] | None) -> RunResult:
    """Run ``run.plan`` to its end (or until cancelled) on the client's loop."""
    try:
        return await _drive(client, run, resume)
    finally:
        run._events.put(None)


def _begin(plan: LongPlan, resume: tuple[int, bytes] | None) -> tuple[int, bytes | None, RunResult]:
    """Where a run starts (``resume`` or step 0) and its result so far."""
    step, state = resume if resume is not None else (0, None)
    if not 0 <= step <= plan.total_steps:
        raise InvalidInput(f"resume step {step} is outside 0..{plan.total_steps}")
    return step, state, RunResult(np.zeros(0), step, False, state or b"")


def _end(plan: LongPlan, result: RunResult, step: int, state: bytes | None) -> RunResult:
    """The run's result once it stopped at ``step`` with checkpoint ``state``."""
    if state is None:
        raise InvalidInput("the run was cancelled before its first segment")
    result.output = plan.result(state)
    result.steps = step
    result.cancelled = step < plan.total_steps
    result.checkpoint = state
    return result


async def _drive(client: Client, run: Run, resume: tuple[int, bytes] | None) -> RunResult:
    plan = run.plan
    kind = plan.workload.name
    step, state, result = _begin(plan, resume)
    units = amount = 0
    failed: set[str] = set()
    session: ProviderSession | None = None
    while step < plan.total_steps and not run._cancel.is_set():
        segment = plan.segment(step, min(plan.segment_steps, plan.total_steps - step))
        if session is None:
            session = await _provider(client, kind, failed, segment.units)
            try:
                await plan.upload(session)
            except ProviderFailed as exc:
                _fail(run, result, failed, session, step, exc)
                session = None
                continue
        price = session.candidate.unit_price
        try:
            fields = await plan.fields(segment, state, session)
            bill = Bill(segment.units, segment.units, False)
            reserve = client._reserve(session)
            out = await session.job(reserve, kind, fields, bill, segment.expect, segment.rows)
        except ProviderFailed as exc:
            _fail(run, result, failed, session, step, exc)
            session = None
            continue
        try:
            plan.accept(segment, out, session.address, "")
        except InvalidInput as exc:  # signed, checked, but not the kind's layout
            _fail(run, result, failed, session, step, ProviderFailed(str(exc)))
            session = None
            continue
        state = npy_bytes(out)
        step += segment.steps
        units += segment.units
        amount += segment.units * price
        address = session.address
        result.segments[address] = result.segments.get(address, 0) + 1
        result.paid[address] = result.paid.get(address, 0) + segment.units * price
        run.checkpoint = (step, state)
        metrics = await asyncio.to_thread(plan.metrics, state)
        digest = hashlib.sha256(state).hexdigest()
        run._events.put(Progress(step, plan.total_steps, metrics, units, amount, address, digest))
        try:  # pay as it goes: the voucher for this segment, before the next one
            await session.send_voucher(client._channels[address])
        except ProviderFailed as exc:
            _fail(run, result, failed, session, step, exc)
            session = None
    return _end(plan, result, step, state)


async def _provider(
    client: Client, kind: str, failed: set[str], segment_units: int, *, channel: bool = True
) -> ProviderSession:
    """The best provider of ``kind`` that has not failed this run, with a channel (the
    client's shared one to it, unless ``channel`` is False)."""
    found = [c for c in await client._discover(kind) if c.address not in failed]
    if not found:
        found = [c for c in await client._discover(kind, force=True) if c.address not in failed]
    if not found:
        raise NoProviders(f"no active, reachable provider serves {kind} jobs (tried {len(failed)})")
    session = client._session(rank(found, client.weights)[0])
    if channel:
        cost = segment_units * session.candidate.unit_price
        await client._channels.acquire(session, DEPOSIT_SEGMENTS * cost, reserve=False)
    return session


def _fail(
    run: Run,
    result: RunResult,
    failed: set[str],
    session: ProviderSession,
    step: int,
    exc: BaseException,
) -> None:
    failed.add(session.address)
    event = Failover(step, session.address, str(exc)[:500])
    result.failovers.append(event)
    run._events.put(event)


def resume_point(checkpoint: Any) -> tuple[int, bytes] | None:
    """``(step, .npy bytes)`` from what a caller passes as ``resume_from``."""
    if checkpoint is None:
        return None
    step, state = checkpoint
    if isinstance(state, np.ndarray):
        state = npy_bytes(state)
    return int(step), bytes(state)
