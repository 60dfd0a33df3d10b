"""The provider's journal survives restarts and refuses duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from idlegrid.chain import ChannelTerms
from idlegrid.protocol import Account, Domain, Voucher, sign_voucher
from idlegrid.provider._journal import DuplicateJob, Journal

CLIENT = Account.from_key("0x" + "33" * 32)
TERMS = ChannelTerms(CLIENT.address, "0x" + "22" * 20, 1000, 10_000, 7)
DOMAIN = Domain("idlegrid JobMarket", 31337, "0x" + "ab" * 20)


def _voucher(amount: int, jobs: int) -> tuple[Voucher, object]:
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
    assert j.record_voucher(TERMS, v1, s1)  # type: ignore[arg-type]
    assert j.record_voucher(TERMS, v2, s2)  # type: ignore[arg-type]
    assert not j.record_voucher(TERMS, v1, s1)  # older: ignored
    j.close()

    reopened = Journal(path)
    pending = reopened.unredeemed()
    assert len(pending) == 1
    assert pending[0].voucher == v2 and pending[0].terms == TERMS and pending[0].pending == 30
    reopened.mark_redeemed(TERMS.id, v2, "0xabc")
    assert reopened.unredeemed() == []
    v3, s3 = _voucher(45, 4)
    reopened.record_voucher(TERMS, v3, s3)  # type: ignore[arg-type]
    assert reopened.unredeemed()[0].pending == 15
