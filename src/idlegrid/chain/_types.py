"""Plain data returned by the contract clients (no web3 types)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from types import MappingProxyType
from typing import Protocol

from eth_utils import keccak

from .._exceptions import ConfigError, InvalidInput
from ..protocol import checksum

__all__ = [
    "ChannelState",
    "ChannelTerms",
    "Contribution",
    "Deployment",
    "DisputeOutcome",
    "DisputeState",
    "DisputeStatus",
    "LedgerConfig",
    "ProviderInfo",
    "ReceiptFields",
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
    #: tokens a challenger locks to open a dispute (returned unless the provider was right)
    dispute_bond: int = 10 * TOKEN
    #: share of a provider's stake slashed when a dispute finds it wrong, in basis points
    dispute_slash_bps: int = 5000
    #: cap of that slash beyond the disputed receipt's amount
    dispute_penalty: int = 100 * TOKEN
    #: slash of a committee member who does not reveal a vote
    referee_penalty: int = 1 * TOKEN
    #: referees drawn per dispute
    committee_size: int = 3
    #: seconds after a channel's expiry + close_window during which it can be disputed
    dispute_window: int = 3 * 24 * 3600
    #: seconds after opening by which a dispute's committee must be drawn
    draw_period: int = 24 * 3600
    #: seconds after the draw for committing votes, then for revealing them
    commit_period: int = 24 * 3600
    reveal_period: int = 24 * 3600
    #: seconds after a reward posting before its claims open (its challenge window),
    #: then for claiming before the rest goes back to the run's pool
    reward_challenge_window: int = 24 * 3600
    reward_claim_period: int = 90 * 24 * 3600


@dataclass(frozen=True)
class Deployment:
    """Addresses of a deployed ledger on one chain.

    ``contracts`` maps each contract's key in the registry of contracts
    (``"token"``, ``"registry"``, ``"market"``, ...) to its address; the
    addresses are checksummed on construction. ``start_block`` is the block the
    first contract was deployed in, where an index of its events starts.
    """

    chain_id: int
    contracts: Mapping[str, str]
    start_block: int = 0

    def __post_init__(self) -> None:
        addresses = {str(k): checksum(v) for k, v in self.contracts.items()}
        object.__setattr__(self, "contracts", MappingProxyType(addresses))

    def __hash__(self) -> int:
        return hash((self.chain_id, tuple(sorted(self.contracts.items())), self.start_block))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Deployment):
            return NotImplemented
        return (self.chain_id, dict(self.contracts), self.start_block) == (
            other.chain_id,
            dict(other.contracts),
            other.start_block,
        )

    def address(self, key: str) -> str:
        """The address of contract ``key``; ConfigError if this deployment has none."""
        try:
            return self.contracts[key]
        except KeyError:
            raise ConfigError(f"the deployment has no {key!r} contract") from None

    def replace(self, **addresses: str) -> Deployment:
        """This deployment with the contracts named by keyword at other addresses."""
        return Deployment(self.chain_id, {**self.contracts, **addresses}, self.start_block)

    @property
    def token(self) -> str:
        return self.address("token")

    @property
    def registry(self) -> str:
        return self.address("registry")

    @property
    def market(self) -> str:
        return self.address("market")

    def as_dict(self) -> dict[str, str]:
        """Contract key -> address, as ``devnet.json`` stores them."""
        return dict(self.contracts)


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


class DisputeStatus(IntEnum):
    """Where a dispute is in its lifecycle (``Disputes.dispute().status``)."""

    NONE = 0
    DRAWING = 1
    VOTING = 2
    RESOLVED = 3


class DisputeOutcome(IntEnum):
    """How a dispute ended (``Disputes.dispute().outcome``)."""

    PENDING = 0
    PROVIDER_WRONG = 1
    PROVIDER_RIGHT = 2
    NO_DECISION = 3


class ReceiptFields(Protocol):
    """The fields of a signed job receipt (v2) that a dispute presents as evidence."""

    @property
    def channel(self) -> bytes: ...
    @property
    def job_id(self) -> bytes: ...
    @property
    def provider(self) -> str: ...
    @property
    def spec_hash(self) -> bytes: ...
    @property
    def input_hash(self) -> bytes: ...
    @property
    def output_hash(self) -> bytes: ...
    @property
    def units(self) -> int: ...
    @property
    def amount(self) -> int: ...


@dataclass(frozen=True)
class DisputeState:
    """A dispute on chain, keyed by the disputed receipt's leaf."""

    id: bytes
    status: DisputeStatus
    outcome: DisputeOutcome
    provider: str
    challenger: str
    client: str
    #: the receipt's amount, capped at what its channel paid: the client's refund
    amount: int
    seed_block: int
    draw_deadline: int
    commit_deadline: int
    reveal_deadline: int
    commits: int
    wrong_votes: int
    right_votes: int
    committee: tuple[str, ...]
