"""Decode the ledger's event logs with the contracts' ABIs.

Decoded by hand with eth_abi rather than web3's event objects for one reason:
web3 decodes ``string`` fields strictly, and a provider can register an
endpoint that is not UTF-8 (the contract stores bytes), which would make every
later sync fail on that log. Here such text is decoded with replacement
characters instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak

from .._exceptions import ConfigError
from ..protocol import checksum

__all__ = ["EventDecoder", "event_decoders"]


class EventDecoder:
    """Turns one event's raw topics and data into a dict of plain values."""

    def __init__(self, contract: str, abi: dict[str, Any]) -> None:
        self.contract = contract
        self.name: str = abi["name"]
        inputs = abi["inputs"]
        signature = f"{self.name}({','.join(i['type'] for i in inputs)})"
        self.topic = bytes(keccak(text=signature))
        self._indexed = [(i["name"], i["type"]) for i in inputs if i["indexed"]]
        self._data = [(i["name"], i["type"]) for i in inputs if not i["indexed"]]
        if any(t in ("string", "bytes") or t.endswith("]") for _, t in self._indexed):
            # an indexed dynamic value is logged as its hash: nothing to decode
            raise ConfigError(f"{contract}.{self.name}: indexed dynamic fields are not supported")

    def decode(self, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
        """The event's fields by name; ConfigError if the log does not fit the ABI."""
        if len(topics) != 1 + len(self._indexed) or topics[0] != self.topic:
            raise self._mismatch(f"{len(topics)} topics")
        try:
            args = {
                name: _plain(typ, decode([typ], topic)[0])
                for (name, typ), topic in zip(self._indexed, topics[1:], strict=True)
            }
            values = decode([_wire(typ) for _, typ in self._data], data)
        except (DecodingError, ValueError) as exc:
            raise self._mismatch(str(exc)) from exc
        args.update(
            (name, _plain(typ, value))
            for (name, typ), value in zip(self._data, values, strict=True)
        )
        return args

    def _mismatch(self, detail: str) -> ConfigError:
        return ConfigError(
            f"a {self.contract}.{self.name} log does not fit the compiled ABI ({detail}); "
            "is the deployment's address right?"
        )


def event_decoders(
    contract: str, abi: Sequence[dict[str, Any]], names: Sequence[str]
) -> list[EventDecoder]:
    """Decoders for the events ``names`` of ``contract``, whose ABI is ``abi``."""
    events = {e["name"]: e for e in abi if e.get("type") == "event"}
    missing = [n for n in names if n not in events]
    if missing:
        raise ConfigError(f"{contract} has no events {missing}")
    return [EventDecoder(contract, events[n]) for n in names]


def _wire(typ: str) -> str:
    # a string is encoded exactly as bytes; decode it as bytes and then leniently
    return "bytes" if typ == "string" else typ


def _plain(typ: str, value: Any) -> Any:
    if typ.endswith("]"):  # an array: each element as its type says
        inner = typ[: typ.rindex("[")]
        return [_plain(inner, v) for v in value]
    if typ == "string":
        return bytes(value).decode("utf-8", errors="replace")
    if typ == "address":
        return checksum(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return value
