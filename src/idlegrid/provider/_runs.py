"""Node-driven runs of a long kind (``POST /v1/runs``): the node runs the segments itself.

A run is a sequence of segments, each one run exactly as a job sent to ``POST
/v1/jobs`` would be (:meth:`ProviderNode.run_job`: reserve, executor, bill, a receipt
booked on the channel under the next seq), started by a background task. The client
follows it (``GET /v1/runs/{id}/events``, server-sent events), checks each segment's
result and receipt as it would a job's, and vouchers it (``POST /v1/vouchers``). The
node gives one segment of credit: it does not start segment n+1 until a voucher covers
segment n-1, so neither side is exposed for more than one segment.

Each segment's checkpoint is kept in the store (owned by the client) and named by its
sha256 in the next segment's spec (the kind says how: ``LongWorkload.next_fields``).
A run's events are kept (bounded) so that a client that reconnects reads them from
the start; finished runs are forgotten oldest first.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._exceptions import ClientBusy, IdlegridError, InvalidInput, Unauthorized, UnknownRun
from ..protocol import JobRequest, RunProgress, RunRequest
from ..workloads import LongWorkload, get_workload

if TYPE_CHECKING:
    from ._node import ProviderNode

__all__ = ["Run", "Runs", "UnknownRun"]

log = logging.getLogger("idlegrid.provider")

#: runs under way on a node at once, over all clients
MAX_RUNS = 64
#: finished runs remembered (their events, for a client that reconnects)
KEEP_FINISHED = 64
#: events kept per run, the latest (one per segment, plus the last one); a follower that
#: falls further behind skips to the oldest kept
MAX_EVENTS = 1000
#: how long a run waits for the voucher that lets its next segment start
PAY_WAIT_S = 120.0
#: how often it looks
PAY_POLL_S = 0.02


@dataclass
class Run:
    """One run: who asked, its events so far, whether it is over."""

    id: str
    client: str
    kind: str
    events: deque[tuple[str, dict[str, Any]]] = field(
        default_factory=lambda: deque(maxlen=MAX_EVENTS)
    )
    emitted: int = 0  # events so far, kept or not
    over: bool = False
    cancelled: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def emit(self, event: str, data: dict[str, Any]) -> None:
        self.events.append((event, data))
        self.emitted += 1
        if event != "progress":
            self.over = True
        self.changed.set()
        self.changed = asyncio.Event()


class Runs:
    """The node's runs: start, follow, cancel."""

    def __init__(self, node: ProviderNode, *, max_runs: int = MAX_RUNS) -> None:
        self.node = node
        self.max_runs = max_runs
        self._runs: OrderedDict[str, Run] = OrderedDict()

    def _active(self, client: str | None = None) -> int:
        return sum(1 for r in self._runs.values() if not r.over and client in (None, r.client))

    async def start(self, sender: str, req: RunRequest) -> Run:
        """Check a run as a job would be checked, then start it; its id at once."""
        node = self.node
        terms = node._terms(req.channel)
        if terms.client != sender:
            raise Unauthorized("the request is not signed by the channel's client")
        if req.kind not in node.config.workloads:
            raise InvalidInput(f"this node does not serve jobs of kind {req.kind!r}")
        workload = get_workload(req.kind)
        if not isinstance(workload, LongWorkload):
            raise InvalidInput(f"{req.kind} is not a long-running kind: send it to /v1/jobs")
        fields = req.spec_fields()
        if "total_steps" in workload.Spec.model_fields:  # a kind whose spec names it too
            fields["total_steps"] = req.total_steps
        spec = workload.parse(fields)
        workload.next_fields(spec, "0" * 64, req.total_steps)  # the kind can go on by itself
        if req.unit_price != node.config.unit_price:
            raise InvalidInput(f"price mismatch: this node charges {node.config.unit_price}")
        book = await node._book(terms)
        if req.voucher is not None:
            node._take_voucher(book, req.voucher)
        mine, cap = self._active(sender), node.config.max_jobs_per_client
        if mine >= cap:
            raise ClientBusy(f"this client has {mine} runs under way here, the most it may")
        if self._active() >= self.max_runs:
            raise ClientBusy(f"this node has {self.max_runs} runs under way: try again later")
        run = Run("0x" + os.urandom(16).hex(), sender, req.kind)
        self._runs[run.id] = run
        self._forget()
        run.task = asyncio.create_task(self._drive(run, req, workload, spec.model_dump()))
        return run

    def _forget(self) -> None:
        finished = [r.id for r in self._runs.values() if r.over]
        for run_id in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._runs[run_id]

    def get(self, sender: str, run_id: str) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            raise UnknownRun(f"no run {run_id[:40]!r} here")
        if run.client != sender:
            raise Unauthorized("this run belongs to another client")
        return run

    def cancel(self, sender: str, run_id: str) -> Run:
        """Stop the run after the segment under way (which is billed as usual)."""
        run = self.get(sender, run_id)
        run.cancelled = True
        run.changed.set()
        return run

    async def close(self) -> None:
        tasks = [r.task for r in self._runs.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drive(
        self, run: Run, req: RunRequest, workload: LongWorkload[Any], fields: dict[str, Any]
    ) -> None:
        try:
            await self._segments(run, req, workload, fields)
        except asyncio.CancelledError:
            run.emit("failed", {"error": "the node is shutting down"})
            raise
        except IdlegridError as exc:
            run.emit("failed", {"error": f"{type(exc).__name__}: {exc}"[:1000]})
        except Exception as exc:  # a bug: the run ends, the node goes on
            log.exception("run %s failed", run.id)
            run.emit("failed", {"error": f"{type(exc).__name__}: {exc}"[:1000]})

    async def _segments(
        self, run: Run, req: RunRequest, workload: LongWorkload[Any], fields: dict[str, Any]
    ) -> None:
        node = self.node
        terms = node._terms(req.channel)
        book = await node._book(terms)
        units = amount = segments = 0
        allowed = min(1, node.config.credit_jobs - 1)  # unvouchered segments at a start
        next_fields: dict[str, Any] | None = fields
        while next_fields is not None:
            waited = 0.0
            while book.credit_jobs > allowed and not run.cancelled:  # pay as it goes
                if waited >= PAY_WAIT_S:
                    raise InvalidInput(f"no voucher came for {PAY_WAIT_S:.0f}s: run stopped")
                await asyncio.sleep(PAY_POLL_S)
                waited += PAY_POLL_S
            if run.cancelled:
                run.emit("cancelled", {"segments": segments, "units": units, "amount": amount})
                return
            seq = max((s for s, _ in book.prefix.items()), default=0) + 1
            job = JobRequest.model_validate(
                {
                    **next_fields,
                    "job_id": "0x" + os.urandom(32).hex(),
                    "kind": req.kind,
                    "channel": req.channel,
                    "seq": seq,
                    "unit_price": req.unit_price,
                    "max_units": req.max_units,
                }
            )
            spec = workload.parse(job.spec_fields())
            result = await node.run_job(run.client, job)
            units += result.units
            amount += result.amount
            segments += 1
            if result.status != "ok":
                run.emit("failed", {"error": result.error, "result": result.model_dump()})
                return
            raw = await self._checkpoint(run.client, result.output_npy, result.output_blob)
            digest = hashlib.sha256(raw).hexdigest()
            progress = RunProgress(
                step=workload.step_after(spec),
                total=req.total_steps,
                units=units,
                amount=amount,
                checkpoint=digest,
                metrics=await self._report(workload, spec, raw),
                result=result,
            )
            run.emit("progress", progress.model_dump(exclude_none=True))
            state = await asyncio.to_thread(workload.state_digest, spec, raw)
            next_fields = workload.next_fields(spec, state, req.total_steps)
        run.emit("done", {"segments": segments, "units": units, "amount": amount})

    async def _report(
        self, workload: LongWorkload[Any], spec: Any, checkpoint: bytes
    ) -> dict[str, float]:
        """The kind's own figures of a checkpoint (a training loss), off the event loop;
        a report that fails is left out (it is informative, the run goes on)."""
        try:
            return await asyncio.to_thread(workload.report, spec, checkpoint, self.node.host)
        except Exception as exc:  # a figure never stops a paid run
            log.warning("run report failed: %s: %s", type(exc).__name__, exc)
            return {}

    async def _checkpoint(self, client: str, inline: str | None, blob: str | None) -> bytes:
        """The segment's output, kept in the store for the next segment to name."""
        store = self.node.store
        if blob is not None:
            return await asyncio.to_thread(store.get, blob)
        assert inline is not None
        raw = base64.b64decode(inline)
        await asyncio.to_thread(store.put, raw, owner=client)
        return raw

    async def events(self, run: Run) -> AsyncIterator[bytes]:
        """The run's events as server-sent events, from the first, until it is over."""
        sent = 0
        while True:
            changed = run.changed
            while sent < run.emitted:
                oldest = run.emitted - len(run.events)
                sent = max(sent, oldest)  # skip what is no longer kept
                event, data = run.events[sent - oldest]
                sent += 1
                yield f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
            if run.over:
                return
            try:
                await asyncio.wait_for(changed.wait(), 15.0)
            except TimeoutError:
                yield b": keep-alive\n\n"
