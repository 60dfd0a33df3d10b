"""The ``onnx`` workload: run any ONNX model in onnxruntime on a batch of rows.

A job is a model (bytes, named by their sha256) and its inputs (numpy arrays whose
first dimension is the batch). ``OnnxRunner`` keeps a bounded LRU of sessions keyed
by the model's sha256 hex digest, picks CUDA when onnxruntime offers it, checks the
inputs against the model's declared shapes and dtypes before running, and raises
only idlegrid errors. It never loads a model that references external data (files):
whoever calls it checks that first, and it checks again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from .._exceptions import ConfigError, InvalidInput
from ._errors import translate_onnx
from ._external import refuse_external_data
from ._flops import graph_inputs, model_cost, parse_model

__all__ = [
    "CPU",
    "CUDA",
    "ModelInfo",
    "OnnxRunner",
    "TensorSpec",
    "model_info",
    "select_providers",
]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

Array = npt.NDArray[Any]
Inputs = Array | Mapping[str, Array]

# onnxruntime's type strings for the tensor types a job may feed
_ORT_DTYPES: dict[str, np.dtype[Any]] = {
    f"tensor({name})": np.dtype(dtype)
    for name, dtype in {
        "float": np.float32,
        "double": np.float64,
        "float16": np.float16,
        "int8": np.int8,
        "int16": np.int16,
        "int32": np.int32,
        "int64": np.int64,
        "uint8": np.uint8,
        "uint16": np.uint16,
        "uint32": np.uint32,
        "uint64": np.uint64,
        "bool": np.bool_,
        "string": np.object_,
    }.items()
}


@dataclass(frozen=True)
class TensorSpec:
    """A model input as declared: name, shape (None for a symbolic dim) and numpy dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class ModelInfo:
    """What a client or provider needs to know about a model before running it."""

    sha256: str
    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...]
    opset: int
    flops_per_row: int
    #: why the static count is not exact and a job must be metered; None when it is
    metering: str | None = None


def model_info(model: bytes) -> ModelInfo:
    """Inputs, outputs, default-domain opset, FLOPs per row and metering of ``model``."""
    proto = parse_model(model)
    inputs = []
    for value in graph_inputs(proto.graph):
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        inputs.append(TensorSpec(value.name, shape, onnx_dtype(tensor.elem_type)))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    cost = model_cost(proto)
    return ModelInfo(
        sha256=hashlib.sha256(model).hexdigest(),
        inputs=tuple(inputs),
        output_names=tuple(o.name for o in proto.graph.output),
        opset=opset,
        flops_per_row=cost.flops_per_row,
        metering=cost.metering,
    )


def onnx_dtype(elem_type: int) -> np.dtype[Any]:
    """The numpy dtype of an ONNX tensor element type."""
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"unsupported ONNX element type {elem_type}") from exc


def select_providers(
    override: Sequence[str] | None = None, *, available: Sequence[str] | None = None
) -> list[str]:
    """Execution providers to use: ``override`` if given, else CUDA then CPU, else CPU.

    ``available`` defaults to ``onnxruntime.get_available_providers()``; a provider
    in ``override`` that is not available raises ``ConfigError``.
    """
    have = list(ort.get_available_providers() if available is None else available)
    if override is not None:
        chosen = list(dict.fromkeys(override))
        missing = [p for p in chosen if p not in have]
        if not chosen or missing:
            raise ConfigError(
                f"execution providers {missing or '[]'} are not available here; have {have}"
            )
        return chosen
    return [CUDA, CPU] if CUDA in have else [CPU]


#: onnxruntime's session option for its thread pool's busy-wait between runs
SPINNING = "session.intra_op.allow_spinning"


def session_options(threads: int) -> ort.SessionOptions:
    """Options for a session that runs strangers' jobs: ``threads`` intra-op threads
    (0: one per core, onnxruntime's choice), errors only in the log (they reach the
    caller as exceptions), and no spinning.

    By default onnxruntime's pool threads keep spinning after a run, waiting for the
    next; on a node that bills by the CPU time of the worker (every thread counted),
    that wait would be billed to the job before it. On a model of 64 x 256 x 10 run
    with 2 threads every 2 ms, it made 2.6 ms of CPU a run against 0.49 ms without
    (back to back, runs take 5-10 % longer without it: the price of honest metering)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.add_session_config_entry(SPINNING, "0")
    return options


@dataclass(frozen=True)
class _Loaded:
    sha256: str
    session: ort.InferenceSession
    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...]


class OnnxRunner:
    """Runs ONNX models from bytes in onnxruntime, caching up to ``cache_size`` sessions."""

    def __init__(
        self,
        *,
        providers: Sequence[str] | None = None,
        cache_size: int = 8,
        max_elements: int = 1 << 26,
        threads: int = 0,
    ) -> None:
        if cache_size < 1 or max_elements < 1 or threads < 0:
            raise InvalidInput("cache_size and max_elements must be positive, threads >= 0")
        self.providers = select_providers(providers)
        self.cache_size = cache_size
        self.max_elements = max_elements
        self.threads = threads
        self._sessions: OrderedDict[str, _Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def session(self, model: bytes) -> ort.InferenceSession:
        """The onnxruntime session for ``model``, loaded once while it stays in the cache."""
        return self._load(model).session

    def cached(self) -> list[str]:
        """sha256 hex digests of the cached models, least recently used first."""
        with self._lock:
            return list(self._sessions)

    def run(self, model: bytes, inputs: Inputs, *, digest: str | None = None) -> list[Array]:
        """Run ``model`` on ``inputs`` (an array for a one-input model, or name -> array).

        Returns every output, in the model's order, as numpy arrays. A caller that
        already knows the model's sha256 passes it as ``digest`` to skip hashing.
        """
        return self._run(model, inputs, digest, first_only=False)

    def run_first(self, model: bytes, inputs: Inputs, *, digest: str | None = None) -> Array:
        """The first output of ``run`` (the others are not computed)."""
        return self._run(model, inputs, digest, first_only=True)[0]

    def _run(
        self, model: bytes, inputs: Inputs, digest: str | None, *, first_only: bool
    ) -> list[Array]:
        loaded = self._load(model, digest)
        feeds = self._feeds(loaded, inputs)
        names = list(loaded.output_names[:1] if first_only else loaded.output_names)
        with translate_onnx("the model failed to run"):
            outputs = loaded.session.run(names, feeds)
        return [np.asarray(out) for out in outputs]

    def _load(self, model: bytes, digest: str | None = None) -> _Loaded:
        if not isinstance(model, bytes) or not model:
            raise InvalidInput("an ONNX model must be non-empty bytes")
        if digest is None:
            digest = hashlib.sha256(model).hexdigest()
        with self._lock:
            if digest in self._sessions:
                self._sessions.move_to_end(digest)
                return self._sessions[digest]
        loaded = self._open(model, digest)
        with self._lock:
            self._sessions[digest] = loaded
            self._sessions.move_to_end(digest)
            while len(self._sessions) > self.cache_size:
                self._sessions.popitem(last=False)
        return loaded

    def _open(self, model: bytes, digest: str) -> _Loaded:
        with translate_onnx("invalid ONNX model"):
            proto = onnx.load_model_from_string(model)
        refuse_external_data(proto)  # the last line: a relative path would read our files
        del proto
        options = session_options(self.threads)
        with translate_onnx("invalid ONNX model"):
            session = ort.InferenceSession(model, options, providers=self.providers)
        inputs = []
        for arg in session.get_inputs():
            if arg.type not in _ORT_DTYPES:
                raise InvalidInput(f"input {arg.name!r} has type {arg.type}; only tensors are fed")
            shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
            inputs.append(TensorSpec(arg.name, shape, _ORT_DTYPES[arg.type]))
        for arg in session.get_outputs():
            if not arg.type.startswith("tensor("):
                raise InvalidInput(
                    f"output {arg.name!r} is {arg.type}, not a tensor; export scikit-learn "
                    "models with options={'zipmap': False}"
                )
        names = tuple(arg.name for arg in session.get_outputs())
        return _Loaded(digest, session, tuple(inputs), names)

    def _feeds(self, loaded: _Loaded, inputs: Inputs) -> dict[str, Array]:
        specs = {spec.name: spec for spec in loaded.inputs}
        if isinstance(inputs, Mapping):
            given = dict(inputs)
        elif len(loaded.inputs) == 1:
            given = {loaded.inputs[0].name: inputs}
        else:
            raise InvalidInput(
                f"the model has {len(loaded.inputs)} inputs {sorted(specs)}; "
                "pass a dict name -> array"
            )
        if set(given) != set(specs):
            raise InvalidInput(f"the model's inputs are {sorted(specs)}, got {sorted(given)}")
        feeds = {name: _check(specs[name], array) for name, array in given.items()}
        rows = {array.shape[0] for array in feeds.values()}
        if len(rows) > 1:
            raise InvalidInput(f"inputs disagree on the number of rows: {sorted(rows)}")
        total = sum(array.size for array in feeds.values())
        if total > self.max_elements:
            raise InvalidInput(
                f"inputs hold {total} elements, more than the {self.max_elements} allowed"
            )
        return feeds


def _check(spec: TensorSpec, value: object) -> Array:
    """``value`` as a contiguous array of ``spec``'s dtype, or InvalidInput saying what is wrong."""
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    declared = (
        "[" + ", ".join("N" if i == 0 else str(d or "?") for i, d in enumerate(spec.shape)) + "]"
    )
    if not spec.shape:
        raise InvalidInput(f"input {spec.name!r} is a scalar; inputs need a batch dim")
    if array.ndim != len(spec.shape):
        raise InvalidInput(
            f"input {spec.name!r} expects rank {len(spec.shape)} {declared}, "
            f"got shape {array.shape}"
        )
    if array.shape[0] == 0:
        raise InvalidInput(f"input {spec.name!r} is an empty batch (0 rows)")
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if want is not None and want != got:
            what = "rows" if axis == 0 else f"dim {axis}"
            raise InvalidInput(
                f"input {spec.name!r} expects {declared}, got shape {array.shape} "
                f"({what}: expected {want}, got {got})"
            )
    if array.dtype != spec.dtype:
        ok = spec.dtype == np.object_ and array.dtype.kind in "OU"
        if not ok and not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
            raise InvalidInput(f"input {spec.name!r} expects {spec.dtype}, got {array.dtype}")
        array = array.astype(spec.dtype)
    return np.ascontiguousarray(array)
