"""The wire model of ``GET /v1/status`` (unsigned): a node's earnings, what it is owed, its
open channels and latest jobs, for its operator (``idlegrid node status``).

Everything in it is on chain already, or will be at the next redemption (channels and
their clients, deposits, what the vouchers pay), or names no client (the latest jobs: no
channel, no error text, no hashes). The lists are bounded. Fields a newer node adds are
ignored, so that an older command keeps reading it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from ._jobs import AddressHex, Bytes32Hex, KindName, Uint, _Model

__all__ = [
    "MAX_STATUS_CHANNELS",
    "MAX_STATUS_JOBS",
    "Earnings",
    "JobStatus",
    "NodeStatus",
    "OpenChannel",
    "UnredeemedVouchers",
]

#: channels listed at most (the latest to expire first)
MAX_STATUS_CHANNELS = 50
#: jobs listed at most (the latest first)
MAX_STATUS_JOBS = 20


class _Status(_Model):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Earnings(_Status):
    """The provider's record in the market (``JobMarket.record``): what redemptions paid."""

    earned: Uint = Field(description="tokens (wei) paid to the provider by redeemed vouchers")
    jobs: Uint
    units: Uint


class UnredeemedVouchers(_Status):
    """The latest vouchers the node holds that are not redeemed yet, and what they pay."""

    count: Uint
    tokens: Uint = Field(description="wei the node will be paid when it redeems them")


class OpenChannel(_Status):
    """An open channel as the node last read it on chain, with what its client owes."""

    channel: Bytes32Hex
    client: AddressHex
    deposit: Uint
    paid: Uint = Field(description="wei the client's latest voucher pays")
    delivered: Uint = Field(description="wei of the jobs delivered on it, vouchered or not")
    remaining: Uint = Field(description="deposit - paid")
    expiry: Uint


class JobStatus(_Status):
    """One job the node took, as its journal has it."""

    job_id: Bytes32Hex
    kind: KindName
    outcome: Literal["ok", "failed", "not_run", "running"]
    units: Uint | None = None
    amount: Uint | None = Field(default=None, description="wei billed")
    created: float = Field(description="when the node took it (unix seconds)")


class NodeStatus(_Status):
    """What ``GET /v1/status`` answers."""

    address: AddressHex
    version: str
    time: float = Field(description="the node's clock (unix seconds)")
    started: float = Field(description="when the node started (unix seconds)")
    #: None when the chain could not be read
    earnings: Earnings | None
    vouchers: UnredeemedVouchers
    open_channels: Uint = Field(description="all of them; ``channels`` lists the latest")
    channels: list[OpenChannel] = Field(max_length=MAX_STATUS_CHANNELS)
    jobs: list[JobStatus] = Field(max_length=MAX_STATUS_JOBS)
