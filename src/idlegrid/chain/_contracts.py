"""The registry of contracts: everything deploy, load and index know about each one.

One :class:`ContractSpec` per contract says where its source is, how to build
its constructor arguments, which typed client talks to it, what to wire up once
every contract is deployed, and which of its events the indexer follows (with
how each changes the index). :data:`CONTRACTS` lists the ledger's contracts in
deployment order; :meth:`Ledger.deploy <idlegrid.chain.Ledger.deploy>`,
:func:`load_deployment` (``devnet.json``) and :class:`~idlegrid.chain.Indexer`
all take such a table, so a new contract is one new entry here (plus its source,
client and index handlers) and no change to the chain layer's code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._exceptions import ConfigError
from ..protocol import Account
from ._backend import ChainBackend
from ._clients import (
    ContractClient,
    DisputeClient,
    MarketClient,
    ModelRegistryClient,
    RegistryClient,
    TokenClient,
)
from ._compile import Artifact, compile_all, compile_file
from ._index_db import MARKET_EVENTS, REGISTRY_EVENTS, TOKEN_EVENTS, Handler
from ._index_disputes import DISPUTE_EVENTS, DISPUTE_SCHEMA
from ._oracle import OracleClient
from ._rewards import RewardPoolClient
from ._types import Deployment, LedgerConfig

__all__ = ["CONTRACTS", "ContractSpec", "load_deployment"]

#: constructor arguments from the deployment's config and the addresses deployed so far
ArgsBuilder = Callable[[LedgerConfig, Mapping[str, str]], Sequence[Any]]
#: a step run once every contract is deployed: (backend, addresses, owner)
Wiring = Callable[[ChainBackend, Mapping[str, str], Account], object]


@dataclass(frozen=True)
class ContractSpec:
    """One contract of a deployment, as deploy, load and index see it."""

    #: its name in :class:`Deployment` and ``devnet.json`` (``"market"``)
    key: str
    #: the contract's name, compiled from a file of that name (``"JobMarket"``)
    name: str
    #: constructor arguments, from the config and the addresses deployed before it
    args: ArgsBuilder
    #: the typed client class of this contract
    client: type[ContractClient]
    #: event name -> how it changes the index; the events the indexer follows
    events: Mapping[str, Handler] = field(default_factory=dict)
    #: SQL the indexer runs when it opens a file: this contract's tables
    schema: str = ""
    #: run once every contract of the table is deployed (e.g. tell one about another)
    wire: Wiring | None = None
    #: a source outside ``contracts/`` (a test's); None: the compiled contract ``name``
    source: Path | None = None
    #: added after deployments without it were written: one that lacks it still loads
    #: (its client is then absent: ``Ledger.client`` raises ConfigError)
    optional: bool = False

    def artifact(self) -> Artifact:
        """The compiled contract."""
        return compile_file(self.source) if self.source is not None else compile_all()[self.name]

    def connect(self, backend: ChainBackend, address: str) -> ContractClient:
        """A typed client of this contract at ``address``."""
        return self.client(backend, address, abi=self.artifact().abi)


def _set_market(backend: ChainBackend, addresses: Mapping[str, str], owner: Account) -> object:
    # the registry lets only the market slash; it learns the market's address here
    return RegistryClient(backend, addresses["registry"]).set_market(
        addresses["market"], sender=owner
    )


def _set_arbiter(backend: ChainBackend, addresses: Mapping[str, str], owner: Account) -> object:
    # the market lets only its arbiter slash, and takes one once: the dispute contract;
    # the reward pool lets only it freeze and void postings
    if "rewards" in addresses:
        RewardPoolClient(backend, addresses["rewards"]).set_arbiter(
            addresses["disputes"], sender=owner
        )
    return MarketClient(backend, addresses["market"]).set_arbiter(
        addresses["disputes"], sender=owner
    )


def _set_royalty_pool(
    backend: ChainBackend, addresses: Mapping[str, str], owner: Account
) -> object:
    # vouchers' usage royalties go from the market to the models' lineages in the pool
    return MarketClient(backend, addresses["market"]).set_royalty_pool(
        addresses["rewards"], sender=owner
    )


def _dispute_args(cfg: LedgerConfig, at: Mapping[str, str]) -> list[Any]:
    return [
        at["token"],
        at["market"],
        at["registry"],
        cfg.dispute_bond,
        cfg.dispute_slash_bps,
        cfg.dispute_penalty,
        cfg.referee_penalty,
        cfg.committee_size,
        cfg.dispute_window,
        cfg.draw_period,
        cfg.commit_period,
        cfg.reveal_period,
        # its outlier answers can be disputed (a ledger of a test's may have none)
        at.get("oracle", "0x" + "00" * 20),
        # its postings can be challenged (idem)
        at.get("rewards", "0x" + "00" * 20),
    ]


#: the ledger's contracts, in deployment order
CONTRACTS: tuple[ContractSpec, ...] = (
    ContractSpec(
        key="token",
        name="Token",
        args=lambda cfg, _: [cfg.token_name, cfg.token_symbol],
        client=TokenClient,
        # transfers, summed per pair: what a provider gave its clients (reputation)
        events=TOKEN_EVENTS,
    ),
    ContractSpec(
        key="registry",
        name="ProviderRegistry",
        args=lambda cfg, at: [at["token"], cfg.min_stake, cfg.unbonding_delay],
        client=RegistryClient,
        events=REGISTRY_EVENTS,
    ),
    ContractSpec(
        key="market",
        name="JobMarket",
        args=lambda cfg, at: [at["token"], at["registry"], cfg.close_window],
        client=MarketClient,
        events=MARKET_EVENTS,
        wire=_set_market,
    ),
    ContractSpec(
        key="models",
        name="ModelRegistry",
        args=lambda cfg, at: [],
        client=ModelRegistryClient,
    ),
    ContractSpec(
        key="oracle",
        name="IdlegridOracle",
        args=lambda cfg, at: [at["token"], at["models"], at["registry"]],
        client=OracleClient,
        optional=True,
    ),
    ContractSpec(
        key="rewards",
        name="RewardPool",
        args=lambda cfg, at: [
            at["token"],
            at["models"],
            cfg.reward_challenge_window,
            cfg.reward_claim_period,
        ],
        client=RewardPoolClient,
        optional=True,
        wire=_set_royalty_pool,
    ),
    ContractSpec(
        key="disputes",
        name="Disputes",
        args=_dispute_args,
        client=DisputeClient,
        events=DISPUTE_EVENTS,
        schema=DISPUTE_SCHEMA,
        wire=_set_arbiter,
    ),
)


def load_deployment(
    chain_id: int,
    addresses: Mapping[str, Any],
    start_block: int = 0,
    *,
    contracts: Sequence[ContractSpec] = CONTRACTS,
) -> Deployment:
    """A deployment read from a file's ``contracts`` object (key -> address).

    Every contract in ``contracts`` must have an address (ConfigError names the
    first that has none); keys no spec knows are kept, so that a file written
    for more contracts still loads.
    """
    if not isinstance(addresses, Mapping):
        raise ConfigError(f"contracts must be an object of key -> address, not {addresses!r}")
    missing = [
        f"{s.key!r} ({s.name})" for s in contracts if s.key not in addresses and not s.optional
    ]
    if missing:
        raise ConfigError(f"no address for contract {', '.join(missing)}")
    return Deployment(chain_id, {str(k): str(v) for k, v in addresses.items()}, start_block)
