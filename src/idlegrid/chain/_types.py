"""Plain data returned by the contract clients (no web3 types)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import cached_property

from eth_utils import keccak

from .._exceptions import InvalidInput
from ..protocol import checksum

__all__ = [
    "ChannelState",
    "ChannelTerms",
    "Contribution",
    "Deployment",
    "LedgerConfig",
    "ProviderInfo",
]

TOKEN = 10**18


@dataclass(frozen=True)
class LedgerConfig:
    """Deployment parameters of the ledger contracts."""

    token_name: str = "idlegrid"
    token_symbol: str = "IDLE"
    min_stake: int = 100 * TOKEN
    unbonding_delay: int = 7 * 24 * 3600
    close_window: int = 24 * 3600


@dataclass(frozen=True)
class Deployment:
    """Addresses of a deployed ledger on one chain."""

    chain_id: int
    token: str
    registry: str
    market: str
    start_block: int = 0

    def as_dict(self) -> dict[str, str]:
        return {"token": self.token, "registry": self.registry, "market": self.market}


@dataclass(frozen=True)
class ProviderInfo:
    """A provider's registry entry."""

    address: str
    endpoint: str
    price: int
    capabilities: bytes
    stake: int
    unbonding: int
    withdrawable_at: int
    registered: bool
    active: bool


@dataclass(frozen=True)
class ChannelTerms:
    """The immutable terms of a payment channel; their hash is the channel id."""

    client: str
    provider: str
    deposit: int
    expiry: int
    salt: int

    @classmethod
    def new(cls, client: str, provider: str, deposit: int, expiry: int) -> ChannelTerms:
        """Terms with a random 64-bit salt."""
        return cls(checksum(client), checksum(provider), deposit, expiry, secrets.randbits(64))

    @cached_property
    def id(self) -> bytes:
        """keccak256(abi_encode(client, provider, deposit, expiry, salt)), as the market does.

        Computed once per terms (nodes and clients look it up on every job); the five
        fields are static ABI types, so the encoding is five 32-byte words.
        """
        words = [bytes(12) + bytes.fromhex(checksum(a)[2:]) for a in (self.client, self.provider)]
        for value in (self.deposit, self.expiry, self.salt):
            if not 0 <= value < 2**256:
                raise InvalidInput(f"channel terms value {value} does not fit in uint256")
            words.append(value.to_bytes(32, "big"))
        return bytes(keccak(b"".join(words)))

    def as_tuple(self) -> tuple[str, str, int, int, int]:
        return (self.client, self.provider, self.deposit, self.expiry, self.salt)


@dataclass(frozen=True)
class ChannelState:
    """A channel's state on chain."""

    id: bytes
    deposit: int
    expiry: int
    paid: int
    jobs: int
    units: int
    open: bool
    closed: bool

    @property
    def remaining(self) -> int:
        return self.deposit - self.paid


@dataclass(frozen=True)
class Contribution:
    """A provider's cumulative record in the market."""

    earned: int
    jobs: int
    units: int
