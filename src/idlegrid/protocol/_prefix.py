"""The receipts of one channel and the prefix of them a voucher may cover.

Jobs on a channel are numbered 1, 2, 3, …; their receipts may arrive in any order.
A voucher covers the contiguous prefix 1..n: its amount, its units and the Merkle
root of its receipts' leaves (the :func:`receipts_root` of those receipts, hashed as
``JobMarket.verify_receipt`` does). Both sides keep that prefix the same way: the
client signs vouchers over it, the provider checks the vouchers it receives against
it, including vouchers that lag a few jobs behind (so it remembers past roots).

Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from .._exceptions import InvalidInput
from ._eip712 import MAX_ROYALTY_LINES, Voucher
from ._merkle import MerkleAccumulator

__all__ = ["ROOT_HISTORY", "PrefixPoint", "ReceiptPrefix"]

T = TypeVar("T")

#: how many past prefix roots a provider remembers, for vouchers that lag behind
ROOT_HISTORY = 4096


@dataclass(frozen=True, slots=True)
class PrefixPoint:
    """What the receipts of jobs 1..``jobs`` add up to."""

    jobs: int
    root: bytes
    amount: int
    units: int
    #: the part of ``amount`` owed as royalties, by model, ascending (a voucher's lines)
    royalties: tuple[tuple[bytes, int], ...] = ()


class ReceiptPrefix(Generic[T]):
    """Receipts by sequence number and the contiguous prefix 1..n they form.

    ``T`` is what the owner keeps for each job (the client its :class:`Receipt`, the
    provider the leaf); the prefix needs only each one's leaf, units and amount.
    ``history`` past prefix points are kept for :meth:`check_voucher` (0: none).
    """

    def __init__(self, *, history: int = 0) -> None:
        # seq -> item, leaf, units, amount, royalty (model, amount) or None
        self._items: dict[int, tuple[T, bytes, int, int, tuple[bytes, int] | None]] = {}
        self._royalties: dict[bytes, int] = {}  # of jobs 1..n, by model
        self._lines: tuple[tuple[bytes, int], ...] = ()
        self._models: set[bytes] = set()  # with a royalty on any job added
        self._acc = MerkleAccumulator()
        self._history: dict[int, PrefixPoint] = {}
        self._keep = history
        self.amount = 0  # of jobs 1..n
        self.units = 0  # of jobs 1..n
        self.total_amount = 0  # of every job added, in the prefix or not

    # -- what was added ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, seq: object) -> bool:
        return seq in self._items

    def __getitem__(self, seq: int) -> T:
        return self._items[seq][0]

    def items(self) -> Iterator[tuple[int, T]]:
        """(seq, item) for every job added, in the order they were added."""
        for seq, entry in self._items.items():
            yield seq, entry[0]

    # -- the prefix -------------------------------------------------------------------
    @property
    def count(self) -> int:
        """n: jobs 1..n have all been added."""
        return self._acc.count

    def root(self) -> bytes:
        """Merkle root of the leaves of jobs 1..n."""
        return self._acc.root()

    def point(self) -> PrefixPoint:
        """The prefix 1..n as it stands."""
        return PrefixPoint(self._acc.count, self._acc.root(), self.amount, self.units, self._lines)

    @property
    def royalties(self) -> tuple[tuple[bytes, int], ...]:
        """Royalties owed by jobs 1..n, by model, ascending."""
        return self._lines

    def add(
        self,
        seq: int,
        item: T,
        *,
        leaf: bytes,
        units: int,
        amount: int,
        royalty: tuple[bytes, int] | None = None,
    ) -> bool:
        """Record job ``seq`` (``royalty``: the part of ``amount`` owed to a model's
        lineage); True if the prefix 1..n grew (``seq`` filled its gap)."""
        if seq < 1:
            raise InvalidInput(f"sequence numbers start at 1, got {seq}")
        if seq in self._items:
            raise InvalidInput(f"job {seq} on this channel was recorded already")
        if royalty is not None and not 0 <= royalty[1] <= amount:
            raise InvalidInput(f"a job's royalty {royalty[1]} is not within its amount {amount}")
        if royalty is not None and royalty[1] == 0:
            royalty = None
        if royalty is not None and royalty[0] not in self._models:
            if len(self._models) >= MAX_ROYALTY_LINES:
                raise InvalidInput(
                    f"a channel's vouchers carry royalties of {MAX_ROYALTY_LINES} models at most"
                )
            self._models.add(royalty[0])
        self._items[seq] = (item, leaf, units, amount, royalty)
        self.total_amount += amount
        grew = False
        while (nxt := self._acc.count + 1) in self._items:
            _, leaf_n, units_n, amount_n, royalty_n = self._items[nxt]
            self._acc.append(leaf_n)
            self.amount += amount_n
            self.units += units_n
            if royalty_n is not None:
                model, owed = royalty_n
                self._royalties[model] = self._royalties.get(model, 0) + owed
                self._lines = tuple(sorted(self._royalties.items()))
            grew = True
            if self._keep:
                self._history[nxt] = PrefixPoint(
                    nxt, self._acc.root(), self.amount, self.units, self._lines
                )
                self._history.pop(nxt - self._keep, None)
        return grew

    def at(self, jobs: int) -> PrefixPoint | None:
        """The prefix 1..``jobs`` as it was, if still remembered."""
        return self._history.get(jobs)

    def check_voucher(self, voucher: Voucher) -> None:
        """InvalidInput, saying why, unless ``voucher`` states exactly what jobs
        1..``voucher.jobs`` add up to (root, amount and units)."""
        if voucher.jobs == 0:
            raise InvalidInput("a voucher must cover at least one job")
        if voucher.jobs > self.count:
            raise InvalidInput(
                f"voucher covers {voucher.jobs} jobs but only jobs 1..{self.count} were delivered"
            )
        expected = self.at(voucher.jobs)
        if expected is None:
            raise InvalidInput(f"voucher for {voucher.jobs} jobs is too old to check")
        if voucher.receipts_root != expected.root:
            raise InvalidInput(f"voucher receipts root does not match receipts 1..{voucher.jobs}")
        if voucher.amount != expected.amount or voucher.units != expected.units:
            raise InvalidInput(
                f"voucher says {voucher.amount} tokens / {voucher.units} units for jobs "
                f"1..{voucher.jobs}; the receipts say {expected.amount} / {expected.units}"
            )
        if voucher.royalties != expected.royalties:
            raise InvalidInput(
                f"voucher's royalty lines for jobs 1..{voucher.jobs} are not what those jobs "
                "owe the models they ran"
            )
