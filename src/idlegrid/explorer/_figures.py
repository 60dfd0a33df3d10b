"""The explorer's common ground: figures with their provenance, pages, the parsing of
ids strangers send, and the activity log's rows (see ``_views.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .._exceptions import InvalidInput
from ..chain import TOKEN, Activity, Indexer
from ..protocol import checksum

MAX_PAGE = 200
HOUR = 3600
ZERO32 = "0x" + "00" * 32
ZERO_ADDRESS = "0x" + "00" * 20

#: provider table columns a viewer may sort by -> the SQL expression
PROVIDER_SORTS = {
    "stake": "stake",
    "registered": "registered_block",
    "price": "price",
    "address": "address",
    "slashed": "slashed_total",
}


def tokens(wei: int) -> str:
    """``wei`` in tokens, to 4 decimals, for people."""
    return f"{wei / TOKEN:,.4f}"


def figure(
    value: Any,
    kind: str,
    *,
    tx: str | None = None,
    block: int | None = None,
    why: str | None = None,
) -> dict[str, Any]:
    """A shown value with its provenance: ``observed`` on chain (with the transaction
    it came from), ``derived`` from observed events, ``estimated``, or ``unknown``
    (``value`` None, with ``why``)."""
    if kind not in ("observed", "derived", "estimated", "unknown"):
        raise ValueError(f"unknown provenance {kind!r}")
    out: dict[str, Any] = {"value": value, "kind": kind}
    if tx is not None:
        out["tx"] = tx
    if block is not None:
        out["block"] = block
    if why is not None:
        out["why"] = why
    return out


def _amount(wei: int, kind: str = "observed", **where: Any) -> dict[str, Any]:
    out = figure(str(wei), kind, **where)
    out["tokens"] = tokens(wei)
    return out


@dataclass(frozen=True)
class Page:
    """One page of a list: its rows and the key to ask for the next (None at the end)."""

    rows: list[dict[str, Any]]
    next: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "next": self.next}


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1..{MAX_PAGE}, got {limit}")
    return limit


def _hex32(text: str, what: str) -> bytes:
    raw = text.removeprefix("0x")
    if len(raw) != 64:
        raise InvalidInput(f"{what} must be 32 bytes of hex (0x and 64 digits)")
    try:
        return bytes.fromhex(raw)
    except ValueError:
        raise InvalidInput(f"{what} must be 32 bytes of hex (0x and 64 digits)") from None


def _address(text: str) -> str:
    try:
        return checksum(text)
    except (InvalidInput, ValueError, TypeError):
        raise InvalidInput(f"not an address: {text[:50]!r}") from None


def _as_of(index: Indexer) -> dict[str, Any]:
    block = index.last_block
    return {
        "block": block,
        "timestamp": None if block is None else index.block_time(block),
    }


def _events(index: Indexer, contract: str, names: Sequence[str]) -> list[Activity]:
    """Every recorded event of ``contract`` named in ``names``, oldest first."""
    out: list[Activity] = []
    before: int | None = None
    while True:
        batch = index.activity(contract=contract, names=names, before=before, limit=1000)
        out.extend(batch)
        if len(batch) < 1000:
            return out[::-1]
        before = batch[-1].seq


def _activity_row(a: Activity) -> dict[str, Any]:
    return {
        "seq": a.seq,
        "contract": a.contract,
        "event": a.name,
        "block": a.block,
        "timestamp": a.timestamp,
        "tx": a.tx_hash,
        "args": a.args,
        "summary": summarise(a),
    }


def summarise(a: Activity) -> str:
    """One line that says what an event means."""
    g = a.args
    match a.name:
        case "VoucherRedeemed":
            return f"provider {_short(g['provider'])} redeemed {tokens(int(g['amount']))}"
        case "ChannelOpened":
            return f"{_short(g['client'])} opened a channel to {_short(g['provider'])}"
        case "ChannelClosed":
            return f"channel {_short(g['channel'])} closed"
        case "ProviderRegistered":
            return f"provider {_short(g['provider'])} registered"
        case "DisputeOpened":
            return f"dispute {_short(g['dispute'])} opened against {_short(g['provider'])}"
        case "DisputeResolved":
            return f"dispute {_short(g['dispute'])} resolved"
        case "ModelRegistered":
            return f"model {_short(g['model'])} registered"
        case "RoundRegistered":
            return f"federated round {g['round']} of run {_short(g['run'])}"
        case "Posted":
            return f"round {g['round']} rewards posted: {tokens(int(g['total']))}"
        case "Requested":
            return f"oracle request {g['request_id']} for model {_short(g['model'])}"
        case "Fulfilled":
            return f"oracle request {g['request_id']} answered"
        case "Transfer":
            return f"{tokens(int(g.get('value', g.get('amount', 0))))} transferred"
        case _:
            return a.name


def _short(text: Any) -> str:
    s = str(text)
    return s if len(s) <= 12 else f"{s[:6]}…{s[-4:]}"


def tx_view(index: Indexer, tx: str) -> list[dict[str, Any]]:
    """Every recorded event of transaction ``tx``."""
    key = "0x" + _hex32(tx, "a transaction hash").hex()
    rows = index.read(
        "SELECT seq FROM events WHERE tx_hash = ? ORDER BY log_index LIMIT 500", (key,)
    )
    out = []
    for (seq,) in rows:
        [a] = index.activity(after=seq - 1, before=seq + 1, limit=1)
        out.append(_activity_row(a))
    return out


def activity_rows(index: Indexer, *, after: int | None = None, limit: int = 50) -> list[Any]:
    """The newest events (those after ``after``), as rows."""
    return activity_rows_of(index.activity(after=after, limit=_limit(limit)))


def activity_rows_of(events: Iterable[Activity]) -> list[dict[str, Any]]:
    """Events as the activity table's rows."""
    return [_activity_row(a) for a in events]
