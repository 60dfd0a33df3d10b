"""A deployment's contracts with their typed clients: deploy them, or connect to them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TypeVar

from .._exceptions import ConfigError
from ..protocol import Account
from ._backend import ChainBackend
from ._clients import ContractClient, MarketClient, RegistryClient, TokenClient, deploy_contract
from ._contracts import CONTRACTS, ContractSpec
from ._types import Deployment, LedgerConfig

__all__ = ["Ledger"]

C = TypeVar("C", bound=ContractClient)


class Ledger:
    """Every contract of one deployment, with typed clients.

    ``token``, ``registry`` and ``market`` are the core three; any contract of
    the table is reached by its key with :meth:`client`.
    """

    def __init__(
        self,
        backend: ChainBackend,
        deployment: Deployment,
        *,
        contracts: Sequence[ContractSpec] = CONTRACTS,
    ) -> None:
        if deployment.chain_id != backend.chain_id:
            raise ConfigError(
                f"deployment is for chain {deployment.chain_id}, "
                f"backend is chain {backend.chain_id}"
            )
        self.backend = backend
        self.deployment = deployment
        self.contracts = tuple(contracts)
        self.clients: dict[str, ContractClient] = {
            spec.key: spec.connect(backend, deployment.address(spec.key))
            for spec in contracts
            if not spec.optional or spec.key in deployment.contracts
        }
        self.token = self.client("token", TokenClient)
        self.registry = self.client("registry", RegistryClient)
        self.market = self.client("market", MarketClient)

    def client(self, key: str, kind: type[C]) -> C:
        """The client of contract ``key``, checked to be a ``kind``."""
        client = self.clients.get(key)
        if not isinstance(client, kind):
            raise ConfigError(f"the ledger has no {kind.__name__} under {key!r}")
        return client

    @classmethod
    def deploy(
        cls,
        backend: ChainBackend,
        owner: Account,
        config: LedgerConfig | None = None,
        *,
        contracts: Sequence[ContractSpec] = CONTRACTS,
    ) -> Ledger:
        """Deploy every contract of ``contracts`` from ``owner``, in order, then wire them."""
        cfg = config or LedgerConfig()
        start = backend.block_number()
        addresses: dict[str, str] = {}
        for spec in contracts:
            addresses[spec.key] = deploy_contract(
                backend,
                spec.name,
                spec.args(cfg, addresses),
                sender=owner,
                artifact=spec.artifact(),
            )
        for spec in contracts:
            if spec.wire is not None:
                spec.wire(backend, addresses, owner)
        deployment = Deployment(backend.chain_id, addresses, start)
        return cls(backend, deployment, contracts=contracts)


class RoyaltyRates:
    """Models' royalty rates as the RewardPool holds them, read off the event loop and
    kept: a rate once set never changes, so only an unset one (0) is read again, after
    ``ttl_s``. Client and provider each keep one, so that both price a job alike."""

    def __init__(self, ledger: Ledger, *, ttl_s: float = 10.0, size: int = 4096) -> None:
        self.ledger = ledger
        self.ttl_s = ttl_s
        self.size = size
        self._rates: dict[bytes, tuple[int, float]] = {}  # model -> (rate, when read)

    async def get(self, model: bytes, *, fresh: bool = False) -> int:
        """``model``'s rate (``fresh``: read from the chain even if an unset one is kept)."""
        hit = self._rates.get(model)
        now = time.monotonic()
        if hit is not None and not fresh and (hit[0] or now - hit[1] < self.ttl_s):
            return hit[0]
        rate = await asyncio.to_thread(royalty_rate, self.ledger, model)
        if len(self._rates) >= self.size:
            self._rates.clear()
        self._rates[model] = (rate, now)
        return rate


def royalty_rate(ledger: Ledger, model: bytes) -> int:
    """What a job of ``model`` pays its lineage per compute unit (the RewardPool's
    ``royalty_rate``); 0 on a ledger without a RewardPool."""
    from ._rewards import RewardPoolClient

    if "rewards" not in ledger.clients:
        return 0
    return ledger.client("rewards", RewardPoolClient).royalty_rate(model)
