"""Run a job of any kind here, as a node would: the reference an audit compares with.

The kind plans, checks and prepares the job exactly as it does for a provider (its
``fields``, ``check`` and ``prepare``), against a host that keeps the batch's blobs in
a private directory; then the kind's own worker task runs in a thread of this
process. Nothing here knows one kind from another.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import BlobNotFound

__all__ = ["LocalRunner"]

_INLINE = 1 << 62


class LocalRunner:
    """Runs jobs in this process; blobs of the batches it ran live in a temporary
    directory until :meth:`close`."""

    metered = True
    max_blob_bytes = 1 << 40
    max_model_bytes = 1 << 40

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._lock = asyncio.Lock()  # one job at a time: the worker tasks keep globals

    async def run(self, plan: Any, part: Any) -> np.ndarray:
        """The output of one job on ``part`` of ``plan``'s batch, computed here."""
        workload = plan.workload
        async with self._lock:
            await plan.upload(self)
            fields = await plan.fields(part, self)
            spec = workload.parse(fields)
            await workload.check(spec, self)
            prepared = await workload.prepare(spec, self)
            module, name = prepared.task.split(":")
            task = getattr(importlib.import_module(module), name)
            raw = await asyncio.to_thread(task, prepared.payload)
        output: np.ndarray = np.load(io.BytesIO(raw), allow_pickle=False)
        return output

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- BlobSink --------------------------------------------------------------------
    def inline_room(self) -> int:
        return _INLINE

    async def put_blob(self, data: bytes, *, digest: str | None = None) -> str:
        digest = digest or hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.write_bytes(data)
        return digest

    async def put_shared(self, data: bytes, digest: str) -> None:
        await self.put_blob(data, digest=digest)

    # -- NodeHost --------------------------------------------------------------------
    def blob_size(self, digest: str) -> int:
        path = self._path(digest)
        if not path.exists():
            raise BlobNotFound(f"blob {digest} is not here")
        return path.stat().st_size

    def blob(self, digest: str) -> bytes:
        self.blob_size(digest)
        return self._path(digest).read_bytes()

    def blob_path(self, digest: str) -> str | None:
        self.blob_size(digest)
        return str(self._path(digest))

    def model_known(self, digest: str) -> bool:
        return False

    async def model_cost(self, digest: str) -> Any:
        from ..workloads._inspect_child import count

        return await asyncio.to_thread(count, self.blob_path(digest), None)

    def _path(self, digest: str) -> Path:
        if len(digest) != 64 or not set(digest) <= set("0123456789abcdef"):
            raise BlobNotFound(f"not a blob digest: {digest!r}")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="idlegrid-verify-"))
        return self._dir / digest
