"""A deployment's contracts with their typed clients: deploy them, or connect to them."""

from __future__ import annotations

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
