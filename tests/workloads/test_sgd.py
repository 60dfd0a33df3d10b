"""The long-running ``sgd`` kind: deterministic segments, the bill from the spec alone,
checkpoints checked before a segment runs. (Real nodes run it in
``tests/network/test_long_jobs.py``.)"""

from __future__ import annotations

import asyncio
import hashlib
import pickle
from typing import Any

import numpy as np
import pytest

from idlegrid import InvalidInput
from idlegrid.protocol import array_from_npy, npy_bytes
from idlegrid.workloads import (
    LongWorkload,
    SgdWorkload,
    flops_per_step,
    get_workload,
    sgd_dataset,
    sgd_steps,
)
from idlegrid.workloads._kind_sgd import run

FEATURES, CLASSES = 4, 3


def data(n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, CLASSES, n)
    return rng.normal(size=(n, FEATURES)) + y[:, None], y


def fields(**overrides: Any) -> dict[str, Any]:
    base = {
        "data": "a" * 64,
        "features": FEATURES,
        "classes": CLASSES,
        "start": 0,
        "steps": 10,
        "batch": 8,
        "lr": 0.1,
        "seed": 1,
    }
    return {**base, **overrides}


class Node:
    """A node's blobs, for ``check`` and ``prepare``."""

    metered = False
    max_blob_bytes = 2**20
    max_model_bytes = 2**20

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    def blob_size(self, digest: str) -> int:
        return len(self.blobs[digest])

    def blob(self, digest: str) -> bytes:
        return self.blobs[digest]

    def blob_path(self, digest: str) -> str | None:
        return None

    def model_known(self, digest: str) -> bool:
        return False

    async def model_cost(self, digest: str) -> Any:
        raise AssertionError("sgd names no model")


class Sink:
    """A provider's blob store, as a run's plan uploads to it."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def inline_room(self) -> int:
        return 0

    async def put_blob(self, data: bytes, *, digest: str | None = None) -> str:
        digest = digest or hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    async def put_shared(self, data: bytes, digest: str) -> None:
        self.blobs[digest] = data


class Host:
    def __init__(self) -> None:
        self.memo: dict[Any, Any] = {}

    async def fetch_blob(self, digest: str) -> bytes:
        raise AssertionError("sgd fetches no blob")


def test_sgd_is_registered_as_a_long_kind() -> None:
    # Execute
    kind = get_workload("sgd")

    # Assert
    assert isinstance(kind, LongWorkload) and kind.long
    assert {"data", "state", "start", "steps", "batch", "lr", "seed"} <= set(
        kind.schema()["properties"]
    )


def test_segments_compose_into_the_uninterrupted_run() -> None:
    # Prepare
    x, y = data()
    w0 = np.zeros((FEATURES + 1, CLASSES))
    opts: dict[str, Any] = {"batch": 8, "lr": 0.1, "seed": 5}

    # Execute
    whole = sgd_steps(w0, x, y, start=0, steps=30, **opts)
    first = sgd_steps(w0, x, y, start=0, steps=12, **opts)
    rest = sgd_steps(first, x, y, start=12, steps=18, **opts)

    # Assert
    assert np.array_equal(whole, rest)
    assert not np.array_equal(whole, w0)


def test_worker_runs_a_segment_from_its_checkpoint() -> None:
    # Prepare
    x, y = data()
    spec = SgdWorkload().parse(fields(start=4, steps=6))
    state = np.full((FEATURES + 1, CLASSES), 0.01)
    payload = pickle.dumps(
        {"spec": spec.model_dump(), "data": sgd_dataset(x, y), "state": npy_bytes(state)}
    )

    # Execute
    out = array_from_npy(run(payload))

    # Assert
    want = sgd_steps(state, x, y, start=4, steps=6, batch=8, lr=0.1, seed=1)
    assert np.array_equal(out, want)


def test_units_come_from_the_spec() -> None:
    # Prepare
    kind = SgdWorkload()

    # Execute
    units = kind.units(kind.parse(fields(steps=7, batch=8)))

    # Assert
    assert units == 7 * flops_per_step(8, FEATURES, CLASSES)
    assert flops_per_step(8, FEATURES, CLASSES) == 4 * 8 * 5 * 3 + 5 * 8 * 3 + 2 * 5 * 3


@pytest.mark.parametrize(
    "bad",
    [{"data": "xyz"}, {"steps": 0}, {"classes": 1}, {"lr": 0}, {"state": "A" * 64}, {"oops": 1}],
)
def test_bad_specs_are_refused(bad: dict[str, Any]) -> None:
    # Execute / Assert
    with pytest.raises(InvalidInput):
        SgdWorkload().parse(fields(**bad))


def test_node_refuses_a_checkpoint_or_data_set_that_does_not_fit() -> None:
    # Prepare
    x, y = data()
    dataset = sgd_dataset(x, y)
    wrong_state = npy_bytes(np.zeros((FEATURES + 1, CLASSES), dtype=np.float32))
    narrow = sgd_dataset(x[:, :2], y)
    node = Node({"a" * 64: dataset, "b" * 64: wrong_state, "c" * 64: narrow})
    kind = SgdWorkload()

    # Execute / Assert
    ok = asyncio.run(kind.prepare(kind.parse(fields()), node))
    assert ok.rows == FEATURES + 1 and ok.units == kind.units(kind.parse(fields()))
    with pytest.raises(InvalidInput, match="checkpoint"):
        asyncio.run(kind.prepare(kind.parse(fields(state="b" * 64)), node))
    with pytest.raises(InvalidInput, match="data set"):
        asyncio.run(kind.prepare(kind.parse(fields(data="c" * 64)), node))


def test_plan_splits_a_run_into_segments_and_uploads_checkpoints() -> None:
    # Prepare
    x, y = data()
    kind = SgdWorkload()
    sink = Sink()
    state = npy_bytes(np.zeros((FEATURES + 1, CLASSES)))

    async def plan_and_fields() -> tuple[Any, dict[str, Any], dict[str, Any]]:
        plan = await kind.start(Host(), x=x, y=y, steps=25, segment_steps=10)
        await plan.upload(sink)
        segments = plan.segments()
        first = await plan.fields(segments[0], None, sink)
        later = await plan.fields(segments[1], state, sink)
        return plan, first, later

    # Execute
    plan, first, later = asyncio.run(plan_and_fields())

    # Assert
    assert [(s.start, s.steps) for s in plan.segments()] == [(0, 10), (10, 10), (20, 5)]
    assert [s.start for s in plan.segments(20)] == [20]
    assert "state" not in first and first["data"] in sink.blobs
    assert sink.blobs[later["state"]] == state
    assert plan.metrics(state)["loss"] == pytest.approx(np.log(CLASSES))


@pytest.mark.parametrize(
    "options",
    [{}, {"steps": 5}, {"steps": 5, "segment_steps": 0}, {"steps": 5, "segment_steps": 2, "k": 1}],
)
def test_a_run_with_bad_options_is_refused_before_any_segment(options: dict[str, Any]) -> None:
    # Prepare
    x, y = data()

    # Execute / Assert
    with pytest.raises(InvalidInput):
        asyncio.run(SgdWorkload().start(Host(), x=x, y=y, **options))


def test_a_long_kind_is_not_run_as_a_batch() -> None:
    # Execute / Assert
    with pytest.raises(InvalidInput, match="long-running"):
        asyncio.run(SgdWorkload().plan(np.zeros(3), Host()))
