"""A federated model's weights as ONNX (what the ``onnx`` workload serves and the
``ModelRegistry`` names by sha256)."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..workloads._train_models import ModelSpec, TransformerModel, build, input_shape

__all__ = ["export_params"]


def export_params(model: ModelSpec, params: np.ndarray) -> bytes:
    """The network of ``model`` with ``params`` as ONNX (input ``x``, output ``logits``,
    any batch size); the same bytes for the same weights."""
    import torch

    torch.manual_seed(0)
    net = build(model)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(
            torch.from_numpy(np.ascontiguousarray(params, dtype=np.float32).copy()),
            net.parameters(),
        )
    net.eval()
    dtype = torch.int64 if isinstance(model, TransformerModel) else torch.float32
    example = torch.zeros((1, *input_shape(model)), dtype=dtype)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, not gone
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
