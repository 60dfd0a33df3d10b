"""Task functions that run inside executor worker processes.

Each takes and returns bytes (pickles built by the node itself, never by a
peer: the peer's data is an ``.npy`` array parsed without pickle, or a list of
strings). Models and sessions stay cached in the worker between jobs.
"""

from __future__ import annotations

import io
import pickle
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import OutputTooLarge
from ._worker import output_limit

__all__ = ["run_embed", "run_onnx"]


@cache
def _runner() -> Any:
    from ..workloads import OnnxRunner

    return OnnxRunner(threads=1)


@cache
def _embedder() -> Any:
    from ..workloads import Embedder

    return Embedder(threads=1)


_models: dict[str, bytes] = {}


def npy_bytes(array: Any) -> bytes:
    """``array`` as ``.npy``; OutputTooLarge, before any byte is written, past the limit."""
    # the same format as idlegrid.protocol.npy_bytes, without importing the protocol
    # package (and web3 with it) into every worker
    limit = output_limit()
    if limit is not None and array.nbytes > limit:
        raise OutputTooLarge(
            f"the output {array.dtype}{list(array.shape)} has {array.nbytes} bytes, more than "
            f"the {limit} a job may return",
            size=array.nbytes,
            limit=limit,
        )
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def run_onnx(payload: bytes) -> bytes:
    """{"model": sha256, "path": file or None, "input": array} -> first output as .npy."""
    job = pickle.loads(payload)
    model = _models.get(job["model"])
    if model is None:
        if job["path"] is None:
            raise FileNotFoundError("model blob has no local path")
        model = Path(job["path"]).read_bytes()
        if len(_models) > 16:
            _models.clear()
        _models[job["model"]] = model
    return npy_bytes(_runner().run_first(model, job["input"], digest=job["model"]))


def run_embed(payload: bytes) -> bytes:
    """{"texts": [...]} -> embeddings [n, 384] float32 as .npy."""
    job = pickle.loads(payload)
    return npy_bytes(_embedder().embed(job["texts"]))
