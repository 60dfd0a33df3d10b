"""Edge inference (the factory case): a registered model on local data, locally.

The model is named by its sha256 and must be registered in the ``ModelRegistry``
(the chain read is the only thing that leaves, through the node's egress). Rows and
predictions stay on the machine; what the owner may publish is a *usage receipt*,
signed by the edge key: the model, the rows and units used, and the predictions'
hash, which binds the owner to what it ran without revealing it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import InvalidInput
from ..protocol import Account

__all__ = ["UsageReceipt", "infer_local"]


@dataclass(frozen=True)
class UsageReceipt:
    """What an edge inference may tell the world: no data, no prediction."""

    model: str
    dataset: str
    rows: int
    units: int
    predictions_hash: str
    edge: str
    at: int
    signature: str = ""

    def digest(self) -> bytes:
        body = {k: v for k, v in asdict(self).items() if k != "signature"}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def infer_local(
    model: bytes,
    x: np.ndarray,
    *,
    dataset: str,
    account: Account,
    output: Path,
) -> UsageReceipt:
    """Run ``model`` (ONNX bytes) on ``x``, write the predictions to ``output`` (``.npy``)
    and return the signed usage receipt."""
    from ..protocol import npy_bytes
    from ..protocol._fastsig import sign_digest
    from ..workloads import OnnxRunner, model_info

    digest = hashlib.sha256(model).hexdigest()
    info = model_info(model)
    if len(info.inputs) != 1:
        raise InvalidInput("edge inference runs models with one input")
    dtype = np.dtype(info.inputs[0].dtype)
    out = OnnxRunner(cache_size=1).run_first(model, np.ascontiguousarray(x, dtype=dtype))
    data = npy_bytes(out)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    flops = (info.flops_per_row or 0) * len(x)
    receipt = UsageReceipt(
        model=digest,
        dataset=dataset,
        rows=len(x),
        units=int(flops),
        predictions_hash=hashlib.sha256(data).hexdigest(),
        edge=account.address,
        at=int(time.time()),
    )
    signature = sign_digest(account.key, receipt.digest())
    return UsageReceipt(**{**receipt.as_dict(), "signature": "0x" + signature.hex()})
