"""The chain layer: compile, deploy and call the idlegrid contracts on any EVM.

ABI and web3 objects stay inside this package; callers get typed clients,
plain dataclasses and idlegrid exceptions.
"""

from ._anvil import AnvilNode, find_anvil, free_port, wait_for_rpc
from ._backend import ChainBackend, EmbeddedBackend, RpcBackend, TxResult
from ._compile import compile_all, contracts_dir
from ._devkeys import DEV_MNEMONIC, dev_accounts
from ._index_types import (
    ChannelStatus,
    IndexedChannel,
    IndexedProvider,
    ProviderContribution,
    Redemption,
    Slash,
    SyncReport,
)
from ._indexer import Indexer
from ._ledger import Ledger, MarketClient, RegistryClient, TokenClient, deploy_contract
from ._rpchttp import RpcServer, serve
from ._types import (
    TOKEN,
    ChannelState,
    ChannelTerms,
    Contribution,
    Deployment,
    LedgerConfig,
    ProviderInfo,
)

__all__ = [
    "DEV_MNEMONIC",
    "TOKEN",
    "AnvilNode",
    "ChainBackend",
    "ChannelState",
    "ChannelStatus",
    "ChannelTerms",
    "Contribution",
    "Deployment",
    "EmbeddedBackend",
    "IndexedChannel",
    "IndexedProvider",
    "Indexer",
    "Ledger",
    "LedgerConfig",
    "MarketClient",
    "ProviderContribution",
    "ProviderInfo",
    "Redemption",
    "RegistryClient",
    "RpcBackend",
    "RpcServer",
    "Slash",
    "SyncReport",
    "TokenClient",
    "TxResult",
    "compile_all",
    "contracts_dir",
    "deploy_contract",
    "dev_accounts",
    "find_anvil",
    "free_port",
    "serve",
    "wait_for_rpc",
]
