"""``idlegrid bench rewards`` end to end, small (6 clients, 2 rounds): every figure the
issue names is there, measured, and the games that are priced out stay so."""

from __future__ import annotations

import pytest

from idlegrid import InvalidInput
from idlegrid.bench._rewards import bench_rewards

FIGURES = (
    "free_rider_share", "noisy_vs_clean", "noisy30_vs_clean", "sybil_gain", "duplicate_gain",
    "rank_correlation", "overhead", "claim_gas",
)  # fmt: skip


def test_bench_rewards_prints_every_figure() -> None:
    pytest.importorskip("torch")

    # Execute
    result = bench_rewards(clients=6, rounds=2, seeds=2, players=2)

    # Assert: each figure a number; the free riders' four strategies, the sybil splits
    for key in (*FIGURES, "padded_sybil_gain", "targets", "anchors", "how"):
        assert key in result, key
    assert set(result["free_rider_by_strategy"]) == {"zero", "global", "noise", "stale"}
    assert set(result["sybil_gain_by_split"]) == {"2", "3", "10"}
    # a zero update and the global model sent back add exactly nothing
    assert result["free_rider_by_strategy"]["zero"] == 0.0
    assert result["free_rider_by_strategy"]["global"] == 0.0
    assert result["free_rider_share"] < 0.05
    assert 0 <= result["noisy_vs_clean"] < 1 and result["duplicate_gain"] > 0
    assert -1 <= result["rank_correlation"] <= 1 and result["overhead"] > 0
    assert -1 <= result["loo_agreement"] <= 1 and -1 <= result["loo_single_agreement"] <= 1
    assert sum(result["clean_shares"].values()) == pytest.approx(1.0)
    assert 21_000 < result["claim_gas"] < 200_000
    # two seeds: a figure is their mean, the free riders' share their worst
    seeds = result["by_seed"]
    assert set(seeds) == {"0", "1"} and result["seeds"] == 2
    for key in ("noisy_vs_clean", "duplicate_gain", "rank_correlation", "overhead"):
        assert result[key] == pytest.approx((seeds["0"][key] + seeds["1"][key]) / 2), key
        spread = result["spread"][key]
        assert spread["min"] <= result[key] <= spread["max"] and spread["sd"] >= 0
    assert result["free_rider_share"] == max(s["free_rider_share"] for s in seeds.values())
    for k in ("2", "3", "10"):
        each = [s["sybil_gain_by_split"][k] for s in seeds.values()]
        assert result["sybil_gain_by_split"][k] == pytest.approx(sum(each) / 2)
    # the same runs' values paid round by round: the same games' figures, summarised alike
    per_round = result["per_round"]
    for key in ("noisy_vs_clean", "duplicate_gain", "rank_correlation"):
        assert per_round[key] == pytest.approx(
            (seeds["0"]["per_round"][key] + seeds["1"]["per_round"][key]) / 2
        ), key
    assert per_round["free_rider_share"] < 0.05 and per_round["duplicate_gain"] > 0
    assert set(per_round["sybil_gain_by_split"]) == {"2", "3", "10"}
    assert (
        set(per_round["targets"]) <= set(result["targets"])
        and "clients 0 to 1" in result["how"]["games"]
    )
    # and paid by each round's leave-one-out on the FedAvg aggregate, alike
    by_claims = result["by_claims"]
    for key in ("duplicate_gain", "rank_correlation"):
        assert by_claims[key] == pytest.approx(
            (seeds["0"]["by_claims"][key] + seeds["1"]["by_claims"][key]) / 2
        ), key
    assert set(by_claims["targets"]) == set(per_round["targets"]) and "by_claims" in result["how"]


def test_leave_one_out_by_claims_follows_the_claimed_examples() -> None:
    import numpy as np

    pytest.importorskip("torch")
    from idlegrid.bench._rewards import _by_claims, _fedavg, _fits, _Setup

    # Arrange: one round's local fits of four clients
    s = _Setup(clients=4, alpha=0.5, rounds=1, seed=1)
    parts = s.parts("clean")
    updates, examples = _fits(s, s.start, 1, parts)

    # Execute: as claimed, and with client 0 claiming ten times its rows (same update)
    honest = _by_claims(s, updates, examples)
    inflated = _by_claims(s, updates, {**examples, 0: 10 * examples[0]})

    # Assert: the held-out loss without the client minus with everyone, everyone
    # weighed by the examples claimed: the same update claimed larger is worth another
    # amount (the claim is paid)
    for claimed, got in ((examples, honest), ({**examples, 0: 10 * examples[0]}, inflated)):
        for c in (0, 2):
            rest = {k: u for k, u in updates.items() if k != c}
            without = s.loss(_fedavg(rest, {k: claimed[k] for k in rest}).astype(np.float32))
            everyone = s.loss(_fedavg(updates, claimed).astype(np.float32))
            assert got[c] == pytest.approx(without - everyone)
    assert abs(inflated[0] - honest[0]) > 0.01 and abs(inflated[2] - honest[2]) > 0.001
    assert _by_claims(s, {0: updates[0]}, {0: examples[0]}) == {0: 0.0}


def test_bench_rewards_refuses_no_seeds_and_players_it_has_not() -> None:
    with pytest.raises(InvalidInput, match="seeds must be 1 or more"):
        bench_rewards(seeds=0)
    with pytest.raises(InvalidInput, match="players must be 1 to the 4 clients"):
        bench_rewards(clients=4, players=5)


def test_no_sybil_identity_shares_a_clients_local_fit_seed() -> None:
    pytest.importorskip("torch")
    from idlegrid.bench._rewards import _seat, _Setup
    from idlegrid.fl._partition import client_seed

    # Arrange: client 3 split into ten identities
    s = _Setup(clients=10, alpha=0.5, rounds=3, seed=0)
    idents = [ident for ident, _, _ in s.parts("sybil10", target=3)]

    # Execute: every identity's local-fit seed in every round
    seeds = [client_seed(s.seed, rnd, _seat(s, i)) for rnd in (1, 2, 3) for i in idents]

    # Assert: nineteen identities a round, no seed twice (in a round or across rounds)
    assert len(idents) == 19 and len(set(seeds)) == len(seeds)


def test_padded_identities_reach_the_median_norm_with_noise_orthogonal_to_their_step() -> None:
    import numpy as np

    pytest.importorskip("torch")
    from idlegrid.bench._rewards import SYBIL, _pad, _Setup

    # Arrange: three honest steps (norms 1, 2, 3) and two identities (0.5, and 4: longer)
    s = _Setup(clients=3, alpha=0.5, rounds=1, seed=0)
    params = np.zeros(8, np.float32)
    unit = np.eye(8, dtype=np.float32)
    updates = {0: unit[0] * 1, 1: unit[1] * 2, 2: unit[2] * 3,
               SYBIL: unit[3] * 0.5, SYBIL + 1: unit[4] * 4}  # fmt: skip
    before = {c: u.copy() for c, u in updates.items()}

    # Execute
    _pad(s, 1, params, updates)

    # Assert: the short identity padded to the honest median (2), its step kept; the
    # others untouched
    padded = updates[SYBIL]
    assert np.linalg.norm(padded) == pytest.approx(2.0, rel=1e-5)
    assert float(padded @ unit[3]) == pytest.approx(0.5, abs=1e-5)
    assert not np.allclose(padded, before[SYBIL])
    for c in (0, 1, 2, SYBIL + 1):
        assert np.array_equal(updates[c], before[c])


def test_secure_runs_pay_only_their_cohorts_from_their_aggregates() -> None:
    import numpy as np

    pytest.importorskip("torch")
    from idlegrid.bench._rewards import SYBIL, _Setup
    from idlegrid.bench._rewards_secure import COHORT, ROUNDS_FACTOR, secure_run

    # Arrange: 8 clients, cohorts of 5, 2 clear rounds (so 4 secure ones)
    s = _Setup(clients=8, alpha=0.5, rounds=2, seed=3)

    # Execute
    clean = secure_run(s)
    zero = secure_run(s, rider="zero")
    split = secure_run(s, "sybil3", target=2)

    # Assert: shares of a pool; no more identities paid than the rounds' seats; the
    # player's three identities paid in place of it
    for run in (clean, zero, split):
        assert sum(run["shares"].values()) == pytest.approx(1.0)
        assert all(v >= 0 for v in run["shares"].values())
        assert len(run["shares"]) <= COHORT * ROUNDS_FACTOR * s.rounds
        assert np.isfinite(run["loss"]) and run["train_s"] > 0
    assert set(split["shares"]) <= {0, 1, 3, 4, 5, 6, 7, SYBIL, SYBIL + 1, SYBIL + 2}
    assert set(clean["shares"]) <= set(range(8)) and 2 not in split["shares"]
    # the same cohorts (seeded by round): the free rider changes what is paid, not who
    assert set(zero["shares"]) == set(clean["shares"]) and zero["shares"] != clean["shares"]


def test_bench_rewards_secure_reports_the_games_under_secure_aggregation() -> None:
    pytest.importorskip("torch")

    # Execute
    result = bench_rewards(clients=6, rounds=2, seeds=1, players=1, secure=True)

    # Assert: the games' figures and their targets, for secure runs; none for padding
    secure = result["secure"]
    for key in ("free_rider_share", "noisy_vs_clean", "noisy30_vs_clean", "sybil_gain",
                "duplicate_gain", "rank_correlation", "overhead", "targets", "how"):  # fmt: skip
        assert key in secure, key
    assert (
        "padded_sybil_gain" not in secure and "padded_sybil_gain_le_1_05" not in secure["targets"]
    )
    assert set(secure["sybil_gain_by_split"]) == {"2", "3", "10"}
    assert result["by_seed"]["0"]["secure"]["duplicate_gain"] == secure["duplicate_gain"]
    assert "secure" not in bench_rewards(clients=4, rounds=1, seeds=1, players=1)
