"""A blob store in a directory, shareable by threads and processes.

Layout under ``root``::

    ab/cdef...      the blob whose sha256 is "abcdef..." (two-level fan-out), mode 0o444
    .tmp/           uploads in progress, each in its own temp file, locked (flock) by its writer
    .lock           taken (flock) around every commit, so quota checks hold across processes
    .index.sqlite   owners, sharing and last use of each blob (see ``_index.py``)

An upload streams into a temp file in ``.tmp/`` (on the same filesystem as the
blobs), is hashed as it goes and, once complete and checked, is flushed to disk
and renamed into place with ``os.replace``, and the directory is flushed too:
readers see a whole blob or none, and a stored blob survives a power cut.
Storing bytes that are already there renames the new copy over the old one,
which mends a copy that went bad on disk.

A process killed mid-upload leaves its temp file behind; its lock dies with it.
Opening a store sweeps every temp file that no live writer holds locked, and
brings the index in line with the files (a blob found without a record is
recorded as shared, with no owner, last used when it was written).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .._exceptions import BlobCorrupt, BlobNotFound, ConfigError
from ._base import DEFAULT_MAX_BLOB_BYTES, BlobStore, check_digest, sha256_hex
from ._index import Index, SqliteIndex

__all__ = ["FileBlobStore"]

_HEX = frozenset("0123456789abcdef")
_TMP_DIR = ".tmp"
_LOCK_FILE = ".lock"
_INDEX_FILE = ".index.sqlite"
_READ_ONLY = 0o444

_Identity = tuple[int, int, int, int]


class FileBlobStore(BlobStore):
    """Blobs as read-only files under ``root``; thread-safe and safe across processes.

    ``fsync=True`` (the default) flushes each blob and its directory to disk before
    ``put`` returns, so a stored blob survives a power cut. ``swept`` counts the
    stale temp files removed when the store was opened.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
        max_total_bytes: int | None = None,
        evict: bool = False,
        fsync: bool = True,
    ) -> None:
        super().__init__(
            max_blob_bytes=max_blob_bytes, max_total_bytes=max_total_bytes, evict=evict
        )
        self._root = Path(root)
        self._tmp = self._root / _TMP_DIR
        self._fsync = fsync
        self._verified: dict[str, _Identity] = {}
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot use {self._root} as a blob store: {exc}") from exc
        self._records = SqliteIndex(self._root / _INDEX_FILE)
        self.swept = self._sweep()
        self._reconcile()

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The directory the blobs live in."""
        return self._root

    @property
    def _index(self) -> Index:
        return self._records

    def close(self) -> None:
        """Close the index (the store is not used afterwards)."""
        self._records.close()

    # -- writing ---------------------------------------------------------------

    def put_stream(
        self,
        chunks: Iterable[bytes],
        *,
        expected: str | None = None,
        owner: str | None = None,
        shared: bool = False,
    ) -> str:
        intake = self._intake(expected)
        with self._locked():  # created and locked at once: a sweep never sees it unlocked
            fd, name = tempfile.mkstemp(dir=self._tmp, prefix="upload-", suffix=".part")
            fcntl.flock(fd, fcntl.LOCK_EX)  # a sweep leaves a held file alone
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    intake.feed(chunk)
                    out.write(chunk)
                out.flush()
                if self._fsync:
                    os.fsync(out.fileno())
                digest = intake.finish()
                tmp.chmod(_READ_ONLY)
                self._commit(tmp, digest, intake.size, owner, shared)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest

    def _commit(self, tmp: Path, digest: str, size: int, owner: str | None, shared: bool) -> None:
        """Rename ``tmp`` into place (over a copy already there) and record it.

        Raises ``PayloadTooLarge`` if it does not fit and eviction cannot make room.
        """
        final = self._blob_path(digest)
        with self._locked():
            for victim in self._room(size, replacing=final.is_file()):
                self._blob_path(victim).unlink(missing_ok=True)
                self._records.remove(victim)
                self._verified.pop(victim, None)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
            if self._fsync:
                _fsync_dir(final.parent)
            self._record(digest, size, owner, shared)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A fresh open file per holder: flock then serialises threads as well as processes.
        fd = os.open(self._root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _drop(self, digest: str) -> bool:
        self._verified.pop(digest, None)
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

    def get(self, digest: str) -> bytes:
        with self.open(digest) as stream:
            seen = _identity(os.fstat(stream.fileno()))
            data = stream.read()
        actual = sha256_hex(data)
        if actual != digest:
            self._drop_bad(digest, seen, actual)
        self._verified[digest] = seen
        self._touch(digest)
        return data

    def verify(self, digest: str) -> None:
        path = self._blob_path(digest)
        try:
            seen = _identity(path.stat())
        except FileNotFoundError:
            raise BlobNotFound(digest) from None
        if self._verified.get(digest) != seen:
            self.get(digest)

    def _drop_bad(self, digest: str, seen: _Identity, actual: str) -> None:
        """Remove a corrupt blob, unless a good copy replaced it meanwhile; raise BlobCorrupt."""
        with self._locked():
            path = self._blob_path(digest)
            with contextlib.suppress(FileNotFoundError):
                if _identity(path.stat())[0] == seen[0]:
                    self.delete(digest)
        raise BlobCorrupt(digest, actual)

    def _corrupt(self, digest: str, actual: str) -> None:
        with self._locked():
            self.delete(digest)
        raise BlobCorrupt(digest, actual)

    def has(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self._blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def path(self, digest: str) -> Path | None:
        self.verify(digest)
        self._touch(digest)
        return self._blob_path(digest)

    def _blob_path(self, digest: str) -> Path:
        check_digest(digest)
        return self._root / digest[:2] / digest[2:]

    # -- at start ----------------------------------------------------------------

    def _sweep(self) -> int:
        """Remove temp files no writer holds (left by a killed upload); how many."""
        swept = 0
        with self._locked():
            entries = list(self._tmp.iterdir())
        for entry in entries:
            try:
                fd = os.open(entry, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # an upload in progress
            finally:
                os.close(fd)
            entry.unlink(missing_ok=True)
            swept += 1
        return swept

    def _reconcile(self) -> None:
        """Record blobs found without a record; forget records without a blob."""
        with self._locked():  # the scan too: a blob committed meanwhile keeps its record
            on_disk = dict(self._files())
            recorded = {d for d, _ in self._records.oldest()}
            for digest in recorded - on_disk.keys():
                self._records.remove(digest)
            for digest in on_disk.keys() - recorded:
                size, mtime = on_disk[digest]
                self._records.add(digest, size, owner=None, shared=True, now=mtime)

    def _files(self) -> Iterator[tuple[str, tuple[int, float]]]:
        with os.scandir(self._root) as fans:
            for fan in fans:
                if not (len(fan.name) == 2 and _is_hex(fan.name) and fan.is_dir()):
                    continue
                with os.scandir(fan.path) as blobs:
                    for blob in blobs:
                        if len(blob.name) == 62 and _is_hex(blob.name):
                            with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                                st = blob.stat()
                                yield fan.name + blob.name, (st.st_size, st.st_mtime)


def _identity(st: os.stat_result) -> _Identity:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _is_hex(name: str) -> bool:
    return _HEX.issuperset(name)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
