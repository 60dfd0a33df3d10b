"""What the client knows about a model before it sends the first job.

The client parses the model itself, never trusting a provider's word on it:

* the FLOPs per row (the static bill) and whether the static count is exact or
  the job is metered (control flow, data-dependent shapes);
* the first output's declared dtype and its non-batch dims (onnx shape
  inference), which every provider's output must match before it is paid for;
* a probe: local onnxruntime on the first row, then the first two rows, of the
  batch. It proves that the model takes these inputs (a job that is wrong for
  the model fails here, with a message about the model, before any provider is
  paid or blamed) and that its first output has one row per input row, which
  splitting a batch across providers needs (scikit-learn exports some
  multi-output regressors as ``(k·n, 1)``: such a model is refused here). It is
  exact and costs two tiny runs, once per model and input shape.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .._exceptions import IdlegridError, ModelRejected
from ..workloads._base import OutputSpec

__all__ = ["ModelRejected", "ModelSpec", "OutputSpec", "probe", "read_model"]


@dataclass(frozen=True)
class ModelSpec:
    """A model as the client read it."""

    digest: str
    data: bytes
    flops_per_row: int
    output: OutputSpec
    #: why the static count is not exact (the job is metered), or None
    metered: str | None


def read_model(data: bytes) -> ModelSpec:
    """Parse ``data``: FLOPs per row and whether they are exact (the same function the
    nodes use, on the client's own parse), and the first output's declared type."""
    import onnx

    from ..workloads import model_cost
    from ..workloads._flops import parse_model

    proto = parse_model(data)
    cost = model_cost(proto)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # onnx raises its own classes and plain ones; declared types remain
        inferred = proto
    if not inferred.graph.output:
        raise ModelRejected("the model declares no output")
    out = inferred.graph.output[0]
    if not out.type.HasField("tensor_type"):
        raise ModelRejected(
            f"the model's first output {out.name!r} is not a tensor; export scikit-learn "
            "models with options={'zipmap': False}"
        )
    tensor = out.type.tensor_type
    from ..workloads._onnx import onnx_dtype

    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    trailing = tuple(dims[1:]) if tensor.HasField("shape") and dims else ()
    spec = OutputSpec(out.name, onnx_dtype(tensor.elem_type), trailing)
    if tensor.HasField("shape") and not dims:
        raise ModelRejected(
            f"the model's first output {out.name!r} is a scalar: it has no row per input "
            "row, so its batch cannot be split into jobs"
        )
    return ModelSpec(
        digest=hashlib.sha256(data).hexdigest(),
        data=data,
        flops_per_row=cost.flops_per_row,
        output=spec,
        metered=cost.metering,
    )


def probe(spec: ModelSpec, inputs: np.ndarray) -> int:
    """Run the model locally on the first one and two rows of ``inputs``; return the
    largest output bytes per row seen. ModelRejected if the model does not take these
    inputs or does not give one output row per input row of its declared type."""
    from ..workloads import CPU, OnnxRunner

    runner = OnnxRunner(providers=[CPU], cache_size=1, threads=1)
    per_row = 1
    for rows in sorted({1, min(2, inputs.shape[0])}):
        try:
            output = runner.run_first(spec.data, inputs[:rows], digest=spec.digest)
        except IdlegridError as exc:
            raise ModelRejected(f"the model does not run on these inputs: {exc}") from exc
        if output.ndim == 0 or output.shape[0] != rows:
            shape = tuple(output.shape)
            raise ModelRejected(
                f"the model's first output {spec.output.name!r} has shape {shape} for "
                f"{rows} input row(s): not one row per input row, so the batch cannot be "
                "split into jobs (reshape the output to [N, ...] before exporting)"
            )
        wrong = spec.output.check(output, rows)
        if wrong is not None:
            raise ModelRejected(f"the model's first output {spec.output.name!r}: {wrong}")
        per_row = max(per_row, -(-output.nbytes // rows))
    return per_row
