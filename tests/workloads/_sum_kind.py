"""A test-only kind of job, ``sum``: the row sums of a matrix sent as JSON.

It is one class, like ``onnx`` and ``embed``, and nothing else in idlegrid knows it:
the tests register it, then run it through the node's and the client's generic code.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from pydantic import Field

from idlegrid.workloads import (
    BlobSink,
    ClientHost,
    NodeHost,
    OutputSpec,
    Plan,
    Prepared,
    Spec,
    Workload,
    npy_output,
)

OUTPUT = OutputSpec("sum", np.dtype(np.float64), ())


class SumSpec(Spec):
    """A ``sum`` job: rows of numbers."""

    values: list[list[float]] = Field(min_length=1, max_length=1000)


class SumWorkload(Workload[SumSpec, np.ndarray]):
    """Row sums, float64 ``[N]``; one unit per number."""

    name = "sum"
    Spec = SumSpec
    task = "tests.workloads._sum_kind:run"
    summary = "row sums (a test-only kind)"

    def units(self, spec: SumSpec, inputs: Any = None) -> int:
        return sum(len(row) for row in spec.values)

    def outputs(self, spec: SumSpec, inputs: Any = None) -> OutputSpec:
        return OUTPUT

    def close_enough(self, a: np.ndarray, b: np.ndarray) -> bool:
        return a.shape == b.shape and bool(np.allclose(a, b))

    async def prepare(self, spec: SumSpec, node: NodeHost) -> Prepared:
        payload = pickle.dumps(spec.values)
        return Prepared(self.task, payload, len(spec.values), self.units(spec))

    async def plan(self, inputs: np.ndarray, client: ClientHost, **options: Any) -> SumPlan:
        plan = SumPlan(np.asarray(inputs, dtype=np.float64))
        plan.workload = self
        return plan


class SumPlan(Plan[np.ndarray]):
    expect = OUTPUT
    out_row_bytes = 8

    def __init__(self, inputs: np.ndarray) -> None:
        self.inputs = inputs
        self.in_row_bytes = max(1, inputs.nbytes // len(inputs))

    def units(self, part: np.ndarray) -> int:
        return int(part.size)

    async def fields(self, part: np.ndarray, sink: BlobSink) -> dict[str, Any]:
        return {"values": part.tolist()}


def run(payload: bytes) -> bytes:
    """The worker task: rows -> their sums as ``.npy``."""
    return npy_output(np.asarray(pickle.loads(payload), dtype=np.float64).sum(axis=1))


class WrongShapeSum(SumWorkload):
    """``sum`` on a node whose worker returns ``[N, 1]``, not the ``[N]`` the kind declares."""

    task = "tests.workloads._sum_kind:run_wrong_shape"


def run_wrong_shape(payload: bytes) -> bytes:
    return npy_output(np.asarray(pickle.loads(payload), dtype=np.float64).sum(axis=1)[:, None])
