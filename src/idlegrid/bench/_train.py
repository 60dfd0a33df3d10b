"""`idlegrid bench train`: a training job on the network, its verification, and cheaters.

Method (printed with the figures):

* One machine, loopback only: an anvil chain and 3 provider node processes serving
  ``train`` (``--train``), PyTorch on the CPU, one thread per worker; the client here
  evaluates with one thread too.
* The data: scikit-learn's digits (packaged, no download), 1437 training and 360
  validation images of 8x8. The job: a CNN (convolutions of 32 and 64 channels) trained
  with Adam and a cosine schedule for ``steps`` steps of ``batch`` images (about 60 s of
  one CPU core), checkpointed every ``interval`` steps (the run has at least 40 x
  ``checks`` intervals, as ``Client.train`` cuts it by default), ``segment_steps`` per
  segment (one paid job each).
* ``local_accuracy`` and the local rate: the same run here, in one piece, without
  checkpoints (``train_steps``), timed with ``perf_counter``; its CPU time
  (``process_time``) is the training compute.
* ``throughput_ratio``: training samples per second through the network (from the
  ``Client.train`` call to the last segment received, with discovery, the channel, the
  data's upload, every checkpoint and every voucher) over the local rate.
  ``final_accuracy``: the validation accuracy the client computed of the last segment's
  state.
* ``verify_fraction``: the CPU seconds the client's proof-of-learning replay took
  (``PolReport.verify_seconds``: ``checks`` intervals replayed, fetching excluded) over
  the training compute.
* ``false_positives``: honest runs flagged. The main run is verified with 1, 2 and 4
  PyTorch threads (the same selection, replayed again), and so are ``honest_trials``
  small honest runs.
* ``detection_rate``: over ``trials`` runs per mode of a provider that fabricates
  ``cheat_rate`` of its intervals (``--cheat-mode skip-steps``: half an interval's steps
  claimed as all; ``interpolate``: no step, the previous update added again; testing
  aids), each a real run on the network (an MLP, 1280 intervals of one step, a new seed
  per trial, so that each fabricates other intervals) verified by ``checks`` intervals;
  the worst mode. The expected rate, ``1 - C(N-F, q) / C(N, q)`` for the F intervals each
  trial fabricated (known from the aid's seed), comes with it. The first caught run of
  each mode is disputed on chain: ``slashed`` says whether every dispute slashed it.
"""

from __future__ import annotations

import itertools
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..chain import TOKEN
from ..client import Client, Failover, Progress, TrainJob
from ..client._train import INTERVALS_PER_CHECK
from ..devnet import devnet_down, devnet_up, load_devnet
from ..verify import detection_probability, verify_run
from ..workloads._kind_train import (
    TrainSpec,
    evaluate,
    read_dataset,
    torch_threads,
    train_dataset,
    train_steps,
)
from ._verify import _Nodes, _restake

__all__ = ["run_train"]

PROVIDERS = 3
CHEATER = 3  # its account (and node) number
CLIENT_ACCOUNT = PROVIDERS + 1
CHEAT_SEED = 11
CNN = {"family": "cnn", "channels": 1, "height": 8, "width": 8, "conv": [32, 64], "classes": 10}
MLP = {"family": "mlp", "inputs": 64, "hidden": [32], "classes": 10}
TRIAL_STEPS = 1280
MODES = ("skip-steps", "interpolate")
TARGETS = {
    "throughput_ratio_min": 0.9,
    "verify_fraction_max": 0.05,
    "detection_rate_min": 0.99,
    "false_positives_max": 0,
}
ANCHORS = {
    "pol_reference_code_verify_fraction": [0.5, 1.0],
    "gensyn_litepaper_simulation_overhead": 0.46,
}

Say = Callable[[str], None]


def digits_data(images: bool) -> bytes:
    """The packaged digits as a ``train`` data set (images ``[n, 1, 8, 8]`` or rows)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    if images:
        x = x.reshape(-1, 1, 8, 8)
    return train_dataset(x[:1437], y[:1437], x[1437:], y[1437:])


@torch_threads(1)
def run_train(
    *,
    steps: int = 8000,
    batch: int = 128,
    segment_steps: int = 800,
    checks: int = 64,
    trials: int = 50,
    honest_trials: int = 2,
    cheat_rate: float = 0.1,
    trial_steps: int = TRIAL_STEPS,
    backend: str = "anvil",
    progress: Say | None = None,
) -> dict[str, Any]:
    """Run the training benchmark and return its figures as a JSON-ready dict (on one
    PyTorch thread, as a node's worker; the count is restored after)."""
    say = progress or (lambda _msg: None)
    interval = max(1, steps // (INTERVALS_PER_CHECK * checks))
    segment_steps = max(interval, segment_steps // interval * interval)
    job = TrainJob(
        model=CNN, lr=2e-3, schedule="cosine", total_steps=steps, batch=batch, seed=1,
        interval=interval, segment_steps=segment_steps, checks=checks,
    )  # fmt: skip
    data = digits_data(images=True)
    say(f"local: {steps} steps of {batch} images in one piece, one thread")
    local = _local(job, data)
    with tempfile.TemporaryDirectory(prefix="idlegrid-bench-train-") as tmp:
        directory = Path(tmp)
        say(f"starting a devnet on {backend} with {PROVIDERS} provider nodes serving train")
        devnet_up(
            directory, providers=PROVIDERS, accounts=PROVIDERS + 2, backend=backend, nodes=False
        )
        nodes = _Nodes(directory)
        try:
            net = load_devnet(directory)
            ledger = net.ledger()
            account = net.accounts[CLIENT_ACCOUNT]
            ledger.token.mint(account.address, 10**9 * TOKEN, sender=net.faucet)
            for i in range(1, PROVIDERS + 1):
                nodes.start(i, ["--train"])
            for i in range(1, PROVIDERS + 1):
                nodes.wait_warm(i)
            client = Client.from_devnet(directory / "devnet.json", CLIENT_ACCOUNT)
            try:
                say("the job on the network, then its proof-of-learning check")
                main = _network_run(client, job, data, say)
                honest = [
                    _honest_check(client, i, checks, trial_steps, say) for i in range(honest_trials)
                ]
                say("honest runs re-verified with 1, 2 and 4 threads")
            finally:
                client.close()
            modes = {}
            for i in range(1, PROVIDERS):
                nodes.start(i)  # honest referees from here on, not serving train
            for mode in MODES:
                say(f"{mode}: node {CHEATER} alone serves train, fabricating {cheat_rate:.0%}")
                cheat = ["--cheat-rate", str(cheat_rate), "--cheat-mode", mode]
                nodes.start(CHEATER, ["--train", *cheat, "--cheat-seed", str(CHEAT_SEED)])
                nodes.wait_warm(CHEATER)
                modes[mode] = _trials(
                    directory, ledger, net, mode, trials, checks, cheat_rate, trial_steps, say
                )
        finally:
            say("stopping the devnet")
            nodes.stop_all()
            devnet_down(directory)
    flagged = [v for run in [main["threads"], *honest] for v in run.values() if not v]
    false_positives = len(flagged)
    detection = min(m["detection_rate"] for m in modes.values())
    ratio = main["samples_per_s"] / local["samples_per_s"]
    verify_fraction = main["verify_seconds"] / local["cpu_s"]
    slashed = all(m["slashed"] for m in modes.values())
    return {
        "benchmark": "train",
        "throughput_ratio": round(ratio, 4),
        "verify_fraction": round(verify_fraction, 5),
        "detection_rate": detection,
        "false_positives": false_positives,
        "final_accuracy": main["final_accuracy"],
        "local_accuracy": local["accuracy"],
        "slashed": slashed,
        "targets": {
            **TARGETS,
            "throughput_ratio_met": ratio >= TARGETS["throughput_ratio_min"],
            "verify_fraction_met": verify_fraction <= TARGETS["verify_fraction_max"],
            "detection_rate_met": detection >= TARGETS["detection_rate_min"],
            "false_positives_met": false_positives <= TARGETS["false_positives_max"],
        },
        "anchors": ANCHORS,
        "local": local,
        "network": {k: v for k, v in main.items() if k != "threads"},
        "honest_verifications": {
            "main_run": main["threads"],
            "small_runs": honest,
        },
        "modes": modes,
        "method": {
            "text": (__doc__ or "").split("Method (printed with the figures):", 1)[-1].strip(),
            "backend": backend,
            "providers": PROVIDERS,
            "model": CNN,
            "steps": steps,
            "batch": batch,
            "interval": interval,
            "intervals": math.ceil(steps / interval),
            "segment_steps": segment_steps,
            "checks": checks,
            "trials_per_mode": trials,
            "trial_model": MLP,
            "trial_intervals": trial_steps,
            "cheat_rate": cheat_rate,
            "detection_probability_at_rate": detection_probability(cheat_rate, checks),
        },
    }


def _local(job: TrainJob, data: bytes) -> dict[str, Any]:
    """The same run here in one piece (one interval: no checkpoint), timed."""
    assert job.total_steps is not None
    spec = TrainSpec.model_validate(
        {
            "model": job.model, "optimizer": job.optimizer, "lr": job.lr,
            "schedule": job.schedule, "total_steps": job.total_steps, "batch": job.batch,
            "seed": job.seed, "data": "0" * 64, "start": 0, "steps": job.total_steps,
        }
    )  # fmt: skip
    arrays = read_dataset(data, spec)
    wall, cpu = time.perf_counter(), time.process_time()
    (state,) = train_steps(spec, None, arrays[0], arrays[1])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    accuracy = evaluate(spec, state, arrays)["val_accuracy"]
    return {
        "seconds": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "samples_per_s": round(job.total_steps * job.batch / wall, 1),
        "accuracy": round(accuracy, 4),
    }


def _network_run(client: Client, job: TrainJob, data: bytes, say: Say) -> dict[str, Any]:
    """The job through ``Client.train``: its rate, accuracy and verification, and the
    same selection replayed again with 2 and 4 threads (honest: none may be flagged)."""
    assert job.total_steps is not None
    last: list[float] = []
    arrivals: list[float] = []
    last_said = [0]

    tenth = max(1, job.total_steps // 10)

    def on_event(event: object) -> None:
        if isinstance(event, Failover):
            say(f"  fail-over at step {event.step} from {event.provider}: {event.reason}")
        if isinstance(event, Progress):
            last[:] = [time.perf_counter()]
            arrivals.append(last[0])
            if event.step // tenth != last_said[0]:
                last_said[0] = event.step // tenth
                say(f"  step {event.step}/{event.total}: {event.metrics}")

    started = time.perf_counter()
    model = client.train(job, data, on_event=on_event)
    seconds = last[0] - started
    report = model.verification
    assert report is not None
    threads = _by_threads(model, data, job.checks)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return {
        "seconds": round(seconds, 3),
        "first_segment_s": round(arrivals[0] - started, 3),
        "segment_s_median": round(statistics.median(gaps), 3) if gaps else None,
        "samples_per_s": round(job.total_steps * job.batch / seconds, 1),
        "final_accuracy": round(model.epochs[-1]["val_accuracy"], 4),
        "verify_seconds": round(report.verify_seconds, 3),
        "checked": report.checked,
        "max_distance": report.max_distance,
        "segments": model.run.segments,
        "paid_wei": {k: str(v) for k, v in model.run.paid.items()},
        "model": model.model_hash,
        "threads": threads,
    }


def _failovers(say: Say) -> Callable[[object], None]:
    def on_event(event: object) -> None:
        if isinstance(event, Failover):
            say(f"  fail-over at step {event.step} from {event.provider}: {event.reason}")

    return on_event


def _small_job(seed: int, checks: int, steps: int, *, dispute: bool = False) -> TrainJob:
    return TrainJob(
        model=MLP, lr=0.01, total_steps=steps, batch=32, seed=seed, interval=1,
        segment_steps=min(128, steps), checks=checks, dispute=dispute,
    )  # fmt: skip


def _honest_check(client: Client, i: int, checks: int, steps: int, say: Say) -> dict[str, bool]:
    """A small honest run, verified with 1, 2 and 4 threads: {threads: passed}."""
    data = digits_data(images=False)
    model = client.train(_small_job(100 + i, checks, steps), data, on_event=_failovers(say))
    return _by_threads(model, data, checks)


def _by_threads(model: Any, data: bytes, checks: int) -> dict[str, bool]:
    """Whether a verified run passed (1 thread), and passes again when the same
    selection is replayed with 2 and 4 PyTorch threads: {threads: passed}."""
    report = model.verification
    assert report is not None and model.fetch_state is not None
    x, y, _, _ = read_dataset(data, model.spec)
    out = {"1": report.ok}
    for t in (2, 4):
        again = verify_run(
            model.spec, x, y, model.leaves, model.fetch_state, model.seed, checks, threads=t
        )
        out[str(t)] = again.ok
    return out


def _fabricated(seed: int, rate: float, steps: int) -> int:
    """Intervals the aid fabricates in a trial run (as ``train_steps`` draws them)."""
    return sum(np.random.default_rng([CHEAT_SEED, seed, i]).random() < rate for i in range(steps))


def _expected(n: int, f: int, q: int) -> float:
    """Probability that ``q`` of ``n`` intervals drawn without replacement hit one of ``f``."""
    if f == 0:
        return 0.0
    return 1.0 - math.comb(n - f, q) / math.comb(n, q) if q <= n - f else 1.0


def _trials(
    directory: Path,
    ledger: Any,
    net: Any,
    mode: str,
    trials: int,
    checks: int,
    rate: float,
    steps: int,
    say: Say,
) -> dict[str, Any]:
    data = digits_data(images=False)
    caught: list[bool] = []
    expected: list[float] = []
    disputes: list[dict[str, Any]] = []
    cheater = net.accounts[CHEATER]
    for trial in range(trials):
        seed = 1000 * (MODES.index(mode) + 1) + trial
        dispute = not any(caught)  # the first caught run of the mode goes to a dispute
        client = Client.from_devnet(directory / "devnet.json", CLIENT_ACCOUNT)
        try:
            model = client.train(
                _small_job(seed, checks, steps, dispute=dispute), data, on_event=_failovers(say)
            )
        finally:
            client.close()
        report = model.verification
        assert report is not None
        caught.append(not report.ok)
        f = _fabricated(seed, rate, steps)
        expected.append(_expected(steps, f, checks))
        for d in model.disputes:
            disputes.append({"outcome": d.outcome, "slashed": d.slashed, "gas": d.gas})
            _restake(ledger, net.faucet, cheater)
        say(f"  {mode} trial {trial + 1}/{trials}: caught={not report.ok} ({f} fabricated)")
    return {
        "detection_rate": sum(caught) / len(caught),
        "caught": sum(caught),
        "trials": len(caught),
        "expected_detection_rate": round(statistics.fmean(expected), 6),
        "disputes": disputes,
        "slashed": bool(disputes)
        and all(d["outcome"] == "provider_wrong" and d["slashed"] > 0 for d in disputes),
    }
