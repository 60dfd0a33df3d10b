"""A blob store in a dict, for tests and for nodes that keep nothing on disk."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from .._exceptions import BlobNotFound
from ._base import DEFAULT_MAX_BLOB_BYTES, BlobStore, check_digest

__all__ = ["MemoryBlobStore"]


class MemoryBlobStore(BlobStore):
    """Blobs held in process memory; thread-safe. ``path()`` is always None."""

    def __init__(
        self,
        *,
        max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
        max_total_bytes: int | None = None,
    ) -> None:
        super().__init__(max_blob_bytes=max_blob_bytes, max_total_bytes=max_total_bytes)
        self._blobs: dict[str, bytes] = {}
        self._used = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryBlobStore(blobs={len(self._blobs)}, bytes={self._used})"

    def put_stream(self, chunks: Iterable[bytes], *, expected: str | None = None) -> str:
        intake = self._intake(expected)
        parts: list[bytes] = []
        for chunk in chunks:
            intake.feed(chunk)
            parts.append(bytes(chunk))
        digest = intake.finish()
        data = b"".join(parts)
        with self._lock:
            if digest not in self._blobs:
                self._check_quota(self._used, len(data))
                self._blobs[digest] = data
                self._used += len(data)
        return digest

    def delete(self, digest: str) -> bool:
        check_digest(digest)
        with self._lock:
            data = self._blobs.pop(digest, None)
            if data is None:
                return False
            self._used -= len(data)
            return True

    def get(self, digest: str) -> bytes:
        check_digest(digest)
        with self._lock:
            data = self._blobs.get(digest)
        if data is None:
            raise BlobNotFound(digest)
        return data

    def open(self, digest: str) -> BinaryIO:
        return io.BytesIO(self.get(digest))

    def has(self, digest: str) -> bool:
        check_digest(digest)
        with self._lock:
            return digest in self._blobs

    def size(self, digest: str) -> int:
        return len(self.get(digest))

    def path(self, digest: str) -> Path | None:
        self.get(digest)
        return None

    def usage(self) -> int:
        with self._lock:
            return self._used
