"""The tiny job on Ray, for comparison: as a task and as an actor call (``idlegrid[bench]``).

Ray runs here as a local cluster started for the purpose, with ``num_cpus``
workers. A task is a ``@ray.remote`` function that keeps one onnxruntime session
per model in its worker process; the model travels once through the object
store. An actor holds its own session. Nothing is signed or paid for: this is
what the network's guarantees are measured against.
"""

from __future__ import annotations

import importlib
import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._stats import percentile

__all__ = ["NOT_INSTALLED", "run_ray"]

NOT_INSTALLED = "ray not installed: pip install 'idlegrid[bench]'"
#: the longest a job, or a batch of them, may take on Ray before the comparison gives up
TIMEOUT_S = 120.0

_SESSIONS: dict[str, Any] = {}


def run_ray(
    model: bytes,
    rows: np.ndarray,
    *,
    latency_jobs: int,
    throughput_jobs: int,
    warmup: int,
    concurrency: int,
    cpus: int,
) -> dict[str, Any]:
    """Latency and throughput of one-row jobs on a local Ray; ``{"error": ...}`` without Ray."""
    try:
        ray: Any = importlib.import_module("ray")
    except ImportError:
        return {"error": NOT_INSTALLED}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.perf_counter()
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        configure_logging=False,
    )
    try:
        return _run(ray, model, rows, time.perf_counter() - t0, latency_jobs=latency_jobs,
                    throughput_jobs=throughput_jobs, warmup=warmup, concurrency=concurrency,
                    cpus=cpus)  # fmt: skip
    except Exception as exc:  # Ray's own errors: the comparison fails, the benchmark does not
        return {"error": f"ray failed: {type(exc).__name__}: {exc}"[:1000]}
    finally:
        ray.shutdown()


def _run(
    ray: Any,
    model: bytes,
    rows: np.ndarray,
    started: float,
    *,
    latency_jobs: int,
    throughput_jobs: int,
    warmup: int,
    concurrency: int,
    cpus: int,
) -> dict[str, Any]:
    ref = ray.put(model)
    task = ray.remote(num_cpus=1)(_infer)
    actor_cls = ray.remote(num_cpus=1)(_OnnxActor)
    rows = rows[: max(latency_jobs, throughput_jobs)]
    out: dict[str, Any] = {"version": ray.__version__, "num_cpus": cpus}

    def by_task(x: np.ndarray) -> Any:
        return task.remote(ref, x)

    out["task"] = _measure(
        ray, by_task, by_task, rows, latency_jobs, throughput_jobs, warmup, concurrency
    )
    # actors hold their CPU for life: started once the tasks are done
    actors = [actor_cls.remote(ref) for _ in range(cpus)]
    turn = iter(range(1 << 62))

    def by_actor(x: np.ndarray) -> Any:
        return actors[next(turn) % len(actors)].run.remote(x)

    def one_actor(x: np.ndarray) -> Any:
        return actors[0].run.remote(x)

    out["actor"] = _measure(
        ray, by_actor, one_actor, rows, latency_jobs, throughput_jobs, warmup, concurrency
    )
    out["actor"]["actors"] = len(actors)
    out["actor"]["latency_on"] = "one actor"
    out["init_s"] = round(started, 2)
    return out


def _measure(
    ray: Any,
    submit: Callable[[np.ndarray], Any],
    sequential: Callable[[np.ndarray], Any],
    rows: np.ndarray,
    latency_jobs: int,
    throughput_jobs: int,
    warmup: int,
    concurrency: int,
) -> dict[str, Any]:
    _sequential(ray, sequential, rows[:warmup])
    lat = _sequential(ray, sequential, rows[:latency_jobs])
    _windowed(ray, submit, rows[:warmup], concurrency)
    seconds = _windowed(ray, submit, rows[:throughput_jobs], concurrency)
    t0 = time.perf_counter()
    ray.get([submit(rows[i : i + 1]) for i in range(throughput_jobs)], timeout=TIMEOUT_S)
    unbounded = time.perf_counter() - t0
    ms = sorted(s * 1000 for s in lat)
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "jobs_per_s": round(throughput_jobs / seconds, 1),
        "concurrency": concurrency,
        "jobs_per_s_all_submitted_at_once": round(throughput_jobs / unbounded, 1),
        "latency_jobs": len(ms),
        "throughput_jobs": throughput_jobs,
    }


def _sequential(ray: Any, submit: Callable[[np.ndarray], Any], rows: np.ndarray) -> list[float]:
    out = []
    for i in range(rows.shape[0]):
        t0 = time.perf_counter()
        ray.get(submit(rows[i : i + 1]), timeout=TIMEOUT_S)
        out.append(time.perf_counter() - t0)
    return out


def _windowed(
    ray: Any, submit: Callable[[np.ndarray], Any], rows: np.ndarray, window: int
) -> float:
    """Seconds to run every row with at most ``window`` jobs in flight."""
    t0 = time.perf_counter()
    pending: list[Any] = []
    for i in range(rows.shape[0]):
        if len(pending) >= window:
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done, timeout=TIMEOUT_S)
        pending.append(submit(rows[i : i + 1]))
    ray.get(pending, timeout=TIMEOUT_S)
    return time.perf_counter() - t0


def _session(model: bytes) -> Any:
    import hashlib

    import onnxruntime as ort

    from ..workloads._onnx import session_options

    digest = hashlib.sha256(model).hexdigest()
    session = _SESSIONS.get(digest)
    if session is None:
        options = session_options(1)  # as an idlegrid worker
        session = _SESSIONS[digest] = ort.InferenceSession(
            model, options, providers=["CPUExecutionProvider"]
        )
    return session


def _infer(model: bytes, x: np.ndarray) -> np.ndarray:
    """A Ray task: the model's first output for ``x``, with a session cached in the worker."""
    session = _session(model)
    out: np.ndarray = session.run(None, {session.get_inputs()[0].name: x})[0]
    return out


class _OnnxActor:
    """A Ray actor holding one session."""

    def __init__(self, model: bytes) -> None:
        self.session = _session(model)
        self.name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.session.run(None, {self.name: x})[0]
        return out
