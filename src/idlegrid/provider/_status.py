"""What ``GET /v1/status`` says of a node (``idlegrid node status``): its earnings on
chain, its unredeemed vouchers, its open channels and its latest jobs.

The route is unsigned, so a stranger's call must cost little: the lists are bounded,
the journal is read in a thread with queries that scan nothing (``LIMIT`` over rowid,
the vouchers of channels the node has), and the chain's record is read at most once per
``EARNINGS_TTL_S`` (requests meanwhile share the last read, a failed one included).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .. import __version__
from .._exceptions import IdlegridError
from ..protocol import (
    MAX_STATUS_CHANNELS,
    MAX_STATUS_JOBS,
    Earnings,
    JobStatus,
    NodeStatus,
    OpenChannel,
    UnredeemedVouchers,
)

if TYPE_CHECKING:
    from ._node import ProviderNode

__all__ = ["EARNINGS_TTL_S", "StatusReader"]

#: seconds a read of the provider's record on chain is reused
EARNINGS_TTL_S = 5.0


class StatusReader:
    """Builds a node's :class:`NodeStatus`."""

    def __init__(self, node: ProviderNode, *, earnings_ttl_s: float = EARNINGS_TTL_S) -> None:
        self.node = node
        self.earnings_ttl_s = earnings_ttl_s
        self._earnings: Earnings | None = None
        self._read_at = -float("inf")  # monotonic
        self._lock = asyncio.Lock()

    async def read(self) -> NodeStatus:
        node = self.node
        now = time.time()
        books = node.open_books(now)  # on the event loop, where the books change
        books.sort(key=lambda b: b.terms.expiry, reverse=True)
        channels = [
            OpenChannel(
                channel="0x" + b.terms.id.hex(),
                client=b.terms.client,
                deposit=b.deposit,
                paid=b.voucher_amount,
                delivered=b.delivered_amount,
                remaining=max(0, b.deposit - b.voucher_amount),
                expiry=b.expiry,
            )
            for b in books[:MAX_STATUS_CHANNELS]
        ]
        earnings = await self._earnings_now()
        vouchers, jobs = await asyncio.to_thread(self._from_journal)
        return NodeStatus(
            address=node.address,
            version=__version__,
            time=now,
            started=node.stats.started,
            earnings=earnings,
            vouchers=vouchers,
            open_channels=len(books),
            channels=channels,
            jobs=jobs,
        )

    def _from_journal(self) -> tuple[UnredeemedVouchers, list[JobStatus]]:
        journal = self.node.journal
        unredeemed = journal.unredeemed()
        vouchers = UnredeemedVouchers(
            count=len(unredeemed), tokens=sum(v.pending for v in unredeemed)
        )
        jobs = [
            JobStatus(
                job_id="0x" + j.job_id.hex(),
                kind=j.kind,
                outcome=j.outcome,
                units=j.units,
                amount=j.amount,
                created=j.created,
            )
            for j in journal.recent_jobs(MAX_STATUS_JOBS)
        ]
        return vouchers, jobs

    async def _earnings_now(self) -> Earnings | None:
        """The provider's record on chain, read at most once per ``earnings_ttl_s``; None
        when the chain cannot be read."""
        async with self._lock:  # requests that come during a read wait for it
            if time.monotonic() - self._read_at < self.earnings_ttl_s:
                return self._earnings
            node = self.node
            try:
                record = await asyncio.to_thread(node.ledger.market.record, node.address)
            except IdlegridError:
                self._earnings = None
            else:
                self._earnings = Earnings(
                    earned=record.earned, jobs=record.jobs, units=record.units
                )
            self._read_at = time.monotonic()
            return self._earnings
