"""The centralized baseline: the federated model's target, trained on the pooled data.

The same network and :func:`~idlegrid.fl._local.local_fit` as a federated client, on all
of ``data.x_train`` at once, one epoch per call, each continuing from the last one's
weights, so "epoch ``e``" of this baseline sits next to "round ``e``" of a federated run
with one local epoch. Epoch ``e`` (1-based) is seeded ``client_seed(seed, e, 0)``, the
seed client 0 would train with in round ``e``. An Adam optimizer starts afresh every
epoch, as it does on a federated client every round.
"""

from __future__ import annotations

from typing import Literal

from .._exceptions import InvalidInput
from ..workloads._train_models import ModelSpec
from ._local import evaluate_params, initial_params, local_fit
from ._partition import FederatedData, client_seed

__all__ = ["run_centralized"]


def run_centralized(
    model: ModelSpec,
    data: FederatedData,
    *,
    epochs: int,
    batch: int,
    lr: float,
    seed: int,
    optimizer: Literal["sgd", "adam"] = "sgd",
) -> list[float]:
    """Test accuracy of ``model`` after each of ``epochs`` epochs on the pooled training
    data, from ``initial_params(model, seed)``: index 0 is after epoch 1."""
    if epochs < 1:
        raise InvalidInput(f"epochs must be >= 1, not {epochs}")
    params = initial_params(model, seed)
    accuracy: list[float] = []
    for epoch in range(1, epochs + 1):
        fit = local_fit(
            model,
            params,
            data.x_train,
            data.y_train,
            epochs=1,
            batch=batch,
            lr=lr,
            optimizer=optimizer,
            seed=client_seed(seed, epoch, 0),
        )
        params = fit.params
        accuracy.append(evaluate_params(model, params, data.x_test, data.y_test)[1])
    return accuracy
