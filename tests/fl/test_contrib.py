"""Contribution of each client to a federated round (GTG-Shapley with the games priced
out): exact properties on a quadratic bowl, where every coalition's value is known, then
the games on real local training over the digits partitions."""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from math import factorial
from typing import Any

import numpy as np
import pytest

from idlegrid import InvalidInput
from idlegrid.fl._contrib import (
    GCE_Q,
    MlpValue,
    RoundContribution,
    TorchValue,
    _clip_norm,
    _players,
    aumann_shapley,
    gce_score,
    group_contributions,
    gtg_shapley,
    net_rounds,
    shares,
    split_reward,
)

DIM = 8
TARGET = np.linspace(-1.0, 1.0, DIM)
BASE = np.zeros(DIM, np.float32)


class Bowl:
    """Higher is better: minus the squared distance to TARGET (a quadratic game, whose
    gradient along a path is known in closed form)."""

    def __call__(self, params: np.ndarray) -> float:
        return -float(np.sum((params.astype(np.float64) - TARGET) ** 2))

    def path_gradient(self, base: np.ndarray, step: np.ndarray, nodes: int) -> np.ndarray:
        # the gradient -2 (p - TARGET) is affine in p: its mean over the segment is its
        # value at the midpoint, whatever the number of nodes
        return -2.0 * (np.asarray(base, np.float64) + step / 2 - TARGET)

    def effects(self, base: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        # the bowl "predicts" its parameters: an update's effect is the update
        return np.asarray(deltas, np.float64)


bowl = Bowl()

Estimate = Callable[..., RoundContribution]


def _gtg(*args: Any, seed: int = 0, **kw: Any) -> RoundContribution:
    return gtg_shapley(*args, seed=seed, **kw)


def _path(*args: Any, seed: int = 0, **kw: Any) -> RoundContribution:
    return aumann_shapley(*args, **kw)


#: each game test runs with both estimators of the same game
ESTIMATORS = pytest.mark.parametrize("estimate", [_gtg, _path], ids=["gtg", "path"])


def _direction(client: int) -> np.ndarray:
    """Client ``client``'s data knows half of the coordinates (non-iid): its own half."""
    mask = np.zeros(DIM)
    mask[[(client + k) % DIM for k in range(0, DIM, 2)] + [(client * 3 + 1) % DIM]] = 1.0
    return mask * TARGET


def _updates(
    scales: dict[int, float], rng: np.random.Generator, noise: float = 0.0
) -> dict[int, np.ndarray]:
    """Client c moves a ``scales[c]`` part of the way to TARGET on its coordinates."""
    return {
        c: (BASE + s * _direction(c) + noise * rng.normal(size=DIM)).astype(np.float32)
        for c, s in scales.items()
    }


@ESTIMATORS
def test_a_zero_update_earns_nothing_and_the_useful_ones_share_the_gain(estimate: Estimate) -> None:
    # Prepare: three clients move towards the optimum, a free rider sends the model back
    rng = np.random.default_rng(0)
    updates = _updates({0: 1.0, 1: 0.9, 2: 0.8}, rng, noise=0.05)
    updates[3] = BASE.copy()
    examples = dict.fromkeys(updates, 100)

    # Execute
    got = estimate(BASE, updates, examples, bowl, seed=1, group_tau=1.1)

    # Assert: exactly zero for the free rider; the others positive; the values add up
    # to the round's gain (efficiency), within the sampling error
    assert got.values[3] == 0.0 and shares(got.values)[3] == 0.0
    assert min(got.values[c] for c in (0, 1, 2)) > 0
    assert sum(got.values.values()) == pytest.approx(got.v_after - got.v_before, rel=0.05)
    assert not got.truncated_round and got.evaluations <= 2**4


@ESTIMATORS
def test_an_update_that_hurts_earns_nothing_once_clipped_at_zero(estimate: Estimate) -> None:
    rng = np.random.default_rng(1)
    updates = _updates({0: 1.0, 1: 1.0}, rng, noise=0.02)
    updates[2] = (BASE - 3.0 * TARGET).astype(np.float32)  # away from the optimum
    got = estimate(BASE, updates, dict.fromkeys(updates, 50), bowl, seed=2, group_tau=1.1)
    assert got.values[2] < 0 and shares(got.values)[2] == 0.0
    assert sum(shares(got.values).values()) == pytest.approx(1.0)


@ESTIMATORS
def test_identities_with_one_data_set_are_worth_what_it_is_worth_as_one(estimate: Estimate) -> None:
    # Prepare: client 9's update, as one client, and the same update from three
    # identities splitting its examples (a sybil sends what its data gives)
    rng = np.random.default_rng(2)
    honest = _updates({0: 0.7, 1: 0.5}, rng, noise=0.1)
    mine = (BASE + 0.6 * _direction(9)).astype(np.float32)
    as_one = {**honest, 9: mine}
    as_three = {**honest, 91: mine, 92: mine.copy(), 93: mine.copy()}

    # Execute
    one = estimate(BASE, as_one, {0: 90, 1: 90, 9: 90}, bowl, seed=3, group_tau=0.99)
    three = estimate(
        BASE, as_three, {0: 90, 1: 90, 91: 30, 92: 30, 93: 30}, bowl, seed=3, group_tau=0.99
    )

    # Assert: merged into one player; together they earn what the one client earns
    assert [91, 92, 93] in three.groups
    total = three.values[91] + three.values[92] + three.values[93]
    assert total == pytest.approx(one.values[9], rel=1e-9)
    assert three.values[91] == pytest.approx(total / 3)


@ESTIMATORS
def test_a_bigger_step_buys_nothing(estimate: Estimate) -> None:
    # Prepare: the same direction, once at its own size (above the round's median) and
    # once five times longer (training longer on duplicated rows)
    rng = np.random.default_rng(3)
    honest = _updates({0: 0.3, 1: 0.25, 2: 0.2}, rng, noise=0.05)
    step = 0.4 * _direction(3) + 0.05 * rng.normal(size=DIM)
    plain = {**honest, 3: (BASE + step).astype(np.float32)}
    pumped = {**honest, 3: (BASE + 5 * step).astype(np.float32)}
    ex = dict.fromkeys(plain, 100)

    # Execute
    a = estimate(BASE, plain, ex, bowl, seed=4, group_tau=1.1)
    b = estimate(BASE, pumped, ex, bowl, seed=4, group_tau=1.1)

    # Assert: clipped to the round's median norm, it is worth what it was
    assert b.values[3] == pytest.approx(a.values[3], rel=1e-6)


def test_neither_many_identities_nor_a_large_claim_set_the_clip_norm() -> None:
    """Nine honest clients of ~150 rows with updates of norm 2 to 3; ten identities of
    23 rows each with norm 0.7 to 0.9 (one data set split); or one client claiming
    ten times its rows with a longer step."""
    rng = np.random.default_rng(9)
    honest = {c: float(n) for c, n in enumerate(np.linspace(2.0, 3.0, 9))}
    claims = dict.fromkeys(honest, 150)

    def deltas(norms: dict[int, float]) -> dict[int, np.ndarray]:
        out = {}
        for c, n in norms.items():
            d = rng.normal(size=DIM)
            out[c] = n * d / np.linalg.norm(d)
        return out

    alone = _clip_norm(deltas(honest), claims)
    sybils = {100 + k: 0.7 + 0.02 * k for k in range(10)}
    split = _clip_norm(deltas(honest | sybils), claims | dict.fromkeys(sybils, 23))
    pumped = _clip_norm(deltas(honest | {8: 15.0}), claims | {8: 1500})

    assert alone == pytest.approx(2.5)  # the median of the nine
    # a plain median over the 19 identities would be 0.88, a sybil's own norm
    assert 2.0 <= split < alone
    # a median over examples would be the claimant's own 15.0 (1500 of 2700 examples)
    assert alone <= pumped <= 3.0
    assert _clip_norm({0: np.zeros(DIM)}, {0: 5}) == 0.0


@ESTIMATORS
def test_a_replay_of_the_last_global_step_counts_as_nothing(estimate: Estimate) -> None:
    rng = np.random.default_rng(4)
    updates = _updates({0: 0.5, 1: 0.4}, rng, noise=0.05)
    previous = 0.3 * _direction(5)
    updates[2] = (BASE + previous + 1e-4 * rng.normal(size=DIM)).astype(np.float32)
    got = estimate(BASE, updates, dict.fromkeys(updates, 10), bowl, seed=5,
                      group_tau=1.1, previous_step=previous)  # fmt: skip
    assert got.replays == [2] and got.values[2] == 0.0
    without = estimate(BASE, updates, dict.fromkeys(updates, 10), bowl, seed=5, group_tau=1.1)
    assert without.values[2] > 0  # without the check the replay would have been paid


@ESTIMATORS
def test_a_round_that_did_not_move_the_model_is_skipped(estimate: Estimate) -> None:
    updates = {c: (BASE + 1e-6 * (c + 1)).astype(np.float32) for c in range(3)}
    got = estimate(BASE, updates, dict.fromkeys(updates, 5), bowl, seed=6)
    assert got.truncated_round and set(got.values.values()) == {0.0}
    assert shares(got.values) == dict.fromkeys(updates, 0.0)


def test_the_estimate_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(5)
    updates = _updates({c: 0.1 * (c + 1) for c in range(6)}, rng, noise=0.2)
    ex = dict.fromkeys(updates, 7)
    a = gtg_shapley(BASE, updates, ex, bowl, seed=7, group_tau=1.1)
    b = gtg_shapley(BASE, updates, ex, bowl, seed=7, group_tau=1.1)
    assert a.values == b.values and a.permutations == b.permutations >= 6


@pytest.mark.parametrize(
    ("updates", "examples", "reason"),
    [
        ({}, {}, "at least one update"),
        ({0: BASE}, {1: 3}, "example count"),
        ({0: np.zeros(DIM + 1, np.float32)}, {0: 3}, "is \\(9,\\)"),
        ({0: np.full(DIM, np.nan, np.float32)}, {0: 3}, "NaN"),
        ({0: BASE}, {0: 0}, "claims 0 examples"),
    ],
)
@ESTIMATORS
def test_bad_rounds_are_refused_with_a_clear_reason(
    updates: dict[int, np.ndarray], examples: dict[int, int], reason: str, estimate: Estimate
) -> None:
    with pytest.raises(InvalidInput, match=reason):
        estimate(BASE, updates, examples, bowl, seed=0)


# -- real local training --------------------------------------------------------------


def _round(
    flip: float = 0.0, free_rider: bool = False
) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, int], MlpValue | TorchValue]:
    """One round of 6 digits clients from a shared start (client 1's labels flipped in
    part, client 0 a free rider); the value is the validation score."""
    pytest.importorskip("torch")
    from idlegrid.fl import validation_value
    from idlegrid.fl._local import initial_params, local_fit
    from idlegrid.fl._partition import client_seed, digits_federated
    from idlegrid.workloads._train_models import MlpModel

    model = MlpModel(family="mlp", inputs=64, hidden=(32,), classes=10)
    data = digits_federated(6, 1.0, seed=0)
    start = initial_params(model, 0)
    updates, examples = {}, {}
    for i in range(6):
        x, y = data.client(i)
        if i == 1 and flip:
            rng = np.random.default_rng(5)
            y = y.copy()
            idx = rng.choice(len(y), int(flip * len(y)), replace=False)
            y[idx] = (y[idx] + rng.integers(1, 10, len(idx))) % 10
        fit = local_fit(model, start, x, y, epochs=2, batch=16, lr=0.3,
                        seed=client_seed(0, 1, i))  # fmt: skip
        updates[i], examples[i] = fit.params, fit.examples
    if free_rider:
        updates[0] = start.copy()

    return start, updates, examples, validation_value(model, data.x_test, data.y_test)


@ESTIMATORS
def test_on_real_training_a_free_rider_earns_nothing_and_flipped_labels_earn_less(
    estimate: Estimate,
) -> None:
    # Execute: the same round clean, with client 1's labels half flipped, with a free rider
    clean = estimate(*_round(), seed=1)
    noisy = estimate(*_round(flip=0.5), seed=1)
    rider = estimate(*_round(free_rider=True), seed=1)

    # Assert
    assert shares(rider.values)[0] == 0.0 and rider.values[0] == 0.0
    assert 0 <= shares(noisy.values)[1] < shares(clean.values)[1]
    assert clean.v_after > clean.v_before and clean.evaluations > 6


def _exact_shapley(value: Any, base: np.ndarray, steps: list[np.ndarray]) -> np.ndarray:
    """Every coalition's value, weighted as Shapley's formula weighs it."""
    n = len(steps)
    phi = np.zeros(n)
    for i in range(n):
        rest = [j for j in range(n) if j != i]
        for size in range(n):
            weight = factorial(size) * factorial(n - size - 1) / factorial(n)
            for coalition in combinations(rest, size):
                without = base + sum((steps[j] for j in coalition), np.zeros_like(base))
                phi[i] += weight * (
                    value((without + steps[i]).astype(np.float32))
                    - value(without.astype(np.float32))
                )
    return phi


def test_the_path_estimate_is_the_exact_shapley_value_of_a_quadratic_game() -> None:
    # Prepare: five clients of a quadratic game (the bowl), unequal, non-iid, noisy
    rng = np.random.default_rng(11)
    updates = _updates({0: 0.9, 1: 0.6, 2: 0.4, 3: 0.2, 4: 0.05}, rng, noise=0.1)
    examples = dict.fromkeys(updates, 40)
    base, groups, steps, _ = _players(BASE, updates, examples, 1.1, None, 0.95)

    # Execute
    got = aumann_shapley(BASE, updates, examples, bowl, group_tau=1.1, nodes=1)

    # Assert: every one of the 2**5 coalitions' values, weighted; no sampling error
    want = _exact_shapley(bowl, base, steps)
    assert [g[0] for g in groups] == list(range(5))
    # (to float32 rounding: the bowl scores float32 parameters, as every value does)
    assert np.allclose([got.values[c] for c in range(5)], want, rtol=1e-6, atol=1e-9)
    assert got.change < 1e-6 and got.evaluations == 3


def test_on_real_training_the_path_estimate_is_within_two_percent_of_exact_shapley() -> None:
    # Prepare: one round of six digits clients, one with half its labels flipped
    start, updates, examples, value = _round(flip=0.5)
    base, _, steps, _ = _players(start, updates, examples, 0.8, None, 0.95)
    want = _exact_shapley(value, base, steps)

    # Execute
    got = aumann_shapley(start, updates, examples, value)

    # Assert: the 64 coalitions' exact values against 8 gradients (relative L1 error)
    mine = np.array([got.values[c] for c in range(6)])
    assert np.abs(mine - want).sum() <= 0.02 * np.abs(want).sum()
    assert got.change < 0.01  # the values add up to the round's gain


def test_the_numpy_path_gradient_of_an_mlp_is_torch_s_autograd() -> None:
    pytest.importorskip("torch")
    from idlegrid.fl import initial_params, local_fit
    from idlegrid.fl._partition import digits_federated
    from idlegrid.workloads._train_models import MlpModel

    model = MlpModel(family="mlp", inputs=64, hidden=(32, 16), classes=10)
    data = digits_federated(3, 1.0, seed=1)
    start = initial_params(model, 0)
    x, y = data.client(0)
    fit = local_fit(model, start, x, y, epochs=1, batch=16, lr=0.3, seed=0)
    base, step = start.astype(np.float64), fit.params.astype(np.float64) - start
    numpy_value = MlpValue(model, data.x_test, data.y_test)
    torch_value = TorchValue(model, data.x_test, data.y_test)
    for nodes in (1, 3):
        mine = numpy_value.path_gradient(base, step, nodes)
        theirs = torch_value.path_gradient(base, step, nodes)
        assert np.allclose(mine, theirs, rtol=1e-4, atol=1e-7)
    # along a client's step, the mean gradient times the step is the score's change
    gain = numpy_value(fit.params) - numpy_value(start)
    assert float(numpy_value.path_gradient(base, step, 8) @ step) == pytest.approx(gain, rel=0.01)


def test_a_convolutional_round_is_estimated_through_torch() -> None:
    pytest.importorskip("torch")
    from idlegrid.fl import initial_params, validation_value
    from idlegrid.workloads._train_models import CnnModel

    model = CnnModel(family="cnn", channels=1, height=8, width=8, conv=(4,), classes=3)
    rng = np.random.default_rng(4)
    x = rng.random((40, 1, 8, 8), dtype=np.float32)
    y = (x.reshape(40, -1).mean(axis=1) * 3).astype(np.int64).clip(0, 2)
    start = initial_params(model, 0)
    value = validation_value(model, x, y)
    assert isinstance(value, TorchValue)
    # two clients step along the score's gradient (useful), one sends the model back
    grad = value.path_gradient(start.astype(np.float64), np.zeros(start.shape), 1)
    updates = {
        0: (start + 2.0 * grad).astype(np.float32),
        1: (start + 1.0 * grad + 0.01 * rng.normal(size=start.shape)).astype(np.float32),
        2: start.copy(),
    }

    got = aumann_shapley(start, updates, dict.fromkeys(updates, 10), value, group_tau=1.1)

    assert got.values[2] == 0.0 and got.values[0] > 0 and got.values[1] > 0
    assert sum(got.values.values()) == pytest.approx(got.v_after - got.v_before, rel=0.01)


def test_copies_padded_with_noise_are_still_one_player_by_what_they_predict() -> None:
    # Prepare: client 2's update sent by three identities, each adding its own noise
    # of 3/4 of the update's norm (their parameters' cosines fall to 0.64)
    start, updates, examples, value = _round()
    mine, claim = updates.pop(2).astype(np.float64) - start, examples.pop(2)
    rng = np.random.default_rng(8)
    for k in (91, 92, 93):
        noise = rng.normal(size=mine.shape)
        noise *= 0.75 * np.linalg.norm(mine) / np.linalg.norm(noise)
        updates[k], examples[k] = (start + mine + noise).astype(np.float32), claim
    as_one = {c: u for c, u in updates.items() if c < 90} | {2: (start + mine).astype(np.float32)}
    one_examples = {c: n for c, n in examples.items() if c < 90} | {2: claim}

    # Execute
    by_params = gtg_shapley(start, updates, examples, value, seed=1)
    by_effects = aumann_shapley(start, updates, examples, value)
    apart = aumann_shapley(start, updates, examples, value, group_tau=1.1)
    one = aumann_shapley(start, as_one, one_examples, value)

    # Assert: compared by parameters the copies are three players; by their effect on
    # the validation logits (which the noise barely moves) one, worth what the one is
    assert not any({91, 92, 93} <= set(g) for g in by_params.groups)
    assert [91, 92, 93] in by_effects.groups
    copies = sum(by_effects.values[k] for k in (91, 92, 93))
    assert 0.95 * one.values[2] <= copies <= 1.05 * one.values[2]
    # not merged, the three would have been paid well over the one's worth
    assert sum(apart.values[k] for k in (91, 92, 93)) > 1.5 * one.values[2]


def test_the_numpy_logit_effects_of_an_mlp_are_torch_s_jvp() -> None:
    pytest.importorskip("torch")
    from idlegrid.fl import initial_params
    from idlegrid.fl._partition import digits_federated
    from idlegrid.workloads._train_models import MlpModel

    model = MlpModel(family="mlp", inputs=64, hidden=(32, 16), classes=10)
    data = digits_federated(3, 1.0, seed=1)
    base = initial_params(model, 0)
    deltas = np.random.default_rng(5).normal(0, 0.05, (3, base.size))
    mine = MlpValue(model, data.x_test, data.y_test).effects(base, deltas)
    theirs = TorchValue(model, data.x_test, data.y_test).effects(base, deltas)
    assert mine.shape == (3, len(data.y_test) * 10)
    assert np.allclose(mine, theirs, rtol=1e-4, atol=1e-6)
    # linear in the update: twice the update, twice the effect; none, none
    double = MlpValue(model, data.x_test, data.y_test).effects(base, 2 * deltas[:1])
    assert np.allclose(double, 2 * mine[:1], atol=1e-9)
    assert not MlpValue(model, data.x_test, data.y_test).effects(base, 0 * deltas[:1]).any()


def test_an_effect_is_measured_on_fewer_rows_when_classes_are_many() -> None:
    from idlegrid.workloads._train_models import MlpModel

    model = MlpModel(family="mlp", inputs=4, hidden=(3,), classes=1024)
    rng = np.random.default_rng(2)
    value = MlpValue(model, rng.random((50, 4), dtype=np.float32), rng.integers(0, 1024, 50))
    base = rng.normal(size=value.n).astype(np.float32)
    got = value.effects(base, rng.normal(size=(2, value.n)))
    assert got.shape == (2, 32 * 1024)  # 2**15 logits an update, not 50 rows' 51,200
    with pytest.raises(InvalidInput, match="updates are"):
        value.effects(base, rng.normal(size=(2, value.n + 1)))


def test_the_path_needs_one_to_max_nodes_points() -> None:
    updates = _updates({0: 0.5}, np.random.default_rng(0))
    for nodes in (0, 65):
        with pytest.raises(InvalidInput, match="1 to 64 nodes"):
            aumann_shapley(BASE, updates, {0: 5}, bowl, nodes=nodes)


def test_the_numpy_value_of_an_mlp_is_the_gce_of_torch_s_probabilities() -> None:
    pytest.importorskip("torch")
    from idlegrid.fl import evaluate_params, initial_params, validation_value
    from idlegrid.fl._local import true_class_log_probs
    from idlegrid.fl._partition import digits_federated
    from idlegrid.workloads._train_models import MlpModel

    model = MlpModel(family="mlp", inputs=64, hidden=(32, 16), classes=10)
    data = digits_federated(3, 1.0, seed=1)
    value = validation_value(model, data.x_test, data.y_test)
    for seed in (0, 1):
        params = initial_params(model, seed)
        log_p = true_class_log_probs(model, params, data.x_test, data.y_test)
        q = GCE_Q
        assert value(params) == pytest.approx(float(np.mean((np.exp(q * log_p) - 1) / q)), abs=1e-5)
        # the same log-probabilities torch's cross-entropy averages
        loss, _ = evaluate_params(model, params, data.x_test, data.y_test)
        assert -float(np.mean(log_p)) == pytest.approx(loss, abs=1e-5)
    with pytest.raises(InvalidInput, match="parameters are"):
        value(params[:-1])
    with pytest.raises(InvalidInput, match="validation set"):
        validation_value(model, data.x_test[:, :10], data.y_test)


def test_the_score_is_bounded_and_between_log_likelihood_and_probability() -> None:
    log_p = np.log(np.array([[1.0, 0.5, 1e-30], [1.0, 1.0, 1.0]]))
    got = gce_score(log_p)
    # a certain row scores 0, a hopeless one -1/q at worst (log-likelihood: -69)
    assert got[1] == 0.0 and got[0] >= -1 / GCE_Q
    assert got[0] == pytest.approx((0 + (0.5**GCE_Q - 1) / GCE_Q - 1 / GCE_Q) / 3)
    # one confidently wrong row weighs less than under the log-likelihood
    assert np.mean(log_p[0]) < got[0]


def test_a_reward_is_split_by_positive_contribution_and_never_over_its_total() -> None:
    # ten equal values (0.1 each: float shares that do not add up to exactly 1)
    values = {c: 0.1 for c in range(10)} | {10: -2.0, 11: 0.0}
    total = 3 * 10**18 // 2
    parts = split_reward(total, values)
    assert sum(parts.values()) <= total and set(parts) == set(range(10))
    assert max(parts.values()) - min(parts.values()) <= 1
    assert split_reward(total, {0: -1.0, 1: 0.0}) == {}
    assert split_reward(5, {0: 1.0, 1: 1.0, 2: 1.0}) == {0: 1, 1: 1, 2: 1}
    with pytest.raises(InvalidInput, match="0 wei or more"):
        split_reward(-1, values)


def test_netting_weighs_every_round_the_same_and_a_round_that_hurt_takes_back() -> None:
    # Prepare: round 1 moved the model ten times as far as round 2; client "b" hurt
    # round 3 as much as it helped round 2; "c" was absent from round 1; round 4 moved
    # nothing
    rounds = [
        {"a": 9.0, "b": 1.0},
        {"a": 0.3, "b": 0.5, "c": 0.2},
        {"a": 0.5, "b": -0.5},
        {"a": 0.0, "b": 0.0, "c": 0.0},
    ]

    # Execute
    netted = net_rounds(rounds)

    # Assert: each round a client's signed fraction of the round's total absolute value
    assert netted == pytest.approx({"a": 0.9 + 0.3 + 0.5, "b": 0.1 + 0.5 - 0.5, "c": 0.2})
    # a round's scale does not matter: only the split of what moved the model
    scaled = net_rounds([{c: 1e3 * v for c, v in r.items()} for r in rounds])
    assert scaled == pytest.approx(netted)
    # so the first round's size does not buy the run: "b" keeps what round 1 split
    assert shares(netted)["b"] == pytest.approx(0.1 / 2.0)
    assert net_rounds([]) == {}


# -- under secure aggregation: contributions from group aggregates ----------------------


def _cohorts(quality: dict[str, float], rounds: int, size: int, seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    names = sorted(quality)
    history = []
    for _ in range(rounds):
        cohort = [names[i] for i in sorted(rng.choice(len(names), size, replace=False))]
        gain = sum(quality[c] for c in cohort) / size + rng.normal(0, 0.02)
        history.append((cohort, gain))
    return history


def test_group_aggregates_tell_a_free_rider_and_a_weak_client_from_the_rest() -> None:
    """Random cohorts of 5 of 10 over 40 rounds: a free rider (adds nothing) and a
    client worth half as much are found from the cohorts' gains alone."""
    quality = {f"c{i}": 1.0 for i in range(10)} | {"c0": 0.0, "c1": 0.5}

    got = group_contributions(_cohorts(quality, 40, 5, seed=0))

    assert abs(got["c0"]) < 0.1 and abs(got["c1"] - 0.5) < 0.1
    assert all(abs(got[f"c{i}"] - 1.0) < 0.1 for i in range(2, 10))
    paid = shares(got)
    assert paid["c0"] < 0.01 < paid["c1"] < min(paid[f"c{i}"] for i in range(2, 10))


def test_group_aggregates_of_the_same_cohort_give_the_equal_split() -> None:
    """Every client in every round: nothing tells them apart, and nobody is favoured."""
    names = [f"c{i}" for i in range(4)]

    got = group_contributions([(names, 0.9), (names, 0.5)])

    assert got == pytest.approx(dict.fromkeys(names, 0.7))


def test_group_aggregates_refuse_an_empty_cohort_or_a_gain_that_is_not_finite() -> None:
    with pytest.raises(InvalidInput, match="members and a finite gain"):
        group_contributions([([], 0.1)])
    with pytest.raises(InvalidInput, match="members and a finite gain"):
        group_contributions([(["a"], float("nan"))])
    assert group_contributions([]) == {}


def test_batched_coalition_values_are_the_single_ones_and_a_zero_update_adds_nothing() -> None:
    """The numpy MLP's batched pass (``heads``, what the estimate uses) gives each
    coalition the value ``head`` gives it alone, and a zero update in a real round is
    worth exactly nothing through it."""
    pytest.importorskip("torch")
    from idlegrid.fl import validation_value
    from idlegrid.fl._partition import digits_federated
    from idlegrid.workloads._train_models import MlpModel

    start, updates, examples, _ = _round(free_rider=True)
    model = MlpModel(family="mlp", inputs=64, hidden=(32,), classes=10)
    data = digits_federated(6, 1.0, seed=0)
    value = validation_value(model, data.x_test, data.y_test)
    assert isinstance(value, MlpValue)
    params = np.stack([updates[c] for c in sorted(updates)])
    first = value.first_size

    batched = value.heads(
        np.stack([value.first(p) for p in params]),
        params[:, first:],
    )

    assert batched.shape == (len(params),)
    assert batched.tolist() == pytest.approx([value(p) for p in params], abs=1e-6)
    with pytest.raises(InvalidInput, match="do not match"):
        value.heads(np.stack([value.first(p) for p in params]), params[:2, first:])
    got = gtg_shapley(start, updates, examples, value, seed=1)
    assert got.values[0] == 0.0 and min(got.values[c] for c in (2, 3, 4, 5)) > 0
