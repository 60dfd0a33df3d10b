"""``idlegrid bench train`` end to end, small: every figure the issue names is printed, an
honest run is never flagged (at 1, 2 and 4 threads), and a provider fabricating intervals
is caught and slashed when the check covers every interval."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from idlegrid.bench import run_train
from idlegrid.chain import find_anvil


def test_bench_train_prints_the_figures_and_catches_the_cheater() -> None:
    if find_anvil() is None:
        pytest.fail("anvil is not installed: run `npm install` in the idlegrid checkout")

    # Execute: a tiny main job; trial runs of 64 one-step intervals, all 64 checked
    result = run_train(
        steps=40, batch=32, segment_steps=20, checks=64, trials=1, honest_trials=1,
        trial_steps=64, cheat_rate=0.2,
    )  # fmt: skip

    # Assert
    for key in (
        "throughput_ratio", "verify_fraction", "detection_rate", "false_positives",
        "final_accuracy", "local_accuracy",
    ):  # fmt: skip
        assert key in result, key
    assert result["false_positives"] == 0
    assert result["honest_verifications"]["main_run"] == {"1": True, "2": True, "4": True}
    assert result["detection_rate"] == 1.0 and result["slashed"] is True
    assert result["throughput_ratio"] > 0 and result["verify_fraction"] >= 0
    assert 0 <= result["final_accuracy"] <= 1 and 0 <= result["local_accuracy"] <= 1
    assert set(result["modes"]) == {"skip-steps", "interpolate"}
    assert result["method"]["checks"] == 64 and "Method" not in result["method"]["text"]
