"""What a provider knows about each payment channel: deliveries, receipts, vouchers.

The one owner of a channel's state on the node: the node feeds it the chain's
view of a channel, the jobs it delivered and the vouchers it receives, and asks it
whether a new job is covered. It writes those events to the journal before it
books them, and is rebuilt from the journal on restart. The receipts and the prefix
a voucher covers are :class:`~idlegrid.protocol.ReceiptPrefix`, shared with the client.

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
from typing import TYPE_CHECKING

from .._exceptions import PaymentRequired
from ..chain import ChannelTerms
from ..protocol import ROOT_HISTORY, ReceiptPrefix, Signature, Voucher

if TYPE_CHECKING:
    from ._journal import Journal

__all__ = [
    "ChannelBook",
    "ExpiringSet",
    "PaymentRequired",
    "TokenBucket",
    "check_client_credit",
]


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
    """One channel as the provider sees it: the one owner of its state.

    Every event that changes what the channel owes (a job begun, failed or delivered,
    a voucher taken) is written to the node's ``journal`` first, then to the book, so
    the book is always what a restart rebuilds (:meth:`load`). Without a journal (unit
    tests) it is pure bookkeeping.
    """

    terms: ChannelTerms
    deposit: int = 0  # on chain, including top-ups
    expiry: int = 0
    chain_open: bool = False
    reserved: int = 0  # amount of jobs running now
    in_flight: int = 0  # jobs running now
    voucher_amount: int = 0
    voucher_jobs: int = 0
    journal: Journal | None = field(default=None, repr=False)
    #: delivered jobs by seq (each one's leaf) and the prefix 1..n a voucher covers
    prefix: ReceiptPrefix[bytes] = field(
        default_factory=lambda: ReceiptPrefix(history=ROOT_HISTORY), repr=False
    )

    @classmethod
    def load(cls, journal: Journal, terms: ChannelTerms) -> ChannelBook:
        """The channel's book as the journal has it (after a restart)."""
        book = cls(terms, journal=journal)
        royalties = journal.royalties(terms.id)
        for seq, leaf, units, amount in journal.receipts(terms.id):
            book.deliver(seq, leaf, units, amount, royalties.get(seq))
        latest = journal.latest_voucher(terms.id)
        if latest is not None:
            book.accept_voucher(latest.voucher)
        return book

    @property
    def contiguous(self) -> int:
        """Jobs 1..n all delivered."""
        return self.prefix.count

    @property
    def delivered_amount(self) -> int:
        """Amount of every job delivered, covered by a voucher or not."""
        return self.prefix.total_amount

    @property
    def credit_jobs(self) -> int:
        """Jobs not covered by a voucher: delivered beyond it, or running now."""
        return len(self.prefix) - self.voucher_jobs + self.in_flight

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

    # -- journalled events -------------------------------------------------------------
    def begin_job(self, job_id: bytes, seq: int, kind: str) -> None:
        """A job starts on this channel under ``seq`` (DuplicateJob if it is taken)."""
        if self.journal is not None:
            self.journal.begin_job(job_id, self.terms, seq, kind)

    def fail_job(self, job_id: bytes, error: str) -> None:
        """The job never ran: nothing is owed, and its ``seq`` may be used again."""
        if self.journal is not None:
            self.journal.fail_job(job_id, error)

    def finish_job(
        self,
        job_id: bytes,
        seq: int,
        *,
        leaf: bytes,
        units: int,
        amount: int,
        result_hash: bytes,
        error: str | None = None,
        royalty: tuple[bytes, int] | None = None,
    ) -> None:
        """The job was delivered: journal its receipt durably, then book it
        (``royalty``: the part of ``amount`` owed to a model's lineage, and the model)."""
        if self.journal is not None:
            self.journal.finish_job(
                job_id,
                units=units,
                amount=amount,
                result_hash=result_hash,
                leaf=leaf,
                error=error,
                royalty=royalty,
            )
        self.deliver(seq, leaf, units, amount, royalty)

    def take_voucher(self, voucher: Voucher, signature: Signature) -> bool:
        """Keep ``voucher`` (signature checked by the caller) if it is newer than the one
        held; False if not; InvalidInput if it misstates what was delivered."""
        if not self.check_voucher(voucher):
            return False
        if self.journal is not None:
            self.journal.record_voucher(self.terms, voucher, signature)
        self.accept_voucher(voucher)
        return True

    # -- bookkeeping -------------------------------------------------------------------
    def redeemed(self, voucher: Voucher, tx: str) -> None:
        """``voucher`` was redeemed on chain by ``tx`` ("" when it had been before a crash,
        "closed" when the channel closed first): the journal stops offering it."""
        if self.journal is not None:
            self.journal.mark_redeemed(self.terms.id, voucher, tx)

    def deliver(
        self,
        seq: int,
        leaf: bytes,
        units: int,
        amount: int,
        royalty: tuple[bytes, int] | None = None,
    ) -> None:
        """Record a delivered job and extend the contiguous prefix."""
        self.prefix.add(seq, leaf, leaf=leaf, units=units, amount=amount, royalty=royalty)

    def check_voucher(self, voucher: Voucher) -> bool:
        """True if ``voucher`` is newer than what we hold; InvalidInput if it misstates
        what was delivered (root, amount or units of jobs 1..n)."""
        self.prefix.check_voucher(voucher)
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
