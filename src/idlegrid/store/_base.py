"""The blob store interface: content addressed by lowercase hex sha256.

A blob's name is the sha256 of its bytes, so a stored blob never changes and
storing the same bytes twice stores them once. Every digest that comes in is
checked to be exactly 64 lowercase hex characters before it is used, so it can
never name anything but a blob (no path traversal).

Limits are explicit: ``max_blob_bytes`` bounds one blob (an upload is refused
as soon as it passes the limit) and ``max_total_bytes``, when set, bounds the
bytes stored in all (a put that would pass it is refused; putting bytes that
are already stored is always allowed).
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .._exceptions import BlobNotFound, InvalidInput, PayloadTooLarge

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_BLOB_BYTES",
    "BlobStore",
    "check_digest",
    "sha256_hex",
]

DEFAULT_MAX_BLOB_BYTES = 256 * 1024 * 1024
DEFAULT_CHUNK_BYTES = 1024 * 1024

_DIGEST = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    """The lowercase hex sha256 of ``data``: the name a store gives it."""
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: object) -> str:
    """Return ``digest`` if it is 64 lowercase hex characters; raise ``InvalidInput`` if not."""
    if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
        raise InvalidInput(f"not a sha256 digest (64 lowercase hex characters): {digest!r:.80}")
    return digest


class _Intake:
    """Hashes and counts the chunks of one upload; refuses it once it passes ``limit``."""

    def __init__(self, limit: int, expected: str | None) -> None:
        self._limit = limit
        self._expected = None if expected is None else check_digest(expected)
        self._hash = hashlib.sha256()
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise PayloadTooLarge(f"blob is larger than max_blob_bytes={self._limit}")
        self._hash.update(chunk)

    def finish(self) -> str:
        """The upload's sha256, checked against the expected one."""
        digest = self._hash.hexdigest()
        expected = self._expected
        if expected is not None and digest != expected:
            raise InvalidInput(f"blob hash mismatch: expected sha256 {expected}, got {digest}")
        return digest


def _check_limit(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{name} must be a non-negative int, got {value!r}")
    return value


class BlobStore(ABC):
    """Blobs named by their sha256; subclasses keep them in memory, on disk, ...

    Implementations are thread-safe. Reads of a blob never see a partial write.
    """

    def __init__(
        self,
        *,
        max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
        max_total_bytes: int | None = None,
    ) -> None:
        self._max_blob_bytes = _check_limit("max_blob_bytes", max_blob_bytes)
        self._max_total_bytes = (
            None if max_total_bytes is None else _check_limit("max_total_bytes", max_total_bytes)
        )

    @property
    def max_blob_bytes(self) -> int:
        """The most bytes one blob may have."""
        return self._max_blob_bytes

    @property
    def max_total_bytes(self) -> int | None:
        """The most bytes the store may hold in all, or None for no quota."""
        return self._max_total_bytes

    # -- writing ---------------------------------------------------------------

    def put(self, data: bytes, *, expected: str | None = None) -> str:
        """Store ``data`` and return its sha256.

        Raises ``InvalidInput`` (and stores nothing) if ``expected`` is given and is
        not the sha256 of ``data``, if ``data`` is larger than ``max_blob_bytes``, or
        if storing it would pass ``max_total_bytes``.
        """
        return self.put_stream((data,), expected=expected)

    @abstractmethod
    def put_stream(self, chunks: Iterable[bytes], *, expected: str | None = None) -> str:
        """Store the concatenation of ``chunks``, hashing as they come; return its sha256.

        The upload is abandoned, leaving nothing behind, as soon as it passes
        ``max_blob_bytes``; otherwise raises as ``put`` does.
        """

    @abstractmethod
    def delete(self, digest: str) -> bool:
        """Remove a blob; True if it was stored, False if it was not."""

    # -- reading ---------------------------------------------------------------

    def get(self, digest: str) -> bytes:
        """The bytes of a blob; ``BlobNotFound`` if it is not stored."""
        with self.open(digest) as stream:
            return stream.read()

    @abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """A binary reader over a blob (close it, or use ``with``); ``BlobNotFound`` if absent."""

    def iter_chunks(self, digest: str, chunk_size: int = DEFAULT_CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes of a blob in chunks of at most ``chunk_size``, for streaming downloads.

        Raises ``BlobNotFound`` at once if the blob is not stored. The blob is opened
        when iteration starts and closed when it ends or the iterator is closed.
        """
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise InvalidInput(f"chunk_size must be a positive int, got {chunk_size!r}")
        if not self.has(digest):
            raise BlobNotFound(digest)
        return self._chunks(digest, chunk_size)

    def _chunks(self, digest: str, chunk_size: int) -> Iterator[bytes]:
        with self.open(digest) as stream:
            while chunk := stream.read(chunk_size):
                yield chunk

    @abstractmethod
    def has(self, digest: str) -> bool:
        """Whether a blob is stored."""

    @abstractmethod
    def size(self, digest: str) -> int:
        """The length in bytes of a blob; ``BlobNotFound`` if it is not stored."""

    @abstractmethod
    def path(self, digest: str) -> Path | None:
        """A local file holding the blob (to mmap or load without copying), or None if
        this store keeps no files. ``BlobNotFound`` if the blob is not stored."""

    @abstractmethod
    def usage(self) -> int:
        """Total bytes of all stored blobs."""

    # -- for implementations ---------------------------------------------------

    def _intake(self, expected: str | None) -> _Intake:
        """Check ``expected`` and start hashing an upload under this store's blob limit."""
        return _Intake(self._max_blob_bytes, expected)

    def _check_quota(self, used: int, incoming: int) -> None:
        """Raise ``InvalidInput`` if adding ``incoming`` bytes to ``used`` passes the quota."""
        quota = self._max_total_bytes
        if quota is not None and used + incoming > quota:
            raise PayloadTooLarge(
                f"store is full: {used} bytes stored + {incoming} new > max_total_bytes={quota}"
            )
