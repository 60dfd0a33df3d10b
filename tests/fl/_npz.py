"""Helpers the round-inputs tests share: deterministic addresses, and a published
``.npz`` taken apart and put back with a member or its meta changed (the hostile files)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from idlegrid.fl._inputs import _npy, _zip
from idlegrid.protocol import checksum


def address(i: int) -> str:
    """The ``i``-th test client's checksummed address (ascending with ``i``)."""
    return checksum(f"0x{(i + 1) * 0xABCDEF0123456789ABCDEF:040x}")


def members(blob: bytes) -> dict[str, bytes]:
    """The zip's members by file name."""
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def tamper(
    blob: bytes,
    meta: Callable[[dict[str, Any]], None] | None = None,
    **arrays: np.ndarray | bytes,
) -> bytes:
    """``blob`` with its meta changed by ``meta`` and members replaced (``.npy`` bytes
    or arrays)."""
    got = members(blob)
    if meta is not None:
        doc = json.loads(np.load(io.BytesIO(got["meta.npy"])).tobytes())
        meta(doc)
        got["meta.npy"] = _npy(np.frombuffer(json.dumps(doc).encode(), np.uint8))
    for name, new in arrays.items():
        got[f"{name}.npy"] = new if isinstance(new, bytes) else _npy(new)
    return _zip(got)
