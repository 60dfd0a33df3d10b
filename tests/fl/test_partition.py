"""The Dirichlet label partition and the federated digits data."""

from __future__ import annotations

import numpy as np
import pytest

from idlegrid._exceptions import InvalidInput
from idlegrid.fl._partition import client_seed, digits_federated, dirichlet_partition

LABELS = np.repeat(np.arange(10), 150)


def _mean_label_entropy(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    entropies = []
    for part in parts:
        p = np.bincount(labels[part], minlength=10) / len(part)
        p = p[p > 0]
        entropies.append(float(-(p * np.log(p)).sum()))
    return float(np.mean(entropies))


@pytest.mark.parametrize("alpha", [0.1, 0.5, 100.0])
def test_parts_are_disjoint_and_cover_every_row(alpha: float) -> None:
    parts = dirichlet_partition(LABELS, 10, alpha, seed=3)

    rows = np.concatenate(parts)

    assert len(parts) == 10
    assert all(part.dtype == np.int64 for part in parts)
    assert np.array_equal(np.sort(rows), np.arange(len(LABELS)))


def test_every_client_gets_min_size_rows() -> None:
    for seed in range(5):
        parts = dirichlet_partition(LABELS, 10, 0.1, seed=seed, min_size=25)

        assert min(len(part) for part in parts) >= 25


def test_lower_alpha_skews_the_label_distributions() -> None:
    def entropy(alpha: float) -> float:
        draws = [dirichlet_partition(LABELS, 10, alpha, seed=s) for s in range(5)]
        return float(np.mean([_mean_label_entropy(LABELS, parts) for parts in draws]))

    low, mid, high = entropy(0.1), entropy(0.5), entropy(100.0)

    assert low < mid < high
    assert high > 0.95 * np.log(10)


def test_the_partition_is_a_function_of_the_seed() -> None:
    first = dirichlet_partition(LABELS, 10, 0.5, seed=7)
    again = dirichlet_partition(LABELS, 10, 0.5, seed=7)
    other = dirichlet_partition(LABELS, 10, 0.5, seed=8)

    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(
        len(a) == len(b) and np.array_equal(a, b) for a, b in zip(first, other, strict=True)
    )


def test_one_client_gets_everything() -> None:
    (part,) = dirichlet_partition(LABELS, 1, 0.5, seed=0)

    assert np.array_equal(np.sort(part), np.arange(len(LABELS)))


@pytest.mark.parametrize(
    ("clients", "alpha", "seed", "min_size", "reason"),
    [
        (0, 0.5, 0, 10, "clients"),
        (2.5, 0.5, 0, 10, "clients"),
        (10, 0.0, 0, 10, "alpha"),
        (10, -1.0, 0, 10, "alpha"),
        (10, float("nan"), 0, 10, "alpha"),
        (10, 0.5, -1, 10, "seed"),
        (10, 0.5, 0, -1, "min_size"),
        (10, 0.5, 0, 151, "rows"),
    ],
)
def test_invalid_arguments_are_refused(
    clients: int, alpha: float, seed: int, min_size: int, reason: str
) -> None:
    with pytest.raises(InvalidInput, match=reason):
        dirichlet_partition(LABELS, clients, alpha, seed=seed, min_size=min_size)


def test_an_unreachable_min_size_gives_up_after_bounded_draws() -> None:
    # Possible in principle (150 rows each), but a Dir(0.01) draw never spreads that evenly.
    with pytest.raises(InvalidInput, match="draws"):
        dirichlet_partition(LABELS, 10, 0.01, seed=0, min_size=150)


def test_labels_must_be_one_dimensional() -> None:
    with pytest.raises(InvalidInput, match="one-dimensional"):
        dirichlet_partition(LABELS.reshape(-1, 10), 10, 0.5, seed=0)


def test_digits_federated_holds_out_a_stratified_test_set() -> None:
    data = digits_federated(10, 0.5, seed=0)

    assert data.x_train.dtype == np.float32 and data.x_test.dtype == np.float32
    assert data.y_train.dtype == np.int64
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    assert len(data.x_train) + len(data.x_test) == 1797
    assert len(data.x_test) == pytest.approx(0.2 * 1797, abs=1)
    assert set(np.bincount(data.y_test).tolist()) <= {35, 36, 37}
    rows = np.sort(np.concatenate(data.parts))
    assert np.array_equal(rows, np.arange(len(data.x_train)))
    x, y = data.client(3)
    assert np.array_equal(x, data.x_train[data.parts[3]])
    assert np.array_equal(y, data.y_train[data.parts[3]])


@pytest.mark.parametrize("test_fraction", [0.0, 1.0, 0.001])
def test_digits_federated_refuses_a_bad_test_fraction(test_fraction: float) -> None:
    with pytest.raises(InvalidInput, match="test_fraction"):
        digits_federated(10, 0.5, seed=0, test_fraction=test_fraction)


def test_client_seeds_differ_across_rounds_and_clients() -> None:
    seeds = {client_seed(5, rnd, i) for rnd in range(1, 31) for i in range(10)}

    assert len(seeds) == 300
    assert client_seed(5, 2, 3) == 5 + 2 * 1000 + 3
