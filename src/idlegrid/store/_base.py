"""The blob store interface: content addressed by lowercase hex sha256.

A blob's name is the sha256 of its bytes, so a stored blob never changes and
storing the same bytes twice stores them once. Every digest that comes in is
checked to be exactly 64 lowercase hex characters before it is used, so it can
never name anything but a blob (no path traversal).

Limits are explicit: ``max_blob_bytes`` bounds one blob (an upload is refused
as soon as it passes the limit) and ``max_total_bytes``, when set, bounds the
bytes stored in all: a put that would pass it is refused, or, with ``evict=True``,
makes room by removing the least recently used blobs that no one has pinned.
Putting bytes that are already stored never needs room.

Every blob records who stored it (``owner``), whether it was published
(``shared``: uploaded for anyone paying to use) and when it was last used
(``meta``); ``owner_usage`` adds up what one key stores, for quotas. Reads check
the hash: a blob whose bytes no longer match its name is removed and reported
as ``BlobCorrupt`` (a ``BlobNotFound``), and storing the right bytes again
replaces it. A job pins the blobs it uses (``pin``) so eviction leaves them alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .._exceptions import BlobCorrupt, BlobNotFound, InvalidInput, PayloadTooLarge
from ._index import BlobMeta, Index

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_BLOB_BYTES",
    "BlobMeta",
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
    Subclasses provide the bytes (``_write``-side ``put_stream``, ``open``, ``_drop``,
    ``has``, ``size``, ``path``) and an :class:`Index`; this class keeps the records,
    the pins, the quota and eviction.
    """

    def __init__(
        self,
        *,
        max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
        max_total_bytes: int | None = None,
        evict: bool = False,
    ) -> None:
        self._max_blob_bytes = _check_limit("max_blob_bytes", max_blob_bytes)
        self._max_total_bytes = (
            None if max_total_bytes is None else _check_limit("max_total_bytes", max_total_bytes)
        )
        self._evict = evict
        self._pins: dict[str, int] = {}
        self._pins_lock = threading.Lock()
        self._clock = 0.0
        self._clock_lock = threading.Lock()

    @property
    @abstractmethod
    def _index(self) -> Index:
        """The records of this store's blobs."""

    @property
    def max_blob_bytes(self) -> int:
        """The most bytes one blob may have."""
        return self._max_blob_bytes

    @property
    def max_total_bytes(self) -> int | None:
        """The most bytes the store may hold in all, or None for no quota."""
        return self._max_total_bytes

    # -- writing ---------------------------------------------------------------

    def put(
        self,
        data: bytes,
        *,
        expected: str | None = None,
        owner: str | None = None,
        shared: bool = False,
    ) -> str:
        """Store ``data`` for ``owner`` and return its sha256.

        ``owner`` (an address) is recorded beside the blob's other owners; ``shared``
        marks it published (readable by more than its owners, as the node decides).
        Storing bytes that are already stored replaces them (mending a corrupt copy).

        Raises ``InvalidInput`` (and stores nothing) if ``expected`` is given and is
        not the sha256 of ``data``, ``PayloadTooLarge`` if ``data`` is larger than
        ``max_blob_bytes`` or storing it would pass ``max_total_bytes`` (with
        ``evict``: if even evicting every unpinned blob would not make room).
        """
        return self.put_stream((data,), expected=expected, owner=owner, shared=shared)

    @abstractmethod
    def put_stream(
        self,
        chunks: Iterable[bytes],
        *,
        expected: str | None = None,
        owner: str | None = None,
        shared: bool = False,
    ) -> str:
        """Store the concatenation of ``chunks``, hashing as they come; return its sha256.

        The upload is abandoned, leaving nothing behind, as soon as it passes
        ``max_blob_bytes``; otherwise raises as ``put`` does.
        """

    def delete(self, digest: str) -> bool:
        """Remove a blob; True if it was stored, False if it was not."""
        check_digest(digest)
        found = self._drop(digest)
        self._index.remove(digest)
        return found

    @abstractmethod
    def _drop(self, digest: str) -> bool:
        """Remove a blob's bytes; True if they were there."""

    # -- reading ---------------------------------------------------------------

    def get(self, digest: str) -> bytes:
        """The bytes of a blob, checked against its name.

        ``BlobNotFound`` if it is not stored; ``BlobCorrupt`` (a ``BlobNotFound``) if
        its bytes no longer match, in which case it is removed.
        """
        with self.open(digest) as stream:
            data = stream.read()
        actual = sha256_hex(data)
        if actual != digest:
            self._corrupt(digest, actual)
        self._touch(digest)
        return data

    @abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """A binary reader over a blob's raw bytes (close it, or use ``with``).

        ``BlobNotFound`` if absent. The bytes are not checked: use ``get``,
        ``iter_chunks`` or ``verify`` where they must match.
        """

    def verify(self, digest: str) -> None:
        """Check a blob's bytes against its name; ``BlobCorrupt`` (and removed) if they differ."""
        self.get(digest)

    def iter_chunks(self, digest: str, chunk_size: int = DEFAULT_CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes of a blob in chunks of at most ``chunk_size``, for streaming downloads.

        Raises ``BlobNotFound`` at once if the blob is not stored. The blob is opened
        when iteration starts and closed when it ends or the iterator is closed. The
        bytes are hashed as they go: if they do not match, the blob is removed and
        the iteration ends with ``BlobCorrupt`` instead of its last chunk.
        """
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise InvalidInput(f"chunk_size must be a positive int, got {chunk_size!r}")
        if not self.has(digest):
            raise BlobNotFound(digest)
        return self._chunks(digest, chunk_size)

    def _chunks(self, digest: str, chunk_size: int) -> Iterator[bytes]:
        hasher = hashlib.sha256()
        with self.open(digest) as stream:
            chunk = stream.read(chunk_size)
            while chunk:
                hasher.update(chunk)
                following = stream.read(chunk_size)
                if not following and hasher.hexdigest() != digest:
                    self._corrupt(digest, hasher.hexdigest())
                yield chunk
                chunk = following
            if hasher.hexdigest() != digest:  # an empty file under a non-empty name
                self._corrupt(digest, hasher.hexdigest())
        self._touch(digest)

    @abstractmethod
    def has(self, digest: str) -> bool:
        """Whether a blob is stored."""

    @abstractmethod
    def size(self, digest: str) -> int:
        """The length in bytes of a blob; ``BlobNotFound`` if it is not stored."""

    @abstractmethod
    def path(self, digest: str) -> Path | None:
        """A local file holding the blob, checked against its name (to mmap or load
        without copying), or None if this store keeps no files. ``BlobNotFound`` if
        the blob is not stored, ``BlobCorrupt`` if it no longer matches."""

    def usage(self) -> int:
        """Total bytes of all stored blobs."""
        return self._index.total()

    # -- records ---------------------------------------------------------------

    def meta(self, digest: str) -> BlobMeta:
        """Who stored a blob, whether it is shared, its size and last use.

        ``BlobNotFound`` if it is not stored.
        """
        check_digest(digest)
        meta = self._index.meta(digest)
        if meta is None or not self.has(digest):
            raise BlobNotFound(digest)
        return meta

    def owner_usage(self, owner: str) -> int:
        """Bytes of the blobs ``owner`` stored (a blob two keys stored counts for both)."""
        return self._index.owner_usage(owner)

    @contextlib.contextmanager
    def pin(self, *digests: str | None) -> Iterator[None]:
        """Keep these blobs from eviction while the ``with`` block runs (None is skipped).

        Pins are held by this process: a job pins the model and input it runs on.
        """
        held = [check_digest(d) for d in digests if d is not None]
        with self._pins_lock:
            for d in held:
                self._pins[d] = self._pins.get(d, 0) + 1
        try:
            yield
        finally:
            with self._pins_lock:
                for d in held:
                    left = self._pins[d] - 1
                    if left:
                        self._pins[d] = left
                    else:
                        del self._pins[d]

    def pinned(self, digest: str) -> bool:
        """Whether a blob is pinned in this process."""
        with self._pins_lock:
            return digest in self._pins

    # -- for implementations ---------------------------------------------------

    def _intake(self, expected: str | None) -> _Intake:
        """Check ``expected`` and start hashing an upload under this store's blob limit."""
        return _Intake(self._max_blob_bytes, expected)

    def _now(self) -> float:
        """Wall-clock time, strictly increasing within this store: uses never tie."""
        with self._clock_lock:
            self._clock = max(time.time(), self._clock + 1e-6)
            return self._clock

    def _record(self, digest: str, size: int, owner: str | None, shared: bool) -> None:
        self._index.add(digest, size, owner=owner, shared=shared, now=self._now())

    def _touch(self, digest: str) -> None:
        """Record a read as the blob's last use."""
        self._index.touch(digest, self._now())

    def _corrupt(self, digest: str, actual: str) -> None:
        """Remove a blob whose bytes hash to ``actual``, and raise ``BlobCorrupt``."""
        self.delete(digest)
        raise BlobCorrupt(digest, actual)

    def _room(self, incoming: int, *, replacing: bool) -> list[str]:
        """The blobs to evict so that ``incoming`` new bytes fit; raise if they cannot.

        Call with the store's commit lock held. ``replacing``: the bytes are already
        stored, so they need no room.
        """
        quota = self._max_total_bytes
        if quota is None or replacing:
            return []
        used = self._index.total()
        if used + incoming <= quota:
            return []
        full = f"store is full: {used} bytes stored + {incoming} new > max_total_bytes={quota}"
        if not self._evict or incoming > quota:
            raise PayloadTooLarge(full)
        need = used + incoming - quota
        victims: list[str] = []
        for digest, size in self._index.oldest():
            if self.pinned(digest):
                continue
            victims.append(digest)
            need -= size
            if need <= 0:
                return victims
        raise PayloadTooLarge(f"{full}, and the blobs in use are pinned")
