"""A node-driven run's events, driven through a fake provider transport.

Each progress event carries a segment's signed result; the client checks it exactly as
it checks a job's result before it pays. Every lie below ends with nothing accepted
into the channel (no voucher grows) and the run failing over (``ProviderFailed``) or
one clear ``PeerError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from idlegrid import PeerError
from idlegrid.chain import ChannelTerms
from idlegrid.client import (
    Candidate,
    ClientChannel,
    OutputSpec,
    ProviderFailed,
    ProviderSession,
)
from idlegrid.client._long import Failover, Progress, Run
from idlegrid.client._runs import _events
from idlegrid.protocol import (
    MARKET_DOMAIN_NAME,
    Account,
    Domain,
    node_domain,
    npy_bytes,
)
from idlegrid.workloads import LongPlan, LongWorkload, Segment, Spec

from .fake_provider import FakeProvider, Lies

CHAIN_ID = 31337
MARKET = "0x" + "42" * 20
PRICE = 3
UNITS = 500  # per segment
EXPECT = OutputSpec("weights", np.dtype(np.float64), (2,))
FIRST = {"start": 0, "steps": 2}  # the first segment's fields


class StepSpec(Spec):
    start: int
    steps: int
    state: str | None = None


class StepWorkload(LongWorkload[StepSpec]):
    """A long kind for these tests: a segment names where it starts and its steps."""

    name = "steps-test"
    Spec = StepSpec
    task = "tests:none"

    def units(self, spec: StepSpec, inputs: Any = None) -> int:
        return UNITS

    def outputs(self, spec: StepSpec, inputs: Any = None) -> OutputSpec:
        return EXPECT

    def close_enough(self, a: np.ndarray, b: np.ndarray) -> bool:
        return bool(np.array_equal(a, b))

    async def prepare(self, spec: StepSpec, node: Any) -> Any:
        raise NotImplementedError

    async def start(self, client: Any, **options: Any) -> LongPlan:
        raise NotImplementedError

    def next_fields(self, spec: StepSpec, checkpoint: str, total: int) -> dict[str, Any] | None:
        start = spec.start + spec.steps
        return None if start >= total else {"start": start, "steps": 2, "state": checkpoint}


class TwoStepPlan(LongPlan):
    """A run of four steps, two per segment; its checkpoint is one float64 [1, 2] row."""

    workload = StepWorkload()
    total_steps = 4
    segment_steps = 2

    def segment(self, start: int, steps: int) -> Segment:
        return Segment(start, steps, UNITS, 1, EXPECT)

    async def fields(self, segment: Segment, state: bytes | None, sink: Any) -> dict[str, Any]:
        return {}

    def metrics(self, state: bytes) -> dict[str, float]:
        return {"first": float(np.load(io.BytesIO(state))[0, 0])}


@dataclass
class Setup:
    provider: FakeProvider
    session: ProviderSession
    channel: ClientChannel

    def progress(self, step: int, seq: int, output: np.ndarray | None = None) -> bytes:
        """A progress event as a node sends it, with the segment's signed result."""
        out = np.full((1, 2), float(step)) if output is None else output
        fields: dict[str, Any] = dict(FIRST)
        if step > 2:  # the node derives the next segment from the last checkpoint
            previous = hashlib.sha256(npy_bytes(np.full((1, 2), float(step - 2)))).hexdigest()
            fields = {"start": step - 2, "steps": 2, "state": previous}
        digests = StepWorkload().digests(fields)
        result = self.provider.segment_result(self.channel.terms.id, seq, out, UNITS, digests)
        data = {
            "step": step,
            "total": 4,
            "units": UNITS * seq,
            "amount": UNITS * PRICE * seq,
            "checkpoint": "ab" * 32,
            "metrics": {"loss": 1.0 / step},
            "result": result,
        }
        return f"event: progress\ndata: {json.dumps(data)}\n\n".encode()

    def follow(self) -> tuple[int, list[Progress | Failover], Exception | None]:
        """Follow run ``r1`` to its end: the step reached, the events, what ended it."""
        run = Run(TwoStepPlan())
        result: Any = type("R", (), {"segments": {}, "paid": {}})()
        error: Exception | None = None
        step = 0
        try:
            step, _ = asyncio.run(
                _events(self.channel, run, self.session, "r1", 0, None, result, [0, 0], FIRST)
            )
        except (PeerError, ProviderFailed) as exc:
            error = exc
        run._events.put(None)
        return step, list(run.events(timeout=1)), error

    def state(self) -> tuple[Any, ...]:
        ch = self.channel
        return ch.voucher, ch.amount, ch.units, dict(ch.accepted), ch.prefix.count


@pytest.fixture
def setup() -> Setup:
    client, provider = Account.create(), Account.create()
    node = node_domain(CHAIN_ID, MARKET)
    market = Domain(MARKET_DOMAIN_NAME, CHAIN_ID, MARKET)
    fake = FakeProvider(provider, node, price=PRICE, flops_per_row=UNITS)
    candidate = Candidate(provider.address, "http://provider.test", PRICE, latency_ms=1.0)
    session = ProviderSession(client, candidate, node, market, fake, timeout_s=5.0)
    terms = ChannelTerms.new(client.address, provider.address, 10**9, int(time.time()) + 3600)
    channel = ClientChannel(terms, deposit=terms.deposit, expiry=terms.expiry)
    return Setup(fake, session, channel)


def test_an_honest_run_is_checked_paid_and_reported_segment_by_segment(setup: Setup) -> None:
    # Prepare: two segments, split across chunks as a network would, then "done"
    stream = setup.progress(2, 1) + b": keep-alive\n\n" + setup.progress(4, 2)
    setup.provider.stream_chunks = [stream[:70], stream[70:], b"event: done\ndata: {}\n\n"]

    # Execute
    step, events, error = setup.follow()

    # Assert: both segments accepted, vouchered (sent to the provider) and reported
    assert error is None and step == 4
    assert [e.step for e in events if isinstance(e, Progress)] == [2, 4]
    assert [e.metrics for e in events if isinstance(e, Progress)] == [
        {"first": 2.0},
        {"first": 4.0},
    ]
    assert setup.channel.amount == 2 * UNITS * PRICE and len(setup.channel.accepted) == 2
    assert [v.voucher.amount for v in setup.provider.vouchers] == [UNITS * PRICE, 2 * UNITS * PRICE]


def _wrong_shape(setup: Setup) -> bytes:
    return setup.progress(2, 1, output=np.zeros((1, 3)))


def _nan(setup: Setup) -> bytes:
    return setup.progress(2, 1, output=np.array([[np.nan, 1.0]]))


def _wrong_seq(setup: Setup) -> bytes:
    return setup.progress(2, 2)


def _wrong_step(setup: Setup) -> bytes:
    return setup.progress(3, 1)


def _not_json(setup: Setup) -> bytes:
    return b"event: progress\ndata: {not json\n\n"


def _no_result(setup: Setup) -> bytes:
    return b'event: progress\ndata: {"step": 2, "total": 4}\n\n'


LIES = [
    pytest.param(
        Lies(receipt_key=Account.create()), None, "receipt not signed", id="forged receipt"
    ),
    pytest.param(Lies(units=1), None, "bill of 501 units", id="units over the bill"),
    pytest.param(Lies(amount=1), None, "not 500 units at the agreed price", id="wrong amount"),
    pytest.param(Lies(wrong_result_hash=True), None, "result hash", id="result hash mismatch"),
    pytest.param(Lies(), _wrong_shape, r"shape \(1, 3\)", id="wrong shape"),
    pytest.param(Lies(), _nan, "NaN or infinite", id="NaN in the checkpoint"),
    pytest.param(Lies(), _wrong_seq, "seq 2, expected 1", id="not the next segment"),
    pytest.param(Lies(), _wrong_step, "step 3, not 2", id="wrong step"),
    pytest.param(
        Lies(digests=(b"\x01" * 32, b"\x02" * 32)),
        None,
        "another spec or other inputs",
        id="receipt names other work",
    ),
    pytest.param(Lies(), _not_json, "not JSON", id="event data not JSON"),
    pytest.param(Lies(), _no_result, "does not parse", id="event without a result"),
    pytest.param(Lies(stream_status=404), None, "HTTP 404", id="unknown run"),
]


@pytest.mark.parametrize(("lies", "event", "says"), LIES)
def test_a_lie_in_a_run_s_event_is_never_paid_for(
    setup: Setup, lies: Lies, event: Any, says: str
) -> None:
    # Prepare
    setup.provider.lies = lies
    first = event(setup) if event is not None else setup.progress(2, 1)
    setup.provider.stream_chunks = [first, b"event: done\ndata: {}\n\n"]
    before = setup.state()

    # Execute
    step, events, error = setup.follow()

    # Assert: nothing accepted, no voucher sent, one clear error
    assert error is not None, "the lie was accepted"
    assert re.search(says, str(error)), str(error)
    assert step == 0 and not [e for e in events if isinstance(e, Progress)]
    assert setup.state() == before and setup.provider.vouchers == []


def test_a_node_that_goes_quiet_or_hangs_up_is_failed_over(setup: Setup) -> None:
    # Prepare: one good segment, then silence past the idle limit
    setup.provider.stream_chunks = [setup.progress(2, 1), TimeoutError("quiet")]

    # Execute
    _, _, error = setup.follow()

    # Assert: the segment received is paid for; the run ends there with ProviderFailed
    assert isinstance(error, ProviderFailed) and "nothing on" in str(error)
    assert len(setup.channel.accepted) == 1 and len(setup.provider.vouchers) == 1

    # Execute: a stream that just ends
    setup.provider.stream_chunks = []
    _, _, error = setup.follow()
    assert isinstance(error, ProviderFailed) and "ended before the run" in str(error)


def test_an_event_over_the_size_limit_is_refused_without_buffering_it(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a node that sends one endless event
    import idlegrid.client._sse as sse

    monkeypatch.setattr(sse, "MAX_EVENT_BYTES", 1000)
    setup.provider.stream_chunks = [b"data: " + b"x" * 600, b"x" * 600, b"\n\n"]

    # Execute
    _, _, error = setup.follow()

    # Assert
    assert isinstance(error, PeerError) and "larger than 1000 bytes" in str(error)
    assert setup.provider.vouchers == []


def test_npy_bytes_is_what_the_run_keeps_as_its_checkpoint(setup: Setup) -> None:
    # Prepare
    setup.provider.stream_chunks = [setup.progress(2, 1), b"event: cancelled\ndata: {}\n\n"]

    # Execute
    run = Run(TwoStepPlan())
    result: Any = type("R", (), {"segments": {}, "paid": {}})()
    step, state = asyncio.run(
        _events(setup.channel, run, setup.session, "r1", 0, None, result, [0, 0], FIRST)
    )

    # Assert: a cancelled run ends where its last paid segment ended
    assert step == 2 and state == npy_bytes(np.full((1, 2), 2.0))
    assert run.checkpoint == (2, state) and result.paid == {setup.session.address: UNITS * PRICE}
