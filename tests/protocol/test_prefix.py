"""A channel's receipt prefix: out-of-order deliveries, gaps, vouchers checked against it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idlegrid import InvalidInput
from idlegrid.protocol import (
    EMPTY_ROOT,
    Account,
    Receipt,
    ReceiptPrefix,
    Voucher,
    receipts_root,
)

CHANNEL = b"\x11" * 32
PROVIDER = Account.from_key(b"\x01" * 32).address


def _receipt(seq: int) -> Receipt:
    return Receipt(
        CHANNEL, seq.to_bytes(32, "big"), PROVIDER, b"\x05" * 32, b"\x06" * 32, b"\x07" * 32,
        2 * seq, 10 * seq,
    )  # fmt: skip


def _add(prefix: ReceiptPrefix[Receipt], seq: int) -> bool:
    r = _receipt(seq)
    return prefix.add(seq, r, leaf=r.leaf(), units=r.units, amount=r.amount)


def _voucher(n: int) -> Voucher:
    receipts = [_receipt(s) for s in range(1, n + 1)]
    amount = sum(r.amount for r in receipts)
    units = sum(r.units for r in receipts)
    return Voucher(CHANNEL, amount, n, units, receipts_root(receipts))


def test_empty_prefix() -> None:
    # Prepare
    prefix: ReceiptPrefix[Receipt] = ReceiptPrefix()

    # Execute
    point = prefix.point()

    # Assert
    assert (point.jobs, point.root, point.amount, point.units) == (0, EMPTY_ROOT, 0, 0)
    assert len(prefix) == 0


def test_in_order_prefix_root_equals_receipts_root() -> None:
    # Prepare
    prefix: ReceiptPrefix[Receipt] = ReceiptPrefix()

    # Execute
    grew = [_add(prefix, seq) for seq in range(1, 6)]

    # Assert
    assert grew == [True] * 5
    assert prefix.count == 5
    assert prefix.root() == receipts_root([_receipt(s) for s in range(1, 6)])
    assert (prefix.amount, prefix.units) == (150, 30)


def test_gap_holds_the_prefix_until_filled() -> None:
    # Prepare
    prefix: ReceiptPrefix[Receipt] = ReceiptPrefix()
    _add(prefix, 1)

    # Execute
    grew_3 = _add(prefix, 3)
    grew_4 = _add(prefix, 4)
    held = (prefix.count, prefix.amount, prefix.total_amount)
    grew_2 = _add(prefix, 2)

    # Assert
    assert (grew_3, grew_4, grew_2) == (False, False, True)
    assert held == (1, 10, 80)
    assert prefix.count == 4
    assert prefix.amount == prefix.total_amount == 100
    assert prefix[3] == _receipt(3)
    assert 5 not in prefix


def test_duplicate_or_zero_seq_refused() -> None:
    # Prepare
    prefix: ReceiptPrefix[Receipt] = ReceiptPrefix()
    _add(prefix, 1)

    # Execute, Assert
    with pytest.raises(InvalidInput, match="recorded already"):
        _add(prefix, 1)
    with pytest.raises(InvalidInput, match="start at 1"):
        _add(prefix, 0)
    assert (prefix.count, prefix.total_amount) == (1, 10)


def test_lagging_voucher_checked_against_history() -> None:
    # Prepare
    prefix: ReceiptPrefix[Receipt] = ReceiptPrefix(history=8)
    for seq in range(1, 6):
        _add(prefix, seq)

    # Execute, Assert: a voucher for 1..3 still checks after 4 and 5 arrived
    prefix.check_voucher(_voucher(3))
    prefix.check_voucher(_voucher(5))
    point = prefix.at(3)
    assert point is not None and point.root == _voucher(3).receipts_root


@pytest.mark.parametrize(
    ("voucher", "match"),
    [
        (Voucher(CHANNEL, 0, 0, 0, EMPTY_ROOT), "at least one job"),
        (_voucher(4), "only jobs 1..3"),
        (Voucher(CHANNEL, 30, 2, 6, b"\x00" * 32), "root does not match"),
        (Voucher(CHANNEL, 31, 2, 6, _voucher(2).receipts_root), "the receipts say 30 / 6"),
        (Voucher(CHANNEL, 30, 2, 7, _voucher(2).receipts_root), "the receipts say 30 / 6"),
    ],
)
def test_voucher_misstating_the_prefix_refused(voucher: Voucher, match: str) -> None:
    # Prepare
    prefix: ReceiptPrefix[Receipt] = ReceiptPrefix(history=8)
    for seq in (1, 2, 3, 5):
        _add(prefix, seq)

    # Execute, Assert
    with pytest.raises(InvalidInput, match=match):
        prefix.check_voucher(voucher)


def test_voucher_older_than_history_cannot_be_checked() -> None:
    # Prepare
    prefix: ReceiptPrefix[Receipt] = ReceiptPrefix(history=2)
    for seq in range(1, 6):
        _add(prefix, seq)

    # Execute, Assert
    prefix.check_voucher(_voucher(4))
    with pytest.raises(InvalidInput, match="too old"):
        prefix.check_voucher(_voucher(3))


@given(
    order=st.integers(min_value=1, max_value=24).flatmap(
        lambda n: st.permutations(list(range(1, n + 1)))
    )
)
def test_any_delivery_order_gives_the_in_order_prefix(order: list[int]) -> None:
    # Prepare
    n = len(order)
    in_order: ReceiptPrefix[Receipt] = ReceiptPrefix(history=n)
    shuffled: ReceiptPrefix[Receipt] = ReceiptPrefix(history=n)
    for seq in range(1, n + 1):
        _add(in_order, seq)

    # Execute
    for seq in order:
        _add(shuffled, seq)

    # Assert
    assert shuffled.point() == in_order.point()
    assert shuffled.root() == receipts_root([_receipt(s) for s in range(1, n + 1)])
    assert dict(shuffled.items()) == dict(in_order.items())
    assert [shuffled.at(k) for k in range(1, n + 1)] == [in_order.at(k) for k in range(1, n + 1)]


# -- royalties ---------------------------------------------------------------------

MODEL_A, MODEL_B = b"\x0a" * 32, b"\x0b" * 32


def _royal_prefix(order: list[int]) -> ReceiptPrefix[Receipt]:
    """Jobs 1..4 where the odd ones owe MODEL_B 3 * seq and job 2 owes MODEL_A 4."""
    prefix: ReceiptPrefix[Receipt] = ReceiptPrefix(history=8)
    for seq in order:
        r = _receipt(seq)
        owed = (MODEL_B, 3 * seq) if seq % 2 else (MODEL_A, 4) if seq == 2 else None
        prefix.add(seq, r, leaf=r.leaf(), units=r.units, amount=r.amount, royalty=owed)
    return prefix


def test_royalties_of_the_prefix_are_summed_by_model_in_ascending_order() -> None:
    # Execute: job 4 first, then a gap at 3 holds the prefix at 2
    prefix = _royal_prefix([4, 1, 2])
    held = prefix.point()
    _royal_prefix_add_3 = _receipt(3)
    prefix.add(
        3, _royal_prefix_add_3, leaf=_royal_prefix_add_3.leaf(), units=6, amount=30,
        royalty=(MODEL_B, 9),
    )  # fmt: skip

    # Assert
    assert held.royalties == ((MODEL_A, 4), (MODEL_B, 3))
    assert prefix.point().royalties == ((MODEL_A, 4), (MODEL_B, 12))
    at_2 = prefix.at(2)
    assert at_2 is not None and at_2.royalties == held.royalties


def test_a_voucher_must_carry_exactly_the_royalties_its_jobs_owe() -> None:
    # Prepare
    prefix = _royal_prefix([1, 2, 3, 4])
    plain = _voucher(3)
    right = Voucher(
        CHANNEL, plain.amount, 3, plain.units, plain.receipts_root, ((MODEL_A, 4), (MODEL_B, 12))
    )

    # Execute, Assert: the right lines pass; none, fewer or other lines are refused
    prefix.check_voucher(right)
    for lines in ((), ((MODEL_B, 12),), ((MODEL_A, 4), (MODEL_B, 11)), ((MODEL_A, 16),)):
        wrong = Voucher(CHANNEL, plain.amount, 3, plain.units, plain.receipts_root, lines)
        with pytest.raises(InvalidInput, match="royalty lines"):
            prefix.check_voucher(wrong)


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (((MODEL_B, 1), (MODEL_A, 1)), "ascending model order"),
        (((MODEL_A, 1), (MODEL_A, 2)), "ascending model order"),
        (((MODEL_A, 0),), "positive amount"),
        (((b"\x01" * 31, 1),), "32-byte model"),
        (((MODEL_A, 60), (MODEL_B, 41)), "exceed its amount"),
        (tuple(((i + 1).to_bytes(32, "big"), 1) for i in range(17)), "at most 16"),
    ],
)
def test_malformed_royalty_lines_are_refused(
    lines: tuple[tuple[bytes, int], ...], match: str
) -> None:
    with pytest.raises(InvalidInput, match=match):
        Voucher(CHANNEL, 100, 1, 1, EMPTY_ROOT, lines)


def test_a_royalty_larger_than_its_job_or_a_seventeenth_model_is_refused() -> None:
    # Prepare
    prefix: ReceiptPrefix[Receipt] = ReceiptPrefix()
    r = _receipt(1)

    # Execute, Assert
    with pytest.raises(InvalidInput, match="not within its amount"):
        prefix.add(1, r, leaf=r.leaf(), units=r.units, amount=r.amount, royalty=(MODEL_A, 11))
    for seq in range(1, 17):
        r = _receipt(seq)
        prefix.add(
            seq, r, leaf=r.leaf(), units=r.units, amount=r.amount,
            royalty=(seq.to_bytes(32, "big"), 1),
        )  # fmt: skip
    r = _receipt(17)
    with pytest.raises(InvalidInput, match="16 models at most"):
        prefix.add(17, r, leaf=r.leaf(), units=r.units, amount=r.amount, royalty=(MODEL_A, 1))
    assert len(prefix.point().royalties) == 16
