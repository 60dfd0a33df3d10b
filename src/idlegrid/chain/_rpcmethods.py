"""The embedded chain's JSON-RPC methods: eth-tester answering as a real node would.

Each method takes ``params`` as a client sends them and returns what geth or
anvil put in ``result`` (the wire format is in ``_rpcwire``). Differences from
anvil, harmless on a development chain: each transaction is mined in its own
block as it arrives, and ``evm_increaseTime`` mines a block at the new time at
once (anvil waits for the next block).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from eth.exceptions import HeaderNotFound, PyEVMError, Revert, VMError
from eth.vm.spoof import SpoofTransaction
from eth_tester.exceptions import (
    BlockNotFound,
    SnapshotNotFound,
    TransactionFailed,
    TransactionNotFound,
)
from eth_tester.exceptions import ValidationError as TesterInputError
from eth_utils import keccak, to_canonical_address
from eth_utils.exceptions import ValidationError as EvmRejection

from ._rpcwire import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    SERVER_ERROR,
    Params,
    RpcFault,
    arg,
    estimate_fault,
    format_block,
    format_log,
    format_receipt,
    format_transaction,
    parse_address,
    parse_data,
    parse_hash,
    parse_quantity,
    parse_transaction,
    revert_fault,
    to_wire,
)

__all__ = ["TesterRpc"]

PRIORITY_FEE = 10**9  # the tip we suggest, as anvil does
MAX_FEE_HISTORY = 1024

_NAMED_BLOCKS = {"latest", "earliest", "pending", "safe", "finalized"}


class TesterRpc:
    """JSON-RPC over one eth-tester instance; calls are serialised by a lock."""

    def __init__(self, tester: Any) -> None:
        self._tester = tester
        self._lock = threading.Lock()
        self._time_offset = 0
        self.chain_id = int(tester.backend.chain.chain_id)
        self._methods: dict[str, Callable[[Params], Any]] = {
            "web3_clientVersion": self._client_version,
            "web3_sha3": lambda p: "0x" + keccak(parse_data(arg(p, 0))).hex(),
            "net_version": lambda p: str(self.chain_id),
            "net_listening": lambda p: True,
            "net_peerCount": lambda p: "0x0",
            "eth_chainId": lambda p: hex(self.chain_id),
            "eth_syncing": lambda p: False,
            "eth_accounts": lambda p: [a.lower() for a in self._tester.get_accounts()],
            "eth_blockNumber": lambda p: hex(self._latest()["number"]),
            "eth_gasPrice": lambda p: hex(self._next_base_fee() + PRIORITY_FEE),
            "eth_maxPriorityFeePerGas": lambda p: hex(PRIORITY_FEE),
            "eth_feeHistory": self._fee_history,
            "eth_getBalance": lambda p: hex(self._state("get_balance", p)),
            "eth_getTransactionCount": lambda p: hex(self._state("get_nonce", p)),
            "eth_getCode": lambda p: to_wire(self._state("get_code", p)),
            "eth_getStorageAt": self._get_storage_at,
            "eth_getBlockByNumber": self._get_block_by_number,
            "eth_getBlockByHash": self._get_block_by_hash,
            "eth_getTransactionByHash": self._get_transaction,
            "eth_getTransactionReceipt": self._get_receipt,
            "eth_getLogs": self._get_logs,
            "eth_call": self._call,
            "eth_estimateGas": self._estimate_gas,
            "eth_sendRawTransaction": self._send_raw_transaction,
            "eth_sendTransaction": self._send_transaction,
            "evm_snapshot": lambda p: hex(self._tester.take_snapshot()),
            "evm_revert": self._revert,
            "evm_increaseTime": self._increase_time,
            "evm_mine": self._mine,
        }

    def call(self, method: str, params: Params) -> Any:
        """Run one JSON-RPC method; return its ``result`` or raise RpcFault."""
        handler = self._methods.get(method)
        if handler is None:
            raise RpcFault(METHOD_NOT_FOUND, f"the method {method} does not exist/is not available")
        with self._lock:
            try:
                return handler(params)
            except TesterInputError as exc:
                raise RpcFault(INVALID_PARAMS, f"invalid params: {exc}") from exc
            except (EvmRejection, BlockNotFound) as exc:
                raise RpcFault(SERVER_ERROR, str(exc)) from exc

    # -- chain state -------------------------------------------------------------
    def _latest(self) -> dict[str, Any]:
        return dict(self._tester.get_block_by_number("latest"))

    def _next_base_fee(self) -> int:
        return int(self._tester.get_block_by_number("pending")["base_fee_per_gas"])

    def _block(self, value: Any, *, pending: bool = False) -> str | int:
        """A block parameter as eth-tester takes it: a number or a name."""
        if value is None:
            return "latest"
        if isinstance(value, dict):  # EIP-1898: {"blockNumber": ...} or {"blockHash": ...}
            if "blockHash" in value:
                return int(self._tester.get_block_by_hash(parse_hash(value["blockHash"]))["number"])
            return self._block(value.get("blockNumber"), pending=pending)
        if isinstance(value, str) and value in _NAMED_BLOCKS:
            if value == "pending":
                # every transaction is mined on arrival: pending state is the latest state
                return "pending" if pending else "latest"
            return "earliest" if value == "earliest" else "latest"
        return parse_quantity(value, "block number")

    def _state(self, getter: str, params: Params) -> Any:
        account = parse_address(arg(params, 0))
        return getattr(self._tester, getter)(account, self._block(arg(params, 1, None)))

    def _get_storage_at(self, params: Params) -> str:
        """The 32-byte word at a storage slot (eth-tester gives it as 0x-hex)."""
        account = parse_address(arg(params, 0))
        slot = hex(parse_quantity(arg(params, 1), "storage slot"))
        word = self._tester.get_storage_at(account, slot, self._block(arg(params, 2, None)))
        return "0x" + parse_data(to_wire(word)).rjust(32, b"\0").hex()

    # -- blocks, transactions, receipts, logs --------------------------------------
    def _get_block_by_number(self, params: Params) -> dict[str, Any] | None:
        block = self._block(arg(params, 0), pending=True)
        try:
            raw = self._tester.get_block_by_number(block, bool(arg(params, 1, False)))
        except BlockNotFound:
            return None
        return format_block(raw)

    def _get_block_by_hash(self, params: Params) -> dict[str, Any] | None:
        try:
            block_hash, full = parse_hash(arg(params, 0)), bool(arg(params, 1, False))
            raw = self._tester.get_block_by_hash(block_hash, full)
        except BlockNotFound:
            return None
        return format_block(raw)

    def _get_transaction(self, params: Params) -> dict[str, Any] | None:
        try:
            raw = self._tester.get_transaction_by_hash(parse_hash(arg(params, 0)))
        except TransactionNotFound:
            return None
        return format_transaction(raw)

    def _get_receipt(self, params: Params) -> dict[str, Any] | None:
        try:
            raw = self._tester.get_transaction_receipt(parse_hash(arg(params, 0)))
        except TransactionNotFound:
            return None
        return None if raw.get("block_number") is None else format_receipt(raw)

    def _get_logs(self, params: Params) -> list[dict[str, Any]]:
        spec = arg(params, 0)
        if not isinstance(spec, dict):
            raise RpcFault(INVALID_PARAMS, "invalid params: the filter must be an object")
        if spec.get("blockHash") is not None:
            number = self._block({"blockHash": spec["blockHash"]})
            lower = upper = number
        else:
            lower = self._block(spec.get("fromBlock"))
            upper = self._block(spec.get("toBlock"))
        address = spec.get("address")
        if isinstance(address, list):
            address = [parse_address(a) for a in address] or None
        elif address is not None:
            address = parse_address(address)
        topics = spec.get("topics")
        logs = self._tester.get_logs(
            from_block=lower, to_block=upper, address=address, topics=topics or None
        )
        return [format_log(log) for log in logs]

    # -- calls and transactions ------------------------------------------------------
    def _call(self, params: Params) -> str:
        """Run a call as geth does: gas price zero, so the sender needs no ether for gas.

        (eth-tester's ``call`` charges the sender for gas and reports a revert as
        decoded text; py-evm's own call path keeps the raw revert data.)
        """
        tx = parse_transaction(arg(params, 0), send=False)
        block = self._block(arg(params, 1, None))
        chain = self._tester.backend.chain
        try:
            header = (
                chain.get_canonical_head()
                if block == "latest"
                else chain.get_canonical_block_header_by_number(0 if block == "earliest" else block)
            )
        except HeaderNotFound as exc:
            raise RpcFault(SERVER_ERROR, "header not found") from exc
        unsigned = chain.create_unsigned_transaction(
            nonce=self._tester.get_nonce(tx["from"], block),
            gas_price=0,
            gas=tx.get("gas", header.gas_limit),
            to=to_canonical_address(tx["to"]) if tx["to"] else b"",
            value=tx.get("value", 0),
            data=parse_data(tx.get("data", "0x")),
        )
        spoofed = SpoofTransaction(unsigned, from_=to_canonical_address(tx["from"]))
        try:
            return "0x" + bytes(chain.get_transaction_result(spoofed, header)).hex()
        except Revert as exc:
            raise revert_fault(bytes(exc.args[0]) if exc.args else b"") from exc
        except VMError as exc:
            raise RpcFault(SERVER_ERROR, str(exc) or type(exc).__name__) from exc

    def _estimate_gas(self, params: Params) -> str:
        tx = parse_transaction(arg(params, 0), send=False)
        tx["gas_price"] = 0  # as geth: no fee fields, no ether needed for gas
        block = self._block(arg(params, 1, None))
        try:
            return hex(self._tester.estimate_gas(tx, block))
        except TransactionFailed as exc:
            raise estimate_fault(exc) from exc

    def _send_raw_transaction(self, params: Params) -> str:
        raw = arg(params, 0)
        parse_data(raw)
        try:
            return str(self._tester.send_raw_transaction(raw)).lower()
        except PyEVMError as exc:
            raise RpcFault(INVALID_PARAMS, f"invalid raw transaction: {exc}") from exc

    def _send_transaction(self, params: Params) -> str:
        """Send from an account whose key the chain holds (the dev accounts)."""
        tx = parse_transaction(arg(params, 0), send=True)
        if "gas" not in tx:
            estimate = {k: v for k, v in tx.items() if k in ("from", "to", "data", "value")}
            try:
                tx["gas"] = self._tester.estimate_gas(estimate, "latest") * 12 // 10
            except TransactionFailed as exc:
                raise estimate_fault(exc) from exc
        if "gas_price" not in tx and "max_fee_per_gas" not in tx:
            tx["max_priority_fee_per_gas"] = tx.get("max_priority_fee_per_gas", PRIORITY_FEE)
            tx["max_fee_per_gas"] = 2 * self._next_base_fee() + tx["max_priority_fee_per_gas"]
        return str(self._tester.send_transaction(tx)).lower()

    # -- fees ---------------------------------------------------------------------------
    def _fee_history(self, params: Params) -> dict[str, Any]:
        count = min(parse_quantity(arg(params, 0), "block count"), MAX_FEE_HISTORY)
        newest = self._block(arg(params, 1, "latest"))
        percentiles = [float(p) for p in arg(params, 2, None) or []]
        if not isinstance(newest, int):
            newest = int(self._tester.get_block_by_number(newest)["number"])
        count = min(count, newest + 1)
        oldest = newest - count + 1
        blocks = [self._tester.get_block_by_number(n, True) for n in range(oldest, newest + 1)]
        try:
            after = int(self._tester.get_block_by_number(newest + 1)["base_fee_per_gas"])
        except BlockNotFound:
            after = self._next_base_fee()
        history: dict[str, Any] = {
            "oldestBlock": hex(oldest),
            "baseFeePerGas": [hex(b["base_fee_per_gas"]) for b in blocks] + [hex(after)],
            "gasUsedRatio": [b["gas_used"] / b["gas_limit"] for b in blocks],
        }
        if percentiles:
            history["reward"] = [self._rewards(b, percentiles) for b in blocks]
        return history

    def _rewards(self, block: dict[str, Any], percentiles: list[float]) -> list[str]:
        """Tips paid in ``block`` at the given gas-weighted percentiles, as geth computes them."""
        base = int(block["base_fee_per_gas"])
        receipts = [self._tester.get_transaction_receipt(t["hash"]) for t in block["transactions"]]
        paid = sorted((int(r["effective_gas_price"]) - base, int(r["gas_used"])) for r in receipts)
        if not paid:
            return ["0x0"] * len(percentiles)
        total = sum(gas for _, gas in paid)
        return [hex(_weighted_percentile(paid, total * p / 100)) for p in percentiles]

    # -- development methods --------------------------------------------------------------
    def _client_version(self, params: Params) -> str:
        from eth_tester import __version__ as tester_version

        from .. import __version__

        v = sys.version_info
        return f"idlegrid/v{__version__}/eth-tester/{tester_version}/python{v.major}.{v.minor}"

    def _revert(self, params: Params) -> bool:
        try:
            self._tester.revert_to_snapshot(parse_quantity(arg(params, 0), "snapshot id"))
        except SnapshotNotFound:
            return False
        return True

    def _increase_time(self, params: Params) -> int:
        """Move the clock ``seconds`` forward; returns the total offset (an integer, as anvil)."""
        seconds = parse_quantity(arg(params, 0), "seconds")
        if seconds:
            now = int(self._tester.get_block_by_number("pending")["timestamp"])
            self._travel(now + seconds - 1)  # the next block (evm_mine) is at now + seconds
            self._time_offset += seconds
        return self._time_offset

    def _travel(self, timestamp: int) -> None:
        """Mine one block stamped ``timestamp``, no earlier than the pending block's."""
        pending = int(self._tester.get_block_by_number("pending")["timestamp"])
        if timestamp < pending:
            raise RpcFault(
                SERVER_ERROR,
                f"timestamp error: {timestamp} is lower than the next block's {pending}",
            )
        # eth-tester mines the time-travel block one second before its target
        self._tester.time_travel(timestamp + 1)

    def _mine(self, params: Params) -> str:
        """``evm_mine``, ``evm_mine(timestamp)`` or ``evm_mine({timestamp, blocks})``."""
        option = arg(params, 0, None)
        blocks, timestamp = 1, None
        if isinstance(option, dict):
            blocks = parse_quantity(option.get("blocks", 1), "blocks")
            timestamp = option.get("timestamp")
        elif option is not None:
            timestamp = option
        if timestamp is not None:
            self._travel(parse_quantity(timestamp, "timestamp"))
            blocks -= 1
        if blocks > 0:
            self._tester.mine_blocks(blocks)
        return "0x0"


def _weighted_percentile(paid: list[tuple[int, int]], threshold: float) -> int:
    """The tip at which the gas used, summed cheapest tip first, reaches ``threshold``."""
    cumulative = 0
    for tip, gas in paid:
        cumulative += gas
        if cumulative >= threshold:
            return tip
    return paid[-1][0]
