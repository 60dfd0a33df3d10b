"""`idlegrid bench verify`: catching a cheating provider, at what cost, and the dispute.

Method (printed with the figures):

* One machine, loopback only: an anvil chain and 4 provider node processes. Nodes 1-3
  are honest and run onnxruntime with 1, 2 and 4 threads (honest results that differ
  in the last bits must never be accused); node 4 cheats on ``cheat_rate`` of its jobs
  (``--cheat-rate``, a testing aid), in each mode in turn: ``random``, ``noise`` (just
  above the workload's tolerance), ``skip`` (zeros), ``stale`` (an older output) and
  ``on-off`` (``random`` after ``on_off_after`` honest jobs: the attack on reputation).
* The job: a float32 softmax model (64 features, 10 classes), one row per job; a trial
  is one ``Client.infer`` of ``jobs`` rows with ``verify="audit"`` by a new client (no
  record of anyone: every provider is audited on every job until it has
  ``TRUST_AFTER`` consistent results, then at the floor, as ``idlegrid.verify`` does
  by default), audits drawn from a seeded generator so that a run repeats.
* ``detection_rate``: the fraction of trials whose batch caught the cheater, over the
  trials in which it told at least one lie (its node counts them: ``/v1/stats``
  ``cheat.lies``, a testing aid's figure; a lie that was never told cannot be caught),
  worst mode; each mode's figure comes with its 95 % Wilson interval, the trials without
  a lie, and ``detection_rate_all_trials`` (caught over every trial). ``cheater_shards``:
  the shards of the batch the cheater delivered before it was caught (it also runs audits
  of others' shards, where its lies count as much).
* ``false_positives``: honest providers accused, over every trial and the steady-state
  batch.
* ``overhead``: jobs run again to verify ÷ useful jobs, in the steady state: a client
  whose audit record already trusts every provider runs ``steady_jobs`` jobs on the
  honest network.
* ``slashed``: whether every caught cheater was disputed on chain (``Client.dispute``:
  the other nodes as its committee re-execute and vote) and lost stake. The cheater's
  stake is topped up between trials so that it stays an active provider.
* ``dispute_gas``: gas of one whole dispute, open to payout: every transaction that
  logged an event of the dispute (open, draw, each commit and reveal, resolve), median
  over the disputes; ``bond_approval_gas`` is the challenger's ERC-20 approval besides.
"""

from __future__ import annotations

import hashlib
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .._process import ProcessRef, spawn, stop
from ..chain import TOKEN, DisputeClient, Ledger, free_port
from ..client import Client
from ..devnet import devnet_down, devnet_up, load_devnet, node_argv, wait_for_node
from ..verify import TRUST_AFTER, AdaptiveAudit

__all__ = ["run_verify", "softmax_model"]

PROVIDERS = 4
CHEATER = 4  # its account (and node) number
CLIENT_ACCOUNT = PROVIDERS + 1
THREADS = (1, 2, 4)  # the honest nodes' onnxruntime threads
MODES = ("random", "noise", "skip", "stale", "on-off")
FEATURES, CLASSES = 64, 10
TARGETS = {"detection_rate_min": 0.99, "false_positives_max": 0, "overhead_max": 0.05}
ANCHORS = {
    "boinc_replication_overhead_min": 0.5,
    "boinc_adaptive_replication_overhead": [0.05, 0.10],
    "gensyn_litepaper_simulation_overhead": 0.46,
    "graph_level_fraud_proof_overhead": 0.03,
}

Say = Callable[[str], None]


def softmax_model(seed: int = 5) -> bytes:
    """A float32 ONNX model, ``[N, 64] -> softmax [N, 10]``: a float output, so that a
    ``noise`` lie must hide under the tolerance."""
    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.standard_normal((FEATURES, CLASSES), np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["p"], axis=1),
        ],
        "softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, FEATURES])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, CLASSES])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


class _Nodes:
    """The provider node processes of the benchmark's devnet, restartable one by one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.refs: dict[int, ProcessRef] = {}
        self.urls: dict[int, str] = {}

    def start(self, i: int, extra: Sequence[str] = ()) -> None:
        if i in self.refs:
            stop(self.refs.pop(i), timeout=20)
        port = free_port()
        data = self.directory / ".idlegrid" / f"node-{i}"
        argv = [*node_argv(self.directory / "devnet.json", i, port, data), *extra]
        proc, ref = spawn(argv, log=self.directory / f"node-{i}.log", role=f"provider-{i}")
        self.refs[i] = ref
        self.urls[i] = f"http://127.0.0.1:{port}"
        wait_for_node(self.urls[i], proc)

    def wait_warm(self, i: int, timeout_s: float = 120.0) -> None:
        """Wait until node ``i``'s workers are warm (``/v1/stats`` ``warm``)."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=10.0) as http:  # one for the wait (see wait_for_node)
            while not http.get(f"{self.urls[i]}/v1/stats").json().get("warm"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"node {i} did not warm up in {timeout_s:g} s")
                time.sleep(0.2)

    def lies(self, i: int) -> int:
        """Lies node ``i`` has told since it started (its testing aid's count)."""
        stats = httpx.get(f"{self.urls[i]}/v1/stats", timeout=10.0).json()
        return int(stats.get("cheat", {}).get("lies", 0))

    def stop_all(self) -> None:
        for ref in self.refs.values():
            stop(ref, timeout=20)
        self.refs.clear()


def run_verify(
    *,
    trials: int = 10,
    jobs: int = 200,
    modes: Sequence[str] = MODES,
    cheat_rate: float = 0.1,
    on_off_after: int = 20,
    steady_jobs: int = 2000,
    backend: str = "anvil",
    progress: Say | None = None,
) -> dict[str, Any]:
    """Run the verification benchmark and return its figures as a JSON-ready dict."""
    say = progress or (lambda _msg: None)
    model = softmax_model()
    digest = hashlib.sha256(model).hexdigest()
    x = np.random.default_rng(6).random((max(jobs, steady_jobs), FEATURES), dtype=np.float32)
    per_mode: dict[str, Any] = {}
    disputes: list[dict[str, Any]] = []
    false_positives = 0
    with tempfile.TemporaryDirectory(prefix="idlegrid-bench-verify-") as tmp:
        directory = Path(tmp)
        say(f"starting a devnet on {backend} with {PROVIDERS} provider nodes")
        devnet_up(
            directory, providers=PROVIDERS, accounts=PROVIDERS + 2, backend=backend, nodes=False
        )
        nodes = _Nodes(directory)
        try:
            net = load_devnet(directory)
            ledger = net.ledger()
            client_account = net.accounts[CLIENT_ACCOUNT]
            ledger.token.mint(client_account.address, 10**9 * TOKEN, sender=net.faucet)
            for i, threads in enumerate(THREADS, start=1):
                nodes.start(i, ["--threads", str(threads)])
            cheater = net.accounts[CHEATER]
            for mode in modes:
                flags = ["--cheat-rate", str(cheat_rate), "--cheat-mode", "random"]
                if mode != "on-off":
                    flags[-1] = mode
                    say(f"{mode}: node {CHEATER} cheats on {cheat_rate:.0%} of its jobs")
                    nodes.start(CHEATER, ["--threads", "1", *flags])
                outcomes = []
                for trial in range(trials):
                    if mode == "on-off":  # honest again for its first jobs: a fresh node
                        after = ["--cheat-after", str(on_off_after)]
                        nodes.start(CHEATER, ["--threads", "1", *flags, *after])
                    told = nodes.lies(CHEATER)
                    outcome = _trial(ledger, client_account, model, digest, x[:jobs], trial)
                    outcome["trial"] = trial
                    outcome["lies"] = nodes.lies(CHEATER) - told
                    false_positives += len(outcome["accused_honest"])
                    if outcome["caught"]:
                        disputes.append(outcome.pop("dispute"))
                        _restake(ledger, net.faucet, cheater)
                    outcomes.append(outcome)
                    say(
                        f"{mode} trial {trial + 1}/{trials}: caught={outcome['caught']} "
                        f"({outcome['lies']} lies told)"
                    )
                per_mode[mode] = _mode_figures(outcomes)
            say(f"steady state: {steady_jobs} jobs on the honest network, every provider trusted")
            nodes.start(CHEATER, ["--threads", "1"])
            steady = _steady(ledger, client_account, model, x[:steady_jobs])
            false_positives += len(steady["accused"])
        finally:
            say("stopping the devnet")
            nodes.stop_all()
            devnet_down(directory)

    worst = min((m["detection_rate"] for m in per_mode.values()), default=0.0)
    worst_all = min((m["detection_rate_all_trials"] for m in per_mode.values()), default=0.0)
    caught = [d for d in disputes if d]
    dispute_gas = statistics.median(d["gas"] for d in caught) if caught else None
    slashed = bool(caught) and all(
        d["outcome"] == "provider_wrong" and d["slashed"] > 0 for d in caught
    )
    return {
        "benchmark": "verify",
        "detection_rate": worst,
        "detection_rate_all_trials": worst_all,
        "false_positives": false_positives,
        "overhead": steady["overhead"],
        "slashed": slashed,
        "dispute_gas": dispute_gas,
        "bond_approval_gas": caught[0]["bond_approval_gas"] if caught else None,
        "targets": {
            **TARGETS,
            "detection_rate_met": worst >= TARGETS["detection_rate_min"],
            "false_positives_met": false_positives <= TARGETS["false_positives_max"],
            "overhead_met": steady["overhead"] <= TARGETS["overhead_max"],
        },
        "anchors": ANCHORS,
        "modes": per_mode,
        "steady_state": steady,
        "disputes": {
            "count": len(caught),
            "outcomes": sorted({d["outcome"] for d in caught}),
            "slashed_total": sum(d["slashed"] for d in caught),
            "refund_total": sum(d["refund"] for d in caught),
            "gas": [d["gas"] for d in caught],
        },
        "method": {
            "text": (__doc__ or "").split("Method (printed with the figures):", 1)[-1].strip(),
            "backend": backend,
            "providers": PROVIDERS,
            "honest_threads": list(THREADS),
            "cheat_rate": cheat_rate,
            "on_off_after": on_off_after,
            "trials_per_mode": trials,
            "jobs_per_trial": jobs,
            "steady_jobs": steady_jobs,
            "trust_after": TRUST_AFTER,
            "audit_floor": AdaptiveAudit().floor,
        },
    }


def _trial(
    ledger: Ledger, account: Any, model: bytes, digest: str, x: np.ndarray, seed: int
) -> dict[str, Any]:
    """One batch by a new client; caught or not, and the dispute when caught."""
    cheater = _address(ledger, CHEATER)
    client = Client(account, ledger)
    client.audit = AdaptiveAudit(rng=random.Random(seed))
    try:
        client.infer(model, x, rows_per_shard=1, verify="audit")
        report = client.last_report
        caught = cheater in report.caught
        accused = [p for p in report.caught if p != cheater]
        outcome: dict[str, Any] = {
            "caught": caught,
            "accused_honest": accused,
            "cheater_shards": report.by_provider.get(cheater, 0),
            "audited": report.audited,
            "reruns": report.reruns,
            "shards": report.shards,
        }
        if caught:
            evidence = next(e for e in client.evidence if e.provider == cheater)
            client.close_channels()  # the cheater redeems: its receipts can be disputed
            result = client.dispute(evidence, blobs={digest: model})
            outcome["dispute"] = {
                "outcome": result.outcome,
                "slashed": result.slashed,
                "refund": result.refund,
                "gas": _dispute_gas(ledger, bytes.fromhex(result.dispute[2:])),
                "bond_approval_gas": result.approval_gas,
            }
        return outcome
    finally:
        client.close()


def _steady(ledger: Ledger, account: Any, model: bytes, x: np.ndarray) -> dict[str, Any]:
    """Verification overhead once every provider is trusted (its record past TRUST_AFTER)."""
    client = Client(account, ledger)
    client.audit = AdaptiveAudit(rng=random.Random(12345))
    try:
        for i in range(1, PROVIDERS + 1):
            for _ in range(TRUST_AFTER):
                client.audit.record(_address(ledger, i), ok=True)
        start = time.perf_counter()
        client.infer(model, x, rows_per_shard=1, verify="audit")
        seconds = time.perf_counter() - start
        report = client.last_report
        return {
            "jobs": report.shards,
            "audited": report.audited,
            "reruns": report.reruns,
            "overhead": round(report.reruns / report.shards, 4),
            "accused": list(report.caught),
            "seconds": round(seconds, 2),
        }
    finally:
        client.close()


def _mode_figures(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    cheated = [o for o in outcomes if o["lies"] > 0]
    n = len(cheated)
    caught = sum(o["caught"] for o in cheated)
    low, high = _wilson(caught, n)
    return {
        "trials": len(outcomes),
        "trials_with_lies": n,
        "caught": caught,
        "detection_rate": caught / n if n else 0.0,
        "detection_rate_95ci": [round(low, 3), round(high, 3)],
        "detection_rate_all_trials": round(
            sum(o["caught"] for o in outcomes) / max(1, len(outcomes)), 4
        ),
        "lies_median": statistics.median(o["lies"] for o in outcomes),
        "missed": [
            {k: o[k] for k in ("trial", "lies", "cheater_shards", "audited", "shards")}
            for o in outcomes
            if not o["caught"]
        ],
        "cheater_shards_median": statistics.median(o["cheater_shards"] for o in outcomes),
        "reruns_per_job": round(
            sum(o["reruns"] for o in outcomes) / max(1, sum(o["shards"] for o in outcomes)), 4
        ),
        "accused_honest": sum(len(o["accused_honest"]) for o in outcomes),
    }


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of k successes in n trials."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _dispute_gas(ledger: Ledger, dispute: bytes) -> int:
    disputes = ledger.client("disputes", DisputeClient)
    since = max(0, ledger.backend.block_number() - 5000)
    return disputes.gas_of(dispute, since)


def _restake(ledger: Ledger, faucet: Any, cheater: Any) -> None:
    """Top the cheater's stake back up to the minimum, so that it stays active."""
    registry = ledger.registry
    info = registry.provider(cheater.address)
    need = registry.min_stake() - info.stake
    if need <= 0:
        return
    ledger.token.mint(cheater.address, need, sender=faucet)
    ledger.token.approve(registry.address, need, sender=cheater)
    registry.add_stake(need, sender=cheater)


def _address(ledger: Ledger, i: int) -> str:
    return str(ledger.backend.dev_accounts()[i].address)
