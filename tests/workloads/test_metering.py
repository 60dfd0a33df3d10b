"""``metering_reason``: when the static FLOP count is not exact, and which op says so."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import GraphProto, NodeProto, TensorProto, helper, numpy_helper

from idlegrid.workloads import metering_reason, model_cost, model_info

from .conftest import Digits

F = TensorProto.FLOAT


def model(
    nodes: list[NodeProto],
    initializers: dict[str, np.ndarray] | None = None,
    *,
    out: tuple[int, list[int | str | None]] = (F, ["N", 4]),
    functions: list[object] | None = None,
) -> bytes:
    """x [N, 4] float in, y out (its type and shape ``out``)."""
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", F, ["N", 4])],
        [helper.make_tensor_value_info("y", *out)],
        [numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()],
    )
    opsets = [helper.make_opsetid("", 17)]
    if functions:
        opsets.append(helper.make_opsetid("local", 1))
    m = helper.make_model(g, opset_imports=opsets, functions=functions or [])
    m.ir_version = 8
    data: bytes = m.SerializeToString()
    return data


def loop_body() -> GraphProto:
    """y ← y · 1.0001, once per trip."""
    return helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Mul", ["acc_in", "k"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", F, ["N", 4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", F, ["N", 4]),
        ],
        [numpy_helper.from_array(np.array(1.0001, np.float32), "k")],
    )


def loop_model() -> bytes:
    return model(
        [helper.make_node("Loop", ["trips", "", "x"], ["y"], body=loop_body(), name="spin")],
        {"trips": np.array(1000, np.int64)},
    )


def test_a_plain_graph_needs_no_metering() -> None:
    data = model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        {"w": np.zeros((4, 3), np.float32)},
        out=(F, ["N", 3]),
    )

    assert metering_reason(data) is None
    assert model_cost(data).flops_per_row == 2 * 4 * 3


def test_a_loop_needs_metering_and_the_reason_names_it() -> None:
    reason = metering_reason(loop_model())

    assert reason is not None and reason.startswith("Loop") and "'spin'" in reason


def test_an_if_is_control_flow_too() -> None:
    # Prepare: an If on the data whose then-branch holds a Loop
    inner = helper.make_node("Loop", ["trips", "", "x"], ["z"], body=loop_body(), name="deep")
    then = helper.make_graph([inner], "then", [], [helper.make_tensor_value_info("z", F, ["N", 4])])
    plain = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["z2"])],
        "else",
        [],
        [helper.make_tensor_value_info("z2", F, ["N", 4])],
    )
    data = model(
        [
            helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
            helper.make_node("Cast", ["s"], ["c"], to=TensorProto.BOOL),
            helper.make_node("ReduceMax", ["c"], ["cond"], keepdims=0),
            helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=plain),
        ],
        {"trips": np.array(3, np.int64)},
    )

    reason = metering_reason(data)

    assert reason is not None and reason.startswith("If")  # the outer one is met first


def test_control_flow_in_a_local_function_is_found() -> None:
    fn = helper.make_function(
        "local",
        "Spin",
        ["a", "n"],
        ["b"],
        [helper.make_node("Loop", ["n", "", "a"], ["b"], body=loop_body(), name="hidden")],
        [helper.make_opsetid("", 17)],
    )
    data = model(
        [helper.make_node("Spin", ["x", "trips"], ["y"], domain="local")],
        {"trips": np.array(5, np.int64)},
        functions=[fn],
    )

    reason = metering_reason(data)

    assert reason is not None and "Loop" in reason and "function 'Spin'" in reason


_to_float = helper.make_node("Cast", ["yi"], ["y"], to=F)


@pytest.mark.parametrize(
    ("nodes", "op"),
    [
        ([helper.make_node("NonZero", ["x"], ["yi"]), _to_float], "NonZero"),
        (
            [  # the shape comes from the data
                helper.make_node("Cast", ["x"], ["xi"], to=TensorProto.INT64),
                helper.make_node("ReduceMax", ["xi"], ["n"], keepdims=1, axes=[0, 1]),
                helper.make_node("Reshape", ["n", "one"], ["n1"]),
                helper.make_node("Concat", ["n1", "n1"], ["shape"], axis=0),
                helper.make_node("Expand", ["x", "shape"], ["y"]),
            ],
            "Expand",
        ),
    ],
    ids=["nonzero", "expand-by-data"],
)
def test_a_size_that_depends_on_the_data_needs_metering(nodes: list[NodeProto], op: str) -> None:
    data = model(nodes, {"one": np.array([1], np.int64)}, out=(F, [None, None]))

    reason = metering_reason(data)

    assert reason is not None and reason.startswith(op) and "depends on the data" in reason


def test_a_size_fixed_by_constants_needs_none() -> None:
    data = model(
        [helper.make_node("Expand", ["x", "shape"], ["y"])],
        {"shape": np.array([3, 1, 4], np.int64)},
        out=(F, [3, "N", 4]),
    )

    assert metering_reason(data) is None
    assert model_cost(data).flops_per_row == 3 * 4  # exact: one per element written


def test_the_digits_models_need_no_metering(logreg: Digits, mlp: Digits) -> None:
    for digits in (logreg, mlp):
        assert metering_reason(digits.model) is None
        assert model_info(digits.model).metering is None


def test_model_info_carries_the_reason() -> None:
    info = model_info(loop_model())

    assert info.metering is not None and info.metering.startswith("Loop")
