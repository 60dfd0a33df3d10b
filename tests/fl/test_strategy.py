"""Aggregation strategies: Flower's results behind our interface, and the bad inputs they refuse."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from idlegrid import InvalidInput
from idlegrid.fl._strategy import STRATEGIES, FitResult, Strategy, make_strategy

P = 64
Vec = npt.NDArray[np.float32]


def honest(n: int, seed: int = 0) -> tuple[Vec, list[FitResult]]:
    """n honest updates around a common model, with different example counts."""
    rng = np.random.default_rng(seed)
    center = rng.normal(1.0, 0.5, P).astype(np.float32)
    results = [
        FitResult(
            client=f"http://node-{i}",
            params=(center + rng.normal(0.0, 0.05, P)).astype(np.float32),
            examples=int(rng.integers(10, 200)),
        )
        for i in range(n)
    ]
    return center, results


def weighted_mean(results: list[FitResult]) -> npt.NDArray[np.float64]:
    weights = np.array([r.examples for r in results], dtype=np.float64)
    stack = np.stack([r.params.astype(np.float64) for r in results])
    out: npt.NDArray[np.float64] = weights @ stack / weights.sum()
    return out


def zeros() -> Vec:
    return np.zeros(P, dtype=np.float32)


def attacked(results: list[FitResult], center: Vec) -> list[FitResult]:
    """The first two updates replaced: one sign-flipped and scaled, one huge."""
    flipped = FitResult("http://evil-0", (-10.0 * center).astype(np.float32), examples=1000)
    huge = FitResult("http://evil-1", np.full(P, 1e6, dtype=np.float32), examples=1000)
    return [flipped, huge, *results[2:]]


# --- the interface


def test_names_and_describe() -> None:
    # Prepare / Execute
    strategies = {name: make_strategy(name) for name in STRATEGIES}

    # Assert
    assert set(STRATEGIES) == {"fedavg", "fedprox", "fedadam", "trimmed-mean", "median", "krum"}
    for name, strategy in strategies.items():
        assert isinstance(strategy, Strategy)
        assert strategy.describe()["name"] == name
    assert {k for k, s in strategies.items() if s.robust} == {"trimmed-mean", "median", "krum"}
    assert make_strategy("fedadam", eta=0.5).describe() == {
        "name": "fedadam",
        "eta": 0.5,
        "eta_l": 0.1,
        "beta_1": 0.9,
        "beta_2": 0.99,
        "tau": 1e-9,
    }
    assert repr(make_strategy("fedprox", mu=0.3)) == "make_strategy('fedprox', mu=0.3)"
    assert make_strategy("krum", byzantine=2, keep=3).describe() == {
        "name": "krum",
        "byzantine": 2,
        "keep": 3,
    }


def test_fedavg_is_the_example_weighted_mean() -> None:
    # Prepare
    _, results = honest(7)
    strategy = make_strategy("fedavg")

    # Execute
    out = strategy.aggregate_fit(1, zeros(), results, failures=2)

    # Assert
    assert out.dtype == np.float32 and out.shape == (P,)
    np.testing.assert_allclose(out, weighted_mean(results), rtol=1e-6, atol=1e-6)
    assert strategy.configure_fit(1) == {}


def test_aggregate_fit_leaves_the_clients_arrays_alone() -> None:
    # Prepare
    _, results = honest(3)
    before = [r.params.copy() for r in results]

    # Execute
    make_strategy("fedavg").aggregate_fit(1, zeros(), results, failures=0)

    # Assert
    for r, b in zip(results, before, strict=True):
        np.testing.assert_array_equal(r.params, b)


def test_fedprox_sends_mu_and_averages_like_fedavg() -> None:
    # Prepare
    _, results = honest(5)
    strategy = make_strategy("fedprox", mu=0.3)

    # Execute
    config = strategy.configure_fit(4)
    out = strategy.aggregate_fit(4, zeros(), results, failures=0)

    # Assert
    assert config == {"proximal_mu": 0.3}
    np.testing.assert_allclose(out, weighted_mean(results), rtol=1e-6, atol=1e-6)
    assert make_strategy("fedprox").configure_fit(1) == {"proximal_mu": 0.01}


def adam_reference(
    start: Vec, means: list[npt.NDArray[np.float64]], *, eta: float, beta_1: float, beta_2: float,
    tau: float,
) -> npt.NDArray[np.float64]:  # fmt: skip
    """Flower's FedAdam, re-derived: note its bias correction uses ``round + 1``."""
    x = start.astype(np.float64)
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    for rnd, mean in enumerate(means, start=1):
        delta = mean - x
        m = beta_1 * m + (1 - beta_1) * delta
        v = beta_2 * v + (1 - beta_2) * delta * delta
        eta_norm = eta * np.sqrt(1 - beta_2 ** (rnd + 1)) / (1 - beta_1 ** (rnd + 1))
        x = x + eta_norm * m / (np.sqrt(v) + tau)
    return x


def test_fedadam_steps_from_current_weights_and_keeps_moments() -> None:
    # Prepare
    options: dict[str, Any] = {"eta": 0.05, "beta_1": 0.8, "beta_2": 0.95, "tau": 1e-3}
    strategy = make_strategy("fedadam", **options)
    start = np.random.default_rng(9).normal(0.0, 1.0, P).astype(np.float32)
    _, round1 = honest(4, seed=1)
    _, round2 = honest(6, seed=2)
    strategy.initialize(start)

    # Execute
    after1 = strategy.aggregate_fit(1, start, round1, failures=0)
    after2 = strategy.aggregate_fit(2, after1, round2, failures=0)

    # Assert
    expected1 = adam_reference(start, [weighted_mean(round1)], **options)
    expected2 = adam_reference(start, [weighted_mean(round1), weighted_mean(round2)], **options)
    np.testing.assert_allclose(after1, expected1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(after2, expected2, rtol=1e-5, atol=1e-5)
    # each step moves from the current weights toward the round's mean
    toward = np.sign(weighted_mean(round1) - start)
    assert (np.sign(after1 - start) == toward).all()
    assert np.linalg.norm(after1 - weighted_mean(round1)) < np.linalg.norm(
        start - weighted_mean(round1)
    )


def test_fedadam_initialize_restarts_its_moments() -> None:
    # Prepare
    strategy = make_strategy("fedadam")
    _, results = honest(3)
    strategy.initialize(zeros())
    first = strategy.aggregate_fit(1, zeros(), results, failures=0)
    strategy.aggregate_fit(2, first, results, failures=0)

    # Execute
    strategy.initialize(zeros())
    again = strategy.aggregate_fit(1, zeros(), results, failures=0)

    # Assert
    np.testing.assert_array_equal(again, first)


@pytest.mark.parametrize("name", ["trimmed-mean", "median"])
def test_coordinate_wise_rules_ignore_two_outliers_of_ten(name: str) -> None:
    # Prepare
    center, results = honest(10)
    honest_mean = np.mean([r.params for r in results[2:]], axis=0)
    strategy = make_strategy(name)

    # Execute
    robust = strategy.aggregate_fit(1, zeros(), attacked(results, center), failures=0)
    plain = make_strategy("fedavg").aggregate_fit(1, zeros(), attacked(results, center), 0)

    # Assert
    assert np.abs(robust - honest_mean).max() < 0.1
    assert np.abs(plain - honest_mean).max() > 1e4  # what the rule saved us from


@pytest.mark.parametrize("keep", [0, 4])
def test_krum_picks_honest_updates_when_two_of_ten_are_crafted(keep: int) -> None:
    # Prepare
    center, results = honest(10)
    stack = np.stack([r.params for r in results[2:]])
    mu, sigma = stack.mean(axis=0), stack.std(axis=0)
    # "a little is enough" with z = 3: every coordinate pushed 3 std off the mean; with
    # z < 1 it would sit closer to the honest ones than they sit to each other and Krum
    # would pick it, the attack's point
    alie = FitResult("http://evil-alie", (mu - 3.0 * sigma).astype(np.float32), examples=50)
    flip = FitResult("http://evil-flip", (-center).astype(np.float32), examples=50)
    crafted = [alie, flip, *results[2:]]
    strategy = make_strategy("krum", byzantine=2, keep=keep)

    # Execute
    out = strategy.aggregate_fit(1, zeros(), crafted, failures=0)

    # Assert
    if keep == 0:
        assert any(np.array_equal(out, r.params) for r in results[2:])
    else:
        assert np.abs(out - mu).max() < 0.1
    assert np.linalg.norm(out - alie.params) > np.linalg.norm(out - mu)


def test_krum_needs_more_than_2f_plus_2_results() -> None:
    # Prepare
    _, results = honest(6)
    strategy = make_strategy("krum", byzantine=2)

    # Execute / Assert
    with pytest.raises(InvalidInput, match="more than 6 results, got 6"):
        strategy.aggregate_fit(1, zeros(), results, failures=0)
    with pytest.raises(InvalidInput, match="cannot keep 9 of 7"):
        make_strategy("krum", byzantine=1, keep=9).aggregate_fit(1, zeros(), honest(7)[1], 0)
    assert make_strategy("krum", byzantine=1).aggregate_fit(1, zeros(), results, 0).shape == (P,)


# --- the secure-aggregation path: only the mean is known


def test_aggregate_mean_fedavg_returns_the_mean() -> None:
    # Prepare
    _, results = honest(5)
    mean = weighted_mean(results).astype(np.float32)

    # Execute
    out = make_strategy("fedavg").aggregate_mean(3, zeros(), mean, examples=500)
    prox = make_strategy("fedprox").aggregate_mean(3, zeros(), mean, examples=500)

    # Assert
    np.testing.assert_allclose(out, mean, rtol=1e-6)
    np.testing.assert_allclose(prox, mean, rtol=1e-6)


def test_aggregate_mean_fedadam_equals_its_fit_path() -> None:
    # Prepare
    _, results = honest(5)
    mean = weighted_mean(results).astype(np.float32)
    start = np.full(P, 0.5, dtype=np.float32)
    by_fit, by_mean = make_strategy("fedadam"), make_strategy("fedadam")
    by_fit.initialize(start)
    by_mean.initialize(start)

    # Execute
    a1 = by_fit.aggregate_fit(1, start, results, failures=0)
    b1 = by_mean.aggregate_mean(1, start, mean, examples=sum(r.examples for r in results))
    a2 = by_fit.aggregate_fit(2, a1, results, failures=0)
    b2 = by_mean.aggregate_mean(2, b1, mean, examples=1)

    # Assert
    np.testing.assert_allclose(b1, a1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b2, a2, rtol=1e-5, atol=1e-6)
    expected = adam_reference(
        start, [mean.astype(np.float64)] * 2, eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-9
    )
    np.testing.assert_allclose(b2, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["trimmed-mean", "median", "krum"])
def test_robust_strategies_refuse_the_mean(name: str) -> None:
    with pytest.raises(InvalidInput, match="needs single updates; turn secure aggregation off"):
        make_strategy(name).aggregate_mean(1, zeros(), zeros(), examples=10)


# --- bad input


def test_unknown_name_or_option_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidInput, match=r"unknown strategy 'fedsgd'.*fedavg, fedprox, fedadam"):
        make_strategy("fedsgd")
    with pytest.raises(InvalidInput, match="no option 'lr'; its options: eta, eta_l, beta_1"):
        make_strategy("fedadam", lr=0.1)
    with pytest.raises(InvalidInput, match="no option 'mu'; its options: none"):
        make_strategy("fedavg", mu=0.1)


@pytest.mark.parametrize(
    ("name", "options", "reason"),
    [
        ("fedprox", {"mu": -1.0}, "mu=-1.0: must be a finite number >= 0"),
        ("fedprox", {"mu": float("nan")}, "mu=nan"),
        ("fedprox", {"mu": "0.1"}, "mu='0.1'"),
        ("fedadam", {"beta_1": 1.0}, r"beta_1=1.0: must be in \[0, 1\)"),
        ("fedadam", {"eta": 0}, "eta=0: must be > 0"),
        ("trimmed-mean", {"beta": 0.5}, r"beta=0.5: must be in \[0, 0.5\)"),
        ("krum", {"byzantine": 1.5}, "byzantine=1.5: must be an integer >= 0"),
        ("krum", {"byzantine": True}, "byzantine=True"),
        ("krum", {"keep": -1}, "keep=-1"),
    ],
)
def test_bad_option_values(name: str, options: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        make_strategy(name, **options)


@pytest.mark.parametrize("name", STRATEGIES)
def test_bad_results_are_refused(name: str) -> None:
    # Prepare
    strategy = make_strategy(name)
    _, results = honest(5)
    nan = results[0].params.copy()
    nan[3] = np.nan
    inf = results[0].params.copy()
    inf[0] = np.inf

    def with_first(**change: Any) -> list[FitResult]:
        first = results[0]
        fields = {"client": first.client, "params": first.params, "examples": first.examples}
        return [FitResult(**{**fields, **change}), *results[1:]]

    cases = [
        ([], "no client results"),
        (with_first(params=np.zeros(P + 1, dtype=np.float32)), r"got \[65\]"),
        (with_first(params=np.zeros((2, P // 2), dtype=np.float32)), r"float32 \[2, 32\]"),
        (with_first(params=results[0].params.astype(np.float64)), r"got float64 \[64\]"),
        (with_first(params=list(results[0].params)), "got list"),
        (with_first(params=nan), "node-0.*NaN or infinite"),
        (with_first(params=inf), "NaN or infinite"),
        (with_first(examples=0), "examples must be an integer >= 1, got 0"),
        (with_first(examples=2.5), "got 2.5"),
    ]  # fmt: skip

    # Execute / Assert
    for bad, reason in cases:
        with pytest.raises(InvalidInput, match=reason):
            strategy.aggregate_fit(1, zeros(), bad, failures=0)


def test_bad_round_global_params_and_failures() -> None:
    # Prepare
    strategy = make_strategy("fedavg")
    _, results = honest(3)
    strategy.initialize(zeros())

    # Execute / Assert
    with pytest.raises(InvalidInput, match="round must be an integer >= 1, got 0"):
        strategy.aggregate_fit(0, zeros(), results, failures=0)
    with pytest.raises(InvalidInput, match="round must be"):
        strategy.configure_fit(-1)
    with pytest.raises(InvalidInput, match=r"global params: expected float32 \[64\], got \[3\]"):
        strategy.aggregate_fit(1, np.zeros(3, dtype=np.float32), results, failures=0)
    with pytest.raises(InvalidInput, match="failures must be >= 0"):
        strategy.aggregate_fit(1, zeros(), results, failures=-1)
    with pytest.raises(InvalidInput, match="initial params: the vector is empty"):
        strategy.initialize(np.zeros(0, dtype=np.float32))
    with pytest.raises(InvalidInput, match="aggregated mean: has NaN"):
        strategy.aggregate_mean(1, zeros(), np.full(P, np.nan, dtype=np.float32), examples=3)
    with pytest.raises(InvalidInput, match="examples must be an integer >= 1, got 0"):
        strategy.aggregate_mean(1, zeros(), zeros(), examples=0)


def test_flower_logs_nothing_per_round(caplog: pytest.LogCaptureFixture) -> None:
    # Prepare
    _, results = honest(5)

    # Execute
    with caplog.at_level("DEBUG", logger="flwr"):
        for name in STRATEGIES:
            strategy = make_strategy(name)
            strategy.configure_fit(1)
            strategy.aggregate_fit(1, zeros(), results, failures=1)

    # Assert
    assert [r.getMessage() for r in caplog.records if r.levelname != "DEBUG"] == []
