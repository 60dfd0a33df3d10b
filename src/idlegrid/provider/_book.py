"""What a provider knows about each payment channel: deliveries, receipts, vouchers.

Pure bookkeeping (no I/O): the node feeds it the chain's view of a channel,
the jobs it delivered and the vouchers it receives, and asks it whether a new
job is covered. Rebuilt from the journal on restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._exceptions import InvalidInput
from ..chain import ChannelTerms
from ..protocol import MerkleAccumulator, Voucher

__all__ = ["ChannelBook", "PaymentRequired"]

#: how many past prefix roots a channel remembers, for vouchers that lag behind
ROOT_HISTORY = 4096


class PaymentRequired(InvalidInput):
    """The channel cannot pay for this job: top up, extend, or send a voucher first."""


@dataclass
class ChannelBook:
    """One channel's ledger as the provider sees it."""

    terms: ChannelTerms
    deposit: int = 0  # on chain, including top-ups
    expiry: int = 0
    chain_open: bool = False
    checked_at: float = 0.0  # when a refused reservation last re-read the chain
    reserved: int = 0  # amount of jobs running now
    delivered: dict[int, tuple[bytes, int, int]] = field(
        default_factory=dict
    )  # seq -> leaf, units, amount
    delivered_amount: int = 0
    voucher_amount: int = 0
    voucher_jobs: int = 0
    _acc: MerkleAccumulator = field(default_factory=MerkleAccumulator)
    _prefix_amount: int = 0
    _prefix_units: int = 0
    _history: dict[int, tuple[bytes, int, int]] = field(default_factory=dict)

    @property
    def contiguous(self) -> int:
        """Jobs 1..n all delivered."""
        return self._acc.count

    def reserve(self, amount: int, *, credit_jobs: int, now: float, min_ttl: int) -> None:
        """Hold ``amount`` for a job about to run, or raise PaymentRequired saying why."""
        if not self.chain_open:
            raise PaymentRequired("channel is not open on chain (unknown or closed)")
        if self.expiry < now + min_ttl:
            raise PaymentRequired(
                f"channel expires at {self.expiry}, within {min_ttl}s: open a new one or top up"
            )
        owed = self.delivered_amount + self.reserved + amount
        if owed > self.deposit:
            raise PaymentRequired(
                f"channel deposit {self.deposit} cannot cover {owed} owed: top up the channel"
            )
        unvouched = len(self.delivered) - self.voucher_jobs
        if unvouched >= credit_jobs:
            raise PaymentRequired(
                f"{unvouched} delivered jobs are not covered by a voucher"
                f" (credit is {credit_jobs}): send a voucher first"
            )
        self.reserved += amount

    def release(self, amount: int) -> None:
        self.reserved -= amount

    def deliver(self, seq: int, leaf: bytes, units: int, amount: int) -> None:
        """Record a delivered job and extend the contiguous prefix."""
        self.delivered[seq] = (leaf, units, amount)
        self.delivered_amount += amount
        while (nxt := self.contiguous + 1) in self.delivered:
            leaf_n, units_n, amount_n = self.delivered[nxt]
            self._acc.append(leaf_n)
            self._prefix_amount += amount_n
            self._prefix_units += units_n
            self._history[nxt] = (self._acc.root(), self._prefix_amount, self._prefix_units)
            self._history.pop(nxt - ROOT_HISTORY, None)

    def check_voucher(self, voucher: Voucher) -> bool:
        """True if ``voucher`` is newer than what we hold; InvalidInput if it misstates
        what was delivered (root, amount or units of jobs 1..n)."""
        if voucher.jobs == 0:
            raise InvalidInput("a voucher must cover at least one job")
        if voucher.jobs > self.contiguous:
            raise InvalidInput(
                f"voucher covers {voucher.jobs} jobs but only jobs "
                f"1..{self.contiguous} were delivered"
            )
        expected = self._history.get(voucher.jobs)
        if expected is None:
            raise InvalidInput(f"voucher for {voucher.jobs} jobs is too old to check")
        root, amount, units = expected
        if voucher.receipts_root != root:
            raise InvalidInput(f"voucher receipts root does not match receipts 1..{voucher.jobs}")
        if voucher.amount != amount or voucher.units != units:
            raise InvalidInput(
                f"voucher says {voucher.amount} tokens / {voucher.units} units for jobs "
                f"1..{voucher.jobs}; the receipts say {amount} / {units}"
            )
        return voucher.jobs > self.voucher_jobs

    def accept_voucher(self, voucher: Voucher) -> None:
        self.voucher_amount = voucher.amount
        self.voucher_jobs = voucher.jobs
