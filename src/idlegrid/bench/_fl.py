"""`idlegrid bench fl`: federated rounds over real edge nodes, next to Flower.

Method (printed with the figures, in ``how``):

* One machine, loopback only: an anvil chain and ``clients`` edge node processes
  (``start_federation``), each holding one part of scikit-learn's digits (packaged, no
  download): a stratified 20 % test set (the sponsor's validation set), the rest split by
  a Dirichlet label partition (``alpha`` 0.5, and again 0.1 under ``alpha_0_1``, each
  with its own federation). The sponsor coordinates and pays through ``Client.federate``:
  every node is sampled every round, each fit is a paid ``fl`` job.
* The model and training, the same on both sides: an MLP 64-64-10, ``epochs`` local
  epochs of SGD (``lr``, ``batch``) per round, ``rounds`` rounds, FedAvg, client ``i``
  seeded ``client_seed(seed, round, i)``. idlegrid's coordinator numbers the nodes in
  the address-sorted order, so Flower's parts are put in that order too: Flower's client
  ``i`` holds the data, and gets the seeds, of idlegrid's node ``i``.
* ``flower_*``: Flower's own server loop and FedAvg (``run_flower``) on the same parts,
  in process (no network). ``centralized_accuracy``: the model on the pooled training
  data for ``rounds * epochs`` epochs (``run_centralized``).
* ``rounds_to_target``: the first round whose test accuracy is at least
  ``target_fraction`` of ``centralized_accuracy`` (None: never).
* ``seconds_per_round``: after a one-round warm-up run (not counted: it opens the
  payment channels and loads torch in every node), the mean wall time of idlegrid's
  rounds (upload, paid jobs, aggregation, evaluation, ONNX export, on-chain lineage
  registration);
  ``bytes_per_client_round``: bytes each node exchanged with the coordinator per round.
* ``secagg_overhead``: seconds per round of the same run under SecAgg+ over that without.
  A secure round adds two stages (``share``, ``unmask``; ``keys`` is asked once per 16
  rounds), each a paid job to every node; ``secagg_overhead_heavy`` is the same ratio
  with ``HEAVY_EPOCHS`` local epochs (``HEAVY_ROUNDS`` rounds), where the training, not
  the stages, fills the round.
* ``dp_*``: the same run with client-level DP (updates clipped to ``clip`` on the node,
  Gaussian noise ``noise_multiplier * clip / clients`` on the mean); epsilon at
  ``delta`` from opacus's RDP accountant after the last round.
* ``byzantine_drop``: over the network. The robust rule (Flower's FedTrimmedAvg, beta
  0.2: per coordinate, the top and bottom 20 % are cut) runs on the clean federation, and
  again on a second federation of the same parts whose first ``attackers`` edge nodes
  poison every round (the testing aid ``--cheat-mode sign-flip``: a node sends
  ``2 g - p``, its honest update reversed); the drop is the clean final accuracy minus
  the attacked one. ``fedavg_attacked_accuracy`` is plain FedAvg under the same attack.
  ``byzantine_rules_in_process`` gives the same drop for multi-Krum, trimmed mean and
  the median in an in-process simulation (same local training, same attack).
* ``dp_*``: a run with a privacy budget ``dp_budget``: it stops when one more round
  would spend more (``dp_rounds``, ``dp_stopped``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..client import Client
from ..edge._federation import Federation, start_federation
from ..fl._central import run_centralized
from ..fl._flower import run_flower
from ..fl._local import evaluate_params, initial_params, local_fit
from ..fl._partition import FederatedData, client_seed, digits_federated
from ..fl._spec import load_spec
from ..fl._strategy import FitResult, make_strategy
from ..workloads._train_models import MlpModel

__all__ = ["bench_fl"]

MODEL = MlpModel(family="mlp", inputs=64, hidden=(32,), classes=10)


def _robust_rules(clients: int, attackers: int) -> list[dict[str, Any]]:
    """The robust rules simulated; the first gives the top-level ``byzantine_drop``:
    multi-Krum assuming f = ``attackers`` (fewer when ``clients`` cannot tolerate that
    many: Krum needs n > 2f + 2), averaging the n - f - 2 best updates (6 of 10)."""
    f = max(0, min(attackers, (clients - 3) // 2))
    return [
        {"name": "krum", "byzantine": f, "keep": clients - f - 2},
        {"name": "trimmed-mean", "beta": 0.2},
        {"name": "median"},
    ]


#: local epochs and rounds of the runs that measure the SecAgg+ overhead with heavier
#: local work (``secagg_overhead_heavy``)
HEAVY_EPOCHS = 10
HEAVY_ROUNDS = 10

#: the robust rule the network runs clean and attacked (Flower's FedTrimmedAvg)
ROBUST = {"name": "trimmed-mean", "options": {"beta": 0.2}}

TARGETS = {"centralized_slack": 0.01, "byzantine_drop_max": 0.02, "secagg_overhead_max": 1.5}

Progress = Callable[[str], None] | None


def _first(accuracy: list[float], target: float) -> int | None:
    return next((i for i, a in enumerate(accuracy, start=1) if a >= target), None)


def _say(progress: Progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _sorted_parts(fed: Federation, data: FederatedData) -> FederatedData:
    """``data`` with its parts in the coordinator's order (edge addresses, sorted): edge
    node ``i`` (account ``i``) holds part ``i - 1``."""
    order = sorted(range(len(fed.edges)), key=lambda k: fed.edges[k].address.lower())
    return replace(data, parts=[data.parts[fed.edges[k].index - 1] for k in order])


def _federate(
    client: Client,
    data: FederatedData,
    settings: dict[str, Any],
    progress: Progress,
    what: str,
    *,
    partial: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """One run through ``Client.federate``: accuracy per round and its costs."""
    spec = load_spec(
        {
            "model": MODEL.model_dump(mode="json"),
            "dataset": "digits",
            "rounds": settings["rounds"],
            "clients_per_round": settings["clients"],
            "min_clients": settings["clients"],
            "deadline_s": 120,
            "local": {
                "epochs": settings["epochs"],
                "batch": settings["batch"],
                "lr": settings["lr"],
                "optimizer": "sgd",
            },
            "seed": settings["seed"],
            **extra,
        }
    )

    def on_round(r: Any) -> None:
        _say(progress, f"{what}: round {r.round} accuracy {r.accuracy:.3f} ({r.seconds:.2f} s)")

    # the contribution estimate (issue 12's, measured by `bench rewards`) is off: the
    # runs measure federated training as Flower runs it
    result = client.federate(
        spec, (data.x_test, data.y_test), on_round=on_round, contributions=False
    )
    rounds = result.rounds
    if len(rounds) != settings["rounds"] and not partial:
        raise RuntimeError(f"{what}: stopped after {len(rounds)} rounds: {result.stopped}")
    return {
        "accuracy": [float(r.accuracy) for r in rounds],
        "seconds_per_round": float(np.mean([r.seconds for r in rounds])),
        "bytes_per_client_round": float(np.mean([r.bytes_per_client for r in rounds])),
        "participants": min(len(r.participants) for r in rounds),
        "epsilon": rounds[-1].epsilon if rounds else 0.0,
        "stopped": result.stopped,
    }


def _poisoned(
    alpha: float,
    settings: dict[str, Any],
    directory: Path,
    data: FederatedData,
    progress: Progress,
) -> dict[str, Any]:
    """The robust rule and FedAvg over a federation of the same parts whose first
    ``attackers`` edge nodes send their updates reversed (``--cheat-mode sign-flip``)."""
    n, attackers = settings["clients"], settings["attackers"]
    _say(progress, f"byzantine: {n} edge nodes, {attackers} of them poisoning (sign flip)")
    raw = digits_federated(n, alpha, seed=settings["seed"])
    fed = start_federation(
        directory, [raw.client(i) for i in range(n)], dataset="digits", backend="anvil",
        poisoners=attackers,
    )  # fmt: skip
    try:
        with Client(fed.info.accounts[fed.sponsor], fed.ledger(), timeout_s=120.0) as client:
            robust = _federate(
                client, data, settings, progress, "robust (attacked)", strategy=ROBUST
            )
            fedavg = _federate(client, data, settings, progress, "fedavg (attacked)")
    finally:
        fed.close()
    return {"robust": robust, "fedavg": fedavg}


def _byzantine(
    data: FederatedData,
    settings: dict[str, Any],
    attackers: int,
    scale: float,
    rule: dict[str, Any],
) -> float:
    """Final test accuracy of the robust rule in process, the first ``attackers``
    clients sending ``global - scale * (local - global)``."""
    options = {k: v for k, v in rule.items() if k != "name"}
    strategy = make_strategy(str(rule["name"]), **options)
    seed = settings["seed"]
    params = initial_params(MODEL, seed)
    strategy.initialize(params)
    for rnd in range(1, settings["rounds"] + 1):
        results = []
        for i in range(len(data.parts)):
            x, y = data.client(i)
            fit = local_fit(
                MODEL, params, x, y, epochs=settings["epochs"], batch=settings["batch"],
                lr=settings["lr"], optimizer="sgd", seed=client_seed(seed, rnd, i),
            )  # fmt: skip
            new = fit.params
            if i < attackers:
                new = (params - scale * (fit.params - params)).astype(np.float32)
            results.append(FitResult(client=str(i), params=new, examples=fit.examples))
        params = strategy.aggregate_fit(rnd, params, results, 0)
    return float(evaluate_params(MODEL, params, data.x_test, data.y_test)[1])


def _one_alpha(
    alpha: float,
    settings: dict[str, Any],
    directory: Path,
    *,
    extras: bool,
    progress: Progress,
) -> dict[str, Any]:
    clients, seed, rounds = settings["clients"], settings["seed"], settings["rounds"]
    data = digits_federated(clients, alpha, seed=seed)
    _say(progress, f"alpha={alpha}: starting an anvil chain and {clients} edge nodes")
    fed = start_federation(
        directory, [data.client(i) for i in range(clients)], dataset="digits", backend="anvil"
    )
    try:
        data = _sorted_parts(fed, data)
        with Client(fed.info.accounts[fed.sponsor], fed.ledger(), timeout_s=120.0) as client:
            # not measured: opens the payment channels, loads torch in every node
            _federate(client, data, {**settings, "rounds": 1}, progress, "warm-up")
            plain = _federate(client, data, settings, progress, f"alpha={alpha} fedavg")
            secure = dp = robust = None
            if extras:
                secure = _federate(client, data, settings, progress, "secagg", secagg=True)
                dp = _federate(
                    client, data, settings, progress, "dp", partial=True,
                    dp={"clip": settings["clip"], "noise_multiplier": settings["noise"],
                        "delta": settings["delta"], "epsilon": settings["dp_budget"]},
                )  # fmt: skip
                robust = _federate(
                    client, data, settings, progress, "robust (clean)", strategy=ROBUST
                )
                # the overhead with heavier local work: the same stages, more training
                heavy = {
                    **settings, "epochs": settings["heavy_epochs"],
                    "rounds": settings["heavy_rounds"],
                }  # fmt: skip
                heavy_plain = _federate(client, data, heavy, progress, "heavy fedavg")
                heavy_secure = _federate(client, data, heavy, progress, "heavy secagg", secagg=True)
    finally:
        fed.close()
    _say(progress, f"alpha={alpha}: Flower and the centralized baseline")
    train = {"epochs": settings["epochs"], "batch": settings["batch"], "lr": settings["lr"]}
    flower = run_flower(MODEL, data, rounds=rounds, seed=seed, **train)
    central = run_centralized(
        MODEL, data, epochs=rounds * settings["epochs"], batch=settings["batch"],
        lr=settings["lr"], seed=seed,
    )  # fmt: skip
    target = settings["target_fraction"] * central[-1]
    out: dict[str, Any] = {
        "accuracy": plain["accuracy"][-1],
        "flower_accuracy": flower.accuracy[-1],
        "centralized_accuracy": central[-1],
        "target_accuracy": target,
        "rounds_to_target": _first(plain["accuracy"], target),
        "flower_rounds_to_target": _first(flower.accuracy, target),
        "seconds_per_round": plain["seconds_per_round"],
        "flower_seconds_per_round": flower.seconds_per_round,
        "bytes_per_client_round": plain["bytes_per_client_round"],
        "accuracy_per_round": plain["accuracy"],
        "flower_accuracy_per_round": flower.accuracy,
        "partition_rows": [len(p) for p in data.parts],
    }
    if secure is not None and dp is not None and robust is not None:
        attacked = _poisoned(alpha, settings, directory.parent / "poisoned", data, progress)
        _say(progress, "byzantine: other robust rules, in process")
        rules = []
        for rule in _robust_rules(clients, settings["attackers"]):
            clean = _byzantine(data, settings, 0, 1.0, rule)
            hit = _byzantine(data, settings, settings["attackers"], 1.0, rule)
            rules.append(
                {"rule": rule, "clean_accuracy": clean, "attacked_accuracy": hit,
                 "drop": clean - hit}
            )  # fmt: skip
            _say(progress, f"byzantine {rule['name']} (in process): {clean:.3f} -> {hit:.3f}")
        out.update(
            secagg_seconds_per_round=secure["seconds_per_round"],
            secagg_accuracy=secure["accuracy"][-1],
            secagg_overhead=secure["seconds_per_round"] / plain["seconds_per_round"],
            secagg_overhead_heavy=heavy_secure["seconds_per_round"]
            / heavy_plain["seconds_per_round"],
            heavy_seconds_per_round=heavy_plain["seconds_per_round"],
            byzantine_clean_accuracy=robust["accuracy"][-1],
            byzantine_attacked_accuracy=attacked["robust"]["accuracy"][-1],
            byzantine_drop=robust["accuracy"][-1] - attacked["robust"]["accuracy"][-1],
            fedavg_attacked_accuracy=attacked["fedavg"]["accuracy"][-1],
            byzantine_rules_in_process=rules,
            dp_epsilon=dp["epsilon"],
            dp_accuracy=dp["accuracy"][-1],
            dp_rounds=len(dp["accuracy"]),
            dp_stopped=dp["stopped"],
        )
    return out


def bench_fl(
    *,
    clients: int = 10,
    rounds: int = 60,
    epochs: int = 2,
    batch: int = 16,
    lr: float = 0.3,
    alphas: tuple[float, float] = (0.5, 0.1),
    clip: float = 1.0,
    noise_multiplier: float = 1.0,
    delta: float = 1e-5,
    dp_budget: float = 10.0,
    attackers: int = 2,
    target_fraction: float = 0.95,
    heavy_epochs: int = HEAVY_EPOCHS,
    heavy_rounds: int = HEAVY_ROUNDS,
    seed: int = 0,
    progress: Progress = None,
) -> dict[str, Any]:
    """Run the benchmark; one JSON-ready dict (``alphas[1]``'s figures under
    ``alpha_0_1``, named after the issue's second alpha). ``heavy_epochs`` and
    ``heavy_rounds`` shape the runs ``secagg_overhead_heavy`` compares."""
    settings: dict[str, Any] = {
        "clients": clients, "rounds": rounds, "epochs": epochs, "batch": batch, "lr": lr,
        "seed": seed, "clip": clip, "noise": noise_multiplier, "delta": delta,
        "attackers": attackers, "dp_budget": dp_budget,
        "target_fraction": target_fraction, "heavy_epochs": heavy_epochs,
        "heavy_rounds": heavy_rounds,
    }  # fmt: skip
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="idlegrid-bench-fl-") as tmp:
        main = _one_alpha(alphas[0], settings, Path(tmp) / "a", extras=True, progress=progress)
        skewed = _one_alpha(alphas[1], settings, Path(tmp) / "b", extras=False, progress=progress)
    result: dict[str, Any] = {**main, "alpha_0_1": skewed}
    result["targets"] = {
        "accuracy_ge_flower": main["accuracy"] >= main["flower_accuracy"],
        "accuracy_ge_centralized_minus_0_01": main["accuracy"]
        >= main["centralized_accuracy"] - TARGETS["centralized_slack"],
        "byzantine_drop_le_0_02": main["byzantine_drop"] <= TARGETS["byzantine_drop_max"],
        "secagg_overhead_le_1_5": main["secagg_overhead"] <= TARGETS["secagg_overhead_max"],
    }
    result["how"] = {
        "machine": "one machine, loopback; anvil chain; edge nodes are separate processes",
        "dataset": "sklearn digits (packaged), 20% stratified test set = sponsor validation",
        "clients": clients,
        "alphas": {"top_level": alphas[0], "alpha_0_1": alphas[1]},
        "partition": "Dirichlet label partition (flwr-datasets' rule), min 10 rows a client",
        "model": MODEL.model_dump(mode="json"),
        "local": {"epochs": epochs, "batch": batch, "lr": lr, "optimizer": "sgd"},
        "rounds": rounds,
        "clients_per_round": clients,
        "strategy": "fedavg (both idlegrid and Flower)",
        "seeding": "client i (address-sorted edge order; Flower's parts in that order) "
        "trains with client_seed(seed, round, i)",
        "seed": seed,
        "flower": "flwr Server.fit + FedAvg, in-process clients, same local_fit",
        "centralized": f"same model, pooled training data, rounds*epochs = {rounds * epochs} "
        "epochs",
        "rounds_to_target": f"first round with test accuracy >= {target_fraction} x "
        "centralized_accuracy",
        "seconds_per_round": "idlegrid, after a 1-round warm-up run: mean RoundReport.seconds "
        "(upload, paid fl jobs, "
        "aggregation, evaluation, ONNX export, on-chain registration; no contribution "
        "estimate: bench rewards measures that); Flower: its History wall time / rounds, "
        "no network",
        "secagg": "SecAgg+ run with the same settings; overhead = its seconds_per_round / "
        f"the plain run's; secagg_overhead_heavy: the same with {heavy_epochs} local epochs, "
        f"{heavy_rounds} rounds",
        "dp": {
            "clip": clip,
            "noise_multiplier": noise_multiplier,
            "delta": delta,
            "sampling_rate": 1.0,
            "budget_epsilon": dp_budget,
            "accountant": "opacus RDP",
        },
        "byzantine": {
            "how": "over the network: the robust rule on the clean federation, then on a "
            "federation of the same parts whose first attackers edge nodes poison every round "
            "(--cheat-mode sign-flip: they send 2g - p, the update reversed); drop = clean "
            "final accuracy - attacked final accuracy",
            "rule": ROBUST,
            "attackers": attackers,
            "also_measured": "byzantine_rules_in_process: multi-Krum, trimmed mean and median "
            "in an in-process simulation with the same attack",
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    return result
