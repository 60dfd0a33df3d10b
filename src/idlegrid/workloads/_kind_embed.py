"""The ``embed`` kind: sentence embeddings (all-MiniLM-L6-v2), one row per text.

Spec: ``texts`` (1..MAX_TEXTS strings). The job returns float32 ``[len(texts), 384]``,
each row of unit length. Units: ``embed_units`` of the texts' token counts
(``_embed.py``), which the client recounts with the tokenizer alone.

Tolerance: ``np.allclose`` with ``RTOL``/``ATOL`` (the same as ``onnx``: calibrated
with 1, 2 and 4 onnxruntime threads, where rows differed by at most ~1e-7).
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from pydantic import Field

from .._exceptions import InvalidInput
from ._base import BlobSink, ClientHost, NodeHost, OutputSpec, Plan, Prepared, Spec, Workload
from ._embed import EMBED_DIM, MAX_TEXTS, embed_flops
from ._kind_onnx import allclose

__all__ = ["EmbedSpec", "EmbedWorkload"]

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

    def units(self, spec: EmbedSpec, inputs: Any = None) -> int:
        """The texts are the inputs: ``embed_units`` of their token counts."""
        return embed_flops(spec.texts)

    def outputs(self, spec: EmbedSpec, inputs: Any = None) -> OutputSpec:
        return _OUTPUT

    def close_enough(self, a: np.ndarray, b: np.ndarray) -> bool:
        return allclose(a, b)

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
        _embedder = Embedder(threads=1)
    return npy_output(_embedder.embed(job["texts"]))
