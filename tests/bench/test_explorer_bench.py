"""``idlegrid bench explorer`` end to end, small: a synthetic history indexed by the
index's own handlers, every figure printed, and what the views showed agrees with it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from idlegrid.cli import app

REDEMPTIONS, CHANNELS, PROVIDERS = 2_000, 40, 8


def test_bench_explorer_prints_every_figure_and_the_views_count_the_history() -> None:
    # Execute
    result = CliRunner().invoke(app, [
        "bench", "explorer", "--json", "--redemptions", str(REDEMPTIONS),
        "--channels", str(CHANNELS), "--providers", str(PROVIDERS), "--repeats", "2",
    ])  # fmt: skip

    # Assert: the figures, and the history as the views saw it
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    for key in ("overview_ms", "overview_kib", "providers_page_ms", "provider_ms",
                "earnings_ms", "index_events_per_s"):  # fmt: skip
        assert figures[key] > 0, key
    shown = figures["shown"]
    assert shown["jobs_total"] == 3 * REDEMPTIONS  # three jobs a redemption
    assert 0 < shown["jobs_last_hour"] < shown["jobs_total"]  # 500 blocks of 12 s
    assert shown["price_points"] == 500  # the latest only
    assert shown["providers_on_page"] == PROVIDERS
    # the busiest provider's page lists each of its redemptions (one channel in 8 is
    # its, fewer than the 500 listed), and its days add up to what the page says
    assert shown["provider_redemptions_listed"] == REDEMPTIONS // PROVIDERS
    assert shown["provider_days"] >= 1
    assert shown["provider_days_tokens"] == pytest.approx(shown["provider_earned_tokens"])
    assert shown["provider_earned_tokens"] == pytest.approx(REDEMPTIONS // PROVIDERS * 0.003)
    # registrations, activations and openings, then the redemptions
    assert figures["method"]["events_applied"] == 2 * PROVIDERS + CHANNELS + REDEMPTIONS


@pytest.mark.parametrize("flag", [["--providers", "0"], ["--redemptions", "-1"],
                                  ["--providers", "5", "--channels", "4"]])  # fmt: skip
def test_bench_explorer_refuses_counts_that_make_no_history(flag: list[str]) -> None:
    result = CliRunner().invoke(app, ["bench", "explorer", "--json", *flag])
    assert result.exit_code == 2
    assert "1 or more" in result.output
