"""The provider's SQLite journal: jobs, receipts and vouchers.

A node that restarts keeps every voucher it was given and redeems it; a
duplicate job id is refused. Writes are small transactions in WAL mode.

Money records are durable: a finished job (its receipt), a voucher and a
redemption are committed with ``synchronous=FULL``, so they are on disk before
the call returns, and so before the reply that depends on them is sent; a power
cut cannot lose them. Starting a job or marking it failed commits with
``synchronous=NORMAL`` (no flush of its own: the next durable commit flushes it
too): a power cut may lose such a record, and with it nothing owed.

A job that was running when the node stopped (a crash, a kill) never finishes;
``reconcile`` marks such jobs failed as abandoned when the node starts, so their
sequence numbers are free again. Nothing was delivered for them, so nothing is
owed; the reservations they held lived in memory and died with the process.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .._exceptions import DuplicateJob
from ..chain import ChannelTerms
from ..protocol import Signature, Voucher

__all__ = ["ABANDONED", "DuplicateJob", "JobOutcome", "JobRecord", "Journal", "StoredVoucher"]

#: the error recorded for a job a previous run left running
ABANDONED = "Abandoned: the node stopped while the job ran"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    id BLOB PRIMARY KEY,
    client TEXT NOT NULL,
    provider TEXT NOT NULL,
    deposit TEXT NOT NULL,
    expiry INTEGER NOT NULL,
    salt TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id BLOB PRIMARY KEY,
    channel BLOB NOT NULL REFERENCES channels(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,           -- running | done | failed
    units INTEGER,
    amount TEXT,
    result_hash BLOB,
    leaf BLOB,
    error TEXT,
    created REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_seq ON jobs(channel, seq) WHERE status != 'failed';
CREATE TABLE IF NOT EXISTS vouchers (
    channel BLOB PRIMARY KEY REFERENCES channels(id),
    amount TEXT NOT NULL,
    jobs INTEGER NOT NULL,
    units TEXT NOT NULL,
    root BLOB NOT NULL,
    signature BLOB NOT NULL,
    received REAL NOT NULL,
    redeemed_amount TEXT NOT NULL DEFAULT '0',
    redeemed_jobs INTEGER NOT NULL DEFAULT 0,
    redeemed_units TEXT NOT NULL DEFAULT '0',
    redeemed_at REAL,
    redeem_tx TEXT
);
"""
#: columns added after the first journals were written: (table, column, declaration)
_ADDED = (
    # the part of a job's amount owed as a royalty, and the model it is owed to
    ("jobs", "royalty_model", "BLOB"),
    ("jobs", "royalty", "TEXT NOT NULL DEFAULT '0'"),
    # a voucher's royalty lines, JSON [[model hex, amount], ...] ('' for none)
    ("vouchers", "royalties", "TEXT NOT NULL DEFAULT ''"),
)


@dataclass(frozen=True)
class StoredVoucher:
    """The latest voucher of a channel, with what of it is already redeemed."""

    terms: ChannelTerms
    voucher: Voucher
    signature: Signature
    received: float
    redeemed_amount: int

    @property
    def pending(self) -> int:
        """Tokens not yet redeemed on chain."""
        return self.voucher.amount - self.redeemed_amount


#: what became of a job: ok; failed (it ran and failed, billed); not_run (refused by the
#: executor, or abandoned by a previous run: nothing owed); running
JobOutcome = Literal["ok", "failed", "not_run", "running"]


@dataclass(frozen=True)
class JobRecord:
    """A job as the journal has it (``Journal.recent_jobs``)."""

    job_id: bytes
    kind: str
    outcome: JobOutcome
    #: billed units and tokens (wei), once it ran; None before
    units: int | None
    amount: int | None
    #: when the node took it (unix seconds)
    created: float


class Journal:
    """Thread-safe journal on one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        for table, column, declaration in _ADDED:  # a journal from an older version
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _durable(self) -> Iterator[None]:
        """Commit what runs inside with ``synchronous=FULL`` (call with the lock held)."""
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")

    def reconcile(self) -> int:
        """Mark every job still recorded as running failed (abandoned); how many.

        Call at start, before any job runs: a job recorded as running was left by a
        previous run that stopped without finishing it.
        """
        with self._lock, self._durable():
            cursor = self._db.execute(
                "UPDATE jobs SET status='failed', error=? WHERE status='running'", (ABANDONED,)
            )
        return int(cursor.rowcount)

    # -- jobs ---------------------------------------------------------------------
    def begin_job(self, job_id: bytes, terms: ChannelTerms, seq: int, kind: str) -> None:
        """Record a job as running; DuplicateJob if its id or its channel seq is taken."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.execute(
                    "INSERT OR IGNORE INTO channels VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        terms.id,
                        terms.client,
                        terms.provider,
                        str(terms.deposit),
                        terms.expiry,
                        str(terms.salt),
                    ),
                )
                self._db.execute(
                    "INSERT INTO jobs (job_id, channel, seq, kind, status, created)"
                    " VALUES (?, ?, ?, ?, 'running', ?)",
                    (job_id, terms.id, seq, kind, time.time()),
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._db.execute("ROLLBACK")
                what = (
                    "job id" if "job_id" in str(exc) else f"sequence number {seq} on this channel"
                )
                raise DuplicateJob(f"duplicate {what}: {job_id.hex()}") from exc

    def finish_job(
        self,
        job_id: bytes,
        *,
        units: int,
        amount: int,
        result_hash: bytes,
        leaf: bytes,
        error: str | None = None,
        royalty: tuple[bytes, int] | None = None,
    ) -> None:
        """Record a job's receipt, durably: the client's voucher will cover it.

        ``error``: the job failed in the worker and is billed all the same (its receipt
        counts like any other); the error is kept beside it. ``royalty``: the part of
        ``amount`` owed to a model's lineage, and the model.
        """
        model, owed = royalty if royalty is not None else (None, 0)
        with self._lock, self._durable():
            self._db.execute(
                "UPDATE jobs SET status='done', units=?, amount=?, result_hash=?, leaf=?,"
                " error=?, royalty_model=?, royalty=? WHERE job_id=?",
                (
                    units,
                    str(amount),
                    result_hash,
                    leaf,
                    error and error[:500],
                    model,
                    str(owed),
                    job_id,
                ),
            )

    def fail_job(self, job_id: bytes, error: str) -> None:
        """Mark a job failed; its sequence number may be used again."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status='failed', error=? WHERE job_id=?", (error[:500], job_id)
            )

    def receipts(self, channel: bytes) -> list[tuple[int, bytes, int, int]]:
        """(seq, leaf, units, amount) of the channel's finished jobs, by seq."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, leaf, units, amount FROM jobs"
                " WHERE channel=? AND status='done' ORDER BY seq",
                (channel,),
            ).fetchall()
        return [(int(s), bytes(leaf), int(u), int(a)) for s, leaf, u, a in rows]

    def royalties(self, channel: bytes) -> dict[int, tuple[bytes, int]]:
        """seq -> (model, royalty) of the channel's finished jobs that owe one."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, royalty_model, royalty FROM jobs WHERE channel=? AND"
                " status='done' AND royalty_model IS NOT NULL AND royalty != '0'",
                (channel,),
            ).fetchall()
        return {int(s): (bytes(m), int(r)) for s, m, r in rows}

    def channels(self) -> list[ChannelTerms]:
        """The terms of every channel a job was run or a voucher taken on."""
        with self._lock:
            rows = self._db.execute(
                "SELECT client, provider, deposit, expiry, salt FROM channels"
            ).fetchall()
        return [ChannelTerms(c, p, int(d), int(e), int(s)) for c, p, d, e, s in rows]

    def delivered(self, channel: bytes) -> tuple[int, int]:
        """(jobs done, tokens owed for them) on a channel."""
        with self._lock:
            count, owed = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(CAST(amount AS INTEGER)), 0) FROM jobs"
                " WHERE channel=? AND status='done'",
                (channel,),
            ).fetchone()
        return int(count), int(owed)

    def recent_jobs(self, limit: int) -> list[JobRecord]:
        """The last ``limit`` jobs the node took, the latest first (by insertion: no scan)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, kind, status, error IS NOT NULL, units, amount, created"
                " FROM jobs ORDER BY rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
        outcomes: dict[str, JobOutcome] = {"running": "running", "failed": "not_run"}
        return [
            JobRecord(
                bytes(job_id),
                str(kind),
                ("failed" if erred else "ok") if status == "done" else outcomes[status],
                None if units is None else int(units),
                None if amount is None else int(amount),
                float(created),
            )
            for job_id, kind, status, erred, units, amount, created in rows
        ]

    def job_status(self, job_id: bytes) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT status FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return None if row is None else str(row[0])

    # -- vouchers -----------------------------------------------------------------
    def record_voucher(self, terms: ChannelTerms, voucher: Voucher, signature: Signature) -> bool:
        """Keep ``voucher`` if it is newer than the stored one; return whether it was kept."""
        with self._lock:
            row = self._db.execute(
                "SELECT amount, jobs FROM vouchers WHERE channel=?", (terms.id,)
            ).fetchone()
            if row is not None and (int(row[0]), int(row[1])) >= (voucher.amount, voucher.jobs):
                return False
            with self._durable():
                self._store_voucher(terms, voucher, signature)
            return True

    def _store_voucher(self, terms: ChannelTerms, voucher: Voucher, signature: Signature) -> None:
        self._db.execute("BEGIN")
        self._db.execute(
            "INSERT OR IGNORE INTO channels VALUES (?, ?, ?, ?, ?, ?)",
            (
                terms.id,
                terms.client,
                terms.provider,
                str(terms.deposit),
                terms.expiry,
                str(terms.salt),
            ),
        )
        self._db.execute(
            "INSERT INTO vouchers (channel, amount, jobs, units, root, signature, received,"
            " royalties) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(channel) DO UPDATE SET amount=excluded.amount, jobs=excluded.jobs,"
            " units=excluded.units, root=excluded.root, signature=excluded.signature,"
            " received=excluded.received, royalties=excluded.royalties",
            (
                terms.id,
                str(voucher.amount),
                voucher.jobs,
                str(voucher.units),
                voucher.receipts_root,
                signature.to_bytes(),
                time.time(),
                json.dumps([[m.hex(), str(a)] for m, a in voucher.royalties])
                if voucher.royalties
                else "",
            ),
        )
        self._db.execute("COMMIT")

    def latest_voucher(self, channel: bytes) -> StoredVoucher | None:
        rows = self._vouchers("WHERE v.channel=?", (channel,))
        return rows[0] if rows else None

    def unredeemed(self) -> list[StoredVoucher]:
        """Latest vouchers with something not yet redeemed on chain."""
        return self._vouchers(
            "WHERE CAST(v.amount AS INTEGER) > CAST(v.redeemed_amount AS INTEGER)"
            " OR v.jobs > v.redeemed_jobs",
            (),
        )

    def mark_redeemed(self, channel: bytes, voucher: Voucher, tx_hash: str) -> None:
        with self._lock, self._durable():
            self._db.execute(
                "UPDATE vouchers SET redeemed_amount=?, redeemed_jobs=?, redeemed_units=?,"
                " redeemed_at=?, redeem_tx=? WHERE channel=?",
                (
                    str(voucher.amount),
                    voucher.jobs,
                    str(voucher.units),
                    time.time(),
                    tx_hash,
                    channel,
                ),
            )

    def _vouchers(self, where: str, args: tuple[object, ...]) -> list[StoredVoucher]:
        with self._lock:
            rows = self._db.execute(
                "SELECT c.client, c.provider, c.deposit, c.expiry, c.salt, v.amount, v.jobs,"
                " v.units, v.root, v.signature, v.received, v.redeemed_amount, v.royalties"
                f" FROM vouchers v JOIN channels c ON c.id = v.channel {where}",
                args,
            ).fetchall()
        out = []
        for (
            client,
            provider,
            deposit,
            expiry,
            salt,
            amount,
            jobs,
            units,
            root,
            sig,
            rec,
            red,
            royalties,
        ) in rows:
            terms = ChannelTerms(client, provider, int(deposit), int(expiry), int(salt))
            lines = tuple((bytes.fromhex(m), int(a)) for m, a in json.loads(royalties or "[]"))
            out.append(
                StoredVoucher(
                    terms=terms,
                    voucher=Voucher(
                        terms.id, int(amount), int(jobs), int(units), bytes(root), lines
                    ),
                    signature=Signature.from_bytes(bytes(sig)),
                    received=float(rec),
                    redeemed_amount=int(red),
                )
            )
        return out
