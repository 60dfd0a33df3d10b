"""The calibrated tolerances: honest runs with 1, 2 and 4 onnxruntime threads always
agree, by a wide margin, and the ``noise`` cheat (just beyond the tolerance) never does.
"""

from __future__ import annotations

import numpy as np
import pytest

from idlegrid.verify import Calibration, calibrate, headroom, just_beyond
from idlegrid.workloads import get_workload


@pytest.fixture(scope="module")
def calibrations() -> dict[str, Calibration]:
    return {c.kind: c for c in calibrate(embed=True)}


@pytest.mark.parametrize("kind", ["onnx", "embed"])
def test_honest_runs_with_1_2_4_threads_agree_with_a_wide_margin(
    calibrations: dict[str, Calibration], kind: str
) -> None:
    # Execute
    calibration = calibrations[kind]

    # Assert: every run agrees, and its difference could grow 100x and still agree
    assert {"threads=1", "threads=2", "threads=4"} <= set(calibration.runs)
    assert calibration.agree
    assert calibration.headroom >= 100
    assert calibration.max_abs < 1e-6


@pytest.mark.parametrize("kind", ["onnx", "embed"])
def test_noise_just_beyond_the_tolerance_is_refused(kind: str) -> None:
    # Prepare: an output shaped like the kind's (unit rows for embed, probabilities)
    workload = get_workload(kind)
    rng = np.random.default_rng(7)
    honest = rng.random((32, 10 if kind == "onnx" else 384), dtype=np.float32)
    honest /= np.linalg.norm(honest, axis=1, keepdims=True)

    # Execute
    noisy = [just_beyond(workload, honest, np.random.default_rng(seed)) for seed in range(5)]

    # Assert: refused, yet within 2x of what would pass (half of it passes)
    for cheat in noisy:
        assert not workload.close_enough(honest, cheat)
        half = (honest + (cheat.astype(np.float64) - honest) / 2).astype(np.float32)
        assert workload.close_enough(honest, half)


def test_integer_outputs_differ_by_one_element() -> None:
    # Prepare
    onnx = get_workload("onnx")
    labels = np.arange(10, dtype=np.int64)

    # Execute
    cheat = just_beyond(onnx, labels, np.random.default_rng(0))

    # Assert
    assert not onnx.close_enough(labels, cheat)
    assert int(np.sum(cheat != labels)) == 1


def test_headroom_of_equal_and_of_refused_results() -> None:
    # Prepare
    onnx = get_workload("onnx")
    a = np.ones(4, dtype=np.float32)

    # Execute / Assert
    assert headroom(onnx, a, a.copy()) == float("inf")
    assert headroom(onnx, a, a + 1) == 0.0
    assert 1 <= headroom(onnx, a, a + np.float32(1e-6)) < float("inf")
