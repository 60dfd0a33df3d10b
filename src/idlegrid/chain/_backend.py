"""Chain backends: where transactions go. One interface, two implementations.

* :class:`EmbeddedBackend` runs py-evm in this process through eth-tester (the
  default: needs nothing but pip).
* :class:`RpcBackend` talks JSON-RPC to any EVM node (anvil, a testnet, a rollup).

Both sign transactions locally with the sender's key and send them raw, so the
same code path is exercised everywhere. Development-only operations
(``advance_time``, ``snapshot``/``revert``) work on the embedded chain and on
anvil, and raise ConfigError on a node that lacks them.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal, cast

from web3 import Web3
from web3.exceptions import BlockNotFound, TimeExhausted, TransactionNotFound
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import RPCEndpoint

from .._exceptions import (
    ChainTimeout,
    ChainUnavailable,
    ConfigError,
    ContractReverted,
    InvalidInput,
)
from ..protocol import Account
from ._devkeys import DEV_MNEMONIC, dev_accounts
from ._errors import revert_reason, translate

__all__ = ["ChainBackend", "EmbeddedBackend", "RpcBackend", "TxResult"]

DEFAULT_TX_TIMEOUT = 60.0
DEFAULT_RPC_TIMEOUT = 10.0


@dataclass(frozen=True)
class TxResult:
    """A mined, successful transaction."""

    tx_hash: str
    block: int
    gas_used: int
    receipt: Any  # the node's receipt; only idlegrid.chain reads it


class ChainBackend(ABC):
    """An EVM chain we can read and send signed transactions to."""

    #: the block gas is estimated on (:meth:`send`); ``None``: the node's default
    _estimate_block: Literal["pending"] | None = "pending"

    def __init__(self, w3: Web3, *, tx_timeout: float = DEFAULT_TX_TIMEOUT) -> None:
        self._w3 = w3
        self._tx_timeout = tx_timeout
        self._nonce_lock = threading.Lock()
        self._chain_id: int | None = None

    # -- reads -------------------------------------------------------------
    @property
    def w3(self) -> Web3:
        """The web3 handle; for idlegrid.chain only."""
        return self._w3

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            with translate("eth_chainId"):
                self._chain_id = int(self._w3.eth.chain_id)
        return self._chain_id

    def block_number(self) -> int:
        with translate("eth_blockNumber"):
            return int(self._w3.eth.block_number)

    def timestamp(self) -> int:
        """Timestamp of the latest block."""
        with translate("eth_getBlockByNumber"):
            return int(self._w3.eth.get_block("latest")["timestamp"])

    def next_timestamp(self) -> int:
        """The chain's time now: the ``block.timestamp`` a transaction sent now would see.

        That is the pending block's timestamp, which can lie far ahead of the latest
        block's: a development chain that mined nothing for a while (or went back to a
        snapshot) stamps its next block with the wall clock. Nodes that keep no pending
        block answer with the latest one, and so does this method.
        """
        with translate("eth_getBlockByNumber"):
            try:
                pending = self._w3.eth.get_block("pending")
            except BlockNotFound:
                pending = None
            latest = self._w3.eth.get_block("latest")
        stamps = [int(block["timestamp"]) for block in (pending, latest) if block]
        return max(stamps)

    def eth_balance(self, address: str) -> int:
        with translate("eth_getBalance"):
            return int(self._w3.eth.get_balance(Web3.to_checksum_address(address)))

    # -- writes ------------------------------------------------------------
    def send(self, sender: Account, tx: dict[str, Any], *, function: str) -> TxResult:
        """Fill in, sign and send ``tx`` from ``sender``; wait for it to be mined.

        Gas is estimated first, so a call that would revert raises
        ContractReverted with the contract's reason and costs nothing.
        """
        w3 = self._w3
        with translate(function):
            tx = dict(tx)
            tx["from"] = sender.address
            tx.setdefault("chainId", self.chain_id)
            tx.setdefault("value", 0)
            if "gas" not in tx:
                # on the pending block: the one the transaction will be mined in. A node
                # estimates on the latest block when told nothing, and anvil stamps that
                # with the time it was mined, seconds to minutes behind the pending
                # block's wall clock: a deadline counted from the chain's time now
                # (next_timestamp) would pass the transaction and fail its estimate
                estimate = w3.eth.estimate_gas(cast(Any, tx), self._estimate_block)
                tx["gas"] = int(estimate) * 12 // 10 + 10_000
            if "maxFeePerGas" not in tx and "gasPrice" not in tx:
                base = int(w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
                tip = 10**9
                tx["maxPriorityFeePerGas"] = tip
                tx["maxFeePerGas"] = 2 * base + tip
            with self._nonce_lock:
                tx["nonce"] = int(
                    w3.eth.get_transaction_count(cast(Any, sender.address), "pending")
                )
                signed = w3.eth.account.sign_transaction(tx, sender.key)
                tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self._wait_receipt(tx_hash)
        if receipt["status"] != 1:
            raise ContractReverted(
                self._replay_reason(tx, receipt["blockNumber"]), function=function
            )
        return TxResult(
            tx_hash="0x" + bytes(tx_hash).hex(),
            block=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            receipt=receipt,
        )

    def _wait_receipt(self, tx_hash: Any) -> Any:
        """The transaction's receipt once it is mined. Polled from 2 ms, doubling up to
        50 ms: a local chain (anvil, eth-tester) mines at once, and a fixed 50 ms poll
        added up to 50 ms to every transaction; a remote chain is polled as before."""
        deadline = time.monotonic() + self._tx_timeout
        delay = 0.002
        while True:
            try:
                return self._w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                pass
            if time.monotonic() >= deadline:
                raise TimeExhausted(
                    f"transaction {bytes(tx_hash).hex()} not mined within {self._tx_timeout} s"
                )
            time.sleep(delay)
            delay = min(0.05, 2 * delay)

    def _replay_reason(self, tx: dict[str, Any], block: int) -> str:
        """Why a mined transaction reverted, by running it again as a call.

        First in the block it was mined in (its timestamp: a deadline that passed between
        the gas estimate and the block is seen; the reverted transaction changed no
        state), then on the state before that block.
        """
        call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        for at in (block, block - 1):
            try:
                self._w3.eth.call(call, at)  # type: ignore[arg-type]
            except Exception as exc:
                return revert_reason(getattr(exc, "message", None) or exc)
        return "transaction failed (out of gas?)"

    def wait_for_block(self, number: int, *, timeout_s: float, poll_s: float = 0.5) -> int:
        """Wait until block ``number`` is mined; the latest block's number.

        A development chain that mines only on transactions (anvil, eth-tester) would
        never get there by itself: on one (it has dev accounts), an empty block is mined
        whenever a poll finds the chain still. ChainTimeout after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (head := self.block_number()) < number:
            if time.monotonic() > deadline:
                raise ChainTimeout(f"block {number} not mined in {timeout_s:g} s (at {head})")
            time.sleep(poll_s)
            if self.block_number() == head and self.dev_accounts():
                self.advance_time(0)
        return head

    # -- development chains -------------------------------------------------
    @abstractmethod
    def dev_accounts(self) -> list[Account]:
        """Pre-funded development accounts (empty on a real chain)."""

    @abstractmethod
    def advance_time(self, seconds: int) -> None:
        """Move the chain's clock ``seconds`` forward and mine a block there.

        The mined block is stamped ``seconds`` after :meth:`next_timestamp` (exactly on
        the embedded chain; on a node whose clock follows the wall clock, plus the
        moments between the two calls). Later transactions see a later time.
        """

    @abstractmethod
    def snapshot(self) -> Any:
        """Save the chain state; pass the result to :meth:`revert`."""

    @abstractmethod
    def revert(self, snapshot: Any) -> None:
        """Go back to a saved state."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release resources (connections, processes)."""


class EmbeddedBackend(ChainBackend):
    """py-evm in this process, via eth-tester. Accounts are anvil's dev accounts."""

    # eth-tester refuses "pending" and, told nothing, estimates in a new block on top of
    # the latest (py-evm's costless state, stamped with the wall clock): the pending one
    _estimate_block = None

    def __init__(self, *, accounts: int = 10, tx_timeout: float = DEFAULT_TX_TIMEOUT) -> None:
        from eth_tester import EthereumTester, PyEVMBackend

        from . import _pyevm_gas

        backend = PyEVMBackend.from_mnemonic(
            DEV_MNEMONIC,
            num_accounts=accounts,
            hd_path="m/44'/60'/0'/0",  # the same keys as anvil's dev accounts
        )
        _pyevm_gas.install(backend.chain)  # two executions an estimate, not thirteen
        self._tester = EthereumTester(backend)
        self._accounts = dev_accounts(accounts)
        super().__init__(Web3(EthereumTesterProvider(self._tester)), tx_timeout=tx_timeout)

    @property
    def tester(self) -> Any:
        """The eth-tester instance (for the JSON-RPC server)."""
        return self._tester

    def dev_accounts(self) -> list[Account]:
        return list(self._accounts)

    def advance_time(self, seconds: int) -> None:
        if seconds < 0:
            raise InvalidInput(f"cannot move the chain's clock back ({seconds} s)")
        # Travel from the pending block, not the latest: py-evm stamps the pending block
        # with the wall clock when it is made (after each block, after a revert), so the
        # latest block can lie minutes behind it, and a target counted from there lies in
        # eth-tester's past ("Space time continuum distortion detected"). The pending
        # block keeps its stamp until it is mined, so the target is exact. eth-tester
        # mines the time-travel block one second before its target.
        pending = int(self._tester.get_block_by_number("pending")["timestamp"])
        self._tester.time_travel(pending + int(seconds) + 1)

    def snapshot(self) -> Any:
        return self._tester.take_snapshot()

    def revert(self, snapshot: Any) -> None:
        self._tester.revert_to_snapshot(snapshot)


class RpcBackend(ChainBackend):
    """Any EVM JSON-RPC endpoint over HTTP."""

    def __init__(
        self,
        url: str,
        *,
        dev_account_count: int = 0,
        rpc_timeout: float = DEFAULT_RPC_TIMEOUT,
        tx_timeout: float = DEFAULT_TX_TIMEOUT,
    ) -> None:
        self.url = url
        # web3's validation middleware asks the node for its chain id before every
        # call, gas estimate and transaction it checks (one more round trip each: 40%
        # of a read's CPU); an endpoint's chain id does not change, so that one answer
        # is cached (per thread), and nothing else is
        provider = Web3.HTTPProvider(
            url,
            request_kwargs={"timeout": rpc_timeout},
            cache_allowed_requests=True,
            cacheable_requests={RPCEndpoint("eth_chainId")},
            request_cache_validation_threshold=None,  # (for block reads: none cached)
        )
        w3 = Web3(provider)
        super().__init__(w3, tx_timeout=tx_timeout)
        self._dev_count = dev_account_count

    def check(self) -> None:
        """Raise ChainUnavailable unless the endpoint answers."""
        try:
            _ = self.chain_id
        except ChainUnavailable:
            raise
        except Exception as exc:
            raise ChainUnavailable(f"{self.url} does not answer JSON-RPC: {exc}") from exc

    def dev_accounts(self) -> list[Account]:
        return dev_accounts(self._dev_count)

    def _dev_rpc(self, method: str, params: list[Any]) -> Any:
        with translate(method):
            response = self._w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in response:
            raise ConfigError(
                f"{self.url} does not support {method} (not a development node?): "
                f"{response['error']}"
            )
        return response.get("result")

    def advance_time(self, seconds: int) -> None:
        if seconds < 0:
            raise InvalidInput(f"cannot move the chain's clock back ({seconds} s)")
        # the node's clock (anvil: wall clock plus an offset) is already the pending
        # block's: evm_increaseTime moves it forward, evm_mine stamps a block with it
        self._dev_rpc("evm_increaseTime", [int(seconds)])
        self._dev_rpc("evm_mine", [])

    def snapshot(self) -> Any:
        return self._dev_rpc("evm_snapshot", [])

    def revert(self, snapshot: Any) -> None:
        if not self._dev_rpc("evm_revert", [snapshot]):
            raise ConfigError(f"{self.url} could not revert to snapshot {snapshot}")
