"""Compute units of an ``onnx`` job: FLOPs counted from the graph, times rows.

One compute unit is one floating-point operation (a multiply and an add are two).
The count is static: the graph's inputs get a batch of one row, shapes are
inferred with ``onnx.shape_inference``, and every node adds what the table below
says for its shapes. Anyone holding the model recomputes the same number, so a
client can check a bill without trusting the provider.

=================================================  =========================================
op                                                 FLOPs for one node
=================================================  =========================================
MatMul, MatMulInteger, QLinearMatMul               2 · K · elements(Y)   (K: A's last dim)
Gemm                                               2 · M · N · K, + M · N with a bias C
Conv                                               2 · Cin/group · kH·kW… · Cout · Hout·Wout…
                                                   (+ elements(Y) with a bias)
ConvTranspose                                      2 · elements(W) · Hin·Win… (+ bias)
Softmax, LogSoftmax, Hardmax                       5 per output element
LayerNormalization, Instance-, GroupNormalization  8 per output element
BatchNormalization                                 4 per output element
Reduce*, ArgMax, ArgMin, GlobalAverage/MaxPool     1 per input element
MaxPool, AveragePool, LpPool                       kernel size per output element
TreeEnsembleClassifier/Regressor, TreeEnsemble     trees · max depth (one comparison a level)
LinearClassifier, LinearRegressor                  2 · len(coefficients) + len(intercepts)
Constant, Shape, Size                              1
elementwise (Add, Mul, Relu, Erf, Pow, …)          1 per output element
anything else                                      1 per output element
=================================================  =========================================

The last row is a floor, never zero: an op the table does not know still costs
one per element it writes; where even that is unknown (a data-dependent shape, a
ZipMap's maps) it costs one per known input element, and a node never costs less
than 1. Control flow (``If``, ``Loop``, ``Scan``) is counted by that floor too;
its subgraphs are not entered.

The count is exact only where the graph says how much work it does: no control flow
(anywhere, subgraphs and model-local functions included) and no tensor whose size
depends on the data (a shape that inference cannot resolve for a batch of one).
``metering_reason`` says when it is not, and why; such a model is billed by the
CPU time it uses, on nodes that opt in to metering (see ``docs/network.md``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import onnx
from onnx import ModelProto, NodeProto

from .._exceptions import InvalidInput
from ._errors import translate_onnx
from ._external import refuse_external_data

__all__ = ["ModelCost", "compute_units", "count_flops", "metering_reason", "model_cost"]

_ONNX = ("", "ai.onnx")
_ML = "ai.onnx.ml"
_MATMUL = {"MatMul", "MatMulInteger", "QLinearMatMul"}
_SOFTMAX = {"Softmax", "LogSoftmax", "Hardmax"}
_NORM = {"LayerNormalization", "InstanceNormalization", "GroupNormalization"}
_REDUCE = {
    "ArgMax",
    "ArgMin",
    "GlobalAveragePool",
    "GlobalLpPool",
    "GlobalMaxPool",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
}
_POOL = {"AveragePool", "LpPool", "MaxPool"}
_METADATA = {"Constant", "Shape", "Size"}
_TREES = {"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"}
_LINEAR = {"LinearClassifier", "LinearRegressor"}
_SOFTMAX_COST = 5
_NORM_COST = 8
_BATCHNORM_COST = 4
_CONTROL_FLOW = {"If", "Loop", "Scan"}
# ops whose output size follows the values of their input: a count of what they find
_VALUE_SIZED = {
    "BlackmanWindow",
    "CenterCropPad",
    "Compress",
    "ConstantOfShape",
    "HammingWindow",
    "HannWindow",
    "MelWeightMatrix",
    "NonMaxSuppression",
    "NonZero",
    "OneHot",
    "Range",
    "StringSplit",
    "Unique",
}
# ops that take an output size from the values of an input after the first (a shape,
# repeats, pads, starts, axes, k ...): data-dependent unless those inputs are constants
_SHAPED_BY_INPUT = {
    "Col2Im",
    "DFT",
    "Expand",
    "MaxUnpool",
    "Pad",
    "Reshape",
    "Resize",
    "STFT",
    "Slice",
    "Split",
    "SplitToSequence",
    "Squeeze",
    "Tile",
    "TopK",
    "Unsqueeze",
    "Upsample",
}


@dataclass(frozen=True)
class ModelCost:
    """What one row of a model costs, and whether that count is exact."""

    #: FLOPs for one row, by the table in this module (a floor where not exact)
    flops_per_row: int
    #: why the static count is not exact (the job must be metered), or None when it is
    metering: str | None


def model_cost(model: bytes | ModelProto) -> ModelCost:
    """FLOPs per row of ``model`` and whether it needs metering, from one parse.

    Takes the model's bytes, or a ``ModelProto`` the caller parsed with
    :func:`parse_model`. Raises ``InvalidInput`` as :func:`count_flops` does.
    """
    proto = parse_model(model) if not isinstance(model, ModelProto) else model
    with translate_onnx("cannot infer the model's shapes"):
        inferred = onnx.shape_inference.infer_shapes(
            _with_batch_of_one(proto), strict_mode=False, data_prop=True
        )
    shapes = _Shapes.of(inferred.graph)
    flops = sum(max(1, _node_flops(node, shapes)) for node in inferred.graph.node)
    return ModelCost(flops, _control_flow(proto) or _data_dependent(inferred.graph, shapes))


def metering_reason(model: bytes | ModelProto) -> str | None:
    """Why the static count of ``model`` is not exact, naming the op; None when it is.

    The count is not exact when the graph has control flow (``If``, ``Loop``,
    ``Scan``, in any subgraph or model-local function) or a tensor whose size depends
    on the data. Both the client and the node call this on their own parse.
    """
    return model_cost(model).metering


def count_flops(model: bytes) -> int:
    """FLOPs to run ``model`` on one row (batch dimension 1), by the table in this module.

    Every graph input's leading dimension is the batch dimension (symbolic, unset
    or 1); all its other dimensions must be static. Raises ``InvalidInput`` for
    bytes that are not a valid ONNX model or a model with other dynamic dims.
    """
    return model_cost(model).flops_per_row


def compute_units(flops_per_row: int, rows: int) -> int:
    """Compute units of a job: ``flops_per_row · rows``. One compute unit is one FLOP."""
    for name, value in (("flops_per_row", flops_per_row), ("rows", rows)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidInput(f"{name} must be an int, got {type(value).__name__}")
        if value <= 0:
            raise InvalidInput(f"{name} must be positive, got {value}")
    return flops_per_row * rows


def parse_model(model: bytes) -> ModelProto:
    """Parse and check ONNX bytes; ``InvalidInput`` when they are not a usable model."""
    if not isinstance(model, bytes | bytearray | memoryview):
        raise InvalidInput(f"an ONNX model must be bytes, got {type(model).__name__}")
    if not model:
        raise InvalidInput("invalid ONNX model: empty bytes")
    with translate_onnx("invalid ONNX model"):
        proto = onnx.load_model_from_string(bytes(model))
    refuse_external_data(proto)  # before the checker, which would look at the files
    with translate_onnx("invalid ONNX model"):
        onnx.checker.check_model(proto)
    if not proto.graph.node or not proto.graph.output:
        raise InvalidInput("invalid ONNX model: the graph has no nodes or no outputs")
    return proto


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds: graph inputs that are not initializers (old IR lists both)."""
    initializers = {init.name for init in graph.initializer}
    return [value for value in graph.input if value.name not in initializers]


def _with_batch_of_one(model: ModelProto) -> ModelProto:
    """A copy of ``model`` whose inputs have a batch of one; refuses other dynamic dims."""
    copy = ModelProto()
    copy.CopyFrom(model)
    for value in graph_inputs(copy.graph):
        if value.type.WhichOneof("value") != "tensor_type":
            raise InvalidInput(
                f"input {value.name!r} is not a tensor; only tensor inputs are supported"
            )
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            raise InvalidInput(
                f"input {value.name!r} has no declared shape; the model needs static shapes "
                "except the batch dim (the first)"
            )
        dims = tensor.shape.dim
        if not dims:
            raise InvalidInput(f"input {value.name!r} is a scalar; every input needs a batch dim")
        lead = dims[0]
        if lead.HasField("dim_value") and lead.dim_value != 1:
            raise InvalidInput(
                f"input {value.name!r} has a fixed batch of {lead.dim_value}; export the model "
                "with a dynamic (symbolic) first dim"
            )
        for axis, dim in enumerate(dims[1:], start=1):
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                got = dim.dim_param or "unknown"
                raise InvalidInput(
                    f"input {value.name!r} dim {axis} is {got}; the model needs static shapes "
                    "except the batch dim (the first)"
                )
        lead.Clear()
        lead.dim_value = 1
    return copy


@dataclass(frozen=True)
class _Shapes:
    """Static shapes of the graph's tensors after inference (absent when not static)."""

    known: dict[str, tuple[int, ...]]

    @classmethod
    def of(cls, graph: onnx.GraphProto) -> _Shapes:
        known: dict[str, tuple[int, ...]] = {}
        for value in [*graph.input, *graph.value_info, *graph.output]:
            if value.type.WhichOneof("value") != "tensor_type":
                continue
            tensor = value.type.tensor_type
            if not tensor.HasField("shape"):
                continue
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
            if all(d >= 0 for d in dims):
                known[value.name] = dims
        for init in graph.initializer:
            known[init.name] = tuple(init.dims)
        return cls(known)

    def get(self, name: str) -> tuple[int, ...] | None:
        return self.known.get(name) if name else None

    def size(self, name: str) -> int | None:
        shape = self.get(name)
        return None if shape is None else math.prod(shape)

    def total(self, names: Iterable[str]) -> int | None:
        sizes = [s for s in (self.size(n) for n in names) if s is not None]
        return sum(sizes) if sizes else None


def _control_flow(model: ModelProto) -> str | None:
    """Names the first control-flow node in the model, at any depth; None if there is none."""
    graphs: list[tuple[str, Iterable[NodeProto]]] = [("the graph", model.graph.node)]
    graphs += [(f"function {f.name!r}", f.node) for f in model.functions]
    while graphs:
        where, nodes = graphs.pop()
        for node in nodes:
            if node.domain in _ONNX and node.op_type in _CONTROL_FLOW:
                return (
                    f"{node.op_type} (node {node.name!r} in {where}) is control flow: "
                    "its work depends on the data"
                )
            for attr in node.attribute:
                inner = f"a subgraph of {node.op_type} {node.name!r}"
                if attr.HasField("g"):
                    graphs.append((inner, attr.g.node))
                graphs += [(inner, g.node) for g in attr.graphs]
    return None


def _data_dependent(graph: onnx.GraphProto, shapes: _Shapes) -> str | None:
    """Names the first node whose output size depends on the data; None if there is none.

    Inference ran for a batch of one, with constant shapes propagated. A node whose
    output size it could not tell depends on the data when its op counts what it finds
    (``_VALUE_SIZED``), takes a size from an input that is not a constant
    (``_SHAPED_BY_INPUT``), or is any other op whose inputs all have known sizes. An
    ``ai.onnx.ml`` op's outputs follow its inputs' shapes, even where onnx cannot infer
    them, and a node whose inputs are unknown inherits that from upstream.
    """
    typed = {v.name: v.type for v in [*graph.value_info, *graph.output]}
    constants = {init.name for init in graph.initializer}
    constants.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    for node in graph.node:
        if node.domain == _ML:
            continue
        unknown = [
            name
            for name in node.output
            if name  # an optional output left out has no name
            and (name not in typed or typed[name].WhichOneof("value") == "tensor_type")
            and shapes.get(name) is None
        ]
        if not unknown:
            continue
        op, inputs = node.op_type, [i for i in node.input if i]
        if (
            op in _VALUE_SIZED
            or (op in _SHAPED_BY_INPUT and not constants.issuperset(inputs[1:]))
            or all(shapes.get(i) is not None for i in inputs)
        ):
            return (
                f"{op} (node {node.name!r}) writes {unknown[0]!r}, whose size depends on the data"
            )
    return None


def _node_flops(node: NodeProto, shapes: _Shapes) -> int:
    out = shapes.total(node.output)
    floor = out if out is not None else (shapes.total(node.input) or 1)
    op = node.op_type
    if node.domain == _ML:
        if op in _TREES:
            return _tree_flops(node)
        if op in _LINEAR:
            attrs = _attrs(node)
            return 2 * len(_list(attrs.get("coefficients"))) + len(_list(attrs.get("intercepts")))
        return floor
    if node.domain not in _ONNX:
        return floor
    if op in _METADATA:
        return 1
    counted = _onnx_op_flops(op, node, shapes)
    return floor if counted is None else counted


def _onnx_op_flops(op: str, node: NodeProto, shapes: _Shapes) -> int | None:
    """FLOPs by the table, or None where shapes are unknown (the caller floors it)."""
    ins, outs = list(node.input), list(node.output)
    y = shapes.get(outs[0]) if outs else None
    if op in _MATMUL:
        a = shapes.get(ins[0])
        return None if a is None or y is None or not a else 2 * a[-1] * math.prod(y)
    if op == "Gemm":
        a = shapes.get(ins[0])
        if a is None or y is None or len(a) != 2 or len(y) != 2:
            return None
        k = a[0] if _attrs(node).get("transA", 0) else a[1]
        bias = y[0] * y[1] if len(ins) > 2 and ins[2] else 0
        return 2 * y[0] * y[1] * k + bias
    if op in ("Conv", "ConvTranspose"):
        w, x = shapes.get(ins[1]), shapes.get(ins[0])
        spatial_of = y if op == "Conv" else x
        if w is None or y is None or spatial_of is None or len(spatial_of) < 2:
            return None
        bias = math.prod(y) if len(ins) > 2 and ins[2] else 0
        return 2 * math.prod(w) * spatial_of[0] * math.prod(spatial_of[2:]) + bias
    if op in _REDUCE:
        return shapes.size(ins[0])
    if y is None:
        return None
    if op in _POOL:
        kernel = _ints(_attrs(node).get("kernel_shape"))
        return math.prod(kernel) * math.prod(y) if kernel else None
    if op in _SOFTMAX:
        return _SOFTMAX_COST * math.prod(y)
    if op in _NORM:
        return _NORM_COST * math.prod(y)
    if op == "BatchNormalization":
        return _BATCHNORM_COST * math.prod(y)
    return None  # elementwise and everything else: the floor, one per output element


def _tree_flops(node: NodeProto) -> int:
    """``trees · max depth``: one comparison per level of the deepest tree, for every tree."""
    attrs = _attrs(node)
    true_ids = _ints(attrs.get("nodes_truenodeids"))
    false_ids = _ints(attrs.get("nodes_falsenodeids"))
    # branches: node key -> the keys of its children that are branches too
    branches: dict[Hashable, list[Hashable]] = {}
    roots: list[Hashable] = []
    if node.op_type == "TreeEnsemble":  # ai.onnx.ml 5: nodes are all branches, leaves apart
        true_leaf = _ints(attrs.get("nodes_trueleafs"))
        false_leaf = _ints(attrs.get("nodes_falseleafs"))
        _same_length(node, true_ids, false_ids, true_leaf, false_leaf)
        for i, (t, f, t_leaf, f_leaf) in enumerate(
            zip(true_ids, false_ids, true_leaf, false_leaf, strict=True)
        ):
            branches[i] = [c for c, leaf in ((t, t_leaf), (f, f_leaf)) if not leaf]
        roots = list(_ints(attrs.get("tree_roots")))
        trees = len(roots)
    else:  # TreeEnsembleClassifier/Regressor: leaves are nodes with mode LEAF
        tree_ids = _ints(attrs.get("nodes_treeids"))
        node_ids = _ints(attrs.get("nodes_nodeids"))
        modes = [
            m.decode() if isinstance(m, bytes) else str(m) for m in _list(attrs.get("nodes_modes"))
        ]
        _same_length(node, tree_ids, node_ids, modes, true_ids, false_ids)
        leaves = {(t, n) for t, n, m in zip(tree_ids, node_ids, modes, strict=True) if m == "LEAF"}
        for t, n, m, yes, no in zip(tree_ids, node_ids, modes, true_ids, false_ids, strict=True):
            if m != "LEAF":
                branches[(t, n)] = [c for c in ((t, yes), (t, no)) if c not in leaves]
        referenced = {child for children in branches.values() for child in children}
        roots = [key for key in branches if key not in referenced]
        trees = len(set(tree_ids))
    deepest = max((_depth(branches, root, node) for root in roots), default=0)
    return trees * deepest


def _same_length(node: NodeProto, *columns: Sequence[object]) -> None:
    if len({len(c) for c in columns}) > 1:
        raise InvalidInput(f"{node.op_type} {node.name!r}: node attributes differ in length")


def _depth(branches: dict[Hashable, list[Hashable]], root: Hashable, node: NodeProto) -> int:
    """Branch nodes on the longest path from ``root``; refuses cycles and dangling ids."""
    deepest, visited = 0, 0
    stack: list[tuple[Hashable, int]] = [(root, 1)]
    while stack:
        key, level = stack.pop()
        visited += 1
        if key not in branches or visited > len(branches):
            raise InvalidInput(f"{node.op_type} {node.name!r}: the trees are not well-formed")
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in branches[key])
    return deepest


def _attrs(node: NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def _ints(value: object) -> list[int]:
    return [int(v) for v in _list(value) if isinstance(v, int)]
