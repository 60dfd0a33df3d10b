"""``idlegrid bench oracle`` end to end, small: 3 provider nodes, 2 requests honest and 2
with a liar; every figure the issue names is there, and the liar never sets the answer."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from idlegrid.bench._oracle import bench_oracle
from idlegrid.chain import find_anvil

FIGURES = ("gas_per_request", "latency_blocks", "latency_s", "request_gas")


def test_bench_oracle_prints_every_figure_and_the_liar_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if find_anvil() is None:
        pytest.fail("anvil is not installed: run `npm install` in the idlegrid checkout")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    # Execute
    result = bench_oracle(requests=2, zk_requests=1, providers=3)

    # Assert: the figures, honest and with a liar (who sits on every committee of 3)
    for key in (*FIGURES, "gas_zk", "prove_s", "quantisation_error", "targets", "how"):
        assert key in result, key
    assert list(tmp_path.glob("idlegrid-bench-oracle-*")) == []  # its devnet, removed
    wrong, alone, burst = result["with_wrong_provider"], result["alone"], result["burst"]
    assert result["gas_per_request"] == burst["gas_per_request"]
    for figures in (burst, wrong):
        # an ask past the 21,000 every transaction costs, and a share of a report
        assert figures["request_gas"] > 21_000 and figures["fulfill_gas_per_request"] > 0
        assert figures["gas_per_request"] > figures["request_gas"]
        assert 1 <= figures["requests_per_report"] <= 2
        assert figures["latency_blocks"] >= 1 and figures["latency_s"] > 0
        assert figures["answers_match"]
    # alone: two whole transactions a request
    assert alone["request_gas"] > 21_000 and alone["fulfill_gas"] > 21_000
    assert abs(alone["gas_per_request"] - alone["request_gas"] - alone["fulfill_gas"]) <= 1
    assert result["latency_blocks"] == alone["latency_blocks"] >= 1
    assert wrong["liar_on_committee"] == 2 and wrong["liar_named_outlier"] == 2
    # its outliers went to the dispute path; the referees there (one honest node each)
    # re-ran the model and found them wrong
    assert wrong["liar_disputed"] == 2 and wrong["liar_found_wrong"] == 2
    assert wrong["liar_slashed"] > 0
    assert not wrong["wrong_answer_delivered"]
    assert result["targets"]["wrong_answer_never_delivered"]
    # zero-knowledge: a proven answer, close to the float model
    assert result["gas_zk"] > result["gas_per_request"] / 2 and result["prove_s"] > 0
    assert 0 <= result["quantisation_error"] < 2e-3
