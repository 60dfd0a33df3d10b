"""A blob store in a directory, shareable by threads and processes.

Layout under ``root``::

    ab/cdef...      the blob whose sha256 is "abcdef..." (two-level fan-out), mode 0o444
    .tmp/           uploads in progress, each in its own temp file
    .lock           taken (flock) around every commit, so quota checks hold across processes

An upload streams into a temp file in ``.tmp/`` (on the same filesystem as the
blobs), is hashed as it goes and, once complete and checked, is renamed into
place with ``os.replace``: readers see a whole blob or none. Writers of the same
blob race harmlessly, the first rename wins and the others drop their copy.
A process killed mid-upload can leave a file in ``.tmp/``; nothing reads it, and
it is safe to remove once no upload is running.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .._exceptions import BlobNotFound, ConfigError
from ._base import DEFAULT_MAX_BLOB_BYTES, BlobStore, check_digest

__all__ = ["FileBlobStore"]

_HEX = frozenset("0123456789abcdef")
_TMP_DIR = ".tmp"
_LOCK_FILE = ".lock"
_READ_ONLY = 0o444


class FileBlobStore(BlobStore):
    """Blobs as read-only files under ``root``; thread-safe and safe across processes.

    ``fsync=True`` flushes each blob and its directory to disk before ``put``
    returns, so a stored blob survives a power cut (slower).
    """

    def __init__(
        self,
        root: Path | str,
        *,
        max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
        max_total_bytes: int | None = None,
        fsync: bool = False,
    ) -> None:
        super().__init__(max_blob_bytes=max_blob_bytes, max_total_bytes=max_total_bytes)
        self._root = Path(root)
        self._tmp = self._root / _TMP_DIR
        self._fsync = fsync
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot use {self._root} as a blob store: {exc}") from exc

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The directory the blobs live in."""
        return self._root

    # -- writing ---------------------------------------------------------------

    def put_stream(self, chunks: Iterable[bytes], *, expected: str | None = None) -> str:
        intake = self._intake(expected)
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="upload-", suffix=".part")
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    intake.feed(chunk)
                    out.write(chunk)
                if self._fsync:
                    out.flush()
                    os.fsync(out.fileno())
            digest = intake.finish()
            tmp.chmod(_READ_ONLY)
            moved = self._commit(tmp, digest, intake.size)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if not moved:
            tmp.unlink()  # the blob was already stored
        elif self._fsync:
            _fsync_dir(self._blob_path(digest).parent)
        return digest

    def _commit(self, tmp: Path, digest: str, size: int) -> bool:
        """Rename ``tmp`` into place unless the blob is already stored; True if renamed.

        Raises ``InvalidInput`` if storing it would pass the quota.
        """
        final = self._blob_path(digest)
        with self._locked():
            if final.is_file():
                return False
            if self.max_total_bytes is not None:
                self._check_quota(self.usage(), size)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
            return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A fresh open file per holder: flock then serialises threads as well as processes.
        fd = os.open(self._root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def delete(self, digest: str) -> bool:
        try:
            self._blob_path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    # -- reading ---------------------------------------------------------------

    def open(self, digest: str) -> BinaryIO:
        try:
            return self._blob_path(digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def has(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self._blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def path(self, digest: str) -> Path | None:
        path = self._blob_path(digest)
        if not path.is_file():
            raise BlobNotFound(digest)
        return path

    def usage(self) -> int:
        total = 0
        with os.scandir(self._root) as fans:
            for fan in fans:
                if not (len(fan.name) == 2 and _is_hex(fan.name) and fan.is_dir()):
                    continue
                with os.scandir(fan.path) as blobs:
                    for blob in blobs:
                        if len(blob.name) == 62 and _is_hex(blob.name):
                            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                                total += blob.stat().st_size
        return total

    def _blob_path(self, digest: str) -> Path:
        check_digest(digest)
        return self._root / digest[:2] / digest[2:]


def _is_hex(name: str) -> bool:
    return _HEX.issuperset(name)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
