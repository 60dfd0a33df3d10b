"""How far honest results differ, measured, and a result just beyond the tolerance.

A verifier compares two results of one job with the kind's ``close_enough``; an honest
provider must never fail it, so the tolerance is set from real outputs. This module
measures them: the same job run with 1, 2 and 4 onnxruntime threads (and, for embed,
in batches of other sizes, which changes the padding and so the kernels), then reports
the largest difference and how much of the tolerance it uses (``headroom``: how many
times that difference could grow before ``close_enough`` refuses it).

Everything here asks the kind only through ``close_enough``: ``headroom`` scales the
difference until it is refused, and ``just_beyond`` (the ``noise`` cheat and the tests)
scales random noise until it is refused, so the result lies within 2x above the
tolerance whatever the kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["THREADS", "Calibration", "calibrate", "headroom", "just_beyond", "measure"]

#: the onnxruntime thread counts the calibration runs
THREADS = (1, 2, 4)
#: the texts embed is calibrated on: 48 sentences of 1 to 12 repeats (11 to 133 tokens)
TEXTS = tuple(f"Idle machines answer jobs for pay, number {i}. " * (1 + i % 12) for i in range(48))
_DOUBLINGS = 200


@dataclass(frozen=True)
class Calibration:
    """Honest results of one workload, compared with the first: the largest difference."""

    kind: str
    #: what the runs were (``threads=2``, ``batch=7``, ...), the first the reference
    runs: tuple[str, ...]
    #: the largest absolute difference of any run from the reference
    max_abs: float
    #: the largest difference relative to the reference value (where it is not 0)
    max_rel: float
    #: how many times the largest difference could grow before close_enough refuses it
    #: (inf: every run gave the same bits)
    headroom: float
    #: whether every run is close_enough to the reference
    agree: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "runs": list(self.runs),
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "headroom": self.headroom,
            "agree": self.agree,
        }


def headroom(workload: Any, a: np.ndarray, b: np.ndarray) -> float:
    """The largest factor ``s`` (within 2x) for which ``a + s·(b − a)`` is still
    close_enough to ``a``: 1 or more when ``b`` agrees with ``a``; inf when equal."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or not workload.close_enough(a, b):
        return 0.0
    diff = b.astype(np.float64) - a.astype(np.float64)
    if not np.any(diff):
        return float("inf")
    scale = 1.0
    for _ in range(_DOUBLINGS):
        trial = (a + (2 * scale) * diff).astype(a.dtype)
        if not workload.close_enough(a, trial):
            return scale
        scale *= 2
    return float("inf")


def just_beyond(workload: Any, output: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``output`` plus noise just large enough that ``close_enough`` refuses it (within
    2x of the smallest such noise): the cheat that hopes to hide under the tolerance.
    Outputs that are not floats get one element changed by one."""
    output = np.asarray(output)
    if output.dtype.kind not in "fc" or output.size == 0:
        wrong = output.copy()
        if wrong.size:
            flat = wrong.reshape(-1)
            i = int(rng.integers(flat.size))
            flat[i] = not flat[i] if wrong.dtype.kind == "b" else flat[i] + 1
        return wrong
    direction = rng.standard_normal(output.shape)
    scale = 1e-12 * max(1.0, float(np.max(np.abs(output))))
    for _ in range(_DOUBLINGS):
        noisy = (output + scale * direction).astype(output.dtype)
        if not workload.close_enough(output, noisy):
            return noisy
        scale *= 2
    raise ValueError(f"{workload.name}: no noise is large enough to be refused")


def measure(kind: str, results: Sequence[np.ndarray], runs: Sequence[str]) -> Calibration:
    """The calibration of ``results`` (honest runs of one job; the first the reference)."""
    from ..workloads import get_workload

    workload = get_workload(kind)
    base = np.asarray(results[0], dtype=np.float64)
    max_abs = max_rel = 0.0
    room = float("inf")
    for result in results[1:]:
        diff = np.abs(np.asarray(result, dtype=np.float64) - base)
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        nonzero = base != 0
        if nonzero.any():
            max_rel = max(max_rel, float((diff[nonzero] / np.abs(base[nonzero])).max()))
        room = min(room, headroom(workload, results[0], result))
    agree = all(workload.close_enough(results[0], r) for r in results)
    return Calibration(kind, tuple(runs), max_abs, max_rel, room, agree)


def calibrate_onnx(model: bytes, x: np.ndarray, threads: Sequence[int] = THREADS) -> Calibration:
    """An onnx model's first float output on ``x`` (integer outputs must be equal, so
    they tell nothing) with each thread count, and in jobs of 7 rows with the first."""
    from ..workloads import CPU, OnnxRunner

    def first_float(runner: Any, rows: np.ndarray) -> np.ndarray:
        outputs = runner.run(model, rows)
        return next((o for o in outputs if o.dtype.kind == "f"), outputs[0])

    results, runs = [], []
    for n in threads:
        results.append(first_float(OnnxRunner(providers=[CPU], threads=n), x))
        runs.append(f"threads={n}")
    runner = OnnxRunner(providers=[CPU], threads=threads[0])
    parts = [first_float(runner, x[i : i + 7]) for i in range(0, len(x), 7)]
    results.append(np.concatenate(parts))
    runs.append(f"threads={threads[0]},rows=7")
    return measure("onnx", results, runs)


def calibrate_embed(texts: Sequence[str] = TEXTS, threads: Sequence[int] = THREADS) -> Calibration:
    """MiniLM embeddings of ``texts`` with each thread count, and in batches of 1 and 7."""
    from ..workloads import Embedder

    results = [Embedder(threads=n, batch_size=32).embed(list(texts)) for n in threads]
    runs = [f"threads={n}" for n in threads]
    for batch in (1, 7):
        results.append(Embedder(threads=threads[0], batch_size=batch).embed(list(texts)))
        runs.append(f"threads={threads[0]},batch={batch}")
    return measure("embed", results, runs)


def calibrate(*, embed: bool = True, threads: Sequence[int] = THREADS) -> list[Calibration]:
    """The calibration of onnx (the digits MLP on all 1,797 digits) and, when ``embed``
    (it needs the MiniLM package), of embed: what ``bench verify`` and the docs print."""
    from ..workloads import train_digits_model

    model, x_train, x_test, _, _ = train_digits_model("mlp")
    out = [calibrate_onnx(model, np.concatenate([x_train, x_test]), threads)]
    if embed:
        out.append(calibrate_embed(TEXTS, threads))
    return out
