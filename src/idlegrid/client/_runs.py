"""Node-driven runs on the client: ``Client.start(kind, node_driven=True, ...)``.

The client sends the run once (``POST /v1/runs``, answered 202 with a run id) and the
node runs its segments by itself, on a channel of the run's own (the node numbers its
segments, so no other job of the client may share that channel). The client follows
the run's server-sent events (``GET /v1/runs/{id}/events``): each ``progress`` event
carries the segment's :class:`~idlegrid.protocol.JobResult`, which is checked exactly as
a job's result is (bill, receipt signature, result hash, the segment's spec and input
hashes, dtype and shape, NaN/Inf), booked under its seq and vouchered at once
(``POST /v1/vouchers``); the node starts no segment while more than one goes
unvouchered. When the stream drops or the provider fails, the run goes on from the
last checkpoint on another provider (as ``client/_long.py`` does), and each provider
is paid for the segments it delivered, nothing more.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any

from .._exceptions import InvalidInput, PeerError
from ..protocol import RunProgress, RunRequest, RunStarted, npy_bytes
from ._long import Progress, Run, RunResult, SignedSegment, _begin, _end, _fail, _provider
from ._session import ClientChannel, ProviderFailed, ProviderSession

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["follow"]

#: longest wait for the next byte of a run's stream (the node sends a keep-alive every 15 s)
STREAM_IDLE_S = 60.0
#: a segment may take the node's job time limit plus this long (its voucher's round trip)
SEGMENT_SLACK_S = 60.0


async def follow(client: Client, run: Run, resume: tuple[int, bytes] | None) -> RunResult:
    """Run ``run.plan`` on providers that drive it, to its end or until cancelled."""
    try:
        return await _follow(client, run, resume)
    finally:
        run._events.put(None)


async def _follow(client: Client, run: Run, resume: tuple[int, bytes] | None) -> RunResult:
    plan = run.plan
    kind = plan.workload.name
    step, state, result = _begin(plan, resume)
    totals = [0, 0]  # units, amount over every provider
    failed: set[str] = set()
    while step < plan.total_steps and not run._cancel.is_set():
        first = plan.segment(step, min(plan.segment_steps, plan.total_steps - step))
        session = await _provider(client, kind, failed, first.units, channel=False)
        try:  # the node runs ahead of no voucher: the channel must hold the rest of the run,
            # and the node holds a whole segment's budget for a shorter last one
            units = sum(s.units for s in plan.segments(step)) + first.units
            rest = units * session.candidate.unit_price
            channel = await client._channels.open_dedicated(session, rest)
            await plan.upload(session)
            fields = await plan.fields(first, state, session)
            run_id = await _start(session, channel, kind, fields, first.units, plan.total_steps)
            step, state = await _events(
                channel, run, session, run_id, step, state, result, totals, fields
            )
        except (ProviderFailed, PeerError, OSError, TimeoutError, ValueError) as exc:
            if run.checkpoint is not None:
                step, state = run.checkpoint
            _fail(run, result, failed, session, step, exc)
    return _end(plan, result, step, state)


async def _start(
    session: ProviderSession,
    channel: ClientChannel,
    kind: str,
    fields: dict[str, Any],
    units: int,
    total: int,
) -> str:
    request = RunRequest.model_validate(
        {
            **fields,
            "kind": kind,
            "channel": channel.terms_model(),
            "unit_price": session.candidate.unit_price,
            "max_units": units,
            "total_steps": total,
            "voucher": channel.voucher_model(),
        }
    )
    body = request.model_dump_json(exclude_none=True).encode()
    status, data = await session.call("POST", "/v1/runs", body)
    if status != 202:
        raise ProviderFailed(f"{session.address} refused the run: {session.reason(data)}")
    try:
        return RunStarted.model_validate_json(data).run_id
    except ValueError as exc:
        raise PeerError(f"{session.address} answered a run with no run id") from exc


async def _events(
    channel: ClientChannel,
    run: Run,
    session: ProviderSession,
    run_id: str,
    step: int,
    state: bytes | None,
    result: RunResult,
    totals: list[int],
    first: dict[str, Any],
) -> tuple[int, bytes | None]:
    """Follow one provider's run; (step, checkpoint) where it ended.

    ``fields`` are the first segment's spec fields; each next segment's are what the node
    derives from them (``next_fields``), and each segment's receipt must name them.

    A node that keeps the stream alive but sends no segment for longer than a segment
    may take (its job time limit, plus the time a voucher takes) is given up: keep-alives
    alone do not hold a run.
    """
    plan = run.plan
    workload = plan.workload
    fields: dict[str, Any] | None = first
    price = session.candidate.unit_price
    address = session.address
    loop = asyncio.get_running_loop()
    patience = session.limits.job_timeout_s + SEGMENT_SLACK_S
    deadline = loop.time() + patience
    cancel_sent = False
    async for event, data in session.events(f"/v1/runs/{run_id}/events", idle_s=STREAM_IDLE_S):
        if event == "progress":
            segment = plan.segment(step, min(plan.segment_steps, plan.total_steps - step))
            try:
                progress = RunProgress.model_validate(data)
            except ValueError as exc:
                raise PeerError(f"a run's progress event does not parse: {exc}") from exc
            if progress.step != step + segment.steps:
                raise PeerError(f"segment ends at step {progress.step}, not {step + segment.steps}")
            if fields is None:
                raise PeerError("a segment after the run's last one")
            output, receipt = await session.accept_segment(
                channel,
                progress.result,
                segment.units,
                segment.expect,
                segment.rows,
                workload.digests(fields),
            )
            state = npy_bytes(output)
            spec = workload.parse(fields)
            try:
                plan.accept(segment, output, address, progress.result.job_id)
                checkpoint = await asyncio.to_thread(workload.state_digest, spec, state)
            except InvalidInput as exc:  # signed, checked, but not the kind's layout
                raise PeerError(f"{address}: {exc}") from exc
            run.signed.append(
                SignedSegment(
                    step, segment.steps, address, dict(fields), receipt,
                    progress.result.receipt_signature, state,
                )
            )  # fmt: skip
            fields = workload.next_fields(spec, checkpoint, plan.total_steps)
            step += segment.steps
            totals[0] += segment.units
            totals[1] += segment.units * price
            result.segments[address] = result.segments.get(address, 0) + 1
            result.paid[address] = result.paid.get(address, 0) + segment.units * price
            run.checkpoint = (step, state)
            metrics = await asyncio.to_thread(plan.metrics, state)
            digest = hashlib.sha256(state).hexdigest()
            run._events.put(
                Progress(step, plan.total_steps, metrics, totals[0], totals[1], address, digest)
            )
            await session.send_voucher(channel)  # pay as it goes
            deadline = loop.time() + patience
        elif event in ("done", "cancelled"):
            return step, state
        elif event == "failed":
            error = data.get("error") if isinstance(data, dict) else None
            raise ProviderFailed(f"{address}: the run failed: {str(error)[:500]}")
        if run._cancel.is_set() and not cancel_sent:
            await _cancel(session, run_id)
            cancel_sent = True
        if loop.time() > deadline:
            raise ProviderFailed(f"{address}: no segment of the run for {patience:g} s")
    raise ProviderFailed(f"{address}: the run's stream ended before the run")


async def _cancel(session: ProviderSession, run_id: str) -> None:
    status, data = await session.call("POST", f"/v1/runs/{run_id}/cancel", b"")
    if status != 200:
        raise ProviderFailed(f"{session.address} would not cancel: {session.reason(data)}")
