"""Plain data returned by the event indexer (no web3 or ABI types)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ._types import ChannelTerms, Contribution

__all__ = [
    "Activity",
    "ChannelStatus",
    "IndexedChannel",
    "IndexedProvider",
    "ProviderContribution",
    "Redemption",
    "Slash",
    "SyncReport",
]


class ChannelStatus(StrEnum):
    """Lifecycle of a payment channel as seen in the market's events."""

    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class SyncReport:
    """What one :meth:`Indexer.sync` call did.

    ``last_block`` is the newest block now in the index (None while nothing is
    indexed); ``head`` is the chain's latest block when the sync began, of which
    the newest ``confirmations`` blocks are left for a later sync.
    """

    blocks_scanned: int
    events_applied: int
    head: int
    last_block: int | None


@dataclass(frozen=True)
class IndexedProvider:
    """A provider as the registry's events describe it."""

    address: str
    endpoint: str
    price: int
    capabilities: bytes
    stake: int
    unbonding: int
    withdrawable_at: int
    active: bool
    registered_block: int
    slashed_total: int


@dataclass(frozen=True)
class IndexedChannel:
    """A payment channel as the market's events describe it.

    ``deposit`` and ``expiry`` include top-ups; ``opening_deposit`` and
    ``opening_expiry`` are the values it was opened with, which (with client,
    provider and salt) are the :attr:`terms` the market's calls take.
    """

    id: bytes
    client: str
    provider: str
    deposit: int
    expiry: int
    salt: int
    opening_deposit: int
    opening_expiry: int
    paid: int
    jobs: int
    units: int
    receipts_root: bytes | None  # of the latest redeemed voucher; None before the first
    status: ChannelStatus
    refund: int | None  # set when closed
    opened_block: int
    closed_block: int | None

    @property
    def terms(self) -> ChannelTerms:
        """The immutable terms whose hash is :attr:`id`."""
        return ChannelTerms(
            self.client, self.provider, self.opening_deposit, self.opening_expiry, self.salt
        )

    @property
    def remaining(self) -> int:
        return self.deposit - self.paid


@dataclass(frozen=True)
class Redemption:
    """One redeemed voucher: ``amount`` is what it paid; paid, jobs and units are
    the channel's cumulative totals after it."""

    channel: bytes
    provider: str
    amount: int
    paid: int
    jobs: int
    units: int
    receipts_root: bytes
    block: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class ProviderContribution:
    """A provider's work summed over all its redemptions, on every channel."""

    provider: str
    earned: int
    jobs: int
    units: int
    redemptions: int

    def as_contribution(self) -> Contribution:
        """The same totals in the shape of the market's own ``record``."""
        return Contribution(self.earned, self.jobs, self.units)


@dataclass(frozen=True)
class Slash:
    """Stake taken from a provider; ``stake`` and ``unbonding`` are what it kept."""

    provider: str
    beneficiary: str
    amount: int
    stake: int
    unbonding: int
    block: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class Activity:
    """One recorded event of any followed contract: ``contract`` is the deployment's
    key (``"models"``), ``args`` its decoded arguments as JSON values (bytes as
    0x-hex), ``timestamp`` its block's (None when the index lacks the block)."""

    seq: int
    contract: str
    name: str
    block: int
    tx_hash: str
    log_index: int
    args: dict[str, Any]
    timestamp: int | None
