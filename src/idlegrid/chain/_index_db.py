"""The indexer's SQLite schema and how each registry and market event changes it.

Pure SQLite: events arrive already decoded as :class:`LogEvent` and are applied
inside a transaction the caller holds. Token amounts and other uint256 values
do not fit SQLite's 64-bit integers, so they are stored as 78-digit zero-padded
decimal text, which sorts like the numbers and reads like them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._exceptions import ConfigError

__all__ = [
    "MARKET_EVENTS",
    "REGISTRY_EVENTS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TOKEN_EVENTS",
    "Handler",
    "LogEvent",
    "apply",
    "args_json",
    "num",
    "record",
    "u256",
]

# 2: tables for reputation (payments, transfers); an index of version 1 lacks their
# history, so it is rebuilt rather than migrated
# 3: every event of every contract with its arguments (``events.contract``,
# ``events.args``) and the blocks' timestamps (``blocks``), for the explorer
# 4: what each redemption added (``redemptions.jobs_added``, ``units_added``) and the
# sums by the hour of the block (``hourly``) and by provider and day (``provider_days``),
# so that views read totals, not history
SCHEMA_VERSION = "4"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- every applied event, once: the guard against applying one twice, and the activity
-- log (``contract`` is the deployment's key, ``args`` the decoded arguments as JSON:
-- bytes as 0x-hex, integers as JSON numbers of any size)
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    tx_hash TEXT NOT NULL,
    log_index INTEGER NOT NULL,
    block INTEGER NOT NULL,
    name TEXT NOT NULL,
    contract TEXT NOT NULL DEFAULT '',
    args TEXT NOT NULL DEFAULT '{}',
    UNIQUE (tx_hash, log_index)
);
CREATE INDEX IF NOT EXISTS events_by_name ON events (contract, name, seq);
CREATE INDEX IF NOT EXISTS events_by_block ON events (block, seq);
-- the timestamp of every block that had an event the index follows, and of every
-- batch's last block (the index's "as of")
CREATE TABLE IF NOT EXISTS blocks (
    number INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    timestamp INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_by_time ON blocks (timestamp, number);
CREATE TABLE IF NOT EXISTS providers (
    address TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    price TEXT NOT NULL,
    capabilities BLOB NOT NULL,
    stake TEXT NOT NULL,
    unbonding TEXT NOT NULL,
    withdrawable_at TEXT NOT NULL,
    active INTEGER NOT NULL,
    registered_block INTEGER NOT NULL,
    slashed_total TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS providers_by_active ON providers (active, registered_block);
CREATE TABLE IF NOT EXISTS channels (
    id BLOB PRIMARY KEY,
    client TEXT NOT NULL,
    provider TEXT NOT NULL,
    deposit TEXT NOT NULL,
    expiry TEXT NOT NULL,
    salt TEXT NOT NULL,
    opening_deposit TEXT NOT NULL,
    opening_expiry TEXT NOT NULL,
    paid TEXT NOT NULL,
    jobs TEXT NOT NULL,
    units TEXT NOT NULL,
    receipts_root BLOB,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    refund TEXT,
    opened_block INTEGER NOT NULL,
    opened_seq INTEGER NOT NULL,
    closed_block INTEGER
);
CREATE INDEX IF NOT EXISTS channels_by_client ON channels (client, opened_seq);
CREATE INDEX IF NOT EXISTS channels_by_provider ON channels (provider, opened_seq);
CREATE TABLE IF NOT EXISTS redemptions (
    seq INTEGER PRIMARY KEY REFERENCES events (seq),
    channel BLOB NOT NULL,
    provider TEXT NOT NULL,
    amount TEXT NOT NULL,
    paid TEXT NOT NULL,
    jobs TEXT NOT NULL,
    units TEXT NOT NULL,
    -- what this redemption added to the channel's totals (jobs and units above)
    jobs_added TEXT NOT NULL,
    units_added TEXT NOT NULL,
    receipts_root BLOB NOT NULL,
    block INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    log_index INTEGER NOT NULL,
    UNIQUE (tx_hash, log_index)
);
CREATE INDEX IF NOT EXISTS redemptions_by_channel ON redemptions (channel, seq);
CREATE INDEX IF NOT EXISTS redemptions_by_provider ON redemptions (provider, seq);
CREATE INDEX IF NOT EXISTS redemptions_by_block ON redemptions (block, seq);
-- per provider sums of redemptions (a derived table, kept in step by `apply`);
-- `redemptions` counts only those that paid something
CREATE TABLE IF NOT EXISTS contributions (
    provider TEXT PRIMARY KEY,
    earned TEXT NOT NULL,
    jobs TEXT NOT NULL,
    units TEXT NOT NULL,
    redemptions INTEGER NOT NULL
);
-- sums of redemptions by the hour (unix time of its start) of their block's timestamp
-- (a derived table, kept in step by `apply`; only with the blocks' timestamps)
CREATE TABLE IF NOT EXISTS hourly (
    hour INTEGER PRIMARY KEY,
    amount TEXT NOT NULL,
    jobs TEXT NOT NULL,
    units TEXT NOT NULL,
    redemptions INTEGER NOT NULL
);
-- the same by provider and UTC day (unix time of its start)
CREATE TABLE IF NOT EXISTS provider_days (
    provider TEXT NOT NULL,
    day INTEGER NOT NULL,
    amount TEXT NOT NULL,
    jobs TEXT NOT NULL,
    units TEXT NOT NULL,
    redemptions INTEGER NOT NULL,
    PRIMARY KEY (provider, day)
);
CREATE TABLE IF NOT EXISTS slashes (
    seq INTEGER PRIMARY KEY REFERENCES events (seq),
    provider TEXT NOT NULL,
    beneficiary TEXT NOT NULL,
    amount TEXT NOT NULL,
    stake TEXT NOT NULL,
    unbonding TEXT NOT NULL,
    block INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    log_index INTEGER NOT NULL,
    UNIQUE (tx_hash, log_index)
);
CREATE INDEX IF NOT EXISTS slashes_by_provider ON slashes (provider, seq);
-- tokens each client paid each provider through redeemed vouchers (for reputation)
CREATE TABLE IF NOT EXISTS payments (
    client TEXT NOT NULL,
    provider TEXT NOT NULL,
    paid TEXT NOT NULL,
    PRIMARY KEY (provider, client)
);
CREATE INDEX IF NOT EXISTS payments_by_client ON payments (client, provider);
-- tokens each address sent each other one, summed from the token's Transfer events
-- (for reputation: what a provider gave its clients)
CREATE TABLE IF NOT EXISTS transfers (
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    amount TEXT NOT NULL,
    PRIMARY KEY (sender, recipient)
);
-- market balances (the market's balance_of): deposits, refunds and earnings
-- in, withdrawals and channel deposits out
CREATE TABLE IF NOT EXISTS accounts (
    account TEXT PRIMARY KEY,
    balance TEXT NOT NULL
);
"""

_WIDTH = 78  # decimal digits of 2**256 - 1
ZERO = "0" * _WIDTH


def u256(value: int) -> str:
    """A uint256 as sortable text."""
    if not 0 <= value < 2**256:
        raise ValueError(f"not a uint256: {value}")
    return f"{value:0{_WIDTH}d}"


def num(text: str) -> int:
    """The inverse of :func:`u256`."""
    return int(text)


@dataclass(frozen=True)
class LogEvent:
    """A decoded ledger event, with where it sits in the chain; ``contract`` is the
    deployment's key of the contract that emitted it (``"market"``)."""

    name: str
    block: int
    tx_hash: str
    log_index: int
    args: dict[str, Any]
    contract: str = ""


def args_json(args: Mapping[str, Any]) -> str:
    """An event's arguments as JSON: bytes as 0x-hex, lists kept, integers exact."""
    return json.dumps({k: _jsonable(v) for k, v in args.items()}, separators=(",", ":"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def record(conn: sqlite3.Connection, event: LogEvent, seq: int) -> None:
    """The handler of an event the index only records (in ``events``, with its args)."""


#: how one event changes the index: (connection, event, its sequence number in ``events``)
Handler = Callable[[sqlite3.Connection, LogEvent, int], None]


def apply(conn: sqlite3.Connection, event: LogEvent, handler: Handler) -> bool:
    """Record ``event`` and apply it with ``handler`` inside the caller's transaction.

    Returns False, changing nothing, when this (tx_hash, log_index) was applied
    before. Raises ConfigError when the event refers to a provider or channel
    the index has never seen (it was started after the ledger's deployment).
    """
    cur = conn.execute(
        "INSERT OR IGNORE INTO events (tx_hash, log_index, block, name, contract, args) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            event.tx_hash,
            event.log_index,
            event.block,
            event.name,
            event.contract,
            args_json(event.args),
        ),
    )
    if cur.rowcount == 0:
        return False
    seq = cur.lastrowid
    assert seq is not None
    handler(conn, event, seq)
    return True


def _unknown(kind: str, key: object, event: LogEvent) -> ConfigError:
    return ConfigError(
        f"{event.name} in block {event.block} is for a {kind} the index has never seen "
        f"({key!r}); the index must start at or before the ledger's deployment block"
    )


# every registry event names its provider and every channel event its channel
_ROWS = {"provider": ("providers", "address"), "channel": ("channels", "id")}


def _set(conn: sqlite3.Connection, ev: LogEvent, kind: str, **cols: str | int | bytes) -> None:
    """Update the provider or channel that ``ev`` names."""
    table, key = _ROWS[kind]
    sets = ", ".join(f"{c} = ?" for c in cols)
    cur = conn.execute(
        f"UPDATE {table} SET {sets} WHERE {key} = ?", (*cols.values(), ev.args[kind])
    )
    if cur.rowcount != 1:
        raise _unknown(kind, ev.args[kind], ev)


def _get(conn: sqlite3.Connection, ev: LogEvent, kind: str, cols: str) -> tuple[Any, ...]:
    """Columns of the provider or channel that ``ev`` names."""
    table, key = _ROWS[kind]
    row = conn.execute(f"SELECT {cols} FROM {table} WHERE {key} = ?", (ev.args[kind],)).fetchone()
    if row is None:
        raise _unknown(kind, ev.args[kind], ev)
    return tuple(row)


def _credit(conn: sqlite3.Connection, account: str, amount: int) -> None:
    _set_balance(conn, account, _balance(conn, account) + amount)


def _debit(conn: sqlite3.Connection, account: str, amount: int) -> None:
    # paying into a channel, the market spends the balance first and pulls any
    # shortfall from the wallet
    _set_balance(conn, account, max(_balance(conn, account) - amount, 0))


def _set_balance(conn: sqlite3.Connection, account: str, balance: int) -> None:
    conn.execute(
        "INSERT INTO accounts (account, balance) VALUES (?, ?) "
        "ON CONFLICT (account) DO UPDATE SET balance = excluded.balance",
        (account, u256(balance)),
    )


def _balance(conn: sqlite3.Connection, account: str) -> int:
    row = conn.execute("SELECT balance FROM accounts WHERE account = ?", (account,)).fetchone()
    return num(row[0]) if row else 0


def _sum_into(
    conn: sqlite3.Connection,
    table: str,
    keys: dict[str, str | int],
    amount: int,
    jobs: int,
    units: int,
    counted: bool,
    *,
    amount_column: str = "amount",
) -> None:
    """Add a redemption to the row of the sums ``table`` at ``keys``: its amount (in
    ``amount_column``), jobs and units added, and one to the count if ``counted``."""
    where = " AND ".join(f"{k} = ?" for k in keys)
    row = conn.execute(
        f"SELECT {amount_column}, jobs, units, redemptions FROM {table} WHERE {where}",
        tuple(keys.values()),
    ).fetchone()
    before = (num(row[0]), num(row[1]), num(row[2]), row[3]) if row else (0, 0, 0, 0)
    conn.execute(
        f"INSERT OR REPLACE INTO {table} ({', '.join(keys)}, {amount_column}, jobs, units, "
        f"redemptions) VALUES ({', '.join('?' * len(keys))}, ?, ?, ?, ?)",
        (
            *keys.values(),
            u256(before[0] + amount),
            u256(before[1] + jobs),
            u256(before[2] + units),
            before[3] + counted,
        ),
    )


def _add(
    conn: sqlite3.Connection, table: str, cols: tuple[str, str, str], a: str, b: str, amount: int
) -> None:
    """Add ``amount`` to the sum kept for the pair (a, b) in ``table``."""
    first, second, total = cols
    row = conn.execute(
        f"SELECT {total} FROM {table} WHERE {first} = ? AND {second} = ?", (a, b)
    ).fetchone()
    conn.execute(
        f"INSERT OR REPLACE INTO {table} ({first}, {second}, {total}) VALUES (?, ?, ?)",
        (a, b, u256((num(row[0]) if row else 0) + amount)),
    )


# -- registry ---------------------------------------------------------------
def _registered(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    conn.execute(
        "INSERT INTO providers (address, endpoint, price, capabilities, stake, unbonding, "
        "withdrawable_at, active, registered_block, slashed_total) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?) "
        # the registry registers an address once: a second event came from another
        # chain written into the same file (seen in CI, two devnets of one chain id
        # sharing a client's index; its name now tells them apart): keep the index
        # usable rather than fail the sync; its slashes stay
        "ON CONFLICT(address) DO UPDATE SET endpoint = excluded.endpoint, "
        "price = excluded.price, capabilities = excluded.capabilities, "
        "stake = excluded.stake, unbonding = excluded.unbonding, "
        "withdrawable_at = excluded.withdrawable_at, active = 0, "
        "registered_block = excluded.registered_block",
        (
            a["provider"],
            a["endpoint"],
            u256(a["price"]),
            a["capabilities"],
            u256(a["stake"]),
            ZERO,
            ZERO,
            ev.block,
            ZERO,
        ),
    )


def _updated(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    _set(
        conn,
        ev,
        "provider",
        endpoint=a["endpoint"],
        price=u256(a["price"]),
        capabilities=a["capabilities"],
    )


def _stake_added(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    _set(conn, ev, "provider", stake=u256(a["stake"]))


def _unbonding(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    _set(
        conn,
        ev,
        "provider",
        stake=u256(a["stake"]),
        unbonding=u256(a["unbonding"]),
        withdrawable_at=u256(a["withdrawable_at"]),
    )


def _withdrawn_stake(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    # the registry pays out all unbonding tokens at once
    _set(conn, ev, "provider", unbonding=ZERO)


def _slashed(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    (total,) = _get(conn, ev, "provider", "slashed_total")
    _set(
        conn,
        ev,
        "provider",
        stake=u256(a["stake"]),
        unbonding=u256(a["unbonding"]),
        slashed_total=u256(num(total) + a["amount"]),
    )
    conn.execute(
        "INSERT INTO slashes (seq, provider, beneficiary, amount, stake, unbonding, block, "
        "tx_hash, log_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            seq,
            a["provider"],
            a["beneficiary"],
            u256(a["amount"]),
            u256(a["stake"]),
            u256(a["unbonding"]),
            ev.block,
            ev.tx_hash,
            ev.log_index,
        ),
    )


def _activated(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    _set(conn, ev, "provider", active=1)


def _deactivated(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    _set(conn, ev, "provider", active=0)


# -- market -----------------------------------------------------------------
def _opened(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    deposit, expiry = u256(a["deposit"]), u256(a["expiry"])
    conn.execute(
        "INSERT INTO channels (id, client, provider, deposit, expiry, salt, opening_deposit, "
        "opening_expiry, paid, jobs, units, receipts_root, status, refund, opened_block, "
        "opened_seq, closed_block) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 'open', NULL, ?, ?, NULL)",
        (
            a["channel"],
            a["client"],
            a["provider"],
            deposit,
            expiry,
            u256(a["salt"]),
            deposit,
            expiry,
            ZERO,
            ZERO,
            ZERO,
            ev.block,
            seq,
        ),
    )
    _debit(conn, a["client"], a["deposit"])


def _topped_up(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    (client,) = _get(conn, ev, "channel", "client")
    _set(
        conn,
        ev,
        "channel",
        deposit=u256(a["deposit"]),
        expiry=u256(a["expiry"]),
    )
    _debit(conn, client, a["amount"])


def _redeemed(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    provider = a["provider"]
    jobs_before, units_before = _get(conn, ev, "channel", "jobs, units")
    _set(
        conn,
        ev,
        "channel",
        paid=u256(a["paid"]),
        jobs=u256(a["jobs"]),
        units=u256(a["units"]),
        receipts_root=a["receipts_root"],
    )
    # the event's jobs and units are the channel's totals: this redemption added the increase
    jobs_added, units_added = a["jobs"] - num(jobs_before), a["units"] - num(units_before)
    conn.execute(
        "INSERT INTO redemptions (seq, channel, provider, amount, paid, jobs, units, "
        "jobs_added, units_added, receipts_root, block, tx_hash, log_index) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            seq,
            a["channel"],
            provider,
            u256(a["amount"]),
            u256(a["paid"]),
            u256(a["jobs"]),
            u256(a["units"]),
            u256(jobs_added),
            u256(units_added),
            a["receipts_root"],
            ev.block,
            ev.tx_hash,
            ev.log_index,
        ),
    )
    paying = a["amount"] > 0
    added = (a["amount"], jobs_added, units_added)
    _sum_into(conn, "contributions", {"provider": provider}, *added, paying,
              amount_column="earned")  # fmt: skip
    block = conn.execute("SELECT timestamp FROM blocks WHERE number = ?", (ev.block,)).fetchone()
    if block is not None:  # the sync stores the blocks' times first, when it keeps them
        ts = int(block[0])
        _sum_into(conn, "hourly", {"hour": ts // 3600 * 3600}, *added, True)
        _sum_into(conn, "provider_days", {"provider": provider, "day": ts // 86400 * 86400},
                  *added, True)  # fmt: skip
    _credit(conn, provider, a["amount"])
    if paying:
        (client,) = _get(conn, ev, "channel", "client")
        _add(conn, "payments", ("client", "provider", "paid"), client, provider, a["amount"])


def _closed(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    _set(
        conn,
        ev,
        "channel",
        status="closed",
        refund=u256(a["refund"]),
        closed_block=ev.block,
    )
    _credit(conn, a["client"], a["refund"])


def _deposited(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    _credit(conn, ev.args["account"], ev.args["amount"])


def _withdrawn(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    account = ev.args["account"]
    _set_balance(conn, account, _balance(conn, account) - ev.args["amount"])


# -- token ------------------------------------------------------------------
def _transferred(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    if a["value"] > 0 and a["sender"] != a["receiver"]:
        _add(
            conn,
            "transfers",
            ("sender", "recipient", "amount"),
            a["sender"],
            a["receiver"],
            a["value"],
        )


#: how each Token event the index follows changes it
TOKEN_EVENTS: dict[str, Handler] = {"Transfer": _transferred}

#: how each ProviderRegistry event the index follows changes it
REGISTRY_EVENTS: dict[str, Handler] = {
    "ProviderRegistered": _registered,
    "ProviderUpdated": _updated,
    "StakeAdded": _stake_added,
    "UnbondingStarted": _unbonding,
    "StakeWithdrawn": _withdrawn_stake,
    "ProviderSlashed": _slashed,
    "ProviderActivated": _activated,
    "ProviderDeactivated": _deactivated,
}

#: how each JobMarket event the index follows changes it
MARKET_EVENTS: dict[str, Handler] = {
    "ChannelOpened": _opened,
    "ChannelToppedUp": _topped_up,
    "VoucherRedeemed": _redeemed,
    "ChannelClosed": _closed,
    "Deposited": _deposited,
    "Withdrawn": _withdrawn,
}
