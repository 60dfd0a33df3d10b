"""The chain layer: compile, deploy and call the idlegrid contracts on any EVM.

ABI and web3 objects stay inside this package; callers get typed clients,
plain dataclasses and idlegrid exceptions.
"""

from ._anvil import AnvilNode, find_anvil, free_port, wait_for_rpc
from ._backend import ChainBackend, EmbeddedBackend, RpcBackend, TxResult
from ._clients import ContractClient, MarketClient, RegistryClient, TokenClient, deploy_contract
from ._compile import compile_all, compile_file, contracts_dir
from ._contracts import CONTRACTS, ContractSpec, load_deployment
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
from ._ledger import Ledger
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
    "CONTRACTS",
    "DEV_MNEMONIC",
    "TOKEN",
    "AnvilNode",
    "ChainBackend",
    "ChannelState",
    "ChannelStatus",
    "ChannelTerms",
    "ContractClient",
    "ContractSpec",
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
    "compile_file",
    "contracts_dir",
    "deploy_contract",
    "dev_accounts",
    "find_anvil",
    "free_port",
    "load_deployment",
    "serve",
    "wait_for_rpc",
]
