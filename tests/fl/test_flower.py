"""The Flower baseline (Flower's own server loop and FedAvg) and the centralized one."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest

from idlegrid._exceptions import InvalidInput, WorkloadError
from idlegrid.fl import _flower
from idlegrid.fl._central import run_centralized
from idlegrid.fl._flower import run_flower
from idlegrid.fl._local import local_fit
from idlegrid.fl._partition import FederatedData, client_seed, digits_federated
from idlegrid.workloads._train_models import MlpModel

MODEL = MlpModel(family="mlp", inputs=64, hidden=(32,), classes=10)
TRAIN = {"epochs": 1, "batch": 32, "lr": 0.01, "seed": 0, "optimizer": "adam"}


@pytest.fixture(scope="module")
def data() -> FederatedData:
    return digits_federated(3, 0.5, seed=0)


def test_flower_fedavg_improves_on_the_initial_model(data: FederatedData) -> None:
    run = run_flower(MODEL, data, rounds=2, **TRAIN)  # type: ignore[arg-type]

    assert run.rounds == 2
    assert len(run.accuracy) == len(run.loss) == len(run.train_loss) == 2
    assert run.accuracy[-1] > run.initial_accuracy + 0.3
    assert run.loss[-1] < run.initial_loss
    assert run.seconds_per_round > 0


def test_flower_trains_every_client_with_the_shared_seeding_rule(
    data: FederatedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int]] = []
    real = local_fit

    def spy(*args: object, **kwargs: object) -> object:
        seen.append((len(args[3]), kwargs["seed"]))  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_flower, "local_fit", spy)

    run_flower(MODEL, data, rounds=2, **TRAIN)  # type: ignore[arg-type]

    expected = {
        (len(part), client_seed(0, rnd, i)) for rnd in (1, 2) for i, part in enumerate(data.parts)
    }
    assert sorted(seen) == sorted(expected)


def test_fraction_fit_samples_clients_from_the_seed(
    data: FederatedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds: list[int] = []
    real = local_fit

    def spy(*args: object, **kwargs: object) -> object:
        seeds.append(kwargs["seed"])  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_flower, "local_fit", spy)
    run_flower(MODEL, data, rounds=2, fraction_fit=0.34, **TRAIN)  # type: ignore[arg-type]
    first, seeds[:] = sorted(seeds), []
    run_flower(MODEL, data, rounds=2, fraction_fit=0.34, **TRAIN)  # type: ignore[arg-type]

    assert len(first) == 2  # one client of three per round
    assert sorted(seeds) == first


def test_flower_leaves_its_logger_and_the_random_module_as_it_found_them(
    data: FederatedData,
) -> None:
    logger = logging.getLogger("flwr")
    level = logger.level
    random.seed(1234)
    expected = random.random()
    random.seed(1234)

    run_flower(MODEL, data, rounds=1, **TRAIN)  # type: ignore[arg-type]

    assert logger.level == level
    assert random.random() == expected


def test_a_failing_client_stops_the_run(
    data: FederatedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(_flower, "local_fit", broken)

    with pytest.raises(WorkloadError, match="round 1") as caught:
        run_flower(MODEL, data, rounds=3, **TRAIN)  # type: ignore[arg-type]
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_an_idlegrid_error_in_a_client_comes_back_as_itself(
    data: FederatedData, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuses(*args: object, **kwargs: object) -> object:
        raise InvalidInput("local data: 0 rows of x, 0 labels")

    monkeypatch.setattr(_flower, "local_fit", refuses)

    with pytest.raises(InvalidInput, match="local data"):
        run_flower(MODEL, data, rounds=3, **TRAIN)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"rounds": 0}, "rounds"),
        ({"epochs": 0}, "epochs"),
        ({"batch": 0}, "batch"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"fraction_fit": 0.0}, "fraction_fit"),
        ({"fraction_fit": 1.5}, "fraction_fit"),
        ({"optimizer": "lbfgs"}, "optimizer"),
    ],
)
def test_flower_refuses_bad_settings(
    data: FederatedData, change: dict[str, object], reason: str
) -> None:
    settings = {"rounds": 1, "fraction_fit": 1.0, **TRAIN, **change}

    with pytest.raises(InvalidInput, match=reason):
        run_flower(MODEL, data, **settings)  # type: ignore[arg-type]


def test_flower_refuses_a_model_that_does_not_take_the_data(data: FederatedData) -> None:
    wrong = MlpModel(family="mlp", inputs=32, hidden=(8,), classes=10)

    with pytest.raises(InvalidInput, match="model"):
        run_flower(wrong, data, rounds=1, **TRAIN)  # type: ignore[arg-type]


def test_flower_refuses_an_empty_client(data: FederatedData) -> None:
    empty = FederatedData(
        data.x_train,
        data.y_train,
        data.x_test,
        data.y_test,
        [*data.parts, np.array([], dtype=np.int64)],
    )

    with pytest.raises(InvalidInput, match="row"):
        run_flower(MODEL, empty, rounds=1, **TRAIN)  # type: ignore[arg-type]


def test_centralized_training_improves_epoch_by_epoch(data: FederatedData) -> None:
    accuracy = run_centralized(MODEL, data, **{**TRAIN, "epochs": 3})  # type: ignore[arg-type]

    assert len(accuracy) == 3
    assert accuracy[0] > 0.5
    assert accuracy[-1] > accuracy[0]


def test_centralized_training_is_deterministic(data: FederatedData) -> None:
    settings = {**TRAIN, "epochs": 2}

    first = run_centralized(MODEL, data, **settings)  # type: ignore[arg-type]
    again = run_centralized(MODEL, data, **settings)  # type: ignore[arg-type]

    assert first == again


def test_centralized_refuses_zero_epochs(data: FederatedData) -> None:
    with pytest.raises(InvalidInput, match="epochs"):
        run_centralized(MODEL, data, **{**TRAIN, "epochs": 0})  # type: ignore[arg-type]
