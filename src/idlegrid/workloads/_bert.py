"""Build a BERT sentence encoder as an ONNX graph from safetensors weights.

This keeps torch out of a provider's runtime: the graph is written node by node
with ``onnx.helper`` from the checkpoint's arrays and run in onnxruntime. It is
the forward pass of Hugging Face's ``BertModel`` (absolute positions, token type
0, post-LayerNorm, exact-erf GELU) followed by sentence-transformers' mean pooling
over the attention mask and L2 normalisation:

    inputs   input_ids, attention_mask   int64 [batch, sequence]
    output   embeddings                  float32 [batch, hidden], unit length
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from .._exceptions import ConfigError

__all__ = ["BertConfig", "build_bert_encoder"]

BUILDER_VERSION = 2  # bump when the graph changes, so cached builds are rebuilt
OPSET = 17  # LayerNormalization
IR_VERSION = 8
_MASKED = -1e9  # added to attention scores of padding; exp() of it is exactly 0
_INT_CONSTS = {"zero": [0], "axes_1": [1], "axes_2": [2], "axes_1_2": [1, 2]}

Weights = Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class BertConfig:
    """The few numbers of a BERT ``config.json`` the graph needs."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    eps: float
    max_positions: int

    @classmethod
    def load(cls, path: Path) -> BertConfig:
        try:
            raw = json.loads(path.read_text())
            config = cls(
                hidden=int(raw["hidden_size"]),
                layers=int(raw["num_hidden_layers"]),
                heads=int(raw["num_attention_heads"]),
                intermediate=int(raw["intermediate_size"]),
                eps=float(raw["layer_norm_eps"]),
                max_positions=int(raw["max_position_embeddings"]),
            )
            activation = raw.get("hidden_act", "gelu")
            position = raw.get("position_embedding_type", "absolute")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read the BERT config {path}: {exc}") from exc
        if activation != "gelu" or position != "absolute" or config.hidden % config.heads:
            raise ConfigError(f"{path}: only absolute-position, gelu BERT models are supported")
        return config


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._count = 0
        self._scalars: dict[float, str] = {}

    def const(self, name: str, array: npt.NDArray[Any]) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def scalar(self, value: float) -> str:
        """A float32 scalar constant, shared by every node that uses the same value."""
        if value not in self._scalars:
            self._scalars[value] = self.const(
                f"scalar_{len(self._scalars)}", np.array(value, np.float32)
            )
        return self._scalars[value]

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        self._count += 1
        out = f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def build_bert_encoder(weights: Weights, config: BertConfig) -> onnx.ModelProto:
    """The encoder plus mean pooling and L2 normalisation, as an ONNX model."""
    g = _Graph()
    w = _Loader(weights, g)
    h = config.hidden
    ints = {name: g.const(name, np.array(v, dtype=np.int64)) for name, v in _INT_CONSTS.items()}

    # embeddings: words + positions + token type 0, then LayerNorm
    words = g.op("Gather", w.raw("embeddings.word_embeddings.weight"), "input_ids")
    seq_len = g.op("Shape", "input_ids", start=1, end=2)
    positions = g.op(
        "Slice", w.raw("embeddings.position_embeddings.weight"), ints["zero"], seq_len, ints["zero"]
    )
    token_type = g.const("token_type_0", w.array("embeddings.token_type_embeddings.weight")[0])
    x = g.op("Add", g.op("Add", words, token_type), positions)
    x = _layer_norm(g, w, x, "embeddings.LayerNorm", config.eps)

    # attention mask: 0 where real tokens, a large negative where padding, [batch, 1, 1, seq]
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    bias = g.op("Mul", g.op("Sub", g.scalar(1.0), mask), g.scalar(_MASKED))
    bias = g.op("Unsqueeze", bias, ints["axes_1_2"])
    for i in range(config.layers):
        x = _encoder_layer(g, w, x, bias, f"encoder.layer.{i}.", config)

    # mean pooling over real tokens, then unit length (sentence-transformers' Pooling, Normalize)
    mask3 = g.op("Unsqueeze", mask, ints["axes_2"])
    summed = g.op("ReduceSum", g.op("Mul", x, mask3), ints["axes_1"], keepdims=0)
    counts = g.op("ReduceSum", mask3, ints["axes_1"], keepdims=0)
    pooled = g.op("Div", summed, g.op("Max", counts, g.scalar(1e-9)))
    norm = g.op("ReduceL2", pooled, axes=[1], keepdims=1)
    g.nodes.append(
        helper.make_node("Div", [pooled, g.op("Max", norm, g.scalar(1e-12))], ["embeddings"])
    )

    ids = ["batch", "sequence"]
    graph = helper.make_graph(
        g.nodes,
        "bert_sentence_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ids),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ids),
        ],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", h])],
        g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="idlegrid"
    )
    model.ir_version = IR_VERSION
    return model


def _encoder_layer(g: _Graph, w: _Loader, x: str, bias: str, p: str, config: BertConfig) -> str:
    """One post-LayerNorm transformer layer: self-attention, then the feed-forward block."""
    h, head_dim = config.hidden, config.hidden // config.heads
    names = ("query", "key", "value")
    qkv_w = np.concatenate([w.array(f"{p}attention.self.{n}.weight").T for n in names], axis=1)
    qkv_b = np.concatenate([w.array(f"{p}attention.self.{n}.bias") for n in names])
    qkv = g.op("Add", g.op("MatMul", x, g.const(f"{p}qkv.w", qkv_w)), g.const(f"{p}qkv.b", qkv_b))
    split = g.const(f"{p}qkv.split", np.array([h, h, h], np.int64))
    q, k, v = (f"{p}{n}" for n in "qkv")
    g.nodes.append(helper.make_node("Split", [qkv, split], [q, k, v], axis=-1))

    heads = g.const(f"{p}heads", np.array([0, 0, config.heads, head_dim], np.int64))
    q = g.op("Mul", q, g.scalar(1.0 / math.sqrt(head_dim)))
    q = g.op("Transpose", g.op("Reshape", q, heads), perm=[0, 2, 1, 3])  # [b, heads, s, d]
    k = g.op("Transpose", g.op("Reshape", k, heads), perm=[0, 2, 3, 1])  # [b, heads, d, s]
    v = g.op("Transpose", g.op("Reshape", v, heads), perm=[0, 2, 1, 3])
    probs = g.op("Softmax", g.op("Add", g.op("MatMul", q, k), bias), axis=-1)
    context = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])
    context = g.op("Reshape", context, g.const(f"{p}merged", np.array([0, 0, h], np.int64)))
    attended = _linear(g, w, context, f"{p}attention.output.dense")
    x = _layer_norm(g, w, g.op("Add", attended, x), f"{p}attention.output.LayerNorm", config.eps)

    inner = _gelu(g, _linear(g, w, x, f"{p}intermediate.dense"))
    out = _linear(g, w, inner, f"{p}output.dense")
    return _layer_norm(g, w, g.op("Add", out, x), f"{p}output.LayerNorm", config.eps)


class _Loader:
    """Reads checkpoint arrays by name; a missing one is a ConfigError naming it."""

    def __init__(self, weights: Weights, graph: _Graph) -> None:
        self.weights = weights
        self.graph = graph

    def array(self, name: str) -> npt.NDArray[np.float32]:
        try:
            return np.asarray(self.weights[name], dtype=np.float32)
        except KeyError as exc:
            raise ConfigError(f"the checkpoint has no tensor {name!r}") from exc

    def raw(self, name: str) -> str:
        """The tensor as an initializer under its own name."""
        return self.graph.const(name, self.array(name))


def _linear(g: _Graph, w: _Loader, x: str, prefix: str) -> str:
    weight = g.const(f"{prefix}.w", w.array(f"{prefix}.weight").T)
    return g.op("Add", g.op("MatMul", x, weight), w.raw(f"{prefix}.bias"))


def _layer_norm(g: _Graph, w: _Loader, x: str, prefix: str, eps: float) -> str:
    return g.op(
        "LayerNormalization",
        x,
        w.raw(f"{prefix}.weight"),
        w.raw(f"{prefix}.bias"),
        axis=-1,
        epsilon=eps,
    )


def _gelu(g: _Graph, x: str) -> str:
    """Exact GELU: x · ½ · (1 + erf(x / √2))."""
    erf = g.op("Erf", g.op("Div", x, g.scalar(math.sqrt(2.0))))
    return g.op("Mul", g.op("Mul", x, g.scalar(0.5)), g.op("Add", erf, g.scalar(1.0)))
