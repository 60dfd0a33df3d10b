"""Proof-of-learning: the selection of intervals, the detection probability, the distance,
and the replay of real training intervals, honest ones passing on 1, 2 and 4 threads and
each known spoofing attack refused."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from idlegrid.verify import (
    ATTACKS,
    POL_TOLERANCE,
    PolCalibration,
    calibrate_pol,
    check_interval,
    detection_probability,
    interval_bounds,
    intervals_needed,
    param_distance,
    replay_interval,
    select_intervals,
    spoof,
    verify_run,
)
from idlegrid.verify._pol import DIGITS_MODELS, digits_data


# -- selection ------------------------------------------------------------------------------
def test_selection_is_deterministic_distinct_sorted_and_in_range() -> None:
    # Execute
    first = select_intervals(b"\x01" * 32, 1000, 64)
    again = select_intervals(b"\x01" * 32, 1000, 64)

    # Assert
    assert first == again
    assert len(first) == 64 == len(set(first))
    assert first == sorted(first)
    assert all(0 <= i < 1000 for i in first)


@pytest.mark.parametrize(("n", "q"), [(5, 5), (5, 64), (0, 3), (1, 1)])
def test_selection_takes_every_interval_when_q_reaches_n(n: int, q: int) -> None:
    # Execute
    chosen = select_intervals(b"seed", n, q)

    # Assert
    assert chosen == list(range(n))


def test_selection_of_none_is_empty() -> None:
    # Execute / Assert
    assert select_intervals(b"seed", 10, 0) == []


def test_different_seeds_select_different_intervals() -> None:
    # Execute
    picks = {tuple(select_intervals(bytes([s]) * 32, 10_000, 8)) for s in range(20)}

    # Assert
    assert len(picks) == 20


def test_selection_is_roughly_uniform() -> None:
    # Prepare: 3 of 10 for 4000 seeds: each index expected 1200 times
    counts = np.zeros(10)

    # Execute
    for s in range(4000):
        counts[select_intervals(s.to_bytes(4, "big"), 10, 3)] += 1

    # Assert: a chi-square with 9 degrees of freedom, far below its 0.1 % point (27.9)
    expected = 4000 * 3 / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9


def test_selection_refuses_negative_sizes() -> None:
    # Execute / Assert
    with pytest.raises(ValueError):
        select_intervals(b"seed", -1, 3)


# -- detection probability ------------------------------------------------------------------
def test_detection_probability_is_one_minus_the_chance_of_missing_every_time() -> None:
    # Execute / Assert
    assert detection_probability(0.1, 1) == pytest.approx(0.1)
    assert detection_probability(0.1, 64) == pytest.approx(1 - 0.9**64)
    assert detection_probability(0.0, 64) == 0.0
    assert detection_probability(1.0, 1) == 1.0
    assert detection_probability(0.5, 0) == 0.0


@pytest.mark.parametrize(
    ("f", "target", "q"), [(0.1, 0.99, 44), (0.1, 0.9, 22), (0.5, 0.99, 7), (1.0, 0.99, 1)]
)
def test_intervals_needed_is_the_smallest_q_reaching_the_target(
    f: float, target: float, q: int
) -> None:
    # Execute
    needed = intervals_needed(f, target)

    # Assert
    assert needed == q
    assert detection_probability(f, needed) >= target
    assert detection_probability(f, needed - 1) < target


def test_intervals_needed_refuses_the_impossible() -> None:
    # Execute / Assert
    with pytest.raises(ValueError):
        intervals_needed(0.0, 0.5)
    with pytest.raises(ValueError):
        intervals_needed(0.1, 1.0)


# -- intervals and the distance -------------------------------------------------------------
def test_interval_bounds_cover_the_run_the_last_one_shorter() -> None:
    # Execute / Assert
    assert interval_bounds(10, 4) == [(0, 4), (4, 4), (8, 2)]
    assert interval_bounds(8, 4) == [(0, 4), (4, 4)]
    assert interval_bounds(3, 16) == [(0, 3)]


def test_distance_is_the_error_relative_to_the_update() -> None:
    # Prepare
    before = np.zeros(4, dtype=np.float32)
    replayed = np.array([1, 0, 0, 0], dtype=np.float32)

    # Execute / Assert
    assert param_distance(before, replayed, replayed) == 0.0
    assert param_distance(before, replayed * 0.5, replayed) == pytest.approx(0.5)
    assert param_distance(before, before, replayed) == pytest.approx(1.0)  # nothing trained
    assert param_distance(before, before, before) == 0.0
    assert param_distance(before, replayed * 1e6, replayed) == pytest.approx(1 - 1e-6)


def test_distance_of_non_finite_or_misshapen_parameters_is_infinite() -> None:
    # Prepare
    before = np.zeros(3, dtype=np.float32)
    replayed = np.ones(3, dtype=np.float32)

    # Execute / Assert
    assert param_distance(before, np.array([1, np.nan, 1], np.float32), replayed) == math.inf
    assert param_distance(before, np.ones(4, np.float32), replayed) == math.inf


def test_the_tolerance_is_a_small_relative_error() -> None:
    # Execute / Assert
    assert 0 < POL_TOLERANCE < 0.1


# -- replays of real training ---------------------------------------------------------------
torch = pytest.importorskip("torch")

from idlegrid.workloads._kind_train import (  # noqa: E402
    TrainSpec,
    initial_state,
    state_hash,
    train_steps,
)

K = 4
N = 6


def run_spec(family: str = "mlp", *, k: int = K, n: int = N, seed: int = 3) -> TrainSpec:
    return TrainSpec.model_validate(
        {
            "model": DIGITS_MODELS[family],
            "optimizer": "adam",
            "lr": 0.01,
            "schedule": "constant",
            "total_steps": n * k,
            "batch": 32,
            "seed": seed,
            "data": "0" * 64,
            "start": 0,
            "steps": n * k,
            "interval": k,
        }
    )


def trajectory_of(spec: TrainSpec, fabricate: dict[str, object] | None = None) -> list[np.ndarray]:
    x, y = digits_data(spec.model.family)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [initial_state(spec), *train_steps(spec, None, x, y, fabricate=fabricate)]
    finally:
        torch.set_num_threads(previous)


def leaves_of(states: list[np.ndarray]) -> list[bytes]:
    return [state_hash(s) for s in states]


@pytest.fixture(scope="module")
def honest() -> list[np.ndarray]:
    return trajectory_of(run_spec())


X, Y = digits_data("mlp")


@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("index", [0, 3, N - 1])
def test_an_honest_interval_passes_on_1_2_and_4_threads(
    honest: list[np.ndarray], threads: int, index: int
) -> None:
    # Execute
    verdict = check_interval(
        run_spec(),
        X,
        Y,
        index,
        honest[index],
        honest[index + 1],
        leaves_of(honest),
        threads=threads,
    )

    # Assert
    assert verdict.ok, verdict.reason
    assert (verdict.start, verdict.steps) == (index * K, K)
    assert verdict.distance <= POL_TOLERANCE / 100
    if threads == 1:
        assert verdict.distance == 0.0


def test_a_replay_restores_the_thread_count(honest: list[np.ndarray]) -> None:
    # Prepare
    before = torch.get_num_threads()

    # Execute
    after = replay_interval(run_spec(), X, Y, honest[2], threads=3)

    # Assert
    assert torch.get_num_threads() == before
    assert np.array_equal(after, honest[3])


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("index", [0, 2, N - 1])
def test_each_spoofing_attack_is_refused(honest: list[np.ndarray], attack: str, index: int) -> None:
    # Prepare: the forged interval's states, committed in the run's leaves
    spec = run_spec()
    before, after = spoof(attack, spec, X, Y, honest, index)
    leaves = leaves_of(honest)
    leaves[index], leaves[index + 1] = state_hash(before), state_hash(after)

    # Execute
    verdict = check_interval(spec, X, Y, index, before, after, leaves)

    # Assert: its steps are counted right and its hashes match, only the replay differs
    assert not verdict.ok
    assert verdict.distance > 10 * POL_TOLERANCE
    assert "replay" in verdict.reason


def test_initial_weights_from_another_seed_are_refused() -> None:
    # Prepare: a run honestly trained, but from the weights seed 4 gives, claimed as seed 3
    spec = run_spec()
    other = trajectory_of(run_spec(seed=4))

    def no_fetch(digest: bytes) -> np.ndarray:  # q = 0: no state is fetched
        return np.empty(0)

    # Execute
    verdict = check_interval(spec, X, Y, 0, other[0], other[1], leaves_of(other))
    report = verify_run(spec, X, Y, leaves_of(other), no_fetch, b"seed", 0)

    # Assert
    assert not verdict.ok
    assert "initial state" in verdict.reason
    assert not report.initial_ok and not report.ok


def test_a_state_that_does_not_hash_to_its_leaf_is_refused(honest: list[np.ndarray]) -> None:
    # Prepare
    after = honest[3].copy()
    after[-1] += 1e-3

    # Execute
    verdict = check_interval(run_spec(), X, Y, 2, honest[2], after, leaves_of(honest))

    # Assert
    assert not verdict.ok
    assert "does not hash to its leaf" in verdict.reason


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [(1, 13.0, "is at step 13, not 12"), (5, float("nan"), "NaN"), (2, -1.0, "loss")],
)
def test_a_wrong_step_counter_nan_or_loss_is_refused(
    honest: list[np.ndarray], field: int, value: float, reason: str
) -> None:
    # Prepare: the forged state is the one committed
    after = honest[3].copy()
    after[field] = value
    leaves = leaves_of(honest)
    leaves[3] = state_hash(after)

    # Execute
    verdict = check_interval(run_spec(), X, Y, 2, honest[2], after, leaves)

    # Assert
    assert not verdict.ok
    assert reason in verdict.reason


def fetcher(states: list[np.ndarray]) -> tuple[dict[bytes, int], Callable[[bytes], np.ndarray]]:
    by_digest = {state_hash(s): s for s in states}
    fetched: dict[bytes, int] = {}

    def fetch(digest: bytes) -> np.ndarray:
        fetched[digest] = fetched.get(digest, 0) + 1
        return by_digest[digest]

    return fetched, fetch


def test_verify_run_passes_an_honest_run_fetching_each_state_once(
    honest: list[np.ndarray],
) -> None:
    # Prepare
    fetched, fetch = fetcher(honest)

    # Execute
    report = verify_run(run_spec(), X, Y, leaves_of(honest), fetch, b"block hash", N)

    # Assert
    assert report.ok and report.initial_ok
    assert report.checked == N and report.failed == ()
    assert report.max_distance == 0.0
    assert report.verify_seconds >= 0
    assert sorted(fetched.values()) == [1] * (N + 1)


@pytest.mark.parametrize("mode", ["skip-steps", "interpolate"])
def test_verify_run_catches_a_tenth_fabricated_when_it_selects_one(mode: str) -> None:
    # Prepare: 40 intervals of 2 steps, a tenth of them fabricated by the cheating aid,
    # drawn as it draws them (numpy's default_rng([cheat seed, run seed, interval]))
    spec = run_spec(k=2, n=40)
    cheat = {"mode": mode, "rate": 0.1, "seed": 5}
    forged = trajectory_of(spec, cheat)
    fabricated = {i for i in range(40) if np.random.default_rng([5, 3, i]).random() < 0.1}
    leaves = leaves_of(forged)
    _, fetch = fetcher(forged)
    assert fabricated

    # Execute: every interval, then 4 of them by a seed that hits a fabricated one
    everything = verify_run(spec, X, Y, leaves, fetch, b"all", 40)
    seeds = [bytes([s]) for s in range(256)]
    hit = next(s for s in seeds if fabricated & set(select_intervals(s, 40, 4)))
    miss = next(s for s in seeds if not set(everything.failed) & set(select_intervals(s, 40, 4)))
    caught = verify_run(spec, X, Y, leaves, fetch, hit, 4)
    missed = verify_run(spec, X, Y, leaves, fetch, miss, 4)

    # Assert: every fabricated interval fails and no honest one before them; a sample
    # finds the cheat when it picks one, and passes the run when it picks none
    assert fabricated == set(everything.failed)
    assert everything.initial_ok
    assert not caught.ok
    assert fabricated & set(select_intervals(hit, 40, 4)) <= set(caught.failed)
    assert missed.ok and missed.checked == 4


@pytest.fixture(scope="module")
def calibrations() -> dict[str, PolCalibration]:
    out = {}
    for family in ("mlp", "cnn", "transformer"):
        x, y = digits_data(family)
        out[family] = calibrate_pol(run_spec(family, k=4, n=3), x, y, 3)
    return out


@pytest.mark.parametrize(
    "family",
    [
        "mlp",
        "cnn",
        "transformer",
    ],
)
def test_calibration_honest_replays_lie_far_below_the_tolerance(
    calibrations: dict[str, PolCalibration], family: str
) -> None:
    # Execute
    calibration = calibrations[family]

    # Assert: identical bits with one thread, 100x margin with 2 and 4
    assert calibration.honest[1] == 0.0
    assert set(calibration.honest) == {1, 2, 4}
    assert calibration.honest_max <= POL_TOLERANCE / 100


@pytest.mark.parametrize("family", ["mlp", "cnn", "transformer"])
def test_calibration_attacks_lie_far_above_the_tolerance(
    calibrations: dict[str, PolCalibration], family: str
) -> None:
    # Execute
    calibration = calibrations[family]

    # Assert
    assert set(calibration.attacks) == set(ATTACKS)
    assert calibration.attack_min >= 50 * POL_TOLERANCE
