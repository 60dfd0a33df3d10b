"""A blob store in a dict, for tests and for nodes that keep nothing on disk."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from .._exceptions import BlobNotFound
from ._base import DEFAULT_MAX_BLOB_BYTES, BlobStore, check_digest
from ._index import Index, MemoryIndex

__all__ = ["MemoryBlobStore"]


class MemoryBlobStore(BlobStore):
    """Blobs held in process memory; thread-safe. ``path()`` is always None."""

    def __init__(
        self,
        *,
        max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
        max_total_bytes: int | None = None,
        evict: bool = False,
    ) -> None:
        super().__init__(
            max_blob_bytes=max_blob_bytes, max_total_bytes=max_total_bytes, evict=evict
        )
        self._blobs: dict[str, bytes] = {}
        self._records = MemoryIndex()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryBlobStore(blobs={len(self._blobs)}, bytes={self.usage()})"

    @property
    def _index(self) -> Index:
        return self._records

    def put_stream(
        self,
        chunks: Iterable[bytes],
        *,
        expected: str | None = None,
        owner: str | None = None,
        shared: bool = False,
    ) -> str:
        intake = self._intake(expected)
        parts: list[bytes] = []
        for chunk in chunks:
            intake.feed(chunk)
            parts.append(bytes(chunk))
        digest = intake.finish()
        data = b"".join(parts)
        with self._lock:
            for victim in self._room(len(data), replacing=digest in self._blobs):
                self._blobs.pop(victim, None)
                self._records.remove(victim)
            self._blobs[digest] = data  # replaces a copy that went bad
            self._record(digest, len(data), owner, shared)
        return digest

    def _drop(self, digest: str) -> bool:
        with self._lock:
            return self._blobs.pop(digest, None) is not None

    def open(self, digest: str) -> BinaryIO:
        check_digest(digest)
        with self._lock:
            data = self._blobs.get(digest)
        if data is None:
            raise BlobNotFound(digest)
        return io.BytesIO(data)

    def has(self, digest: str) -> bool:
        check_digest(digest)
        with self._lock:
            return digest in self._blobs

    def size(self, digest: str) -> int:
        check_digest(digest)
        with self._lock:
            data = self._blobs.get(digest)
        if data is None:
            raise BlobNotFound(digest)
        return len(data)

    def path(self, digest: str) -> Path | None:
        self.verify(digest)
        return None
