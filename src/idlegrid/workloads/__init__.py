"""Workloads: pure functions from content-hashed artifacts to results.

``onnx`` runs any ONNX model in onnxruntime; ``embed`` turns texts into
all-MiniLM-L6-v2 sentence embeddings (the ``idlegrid[embed]`` extra). Each also
says what a job costs in compute units (one unit is one FLOP), computed from the
job itself so that a client can check the bill. No networking, no chain.
"""

from ._digits import DIGITS_FEATURES, train_digits_model
from ._embed import (
    EMBED_DIM,
    MAX_TEXTS,
    MAX_TOKENS,
    Embedder,
    count_tokens,
    embed,
    embed_flops,
    embed_units,
)
from ._errors import WorkloadError
from ._external import refuse_external_data
from ._flops import ModelCost, compute_units, count_flops, metering_reason, model_cost
from ._onnx import CPU, CUDA, ModelInfo, OnnxRunner, TensorSpec, model_info, select_providers

__all__ = [
    "CPU",
    "CUDA",
    "DIGITS_FEATURES",
    "EMBED_DIM",
    "MAX_TEXTS",
    "MAX_TOKENS",
    "Embedder",
    "ModelCost",
    "ModelInfo",
    "OnnxRunner",
    "TensorSpec",
    "WorkloadError",
    "compute_units",
    "count_flops",
    "count_tokens",
    "embed",
    "embed_flops",
    "embed_units",
    "metering_reason",
    "model_cost",
    "model_info",
    "refuse_external_data",
    "select_providers",
    "train_digits_model",
]
