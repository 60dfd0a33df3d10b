"""Federated data for the benchmarks: a Dirichlet label partition of a shipped data set.

:func:`dirichlet_partition` follows flwr-datasets' ``DirichletPartitioner`` (Yurochkin
et al., 2019, "Bayesian Nonparametric Federated Learning of Neural Networks"), the
partition Flower's own baselines use for label skew, with ``self_balancing=False`` and
``shuffle=True``: for every class in turn, proportions over the clients are drawn from
``Dir(alpha)``, the rows of that class are cut at ``int(cumsum(proportions) * n_class)``
and each client gets its slice; when a client ends up with fewer than ``min_size`` rows
the whole draw is repeated, at most :data:`MAX_DRAWS` times (flwr-datasets' bound: one
draw and ten resamplings). flwr-datasets itself is not a dependency: it works on
Hugging Face ``datasets`` objects and would pull that stack in. Ours differs only where
that does not matter: classes go in sorted order (flwr-datasets takes them in order of
first appearance), it takes index arrays, and it raises :class:`InvalidInput` instead of
warning on every resampling.

:func:`digits_federated` splits scikit-learn's ``load_digits`` (1,797 8x8 images, shipped
inside the package: no download) into a stratified held-out test set, the sponsor's
validation set, and a training set partitioned across the clients.

:func:`client_seed` is the one seeding rule of a client's round, shared by the Flower
baseline and idlegrid's own rounds, so both train every client on the same batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._exceptions import InvalidInput

__all__ = [
    "MAX_DRAWS",
    "FederatedData",
    "client_seed",
    "digits_federated",
    "dirichlet_partition",
]

MAX_DRAWS = 11
"""Dirichlet draws tried before giving up on ``min_size`` (flwr-datasets: 1 + 10 retries)."""


def client_seed(seed: int, rnd: int, client_index: int) -> int:
    """The ``local_fit`` seed of client ``client_index`` (0-based, the index of its part)
    in round ``rnd`` (1-based) of a run seeded ``seed``: ``seed + rnd * 1000 +
    client_index``. Distinct for every (round, client) pair while clients < 1000."""
    return seed + rnd * 1000 + client_index


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInput(f"seed must be an integer >= 0, not {seed!r}")


def dirichlet_partition(
    labels: np.ndarray, clients: int, alpha: float, *, seed: int, min_size: int = 10
) -> list[np.ndarray]:
    """Split the rows of ``labels`` into ``clients`` disjoint index arrays covering every
    row, with each class spread over the clients by proportions drawn from
    ``Dir(alpha)`` (smaller ``alpha``: more skew), each array holding at least
    ``min_size`` rows, in an order shuffled from ``seed``."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InvalidInput(f"labels must be one-dimensional, not of shape {labels.shape}")
    if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
        raise InvalidInput(f"clients must be an integer >= 1, not {clients!r}")
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha > 0):
        raise InvalidInput(f"alpha must be a finite number > 0, not {alpha!r}")
    _check_seed(seed)
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
        raise InvalidInput(f"min_size must be an integer >= 0, not {min_size!r}")
    if clients * max(min_size, 1) > len(labels):
        raise InvalidInput(
            f"{len(labels)} rows cannot give {clients} clients {max(min_size, 1)} rows each"
        )
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == k) for k in np.unique(labels)]
    concentration = np.full(clients, float(alpha))
    for _ in range(MAX_DRAWS):
        pieces: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for rows in by_class:
            proportions = rng.dirichlet(concentration)
            cuts = (np.cumsum(proportions) * len(rows)).astype(int)[:-1]
            for mine, piece in zip(pieces, np.split(rows, cuts), strict=True):
                mine.append(piece)
        out = [np.concatenate(mine).astype(np.int64) for mine in pieces]
        if min(len(part) for part in out) >= min_size:
            for part in out:
                rng.shuffle(part)
            return out
    raise InvalidInput(
        f"no Dirichlet draw with alpha={alpha} gave each of {clients} clients "
        f"{min_size} rows in {MAX_DRAWS} draws: raise alpha or lower min_size"
    )


@dataclass(frozen=True)
class FederatedData:
    """A federated data set: the pooled training rows, the clients' parts of them (index
    arrays into ``x_train``) and the sponsor's held-out test set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    parts: list[np.ndarray]

    def client(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Client ``index``'s ``(x, y)``."""
        rows = self.parts[index]
        return self.x_train[rows], self.y_train[rows]


def digits_federated(
    clients: int, alpha: float, *, seed: int, test_fraction: float = 0.2, min_size: int = 10
) -> FederatedData:
    """scikit-learn's digits (float32 pixels scaled to [0, 1], int64 labels): a
    ``test_fraction`` stratified test set, the rest split by :func:`dirichlet_partition`.
    Both the split and the partition are drawn from ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    _check_seed(seed)
    if not (isinstance(test_fraction, int | float) and 0 < test_fraction < 1):
        raise InvalidInput(f"test_fraction must be in (0, 1), not {test_fraction!r}")
    digits = load_digits()
    x = (np.asarray(digits.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(digits.target, dtype=np.int64)
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=test_fraction, stratify=y, random_state=seed % 2**32
        )
    except ValueError as exc:
        raise InvalidInput(f"cannot hold out a stratified test_fraction={test_fraction}") from exc
    parts = dirichlet_partition(y_train, clients, alpha, seed=seed, min_size=min_size)
    return FederatedData(
        x_train=np.ascontiguousarray(x_train),
        y_train=np.ascontiguousarray(y_train),
        x_test=np.ascontiguousarray(x_test),
        y_test=np.ascontiguousarray(y_test),
        parts=parts,
    )
