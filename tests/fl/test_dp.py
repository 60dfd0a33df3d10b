"""Client-level DP: clipping, the server's noise, and the privacy accountant."""

from __future__ import annotations

import itertools
import sys
from typing import Any

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from idlegrid import ConfigError, InvalidInput
from idlegrid.fl._dp import ALPHAS, PrivacyAccountant, clip_update, noise_mean

P = 1000


def vectors(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    global_params = rng.normal(0.0, 1.0, P).astype(np.float32)
    params = (global_params + rng.normal(0.0, 0.1, P)).astype(np.float32)
    return params, global_params


# --- clipping


def test_clip_keeps_direction_and_bounds_the_norm() -> None:
    # Prepare
    params, global_params = vectors()
    delta = params.astype(np.float64) - global_params
    norm = float(np.linalg.norm(delta))

    # Execute
    clipped, reported = clip_update(params, global_params, clip=0.5)

    # Assert
    new_delta = clipped.astype(np.float64) - global_params
    assert clipped.dtype == np.float32 and clipped.shape == (P,)
    assert reported == pytest.approx(norm)
    assert norm > 3.0  # the update really was clipped
    assert np.linalg.norm(new_delta) == pytest.approx(0.5, rel=1e-5)
    cosine = new_delta @ delta / (np.linalg.norm(new_delta) * norm)
    assert cosine > 1 - 1e-6


def test_clip_leaves_small_updates_alone() -> None:
    # Prepare
    params, global_params = vectors()
    before = params.copy()

    # Execute
    clipped, norm = clip_update(params, global_params, clip=100.0)
    same, zero = clip_update(global_params, global_params, clip=1.0)

    # Assert
    np.testing.assert_array_equal(clipped, params)
    assert clipped is not params
    np.testing.assert_array_equal(params, before)
    assert norm < 100.0
    np.testing.assert_array_equal(same, global_params)
    assert zero == 0.0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"clip": 0.0}, "clip must be > 0"),
        ({"clip": float("inf")}, "clip must be finite"),
        ({"clip": "1"}, "clip must be a number"),
        ({"params": np.zeros(P + 1, dtype=np.float32)}, r"differ in shape"),
        ({"params": np.zeros(P, dtype=np.int32)}, r"params: expected a float32 \[P\] vector"),
        ({"global_params": np.full(P, np.nan, dtype=np.float32)}, "global params: has NaN"),
    ],
)
def test_clip_refuses_bad_input(change: dict[str, Any], reason: str) -> None:
    params, global_params = vectors()
    args: dict[str, Any] = {"params": params, "global_params": global_params, "clip": 1.0}
    with pytest.raises(InvalidInput, match=reason):
        clip_update(**{**args, **change})


# --- noise


def test_noise_std_is_multiplier_times_clip_over_sampled() -> None:
    # Prepare
    mean = np.full(200_000, 0.25, dtype=np.float32)
    rng = np.random.default_rng(42)

    # Execute
    noisy = noise_mean(mean, noise_multiplier=1.2, clip=0.5, sampled=10, rng=rng)

    # Assert
    noise = noisy.astype(np.float64) - mean
    assert noisy.dtype == np.float32 and noisy.shape == mean.shape
    assert noise.std() == pytest.approx(1.2 * 0.5 / 10, rel=0.02)
    assert abs(noise.mean()) < 0.001


def test_noise_is_reproducible_from_the_seed() -> None:
    mean = np.zeros(16, dtype=np.float32)
    kwargs: dict[str, Any] = {"noise_multiplier": 1.0, "clip": 1.0, "sampled": 4}
    a = noise_mean(mean, rng=np.random.default_rng(7), **kwargs)
    b = noise_mean(mean, rng=np.random.default_rng(7), **kwargs)
    c = noise_mean(mean, rng=np.random.default_rng(8), **kwargs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"noise_multiplier": 0.0}, "noise_multiplier must be > 0"),
        ({"clip": -1.0}, "clip must be > 0"),
        ({"sampled": 0}, "sampled must be an integer >= 1, got 0"),
        ({"sampled": 2.0}, "sampled must be an integer"),
        ({"rng": np.random.RandomState(0)}, "rng must be a numpy.random.Generator"),
        ({"mean": np.zeros((2, 2), dtype=np.float32)}, r"mean: expected a float32 \[P\]"),
    ],
)
def test_noise_refuses_bad_input(change: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {
        "mean": np.zeros(4, dtype=np.float32),
        "noise_multiplier": 1.0,
        "clip": 1.0,
        "sampled": 3,
        "rng": np.random.default_rng(0),
    }
    with pytest.raises(InvalidInput, match=reason):
        noise_mean(**{**args, **change})


# --- the accountant


def test_epsilon_grows_with_rounds_and_equals_opacus() -> None:
    # Prepare
    accountant = PrivacyAccountant(noise_multiplier=1.0, sample_rate=0.1, delta=1e-5, budget=None)
    direct = RDPAccountant()
    spent = [accountant.epsilon()]

    # Execute
    for _ in range(5):
        accountant.spend()
        direct.step(noise_multiplier=1.0, sample_rate=0.1)
        spent.append(accountant.epsilon())

    # Assert
    assert spent[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(spent))
    assert accountant.rounds == 5
    # the optimum lies inside opacus's default orders here, so the numbers agree exactly
    assert spent[-1] == pytest.approx(direct.get_epsilon(1e-5), rel=1e-12)
    assert spent[-1] == pytest.approx(direct.get_epsilon(1e-5, alphas=list(ALPHAS)), rel=1e-12)
    assert accountant.describe()["epsilon"] == spent[-1]


def test_more_orders_give_a_tight_bound_without_a_warning() -> None:
    # Prepare: strong noise, where opacus's default orders end too soon (and warn)
    accountant = PrivacyAccountant(noise_multiplier=10.0, sample_rate=0.01, delta=1e-5)

    # Execute
    accountant.spend()

    # Assert
    assert set(RDPAccountant.DEFAULT_ALPHAS) <= set(ALPHAS)
    assert 0 < accountant.epsilon() < 0.05  # opacus's default orders give 0.103


def test_epsilon_after_does_not_spend() -> None:
    # Prepare
    accountant = PrivacyAccountant(noise_multiplier=1.5, sample_rate=0.5, delta=1e-6, budget=None)
    accountant.spend()

    # Execute
    ahead = accountant.epsilon_after(3)

    # Assert
    assert accountant.rounds == 1
    assert accountant.epsilon_after(0) == accountant.epsilon()
    for _ in range(3):
        accountant.spend()
    assert accountant.epsilon() == pytest.approx(ahead, rel=1e-12)
    assert accountant.allows_round()  # no budget: no limit


def test_budget_allows_exactly_k_rounds() -> None:
    # Prepare: a budget between the epsilon after 3 rounds and after 4
    probe = RDPAccountant()
    eps = []
    for _ in range(4):
        probe.step(noise_multiplier=0.8, sample_rate=0.2)
        eps.append(probe.get_epsilon(1e-5, alphas=list(ALPHAS)))
    budget = (eps[2] + eps[3]) / 2
    accountant = PrivacyAccountant(noise_multiplier=0.8, sample_rate=0.2, delta=1e-5, budget=budget)

    # Execute
    allowed = 0
    while accountant.allows_round():
        accountant.spend()
        allowed += 1
        assert allowed <= 10

    # Assert
    assert allowed == 3
    assert accountant.epsilon() == pytest.approx(eps[2])
    assert accountant.epsilon() <= budget < accountant.epsilon_after(1)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"noise_multiplier": 0.0}, "noise_multiplier must be > 0"),
        ({"noise_multiplier": -1.0}, "noise_multiplier must be > 0"),
        ({"sample_rate": 0.0}, r"sample_rate must be in \(0, 1\]"),
        ({"sample_rate": 1.5}, r"sample_rate must be in \(0, 1\]"),
        ({"delta": 0.0}, r"delta must be in \(0, 1\)"),
        ({"delta": 1.0}, r"delta must be in \(0, 1\)"),
        ({"budget": 0.0}, "budget must be > 0"),
        ({"budget": float("nan")}, "budget must be finite"),
        ({"sample_rate": None}, "sample_rate must be a number"),
    ],
)
def test_accountant_refuses_bad_parameters(change: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"noise_multiplier": 1.0, "sample_rate": 0.1, "delta": 1e-5}
    with pytest.raises(InvalidInput, match=reason):
        PrivacyAccountant(**{**args, **change})


def test_epsilon_after_refuses_negative_rounds() -> None:
    accountant = PrivacyAccountant(noise_multiplier=1.0, sample_rate=0.1, delta=1e-5)
    with pytest.raises(InvalidInput, match="rounds must be an integer >= 0"):
        accountant.epsilon_after(-1)


def test_missing_opacus_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opacus.accountants", None)
    with pytest.raises(ConfigError, match=r"pip install 'idlegrid\[fl\]'"):
        PrivacyAccountant(noise_multiplier=1.0, sample_rate=0.1, delta=1e-5)
