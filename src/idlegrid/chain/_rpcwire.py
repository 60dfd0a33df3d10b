"""The JSON-RPC wire format of an Ethereum node, to and from eth-tester's Python values.

In: hex quantities, hex data, addresses and transaction objects as clients send
them. Out: what geth and anvil send: hex quantities, lowercase hex data,
camelCase keys, ``null`` for what does not exist. Errors are :class:`RpcFault`;
a revert is code 3, ``execution reverted: <reason>``, with the raw revert data.
"""

from __future__ import annotations

import re
from typing import Any

from eth.exceptions import Revert
from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak

from .._exceptions import RpcFault

__all__ = [
    "EXECUTION_REVERTED",
    "INVALID_PARAMS",
    "METHOD_NOT_FOUND",
    "SERVER_ERROR",
    "Params",
    "RpcFault",
    "arg",
    "estimate_fault",
    "format_block",
    "format_log",
    "format_receipt",
    "format_transaction",
    "parse_address",
    "parse_data",
    "parse_hash",
    "parse_quantity",
    "parse_transaction",
    "revert_fault",
    "to_wire",
]

# JSON-RPC 2.0 codes, plus geth's for a rejected request (-32000) and a revert (3)
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
SERVER_ERROR = -32000
EXECUTION_REVERTED = 3

ERROR_STRING = bytes.fromhex("08c379a0")  # selector of Error(string)
ZERO_ADDRESS = "0x" + "00" * 20

_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_DATA = re.compile(r"0x([0-9a-fA-F]{2})*")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

Params = list[Any]


# -- wire in ----------------------------------------------------------------------------------
_MISSING = object()


def arg(params: Params, index: int, default: Any = _MISSING) -> Any:
    if index < len(params):
        return params[index]
    if default is _MISSING:
        raise RpcFault(INVALID_PARAMS, f"missing value for required argument {index}")
    return default


def parse_quantity(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _QUANTITY.fullmatch(value):
        return int(value, 16)
    raise RpcFault(INVALID_PARAMS, f"invalid {name}: expected a hex quantity, got {value!r}")


def parse_data(value: Any) -> bytes:
    if isinstance(value, str) and _DATA.fullmatch(value):
        return bytes.fromhex(value[2:])
    raise RpcFault(INVALID_PARAMS, f"invalid params: expected 0x-prefixed hex data, got {value!r}")


def parse_hash(value: Any) -> str:
    if len(parse_data(value)) != 32:
        raise RpcFault(INVALID_PARAMS, f"invalid params: expected a 32-byte hash, got {value!r}")
    return str(value).lower()


def parse_address(value: Any) -> str:
    if isinstance(value, str) and _ADDRESS.fullmatch(value):
        return value.lower()  # lowercase: eth-tester rejects a bad checksum, nodes do not
    raise RpcFault(INVALID_PARAMS, f"invalid params: expected an address, got {value!r}")


def parse_transaction(value: Any, *, send: bool) -> dict[str, Any]:
    """A transaction object from the wire, as eth-tester takes it.

    Calls and estimates drop the fee fields and run at gas price zero, as geth
    and anvil do when none are given: an account without ether can still call.
    """
    if not isinstance(value, dict):
        raise RpcFault(INVALID_PARAMS, "invalid params: the transaction must be an object")
    tx: dict[str, Any] = {"from": parse_address(value.get("from") or ZERO_ADDRESS)}
    tx["to"] = parse_address(value["to"]) if value.get("to") else ""
    data = value.get("input") if value.get("input") is not None else value.get("data")
    if data is not None:
        tx["data"] = "0x" + parse_data(data).hex()
    fields = {"gas": "gas", "value": "value"}
    if send:
        fields |= {
            "nonce": "nonce",
            "gasPrice": "gas_price",
            "maxFeePerGas": "max_fee_per_gas",
            "maxPriorityFeePerGas": "max_priority_fee_per_gas",
        }
    for wire_key, key in fields.items():
        if value.get(wire_key) is not None:
            tx[key] = parse_quantity(value[wire_key], wire_key)
    return tx


# -- wire out ---------------------------------------------------------------------------------
def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def to_wire(value: Any) -> Any:
    """eth-tester's Python values as JSON-RPC: ints as hex quantities, bytes and hex
    strings as lowercase hex data, snake_case keys as camelCase."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else value
    if isinstance(value, dict):
        return {_camel(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    raise TypeError(f"cannot put {type(value).__name__} on the wire")


def _bloom(value: int) -> str:
    return "0x" + value.to_bytes(256, "big").hex()


def _logs_bloom(logs: list[dict[str, Any]]) -> int:
    """The 2048-bit bloom of some logs (yellow paper, section 4.3.1)."""
    bloom = 0
    for log in logs:
        for item in (log["address"], *log["topics"]):
            digest = keccak(hexstr=item)
            for i in (0, 2, 4):
                bloom |= 1 << (((digest[i] << 8) | digest[i + 1]) & 2047)
    return bloom


def format_block(raw: dict[str, Any]) -> dict[str, Any]:
    skip = ("coinbase", "logs_bloom", "transactions")
    block: dict[str, Any] = to_wire({k: v for k, v in raw.items() if k not in skip})
    block["miner"] = str(raw["coinbase"]).lower()
    block["logsBloom"] = _bloom(int(raw["logs_bloom"]))
    block["transactions"] = [
        format_transaction(t) if isinstance(t, dict) else str(t).lower()
        for t in raw["transactions"]
    ]
    return block


def format_transaction(raw: dict[str, Any]) -> dict[str, Any]:
    tx: dict[str, Any] = to_wire({k: v for k, v in raw.items() if k != "data"})
    tx["input"] = to_wire(raw.get("data", "0x"))
    tx["to"] = tx.get("to") or None
    return tx


def format_log(raw: dict[str, Any]) -> dict[str, Any]:
    log: dict[str, Any] = to_wire({k: v for k, v in raw.items() if k != "type"})
    log["removed"] = False
    return log


def format_receipt(raw: dict[str, Any]) -> dict[str, Any]:
    skip = ("logs", "state_root")  # state_root: a pre-Byzantium field, absent on real nodes
    receipt: dict[str, Any] = to_wire({k: v for k, v in raw.items() if k not in skip})
    receipt["logs"] = [format_log(log) for log in raw["logs"]]
    receipt["logsBloom"] = _bloom(_logs_bloom(raw["logs"]))
    receipt["to"] = receipt.get("to") or None
    return receipt


# -- reverts ----------------------------------------------------------------------------------
def estimate_fault(exc: TransactionFailed) -> RpcFault:
    """The error for a failed estimate: eth-tester passes the VM's exception along."""
    error = exc.args[0] if exc.args else None
    if isinstance(error, Revert):
        return revert_fault(bytes(error.args[0]) if error.args else b"")
    return RpcFault(SERVER_ERROR, str(error) if error else "execution failed")


def revert_fault(data: bytes) -> RpcFault:
    reason = None
    if data[:4] == ERROR_STRING:
        try:
            reason = str(decode(["string"], data[4:])[0])
        except (DecodingError, ValueError):
            reason = None  # malformed Error(string): report the raw data only
    message = f"execution reverted: {reason}" if reason else "execution reverted"
    return RpcFault(EXECUTION_REVERTED, message, "0x" + data.hex())
