"""``train``: a network from the model registry trained with PyTorch, a long-running kind.

A run trains a network named by a declarative spec (``_train_models.py``: ``mlp``,
``cnn``, ``transformer``) with ``sgd`` or ``adam``, a ``constant`` or ``cosine``
learning rate over ``total_steps``, on a data set blob: an ``.npz`` with ``x``, ``y``
(the training split) and ``x_val``, ``y_val`` (the validation split); ``x`` float32
``[n, *sample]`` (int64 tokens for a transformer), ``y`` int ``[n]`` in ``0 ..
classes-1``.

It is deterministic on one hardware class: the initial weights follow from
``torch.manual_seed(seed)``; epoch ``e`` visits the training set in the order
``numpy.random.default_rng([seed, e]).permutation(n)``, in ``n // batch`` full
batches (the rest is dropped), so step ``t`` is a pure function of the weights, the
optimizer state and ``t``; the worker runs one thread with deterministic algorithms.

One job is one segment: ``steps`` steps from step ``start``, from the checkpoint
``state`` (a blob; none: the seeded initial weights). The checkpoint, the segment's
output, is one float32 vector: ``[step // 2**24, step % 2**24, parameters,
optimizer state]`` (Adam: its first then second moments; SGD: nothing), so a run
resumed from it ends where an uninterrupted one does.

Units (one unit is one FLOP) come from the spec alone: ``3 * flops_per_sample * batch
* steps`` (a backward pass costs about twice the forward one).

Caps, checked before any work: at most ``MAX_PARAMS`` parameters (a float32 Adam
checkpoint of at most 3 * 4 * 5M = 60 MB) and an estimated ``MAX_ACTIVATION_BYTES`` of
activations per batch (``activation_floats * batch * 4``).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from .._exceptions import ConfigError, InvalidInput, PayloadTooLarge
from ._base import BlobSink, ClientHost, NodeHost, OutputSpec, Prepared, npy_output
from ._base import Spec as _Spec
from ._long import LongPlan, LongWorkload, Segment
from ._train_models import (
    ModelSpec,
    TransformerModel,
    activation_floats,
    build,
    flops_per_sample,
    input_shape,
    param_count,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "TrainPlan",
    "TrainSpec",
    "TrainWorkload",
    "export_onnx",
    "train_dataset",
    "train_units",
]

MAX_PARAMS = 5_000_000
MAX_ACTIVATION_BYTES = 2 * 2**30
MAX_SEGMENT_STEPS = 1_000_000
MAX_TOTAL_STEPS = 2**40
MAX_BATCH = 4096
_HEADER = 2  # the step, as two float32 integers below 2**24
DIGEST = r"^[0-9a-f]{64}$"


class TrainSpec(_Spec):
    """One segment of a ``train`` run."""

    model: ModelSpec
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = Field(gt=0, le=10)
    schedule: Literal["constant", "cosine"] = "constant"
    total_steps: int = Field(ge=1, le=MAX_TOTAL_STEPS, description="steps of the whole run")
    batch: int = Field(ge=1, le=MAX_BATCH)
    seed: int = Field(ge=0, lt=2**63)
    data: str = Field(pattern=DIGEST, description="sha256 of the .npz data set")
    start: int = Field(ge=0, description="the run's step this segment starts at")
    steps: int = Field(ge=1, le=MAX_SEGMENT_STEPS)
    state: str | None = Field(
        default=None, pattern=DIGEST, description="sha256 of the checkpoint to start from"
    )

    @model_validator(mode="after")
    def _fits(self) -> TrainSpec:
        if self.start + self.steps > self.total_steps:
            raise ValueError(f"the segment ends after the run's {self.total_steps} steps")
        if (self.start == 0) != (self.state is None):
            raise ValueError("a segment has a state exactly when it does not start at step 0")
        params = param_count(self.model)
        if params > MAX_PARAMS:
            raise ValueError(f"the model has {params} parameters, more than {MAX_PARAMS}")
        acts = 4 * activation_floats(self.model) * self.batch
        if acts > MAX_ACTIVATION_BYTES:
            raise ValueError(
                f"a batch would keep about {acts} bytes of activations, "
                f"more than {MAX_ACTIVATION_BYTES}"
            )
        return self


def train_units(spec: TrainSpec) -> int:
    """The bill of a segment: forward + backward FLOPs of its samples."""
    return 3 * flops_per_sample(spec.model) * spec.batch * spec.steps


def checkpoint_size(spec: TrainSpec) -> int:
    """Float32 values in a checkpoint of this run."""
    return _HEADER + param_count(spec.model) * (3 if spec.optimizer == "adam" else 1)


def train_dataset(x: Any, y: Any, x_val: Any, y_val: Any) -> bytes:
    """A data set as the ``.npz`` bytes a ``train`` run names."""
    buf = io.BytesIO()
    xa, xv = np.asarray(x), np.asarray(x_val)
    cast = np.int64 if xa.dtype.kind in "iu" else np.float32
    np.savez(
        buf,
        x=xa.astype(cast),
        y=np.asarray(y, dtype=np.int64),
        x_val=xv.astype(cast),
        y_val=np.asarray(y_val, dtype=np.int64),
    )
    return buf.getvalue()


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def read_dataset(data: bytes, spec: TrainSpec) -> Arrays:
    """``(x, y, x_val, y_val)``; InvalidInput unless they fit the spec's model."""
    m = spec.model
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = tuple(np.asarray(npz[k]) for k in ("x", "y", "x_val", "y_val"))
    except (ValueError, KeyError, OSError, EOFError) as exc:
        raise InvalidInput(f"train data set: not an .npz with x, y, x_val, y_val ({exc})") from None
    x, y, x_val, y_val = arrays
    sample = input_shape(m)
    tokens = isinstance(m, TransformerModel)
    for name, xs, ys in (("x", x, y), ("x_val", x_val, y_val)):
        if xs.shape[1:] != sample or ys.shape != (xs.shape[0],) or len(ys) < 1:
            raise InvalidInput(
                f"train data set: {name} must be [n, {', '.join(map(str, sample))}] "
                f"with one label each, not {list(xs.shape)} and {list(ys.shape)}"
            )
        if ys.dtype.kind not in "iu" or ys.min() < 0 or ys.max() >= m.classes:
            raise InvalidInput(f"train data set: labels must be integers in 0..{m.classes - 1}")
        if isinstance(m, TransformerModel):
            if xs.dtype.kind not in "iu" or xs.min() < 0 or xs.max() >= m.vocab:
                raise InvalidInput(f"train data set: {name} must be tokens in 0..{m.vocab - 1}")
        elif xs.dtype != np.float32 or not np.isfinite(xs).all():
            raise InvalidInput(f"train data set: {name} must be finite float32")
    if len(y) < spec.batch:
        raise InvalidInput(f"train data set: {len(y)} training rows, fewer than a batch")
    cast = np.int64 if tokens else np.float32
    return x.astype(cast), y.astype(np.int64), x_val.astype(cast), y_val.astype(np.int64)


def read_state(data: bytes, spec: TrainSpec) -> np.ndarray:
    """A checkpoint of this run; InvalidInput unless it has the run's layout."""
    from ..protocol import array_from_npy

    state = array_from_npy(data, max_bytes=len(data) + 1)
    if state.dtype != np.float32 or state.shape != (checkpoint_size(spec),):
        raise InvalidInput(f"train checkpoint: must be float32 [{checkpoint_size(spec)}]")
    if not np.isfinite(state).all():
        raise InvalidInput("train checkpoint: has NaN or Inf")
    return state


def checkpoint_step(state: np.ndarray) -> int:
    """The run's step a checkpoint was taken at."""
    return int(state[0]) * 2**24 + int(state[1])


class TrainWorkload(LongWorkload[TrainSpec]):
    """A registry network trained with PyTorch: one job is one segment of a run."""

    name = "train"
    Spec = TrainSpec
    task = "idlegrid.workloads._kind_train:run"
    summary = "PyTorch training of an mlp, cnn or transformer (long-running, checkpointed)"
    input_fields = ("data", "state")

    def units(self, spec: TrainSpec, inputs: Any = None) -> int:
        return train_units(spec)

    def outputs(self, spec: TrainSpec, inputs: Any = None) -> OutputSpec:
        return OutputSpec("checkpoint", np.dtype(np.float32), ())

    def close_enough(self, a: np.ndarray, b: np.ndarray) -> bool:
        return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-5, atol=1e-6))

    def rows(self, inputs: Any) -> int:
        return 1

    # -- on the node ----------------------------------------------------------------
    def blobs(self, spec: TrainSpec) -> tuple[str, ...]:
        return (spec.data,) if spec.state is None else (spec.data, spec.state)

    async def check(self, spec: TrainSpec, node: NodeHost) -> None:
        if node.blob_size(spec.data) > node.max_blob_bytes:
            raise PayloadTooLarge("the data set is larger than this node's blob limit")
        if spec.state is not None:
            want = 4 * checkpoint_size(spec)
            if not want <= node.blob_size(spec.state) <= want + 1024:
                raise InvalidInput(f"the checkpoint is not float32 [{checkpoint_size(spec)}]")

    async def prepare(self, spec: TrainSpec, node: NodeHost) -> Prepared:
        """The data set and checkpoint are read and checked here, so that a wrong one is
        refused before it runs (not billed)."""
        _need_torch()

        def load() -> bytes:
            data = node.blob(spec.data)
            read_dataset(data, spec)
            state = None
            if spec.state is not None:
                state = node.blob(spec.state)
                if checkpoint_step(read_state(state, spec)) != spec.start:
                    raise InvalidInput(f"the checkpoint is not at step {spec.start}")
            job = {"spec": spec.model_dump(), "data": data, "state": state}
            return pickle.dumps(job, protocol=5)

        payload = await asyncio.to_thread(load)
        return Prepared(self.task, payload, checkpoint_size(spec), self.units(spec))

    def step_after(self, spec: TrainSpec) -> int:
        return spec.start + spec.steps

    def report(self, spec: TrainSpec, checkpoint: bytes, node: NodeHost) -> dict[str, float]:
        """Training loss and validation accuracy of the checkpoint, on the run's data."""
        arrays = read_dataset(node.blob(spec.data), spec)
        return evaluate(spec, read_state(checkpoint, spec), arrays)

    def next_fields(
        self, spec: TrainSpec, checkpoint: str, total_steps: int
    ) -> dict[str, Any] | None:
        start = spec.start + spec.steps
        if start >= min(total_steps, spec.total_steps):
            return None
        steps = min(spec.steps, spec.total_steps - start)
        return {**spec.model_dump(), "state": checkpoint, "start": start, "steps": steps}

    # -- on the client ----------------------------------------------------------------
    async def start(self, client: ClientHost, **options: Any) -> TrainPlan:
        """Options: ``model`` (a model spec), ``x``, ``y``, ``x_val``, ``y_val``,
        ``segment_steps``, ``epochs`` or ``total_steps``, ``batch`` (32), ``lr``
        (1e-3), ``optimizer`` ("adam"), ``schedule`` ("constant"), ``seed`` (0)."""
        try:
            arrays = [options.pop(k) for k in ("x", "y", "x_val", "y_val")]
            model = options.pop("model")
            segment = int(options.pop("segment_steps"))
        except KeyError as exc:
            raise InvalidInput(f"a train run needs {exc.args[0]!r}") from None
        batch = int(options.pop("batch", 32))
        epochs = options.pop("epochs", None)
        total = options.pop("total_steps", None)
        if (epochs is None) == (total is None):
            raise InvalidInput("a train run needs exactly one of epochs and total_steps")
        if epochs is not None:
            total = int(epochs) * (len(arrays[1]) // max(batch, 1))
        base = {
            "model": model,
            "optimizer": options.pop("optimizer", "adam"),
            "lr": float(options.pop("lr", 1e-3)),
            "schedule": options.pop("schedule", "constant"),
            "total_steps": int(total),
            "batch": batch,
            "seed": int(options.pop("seed", 0)),
        }
        if options:
            raise InvalidInput(f"unknown options for a train run: {sorted(options)}")
        data = train_dataset(*arrays)
        first = self.parse({**base, "data": "0" * 64, "start": 0, "steps": 1})  # checks them
        if not 1 <= segment <= MAX_SEGMENT_STEPS:
            raise InvalidInput(f"segment_steps must be 1..{MAX_SEGMENT_STEPS}")
        base["model"] = first.model.model_dump()
        plan = TrainPlan(data, read_dataset(data, first), base, segment)
        plan.workload = self
        return plan


class TrainPlan(LongPlan):
    """A client's ``train`` run."""

    def __init__(
        self, data: bytes, arrays: Arrays, base: dict[str, Any], segment_steps: int
    ) -> None:
        self.data = data
        self.digest = hashlib.sha256(data).hexdigest()
        self.arrays = arrays
        self.base = base
        self.total_steps = base["total_steps"]
        self.segment_steps = segment_steps

    def _spec(self, start: int, steps: int) -> TrainSpec:
        state = None if start == 0 else "0" * 64
        return TrainSpec.model_validate(
            {**self.base, "data": self.digest, "start": start, "steps": steps, "state": state}
        )

    def segment(self, start: int, steps: int) -> Segment:
        spec = self._spec(start, steps)
        expect = OutputSpec("checkpoint", np.dtype(np.float32), ())
        return Segment(start, steps, train_units(spec), checkpoint_size(spec), expect)

    async def upload(self, sink: BlobSink) -> None:
        await sink.put_shared(self.data, self.digest)

    async def fields(self, segment: Segment, state: bytes | None, sink: BlobSink) -> dict[str, Any]:
        fields = {**self.base, "data": self.digest, "start": segment.start, "steps": segment.steps}
        if state is not None:
            fields["state"] = await sink.put_blob(state)
        return fields

    def metrics(self, state: bytes) -> dict[str, float]:
        spec = self._spec(0, 1)
        return evaluate(spec, read_state(state, spec), self.arrays)

    def onnx(self, state: bytes) -> bytes:
        """The trained network of a checkpoint as an ONNX model (``export_onnx``)."""
        spec = self._spec(0, 1)
        return export_onnx(spec, read_state(state, spec))


# -- torch: in the worker, and for the figures and the export -------------------------------
def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConfigError("train jobs need PyTorch (pip install 'idlegrid[embed]')") from None


def _lr(spec: TrainSpec, step: int) -> float:
    if spec.schedule == "constant":
        return spec.lr
    return spec.lr * 0.5 * (1.0 + math.cos(math.pi * step / spec.total_steps))


def _network(spec: TrainSpec, state: np.ndarray | None) -> torch.nn.Module:
    import torch

    torch.manual_seed(spec.seed)
    net = build(spec.model)
    if state is not None:
        params = param_count(spec.model)
        flat = torch.from_numpy(state[_HEADER : _HEADER + params].copy())
        torch.nn.utils.vector_to_parameters(flat, net.parameters())
    return net


def train_steps(
    spec: TrainSpec, state: np.ndarray | None, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """The segment ``spec`` from checkpoint ``state`` (None: the start): the next one."""
    import torch

    torch.use_deterministic_algorithms(True)
    net = _network(spec, state)
    net.train()
    params = list(net.parameters())
    n_params = param_count(spec.model)
    opt: torch.optim.Optimizer
    if spec.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=spec.lr, foreach=False)
        if state is not None:
            m1 = state[_HEADER + n_params : _HEADER + 2 * n_params]
            m2 = state[_HEADER + 2 * n_params :]
            offset = 0
            for p in params:
                k = p.numel()
                opt.state[p] = {
                    "step": torch.tensor(float(spec.start)),
                    "exp_avg": torch.from_numpy(m1[offset : offset + k].copy()).view_as(p),
                    "exp_avg_sq": torch.from_numpy(m2[offset : offset + k].copy()).view_as(p),
                }
                offset += k
    else:
        opt = torch.optim.SGD(params, lr=spec.lr, foreach=False)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    per_epoch = len(y) // spec.batch
    order, epoch = None, -1
    for t in range(spec.start, spec.start + spec.steps):
        if t // per_epoch != epoch:
            epoch = t // per_epoch
            order = torch.from_numpy(np.random.default_rng([spec.seed, epoch]).permutation(len(y)))
        assert order is not None
        i = (t % per_epoch) * spec.batch
        idx = order[i : i + spec.batch]
        for group in opt.param_groups:
            group["lr"] = _lr(spec, t)
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    end = spec.start + spec.steps
    parts = [np.array([end // 2**24, end % 2**24], dtype=np.float32)]
    with torch.no_grad():
        parts.append(torch.nn.utils.parameters_to_vector(params).numpy())
        if spec.optimizer == "adam":
            for key in ("exp_avg", "exp_avg_sq"):
                parts.append(torch.cat([opt.state[p][key].reshape(-1) for p in params]).numpy())
    return np.concatenate(parts).astype(np.float32)


def _logits(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    import torch

    net.eval()
    with torch.no_grad():
        chunks = [net(torch.from_numpy(x[i : i + 1024])).numpy() for i in range(0, len(x), 1024)]
    return np.concatenate(chunks)


def evaluate(spec: TrainSpec, state: np.ndarray, arrays: Arrays) -> dict[str, float]:
    """``loss`` (mean cross-entropy on the training split) and ``val_accuracy``."""
    x, y, x_val, y_val = arrays
    net = _network(spec, state)
    logits = _logits(net, x).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = float(-logp[np.arange(len(y)), y].mean())
    accuracy = float((_logits(net, x_val).argmax(axis=1) == y_val).mean())
    return {"step": float(checkpoint_step(state)), "loss": loss, "val_accuracy": accuracy}


def export_onnx(spec: TrainSpec, state: np.ndarray) -> bytes:
    """The network of a checkpoint as ONNX (input ``x``, output ``logits``, any batch
    size), which the ``onnx`` workload serves."""
    import torch

    net = _network(spec, state)
    net.eval()
    shape = input_shape(spec.model)
    dtype = torch.int64 if isinstance(spec.model, TransformerModel) else torch.float32
    example = torch.zeros((1, *shape), dtype=dtype)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # the TorchScript exporter (no onnxscript needed) is deprecated, not gone
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            f"{tmp}/model.onnx",
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        )
        return Path(f"{tmp}/model.onnx").read_bytes()


def run(payload: bytes) -> bytes:
    """The worker task: one segment, the next checkpoint as ``.npy``."""
    import torch

    torch.set_num_threads(1)
    job = pickle.loads(payload)
    spec = TrainSpec.model_validate(job["spec"])
    x, y, _, _ = read_dataset(job["data"], spec)
    state = None if job["state"] is None else read_state(job["state"], spec)
    return npy_output(train_steps(spec, state, x, y))
