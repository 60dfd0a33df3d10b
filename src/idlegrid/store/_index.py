"""What a store knows about its blobs besides their bytes: size, owners, sharing, last use.

Two implementations of one small interface: ``MemoryIndex`` (dicts) for the memory
store, ``SqliteIndex`` (a SQLite file beside the blobs) for the file store, so that
owners and last use survive a restart and are shared by every process on one root.
The bytes stay the truth for *whether* a blob exists; the index says who it is for.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from .._exceptions import ConfigError

__all__ = ["BlobMeta", "Index", "MemoryIndex", "SqliteIndex"]


@dataclass(frozen=True)
class BlobMeta:
    """What the store recorded about one blob."""

    size: int
    #: the keys that stored it (uploaders, or the client a job output belongs to)
    owners: frozenset[str]
    #: whether someone published it by upload: readable by paying clients, not only owners
    shared: bool
    #: when it was last stored or read (unix seconds): eviction takes the oldest first
    used: float


class Index(ABC):
    """Thread-safe records of the blobs of one store."""

    @abstractmethod
    def add(self, digest: str, size: int, *, owner: str | None, shared: bool, now: float) -> None:
        """Record that ``digest`` is stored (again): add ``owner``, mark shared, set last use."""

    @abstractmethod
    def remove(self, digest: str) -> None:
        """Forget a blob and its owners."""

    @abstractmethod
    def meta(self, digest: str) -> BlobMeta | None:
        """The record of a blob, or None."""

    @abstractmethod
    def touch(self, digest: str, now: float) -> None:
        """Set a blob's last use."""

    @abstractmethod
    def owner_usage(self, owner: str) -> int:
        """Bytes of the blobs ``owner`` stored."""

    @abstractmethod
    def total(self) -> int:
        """Bytes of all recorded blobs."""

    @abstractmethod
    def oldest(self) -> list[tuple[str, int]]:
        """(digest, size) of every blob, least recently used first."""

    @abstractmethod
    def close(self) -> None:
        """Release what the index holds open."""


class MemoryIndex(Index):
    def __init__(self) -> None:
        self._meta: dict[str, BlobMeta] = {}
        self._lock = threading.Lock()

    def add(self, digest: str, size: int, *, owner: str | None, shared: bool, now: float) -> None:
        with self._lock:
            old = self._meta.get(digest)
            owners = old.owners if old is not None else frozenset()
            if owner is not None:
                owners = owners | {owner}
            was_shared = old is not None and old.shared
            self._meta[digest] = BlobMeta(size, owners, shared or was_shared, now)

    def remove(self, digest: str) -> None:
        with self._lock:
            self._meta.pop(digest, None)

    def meta(self, digest: str) -> BlobMeta | None:
        with self._lock:
            return self._meta.get(digest)

    def touch(self, digest: str, now: float) -> None:
        with self._lock:
            old = self._meta.get(digest)
            if old is not None:
                self._meta[digest] = BlobMeta(old.size, old.owners, old.shared, now)

    def owner_usage(self, owner: str) -> int:
        with self._lock:
            return sum(m.size for m in self._meta.values() if owner in m.owners)

    def total(self) -> int:
        with self._lock:
            return sum(m.size for m in self._meta.values())

    def oldest(self) -> list[tuple[str, int]]:
        with self._lock:
            items = sorted(self._meta.items(), key=lambda kv: kv[1].used)
        return [(d, m.size) for d, m in items]

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    shared INTEGER NOT NULL,
    used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS blobs_used ON blobs(used);
CREATE TABLE IF NOT EXISTS owners (
    digest TEXT NOT NULL REFERENCES blobs(digest) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    PRIMARY KEY (owner, digest)
);
CREATE INDEX IF NOT EXISTS owners_digest ON owners(digest);
"""


#: how long opening the index may wait for other processes opening it at once
OPEN_TIMEOUT_S = 30.0


class SqliteIndex(Index):
    """The index in one SQLite file (WAL, ``synchronous=NORMAL``).

    Records are metadata, not money: a power cut may lose the latest few, and the
    store rebuilds what is missing from the files at start (``FileBlobStore``).
    """

    def __init__(self, path: Path) -> None:
        # switching a new file to WAL takes an exclusive lock and answers "database is
        # locked" at once, without the busy timeout, while another process opens it
        # too: such an open is tried again, for up to OPEN_TIMEOUT_S
        deadline = time.monotonic() + OPEN_TIMEOUT_S
        while True:
            try:
                self._db = self._open(path)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise ConfigError(f"cannot open the blob index {path}: {exc}") from exc
                time.sleep(0.05)
            except sqlite3.Error as exc:
                raise ConfigError(f"cannot open the blob index {path}: {exc}") from exc
        self._lock = threading.Lock()

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
        except sqlite3.Error:
            db.close()
            raise
        return db

    def add(self, digest: str, size: int, *, owner: str | None, shared: bool, now: float) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO blobs (digest, size, shared, used) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT(digest) DO UPDATE SET size=excluded.size,"
                    " shared=MAX(shared, excluded.shared), used=excluded.used",
                    (digest, size, int(shared), now),
                )
                if owner is not None:
                    self._db.execute(
                        "INSERT OR IGNORE INTO owners (digest, owner) VALUES (?, ?)",
                        (digest, owner),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def remove(self, digest: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM blobs WHERE digest=?", (digest,))

    def meta(self, digest: str) -> BlobMeta | None:
        with self._lock:
            row = self._db.execute(
                "SELECT size, shared, used FROM blobs WHERE digest=?", (digest,)
            ).fetchone()
            if row is None:
                return None
            owners = self._db.execute(
                "SELECT owner FROM owners WHERE digest=?", (digest,)
            ).fetchall()
        return BlobMeta(int(row[0]), frozenset(o for (o,) in owners), bool(row[1]), float(row[2]))

    def touch(self, digest: str, now: float) -> None:
        with self._lock:
            self._db.execute("UPDATE blobs SET used=? WHERE digest=?", (now, digest))

    def owner_usage(self, owner: str) -> int:
        with self._lock:
            (total,) = self._db.execute(
                "SELECT COALESCE(SUM(b.size), 0) FROM owners o JOIN blobs b"
                " ON b.digest = o.digest WHERE o.owner=?",
                (owner,),
            ).fetchone()
        return int(total)

    def total(self) -> int:
        with self._lock:
            (total,) = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM blobs").fetchone()
        return int(total)

    def oldest(self) -> list[tuple[str, int]]:
        with self._lock:
            rows = self._db.execute("SELECT digest, size FROM blobs ORDER BY used").fetchall()
        return [(str(d), int(s)) for d, s in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
