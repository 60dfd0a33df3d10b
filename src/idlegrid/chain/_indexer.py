"""An event indexer: the events of a deployment's contracts, synced into SQLite.

Which contracts and events it follows, and how each event changes the index,
comes from the registry of contracts (:data:`~idlegrid.chain.CONTRACTS` unless
another table is given): each spec's ``events`` and ``schema``.

:meth:`Indexer.sync` reads logs with ``eth_getLogs`` in ranges of blocks and
applies each range in one SQLite transaction that also records the last block
synced, so a crash at any point leaves the index at a batch boundary: the next
sync carries on from there, applying nothing twice and skipping nothing.
``(tx_hash, log_index)`` is unique in the index as a second guard.

The database remembers the chain id and contract addresses it indexes (opening
it for another deployment raises ConfigError) and the hash of the last block it
synced; if the chain no longer has that block (a reorganisation deeper than
``confirmations``, or a development chain restarted at the same addresses) the
next sync raises ConfigError instead of mixing two histories.

Reads need no chain: open an Indexer and query it. Queries return plain frozen
dataclasses. One Indexer may be shared between threads: queries go through
their own connection, so they see whole batches only and never wait for a sync
to fetch logs.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from eth_typing import HexStr
from web3 import Web3
from web3.exceptions import BlockNotFound
from web3.types import FilterParams, LogReceipt

from .._exceptions import ChainUnavailable, ConfigError, InvalidInput, UsageError
from ..protocol import checksum
from ._backend import ChainBackend
from ._contracts import CONTRACTS, ContractSpec
from ._errors import translate
from ._index_db import SCHEMA, SCHEMA_VERSION, Handler, LogEvent, apply, num, record
from ._index_decode import EventDecoder, event_decoders
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
from ._reputation import (
    DEFAULT_RULES,
    ProviderHistory,
    Reputation,
    ReputationRules,
    score_reputation,
)
from ._types import Deployment

__all__ = ["Indexer"]

DEFAULT_BATCH_BLOCKS = 2000
DEFAULT_BUSY_TIMEOUT = 30.0  # seconds to wait for another writer of the same file

_PROVIDER_COLS = (
    "address, endpoint, price, capabilities, stake, unbonding, withdrawable_at, active, "
    "registered_block, slashed_total"
)
_CHANNEL_COLS = (
    "id, client, provider, deposit, expiry, salt, opening_deposit, opening_expiry, paid, jobs, "
    "units, receipts_root, status, refund, opened_block, closed_block"
)
_REDEMPTION_COLS = (
    "channel, provider, amount, paid, jobs, units, receipts_root, block, tx_hash, log_index"
)
_SLASH_COLS = "provider, beneficiary, amount, stake, unbonding, block, tx_hash, log_index"


class Indexer:
    """Index of one deployment's contract events in a SQLite file."""

    def __init__(
        self,
        backend: ChainBackend,
        deployment: Deployment,
        path: str | Path,
        *,
        confirmations: int = 0,
        batch_blocks: int = DEFAULT_BATCH_BLOCKS,
        contracts: Sequence[ContractSpec] = CONTRACTS,
        block_times: bool = False,
    ) -> None:
        """Open (or create) the index at ``path`` for ``deployment``.

        With ``block_times``, each sync also records the timestamp of every block that
        has an event (one ``eth_getBlockByNumber`` each: the explorer's clock); without,
        only each batch's last block's (which the sync reads anyway).

        Follows the events of every contract in ``contracts`` (each must have an
        address in ``deployment``). Raises ConfigError if the file indexes
        another deployment or is not an index. Blocks newer than ``head -
        confirmations`` are left for a later sync; each ``eth_getLogs`` call
        covers at most ``batch_blocks`` blocks.
        """
        if confirmations < 0:
            raise InvalidInput(f"confirmations must be >= 0, got {confirmations}")
        if batch_blocks < 1:
            raise InvalidInput(f"batch_blocks must be >= 1, got {batch_blocks}")
        self._backend = backend
        self._deployment = deployment
        self._contracts = tuple(contracts)
        self._path = Path(path)
        self._confirmations = confirmations
        self._batch_blocks = batch_blocks
        self._sync_lock = threading.Lock()  # one sync at a time; guards the writer
        self._read_lock = threading.Lock()  # guards the reader
        self._chain_checked = False
        self._block_times = block_times
        self._keys: dict[str, str] = {}  # contract address -> the deployment's key
        self._decoders = self._event_decoders()
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        try:
            self._writer = self._open()
            self._claim()
            self._reader = self._open(query_only=True)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -----------------------------------------------------------
    @property
    def deployment(self) -> Deployment:
        return self._deployment

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._sync_lock, self._read_lock:
            for conn in (self._reader, self._writer):
                if conn is not None:
                    conn.close()
            self._reader = self._writer = None

    def __enter__(self) -> Indexer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sync ------------------------------------------------------------------
    def sync(self) -> SyncReport:
        """Apply every event up to ``head - confirmations`` not yet in the index.

        Raises ConfigError if the backend is on another chain than the
        deployment or no longer has the last block synced; chain failures raise
        UnavailableError, leaving the index at the last whole batch.
        """
        with self._sync_lock:
            self._check_chain()
            head = self._backend.block_number()
            target = head - self._confirmations
            self._check_history()
            scanned = applied = 0
            while True:
                last = self._last_synced(self._db(write=True))
                start = self._start_block() if last is None else last + 1
                if start > target:
                    break
                end = min(start + self._batch_blocks - 1, target)
                events = self._fetch(start, end)
                wanted = {e.block for e, _ in events} if self._block_times else set()
                blocks = self._blocks(sorted(wanted | {end}))
                end_hash = blocks[end][0]
                with self._transaction() as conn:
                    if _meta(conn, "last_block") != (None if last is None else str(last)):
                        continue  # another process synced this range meanwhile
                    # with the blocks' times kept, they go in first: a redemption's
                    # handler reads its block's (``hourly``); without, none is there
                    # for it, and ``hourly`` stays empty rather than partial
                    rows = [(n, h, t) for n, (h, t) in blocks.items()]
                    if self._block_times:
                        _put_blocks(conn, rows)
                    for event, handler in events:
                        applied += apply(conn, event, handler)
                    if not self._block_times:
                        _put_blocks(conn, rows)
                    _set_meta(conn, last_block=str(end), last_hash=end_hash)
                scanned += end - start + 1
            return SyncReport(scanned, applied, head, self._last_synced(self._db(write=True)))

    @property
    def last_block(self) -> int | None:
        """The newest block in the index; None until the first sync."""
        with self._read_lock:
            return self._last_synced(self._db())

    # -- queries ---------------------------------------------------------------
    def providers(self, active_only: bool = True) -> list[IndexedProvider]:
        """Registered providers (by default only active ones), in order of registration."""
        where = "WHERE active = 1 " if active_only else ""
        rows = self._rows(
            f"SELECT {_PROVIDER_COLS} FROM providers {where}ORDER BY registered_block, address"
        )
        return [_provider(r) for r in rows]

    def provider(self, address: str) -> IndexedProvider | None:
        """One provider, active or not; None if it never registered."""
        row = self._row(
            f"SELECT {_PROVIDER_COLS} FROM providers WHERE address = ?", (checksum(address),)
        )
        return None if row is None else _provider(row)

    def channels(
        self,
        client: str | None = None,
        provider: str | None = None,
        status: ChannelStatus | str | None = None,
    ) -> list[IndexedChannel]:
        """Channels matching every filter given, in the order they were opened."""
        conds: list[str] = []
        params: list[Any] = []
        if client is not None:
            conds.append("client = ?")
            params.append(checksum(client))
        if provider is not None:
            conds.append("provider = ?")
            params.append(checksum(provider))
        if status is not None:
            conds.append("status = ?")
            params.append(_status(status).value)
        where = f"WHERE {' AND '.join(conds)} " if conds else ""
        rows = self._rows(
            f"SELECT {_CHANNEL_COLS} FROM channels {where}ORDER BY opened_seq", params
        )
        return [_channel(r) for r in rows]

    def channel(self, id: bytes) -> IndexedChannel | None:
        """One channel by id; None if it was never opened."""
        row = self._row(f"SELECT {_CHANNEL_COLS} FROM channels WHERE id = ?", (_channel_id(id),))
        return None if row is None else _channel(row)

    def receipts_root(self, channel: bytes) -> bytes | None:
        """The receipts root of the channel's latest redeemed voucher; None if none."""
        row = self._row("SELECT receipts_root FROM channels WHERE id = ?", (_channel_id(channel),))
        return None if row is None or row[0] is None else bytes(row[0])

    def redemptions(
        self,
        channel: bytes | None = None,
        provider: str | None = None,
        *,
        latest: int | None = None,
    ) -> list[Redemption]:
        """Redeemed vouchers matching every filter given, oldest first (only the
        ``latest`` ones, if given)."""
        if latest is not None and latest < 1:
            raise InvalidInput(f"latest must be 1 or more, got {latest}")
        conds: list[str] = []
        params: list[Any] = []
        if channel is not None:
            conds.append("channel = ?")
            params.append(_channel_id(channel))
        if provider is not None:
            conds.append("provider = ?")
            params.append(checksum(provider))
        where = f"WHERE {' AND '.join(conds)} " if conds else ""
        sql = f"SELECT {_REDEMPTION_COLS} FROM redemptions {where}ORDER BY seq"
        if latest is not None:
            newest = f"SELECT seq, {_REDEMPTION_COLS} FROM redemptions {where}"
            sql = f"SELECT {_REDEMPTION_COLS} FROM ({newest}ORDER BY seq DESC LIMIT ?) ORDER BY seq"
            params.append(latest)
        rows = self._rows(sql, params)
        return [_redemption(r) for r in rows]

    def contributions(self) -> list[ProviderContribution]:
        """The totals of every address that has redeemed a voucher, by address."""
        rows = self._rows(
            "SELECT provider, earned, jobs, units, redemptions FROM contributions ORDER BY provider"
        )
        return [_contribution(r) for r in rows]

    def contribution(self, address: str) -> ProviderContribution:
        """One address's totals; all zero if it never redeemed (as the market's ``record``)."""
        addr = checksum(address)
        row = self._row(
            "SELECT provider, earned, jobs, units, redemptions FROM contributions "
            "WHERE provider = ?",
            (addr,),
        )
        return ProviderContribution(addr, 0, 0, 0, 0) if row is None else _contribution(row)

    def slashes(self, provider: str | None = None) -> list[Slash]:
        """Slashes (of one provider, or all), oldest first."""
        where, params = ("WHERE provider = ? ", [checksum(provider)]) if provider else ("", [])
        rows = self._rows(f"SELECT {_SLASH_COLS} FROM slashes {where}ORDER BY seq", params)
        return [_slash(r) for r in rows]

    def reputation(self, address: str, rules: ReputationRules = DEFAULT_RULES) -> Reputation:
        """One address's reputation from the indexed events (zero if it never earned).

        Every index of the same chain, synced to the same block, gives the same answer:
        see :mod:`idlegrid.chain._reputation` for what counts.
        """
        with self._read_lock:
            return score_reputation(_history(self._db(), checksum(address)), rules)

    def reputations(self, rules: ReputationRules = DEFAULT_RULES) -> dict[str, Reputation]:
        """The reputation of every registered provider, active or not, by address."""
        with self._read_lock:
            conn = self._db()
            rows = conn.execute("SELECT address FROM providers ORDER BY address").fetchall()
            addresses = [r[0] for r in rows]
            return {a: score_reputation(_history(conn, a), rules) for a in addresses}

    def activity(
        self,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int = 50,
        contract: str | None = None,
        names: Sequence[str] = (),
    ) -> list[Activity]:
        """Recorded events, newest first: those with a sequence number above ``after``
        and below ``before`` (keyset paging), of ``contract`` and ``names`` if given;
        at most ``limit`` (1..1000)."""
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must be 1..1000, got {limit}")
        where, params = ["1 = 1"], list[Any]()
        if after is not None:
            where.append("e.seq > ?")
            params.append(after)
        if before is not None:
            where.append("e.seq < ?")
            params.append(before)
        if contract is not None:
            where.append("e.contract = ?")
            params.append(contract)
        if names:
            where.append(f"e.name IN ({', '.join('?' * len(names))})")
            params.extend(names)
        rows = self._rows(
            "SELECT e.seq, e.contract, e.name, e.block, e.tx_hash, e.log_index, e.args, "
            "b.timestamp FROM events e LEFT JOIN blocks b ON b.number = e.block "
            f"WHERE {' AND '.join(where)} ORDER BY e.seq DESC LIMIT ?",
            (*params, limit),
        )
        return [_activity(r) for r in rows]

    def block_time(self, number: int) -> int | None:
        """The timestamp of block ``number`` if the index has it (a block with a
        followed event, or the last of a synced batch)."""
        row = self._row("SELECT timestamp FROM blocks WHERE number = ?", (number,))
        return None if row is None else int(row[0])

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query over the index's tables (for views built on the
        index, such as the explorer's; the connection refuses writes)."""
        try:
            return self._rows(sql, params)
        except sqlite3.Error as exc:
            raise InvalidInput(f"index query failed: {exc}") from exc

    def balance_of(self, account: str) -> int:
        """Tokens the market holds for ``account`` (as the market's ``balance_of``)."""
        row = self._row("SELECT balance FROM accounts WHERE account = ?", (checksum(account),))
        return 0 if row is None else num(row[0])

    # -- internals -------------------------------------------------------------
    def _db(self, *, write: bool = False) -> sqlite3.Connection:
        conn = self._writer if write else self._reader
        if conn is None:
            raise UsageError(f"the index {self._path} is closed")
        return conn

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            return list(self._db().execute(sql, params).fetchall())

    def _row(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _open(self, *, query_only: bool = False) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._path,
                timeout=DEFAULT_BUSY_TIMEOUT,
                isolation_level=None,  # transactions are explicit: see _transaction
                check_same_thread=False,  # each connection is guarded by a lock
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the index {self._path}: {exc}") from exc
        try:
            if query_only:
                conn.execute("PRAGMA query_only = ON")
            else:
                conn.execute("PRAGMA journal_mode = WAL")
                # with WAL, NORMAL may lose the last commits on power loss but
                # never tears one; a lost batch is synced again
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.executescript(SCHEMA)
                for spec in self._contracts:
                    if spec.schema:
                        conn.executescript(spec.schema)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ConfigError(f"cannot use {self._path} as an index: {exc}") from exc
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        conn = self._db(write=True)
        with conn:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
            yield conn

    @staticmethod
    def _last_synced(conn: sqlite3.Connection) -> int | None:
        value = _meta(conn, "last_block")
        return None if value is None else int(value)

    def _claim(self) -> None:
        """Record this deployment in a new index, or check that it is the one indexed."""
        dep = self._deployment
        identity = {"schema_version": SCHEMA_VERSION, "chain_id": str(dep.chain_id)}
        identity.update((spec.key, dep.address(spec.key)) for spec in self._contracts)
        with self._transaction() as conn:
            stored = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if not stored:
                _set_meta(conn, **identity, start_block=str(dep.start_block))
                return
            if stored.get("schema_version") != SCHEMA_VERSION:
                raise ConfigError(
                    f"{self._path} has index schema {stored.get('schema_version')}, "
                    f"not {SCHEMA_VERSION}: index into a new file"
                )
            for key, value in identity.items():
                if stored.get(key) != value:
                    raise ConfigError(
                        f"{self._path} is an index of {key} {stored.get(key)}, not {value}: "
                        "use another file for another deployment"
                    )

    def _start_block(self) -> int:
        value = _meta(self._db(write=True), "start_block")
        return self._deployment.start_block if value is None else int(value)

    def _check_chain(self) -> None:
        if not self._chain_checked:
            chain_id = self._backend.chain_id
            if chain_id != self._deployment.chain_id:
                raise ConfigError(
                    f"deployment is for chain {self._deployment.chain_id}, "
                    f"backend is chain {chain_id}"
                )
            self._chain_checked = True

    def _check_history(self) -> None:
        conn = self._db(write=True)
        last = self._last_synced(conn)
        if last is None:
            return
        stored = _meta(conn, "last_hash")
        current = self._block_hash(last)
        if current != stored:
            raise ConfigError(
                f"the chain's block {last} is no longer the one {self._path} was synced to "
                "(a reorganisation deeper than `confirmations`, or a restarted chain); "
                "index into a new file"
            )

    def _block_hash(self, number: int) -> str | None:
        with translate("eth_getBlockByNumber"):
            try:
                block = self._backend.w3.eth.get_block(number)
            except BlockNotFound:
                return None
        return "0x" + bytes(block["hash"]).hex()

    def _blocks(self, numbers: Sequence[int]) -> dict[int, tuple[str, int]]:
        """(hash, timestamp) of each block of ``numbers``."""
        out: dict[int, tuple[str, int]] = {}
        for number in numbers:
            with translate("eth_getBlockByNumber"):
                try:
                    block = self._backend.w3.eth.get_block(number)
                except BlockNotFound:
                    raise ChainUnavailable(
                        f"block {number} vanished during the sync; sync again"
                    ) from None
            out[number] = ("0x" + bytes(block["hash"]).hex(), int(block["timestamp"]))
        return out

    def _event_decoders(self) -> dict[tuple[str, bytes], tuple[EventDecoder, Handler]]:
        """(contract address, topic 0) -> (decoder, handler), for every event the index applies."""
        decoders: dict[tuple[str, bytes], tuple[EventDecoder, Handler]] = {}
        for spec in self._contracts:
            address = self._deployment.address(spec.key)
            abi = spec.artifact().abi
            # every event is recorded (the activity log); those in ``spec.events``
            # also change the index's tables
            names = [e["name"] for e in abi if e.get("type") == "event"]
            for decoder in event_decoders(spec.name, abi, names):
                handler = spec.events.get(decoder.name, record)
                decoders[address, decoder.topic] = (decoder, handler)
                self._keys[address] = spec.key
        return decoders

    def _fetch(self, start: int, end: int) -> list[tuple[LogEvent, Handler]]:
        """The followed events in blocks ``start..end``, decoded, in chain order."""
        params: FilterParams = {
            "fromBlock": start,
            "toBlock": end,
            "address": sorted({Web3.to_checksum_address(a) for a, _ in self._decoders}),
            "topics": [sorted({HexStr("0x" + topic.hex()) for _, topic in self._decoders})],
        }
        with translate("eth_getLogs"):
            logs = self._backend.w3.eth.get_logs(params)
        logs = sorted(
            (log for log in logs if not log.get("removed", False)),
            key=lambda log: (log["blockNumber"], log["transactionIndex"], log["logIndex"]),
        )
        return [event for event in map(self._decode, logs) if event is not None]

    def _decode(self, log: LogReceipt) -> tuple[LogEvent, Handler] | None:
        topics = [bytes(t) for t in log["topics"]]
        found = self._decoders.get((checksum(log["address"]), topics[0])) if topics else None
        if found is None:
            return None  # not an event the index applies (a node ignoring the filter)
        decoder, handler = found
        event = LogEvent(
            name=decoder.name,
            block=int(log["blockNumber"]),
            tx_hash="0x" + bytes(log["transactionHash"]).hex(),
            log_index=int(log["logIndex"]),
            args=decoder.decode(topics, bytes(log["data"])),
            contract=self._keys.get(checksum(log["address"]), ""),
        )
        return event, handler


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(conn: sqlite3.Connection, **values: str) -> None:
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        list(values.items()),
    )


def _history(conn: sqlite3.Connection, provider: str) -> ProviderHistory:
    """What reputation reads of ``provider``, from one connection (one snapshot)."""
    paid = {
        client: num(total)
        for client, total in conn.execute(
            "SELECT client, paid FROM payments WHERE provider = ? ORDER BY client", (provider,)
        )
    }
    # what the provider gave each of its clients: token transfers, and vouchers it paid
    # them as their client
    funded: dict[str, int] = {}
    for sql in (
        "SELECT recipient, amount FROM transfers WHERE sender = ?",
        "SELECT provider, paid FROM payments WHERE client = ?",
    ):
        for to, amount in conn.execute(sql, (provider,)):
            if to in paid:
                funded[to] = funded.get(to, 0) + num(amount)
    slashes, slashed = 0, 0
    for (amount,) in conn.execute("SELECT amount FROM slashes WHERE provider = ?", (provider,)):
        slashes, slashed = slashes + 1, slashed + num(amount)
    won, lost, absent = _disputes(conn, provider)
    return ProviderHistory(provider, paid, funded, slashes, slashed, won, lost, absent)


def _disputes(conn: sqlite3.Connection, provider: str) -> tuple[int, int, int]:
    """Disputes against ``provider`` it won and lost, and resolved disputes it sat on as
    a referee without voting; zeros where the deployment indexes no dispute contract."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"disputes", "dispute_votes"} <= tables:
        return 0, 0, 0
    outcomes = dict(
        conn.execute(
            "SELECT outcome, COUNT(*) FROM disputes WHERE provider = ? GROUP BY outcome",
            (provider,),
        ).fetchall()
    )
    (absent,) = conn.execute(
        "SELECT COUNT(*) FROM dispute_votes v JOIN disputes d ON v.dispute = d.id "
        "WHERE v.referee = ? AND d.status = 'resolved' AND v.vote IN ('seated', 'committed')",
        (provider,),
    ).fetchone()
    return (
        int(outcomes.get("provider_right", 0)),
        int(outcomes.get("provider_wrong", 0)),
        int(absent),
    )


def _status(status: ChannelStatus | str) -> ChannelStatus:
    try:
        return ChannelStatus(status)
    except ValueError as exc:
        raise InvalidInput(f"channel status must be 'open' or 'closed', got {status!r}") from exc


def _channel_id(value: bytes) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise InvalidInput(f"a channel id is 32 bytes, got {value!r}")
    return value


def _provider(r: tuple[Any, ...]) -> IndexedProvider:
    return IndexedProvider(
        address=r[0],
        endpoint=r[1],
        price=num(r[2]),
        capabilities=bytes(r[3]),
        stake=num(r[4]),
        unbonding=num(r[5]),
        withdrawable_at=num(r[6]),
        active=bool(r[7]),
        registered_block=r[8],
        slashed_total=num(r[9]),
    )


def _channel(r: tuple[Any, ...]) -> IndexedChannel:
    return IndexedChannel(
        id=bytes(r[0]),
        client=r[1],
        provider=r[2],
        deposit=num(r[3]),
        expiry=num(r[4]),
        salt=num(r[5]),
        opening_deposit=num(r[6]),
        opening_expiry=num(r[7]),
        paid=num(r[8]),
        jobs=num(r[9]),
        units=num(r[10]),
        receipts_root=None if r[11] is None else bytes(r[11]),
        status=ChannelStatus(r[12]),
        refund=None if r[13] is None else num(r[13]),
        opened_block=r[14],
        closed_block=r[15],
    )


def _put_blocks(conn: sqlite3.Connection, rows: list[tuple[int, str, int]]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO blocks (number, hash, timestamp) VALUES (?, ?, ?)", rows
    )


def _redemption(r: tuple[Any, ...]) -> Redemption:
    return Redemption(
        channel=bytes(r[0]),
        provider=r[1],
        amount=num(r[2]),
        paid=num(r[3]),
        jobs=num(r[4]),
        units=num(r[5]),
        receipts_root=bytes(r[6]),
        block=r[7],
        tx_hash=r[8],
        log_index=r[9],
    )


def _contribution(r: tuple[Any, ...]) -> ProviderContribution:
    return ProviderContribution(
        provider=r[0], earned=num(r[1]), jobs=num(r[2]), units=num(r[3]), redemptions=r[4]
    )


def _activity(r: tuple[Any, ...]) -> Activity:
    return Activity(
        seq=int(r[0]),
        contract=str(r[1]),
        name=str(r[2]),
        block=int(r[3]),
        tx_hash=str(r[4]),
        log_index=int(r[5]),
        args=json.loads(r[6]),
        timestamp=None if r[7] is None else int(r[7]),
    )


def _slash(r: tuple[Any, ...]) -> Slash:
    return Slash(
        provider=r[0],
        beneficiary=r[1],
        amount=num(r[2]),
        stake=num(r[3]),
        unbonding=num(r[4]),
        block=r[5],
        tx_hash=r[6],
        log_index=r[7],
    )
