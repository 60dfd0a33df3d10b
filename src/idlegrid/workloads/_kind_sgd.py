"""``sgd``: softmax regression trained by mini-batch SGD, a long-running kind.

A run trains the weights ``W`` (float64 ``[features + 1, classes]``, the last row the
bias) of a softmax classifier on a data set blob (``.npz`` with ``x`` float ``[n,
features]`` and ``y`` int ``[n]`` in ``0 .. classes-1``). It is deterministic: step ``t``
draws its mini-batch with ``numpy.random.default_rng([seed, t])``, so a step is a pure
function of ``(W, t)`` and a run resumed from any checkpoint ends exactly where an
uninterrupted one does. Numpy only.

One job is one segment: ``steps`` steps from step ``start``, from the checkpoint
``state`` (a blob; none: zeros). Units (one unit is one FLOP) are counted from the
spec alone: ``steps * flops_per_step(batch, features, classes)``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import pickle
from typing import Any

import numpy as np
from pydantic import Field

from .._exceptions import InvalidInput, PayloadTooLarge
from ._base import BlobSink, ClientHost, NodeHost, OutputSpec, Prepared, npy_output
from ._base import Spec as _Spec
from ._long import LongPlan, LongWorkload, Segment

__all__ = ["SgdPlan", "SgdSpec", "SgdWorkload", "flops_per_step", "sgd_dataset", "sgd_steps"]

#: steps a segment may have (a segment is a short job: it must end within the job limit)
MAX_SEGMENT_STEPS = 1_000_000
MAX_FEATURES = 4096
MAX_CLASSES = 1024
MAX_BATCH = 4096
DIGEST = r"^[0-9a-f]{64}$"


class SgdSpec(_Spec):
    """One segment of an ``sgd`` run."""

    data: str = Field(pattern=DIGEST, description="sha256 of the .npz data set (x, y)")
    state: str | None = Field(
        default=None, pattern=DIGEST, description="sha256 of the checkpoint to start from"
    )
    features: int = Field(ge=1, le=MAX_FEATURES)
    classes: int = Field(ge=2, le=MAX_CLASSES)
    start: int = Field(ge=0, description="the run's step this segment starts at")
    steps: int = Field(ge=1, le=MAX_SEGMENT_STEPS)
    batch: int = Field(ge=1, le=MAX_BATCH)
    lr: float = Field(gt=0, le=100)
    seed: int = Field(ge=0, lt=2**63)


def flops_per_step(batch: int, features: int, classes: int) -> int:
    """FLOPs of one step: logits (2bfc), softmax (~5bc), gradient (2bfc), update (2fc)."""
    f = features + 1
    return 4 * batch * f * classes + 5 * batch * classes + 2 * f * classes


def sgd_steps(
    w: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    start: int,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
) -> np.ndarray:
    """``steps`` steps of mini-batch SGD on softmax cross-entropy from step ``start``."""
    w = np.array(w, dtype=np.float64, copy=True)
    n, classes = x.shape[0], w.shape[1]
    eye = np.eye(classes)
    for t in range(start, start + steps):
        idx = np.random.default_rng([seed, t]).integers(0, n, batch)
        xb, yb = x[idx], y[idx]
        logits = xb @ w[:-1] + w[-1]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - eye[yb]) / batch
        w[:-1] -= lr * (xb.T @ g)
        w[-1] -= lr * g.sum(axis=0)
    return w


def loss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax cross-entropy of ``w`` on the whole data set."""
    logits = x @ w[:-1] + w[-1]
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def sgd_dataset(x: np.ndarray, y: np.ndarray) -> bytes:
    """A data set as the ``.npz`` bytes an ``sgd`` run names."""
    buf = io.BytesIO()
    np.savez(buf, x=np.asarray(x, dtype=np.float64), y=np.asarray(y, dtype=np.int64))
    return buf.getvalue()


def read_dataset(data: bytes, features: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of an ``.npz`` data set; InvalidInput unless it fits the spec."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            x, y = np.asarray(npz["x"], dtype=np.float64), np.asarray(npz["y"])
    except (ValueError, KeyError, OSError) as exc:
        raise InvalidInput(f"sgd data set: not an .npz with x and y ({exc})") from None
    if x.ndim != 2 or x.shape[1] != features or y.shape != (x.shape[0],) or len(y) < 1:
        raise InvalidInput(f"sgd data set: x must be [n, {features}] and y [n]")
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= classes:
        raise InvalidInput(f"sgd data set: y must be integers in 0..{classes - 1}")
    if not np.isfinite(x).all():
        raise InvalidInput("sgd data set: x has NaN or Inf")
    return x, y.astype(np.int64)


def read_state(data: bytes, features: int, classes: int) -> np.ndarray:
    from ..protocol import array_from_npy

    w = array_from_npy(data, max_bytes=len(data) + 1)
    if w.shape != (features + 1, classes) or w.dtype != np.float64:
        raise InvalidInput(f"sgd checkpoint: must be float64 [{features + 1}, {classes}]")
    return w


class SgdWorkload(LongWorkload[SgdSpec]):
    """Softmax regression by mini-batch SGD: one job is one segment of a run."""

    name = "sgd"
    Spec = SgdSpec
    task = "idlegrid.workloads._kind_sgd:run"
    summary = "softmax regression by mini-batch SGD (long-running, checkpointed)"
    input_fields = ("data", "state")

    def units(self, spec: SgdSpec, inputs: Any = None) -> int:
        return spec.steps * flops_per_step(spec.batch, spec.features, spec.classes)

    def outputs(self, spec: SgdSpec, inputs: Any = None) -> OutputSpec:
        return OutputSpec("weights", np.dtype(np.float64), (spec.classes,))

    def close_enough(self, a: np.ndarray, b: np.ndarray) -> bool:
        return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-9, atol=1e-12))

    def rows(self, inputs: Any) -> int:
        return 1

    # -- on the node ----------------------------------------------------------------
    def blobs(self, spec: SgdSpec) -> tuple[str, ...]:
        return (spec.data,) if spec.state is None else (spec.data, spec.state)

    async def check(self, spec: SgdSpec, node: NodeHost) -> None:
        if node.blob_size(spec.data) > node.max_blob_bytes:
            raise PayloadTooLarge("the data set is larger than this node's blob limit")
        if spec.state is not None:
            want = 8 * (spec.features + 1) * spec.classes
            if not want <= node.blob_size(spec.state) <= want + 1024:
                raise InvalidInput(f"the checkpoint is not float64 [{spec.features + 1}, ...]")

    async def prepare(self, spec: SgdSpec, node: NodeHost) -> Prepared:
        """The data set and checkpoint are read and checked here, so that a wrong one is
        refused before it runs (not billed)."""

        def load() -> bytes:
            data = node.blob(spec.data)
            read_dataset(data, spec.features, spec.classes)
            state = None
            if spec.state is not None:
                state = node.blob(spec.state)
                read_state(state, spec.features, spec.classes)
            job = {"spec": spec.model_dump(), "data": data, "state": state}
            return pickle.dumps(job, protocol=5)

        payload = await asyncio.to_thread(load)
        return Prepared(self.task, payload, spec.features + 1, self.units(spec))

    # -- on the client ----------------------------------------------------------------
    def step_after(self, spec: SgdSpec) -> int:
        return spec.start + spec.steps

    def report(self, spec: SgdSpec, checkpoint: bytes, node: NodeHost) -> dict[str, float]:
        """The training loss of the checkpoint on the run's data set."""
        x, y = read_dataset(node.blob(spec.data), spec.features, spec.classes)
        return {"loss": loss(read_state(checkpoint, spec.features, spec.classes), x, y)}

    def next_fields(
        self, spec: SgdSpec, checkpoint: str, total_steps: int
    ) -> dict[str, Any] | None:
        start = spec.start + spec.steps
        if start >= total_steps:
            return None
        steps = min(spec.steps, total_steps - start)
        return {**spec.model_dump(), "state": checkpoint, "start": start, "steps": steps}

    async def start(self, client: ClientHost, **options: Any) -> SgdPlan:
        """Options: ``x`` (float ``[n, features]``), ``y`` (int ``[n]``), ``steps`` (the
        run's), ``segment_steps``, ``batch`` (32), ``lr`` (0.1), ``seed`` (0),
        ``classes`` (default ``max(y) + 1``)."""
        try:
            x = np.asarray(options.pop("x"), dtype=np.float64)
            y = np.asarray(options.pop("y"))
            steps = int(options.pop("steps"))
            segment = int(options.pop("segment_steps"))
        except KeyError as exc:
            raise InvalidInput(f"an sgd run needs {exc.args[0]!r}") from None
        classes = int(options.pop("classes", int(y.max()) + 1 if y.size else 2))
        params = {
            "batch": int(options.pop("batch", 32)),
            "lr": float(options.pop("lr", 0.1)),
            "seed": int(options.pop("seed", 0)),
        }
        if options:
            raise InvalidInput(f"unknown options for an sgd run: {sorted(options)}")
        if x.ndim != 2:
            raise InvalidInput("x must be [n, features]")
        if steps < 1 or not 1 <= segment <= MAX_SEGMENT_STEPS:
            raise InvalidInput(f"steps must be >= 1, segment_steps 1..{MAX_SEGMENT_STEPS}")
        data = sgd_dataset(x, y)
        x, y = read_dataset(data, x.shape[1], classes)
        base = {"features": x.shape[1], "classes": classes, **params}
        self.parse({"data": "0" * 64, "start": 0, "steps": segment, **base})  # checks them
        plan = SgdPlan(data, x, y, base, steps, segment)
        plan.workload = self
        return plan


class SgdPlan(LongPlan):
    """A client's ``sgd`` run."""

    def __init__(
        self,
        data: bytes,
        x: np.ndarray,
        y: np.ndarray,
        base: dict[str, Any],
        total_steps: int,
        segment_steps: int,
    ) -> None:
        self.data = data
        self.digest = hashlib.sha256(data).hexdigest()
        self.x, self.y = x, y
        self.base = base
        self.total_steps = total_steps
        self.segment_steps = segment_steps

    def segment(self, start: int, steps: int) -> Segment:
        b = self.base
        units = steps * flops_per_step(b["batch"], b["features"], b["classes"])
        expect = OutputSpec("weights", np.dtype(np.float64), (b["classes"],))
        return Segment(start, steps, units, b["features"] + 1, expect)

    async def upload(self, sink: BlobSink) -> None:
        await sink.put_shared(self.data, self.digest)

    async def fields(self, segment: Segment, state: bytes | None, sink: BlobSink) -> dict[str, Any]:
        fields = {"data": self.digest, "start": segment.start, "steps": segment.steps, **self.base}
        if state is not None:
            fields["state"] = await sink.put_blob(state)
        return fields

    def metrics(self, state: bytes) -> dict[str, float]:
        w = read_state(state, self.base["features"], self.base["classes"])
        return {"loss": loss(w, self.x, self.y)}


# -- in the worker ------------------------------------------------------------------------
def run(payload: bytes) -> bytes:
    """The worker task: one segment, the next checkpoint as ``.npy``."""
    job = pickle.loads(payload)
    spec = job["spec"]
    x, y = read_dataset(job["data"], spec["features"], spec["classes"])
    if job["state"] is None:
        w = np.zeros((spec["features"] + 1, spec["classes"]))
    else:
        w = read_state(job["state"], spec["features"], spec["classes"])
    w = sgd_steps(
        w, x, y, start=spec["start"], steps=spec["steps"], batch=spec["batch"], lr=spec["lr"],
        seed=spec["seed"],
    )  # fmt: skip
    return npy_output(w)
