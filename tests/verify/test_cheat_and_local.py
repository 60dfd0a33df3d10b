"""The cheat aid's lies (a testing aid on the node) and the local runner a client audits
with: each lie has the honest dtype and shape but is not close enough; the local
runner gives what a node gives."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import numpy as np
import pytest

from idlegrid.provider._cheat import CHEAT_MODES, TRAIN_MODES, Cheat
from idlegrid.verify import LocalRunner
from idlegrid.workloads import get_workload, train_digits_model

ONNX = get_workload("onnx")


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _load(raw: bytes) -> np.ndarray:
    array: np.ndarray = np.load(io.BytesIO(raw), allow_pickle=False)
    return array


@pytest.mark.parametrize("mode", [m for m in CHEAT_MODES if m not in TRAIN_MODES])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_every_lie_has_the_shape_and_dtype_but_is_not_close_enough(
    mode: str, dtype: type[np.generic]
) -> None:
    # Prepare: a cheater on every job; stale needs an older output to replay
    cheat = Cheat(1.0, mode, seed=3)
    rng = np.random.default_rng(0)
    older = (rng.random((5, 10)) * 9).astype(dtype)
    honest = (rng.random((8, 10)) * 9 + 1).astype(dtype)
    cheat.tamper(ONNX, _npy(older))

    # Execute
    lie = _load(cheat.tamper(ONNX, _npy(honest)))

    # Assert
    assert (lie.dtype, lie.shape) == (honest.dtype, honest.shape)
    assert not ONNX.close_enough(honest, lie)


@pytest.mark.parametrize("mode", TRAIN_MODES)
def test_training_fabrication_leaves_other_outputs_alone(mode: str) -> None:
    """The training modes fabricate in the worker (``train_steps``): the node's outputs
    pass untouched, and the worker is told how to fabricate."""
    cheat = Cheat(1.0, mode, seed=5)
    honest = _npy(np.arange(12, dtype=np.float32).reshape(3, 4))
    assert cheat.tamper(None, honest) == honest
    assert cheat.fabrication() == {"mode": mode, "rate": 1.0, "seed": 5}
    assert Cheat(1.0, "random").fabrication() is None


def test_the_rate_and_the_honest_start() -> None:
    # Prepare: 30 % after 50 honest jobs, seeded
    cheat = Cheat(0.3, "skip", after=50, seed=1)
    honest = _npy(np.ones((2, 3), dtype=np.float32))

    # Execute
    answers = [cheat.tamper(ONNX, honest) for _ in range(1050)]

    # Assert
    assert all(a == honest for a in answers[:50])
    assert 240 <= cheat.lies <= 360 and sum(a != honest for a in answers) == cheat.lies


def test_the_same_seed_lies_on_the_same_jobs() -> None:
    # Prepare
    honest = _npy(np.ones((2, 3), dtype=np.float32))

    a, b = Cheat(0.5, "random", seed=9), Cheat(0.5, "random", seed=9)

    # Execute
    first = [a.tamper(ONNX, honest) for _ in range(20)]
    second = [b.tamper(ONNX, honest) for _ in range(20)]

    # Assert
    assert first == second and a.lies > 0


@pytest.mark.parametrize("kw", [{"rate": 1.5, "mode": "random"}, {"rate": 0.1, "mode": "lie"}])
def test_bad_settings_are_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Cheat(**kw)


class _Host:
    def __init__(self) -> None:
        self.memo: dict[Any, Any] = {}

    async def fetch_blob(self, digest: str) -> bytes:
        raise AssertionError("the model is given as bytes")


def test_the_local_runner_runs_a_job_as_a_node_does() -> None:
    # Prepare
    model, _, x, _, _ = train_digits_model("logreg")
    plan = asyncio.run(ONNX.plan(x, _Host(), model=model))
    local = LocalRunner()

    # Execute
    try:
        out = asyncio.run(local.run(plan, x[:9]))
    finally:
        local.close()

    # Assert: the labels onnxruntime gives here
    from idlegrid.workloads import OnnxRunner

    assert np.array_equal(out, OnnxRunner(threads=1).run_first(model, x[:9]))
