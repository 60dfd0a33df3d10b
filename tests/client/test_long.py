"""The client's driver of long runs (``client/_long.py``) against fake providers: each
segment paid to the provider that delivered it, a fail-over going on from the last
checkpoint, a run with no provider left ending with its checkpoint kept.
(Real nodes run it in ``tests/network/test_long_jobs.py``.)"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from idlegrid.client import Failover, NoProviders, Progress, ProviderFailed
from idlegrid.client._long import Run, drive
from idlegrid.workloads import SgdWorkload, sgd_steps
from idlegrid.workloads._kind_sgd import run as sgd_worker

PRICE = 3
STEPS, SEGMENT = 40, 10


@dataclass(frozen=True)
class FakeCandidate:
    address: str
    unit_price: int = PRICE


@dataclass
class FakeSession:
    """A provider that runs segments with the real worker task, until it dies."""

    address: str
    dies_after: int | None = None  # segments it delivers before it dies
    blobs: dict[str, bytes] = field(default_factory=dict)
    delivered: int = 0
    vouchers: int = 0

    @property
    def candidate(self) -> FakeCandidate:
        return FakeCandidate(self.address)

    async def put_shared(self, data: bytes, digest: str) -> None:
        self.blobs[digest] = data

    async def put_blob(self, data: bytes, *, digest: str | None = None) -> str:
        digest = digest or hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    async def job(self, reserve: Any, kind: str, fields: dict[str, Any], *_: Any) -> np.ndarray:
        if self.dies_after is not None and self.delivered >= self.dies_after:
            raise ProviderFailed(f"{self.address}: connection refused")
        import pickle

        from idlegrid.protocol import array_from_npy

        spec = SgdWorkload().parse(fields)
        state = self.blobs[spec.state] if spec.state else None
        job = {"spec": spec.model_dump(), "data": self.blobs[spec.data], "state": state}
        self.delivered += 1
        return array_from_npy(sgd_worker(pickle.dumps(job)))

    async def send_voucher(self, channel: Any) -> None:
        self.vouchers += 1


class FakeChannels:
    def __getitem__(self, provider: str) -> None:
        return None

    async def acquire(self, session: Any, amount: int, *, reserve: bool = True) -> None:
        return None


class FakeClient:
    """What the driver uses of ``Client``: discovery, sessions, channels."""

    def __init__(self, sessions: list[FakeSession]) -> None:
        self.sessions = {s.address: s for s in sessions}
        self.weights = None
        self._channels = FakeChannels()

    async def _discover(self, kind: str, *, force: bool = False) -> list[FakeCandidate]:
        return [s.candidate for s in self.sessions.values()]

    def _session(self, candidate: FakeCandidate) -> FakeSession:
        return self.sessions[candidate.address]

    def _reserve(self, session: FakeSession) -> None:
        return None


@pytest.fixture(autouse=True)
def first_is_best(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("idlegrid.client._long.rank", lambda found, weights: list(found))


def start(sessions: list[FakeSession], resume: tuple[int, bytes] | None = None) -> Run:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 40)
    x = rng.normal(size=(40, 4)) + y[:, None]

    class Host:
        def __init__(self) -> None:
            self.memo: dict[Any, Any] = {}

        async def fetch_blob(self, digest: str) -> bytes:
            raise AssertionError

    plan = asyncio.run(SgdWorkload().start(Host(), x=x, y=y, steps=STEPS, segment_steps=SEGMENT))
    return Run(plan)


def test_a_failover_goes_on_from_the_last_checkpoint_and_pays_each_its_part() -> None:
    # Prepare
    a, b = FakeSession("0xa", dies_after=2), FakeSession("0xb")
    run = start([a, b])
    client = FakeClient([a, b])

    # Execute
    result = asyncio.run(drive(client, run, None))  # type: ignore[arg-type]
    events = list(run.events())

    # Assert
    plan: Any = run.plan
    want = sgd_steps(
        np.zeros((5, 3)), plan.x, plan.y, start=0, steps=STEPS, batch=32, lr=0.1, seed=0
    )
    assert np.array_equal(result.output, want)
    assert [type(e) for e in events] == [Progress, Progress, Failover, Progress, Progress]
    assert events[2] == Failover(20, "0xa", "0xa: connection refused")
    units = plan.segment(0, SEGMENT).units
    assert result.segments == {"0xa": 2, "0xb": 2}
    assert result.paid == {"0xa": 2 * units * PRICE, "0xb": 2 * units * PRICE}
    assert (a.vouchers, b.vouchers) == (2, 2)


def test_a_run_with_no_provider_left_keeps_its_checkpoint() -> None:
    # Prepare
    a = FakeSession("0xa", dies_after=1)
    run = start([a])

    # Execute / Assert
    with pytest.raises(NoProviders):
        asyncio.run(drive(FakeClient([a]), run, None))  # type: ignore[arg-type]
    assert run.checkpoint is not None and run.checkpoint[0] == SEGMENT
    assert [type(e) for e in run.events()] == [Progress, Failover]


def test_a_resumed_run_starts_at_its_checkpoint() -> None:
    # Prepare
    a = FakeSession("0xa")
    first = start([a])
    asyncio.run(drive(FakeClient([a]), first, None))  # type: ignore[arg-type]
    whole = first.checkpoint
    a2 = FakeSession("0xa2", dies_after=1)
    half = start([a2])
    with pytest.raises(NoProviders):
        asyncio.run(drive(FakeClient([a2]), half, None))  # type: ignore[arg-type]
    b = FakeSession("0xb")
    resumed = start([b])

    # Execute
    result = asyncio.run(drive(FakeClient([b]), resumed, half.checkpoint))  # type: ignore[arg-type]

    # Assert
    assert whole is not None and result.checkpoint == whole[1]
    assert result.segments == {"0xb": STEPS // SEGMENT - 1}
