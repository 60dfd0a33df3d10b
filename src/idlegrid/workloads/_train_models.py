"""The model families a ``train`` job may name, each built from a declarative spec.

No user code runs on a provider: a job names a family and its sizes, and the
provider builds the network here. Each family says, from its spec alone, its
parameter count, its forward FLOPs per sample, an estimate of the activation floats
one sample keeps for the backward pass, and the input it takes:

* ``mlp``: ``inputs`` -> ``hidden`` (ReLU between) -> ``classes``; float32 ``[n, inputs]``.
* ``cnn``: per entry of ``conv`` a 3x3 convolution (padding 1), ReLU and 2x2 max
  pooling, then global average pooling and a linear head; float32 ``[n, C, H, W]``.
* ``transformer``: token and learned position embeddings, ``layers`` post-norm
  encoder layers (no dropout), mean pooling and a linear head; int64 tokens
  ``[n, seq]`` in ``0 .. vocab-1``.

Torch is imported only when a network is built (the ``idlegrid[embed]`` extra has it).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import torch

__all__ = [
    "CnnModel",
    "MlpModel",
    "ModelSpec",
    "TransformerModel",
    "activation_floats",
    "build",
    "deterministic",
    "export_onnx_network",
    "flops_per_sample",
    "input_shape",
    "param_count",
]

MAX_CLASSES = 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: int = Field(ge=2, le=MAX_CLASSES)


class MlpModel(_Model):
    """A multi-layer perceptron."""

    family: Literal["mlp"]
    inputs: int = Field(ge=1, le=65_536)
    hidden: tuple[Annotated[int, Field(ge=1, le=8192)], ...] = Field(default=(), max_length=8)


class CnnModel(_Model):
    """A small convolutional net for ``[C, H, W]`` images."""

    family: Literal["cnn"]
    channels: int = Field(ge=1, le=16)
    height: int = Field(ge=1, le=256)
    width: int = Field(ge=1, le=256)
    conv: tuple[Annotated[int, Field(ge=1, le=256)], ...] = Field(min_length=1, max_length=6)

    @model_validator(mode="after")
    def _fits(self) -> CnnModel:
        if min(self.height, self.width) < 2 ** len(self.conv):
            raise ValueError(
                f"{len(self.conv)} poolings need images of at least 2**{len(self.conv)}"
            )
        return self


class TransformerModel(_Model):
    """A small transformer encoder over token sequences."""

    family: Literal["transformer"]
    vocab: int = Field(ge=2, le=65_536)
    seq: int = Field(ge=1, le=1024)
    d_model: int = Field(ge=8, le=1024)
    heads: int = Field(ge=1, le=16)
    layers: int = Field(ge=1, le=12)
    ff: int = Field(ge=8, le=4096)

    @model_validator(mode="after")
    def _fits(self) -> TransformerModel:
        if self.d_model % self.heads:
            raise ValueError("d_model must be a multiple of heads")
        return self


ModelSpec = Annotated[MlpModel | CnnModel | TransformerModel, Field(discriminator="family")]


def _dims(m: MlpModel) -> list[int]:
    return [m.inputs, *m.hidden, m.classes]


def _cnn_layers(m: CnnModel) -> list[tuple[int, int, int, int]]:
    """``(c_in, c_out, h, w)`` of each convolution (h, w: its input size)."""
    out, c, h, w = [], m.channels, m.height, m.width
    for c_out in m.conv:
        out.append((c, c_out, h, w))
        c, h, w = c_out, h // 2, w // 2
    return out


def param_count(m: MlpModel | CnnModel | TransformerModel) -> int:
    """Trainable parameters of the network ``build(m)`` makes."""
    if isinstance(m, MlpModel):
        d = _dims(m)
        return sum(a * b + b for a, b in itertools.pairwise(d))
    if isinstance(m, CnnModel):
        convs = sum(ci * 9 * co + co for ci, co, _, _ in _cnn_layers(m))
        return convs + m.conv[-1] * m.classes + m.classes
    dm, ff = m.d_model, m.ff
    layer = 4 * dm * dm + 9 * dm + 2 * dm * ff + ff
    return (m.vocab + m.seq) * dm + m.layers * layer + dm * m.classes + m.classes


def flops_per_sample(m: MlpModel | CnnModel | TransformerModel) -> int:
    """Forward FLOPs of one sample (multiply-adds of the matrix products, as 2 each)."""
    if isinstance(m, MlpModel):
        d = _dims(m)
        return sum(2 * a * b for a, b in itertools.pairwise(d))
    if isinstance(m, CnnModel):
        convs = sum(2 * ci * 9 * co * h * w for ci, co, h, w in _cnn_layers(m))
        return convs + 2 * m.conv[-1] * m.classes
    s, dm = m.seq, m.d_model
    layer = 2 * s * 4 * dm * dm + 4 * s * s * dm + 4 * s * dm * m.ff
    return m.layers * layer + 2 * dm * m.classes


def activation_floats(m: MlpModel | CnnModel | TransformerModel) -> int:
    """An estimate of the floats one sample keeps for the backward pass."""
    if isinstance(m, MlpModel):
        return 2 * sum(_dims(m))
    if isinstance(m, CnnModel):
        return (
            sum(3 * co * h * w for _, co, h, w in _cnn_layers(m)) + m.channels * m.height * m.width
        )
    s, d = m.seq, m.d_model
    return m.layers * (12 * s * d + 2 * m.heads * s * s + 2 * s * m.ff) + s * d


def input_shape(m: MlpModel | CnnModel | TransformerModel) -> tuple[int, ...]:
    """The shape of one sample (tokens for a transformer, floats otherwise)."""
    if isinstance(m, MlpModel):
        return (m.inputs,)
    if isinstance(m, CnnModel):
        return (m.channels, m.height, m.width)
    return (m.seq,)


def deterministic() -> None:
    """PyTorch's deterministic algorithms on, for eager execution, as
    ``torch.use_deterministic_algorithms(True)`` sets them, without its import of
    ``torch._inductor`` (and with it ``torch._dynamo``) to set the compiler's flag too:
    1.4 s of every training process's start (measured, torch 2.13), for a compiler no
    job uses. Where the switch is not where it was, the public call does it all."""
    import torch

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # pragma: no cover - a torch without the switch
        torch.use_deterministic_algorithms(True)
        return
    setter(True, warn_only=False)


def build(m: MlpModel | CnnModel | TransformerModel) -> torch.nn.Module:
    """The network, its weights drawn from torch's global generator (seed it first)."""
    from torch import nn

    if isinstance(m, MlpModel):
        d = _dims(m)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(d):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers[:-1])
    if isinstance(m, CnnModel):
        layers = []
        for ci, co, _, _ in _cnn_layers(m):
            layers += [nn.Conv2d(ci, co, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(m.conv[-1], m.classes)]
        return nn.Sequential(*layers)
    return _Encoder(m)


def _encoder_class() -> Any:
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self, m: TransformerModel) -> None:
            super().__init__()
            self.embed = nn.Embedding(m.vocab, m.d_model)
            self.pos = nn.Parameter(0.02 * torch.randn(m.seq, m.d_model))
            layer = nn.TransformerEncoderLayer(
                m.d_model, m.heads, m.ff, dropout=0.0, batch_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, m.layers, enable_nested_tensor=False)
            self.head = nn.Linear(m.d_model, m.classes)
            d = m.d_model
            for block in self.encoder.layers:
                # the key bias adds one constant to every score of a query, which softmax
                # ignores: its true gradient is 0, and the float noise left in it would
                # make Adam's steps depend on the thread count (replays would differ)
                block.self_attn.in_proj_bias.register_hook(
                    lambda g, d=d: torch.cat([g[:d], torch.zeros_like(g[d : 2 * d]), g[2 * d :]])
                )

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            h = self.encoder(self.embed(tokens) + self.pos)
            out: torch.Tensor = self.head(h.mean(dim=1))
            return out

    return Encoder


def _Encoder(m: TransformerModel) -> torch.nn.Module:
    module: torch.nn.Module = _encoder_class()(m)
    return module


def export_onnx_network(m: MlpModel | CnnModel | TransformerModel, net: torch.nn.Module) -> bytes:
    """``net`` (a network of family ``m``) as ONNX: input ``x``, output ``logits``, any
    batch size (what the ``onnx`` workload serves; ``train`` and ``fl`` export with it)."""
    import tempfile
    import warnings
    from pathlib import Path

    import torch

    net.eval()
    dtype = torch.int64 if isinstance(m, TransformerModel) else torch.float32
    example = torch.zeros((1, *input_shape(m)), dtype=dtype)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # the TorchScript exporter (no onnxscript needed) is deprecated, not gone
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            f"{tmp}/model.onnx",
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        )
        return Path(f"{tmp}/model.onnx").read_bytes()
