"""`idlegrid bench dispatch`: every figure is there and sane (its timings are not tested)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from idlegrid.bench import run_dispatch
from idlegrid.bench._dispatch import mlp_model
from idlegrid.bench._ray import NOT_INSTALLED, run_ray
from idlegrid.chain import find_anvil
from idlegrid.workloads import OnnxRunner, count_flops, train_digits_model

ANVIL_MISSING = "anvil is not installed: run `npm install` in the idlegrid checkout"


@pytest.mark.anvil
def test_run_dispatch_reports_every_figure() -> None:
    # Prepare: the benchmark runs on anvil; without it this test fails, it never skips
    if find_anvil() is None:
        pytest.fail(ANVIL_MISSING)
    progress: list[str] = []

    # Execute
    result = run_dispatch(
        latency_jobs=20,
        throughput_jobs=40,
        warmup=5,
        concurrency=(4,),
        concurrency_4=(2,),
        batch_seconds=0.05,
        runs=1,
        ray=False,
        progress=progress.append,
    )

    # Assert
    for key in ("p50_ms", "p99_ms", "jobs_per_s", "jobs_per_s_4", "batch_ratio"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["p99_ms"] >= result["p50_ms"]
    assert result["ray"] == {"error": "skipped (ray=False)"}
    assert set(result["targets"]) >= {"p50_ms_met", "jobs_per_s_met", "batch_ratio_met"}
    assert all(isinstance(result["targets"][k], bool) for k in result["targets"] if "met" in k)
    assert result["latency"]["jobs"] == 20
    assert result["client_infer"]["jobs"] == 20
    one = result["throughput"]["providers_1"]["sweep"]
    four = result["throughput"]["providers_4"]["sweep"]
    assert [p["concurrency"] for p in one] == [4] and one[0]["jobs_by_provider"] == [40]
    assert four[0]["in_flight_total"] == 2 * len(four[0]["jobs_by_provider"]) > 2
    assert sum(four[0]["jobs_by_provider"]) == 40
    assert result["batch"]["network_shards"] == 4
    assert result["batch"]["rows"] >= 8
    assert result["counts"]["failovers"] == 0
    nodes = result["counts"]["nodes"]
    assert len(nodes) == 4
    assert sum(n["jobs_ok"] for n in nodes) == result["counts"]["jobs_accepted"]
    assert all(n["jobs_failed"] == 0 for n in nodes)
    method = result["method"]
    assert method["machine"]["cores"] >= 1 and method["providers"] == 4
    assert "Method" not in method["text"] and "p50_ms" in method["text"]
    assert progress[-1] == "stopping the devnet"
    batch = result["batch"]
    assert len(batch["local_s"]) == len(batch["network_s"]) == len(batch["network_4_s"]) == 1
    ratio = batch["network_median_s"] / batch["local_median_s"]
    assert batch["ratio"] == pytest.approx(ratio, rel=0.01)


def test_ray_missing_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    model, _, x, _, _ = train_digits_model()

    # Execute
    figures = run_ray(
        model, x[:4], latency_jobs=2, throughput_jobs=2, warmup=1, concurrency=2, cpus=2
    )

    # Assert
    assert figures == {"error": NOT_INSTALLED}


def test_mlp_model_runs_and_is_counted() -> None:
    # Prepare
    model = mlp_model(inputs=8, width=16, layers=2, outputs=3)

    # Execute
    y = OnnxRunner(threads=1).run_first(model, np.ones((5, 8), dtype=np.float32))

    # Assert
    assert y.shape == (5, 3) and y.dtype == np.float32
    # Gemm 2·K·N + bias N per layer, Relu 1 per element: 8→16→16→3
    assert count_flops(model) == (2 * 8 * 16 + 16 + 16) + (2 * 16 * 16 + 16 + 16) + (2 * 16 * 3 + 3)
