"""Node-driven runs on the client: ``Client.start(kind, node_driven=True, ...)``.

The client sends the run once (``POST /v1/runs``, answered 202 with a run id) and the
node runs its segments by itself. The client follows the run's server-sent events
(``GET /v1/runs/{id}/events``): each ``progress`` event carries the segment's
:class:`~idlegrid.protocol.JobResult`, which is checked exactly as a job's result is
(bill, receipt signature, result hash, dtype and shape, NaN/Inf), booked under its seq
and vouchered at once (``POST /v1/vouchers``); the node starts no segment while more
than one goes unvouchered. When the stream drops or the provider fails, the run goes
on from the last checkpoint on another provider (as ``client/_long.py`` does), and each
provider is paid for the segments it delivered, nothing more.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from .._exceptions import InvalidInput, PeerError
from ..protocol import JobResult, RunRequest, npy_bytes, sign_request
from ._long import Progress, Run, RunResult, _fail, _provider
from ._session import ProviderFailed, ProviderSession, _Bill

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["follow"]

#: longest wait for the next byte of a run's stream (the node sends a keep-alive every 15 s)
STREAM_IDLE_S = 60.0
#: the largest event line accepted
MAX_LINE = 64 * 2**20


async def follow(client: Client, run: Run, resume: tuple[int, bytes] | None) -> RunResult:
    """Run ``run.plan`` on providers that drive it, to its end or until cancelled."""
    try:
        return await _follow(client, run, resume)
    finally:
        run._events.put(None)


async def _follow(client: Client, run: Run, resume: tuple[int, bytes] | None) -> RunResult:
    plan = run.plan
    kind = plan.workload.name
    step, state = resume if resume is not None else (0, None)
    if not 0 <= step <= plan.total_steps:
        raise InvalidInput(f"resume step {step} is outside 0..{plan.total_steps}")
    result = RunResult(np.zeros(0), step, False, state or b"")
    totals = [0, 0]  # units, amount over every provider
    failed: set[str] = set()
    while step < plan.total_steps and not run._cancel.is_set():
        first = plan.segment(step, min(plan.segment_steps, plan.total_steps - step))
        session = await _provider(client, kind, failed, first.units)
        try:  # the node runs ahead of no voucher: the channel must hold the rest of the run
            rest = sum(s.units for s in plan.segments(step)) * session.candidate.unit_price
            await client._channels.acquire(session, rest, reserve=False)
            await plan.upload(session)
            fields = await plan.fields(first, state, session)
            run_id = await _start(session, client, kind, fields, first.units, plan.total_steps)
            step, state = await _events(client, run, session, run_id, step, state, result, totals)
        except (ProviderFailed, PeerError, OSError, TimeoutError, ValueError) as exc:
            if run.checkpoint is not None:
                step, state = run.checkpoint
            _fail(run, result, failed, session, step, exc)
    if state is None:
        raise InvalidInput("the run was cancelled before its first segment")
    result.output = plan.result(state)
    result.steps = step
    result.cancelled = step < plan.total_steps
    result.checkpoint = state
    return result


async def _start(
    session: ProviderSession,
    client: Client,
    kind: str,
    fields: dict[str, Any],
    units: int,
    total: int,
) -> str:
    channel = client._channels[session.address]
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
    status, data = await session._call("POST", "/v1/runs", body)
    if status != 202:
        raise ProviderFailed(f"{session.address} refused the run: {session._reason(data)}")
    return str(json.loads(data)["run_id"])


async def _events(
    client: Client,
    run: Run,
    session: ProviderSession,
    run_id: str,
    step: int,
    state: bytes | None,
    result: RunResult,
    totals: list[int],
) -> tuple[int, bytes | None]:
    """Follow one provider's run; (step, checkpoint) where it ended."""
    plan = run.plan
    channel = client._channels[session.address]
    price = session.candidate.unit_price
    address = session.address
    cancel_sent = False
    async for event, data in _stream(session, f"/v1/runs/{run_id}/events"):
        if event == "progress":
            segment = plan.segment(step, min(plan.segment_steps, plan.total_steps - step))
            job = JobResult.model_validate(data["result"])
            seq = channel.next_seq
            if job.seq != seq or int(data["step"]) != step + segment.steps:
                raise PeerError("a run's segment is not the next one")
            bill = _Bill(segment.units, segment.units, False)
            job_id = bytes.fromhex(job.job_id[2:])
            output, receipt = await session._check_ok(job, job_id, seq, channel, bill)
            wrong = segment.expect.check(output, segment.rows)
            if wrong is not None:
                raise PeerError(wrong)
            channel.take_seq()
            channel.accept(seq, receipt, session.account, session.market)
            channel.committed += receipt.amount  # spent, as a job's bill is
            state = npy_bytes(output)
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
            if run._cancel.is_set() and not cancel_sent:
                await _cancel(session, run_id)
                cancel_sent = True
        elif event in ("done", "cancelled"):
            return step, state
        elif event == "failed":
            raise ProviderFailed(f"{address}: the run failed: {data.get('error')}")
        if run._cancel.is_set() and not cancel_sent:
            await _cancel(session, run_id)
            cancel_sent = True
    raise ProviderFailed(f"{address}: the run's stream ended before the run")


async def _cancel(session: ProviderSession, run_id: str) -> None:
    status, data = await session._call("POST", f"/v1/runs/{run_id}/cancel", b"")
    if status != 200:
        raise ProviderFailed(f"{session.address} would not cancel: {session._reason(data)}")


async def _stream(session: ProviderSession, path: str) -> AsyncIterator[tuple[str, Any]]:
    """A signed GET of server-sent events: (event, data) as they come."""
    url = urlsplit(session.base + path)
    if url.scheme != "http" or url.hostname is None:
        raise ProviderFailed(f"{session.address}: runs are followed over plain http only")
    signed = sign_request(session.account, session.node, session.address, "GET", path, b"")
    head = [f"GET {path} HTTP/1.1", f"host: {url.netloc}", "accept: text/event-stream"]
    head += [f"{k}: {v}" for k, v in signed.headers.items()]
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(url.hostname, url.port or 80, limit=MAX_LINE), session.timeout_s
    )
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await writer.drain()
        status_line = await _line(reader)
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while line := await _line(reader):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        body = _chunks(reader) if chunked else _plain(reader)
        if status != 200:
            text = b"".join([c async for c in body])[:1000].decode(errors="replace")
            raise ProviderFailed(f"{session.address} answered HTTP {status}: {text}")
        buffer = b""
        async for chunk in body:
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                event, data = "message", ""
                for raw in block.decode().splitlines():
                    if raw.startswith("event:"):
                        event = raw[6:].strip()
                    elif raw.startswith("data:"):
                        data += raw[5:].strip()
                if data:
                    yield event, json.loads(data)
    finally:
        writer.close()


async def _line(reader: asyncio.StreamReader) -> str:
    data = await asyncio.wait_for(reader.readline(), STREAM_IDLE_S)
    if not data:
        raise ProviderFailed("the connection closed")
    return data.decode("latin-1").rstrip("\r\n")


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size = int((await _line(reader)).split(";")[0], 16)
        if size == 0:
            return
        data = await asyncio.wait_for(reader.readexactly(size + 2), STREAM_IDLE_S)
        yield data[:-2]


async def _plain(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while data := await asyncio.wait_for(reader.read(65536), STREAM_IDLE_S):
        yield data
