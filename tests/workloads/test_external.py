"""Models that reference external data (files) are refused before anything reads them.

onnxruntime resolves a relative ``location`` against the working directory when it
loads a model from bytes: the first test shows that such a model really reads a
file there, so that the refusals that follow refuse a working attack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import GraphProto, ModelProto, NodeProto, TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from idlegrid import InvalidInput
from idlegrid.workloads import (
    OnnxRunner,
    count_flops,
    metering_reason,
    model_info,
    refuse_external_data,
)
from idlegrid.workloads._external import external_tensors
from idlegrid.workloads._flops import parse_model

SECRET = b"TOPSECRET-0123456789abcdef"
ROW = 8  # bytes of the secret a row reads


def external(name: str, *, location: str = "secret.txt") -> TensorProto:
    """A uint8 tensor of ROW bytes whose data lives in ``location`` (relative)."""
    tensor = numpy_helper.from_array(np.zeros(ROW, np.uint8), name)
    set_external_data(tensor, location=location, offset=0, length=ROW)
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    return tensor


def graph(nodes: Sequence[NodeProto], initializers: Sequence[TensorProto] = ()) -> GraphProto:
    """x [N, 1] float in, y out: ``nodes`` must write ``leak`` (uint8 [ROW])."""
    shape = numpy_helper.from_array(np.array([1, ROW], np.int64), "shape")
    tail = [helper.make_node("Expand", ["leak", "shape"], ["y"])]
    return helper.make_graph(
        [*nodes, *tail],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, ROW])],
        [*initializers, shape],
    )


def model(g: GraphProto) -> ModelProto:
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def by_initializer() -> ModelProto:
    return model(graph([helper.make_node("Identity", ["w"], ["leak"])], [external("w")]))


def by_sparse_initializer() -> ModelProto:
    values = external("w")
    indices = numpy_helper.from_array(np.arange(ROW, dtype=np.int64), "w_indices")
    sparse = helper.make_sparse_tensor(values, indices, [ROW])
    g = graph([helper.make_node("Identity", ["w"], ["leak"])])
    g.sparse_initializer.append(sparse)
    return model(g)


def by_constant_attribute() -> ModelProto:
    return model(graph([helper.make_node("Constant", [], ["leak"], value=external("c"))]))


def by_sparse_attribute() -> ModelProto:
    indices = numpy_helper.from_array(np.arange(ROW, dtype=np.int64), "c_indices")
    sparse = helper.make_sparse_tensor(external("c"), indices, [ROW])
    return model(graph([helper.make_node("Constant", [], ["leak"], sparse_value=sparse)]))


def by_tensors_attribute() -> ModelProto:
    node = helper.make_node("Identity", ["x"], ["unused"])
    node.attribute.append(helper.make_attribute("extra", [external("c")]))
    leak = numpy_helper.from_array(np.zeros(ROW, np.uint8), "leak")
    return model(graph([node], [leak]))


def _loop(body_nodes: list[NodeProto], body_inits: list[TensorProto]) -> NodeProto:
    body = helper.make_graph(
        body_nodes,
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.UINT8, [ROW]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.UINT8, [ROW]),
        ],
        body_inits,
    )
    return helper.make_node("Loop", ["trips", "", "zeros"], ["leak"], body=body)


def _loop_inits() -> list[TensorProto]:
    return [
        numpy_helper.from_array(np.array(1, np.int64), "trips"),
        numpy_helper.from_array(np.zeros(ROW, np.uint8), "zeros"),
    ]


def by_loop_body() -> ModelProto:
    loop = _loop(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "w"], ["acc_out"]),
        ],
        [external("w")],
    )
    return model(graph([loop], _loop_inits()))


def by_if_inside_a_loop() -> ModelProto:
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["b"], value=external("c"))],
        "then",
        [],
        [helper.make_tensor_value_info("b", TensorProto.UINT8, [ROW])],
    )
    plain = helper.make_graph(
        [helper.make_node("Identity", ["acc_in"], ["b2"])],
        "else",
        [],
        [helper.make_tensor_value_info("b2", TensorProto.UINT8, [ROW])],
    )
    loop = _loop(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("If", ["cond_in"], ["acc_out"], then_branch=branch, else_branch=plain),
        ],
        [],
    )
    return model(graph([loop], _loop_inits()))


def by_local_function() -> ModelProto:
    fn = helper.make_function(
        "local",
        "Leak",
        [],
        ["out"],
        [helper.make_node("Constant", [], ["out"], value=external("c"))],
        [helper.make_opsetid("", 17)],
    )
    g = graph([helper.make_node("Leak", [], ["leak"], domain="local")])
    m = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
        functions=[fn],
    )
    m.ir_version = 8
    return m


ATTACKS: list[Callable[[], ModelProto]] = [
    by_initializer,
    by_sparse_initializer,
    by_constant_attribute,
    by_sparse_attribute,
    by_tensors_attribute,
    by_loop_body,
    by_if_inside_a_loop,
    by_local_function,
]


@pytest.fixture
def secret_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A secret file in the working directory, where a relative location points."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_onnxruntime_alone_reads_the_file(secret_here: Path) -> None:
    # Prepare: the plainest attack, straight into onnxruntime
    data = by_initializer().SerializeToString()

    # Execute
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": np.zeros((1, 1), np.float32)})

    # Assert: this is what the refusals below stop
    assert out.tobytes() == SECRET[:ROW]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_every_place_an_external_tensor_can_hide_is_found(attack: Callable[[], ModelProto]) -> None:
    assert external_tensors(attack()) != []


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_parsing_refuses_a_model_with_external_data(
    attack: Callable[[], ModelProto], secret_here: Path
) -> None:
    data = attack().SerializeToString()

    for check in (parse_model, count_flops, metering_reason, model_info):
        with pytest.raises(InvalidInput, match="external data") as raised:
            check(data)
        assert SECRET[:4].decode() not in str(raised.value)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_the_runner_refuses_it_too(attack: Callable[[], ModelProto], secret_here: Path) -> None:
    # Prepare: a caller that skipped the checks (the worker's last line of defence)
    runner = OnnxRunner(threads=1)
    data = attack().SerializeToString()

    # Execute / Assert
    with pytest.raises(InvalidInput, match="external data"):
        runner.run_first(data, np.zeros((1, 1), np.float32))
    assert runner.cached() == []


def test_a_model_with_inline_tensors_passes(secret_here: Path) -> None:
    inline = numpy_helper.from_array(np.arange(ROW, dtype=np.uint8), "w")
    data = model(graph([helper.make_node("Identity", ["w"], ["leak"])], [inline]))

    refuse_external_data(data)  # nothing raised
    out = OnnxRunner(threads=1).run_first(data.SerializeToString(), np.zeros((1, 1), np.float32))

    np.testing.assert_array_equal(out, np.arange(ROW, dtype=np.uint8)[None, :])


def test_a_location_without_the_external_flag_is_refused() -> None:
    tensor = numpy_helper.from_array(np.zeros(ROW, np.uint8), "w")
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "secret.txt"
    m = model(graph([helper.make_node("Identity", ["w"], ["leak"])], [tensor]))

    with pytest.raises(InvalidInput, match="external data"):
        refuse_external_data(m)
