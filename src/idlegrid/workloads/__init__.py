"""Workloads: pure functions from content-hashed artifacts to results.

Each kind of job is a :class:`Workload` (``_base.py``) in its own file
(``_kind_onnx.py``, ``_kind_embed.py``), registered by name: the node and the
client look a kind up with :func:`get_workload` and never branch on its name.

``onnx`` runs any ONNX model in onnxruntime; ``embed`` turns texts into
all-MiniLM-L6-v2 sentence embeddings (the ``idlegrid[embed]`` extra). Each also
says what a job costs in compute units (one unit is one FLOP), computed from the
job itself so that a client can check the bill. No networking, no chain.
"""

from ._base import (
    JOB_SENDER,
    BlobSink,
    ClientHost,
    NodeHost,
    OutputSpec,
    Plan,
    Prepared,
    Spec,
    Workload,
    npy_output,
)
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
from ._kind_embed import EmbedSpec, EmbedWorkload
from ._kind_fl import FlSpec, FlWorkload
from ._kind_onnx import ATOL, RTOL, THREADS_ENV, OnnxSpec, OnnxWorkload
from ._kind_sgd import SgdSpec, SgdWorkload, flops_per_step, sgd_dataset, sgd_steps
from ._kind_train import TrainWorkload as _TrainWorkload
from ._long import LongPlan, LongWorkload, Segment
from ._onnx import CPU, CUDA, ModelInfo, OnnxRunner, TensorSpec, model_info, select_providers
from ._registry import get_workload, register, unregister, workloads

register(OnnxWorkload(), replace=True)
register(EmbedWorkload(), replace=True)
register(SgdWorkload(), replace=True)
register(_TrainWorkload(), replace=True)
register(FlWorkload(), replace=True)

__all__ = [
    "ATOL",
    "CPU",
    "CUDA",
    "DIGITS_FEATURES",
    "EMBED_DIM",
    "JOB_SENDER",
    "MAX_TEXTS",
    "MAX_TOKENS",
    "RTOL",
    "THREADS_ENV",
    "BlobSink",
    "ClientHost",
    "EmbedSpec",
    "EmbedWorkload",
    "Embedder",
    "FlSpec",
    "FlWorkload",
    "LongPlan",
    "LongWorkload",
    "ModelCost",
    "ModelInfo",
    "NodeHost",
    "OnnxRunner",
    "OnnxSpec",
    "OnnxWorkload",
    "OutputSpec",
    "Plan",
    "Prepared",
    "Segment",
    "SgdSpec",
    "SgdWorkload",
    "Spec",
    "TensorSpec",
    "Workload",
    "WorkloadError",
    "compute_units",
    "count_flops",
    "count_tokens",
    "embed",
    "embed_flops",
    "embed_units",
    "flops_per_step",
    "get_workload",
    "metering_reason",
    "model_cost",
    "model_info",
    "npy_output",
    "refuse_external_data",
    "register",
    "select_providers",
    "sgd_dataset",
    "sgd_steps",
    "train_digits_model",
    "unregister",
    "workloads",
]
