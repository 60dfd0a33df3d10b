"""The chain layer: compile, deploy and call the idlegrid contracts on any EVM.

ABI and web3 objects stay inside this package; callers get typed clients,
plain dataclasses and idlegrid exceptions.
"""

import typing as _typing

from ._anvil import AnvilNode, find_anvil, free_port, wait_for_rpc
from ._backend import ChainBackend, EmbeddedBackend, RpcBackend, TxResult
from ._clients import (
    ContractClient,
    DisputeClient,
    FederatedRunRecord,
    MarketClient,
    ModelRecord,
    ModelRegistryClient,
    RegistryClient,
    TokenClient,
    TrainingOutcome,
    TrainingRecord,
    deploy_contract,
    vote_commitment,
)
from ._compile import compile_all, compile_file, contracts_dir
from ._contracts import CONTRACTS, ContractSpec, load_deployment
from ._devkeys import DEV_MNEMONIC, dev_accounts
from ._dispute_gas import DisputeGas, measure_dispute_gas
from ._index_types import (
    Activity,
    ChannelStatus,
    IndexedChannel,
    IndexedProvider,
    ProviderContribution,
    Redemption,
    Slash,
    SyncReport,
)
from ._indexer import Indexer
from ._ledger import Ledger, RoyaltyRates, royalty_rate
from ._oracle import (
    FIXED_ONE,
    OracleAnswer,
    OracleClient,
    OracleRequest,
    encode_report,
    from_fixed,
    input_hash,
    sign_answer,
    to_fixed,
    within_tolerance,
)
from ._reputation import ProviderHistory, Reputation, ReputationRules, score_reputation
from ._rewards import (
    DataRoyalty,
    PoolState,
    Posted,
    PostingState,
    RewardPoolClient,
    RewardTree,
    RoyaltyTerms,
    reward_leaf,
)
from ._types import (
    TOKEN,
    ChannelState,
    ChannelTerms,
    Contribution,
    Deployment,
    DisputeOutcome,
    DisputeState,
    DisputeStatus,
    LedgerConfig,
    ProviderInfo,
)

if _typing.TYPE_CHECKING:
    from ._rpchttp import RpcServer, serve

__all__ = [
    "CONTRACTS",
    "DEV_MNEMONIC",
    "FIXED_ONE",
    "TOKEN",
    "Activity",
    "AnvilNode",
    "ChainBackend",
    "ChannelState",
    "ChannelStatus",
    "ChannelTerms",
    "ContractClient",
    "ContractSpec",
    "Contribution",
    "DataRoyalty",
    "Deployment",
    "DisputeClient",
    "DisputeGas",
    "DisputeOutcome",
    "DisputeState",
    "DisputeStatus",
    "EmbeddedBackend",
    "FederatedRunRecord",
    "IndexedChannel",
    "IndexedProvider",
    "Indexer",
    "Ledger",
    "LedgerConfig",
    "MarketClient",
    "ModelRecord",
    "ModelRegistryClient",
    "OracleAnswer",
    "OracleClient",
    "OracleRequest",
    "PoolState",
    "Posted",
    "PostingState",
    "ProviderContribution",
    "ProviderHistory",
    "ProviderInfo",
    "Redemption",
    "RegistryClient",
    "Reputation",
    "ReputationRules",
    "RewardPoolClient",
    "RewardTree",
    "RoyaltyRates",
    "RoyaltyTerms",
    "RpcBackend",
    "RpcServer",
    "Slash",
    "SyncReport",
    "TokenClient",
    "TrainingOutcome",
    "TrainingRecord",
    "TxResult",
    "compile_all",
    "compile_file",
    "contracts_dir",
    "deploy_contract",
    "dev_accounts",
    "encode_report",
    "find_anvil",
    "free_port",
    "from_fixed",
    "input_hash",
    "load_deployment",
    "measure_dispute_gas",
    "reward_leaf",
    "royalty_rate",
    "score_reputation",
    "serve",
    "sign_answer",
    "to_fixed",
    "vote_commitment",
    "wait_for_rpc",
    "within_tolerance",
]


def __getattr__(name: str) -> _typing.Any:
    """The embedded chain's JSON-RPC server (``RpcServer``, ``serve``), loaded when first
    asked for: it loads eth-tester and py-evm, a third of a second that every node and
    command on a real chain would pay for nothing."""
    if name in ("RpcServer", "serve"):
        from . import _rpchttp

        return getattr(_rpchttp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
