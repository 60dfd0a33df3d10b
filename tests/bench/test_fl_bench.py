"""``idlegrid bench fl`` end to end, small: 3 edge nodes, 2 rounds; every figure the issue
names is there and in range, and idlegrid's rounds match Flower's on the same seeds."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("torch")
pytest.importorskip("flwr")

from idlegrid.bench._fl import bench_fl
from idlegrid.chain import find_anvil

FIGURES = (
    "accuracy", "flower_accuracy", "centralized_accuracy", "rounds_to_target",
    "flower_rounds_to_target", "seconds_per_round", "flower_seconds_per_round",
    "bytes_per_client_round",
)  # fmt: skip
MAIN_ONLY = ("secagg_overhead", "byzantine_drop", "dp_epsilon", "dp_accuracy")


def test_bench_fl_prints_every_figure_in_range() -> None:
    if find_anvil() is None:
        pytest.fail("anvil is not installed: run `npm install` in the idlegrid checkout")

    # Execute (the heavy runs small too: their figure is there, not its size)
    result = bench_fl(clients=3, rounds=2, epochs=1, attackers=1, heavy_epochs=2, heavy_rounds=2)

    # Assert
    for key in FIGURES + MAIN_ONLY + ("alpha_0_1", "targets", "how"):
        assert key in result, key
    for key in FIGURES:
        assert key in result["alpha_0_1"], key
    for figures in (result, result["alpha_0_1"]):
        for key in ("accuracy", "flower_accuracy", "centralized_accuracy"):
            assert 0 <= figures[key] <= 1, key
        for key in ("rounds_to_target", "flower_rounds_to_target"):
            assert figures[key] is None or 1 <= figures[key] <= 2, key
        assert figures["seconds_per_round"] > 0 and figures["flower_seconds_per_round"] > 0
        assert figures["bytes_per_client_round"] > 0
        # the same parts, seeds and FedAvg: idlegrid's global model tracks Flower's
        assert figures["accuracy"] == pytest.approx(figures["flower_accuracy"], abs=0.01)
    assert result["secagg_overhead"] > 0 and result["secagg_overhead_heavy"] > 0
    assert -1 <= result["byzantine_drop"] <= 1
    assert 0 <= result["dp_accuracy"] <= 1
    assert result["dp_epsilon"] > 0 and math.isfinite(result["dp_epsilon"])
    assert set(result["targets"]) == {
        "accuracy_ge_flower", "accuracy_ge_centralized_minus_0_01", "byzantine_drop_le_0_02",
        "secagg_overhead_le_1_5",
    }  # fmt: skip
    assert all(isinstance(v, bool) for v in result["targets"].values())
    assert result["how"]["clients"] == 3 and result["how"]["rounds"] == 2
    assert "2 local epochs, 2 rounds" in result["how"]["secagg"]
    assert "over the network" in result["how"]["byzantine"]["how"]
    assert 0 <= result["fedavg_attacked_accuracy"] <= 1
    assert 1 <= result["dp_rounds"] <= 2
