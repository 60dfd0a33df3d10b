"""`idlegrid bench dispatch`: latency and throughput of signed jobs through real providers.

Method (printed with the figures):

* One machine, loopback only: an anvil chain and 4 provider node processes
  (``devnet_up``, each node with its default 2 worker processes), and the client
  in this process. Every process shares the machine's cores (``machine.cores``).
* Tiny job: one row of the scikit-learn digits through a logistic regression in
  ONNX. Each job is the production path, fully signed: an EIP-712 signed
  request, a signed response and a signed receipt that the client checks (with
  the bill recomputed from the model and the output's hash), and the client's
  cumulative voucher for the jobs before it, carried in the request and
  checked and journaled by the node before it replies.
* Channels are opened and funded before anything is timed, so no chain
  transaction falls inside a measurement; nodes redeem vouchers in the background.
* ``p50_ms`` / ``p99_ms``: one job at a time (``ProviderSession.run``, as
  ``Client.infer`` runs each shard), timed in the client, after a warm-up.
  ``client_infer`` times a one-row ``Client.infer`` call the same way (adding
  provider ranking, the model check and shard dispatch).
* ``jobs_per_s``: ``Client.infer`` of many one-row shards through one provider
  with ``concurrency`` jobs in flight, for each concurrency in the sweep after a
  warm-up batch; the best is reported with its concurrency. ``jobs_per_s_4``: the
  same through 4 providers, ``concurrency`` in flight to each. A node lets one
  client have ``max_jobs_per_client`` jobs (8 by default) running or queued, and
  the client never sends more: ``in_flight_total`` is what was really in flight.
* ``batch_ratio``: an MLP (wide Gemm + Relu layers) over enough rows to take
  about ``batch_seconds`` in onnxruntime here, with as many threads as the
  provider has workers (2 workers of 1 thread each, against 1 session of 2
  threads); ``Client.infer`` through one provider (4 shards) against the local
  run, medians of ``runs`` after a warm-up each, the local and network runs
  taking turns. Both sides use the same cores: in the network run they also
  carry the client, the node and the transfers. ``ratio_4``: through 4 providers
  (16 shards, 8 workers on the same cores).
* ``ray``: the same tiny job as a Ray task (a cached session per worker) and as
  a call to Ray actors, in the same run after the devnet is down, with
  ``num_cpus`` equal to the provider's workers; no signing, no payment.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..chain import TOKEN
from ..client import Candidate, Client, rank
from ..devnet import devnet_down, devnet_up, load_devnet
from ..workloads import OnnxRunner, count_flops, train_digits_model
from ._ray import run_ray
from ._stats import percentile

__all__ = ["mlp_model", "run_dispatch"]

PROVIDERS = 4
CLIENT_ACCOUNT = PROVIDERS + 1
WORKERS = 2  # what `idlegrid node start` runs by default, as devnet_up starts them
TARGETS = {"p50_ms_max": 5.0, "jobs_per_s_min": 300.0, "batch_ratio_max": 1.10}
ANCHOR = {
    "what": "Bittensor axon/dendrite on loopback, a third-party measurement (from the issue)",
    "p50_ms": 24,
    "requests_per_s": 41,
}
MLP_IN, MLP_WIDTH, MLP_LAYERS, MLP_OUT = 64, 1024, 4, 10

Say = Callable[[str], None]


def run_dispatch(
    *,
    latency_jobs: int = 1000,
    throughput_jobs: int = 3000,
    warmup: int = 200,
    concurrency: Sequence[int] = (4, 8, 16),
    concurrency_4: Sequence[int] = (2, 4, 8),
    batch_seconds: float = 2.0,
    runs: int = 5,
    ray: bool = True,
    backend: str = "anvil",
    progress: Say | None = None,
) -> dict[str, Any]:
    """Run the dispatch benchmark and return its figures as a JSON-ready dict."""
    say = progress or (lambda _msg: None)
    cores = os.cpu_count() or 1
    tiny, _, x_test, _, _ = train_digits_model()
    rows = np.concatenate([x_test] * (1 + (latency_jobs + throughput_jobs) // len(x_test)))
    mlp = mlp_model()
    say(f"calibrating the batch to about {batch_seconds:g} s here")
    batch_rows, probe_rate = _calibrate(mlp, batch_seconds, WORKERS)
    batch_x = np.random.default_rng(0).standard_normal((batch_rows, MLP_IN)).astype(np.float32)

    with tempfile.TemporaryDirectory(prefix="idlegrid-bench-") as tmp:
        directory = Path(tmp)
        say(f"starting a devnet on {backend} with {PROVIDERS} provider nodes")
        devnet_up(directory, providers=PROVIDERS, accounts=PROVIDERS + 2, backend=backend)
        try:
            net = load_devnet(directory)
            account = net.accounts[CLIENT_ACCOUNT]
            net.ledger().token.mint(account.address, 10**9 * TOKEN, sender=net.faucet)
            client = Client(account, net.ledger(), index_path=directory / "index.sqlite")
            try:
                network = _network(
                    client,
                    say,
                    tiny=tiny,
                    rows=rows,
                    mlp=mlp,
                    batch_x=batch_x,
                    latency_jobs=latency_jobs,
                    throughput_jobs=throughput_jobs,
                    warmup=warmup,
                    concurrency=concurrency,
                    concurrency_4=concurrency_4,
                    runs=runs,
                )
                network["counts"]["nodes"] = _node_stats(client.providers())
            finally:
                client.close()
        finally:
            say("stopping the devnet")
            devnet_down(directory)

    if ray:
        say("ray: the tiny job as a task and as an actor call")
        ray_figures = run_ray(
            tiny,
            rows[: max(latency_jobs, throughput_jobs)],
            latency_jobs=latency_jobs,
            throughput_jobs=throughput_jobs,
            warmup=warmup,
            concurrency=network["throughput"]["providers_1"]["concurrency"],
            cpus=WORKERS,
        )
    else:
        ray_figures = {"error": "skipped (ray=False)"}

    batch = network.pop("batch")
    batch["calibration_rows_per_s"] = round(probe_rate, 1)
    p50, jobs_s = network["latency"]["p50_ms"], network["throughput"]["providers_1"]["jobs_per_s"]
    return {
        "benchmark": "dispatch",
        "p50_ms": p50,
        "p99_ms": network["latency"]["p99_ms"],
        "jobs_per_s": jobs_s,
        "jobs_per_s_4": network["throughput"]["providers_4"]["jobs_per_s"],
        "batch_ratio": batch["ratio"],
        "ray": ray_figures,
        "targets": {
            **TARGETS,
            "p50_ms_met": p50 <= TARGETS["p50_ms_max"],
            "jobs_per_s_met": jobs_s >= TARGETS["jobs_per_s_min"],
            "batch_ratio_met": batch["ratio"] <= TARGETS["batch_ratio_max"],
        },
        "anchor": ANCHOR,
        "latency": network["latency"],
        "client_infer": network["client_infer"],
        "throughput": network["throughput"],
        "batch": batch,
        "counts": network["counts"],
        "method": {
            "text": (__doc__ or "").split("Method (printed with the figures):", 1)[-1].strip(),
            "machine": _machine(cores),
            "backend": backend,
            "providers": PROVIDERS,
            "workers_per_provider": WORKERS,
            "latency_jobs": latency_jobs,
            "throughput_jobs": throughput_jobs,
            "warmup_jobs": warmup,
            "concurrency": list(concurrency),
            "concurrency_4_per_provider": list(concurrency_4),
            "batch_seconds_target": batch_seconds,
            "batch_runs": runs,
        },
    }


# -- through the network ---------------------------------------------------------------
def _network(
    client: Client,
    say: Say,
    *,
    tiny: bytes,
    rows: np.ndarray,
    mlp: bytes,
    batch_x: np.ndarray,
    latency_jobs: int,
    throughput_jobs: int,
    warmup: int,
    concurrency: Sequence[int],
    concurrency_4: Sequence[int],
    runs: int,
) -> dict[str, Any]:
    digest = hashlib.sha256(tiny).hexdigest()
    candidates = client.providers()
    say(f"{len(candidates)} providers found; funding one channel to each")
    tiny_jobs = 2 * (warmup + latency_jobs) + len(concurrency) * (warmup + throughput_jobs)
    tiny_jobs += len(concurrency_4) * (warmup + throughput_jobs)
    budget = (
        tiny_jobs * count_flops(tiny) + 2 * (runs + 1) * count_flops(mlp) * batch_x.shape[0]
    ) * max(c.unit_price for c in candidates)
    for c in candidates:  # enough for the whole run: no top-up while timing
        session = client._session(c)
        client._run(client._channels.acquire(session, budget, reserve=False))

    say(f"latency: {warmup} + {latency_jobs} one-row jobs, one at a time")
    client.max_providers = 1
    client.infer(tiny, rows[:4])  # uploads the model, opens the channel
    latency = client._run(_job_latencies(client, digest, rows[: warmup + latency_jobs]))[warmup:]
    say(f"latency: {warmup} + {latency_jobs} one-row Client.infer calls")
    infer_s = []
    for i in range(warmup + latency_jobs):
        t0 = time.perf_counter()
        client.run("onnx", rows[i : i + 1], model=digest)  # Client.infer of a held model
        infer_s.append(time.perf_counter() - t0)
    failovers = 0

    def sweep(providers: int, levels: Sequence[int]) -> dict[str, Any]:
        nonlocal failovers
        client.max_providers = providers
        points: list[dict[str, Any]] = []
        caps = {c.address: c.limits.max_jobs_per_client for c in client.providers()}
        for inflight in levels:
            say(f"throughput: {throughput_jobs} one-row jobs, {providers} provider(s), "
                f"{inflight} in flight to each")  # fmt: skip
            client.inflight = inflight
            client.run("onnx", rows[:warmup], rows_per_shard=1, model=digest)
            t0 = time.perf_counter()
            client.run("onnx", rows[:throughput_jobs], rows_per_shard=1, model=digest)
            seconds = time.perf_counter() - t0
            report = client.last_report
            failovers += len(report.failovers)
            points.append(
                {
                    "concurrency": inflight,
                    # a node lets one client have max_jobs_per_client jobs at once
                    "in_flight_total": sum(
                        min(inflight, caps.get(address, inflight)) for address in report.by_provider
                    ),
                    "jobs": throughput_jobs,
                    "seconds": round(seconds, 4),
                    "jobs_per_s": round(throughput_jobs / seconds, 1),
                    "jobs_by_provider": sorted(report.by_provider.values(), reverse=True),
                    "failovers": len(report.failovers),
                }
            )
        best = max(points, key=lambda p: p["jobs_per_s"])
        return {"jobs_per_s": best["jobs_per_s"], "concurrency": best["concurrency"],
                "sweep": points}  # fmt: skip

    throughput = {"providers_1": sweep(1, concurrency), "providers_4": sweep(4, concurrency_4)}

    say(f"batch: {batch_x.shape[0]} rows through the MLP, through the network")
    client.inflight = 4
    batch: dict[str, Any] = {
        "model": {
            "layers": f"{MLP_IN}->{'->'.join([str(MLP_WIDTH)] * MLP_LAYERS)}->{MLP_OUT}",
            "flops_per_row": count_flops(mlp),
            "bytes": len(mlp),
        },
        "rows": int(batch_x.shape[0]),
        "input_bytes": int(batch_x.nbytes),
    }
    # local and network runs take turns, so that both meet the machine in the same mood
    mlp_digest = hashlib.sha256(mlp).hexdigest()
    runner = OnnxRunner(threads=WORKERS)
    runner.run_first(mlp, batch_x)  # warm-up
    times: dict[str, list[float]] = {"local": [], "network": [], "network_4": []}
    shards: dict[str, int] = {}
    for providers in (1, PROVIDERS):
        client.max_providers = providers
        client.infer(mlp, batch_x)  # warm-up: uploads, loads the model in every worker
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run_first(mlp, batch_x)
        times["local"].append(time.perf_counter() - t0)
        for key, providers in (("network", 1), ("network_4", PROVIDERS)):
            client.max_providers = providers
            t0 = time.perf_counter()
            client.run("onnx", batch_x, model=mlp_digest)
            times[key].append(time.perf_counter() - t0)
            failovers += len(client.last_report.failovers)
            shards[key] = client.last_report.shards
    medians = {key: statistics.median(values) for key, values in times.items()}
    for key, values in times.items():
        batch[f"{key}_s"] = [round(v, 4) for v in values]
        batch[f"{key}_median_s"] = round(medians[key], 4)
    batch.update(
        network_shards=shards["network"],
        network_4_shards=shards["network_4"],
        local_threads=WORKERS,
        ratio=round(medians["network"] / medians["local"], 3),
        ratio_4=round(medians["network_4"] / medians["local"], 3),
    )
    client.flush()

    return {
        "latency": _summary(latency, warmup),
        "client_infer": _summary(infer_s[warmup:], warmup),
        "throughput": throughput,
        "batch": batch,
        "counts": {
            "failovers": failovers,
            "channels": len(client.channels()),
            "jobs_accepted": sum(len(ch.accepted) for ch in client.channels()),
        },
    }


async def _job_latencies(client: Client, digest: str, rows: np.ndarray) -> list[float]:
    """Seconds per one-row job, one job at a time, on the best provider (in its loop)."""
    from ..workloads import get_workload

    onnx = get_workload("onnx")
    candidate = rank(await client._discover(onnx.name), client.weights)[0]
    session = client._session(candidate)
    plan = await onnx.plan(rows, client._host(onnx), model=digest)  # the model read once
    reserve = client._reserve(session)  # takes the job's cost on the channel, as infer does
    out = []
    for i in range(rows.shape[0]):
        t0 = time.perf_counter()
        await session.run(reserve, plan, rows[i : i + 1])
        out.append(time.perf_counter() - t0)
    return out


def _summary(seconds: Sequence[float], warmup: int) -> dict[str, Any]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "jobs": len(ms),
        "warmup": warmup,
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(ms[-1], 3),
        "jobs_per_s_one_in_flight": round(1000 * len(ms) / sum(ms), 1),
    }


def _node_stats(candidates: Sequence[Candidate]) -> list[dict[str, Any]]:
    import httpx

    out = []
    for c in candidates:
        try:
            stats = httpx.get(f"{c.endpoint.rstrip('/')}/v1/stats", timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            continue
        out.append({"provider": c.address, **stats})
    return out


# -- locally ---------------------------------------------------------------------------
def mlp_model(
    inputs: int = MLP_IN, width: int = MLP_WIDTH, layers: int = MLP_LAYERS, outputs: int = MLP_OUT
) -> bytes:
    """An MLP as ONNX (float32 ``[N, inputs]`` -> ``[N, outputs]``): Gemm + Relu layers
    with fixed pseudo-random weights, small enough to upload as one blob (< 16 MiB)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    sizes = [inputs, *[width] * layers, outputs]
    nodes, weights = [], []
    x = "input"
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        w = (rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)).astype(np.float32)
        b = np.zeros(n_out, dtype=np.float32)
        weights += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(sizes) - 2
        y = "output" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"g{i}" if not last else y]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [y]))
        x = y
    graph = helper.make_graph(
        nodes,
        "idlegrid_bench_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, inputs])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, outputs])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def _calibrate(model: bytes, seconds: float, threads: int) -> tuple[int, float]:
    """Rows that take about ``seconds`` here with ``threads`` threads, and rows per second.

    Rows per second grow with the batch, so the estimate is refined on a batch of
    about the size it predicts.
    """
    runner = OnnxRunner(threads=threads)
    rows = 256
    runner.run_first(model, np.zeros((rows, MLP_IN), dtype=np.float32))
    rate = 0.0
    for _ in range(3):
        x = np.zeros((rows, MLP_IN), dtype=np.float32)
        t0 = time.perf_counter()
        runner.run_first(model, x)
        rate = rows / (time.perf_counter() - t0)
        estimate = max(8, int(rate * seconds))
        if rows >= estimate / 2:
            return estimate, rate
        rows = min(estimate, rows * 16)
    return max(8, int(rate * seconds)), rate


def _machine(cores: int) -> dict[str, Any]:
    import onnxruntime

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": cores,
        "cpu": cpu,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
    }
