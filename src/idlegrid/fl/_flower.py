"""The Flower baseline: the same model, data, rounds and local epochs run by Flower.

What is Flower's: the server loop (``flwr.server.Server.fit``), client sampling
(``SimpleClientManager``), aggregation (``FedAvg``, weighted by examples), the
serialisation of parameters (``ndarrays_to_parameters``), the ``NumPyClient`` ->
``Client`` conversion (``to_client()``) and the run history (``History``), from which
the accuracies and losses are read.

What is ours, and why: the transport. Flower 1.42 no longer has ``start_client`` and its
simulation engine needs Ray, so each client is connected through :class:`_LocalProxy`, an
in-process ``ClientProxy`` that hands Flower's ``FitIns`` straight to the client's
``Client.fit`` (the role ``RayActorClientProxy`` plays in Flower's simulation, without
the actor pool). A client's ``fit`` is :func:`~idlegrid.fl._local.local_fit`, the same
training idlegrid's rounds run, on its part of :class:`~idlegrid.fl._partition.FederatedData`;
the global model is evaluated centrally on the sponsor's test set (``evaluate_fn``) after
every round, with no federated evaluation (``fraction_evaluate=0``).

Seeding: the initial model is ``initial_params(model, seed)``; in round ``r`` client
``i`` (the index of its part) trains with ``client_seed(seed, r, i)`` (the round and
the run's seed travel in Flower's fit config); the clients FedAvg samples each round come
from Python's ``random`` module, which Flower's ``SimpleClientManager`` uses, seeded
with ``seed`` for the run and restored afterwards. Clients run in Flower's thread pool
and FedAvg sums their updates in the order they finish, so the global model is
reproducible up to float32 rounding of that sum.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
from flwr.client import Client, NumPyClient
from flwr.common import (
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Metrics,
    NDArrays,
    ReconnectIns,
    Scalar,
    ndarrays_to_parameters,
)
from flwr.server import Server
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from .._exceptions import IdlegridError, InvalidInput, WorkloadError
from ..workloads._train_models import ModelSpec
from ._local import evaluate_params, initial_params, local_fit
from ._partition import FederatedData, client_seed

__all__ = ["FlowerRun", "run_flower"]

Config = dict[str, Scalar]


class _PartClient(NumPyClient):
    """A Flower client holding one part of the training data; its ``fit`` is
    :func:`local_fit`, seeded by :func:`client_seed` from the round and the run's seed
    that the server's fit config carries."""

    def __init__(
        self,
        model: ModelSpec,
        index: int,
        x: np.ndarray,
        y: np.ndarray,
        optimizer: Literal["sgd", "adam"],
    ) -> None:
        self.model, self.index, self.x, self.y, self.optimizer = model, index, x, y, optimizer

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, Metrics]:
        result = local_fit(
            self.model,
            np.asarray(parameters[0], dtype=np.float32),
            self.x,
            self.y,
            epochs=int(config["epochs"]),
            batch=int(config["batch"]),
            lr=float(config["lr"]),
            optimizer=self.optimizer,
            seed=client_seed(int(config["seed"]), int(config["round"]), self.index),
        )
        return [result.params], result.examples, {"loss": result.loss}


class _LocalProxy(ClientProxy):
    """Flower's server-side handle on a client in this process: each call goes straight
    to the ``Client`` (no network, no Ray). A client that raises is recorded in
    ``failures`` and re-raised, which Flower's loop counts as a failure."""

    def __init__(self, index: int, client: Client, failures: list[BaseException]) -> None:
        super().__init__(cid=str(index))
        self.node_id = index
        self._client = client
        self._failures = failures

    def get_properties(
        self, ins: GetPropertiesIns, timeout: float | None, group_id: int | None
    ) -> GetPropertiesRes:
        return self._client.get_properties(ins)

    def get_parameters(
        self, ins: GetParametersIns, timeout: float | None, group_id: int | None
    ) -> GetParametersRes:
        return self._client.get_parameters(ins)

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None) -> FitRes:
        try:
            return self._client.fit(ins)
        except BaseException as exc:
            self._failures.append(exc)
            raise

    def evaluate(
        self, ins: EvaluateIns, timeout: float | None, group_id: int | None
    ) -> EvaluateRes:
        return self._client.evaluate(ins)

    def reconnect(
        self, ins: ReconnectIns, timeout: float | None, group_id: int | None
    ) -> DisconnectRes:
        return DisconnectRes(reason="in-process client: nothing to disconnect")


def _weighted_loss(fits: list[tuple[int, Metrics]]) -> Metrics:
    """The clients' training losses averaged with FedAvg's weights (their examples)."""
    total = sum(examples for examples, _ in fits)
    return {"loss": sum(examples * float(m["loss"]) for examples, m in fits) / total}


@dataclass(frozen=True)
class FlowerRun:
    """What a Flower run measured, read from Flower's ``History``.

    ``accuracy[r - 1]`` and ``loss[r - 1]`` are the global model's test accuracy and mean
    cross-entropy after round ``r``; ``initial_*`` are round 0's (the initial model);
    ``train_loss[r - 1]`` is the clients' mean training loss in round ``r``, weighted by
    examples; ``seconds_per_round`` is Flower's own wall time of the rounds (training,
    aggregation and the central evaluation) divided by ``rounds``.
    """

    accuracy: list[float]
    loss: list[float]
    train_loss: list[float]
    initial_accuracy: float
    initial_loss: float
    seconds_per_round: float
    rounds: int


def _check(
    data: FederatedData,
    *,
    rounds: int,
    epochs: int,
    batch: int,
    lr: float,
    fraction_fit: float,
    optimizer: str,
) -> None:
    if rounds < 1 or epochs < 1 or batch < 1:
        raise InvalidInput(f"rounds, epochs and batch must be >= 1: {rounds}, {epochs}, {batch}")
    if not (math.isfinite(lr) and lr > 0):
        raise InvalidInput(f"lr must be a finite number > 0, not {lr!r}")
    if not 0 < fraction_fit <= 1:
        raise InvalidInput(f"fraction_fit must be in (0, 1], not {fraction_fit!r}")
    if optimizer not in ("sgd", "adam"):
        raise InvalidInput(f"optimizer must be 'sgd' or 'adam', not {optimizer!r}")
    if not data.parts or any(len(part) == 0 for part in data.parts):
        raise InvalidInput("every client needs at least one training row")


@contextmanager
def _quiet_and_seeded(seed: int) -> Iterator[None]:
    """Flower's logger at WARNING and Python's ``random`` seeded, both restored after."""
    logger = logging.getLogger("flwr")
    level = logger.level
    state = random.getstate()
    logger.setLevel(logging.WARNING)
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)
        logger.setLevel(level)


def run_flower(
    model: ModelSpec,
    data: FederatedData,
    *,
    rounds: int,
    epochs: int,
    batch: int,
    lr: float,
    seed: int,
    fraction_fit: float = 1.0,
    optimizer: Literal["sgd", "adam"] = "sgd",
) -> FlowerRun:
    """Train ``model`` by Flower's FedAvg for ``rounds`` rounds of ``epochs`` local
    epochs on each sampled client (``fraction_fit`` of ``len(data.parts)``, at least
    one), evaluating the global model on ``data``'s test set after every round."""
    _check(
        data,
        rounds=rounds,
        epochs=epochs,
        batch=batch,
        lr=lr,
        fraction_fit=fraction_fit,
        optimizer=optimizer,
    )
    start = initial_params(model, seed)
    try:
        evaluate_params(model, start, data.x_test[:1], data.y_test[:1])
    except RuntimeError as exc:
        raise InvalidInput(f"the model does not take this data's rows: {exc}") from exc

    failures: list[BaseException] = []
    manager = SimpleClientManager()
    for index in range(len(data.parts)):
        x, y = data.client(index)
        client = _PartClient(model, index, x, y, optimizer)
        manager.register(_LocalProxy(index, client.to_client(), failures))

    def fit_config(server_round: int) -> Config:
        return {"round": server_round, "seed": seed, "epochs": epochs, "batch": batch, "lr": lr}

    def evaluate(
        server_round: int,
        parameters: NDArrays,
        config: Config,
    ) -> tuple[float, Config]:
        if failures:  # stop Flower's loop at the first failed client, not after every round
            first = failures[0]
            if isinstance(first, IdlegridError):
                raise first
            raise WorkloadError(f"a Flower client failed in round {server_round}") from first
        flat = np.asarray(parameters[0], dtype=np.float32)
        loss, accuracy = evaluate_params(model, flat, data.x_test, data.y_test)
        return loss, {"accuracy": accuracy}

    strategy = FedAvg(
        fraction_fit=fraction_fit,
        fraction_evaluate=0.0,
        min_fit_clients=1,
        min_evaluate_clients=0,
        min_available_clients=len(data.parts),
        evaluate_fn=evaluate,
        on_fit_config_fn=fit_config,
        accept_failures=False,
        initial_parameters=ndarrays_to_parameters([start]),
        fit_metrics_aggregation_fn=_weighted_loss,
    )
    server = Server(client_manager=manager, strategy=strategy)
    with _quiet_and_seeded(seed):
        history, elapsed = server.fit(num_rounds=rounds, timeout=None)

    accuracy = [float(value) for _, value in history.metrics_centralized["accuracy"]]
    loss = [float(value) for _, value in history.losses_centralized]
    train_loss = [float(value) for _, value in history.metrics_distributed_fit["loss"]]
    return FlowerRun(
        accuracy=accuracy[1:],
        loss=loss[1:],
        train_loss=train_loss,
        initial_accuracy=accuracy[0],
        initial_loss=loss[0],
        seconds_per_round=elapsed / rounds,
        rounds=rounds,
    )
