"""A federated model's weights as ONNX (what the ``onnx`` workload serves and the
``ModelRegistry`` names by sha256)."""

from __future__ import annotations

import numpy as np

from ..workloads._train_models import ModelSpec, build, export_onnx_network

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
    return export_onnx_network(model, net)
