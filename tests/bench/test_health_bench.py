"""``idlegrid bench health`` end to end, small: one node on anvil counts a new model and
runs a heavy job while a prober process asks ``/v1/health``; every figure is there and
answers came while the node was busy with each (their latency is measured, not asserted)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from idlegrid.bench._health import IDLE_PROBES
from idlegrid.chain import find_anvil
from idlegrid.cli import app


def test_bench_health_prints_every_figure_and_answers_while_busy() -> None:
    if find_anvil() is None:
        pytest.fail("anvil is not installed: run `npm install` in the idlegrid checkout")

    # Execute
    result = CliRunner().invoke(
        app, ["bench", "health", "--json", "--adds", "5000", "--rows", "8192"]
    )

    # Assert: the figures, and answers in each phase
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    for key in ("health_max_ms", "health_p99_ms", "answers_busy", "targets", "phases", "method"):
        assert key in figures, key
    phases = figures["phases"]
    assert phases["idle"]["answers"] == phases["idle"]["probes"] == IDLE_PROBES
    for name in ("counting", "heavy"):
        phase = phases[name]
        # the node said it was counting (running) right after these answers
        assert 1 <= phase["answers"] <= phase["probes"], (name, phase)
        assert 0 < phase["p50_ms"] <= phase["p99_ms"] <= phase["max_ms"]
    assert figures["answers_busy"] == phases["counting"]["answers"] + phases["heavy"]["answers"]
    assert figures["health_max_ms"] == max(phases["counting"]["max_ms"], phases["heavy"]["max_ms"])
    targets = figures["targets"]
    assert targets["health_max_ms_met"] == (
        figures["health_max_ms"] <= targets["health_max_ms_max"]
    )
    assert figures["method"]["adds"] == 5000 and figures["method"]["rows"] == 8192
    assert figures["method"]["shards"] >= 1


@pytest.mark.parametrize("flag", [["--adds", "0"], ["--rows", "-1"], ["--interval-ms", "-5"]])
def test_bench_health_refuses_bad_sizes_before_starting_anything(flag: list[str]) -> None:
    result = CliRunner().invoke(app, ["bench", "health", "--json", *flag])
    assert result.exit_code == 2
    assert "must be positive" in result.output
