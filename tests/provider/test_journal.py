"""The provider's journal survives restarts and refuses duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from idlegrid.chain import ChannelTerms
from idlegrid.protocol import Account, Domain, Signature, Voucher, sign_voucher
from idlegrid.provider._journal import DuplicateJob, Journal

CLIENT = Account.from_key("0x" + "33" * 32)
TERMS = ChannelTerms(CLIENT.address, "0x" + "22" * 20, 1000, 10_000, 7)
DOMAIN = Domain("idlegrid JobMarket", 31337, "0x" + "ab" * 20)


def _voucher(amount: int, jobs: int) -> tuple[Voucher, Signature]:
    v = Voucher(TERMS.id, amount, jobs, 2 * jobs, b"\x05" * 32)
    return v, sign_voucher(CLIENT, DOMAIN, v)


def test_jobs_receipts_and_duplicates(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.begin_job(b"\x01" * 32, TERMS, 1, "onnx")
    with pytest.raises(DuplicateJob, match="job id"):
        j.begin_job(b"\x01" * 32, TERMS, 2, "onnx")
    with pytest.raises(DuplicateJob, match="sequence number 1"):
        j.begin_job(b"\x02" * 32, TERMS, 1, "onnx")
    j.finish_job(b"\x01" * 32, units=5, amount=50, result_hash=b"\x00" * 32, leaf=b"\x09" * 32)
    j.begin_job(b"\x03" * 32, TERMS, 2, "onnx")
    j.fail_job(b"\x03" * 32, "JobTimeout: too slow")
    j.begin_job(b"\x04" * 32, TERMS, 2, "onnx")  # a failed job frees its sequence number
    assert j.job_status(b"\x03" * 32) == "failed"
    assert j.receipts(TERMS.id) == [(1, b"\x09" * 32, 5, 50)]
    assert j.delivered(TERMS.id) == (1, 50)


def test_vouchers_survive_a_restart_until_redeemed(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    v1, s1 = _voucher(10, 1)
    v2, s2 = _voucher(30, 3)
    assert j.record_voucher(TERMS, v1, s1)
    assert j.record_voucher(TERMS, v2, s2)
    assert not j.record_voucher(TERMS, v1, s1)  # older: ignored
    j.close()

    reopened = Journal(path)
    pending = reopened.unredeemed()
    assert len(pending) == 1
    assert pending[0].voucher == v2 and pending[0].terms == TERMS and pending[0].pending == 30
    reopened.mark_redeemed(TERMS.id, v2, "0xabc")
    assert reopened.unredeemed() == []
    v3, s3 = _voucher(45, 4)
    reopened.record_voucher(TERMS, v3, s3)
    assert reopened.unredeemed()[0].pending == 15


def test_jobs_a_crash_left_running_are_marked_abandoned_at_start(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    j.begin_job(b"\x01" * 32, TERMS, 1, "onnx")
    j.finish_job(b"\x01" * 32, units=5, amount=50, result_hash=b"\x00" * 32, leaf=b"\x09" * 32)
    j.begin_job(b"\x02" * 32, TERMS, 2, "onnx")  # the node dies while this one runs
    j.begin_job(b"\x03" * 32, TERMS, 3, "onnx")
    j.close()
    reopened = Journal(path)

    abandoned = reopened.reconcile()

    assert abandoned == 2
    assert reopened.job_status(b"\x02" * 32) == "failed"
    assert reopened.job_status(b"\x03" * 32) == "failed"
    assert reopened.job_status(b"\x01" * 32) == "done"  # delivered work stays owed
    assert reopened.delivered(TERMS.id) == (1, 50)
    reopened.begin_job(b"\x04" * 32, TERMS, 2, "onnx")  # the sequence number is free again
    assert reopened.reconcile() == 1  # only call it at start: it takes what runs for dead


def test_money_is_committed_with_a_full_sync_and_the_rest_without(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    statements: list[str] = []
    j._db.set_trace_callback(statements.append)
    v, s = _voucher(10, 1)

    def synced_commits() -> list[str]:
        """The sync level in force at each COMMIT or lone UPDATE run so far."""
        level, seen = "NORMAL", []
        for sql in statements:
            if sql.startswith("PRAGMA synchronous="):
                level = sql.split("=")[1]
            elif sql == "COMMIT" or sql.startswith("UPDATE"):
                seen.append(level)
        statements.clear()
        return seen

    j.begin_job(b"\x01" * 32, TERMS, 1, "onnx")
    begun = synced_commits()
    j.finish_job(b"\x01" * 32, units=5, amount=10, result_hash=b"\x00" * 32, leaf=b"\x09" * 32)
    finished = synced_commits()
    j.record_voucher(TERMS, v, s)
    vouchered = synced_commits()
    j.mark_redeemed(TERMS.id, v, "0xabc")
    redeemed = synced_commits()

    assert begun == ["NORMAL"]
    assert finished == vouchered == redeemed == ["FULL"]
    assert j._db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL again after


def test_royalties_of_jobs_and_vouchers_survive_a_restart(tmp_path: Path) -> None:
    """A job's royalty and a voucher's royalty lines are money: the book a restarted
    node rebuilds owes the same lines, and the voucher it redeems carries them."""
    from idlegrid.provider._book import ChannelBook

    path = tmp_path / "j.sqlite"
    model = b"\x0a" * 32
    j = Journal(path)
    for seq, royalty in ((1, (model, 20)), (2, None), (3, (model, 5))):
        job = seq.to_bytes(32, "big")
        j.begin_job(job, TERMS, seq, "onnx")
        j.finish_job(
            job, units=seq, amount=50, result_hash=b"\x00" * 32, leaf=bytes([seq]) * 32,
            royalty=royalty,
        )  # fmt: skip
    v = Voucher(TERMS.id, 150, 3, 6, b"\x05" * 32, ((model, 25),))
    j.record_voucher(TERMS, v, sign_voucher(CLIENT, DOMAIN, v))
    j.close()

    reopened = Journal(path)
    assert reopened.royalties(TERMS.id) == {1: (model, 20), 3: (model, 5)}
    assert reopened.unredeemed()[0].voucher == v
    assert ChannelBook.load(reopened, TERMS).prefix.point().royalties == ((model, 25),)


def test_a_journal_from_before_royalties_opens_and_gains_them(tmp_path: Path) -> None:
    """An older node's file (no royalty columns) is migrated in place, its money kept."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    j = Journal(path)
    j.begin_job(b"\x01" * 32, TERMS, 1, "onnx")
    j.finish_job(b"\x01" * 32, units=5, amount=50, result_hash=b"\x00" * 32, leaf=b"\x09" * 32)
    v, s = _voucher(50, 1)
    j.record_voucher(TERMS, v, s)
    j.close()
    db = sqlite3.connect(path)
    for table, column in (
        ("jobs", "royalty_model"),
        ("jobs", "royalty"),
        ("vouchers", "royalties"),
    ):
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.commit()
    db.close()

    reopened = Journal(path)
    assert reopened.receipts(TERMS.id) == [(1, b"\x09" * 32, 5, 50)]
    assert reopened.royalties(TERMS.id) == {}
    assert reopened.unredeemed()[0].voucher == v


def test_recent_jobs_are_the_latest_first_with_their_outcomes(tmp_path: Path) -> None:
    # Prepare: one job of each outcome, in this order
    j = Journal(tmp_path / "j.sqlite")
    ids = [bytes([i]) * 32 for i in range(1, 5)]
    j.begin_job(ids[0], TERMS, 1, "onnx")
    j.finish_job(ids[0], units=5, amount=50, result_hash=b"\x00" * 32, leaf=b"\x09" * 32)
    j.begin_job(ids[1], TERMS, 2, "embed")
    j.finish_job(
        ids[1], units=7, amount=70, result_hash=b"\x00" * 32, leaf=b"\x08" * 32, error="JobTimeout"
    )
    j.begin_job(ids[2], TERMS, 3, "onnx")
    j.fail_job(ids[2], "ExecutorBusy: full")
    j.begin_job(ids[3], TERMS, 3, "onnx")

    # Execute
    recent = j.recent_jobs(3)
    everything = j.recent_jobs(100)

    # Assert
    assert [(r.job_id, r.kind, r.outcome, r.units, r.amount) for r in recent] == [
        (ids[3], "onnx", "running", None, None),
        (ids[2], "onnx", "not_run", None, None),
        (ids[1], "embed", "failed", 7, 70),
    ]
    assert [r.job_id for r in everything] == [ids[3], ids[2], ids[1], ids[0]]
    assert everything[-1].outcome == "ok" and everything[-1].created <= recent[0].created
