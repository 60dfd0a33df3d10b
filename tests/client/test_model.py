"""The client's own reading of a model: declared output, metering, and the local probe."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from idlegrid.client import ModelRejected, OutputSpec, probe, read_model
from idlegrid.workloads import train_digits_model


def _model(nodes: list[onnx.NodeProto], out: onnx.ValueInfoProto, **kw: Any) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph(nodes, "m", [x], [out], **kw)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _k_times_n() -> bytes:
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1])
    return _model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1]),
        initializer=[shape],
    )


def test_read_model_gives_the_declared_first_output_and_its_flops() -> None:
    model, _, x_test, _, _ = train_digits_model()

    spec = read_model(model)

    assert spec.output == OutputSpec("label", np.dtype(np.int64), ())
    assert spec.flops_per_row > 0 and spec.metered is None
    assert probe(spec, x_test[:5]) == 8  # one int64 label per row


def test_a_scalar_output_is_refused_when_the_model_is_read() -> None:
    scalar = _model(
        [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, []),
    )

    with pytest.raises(ModelRejected, match="scalar"):
        read_model(scalar)


def test_the_probe_refuses_a_model_without_one_row_per_input_row() -> None:
    spec = read_model(_k_times_n())

    with pytest.raises(ModelRejected, match=r"shape \(3, 1\) for 1 input row"):
        probe(spec, np.ones((4, 3), np.float32))


def test_the_probe_refuses_inputs_the_model_does_not_take() -> None:
    spec = read_model(_k_times_n())

    with pytest.raises(ModelRejected, match="does not run on these inputs"):
        probe(spec, np.ones((4, 5), np.float32))


def test_control_flow_makes_a_model_metered() -> None:
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["v_in"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, ["N", 3]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["N", 3]),
        ],
    )
    trip = helper.make_tensor("trip", TensorProto.INT64, [], [3])
    loop = helper.make_node("Loop", ["trip", "", "x"], ["looped"], body=body)
    model = _model(
        [loop, helper.make_node("Relu", ["looped"], ["y"])],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
        initializer=[trip],
    )

    spec = read_model(model)

    assert spec.metered is not None and "Loop" in spec.metered


@pytest.mark.parametrize(
    ("output", "why"),
    [
        (np.zeros((2, 3), np.int8), "dtype int8"),
        (np.zeros((2, 4), np.float32), "declares float32[N, 3]"),
        (np.zeros((2,), np.float32), "declares float32[N, 3]"),
        (np.zeros((), np.float32), "scalar"),
        (np.zeros((6, 1), np.float32), "6 output rows for 2 input rows"),
    ],
)
def test_an_output_that_is_not_what_the_model_declares_is_named(
    output: np.ndarray, why: str
) -> None:
    spec = OutputSpec("y", np.dtype(np.float32), (3,))

    wrong = spec.check(output, 2)

    assert wrong is not None and why in wrong


def test_dynamic_dims_accept_any_size() -> None:
    spec = OutputSpec("y", np.dtype(np.float32), (None, 2))

    assert spec.check(np.zeros((2, 7, 2), np.float32), 2) is None
