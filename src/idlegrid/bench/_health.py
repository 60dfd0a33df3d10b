"""`idlegrid bench health`: does a busy node keep answering? ``/v1/health`` latency while
it counts a big model and while it runs a heavy job.

Method (printed with the figures):

* One machine, loopback only: a chain and one provider node process (``devnet_up``,
  its default 2 worker processes), the client in this process and a prober in a
  process of its own (the client's own work, counting a model before it pays for it,
  holds this process's GIL and must not delay the probes).
* The prober sends ``GET /v1/health`` every ``interval_ms`` over one kept-alive
  connection and times each answer; after each it asks ``/v1/stats`` (untimed) what the
  node was doing: counting a model (``models.counting``) or running a job
  (``executor.running``). An answer counts for a phase when the node reported that
  phase's work right after it, so the figures cover only the time the node was busy.
* ``idle``: the node doing nothing, before the work.
* ``counting``: ``Client.infer`` of two rows through a model of ``adds`` chained Add
  nodes, never seen by the node: slow to count (onnx shape inference in C++, in the
  node's helper process), cheap to run once onnxruntime has built its session. That
  build grows faster than the chain (here: 4 s for 10,000 Adds, 85 s for 30,000), and
  the client pays it too (it runs a new model on two rows before sending any job), so
  the chain is 10,000 long; ``tests/network/test_hostile_ingress.py`` counts 100,000,
  in a job refused after counting.
* ``heavy``: ``Client.infer`` of ``rows`` rows through the dispatch benchmark's MLP
  (64 -> 4 x 1024 -> 10), sent inline in jobs of megabytes, parsed and encoded in the
  node's threads, run in its workers.
* ``health_max_ms``: the slowest answer over both busy phases; the target is 100 ms.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import numpy as np

from ..chain import TOKEN
from ..client import Client
from ..devnet import devnet_down, devnet_up, load_devnet
from ._dispatch import MLP_IN, mlp_model
from ._stats import percentile

__all__ = ["adds_model", "run_health"]

CLIENT_ACCOUNT = 2
TARGET_MS = 100.0
#: answers the idle phase takes before any work starts
IDLE_PROBES = 50
#: the prober's own limit on one answer: a hang guard, far past any figure that matters
PROBE_TIMEOUT_S = 60.0

Say = Callable[[str], None]
#: (seconds the answer took, models being counted, jobs running) right after it
Probe = tuple[float, int, int]


def run_health(
    *,
    adds: int = 10_000,
    rows: int = 16_384,
    interval_ms: float = 10.0,
    backend: str = "anvil",
    progress: Say | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its figures as a JSON-ready dict."""
    if adds < 1 or rows < 1 or interval_ms < 0:
        raise ValueError("adds and rows must be positive and interval_ms not negative")
    say = progress or (lambda _msg: None)
    model, mlp = adds_model(adds), mlp_model()
    x = np.random.default_rng(0).standard_normal((rows, MLP_IN)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="idlegrid-bench-") as tmp:
        directory = Path(tmp)
        say(f"starting a devnet on {backend} with one provider node")
        devnet_up(directory, providers=1, accounts=CLIENT_ACCOUNT + 1, backend=backend)
        try:
            net = load_devnet(directory)
            account = net.accounts[CLIENT_ACCOUNT]
            net.ledger().token.mint(account.address, 10**9 * TOKEN, sender=net.faucet)
            client = Client(account, net.ledger(), index_path=directory / "index.sqlite")
            try:
                client.max_providers = 1
                url = client.providers()[0].endpoint.rstrip("/")
                say("idle: the node doing nothing")
                idle = _probe_while(url, interval_ms, None, stop_after=IDLE_PROBES)
                say(f"counting: a model of {adds:,} chained Adds, new to the node")
                counting = _probe_while(
                    url, interval_ms, lambda: client.infer(model, np.zeros((2, 4), np.float32))
                )
                say(f"heavy: {rows:,} rows through an MLP, inline")
                heavy = _probe_while(url, interval_ms, lambda: client.infer(mlp, x))
                shards = client.last_report.shards
            finally:
                client.close()
        finally:
            say("stopping the devnet")
            devnet_down(directory)

    phases = {
        "idle": _summary(idle, lambda _c, _r: True),
        "counting": _summary(counting, lambda c, _r: c > 0),
        "heavy": _summary(heavy, lambda _c, r: r > 0),
    }
    busy = [phases["counting"], phases["heavy"]]
    worst = max((p["max_ms"] for p in busy if p["answers"]), default=None)
    return {
        "benchmark": "health",
        "health_max_ms": worst,
        "health_p99_ms": max((p["p99_ms"] for p in busy if p["answers"]), default=None),
        "answers_busy": sum(p["answers"] for p in busy),
        "targets": {
            "health_max_ms_max": TARGET_MS,
            "health_max_ms_met": worst is not None and worst <= TARGET_MS,
        },
        "phases": phases,
        "method": {
            "text": (__doc__ or "").split("Method (printed with the figures):", 1)[-1].strip(),
            "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
            "backend": backend,
            "adds": adds,
            "model_bytes": len(model),
            "rows": rows,
            "shards": shards,
            "interval_ms": interval_ms,
        },
    }


def adds_model(nodes: int) -> bytes:
    """A model of ``nodes`` chained Adds over float ``[n, 4]``: cheap to run, slow to count."""
    from onnx import TensorProto, helper

    graph_nodes, previous = [], "x"
    for i in range(nodes):
        graph_nodes.append(helper.make_node("Add", [previous, previous], [f"t{i}"]))
        previous = f"t{i}"
    graph = helper.make_graph(
        graph_nodes,
        "adds",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, ["n", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _probe_while(
    url: str, interval_ms: float, work: Callable[[], object] | None, *, stop_after: int = 0
) -> list[Probe]:
    """Probe ``url`` from a process of its own while ``work`` runs here (or ``stop_after``
    times when there is no work)."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    mine, theirs = ctx.Pipe(duplex=False)
    prober = ctx.Process(
        target=_prober, args=(url, interval_ms / 1000, stop_after, stop, theirs), daemon=True
    )
    prober.start()
    theirs.close()
    try:
        if not mine.poll(PROBE_TIMEOUT_S) or mine.recv() != "ready":
            raise RuntimeError("the prober process did not start")
        if work is not None:
            work()
            stop.set()
        if not mine.poll(PROBE_TIMEOUT_S + stop_after * (interval_ms / 1000 + 1)):
            raise RuntimeError("the prober process did not answer")
        probes: list[Probe] = mine.recv()
        return probes
    finally:
        stop.set()
        prober.join(timeout=10)
        if prober.is_alive():
            prober.kill()


def _prober(url: str, interval_s: float, count: int, stop: Event, out: Connection) -> None:
    import httpx

    probes: list[Probe] = []
    with httpx.Client(timeout=PROBE_TIMEOUT_S) as http:
        http.get(f"{url}/v1/health").raise_for_status()  # the connection, opened untimed
        out.send("ready")
        while not stop.is_set() and (count == 0 or len(probes) < count):
            t0 = time.perf_counter()
            http.get(f"{url}/v1/health").raise_for_status()
            took = time.perf_counter() - t0
            stats = http.get(f"{url}/v1/stats").json()
            probes.append((took, stats["models"]["counting"], stats["executor"]["running"]))
            stop.wait(interval_s)
    out.send(probes)


def _summary(probes: list[Probe], busy: Callable[[int, int], bool]) -> dict[str, Any]:
    ms = sorted(took * 1000 for took, counting, running in probes if busy(counting, running))
    if not ms:
        return {"answers": 0, "probes": len(probes), "p50_ms": None, "p99_ms": None,
                "max_ms": None}  # fmt: skip
    return {
        "answers": len(ms),
        "probes": len(probes),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(ms[-1], 3),
    }
