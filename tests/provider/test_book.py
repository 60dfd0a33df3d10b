"""A provider's channel book: credit, deposit, vouchers checked against receipts."""

from __future__ import annotations

from pathlib import Path

import pytest

from idlegrid import InvalidInput
from idlegrid.chain import ChannelTerms
from idlegrid.protocol import Account, Domain, MerkleAccumulator, Voucher, sign_voucher
from idlegrid.provider._book import (
    ChannelBook,
    ExpiringSet,
    PaymentRequired,
    TokenBucket,
    check_client_credit,
)
from idlegrid.provider._journal import Journal

CLIENT = Account.from_key("0x" + "33" * 32)
TERMS = ChannelTerms(CLIENT.address, "0x" + "22" * 20, 1000, 10_000, 1)
DOMAIN = Domain("idlegrid JobMarket", 31337, "0x" + "ab" * 20)
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


# -- credit counts jobs running, and spans a client's channels ----------------------------
def test_credit_counts_jobs_in_flight() -> None:
    # Prepare: credit for two jobs, two reserved and still running
    book = _book()
    book.reserve(10, credit_jobs=2, now=NOW, min_ttl=30)
    book.reserve(10, credit_jobs=2, now=NOW, min_ttl=30)

    # Execute / Assert: a third is refused until one is over
    with pytest.raises(PaymentRequired, match="voucher") as refused:
        book.reserve(10, credit_jobs=2, now=NOW, min_ttl=30)
    assert not refused.value.chain  # reading the chain again would not help
    book.release(10)
    book.reserve(10, credit_jobs=2, now=NOW, min_ttl=30)
    assert (book.in_flight, book.reserved) == (2, 20)


def test_release_of_a_delivered_job_keeps_it_in_credit() -> None:
    book = _book()
    book.reserve(10, credit_jobs=1, now=NOW, min_ttl=30)
    book.deliver(1, _leaf(1), 20, 10)
    book.release(10)
    assert (book.credit_jobs, book.unpaid) == (1, 10)
    with pytest.raises(PaymentRequired, match="voucher"):
        book.reserve(10, credit_jobs=1, now=NOW, min_ttl=30)


def test_chain_shortfalls_say_so() -> None:
    book = _book(deposit=50)
    with pytest.raises(PaymentRequired, match="deposit") as refused:
        book.reserve(100, credit_jobs=4, now=NOW, min_ttl=30)
    assert refused.value.chain


def _other_channel(salt: int) -> ChannelBook:
    terms = ChannelTerms(TERMS.client, TERMS.provider, 1000, 10_000, salt)
    return ChannelBook(terms, deposit=1000, expiry=10_000, chain_open=True)


def test_client_credit_spans_its_channels() -> None:
    # Prepare: one job running on each of three channels of one client
    books = [_other_channel(salt) for salt in (1, 2, 3)]
    for book in books:
        book.reserve(10, credit_jobs=4, now=NOW, min_ttl=30)

    # Execute / Assert: a fresh channel buys no fresh credit
    with pytest.raises(PaymentRequired, match="per client"):
        check_client_credit([*books, _other_channel(4)], 10, credit_jobs=3, max_unpaid=None)
    check_client_credit(books, 10, credit_jobs=4, max_unpaid=None)


def test_client_unpaid_amount_is_bounded() -> None:
    books = [_other_channel(1), _other_channel(2)]
    books[0].reserve(60, credit_jobs=4, now=NOW, min_ttl=30)
    with pytest.raises(PaymentRequired, match="limit of 100 per client"):
        check_client_credit(books, 50, credit_jobs=4, max_unpaid=100)
    check_client_credit(books, 40, credit_jobs=4, max_unpaid=100)


def test_a_client_owing_nothing_may_start_one_job_above_the_limit() -> None:
    books = [_other_channel(1)]
    check_client_credit(books, 500, credit_jobs=4, max_unpaid=100)
    books[0].reserve(500, credit_jobs=4, now=NOW, min_ttl=30)
    with pytest.raises(PaymentRequired, match="per client"):
        check_client_credit(books, 1, credit_jobs=4, max_unpaid=100)


def test_vouchers_free_client_credit() -> None:
    book = _other_channel(1)
    for i in (1, 2):
        book.reserve(10, credit_jobs=4, now=NOW, min_ttl=30)
        book.deliver(i, _leaf(i), 20, 10)
        book.release(10)
    with pytest.raises(PaymentRequired):
        check_client_credit([book], 10, credit_jobs=2, max_unpaid=None)
    voucher = Voucher(book.terms.id, 20, 2, 40, _voucher(2).receipts_root)
    assert book.check_voucher(voucher)
    book.accept_voucher(voucher)
    check_client_credit([book], 10, credit_jobs=2, max_unpaid=15)


# -- the node's small caches ---------------------------------------------------------------
def test_token_bucket_allows_a_burst_then_one_per_interval() -> None:
    bucket = TokenBucket(every=2.0, burst=3)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(11.0)
    assert bucket.take(12.1)
    assert not bucket.take(12.2)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


def test_expiring_set_forgets_after_its_ttl_and_past_its_size() -> None:
    seen = ExpiringSet(maxsize=2, ttl=5.0)
    seen.add("a", 0.0)
    seen.add("b", 1.0)
    assert seen.has("a", 4.9) and not seen.has("a", 5.0)
    seen.add("c", 2.0)
    seen.add("d", 2.0)  # "b" is the oldest: dropped
    assert len(seen) == 2 and not seen.has("b", 2.0)
    assert seen.has("c", 2.0) and seen.has("d", 2.0)


def test_token_bucket_refund_gives_back_a_token_up_to_the_burst() -> None:
    bucket = TokenBucket(every=60.0, burst=1)
    assert bucket.take(0.0) and not bucket.take(0.0)
    bucket.refund()
    bucket.refund()
    assert bucket.take(0.0) and not bucket.take(0.0)


# -- the book journals its events and is rebuilt from the journal ---------------------------
def test_book_journals_before_it_books_and_reloads(tmp_path: Path) -> None:
    # Prepare: a book that owns the channel's journal entries
    journal = Journal(tmp_path / "j.sqlite")
    book = ChannelBook(TERMS, deposit=1000, expiry=10_000, chain_open=True, journal=journal)
    for seq in (2, 1, 3):  # out of order
        book.begin_job(_leaf(100 + seq), seq, "onnx")
        book.finish_job(
            _leaf(100 + seq), seq, leaf=_leaf(seq), units=20, amount=10, result_hash=_leaf(0)
        )
    book.begin_job(_leaf(104), 4, "onnx")
    book.fail_job(_leaf(104), "never ran")
    signature = sign_voucher(CLIENT, DOMAIN, _voucher(2))

    # Execute
    taken = book.take_voucher(_voucher(2), signature)
    stale = book.take_voucher(_voucher(1), signature)
    reloaded = ChannelBook.load(journal, TERMS)

    # Assert
    assert (taken, stale) == (True, False)
    assert journal.receipts(TERMS.id) == [(s, _leaf(s), 20, 10) for s in (1, 2, 3)]
    stored = journal.latest_voucher(TERMS.id)
    assert stored is not None and stored.voucher == _voucher(2)
    assert (reloaded.contiguous, reloaded.delivered_amount) == (3, 30)
    assert (reloaded.voucher_jobs, reloaded.voucher_amount) == (2, 20)
    assert reloaded.prefix.root() == book.prefix.root()
    journal.close()


def test_voucher_misstating_receipts_is_not_journalled(tmp_path: Path) -> None:
    # Prepare
    journal = Journal(tmp_path / "j.sqlite")
    book = ChannelBook(TERMS, journal=journal)
    book.begin_job(_leaf(101), 1, "onnx")
    book.finish_job(_leaf(101), 1, leaf=_leaf(1), units=20, amount=10, result_hash=_leaf(0))
    wrong = Voucher(TERMS.id, 99, 1, 20, _voucher(1).receipts_root)

    # Execute, Assert
    with pytest.raises(InvalidInput, match="receipts say"):
        book.take_voucher(wrong, sign_voucher(CLIENT, DOMAIN, wrong))
    assert journal.latest_voucher(TERMS.id) is None
    assert book.voucher_jobs == 0
    journal.close()
