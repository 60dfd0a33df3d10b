"""A provider's channel book: credit, deposit, vouchers checked against receipts."""

from __future__ import annotations

import pytest

from idlegrid import InvalidInput
from idlegrid.chain import ChannelTerms
from idlegrid.protocol import MerkleAccumulator, Voucher
from idlegrid.provider._book import ChannelBook, PaymentRequired

TERMS = ChannelTerms("0x" + "11" * 20, "0x" + "22" * 20, 1000, 10_000, 1)
NOW = 1_000.0


def _book(deposit: int = 1000) -> ChannelBook:
    return ChannelBook(TERMS, deposit=deposit, expiry=10_000, chain_open=True)


def _leaf(i: int) -> bytes:
    return i.to_bytes(32, "big")


def _voucher(n: int, per: int = 10) -> Voucher:
    acc = MerkleAccumulator()
    for i in range(1, n + 1):
        acc.append(_leaf(i))
    return Voucher(TERMS.id, per * n, n, 2 * per * n, acc.root())


def test_reserve_within_deposit_and_credit() -> None:
    book = _book()
    book.reserve(100, credit_jobs=4, now=NOW, min_ttl=30)
    assert book.reserved == 100
    book.deliver(1, _leaf(1), 20, 100)
    book.release(100)
    assert (book.reserved, book.delivered_amount, book.contiguous) == (0, 100, 1)


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ({"chain_open": False}, "not open"),
        ({"expiry": int(NOW) + 10}, "expires"),
        ({"deposit": 50}, "deposit"),
    ],
)
def test_reserve_refusals(setup: dict[str, object], match: str) -> None:
    book = _book()
    for k, v in setup.items():
        setattr(book, k, v)
    with pytest.raises(PaymentRequired, match=match):
        book.reserve(100, credit_jobs=4, now=NOW, min_ttl=30)


def test_credit_runs_out_until_a_voucher_arrives() -> None:
    book = _book()
    for i in range(1, 3):
        book.deliver(i, _leaf(i), 20, 10)
    with pytest.raises(PaymentRequired, match="voucher"):
        book.reserve(10, credit_jobs=2, now=NOW, min_ttl=30)
    assert book.check_voucher(_voucher(2))
    book.accept_voucher(_voucher(2))
    book.reserve(10, credit_jobs=2, now=NOW, min_ttl=30)


def test_voucher_must_match_the_delivered_receipts() -> None:
    book = _book()
    book.deliver(2, _leaf(2), 20, 10)  # out of order: 1 is missing
    with pytest.raises(InvalidInput, match=r"only jobs 1\.\.0"):
        book.check_voucher(_voucher(1))
    book.deliver(1, _leaf(1), 20, 10)
    assert book.contiguous == 2
    good = _voucher(2)
    assert book.check_voucher(good)
    wrong_amount = Voucher(TERMS.id, 25, 2, 40, good.receipts_root)
    with pytest.raises(InvalidInput, match="receipts say"):
        book.check_voucher(wrong_amount)
    wrong_root = Voucher(TERMS.id, 20, 2, 40, b"\x00" * 32)
    with pytest.raises(InvalidInput, match="root"):
        book.check_voucher(wrong_root)
    book.accept_voucher(good)
    assert not book.check_voucher(_voucher(1))  # older than what we hold: not kept
