"""FLOPs counted from the graph: exact numbers on hand-built graphs, and real models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from idlegrid import InvalidInput
from idlegrid.workloads import compute_units, count_flops, model_info

from .conftest import Digits

F = TensorProto.FLOAT


def build(
    nodes: list[Any],
    inputs: list[tuple[str, list[Any]]],
    outputs: list[tuple[str, int]],
    initializers: dict[str, np.ndarray] | None = None,
    *,
    ml_opset: int | None = None,
) -> bytes:
    """A model: inputs as (name, shape), outputs as (name, rank); inference does the rest."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(name, F, shape) for name, shape in inputs],
        [helper.make_tensor_value_info(name, F, [None] * rank) for name, rank in outputs],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in (initializers or {}).items()],
    )
    opsets = [helper.make_opsetid("", 17)]
    if ml_opset is not None:
        opsets.append(helper.make_opsetid("ai.onnx.ml", ml_opset))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


def zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def test_matmul_add_relu_by_hand() -> None:
    model = build(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        [("x", ["N", 4])],
        [("y", 2)],
        {"w": zeros(4, 3), "b": zeros(3)},
    )
    # MatMul 2·K·elements(Y) = 2·4·3; Add 3; Relu 3
    assert count_flops(model) == 24 + 3 + 3


def test_gemm_by_hand() -> None:
    model = build(
        [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1)],
        [("x", [None, 5])],
        [("y", 2)],
        {"w": zeros(3, 5), "c": zeros(3)},
    )
    # 2·M·N·K + M·N = 2·1·3·5 + 3
    assert count_flops(model) == 33


def test_conv_by_hand() -> None:
    model = build(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
        [("x", ["N", 3, 8, 8])],
        [("y", 4)],
        {"w": zeros(4, 3, 3, 3), "b": zeros(4)},
    )
    # 2 · Cin/group · kH·kW · Cout · Hout·Wout + bias = 2·3·9·4·64 + 4·64
    assert count_flops(model) == 13_824 + 256


def test_grouped_conv_by_hand() -> None:
    model = build(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=2)],
        [("x", ["N", 4, 6, 6])],
        [("y", 4)],
        {"w": zeros(4, 2, 3, 3)},
    )
    # Cin/group = 2, output 4×4: 2·2·9·4·16
    assert count_flops(model) == 2_304


@pytest.mark.parametrize(
    ("node", "shape", "expected"),
    [
        (helper.make_node("Softmax", ["x"], ["y"], axis=-1), [1, 10], 5 * 10),
        (helper.make_node("ReduceSum", ["x"], ["y"], keepdims=1), [1, 6], 6),
        (
            helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
            [1, 1, 4, 4],
            4 * 4,
        ),
        (helper.make_node("GlobalAveragePool", ["x"], ["y"]), [1, 2, 4, 4], 32),
        (helper.make_node("Sigmoid", ["x"], ["y"]), [1, 7], 7),
        # not in the table: the floor, one per output element
        (helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 1]), [1, 2, 3], 6),
    ],
)
def test_table_rows(node: Any, shape: list[int], expected: int) -> None:
    assert count_flops(build([node], [("x", shape)], [("y", len(shape))])) == expected


def test_layer_norm_counts_a_few_per_element() -> None:
    model = build(
        [helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1)],
        [("x", ["N", 8])],
        [("y", 2)],
        {"s": zeros(8), "b": zeros(8)},
    )
    assert count_flops(model) == 8 * 8


def test_batch_is_one_row_and_units_scale_linearly(mlp: Digits) -> None:
    flops = count_flops(mlp.model)
    # 64 → 64 → 10: the two matmuls alone are 2·64·64 + 2·64·10
    assert flops >= 2 * 64 * 64 + 2 * 64 * 10
    assert [compute_units(flops, rows) for rows in (1, 2, 450)] == [flops, 2 * flops, 450 * flops]


def test_digits_models_by_the_table(logreg: Digits, mlp: Digits) -> None:
    # LinearClassifier: 2·640 coefficients + 10 intercepts; Normalizer: 10 outputs
    assert count_flops(logreg.model) == 2 * 640 + 10 + 10
    info = model_info(mlp.model)
    assert info.flops_per_row == count_flops(mlp.model) > 0
    assert info.inputs[0].name == "input" and info.inputs[0].shape == (None, 64)
    assert info.inputs[0].dtype == np.float32
    assert info.output_names == ("label", "probabilities")
    assert info.opset >= 13 and len(info.sha256) == 64


@pytest.mark.parametrize("zipmap", [True, False])
def test_random_forest_counts_trees_times_depth(logreg: Digits, zipmap: bool) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0)
    forest.fit(logreg.x_train, logreg.y_train)
    options = None if zipmap else {id(forest): {"zipmap": False}}
    model = convert_sklearn(
        forest, initial_types=[("input", FloatTensorType([None, 64]))], options=options
    ).SerializeToString()
    depth = max(tree.tree_.max_depth for tree in forest.estimators_)
    flops = count_flops(model)
    assert 5 * depth <= flops <= 5 * depth + 10  # + Cast and ZipMap, when present


def test_classic_tree_ensemble_by_hand() -> None:
    # tree 0: 0 → (1 leaf, 2 → (3 leaf, 4 leaf)), depth 2; tree 1: 0 → (1 leaf, 2 leaf), depth 1
    node = helper.make_node(
        "TreeEnsembleRegressor",
        ["x"],
        ["y"],
        domain="ai.onnx.ml",
        nodes_treeids=[0, 0, 0, 0, 0, 1, 1, 1],
        nodes_nodeids=[0, 1, 2, 3, 4, 0, 1, 2],
        nodes_modes=[
            "BRANCH_LEQ",
            "LEAF",
            "BRANCH_LEQ",
            "LEAF",
            "LEAF",
            "BRANCH_LEQ",
            "LEAF",
            "LEAF",
        ],
        nodes_featureids=[0, 0, 1, 0, 0, 2, 0, 0],
        nodes_values=[0.5, 0, 0.5, 0, 0, 0.5, 0, 0],
        nodes_truenodeids=[1, 0, 3, 0, 0, 1, 0, 0],
        nodes_falsenodeids=[2, 0, 4, 0, 0, 2, 0, 0],
        target_ids=[0, 0, 0, 0, 0],
        target_nodeids=[1, 3, 4, 1, 2],
        target_treeids=[0, 0, 0, 1, 1],
        target_weights=[1.0, 2.0, 3.0, 4.0, 5.0],
        n_targets=1,
    )
    model = build([node], [("x", ["N", 3])], [("y", 2)], ml_opset=3)
    assert count_flops(model) == 2 * 2


def test_tree_ensemble_opset5_by_hand() -> None:
    # nodes are branches only: 0 → (leaf 0, node 1 → (leaf 1, leaf 2)); 2 → (leaf 3, leaf 4)
    node = helper.make_node(
        "TreeEnsemble",
        ["x"],
        ["y"],
        domain="ai.onnx.ml",
        tree_roots=[0, 2],
        nodes_featureids=[0, 1, 2],
        nodes_splits=numpy_helper.from_array(np.array([0.5, 0.5, 0.5], np.float32)),
        nodes_modes=numpy_helper.from_array(np.zeros(3, np.uint8)),
        nodes_truenodeids=[0, 1, 3],
        nodes_trueleafs=[1, 1, 1],
        nodes_falsenodeids=[1, 2, 4],
        nodes_falseleafs=[0, 1, 1],
        leaf_targetids=[0, 0, 0, 0, 0],
        leaf_weights=numpy_helper.from_array(np.arange(5, dtype=np.float32)),
        n_targets=1,
        aggregate_function=1,
    )
    model = build([node], [("x", ["N", 3])], [("y", 2)], ml_opset=5)
    assert count_flops(model) == 2 * 2


def test_dynamic_dims_other_than_batch_are_refused() -> None:
    relu = [helper.make_node("Relu", ["x"], ["y"])]
    with pytest.raises(InvalidInput, match="static shapes except the batch dim"):
        count_flops(build(relu, [("x", ["N", "features"])], [("y", 2)]))
    with pytest.raises(InvalidInput, match="fixed batch of 4"):
        count_flops(build(relu, [("x", [4, 3])], [("y", 2)]))
    with pytest.raises(InvalidInput, match="is a scalar"):
        count_flops(build(relu, [("x", [])], [("y", 0)]))
    # a batch written as 1 is a batch of one
    assert count_flops(build(relu, [("x", [1, 3])], [("y", 2)])) == 3


@pytest.mark.parametrize("garbage", [b"", b"not an onnx model", bytes(range(256)) * 4])
def test_garbage_bytes_are_invalid_input(garbage: bytes) -> None:
    with pytest.raises(InvalidInput, match="invalid ONNX model"):
        count_flops(garbage)


@pytest.mark.parametrize(("flops", "rows"), [(0, 1), (1, 0), (-5, 3), (10, True), (1.5, 2)])
def test_compute_units_validates(flops: Any, rows: Any) -> None:
    with pytest.raises(InvalidInput):
        compute_units(flops, rows)
