"""What a provider knows about each payment channel: deliveries, receipts, vouchers.

Pure bookkeeping (no I/O): the node feeds it the chain's view of a channel,
the jobs it delivered and the vouchers it receives, and asks it whether a new
job is covered. Rebuilt from the journal on restart.

Credit is what the node has done, or is doing, that no voucher covers yet: jobs
delivered beyond the latest voucher plus jobs running now. It is bounded per
channel (``credit_jobs``) and per client across all its channels
(:func:`check_client_credit`), so a fresh channel does not buy fresh credit.
Also here: the small caches the node keeps about channels, :class:`ExpiringSet`
(channels found not open) and :class:`TokenBucket` (how often a channel that
falls short may make the node re-read it from chain).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from .._exceptions import InvalidInput, PaymentRequired
from ..chain import ChannelTerms
from ..protocol import MerkleAccumulator, Voucher

__all__ = [
    "ChannelBook",
    "ExpiringSet",
    "PaymentRequired",
    "TokenBucket",
    "check_client_credit",
]

#: how many past prefix roots a channel remembers, for vouchers that lag behind
ROOT_HISTORY = 4096


@dataclass
class TokenBucket:
    """At most ``burst`` events at once, refilled at one per ``every`` seconds."""

    every: float
    burst: int
    tokens: float = -1.0  # -1: full, on first use
    at: float = 0.0

    def take(self, now: float) -> bool:
        """Spend a token if there is one; False if the bucket is empty."""
        if self.tokens < 0:
            self.tokens = float(self.burst)
        elif self.every > 0:
            self.tokens = min(float(self.burst), self.tokens + (now - self.at) / self.every)
        else:
            self.tokens = float(self.burst)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def refund(self) -> None:
        """Give back a token taken for something that proved worth it."""
        self.tokens = min(float(self.burst), self.tokens + 1)


class ExpiringSet:
    """A bounded set whose members expire ``ttl`` seconds after they were added (LRU)."""

    def __init__(self, *, maxsize: int, ttl: float) -> None:
        self.maxsize, self.ttl = maxsize, ttl
        self._until: OrderedDict[Hashable, float] = OrderedDict()

    def add(self, key: Hashable, now: float) -> None:
        self._until[key] = now + self.ttl
        self._until.move_to_end(key)
        while len(self._until) > self.maxsize:
            self._until.popitem(last=False)

    def has(self, key: Hashable, now: float) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until <= now:
            del self._until[key]
            return False
        return True

    def discard(self, key: Hashable) -> None:
        self._until.pop(key, None)

    def __len__(self) -> int:
        return len(self._until)


@dataclass
class ChannelBook:
    """One channel's ledger as the provider sees it."""

    terms: ChannelTerms
    deposit: int = 0  # on chain, including top-ups
    expiry: int = 0
    chain_open: bool = False
    reserved: int = 0  # amount of jobs running now
    in_flight: int = 0  # jobs running now
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

    @property
    def credit_jobs(self) -> int:
        """Jobs not covered by a voucher: delivered beyond it, or running now."""
        return len(self.delivered) - self.voucher_jobs + self.in_flight

    @property
    def unpaid(self) -> int:
        """Amount not covered by a voucher: delivered beyond it, or reserved by running jobs."""
        return self.delivered_amount - self.voucher_amount + self.reserved

    def check(self, amount: int, *, credit_jobs: int, now: float, min_ttl: int) -> None:
        """Raise PaymentRequired, saying why, if a job of ``amount`` cannot start now."""
        if not self.chain_open:
            raise PaymentRequired("channel is not open on chain (unknown or closed)", chain=True)
        if self.expiry < now + min_ttl:
            raise PaymentRequired(
                f"channel expires at {self.expiry}, within {min_ttl}s: open a new one or top up",
                chain=True,
            )
        owed = self.delivered_amount + self.reserved + amount
        if owed > self.deposit:
            raise PaymentRequired(
                f"channel deposit {self.deposit} cannot cover {owed} owed: top up the channel",
                chain=True,
            )
        if self.credit_jobs >= credit_jobs:
            raise PaymentRequired(
                f"{self.credit_jobs} jobs delivered or running are not covered by a voucher"
                f" (credit is {credit_jobs}): send a voucher first"
            )

    def reserve(self, amount: int, *, credit_jobs: int, now: float, min_ttl: int) -> None:
        """Hold ``amount`` for a job about to run, or raise PaymentRequired saying why."""
        self.check(amount, credit_jobs=credit_jobs, now=now, min_ttl=min_ttl)
        self.reserved += amount
        self.in_flight += 1

    def release(self, amount: int) -> None:
        """The job that reserved ``amount`` is over (delivered or failed)."""
        self.reserved -= amount
        self.in_flight -= 1

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


def check_client_credit(
    books: Iterable[ChannelBook], amount: int, *, credit_jobs: int, max_unpaid: int | None
) -> None:
    """Raise PaymentRequired if one client's channels, together, may not start a job of
    ``amount``: ``credit_jobs`` jobs at most not covered by vouchers, and at most
    ``max_unpaid`` unpaid (a client with nothing unpaid may always start one job)."""
    jobs = unpaid = 0
    for book in books:
        jobs += book.credit_jobs
        unpaid += book.unpaid
    if jobs >= credit_jobs:
        raise PaymentRequired(
            f"{jobs} jobs delivered or running on this client's channels are not covered by"
            f" vouchers (credit is {credit_jobs} per client): send a voucher first"
        )
    if max_unpaid is not None and unpaid > 0 and unpaid + amount > max_unpaid:
        raise PaymentRequired(
            f"{unpaid} owed on this client's channels is not covered by vouchers; with this"
            f" job's {amount} it would pass the node's limit of {max_unpaid} per client:"
            " send a voucher first"
        )
