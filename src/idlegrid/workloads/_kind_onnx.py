"""The ``onnx`` kind: run any ONNX model on rows, billed by the FLOPs its graph counts.

Spec: ``model`` (the sha256 of a model uploaded as a blob) and exactly one of
``input_npy`` (base64 ``.npy``) and ``input_blob`` (the sha256 of an uploaded
``.npy``). The job returns the model's first output, one row per input row.

Units: ``flops_per_row · rows`` (``_flops.py``), counted by the client and the
node each on its own parse of the model; a model whose count is not exact
(control flow, data-dependent shapes) is metered: billed the worker's CPU time,
at least the static count and at most the job's ``max_units``.

Tolerance: two honest runs of a float model differ by the order in which a
kernel sums (threads, SIMD width, execution provider). ``close_enough`` is
``np.allclose`` with ``RTOL``/``ATOL`` on floats and exact equality on integers
and bools. Calibrated (``idlegrid.verify.calibrate``) on the digits MLP with 1, 2
and 4 onnxruntime threads and in jobs of 7 rows: the outputs were bit-identical;
MiniLM, a 6-layer transformer, differed by at most 7.5e-8 (embed). A float32 sum
of n terms in another order differs by about sqrt(n)·6e-8 relative (4e-6 for
n = 4096, other CPUs' SIMD widths included), so ``RTOL`` = 1e-4 leaves a margin of
25x there and over 1000x over what was measured; ``ATOL`` = 1e-5 covers values
near zero, where a relative bound means nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field, StringConstraints, model_validator

from .._exceptions import InvalidInput, PayloadTooLarge
from ._base import BlobSink, ClientHost, NodeHost, OutputSpec, Plan, Prepared, Spec, Workload

__all__ = [
    "ATOL",
    "METERED_BUDGET_S",
    "RTOL",
    "THREADS_ENV",
    "OnnxSpec",
    "OnnxWorkload",
    "allclose",
    "worker_threads",
]

#: the environment variable a node sets for its workers: onnxruntime threads per job
THREADS_ENV = "IDLEGRID_THREADS"
#: the tolerance of two honest float results (see the module docstring)
RTOL = 1e-4
ATOL = 1e-5
#: a metered job's default budget: this many seconds of the provider's CPU (at most
#: its job time limit), billed at its advertised units_per_cpu_s
METERED_BUDGET_S = 0.1
#: inline arrays up to this size (base64 characters) are parsed on the event loop:
#: a thread hop costs more than parsing them
INLINE_PARSE_CHARS = 64 * 2**10

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
_SHA256 = re.compile(r"[0-9a-f]{64}")


class OnnxSpec(Spec):
    """An ``onnx`` job: a model and one input array."""

    model: Sha256Hex = Field(description="sha256 of the ONNX model (an uploaded blob)")
    input_npy: str | None = Field(None, description="base64 of an .npy array (rows)")
    input_blob: Sha256Hex | None = Field(None, description="sha256 of an uploaded .npy input")

    @model_validator(mode="after")
    def _one_input(self) -> OnnxSpec:
        if (self.input_npy is None) == (self.input_blob is None):
            raise ValueError("an onnx job needs exactly one of input_npy and input_blob")
        return self


def allclose(a: np.ndarray, b: np.ndarray, *, rtol: float = RTOL, atol: float = ATOL) -> bool:
    """Same shape and dtype, and close: floats within ``rtol``/``atol`` (NaN never
    agrees), everything else equal."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=False))
    return bool(np.array_equal(a, b))


class OnnxWorkload(Workload[OnnxSpec, np.ndarray]):
    """Any ONNX model on rows (an ``np.ndarray`` whose first dim is the batch)."""

    name = "onnx"
    Spec = OnnxSpec
    task = "idlegrid.workloads._kind_onnx:run"
    summary = "run an ONNX model (an uploaded blob) on rows; its first output, row by row"
    input_fields = ("input_npy", "input_blob")

    def input_digest(self, inputs: Mapping[str, Any]) -> bytes:
        """The sha256 of the input ``.npy`` bytes: a blob's name, or of the inline bytes."""
        blob = inputs.get("input_blob")
        if isinstance(blob, str) and len(blob) == 64:
            return bytes.fromhex(blob)
        inline = inputs.get("input_npy")
        if isinstance(inline, str):
            return hashlib.sha256(base64.b64decode(inline)).digest()
        return super().input_digest(inputs)

    # -- pure functions ---------------------------------------------------------------
    def units(self, spec: OnnxSpec, inputs: Any) -> int:
        """``inputs``: (flops_per_row of the model, rows of the job)."""
        flops_per_row, rows = inputs
        return int(flops_per_row) * int(rows)

    def outputs(self, spec: OnnxSpec, inputs: Any) -> OutputSpec:
        """``inputs``: the model as the client read it (``ModelSpec``)."""
        output: OutputSpec = inputs.output
        return output

    def close_enough(self, a: np.ndarray, b: np.ndarray) -> bool:
        return allclose(a, b)

    # -- on the node ----------------------------------------------------------------
    def royalty_model(self, spec: OnnxSpec) -> bytes | None:
        return bytes.fromhex(spec.model)

    def royalty_model_of(self, fields: Mapping[str, Any]) -> bytes | None:
        model = fields.get("model")
        if isinstance(model, str) and _SHA256.fullmatch(model):
            return bytes.fromhex(model)
        return None

    def blobs(self, spec: OnnxSpec) -> tuple[str, ...]:
        return (spec.model,) if spec.input_blob is None else (spec.model, spec.input_blob)

    async def check(self, spec: OnnxSpec, node: NodeHost) -> None:
        limit = node.max_model_bytes
        if not node.model_known(spec.model) and node.blob_size(spec.model) > limit:
            raise PayloadTooLarge(f"model larger than {limit} bytes, this node's limit")
        if spec.input_blob is not None:
            node.blob_size(spec.input_blob)  # BlobNotFound if it is not there

    async def prepare(self, spec: OnnxSpec, node: NodeHost) -> Prepared:
        """A model whose FLOP count is not exact is metered on a node that meters, and
        refused (naming the op) on one that does not. Parsing and encoding run in a
        thread, small inline inputs excepted."""
        inline = spec.input_blob is None and len(spec.input_npy or "") <= INLINE_PARSE_CHARS
        array = _input(spec, node) if inline else await asyncio.to_thread(_input, spec, node)
        if array.ndim < 1 or array.shape[0] < 1:
            raise InvalidInput("input must have at least one row")
        cost = await node.model_cost(spec.model)
        if cost.metering is not None and not node.metered:
            raise InvalidInput(
                f"this node runs only models whose FLOP count is exact: {cost.metering}"
            )
        _check_input(cost.inputs, array)  # here, so that a wrong input is not billed
        path = node.blob_path(spec.model)
        job = {"model": spec.model, "path": path, "input": array}
        if inline:
            payload = pickle.dumps(job, protocol=5)
        else:
            payload = await asyncio.to_thread(pickle.dumps, job, 5)
        rows = int(array.shape[0])
        units = self.units(spec, (cost.flops_per_row, rows))
        return Prepared(self.task, payload, rows, units, cost.metering is not None)

    # -- on the client ----------------------------------------------------------------
    async def plan(self, inputs: np.ndarray, client: ClientHost, **options: Any) -> OnnxPlan:
        """Options: ``model`` (a path, bytes, or the sha256 of a model a provider holds),
        ``max_units`` and ``budget_s`` (a metered job's budget).

        Before the first job the model is read and run here on one and two rows
        (``idlegrid.client._model``): a job that is wrong for the model fails at once."""
        from ..client._model import probe, read_model

        model = options.pop("model")
        max_units, budget_s = options.pop("max_units", None), options.pop("budget_s", None)
        if options:
            raise InvalidInput(f"unknown options for an onnx batch: {sorted(options)}")
        array = np.asarray(inputs)
        if array.ndim < 1 or array.shape[0] == 0:
            raise InvalidInput("inputs must have at least one row")
        if max_units is not None and max_units < 1:
            raise InvalidInput("max_units must be positive")
        if budget_s is not None and not budget_s > 0:
            raise InvalidInput("budget_s must be positive")
        spec = await _load_model(client, model, read_model)
        key = ("probe", spec.digest, array.dtype.str, tuple(array.shape[1:]))
        out_row: int | None = client.memo.get(key)
        if out_row is None:
            out_row = await asyncio.to_thread(probe, spec, array[:2])
            client.memo[key] = out_row
        plan = OnnxPlan(spec, array, out_row, max_units=max_units, budget_s=budget_s)
        plan.workload = self
        return plan


class OnnxPlan(Plan[np.ndarray]):
    """A client's onnx batch: the model (read here), the rows, and the metered budget."""

    def __init__(
        self,
        model: Any,
        inputs: np.ndarray,
        out_row_bytes: int,
        *,
        max_units: int | None = None,
        budget_s: float | None = None,
    ) -> None:
        self.model = model
        self.inputs = inputs
        self.expect = model.output
        self.metered = model.metered
        self.in_row_bytes = max(1, inputs.nbytes // max(1, inputs.shape[0]))
        self.out_row_bytes = out_row_bytes
        self._fixed = max_units
        self._budget_s = budget_s

    def eligible(self, limits: Any) -> bool:
        return self.metered is None or bool(limits.metered)

    def units(self, part: np.ndarray) -> int:
        flops: int = self.model.flops_per_row
        return flops * int(part.shape[0])

    def max_units(self, part: np.ndarray, limits: Any) -> int:
        floor = self.units(part)
        if self.metered is None:
            return floor
        if self._fixed is not None:
            return max(floor, self._fixed)
        seconds = min(self._budget_s or METERED_BUDGET_S, float(limits.job_timeout_s))
        return max(floor, math.ceil(seconds * float(limits.units_per_cpu_s)))

    async def upload(self, sink: BlobSink) -> None:
        await sink.put_shared(self.model.data, self.model.digest)

    async def fields(self, part: np.ndarray, sink: BlobSink) -> dict[str, Any]:
        from ..protocol import npy_bytes

        raw = npy_bytes(part)
        if len(raw) <= sink.inline_room():
            return {"model": self.model.digest, "input_npy": base64.b64encode(raw).decode()}
        return {"model": self.model.digest, "input_blob": await sink.put_blob(raw)}


async def _load_model(client: ClientHost, model: str | Path | bytes, read: Any) -> Any:
    """The model as the client reads it (``ModelSpec``), once per model."""
    if isinstance(model, bytes):
        data = model
    elif isinstance(model, str) and len(model) == 64 and set(model) <= set("0123456789abcdef"):
        if ("model", model) in client.memo:
            return client.memo["model", model]
        data = await client.fetch_blob(model)
    else:
        path = Path(model)
        if not path.is_file():
            raise InvalidInput(f"model file not found: {path}")
        data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if ("model", digest) not in client.memo:
        client.memo["model", digest] = await asyncio.to_thread(read, data)
    return client.memo["model", digest]


def _input(spec: OnnxSpec, node: NodeHost) -> Any:
    from ..protocol import array_from_npy

    raw = node.blob(spec.input_blob) if spec.input_blob is not None else spec.input_npy or ""
    return array_from_npy(raw, max_bytes=node.max_blob_bytes)


def _check_input(inputs: tuple[tuple[str, tuple[int | None, ...], str], ...], array: Any) -> None:
    """InvalidInput, before the job runs, for an input the model cannot take.

    The worker checks the same (``OnnxRunner``); a job refused here is not billed.
    """
    if len(inputs) != 1:
        names = sorted(name for name, _, _ in inputs)
        raise InvalidInput(f"the model has {len(inputs)} inputs {names}; a job feeds one array")
    name, shape, dtype = inputs[0]
    declared = "[" + ", ".join("N" if i == 0 else str(d or "?") for i, d in enumerate(shape)) + "]"
    if array.ndim != len(shape):
        raise InvalidInput(
            f"input {name!r} expects rank {len(shape)} {declared}, got shape {array.shape}"
        )
    for axis, (want, got) in enumerate(zip(shape, array.shape, strict=True)):
        if want is not None and want != got:
            what = "rows" if axis == 0 else f"dim {axis}"
            raise InvalidInput(
                f"input {name!r} expects {declared}, got shape {array.shape} "
                f"({what}: expected {want}, got {got})"
            )
    want_dtype = np.dtype(dtype)
    if array.dtype != want_dtype and not np.can_cast(array.dtype, want_dtype, "same_kind"):
        raise InvalidInput(f"input {name!r} expects {want_dtype}, got {array.dtype}")


# -- in the worker ------------------------------------------------------------------------
def worker_threads() -> int:
    """onnxruntime threads per job in this worker (the node's ``threads``; default 1)."""
    try:
        return max(1, int(os.environ.get(THREADS_ENV, "1")))
    except ValueError:
        return 1


_models: dict[str, bytes] = {}
_runner: Any = None


def run(payload: bytes) -> bytes:
    """The worker task: {"model": sha256, "path": file or None, "input": array} -> the
    first output as ``.npy``. Models and the session stay cached between jobs."""
    global _runner
    from ._base import npy_output
    from ._onnx import OnnxRunner

    job = pickle.loads(payload)
    model = _models.get(job["model"])
    if model is None:
        if job["path"] is None:
            raise FileNotFoundError("model blob has no local path")
        model = Path(job["path"]).read_bytes()
        if len(_models) > 16:
            _models.clear()
        _models[job["model"]] = model
    if _runner is None:
        _runner = OnnxRunner(threads=worker_threads())
    return npy_output(_runner.run_first(model, job["input"], digest=job["model"]))
