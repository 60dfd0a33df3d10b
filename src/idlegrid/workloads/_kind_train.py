"""``train``: a network from the model registry trained with PyTorch, a long-running kind.

A run trains a network named by a declarative spec (``_train_models.py``: ``mlp``,
``cnn``, ``transformer``) with ``sgd`` or ``adam``, a ``constant`` or ``cosine``
learning rate over ``total_steps``, on a data set blob: an ``.npz`` with ``x``, ``y``
(the training split) and ``x_val``, ``y_val`` (the validation split); ``x`` float32
``[n, *sample]`` (int64 tokens for a transformer), ``y`` int ``[n]`` in ``0 ..
classes-1``.

It trains on the spec's ``device`` (``cpu``, or ``cuda`` on a node that has it; a node
without CUDA refuses a ``cuda`` run before any work), which is its hardware class: a
replay must use the same. It is deterministic on one hardware class: the initial
weights follow from
``torch.manual_seed(seed)``; epoch ``e`` visits the training set in the order
``numpy.random.default_rng([seed, e]).permutation(n)``, in ``n // batch`` full
batches (the rest is dropped), so step ``t`` is a pure function of the weights, the
optimizer state and ``t``; the worker runs one thread with deterministic algorithms.

One job is one segment: ``steps`` steps from step ``start``, from the checkpoint
``state`` (a blob; none: the seeded initial weights). A segment is cut into
*intervals* of ``interval`` steps (the last may be shorter; default: the whole
segment), and after each one the worker takes a checkpoint, a *state*: one float32
vector ``[step // 2**24, step % 2**24, loss, parameters, optimizer state]`` (``loss``
the mean training loss of the interval's steps; Adam: its first then second moments;
SGD: nothing), so a run resumed from any state ends where an uninterrupted one does.

The segment's output, the job's signed result, is ``[m, h_1 .. h_m, final state]``:
the number of intervals, then the sha256 of each interval's state (``state_hash``,
each as 16 float32 values holding 16 bits), then the last state. So the receipt signs
every checkpoint of the trajectory, and the states themselves stay on the node (it
keeps them as blobs of the client's: ``split_output``) for a verifier to fetch the few
it replays (``idlegrid.verify``, proof-of-learning).

Units (one unit is one FLOP) come from the spec alone: ``3 * flops_per_sample * batch
* steps`` (a backward pass costs about twice the forward one).

Caps, checked before any work: at most ``MAX_PARAMS`` parameters (a float32 Adam
checkpoint of at most 3 * 4 * 5M = 60 MB), an estimated ``MAX_ACTIVATION_BYTES`` of
activations per batch (``activation_floats * batch * 4``), and at most
``MAX_SEGMENT_STATE_BYTES`` of states per segment (what the worker hands the node).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import io
import math
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
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
    deterministic,
    export_onnx_network,
    flops_per_sample,
    input_shape,
    param_count,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "FABRICATIONS",
    "TrainPlan",
    "TrainSpec",
    "TrainWorkload",
    "export_onnx",
    "initial_state",
    "output_size",
    "pack_output",
    "params_of",
    "state_hash",
    "state_size",
    "state_step",
    "train_dataset",
    "train_steps",
    "train_units",
    "unpack_output",
]

MAX_PARAMS = 5_000_000
MAX_ACTIVATION_BYTES = 2 * 2**30
MAX_SEGMENT_STEPS = 1_000_000
MAX_TOTAL_STEPS = 2**40
MAX_BATCH = 4096
#: the states one segment may hand the node (below the node's default output limit)
MAX_SEGMENT_STATE_BYTES = 60 * 2**20
MAX_INTERVALS = 4096
_HEADER = 3  # the step, as two float32 integers below 2**24, and the interval's loss
_HASH_FLOATS = 16  # a sha256 as 16 float32 values of 16 bits each
DIGEST = r"^[0-9a-f]{64}$"
#: two outputs of one segment agree when their final parameters are within this distance,
#: relative to the parameters' norm (a referee's replay on another machine)
STATE_RTOL = 1e-5
#: how a cheating node fabricates intervals (a testing aid: ``provider/_cheat.py``)
FABRICATIONS = ("skip-steps", "interpolate")


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
        default=None, pattern=DIGEST, description="sha256 of the state to start from"
    )
    interval: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SEGMENT_STEPS,
        description="steps between checkpoints (default: one at the end of the segment)",
    )
    device: Literal["cpu", "cuda"] = Field(
        default="cpu",
        description="the hardware class the run trains on (replays must use the same)",
    )

    @property
    def every(self) -> int:
        """Steps per interval."""
        return self.interval or self.steps

    @property
    def intervals(self) -> int:
        """Intervals (checkpoints) in this segment."""
        return -(-self.steps // self.every)

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
        if self.interval is not None and self.start % self.interval:
            raise ValueError(
                f"a segment starts on a checkpoint: start must be a multiple of {self.interval}"
            )
        if self.intervals > MAX_INTERVALS:
            raise ValueError(f"a segment may have at most {MAX_INTERVALS} checkpoints")
        if self.intervals * 4 * state_size(self) > MAX_SEGMENT_STATE_BYTES:
            raise ValueError(
                f"{self.intervals} checkpoints of {4 * state_size(self)} bytes are more than "
                f"{MAX_SEGMENT_STATE_BYTES} bytes a segment may keep: checkpoint less often"
            )
        return self


def train_units(spec: TrainSpec) -> int:
    """The bill of a segment: forward + backward FLOPs of its samples."""
    return 3 * flops_per_sample(spec.model) * spec.batch * spec.steps


def state_size(spec: TrainSpec) -> int:
    """Float32 values in a state (a checkpoint) of this run."""
    return _HEADER + param_count(spec.model) * (3 if spec.optimizer == "adam" else 1)


def output_size(spec: TrainSpec) -> int:
    """Float32 values in the output of the segment ``spec``."""
    return 1 + _HASH_FLOATS * spec.intervals + state_size(spec)


def state_hash(state: np.ndarray) -> bytes:
    """The sha256 naming a state: of its ``.npy`` bytes (a leaf of the run's tree)."""
    from ..protocol import npy_bytes

    return hashlib.sha256(npy_bytes(np.ascontiguousarray(state, dtype=np.float32))).digest()


def state_step(state: np.ndarray) -> int:
    """The run's step a state was taken at."""
    return int(state[0]) * 2**24 + int(state[1])


def params_of(spec: TrainSpec, state: np.ndarray) -> np.ndarray:
    """The parameters in a state (``parameters_to_vector`` order)."""
    return state[_HEADER : _HEADER + param_count(spec.model)]


def _hash_values(digest: bytes) -> np.ndarray:
    return np.frombuffer(digest, dtype=">u2").astype(np.float32)


def pack_output(states: list[np.ndarray]) -> np.ndarray:
    """A segment's output from its interval states: ``[m, h_1 .. h_m, last state]``."""
    parts = [np.array([len(states)], dtype=np.float32)]
    parts += [_hash_values(state_hash(s)) for s in states]
    parts.append(np.asarray(states[-1], dtype=np.float32))
    return np.concatenate(parts)


def unpack_output(spec: TrainSpec, output: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """``(interval hashes, last state)`` of the segment ``spec``'s output; InvalidInput
    unless it has the segment's layout and its last hash is its state's."""
    m = spec.intervals
    if output.dtype != np.float32 or output.shape != (output_size(spec),) or output[0] != m:
        raise InvalidInput(
            f"train output: must be float32 [{output_size(spec)}] of {m} checkpoints"
        )
    head = output[1 : 1 + _HASH_FLOATS * m]
    if not (np.all(head == np.floor(head)) and np.all((head >= 0) & (head < 2**16))):
        raise InvalidInput("train output: its checkpoint hashes are not 16-bit values")
    raw = head.astype(">u2").tobytes()
    hashes = [raw[i : i + 32] for i in range(0, len(raw), 32)]
    state = output[1 + _HASH_FLOATS * m :]
    if not np.isfinite(state).all():
        raise InvalidInput("train output: its state has NaN or Inf")
    if state_step(state) != spec.start + spec.steps:
        raise InvalidInput(f"train output: its state is not at step {spec.start + spec.steps}")
    if state_hash(state) != hashes[-1]:
        raise InvalidInput("train output: the last checkpoint hash is not its state's")
    return hashes, state


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
    """A state of this run; InvalidInput unless it has the run's layout."""
    from ..protocol import array_from_npy

    state = array_from_npy(data, max_bytes=len(data) + 1)
    if state.dtype != np.float32 or state.shape != (state_size(spec),):
        raise InvalidInput(f"train checkpoint: must be float32 [{state_size(spec)}]")
    if not np.isfinite(state).all():
        raise InvalidInput("train checkpoint: has NaN or Inf")
    return state


checkpoint_step = state_step


class TrainWorkload(LongWorkload[TrainSpec]):
    """A registry network trained with PyTorch: one job is one segment of a run."""

    name = "train"
    Spec = TrainSpec
    task = "idlegrid.workloads._kind_train:run"
    summary = "PyTorch training of an mlp, cnn or transformer (long-running, checkpointed)"
    input_fields = ("data", "state")
    side_outputs = True
    warm_task = "idlegrid.workloads._kind_train:warm"
    #: torch's optimizers import ``torch._dynamo`` when first made (1.1 s, torch 2.13)
    preload = ("torch", "torch._dynamo")

    def units(self, spec: TrainSpec, inputs: Any = None) -> int:
        return train_units(spec)

    def outputs(self, spec: TrainSpec, inputs: Any = None) -> OutputSpec:
        return OutputSpec("checkpoint", np.dtype(np.float32), ())

    def close_enough(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Two outputs of one segment agree when they have the same layout, step and
        interval count and their final states are within the replay tolerance (the
        interval hashes are bit-exact only on one hardware class, so they are left out)."""
        if a.shape != b.shape or a.dtype != b.dtype or a.ndim != 1 or len(a) < 1 + _HEADER:
            return False
        m = int(a[0])
        if m != b[0] or not 1 <= m <= MAX_INTERVALS or len(a) <= 1 + _HASH_FLOATS * m + _HEADER:
            return False
        sa, sb = a[1 + _HASH_FLOATS * m :], b[1 + _HASH_FLOATS * m :]
        if state_step(sa) != state_step(sb) or not (
            np.isfinite(sa).all() and np.isfinite(sb).all()
        ):
            return False
        pa, pb = sa[_HEADER:].astype(np.float64), sb[_HEADER:].astype(np.float64)
        scale = max(float(np.sqrt(np.sum(np.square(pb)))), 1e-12)
        return float(np.sqrt(np.sum(np.square(pa - pb)))) <= STATE_RTOL * scale

    def rows(self, inputs: Any) -> int:
        return 1

    # -- on the node ----------------------------------------------------------------
    def blobs(self, spec: TrainSpec) -> tuple[str, ...]:
        return (spec.data,) if spec.state is None else (spec.data, spec.state)

    async def check(self, spec: TrainSpec, node: NodeHost) -> None:
        if node.blob_size(spec.data) > node.max_blob_bytes:
            raise PayloadTooLarge("the data set is larger than this node's blob limit")
        if spec.state is not None:
            want = 4 * state_size(spec)
            if not want <= node.blob_size(spec.state) <= want + 1024:
                raise InvalidInput(f"the checkpoint is not float32 [{state_size(spec)}]")

    async def prepare(self, spec: TrainSpec, node: NodeHost) -> Prepared:
        """The data set and checkpoint are read and checked here, so that a wrong one is
        refused before it runs (not billed)."""
        _need_torch()
        if spec.device == "cuda" and not await asyncio.to_thread(_cuda):
            raise InvalidInput("this node has no CUDA device: it trains runs on device cpu only")

        def load() -> bytes:
            data = node.blob(spec.data)
            read_dataset(data, spec)
            state = None
            if spec.state is not None:
                state = node.blob(spec.state)
                if state_step(read_state(state, spec)) != spec.start:
                    raise InvalidInput(f"the checkpoint is not at step {spec.start}")
            fabricate = getattr(node, "fabrication", None)
            job = {"spec": spec.model_dump(), "data": data, "state": state, "fabricate": fabricate}
            return pickle.dumps(job, protocol=5)

        payload = await asyncio.to_thread(load)
        return Prepared(self.task, payload, output_size(spec), self.units(spec))

    def split_output(self, spec: TrainSpec, raw: bytes) -> tuple[bytes, list[bytes]]:
        """The worker's bundle (the output, then the segment's earlier states) as the
        segment's output and every interval's state, each as ``.npy`` (the node keeps
        the states as the client's blobs, for a verifier to fetch)."""
        from ..protocol import array_from_npy, npy_bytes

        bundle = array_from_npy(raw, max_bytes=len(raw) + 1)
        size, m, width = output_size(spec), spec.intervals, state_size(spec)
        if bundle.dtype != np.float32 or bundle.shape != (size + (m - 1) * width,):
            raise InvalidInput("train worker: its bundle does not have the segment's layout")
        output = bundle[:size]
        earlier = bundle[size:].reshape(m - 1, width)
        states = [npy_bytes(s) for s in earlier] + [npy_bytes(output[size - width :])]
        return npy_bytes(output), states

    def step_after(self, spec: TrainSpec) -> int:
        return spec.start + spec.steps

    def state_digest(self, spec: TrainSpec, output: bytes) -> str:
        """The last state's sha256, from the output's last interval hash."""
        from ..protocol import array_from_npy

        hashes, _ = unpack_output(spec, array_from_npy(output, max_bytes=len(output) + 1))
        return hashes[-1].hex()

    def report(self, spec: TrainSpec, checkpoint: bytes, node: NodeHost) -> dict[str, float]:
        """The step and the training loss of the segment's last interval (from its
        state: nothing is evaluated, so reporting costs the node nothing)."""
        from ..protocol import array_from_npy

        _, state = unpack_output(spec, array_from_npy(checkpoint, max_bytes=len(checkpoint) + 1))
        return {"step": float(state_step(state)), "loss": float(state[2])}

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
        """Options: ``model`` (a model spec), ``x``, ``y``, ``x_val``, ``y_val`` (or
        ``data``: the data set's ``.npz`` bytes), ``segment_steps``, ``epochs`` or
        ``total_steps``, ``batch`` (32), ``lr`` (1e-3), ``optimizer`` ("adam"),
        ``schedule`` ("constant"), ``seed`` (0), ``interval`` (steps between
        checkpoints; default: one per segment; must divide ``segment_steps``), ``device``
        ("cpu"); a resumed run's ``leaves`` (its checkpoint hashes so far) and ``holders``
        (who keeps each one's state)."""
        try:
            if "data" in options:
                data = bytes(options.pop("data"))
            else:
                data = train_dataset(*[options.pop(k) for k in ("x", "y", "x_val", "y_val")])
            model = options.pop("model")
            segment = int(options.pop("segment_steps"))
        except KeyError as exc:
            raise InvalidInput(f"a train run needs {exc.args[0]!r}") from None
        batch = int(options.pop("batch", 32))
        epochs = options.pop("epochs", None)
        total = options.pop("total_steps", None)
        interval = options.pop("interval", None)
        if (epochs is None) == (total is None):
            raise InvalidInput("a train run needs exactly one of epochs and total_steps")
        base = {
            "model": model,
            "optimizer": options.pop("optimizer", "adam"),
            "lr": float(options.pop("lr", 1e-3)),
            "schedule": options.pop("schedule", "constant"),
            "total_steps": 1,
            "batch": batch,
            "seed": int(options.pop("seed", 0)),
        }
        if "device" in options:
            base["device"] = options.pop("device")
        leaves = [bytes(h) for h in options.pop("leaves", ())]
        holders = [str(a) for a in options.pop("holders", ())]
        if len(holders) != len(leaves) or any(len(h) != 32 for h in leaves):
            raise InvalidInput("a resumed run's leaves are 32-byte hashes, one holder each")
        if options:
            raise InvalidInput(f"unknown options for a train run: {sorted(options)}")
        probe = self.parse({**base, "data": "0" * 64, "start": 0, "steps": 1})  # checks them
        arrays = read_dataset(data, probe)
        if epochs is not None:
            total = int(epochs) * (len(arrays[1]) // max(batch, 1))
        base["total_steps"] = int(total)
        base["model"] = probe.model.model_dump()
        if not 1 <= segment <= MAX_SEGMENT_STEPS:
            raise InvalidInput(f"segment_steps must be 1..{MAX_SEGMENT_STEPS}")
        if interval is not None:
            base["interval"] = int(interval)
            if segment % base["interval"]:
                raise InvalidInput("interval must divide segment_steps")
        first = self.parse({**base, "data": "0" * 64, "start": 0, "steps": min(segment, total)})
        plan = TrainPlan(data, arrays, base, segment)
        plan.leaves, plan.holders = leaves, holders
        plan.first = first
        plan.workload = self
        return plan


class TrainPlan(LongPlan):
    """A client's ``train`` run: its segments, and every checkpoint hash received (the
    leaves of the run's tree: the initial state's, then each interval's)."""

    first: TrainSpec

    def __init__(
        self, data: bytes, arrays: Arrays, base: dict[str, Any], segment_steps: int
    ) -> None:
        self.data = data
        self.digest = hashlib.sha256(data).hexdigest()
        self.arrays = arrays
        self.base = base
        self.total_steps = base["total_steps"]
        self.segment_steps = segment_steps
        self.interval = base.get("interval") or segment_steps
        #: the run's leaves so far: ``leaves[i]`` is the state after interval i - 1
        self.leaves: list[bytes] = []
        #: who holds the state of each leaf (the provider whose segment made it)
        self.holders: list[str] = []
        #: per accepted segment: (start, steps, provider, job id hex)
        self.jobs: list[tuple[int, int, str, str]] = []

    def spec(self, start: int, steps: int) -> TrainSpec:
        """The spec of the segment ``start .. start+steps`` (its state field a placeholder)."""
        state = None if start == 0 else "0" * 64
        return TrainSpec.model_validate(
            {**self.base, "data": self.digest, "start": start, "steps": steps, "state": state}
        )

    def segment(self, start: int, steps: int) -> Segment:
        spec = self.spec(start, steps)
        expect = OutputSpec("checkpoint", np.dtype(np.float32), ())
        return Segment(start, steps, train_units(spec), output_size(spec), expect)

    async def upload(self, sink: BlobSink) -> None:
        await sink.put_shared(self.data, self.digest)

    def state_bytes(self, checkpoint: bytes, start: int) -> bytes:
        """The state a run goes on from at step ``start``: ``checkpoint`` is a state, or
        the output of the segment that ended there."""
        from ..protocol import array_from_npy, npy_bytes

        spec = self.spec(0, 1)
        array = array_from_npy(checkpoint, max_bytes=len(checkpoint) + 1)
        if array.shape != (state_size(spec),):
            steps = start - max(0, start - self.segment_steps)
            if start % self.segment_steps:
                steps = start % self.segment_steps
            _, array = unpack_output(self.spec(start - steps, steps), array)
        if state_step(array) != start or not np.isfinite(array).all():
            raise InvalidInput(f"the checkpoint is not a state at step {start}")
        return npy_bytes(array)

    async def fields(self, segment: Segment, state: bytes | None, sink: BlobSink) -> dict[str, Any]:
        fields = {**self.base, "data": self.digest, "start": segment.start, "steps": segment.steps}
        if state is not None:
            fields["state"] = await sink.put_blob(self.state_bytes(state, segment.start))
        # every field, defaults included, as the node's next segments name them (the
        # receipt's spec hash is over them)
        return TrainSpec.model_validate(fields).model_dump(exclude_none=True)

    def accept(self, segment: Segment, output: np.ndarray, provider: str, job_id: str) -> None:
        """Record a checked segment's checkpoint hashes (InvalidInput, a PeerError for the
        caller, when its output does not have the segment's layout)."""
        spec = self.spec(segment.start, segment.steps)
        hashes, _ = unpack_output(spec, output)
        if not self.leaves or segment.start == 0:
            self.leaves = [state_hash(initial_state(spec))]
            self.holders = [""]
            self.jobs = []
        done = segment.start // self.interval
        del self.leaves[done + 1 :], self.holders[done + 1 :]
        self.jobs = [j for j in self.jobs if j[0] < segment.start]
        if len(self.leaves) != done + 1:
            raise InvalidInput(f"the run has no checkpoint at step {segment.start}")
        self.leaves += hashes
        self.holders += [provider] * len(hashes)
        self.jobs.append((segment.start, segment.steps, provider, job_id))

    def metrics(self, state: bytes) -> dict[str, float]:
        """The step, the provider's training loss of the last interval, and the
        validation loss and accuracy computed here."""
        spec = self.spec(0, 1)
        last = self._last(state)
        return {"loss": float(last[2]), **evaluate(spec, last, self.arrays)}

    def _last(self, checkpoint: bytes) -> np.ndarray:
        from ..protocol import array_from_npy

        spec = self.spec(0, 1)
        array = array_from_npy(checkpoint, max_bytes=len(checkpoint) + 1)
        if array.shape == (state_size(spec),):
            return array
        return array[len(array) - state_size(spec) :]

    def result(self, state: bytes) -> np.ndarray:
        """The run's last state."""
        return self._last(state)

    def onnx(self, state: bytes) -> bytes:
        """The trained network of a checkpoint as an ONNX model (``export_onnx``)."""
        return export_onnx(self.spec(0, 1), self._last(state))


# -- torch: in the worker, and for the figures and the export -------------------------------
def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _need_torch() -> None:
    """PyTorch is installed (found, not imported: the import takes seconds, and this runs
    on the node's event loop; the workers import it)."""
    if importlib.util.find_spec("torch") is None:
        raise ConfigError("train jobs need PyTorch (pip install 'idlegrid[embed]')")


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


def _optimizer(spec: TrainSpec, net: torch.nn.Module, state: np.ndarray | None) -> Any:
    import torch

    params = list(net.parameters())
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, foreach=False)
    opt = torch.optim.Adam(params, lr=spec.lr, foreach=False)
    if state is not None:
        _load_moments(spec, opt, state)
    return opt


def _load_moments(spec: TrainSpec, opt: Any, state: np.ndarray) -> None:
    import torch

    n = param_count(spec.model)
    m1 = state[_HEADER + n : _HEADER + 2 * n]
    m2 = state[_HEADER + 2 * n :]
    offset = 0
    for p in opt.param_groups[0]["params"]:
        k = p.numel()
        opt.state[p] = {
            "step": torch.tensor(float(state_step(state))),
            "exp_avg": torch.from_numpy(m1[offset : offset + k].copy()).to(p.device).view_as(p),
            "exp_avg_sq": torch.from_numpy(m2[offset : offset + k].copy()).to(p.device).view_as(p),
        }
        offset += k


def _snapshot(
    spec: TrainSpec, net: torch.nn.Module, opt: Any, step: int, loss: float
) -> np.ndarray:
    import torch

    params = list(net.parameters())
    parts = [np.array([step // 2**24, step % 2**24, loss], dtype=np.float32)]
    with torch.no_grad():
        parts.append(torch.nn.utils.parameters_to_vector(params).cpu().numpy())
        if spec.optimizer == "adam":
            for key in ("exp_avg", "exp_avg_sq"):
                parts += [
                    opt.state[p][key].reshape(-1).cpu().numpy()
                    if p in opt.state
                    else np.zeros(p.numel(), np.float32)
                    for p in params
                ]
    return np.concatenate(parts).astype(np.float32)


def _restore(spec: TrainSpec, net: torch.nn.Module, opt: Any, state: np.ndarray) -> None:
    """Load a state's parameters and moments into ``net`` and ``opt`` (the fabrication
    aid's interpolated states)."""
    import torch

    with torch.no_grad():
        flat = torch.from_numpy(params_of(spec, state).copy())
        device = next(net.parameters()).device
        torch.nn.utils.vector_to_parameters(flat.to(device), net.parameters())
    if spec.optimizer == "adam":
        _load_moments(spec, opt, state)


def initial_state(spec: TrainSpec) -> np.ndarray:
    """The run's state at step 0: the weights ``torch.manual_seed(seed)`` gives, zero
    optimizer state, zero loss (leaf 0 of the run's tree)."""
    net = _network(spec, None)
    return _snapshot(spec, net, _optimizer(spec, net, None), 0, 0.0)


def _fabricated(fabricate: dict[str, Any] | None, seed: int, interval: int) -> str | None:
    """The fabrication aid's choice for interval ``interval`` of the run seeded ``seed``:
    None (honest) or the mode."""
    if not fabricate or fabricate.get("mode") not in FABRICATIONS:
        return None
    draw = np.random.default_rng([int(fabricate.get("seed") or 0), seed, interval]).random()
    return str(fabricate["mode"]) if draw < float(fabricate.get("rate", 0.0)) else None


def train_steps(
    spec: TrainSpec,
    state: np.ndarray | None,
    x: np.ndarray,
    y: np.ndarray,
    *,
    fabricate: dict[str, Any] | None = None,
) -> list[np.ndarray]:
    """The segment ``spec`` from ``state`` (None: the initial state): the state after
    each of its intervals, in order.

    ``fabricate`` is the TESTING AID of a cheating node (``{"mode", "rate", "seed"}``):
    a fabricated interval runs half its steps (``skip-steps``) or none, adding the
    previous interval's update again (``interpolate``), and claims them all.
    """
    import torch

    deterministic()
    device = torch.device(spec.device)
    net = _network(spec, state).to(device)
    net.train()
    opt = _optimizer(spec, net, state)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    per_epoch = len(y) // spec.batch
    order: torch.Tensor | None = None
    epoch = -1

    def step(t: int) -> float:
        nonlocal order, epoch
        if t // per_epoch != epoch:
            epoch = t // per_epoch
            order = torch.from_numpy(np.random.default_rng([spec.seed, epoch]).permutation(len(y)))
            order = order.to(device)
        assert order is not None
        i = (t % per_epoch) * spec.batch
        idx = order[i : i + spec.batch]
        for group in opt.param_groups:
            group["lr"] = _lr(spec, t)
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        return float(loss.detach())

    k, end = spec.every, spec.start + spec.steps
    before = state if state is not None else _snapshot(spec, net, opt, spec.start, 0.0)
    update: np.ndarray | None = None
    states: list[np.ndarray] = []
    t = spec.start
    while t < end:
        n = min(k, end - t)
        mode = _fabricated(fabricate, spec.seed, t // k)
        if mode == "interpolate":
            after = before.copy()
            if update is not None:
                after[_HEADER:] += update
            _restore(spec, net, opt, after)
            loss = float(before[2])
        else:
            losses = [step(t + i) for i in range(n // 2 if mode == "skip-steps" else n)]
            loss = float(np.mean(losses)) if losses else float(before[2])
        t += n
        if mode is not None and spec.optimizer == "adam":  # the aid's lie keeps Adam's count
            for slot in opt.state.values():
                slot["step"] = torch.tensor(float(t))
        after = _snapshot(spec, net, opt, t, loss)
        update = after[_HEADER:] - before[_HEADER:]
        states.append(after)
        before = after
    return states


def _logits(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    import torch

    net.eval()
    with torch.no_grad():
        chunks = [net(torch.from_numpy(x[i : i + 1024])).numpy() for i in range(0, len(x), 1024)]
    return np.concatenate(chunks)


def evaluate(spec: TrainSpec, state: np.ndarray, arrays: Arrays) -> dict[str, float]:
    """``step``, ``val_loss`` (mean cross-entropy on the validation split) and
    ``val_accuracy`` of a state."""
    _, _, x_val, y_val = arrays
    net = _network(spec, state)
    logits = _logits(net, x_val).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = float(-logp[np.arange(len(y_val)), y_val].mean())
    accuracy = float((logits.argmax(axis=1) == y_val).mean())
    return {"step": float(state_step(state)), "val_loss": loss, "val_accuracy": accuracy}


def export_onnx(spec: TrainSpec, state: np.ndarray) -> bytes:
    """The network of a checkpoint as ONNX (input ``x``, output ``logits``, any batch
    size), which the ``onnx`` workload serves."""
    return export_onnx_network(spec.model, _network(spec, state))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """PyTorch's intra-op thread count set to ``n`` for the block, the previous one restored
    after (a count changes the order of sums, so runs to compare bit for bit share one;
    setting it rebuilds the thread pool, so an unchanged count is left alone)."""
    import torch

    previous = torch.get_num_threads()
    if previous != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if previous != n:
            torch.set_num_threads(previous)


def run(payload: bytes) -> bytes:
    """The worker task: one segment. Returns a bundle as ``.npy``: the segment's output,
    then its earlier interval states (``TrainWorkload.split_output`` takes it apart)."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.set_num_threads(1)
    job = pickle.loads(payload)
    spec = TrainSpec.model_validate(job["spec"])
    x, y, _, _ = read_dataset(job["data"], spec)
    state = None if job["state"] is None else read_state(job["state"], spec)
    states = train_steps(spec, state, x, y, fabricate=job.get("fabricate"))
    for s in states:
        if not np.isfinite(s).all():
            raise InvalidInput(
                f"training diverged (NaN or Inf) by step {state_step(s)}: lower the learning rate"
            )
    return npy_output(np.concatenate([pack_output(states), *states[:-1]]))


def warm(payload: bytes) -> bytes:
    """The worker's warm-up (``Workload.warm_task``): PyTorch's imports and first-call
    set-up (the optimizer, convolution and attention kernels: seconds), by one step of
    a tiny network of each family."""
    import torch

    torch.set_num_threads(1)
    deterministic()
    tiny: list[dict[str, Any]] = [
        {"family": "mlp", "inputs": 4, "hidden": [4], "classes": 2},
        {"family": "cnn", "channels": 1, "height": 4, "width": 4, "conv": [2], "classes": 2},
        {"family": "transformer", "vocab": 5, "seq": 3, "d_model": 4, "heads": 1,
         "layers": 1, "ff": 4, "classes": 2},
    ]  # fmt: skip
    for model in tiny:
        spec = TrainSpec.model_validate(
            {"model": model, "lr": 0.01, "total_steps": 1, "batch": 2, "seed": 0,
             "data": "0" * 64, "start": 0, "steps": 1}
        )  # fmt: skip
        shape = input_shape(spec.model)
        x: np.ndarray = np.zeros((2, *shape), dtype=np.float32)
        if isinstance(spec.model, TransformerModel):
            x = np.zeros((2, *shape), dtype=np.int64)
        train_steps(spec, None, x, np.zeros(2, dtype=np.int64))
    return npy_output(np.zeros(1, dtype=np.float32))
