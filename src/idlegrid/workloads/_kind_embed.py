"""The ``embed`` kind: sentence embeddings (all-MiniLM-L6-v2), one row per text.

Spec: ``texts`` (1..MAX_TEXTS strings). The job returns float32 ``[len(texts), 384]``,
each row of unit length. Units: ``embed_units`` of the texts' token counts
(``_embed.py``), which the client recounts with the tokenizer alone.

Tolerance: every element within ``EMBED_ATOL`` = 1e-4 (an absolute bound: the rows
have unit length, so no element exceeds 1 and a typical one is ~0.05). Calibrated
(``idlegrid.verify.calibrate``) with 1, 2 and 4 onnxruntime threads and in batches of
1, 7 and 32 texts (padding changes the kernels' shapes): the largest difference was
7.5e-8, a margin of over 1000x, left for other CPUs and float32 GPUs. A row within
the tolerance has a cosine similarity above 1 − 2e-6 to the honest one: whatever
hides under it changes no search result.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from pydantic import Field

from .._exceptions import InvalidInput
from ._base import BlobSink, ClientHost, NodeHost, OutputSpec, Plan, Prepared, Spec, Workload
from ._embed import EMBED_DIM, MAX_TEXTS, embed_flops
from ._kind_onnx import allclose, worker_threads

__all__ = ["EMBED_ATOL", "EmbedSpec", "EmbedWorkload"]

#: how far two honest embeddings' elements may differ (see the module docstring)
EMBED_ATOL = 1e-4

#: texts per job unless the caller says otherwise
TEXTS_PER_JOB = 32
_OUTPUT = OutputSpec("embedding", np.dtype(np.float32), (EMBED_DIM,))


class EmbedSpec(Spec):
    """An ``embed`` job: the texts to embed."""

    texts: list[str] = Field(
        min_length=1, max_length=MAX_TEXTS, description="sentences to embed (one row each)"
    )


class EmbedWorkload(Workload[EmbedSpec, list[str]]):
    """all-MiniLM-L6-v2 sentence embeddings of texts (a ``list[str]``)."""

    name = "embed"
    Spec = EmbedSpec
    task = "idlegrid.workloads._kind_embed:run"
    summary = "all-MiniLM-L6-v2 sentence embeddings, float32 [N, 384], unit length"
    input_fields = ("texts",)

    def units(self, spec: EmbedSpec, inputs: Any = None) -> int:
        """The texts are the inputs: ``embed_units`` of their token counts."""
        return embed_flops(spec.texts)

    def outputs(self, spec: EmbedSpec, inputs: Any = None) -> OutputSpec:
        return _OUTPUT

    def close_enough(self, a: np.ndarray, b: np.ndarray) -> bool:
        return allclose(a, b, rtol=0.0, atol=EMBED_ATOL)

    async def prepare(self, spec: EmbedSpec, node: NodeHost) -> Prepared:
        payload = pickle.dumps({"texts": spec.texts})
        return Prepared(self.task, payload, len(spec.texts), self.units(spec), False)

    async def plan(self, inputs: list[str], client: ClientHost, **options: Any) -> EmbedPlan:
        """Options: ``per_job`` (texts per job, default 32)."""
        per = options.pop("per_job", None) or TEXTS_PER_JOB
        if options:
            raise InvalidInput(f"unknown options for an embed batch: {sorted(options)}")
        if isinstance(inputs, str | bytes) or not inputs:
            raise InvalidInput("texts must be a non-empty list of strings")
        if not all(isinstance(t, str) for t in inputs):
            raise InvalidInput("texts must be a non-empty list of strings")
        plan = EmbedPlan(list(inputs), per)
        plan.workload = self
        return plan


class EmbedPlan(Plan[list[str]]):
    """A client's embed batch: texts, a fixed number per job."""

    expect = _OUTPUT
    out_row_bytes = 4 * EMBED_DIM

    def __init__(self, texts: list[str], per_job: int) -> None:
        self.inputs = texts
        self.per_job = per_job
        self.in_row_bytes = max(1, sum(len(t.encode()) + 8 for t in texts) // len(texts))
        self._units: dict[tuple[str, ...], int] = {}

    def units(self, part: list[str]) -> int:
        key = tuple(part)
        units = self._units.get(key)
        if units is None:
            units = self._units[key] = embed_flops(part)
        return units

    async def fields(self, part: list[str], sink: BlobSink) -> dict[str, Any]:
        return {"texts": list(part)}


# -- in the worker ------------------------------------------------------------------------
_embedder: Any = None


def run(payload: bytes) -> bytes:
    """The worker task: {"texts": [...]} -> embeddings [n, 384] float32 as ``.npy``."""
    global _embedder
    from ._base import npy_output
    from ._embed import Embedder

    job = pickle.loads(payload)
    if _embedder is None:
        _embedder = Embedder(threads=worker_threads())
    return npy_output(_embedder.embed(job["texts"]))
