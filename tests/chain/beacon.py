"""A dummy contract registered only in tests: the registry of contracts extended from outside.

``Beacon`` points at the token (a constructor argument built from an address
deployed before it), is told the market's address once everything is deployed
(a wiring step), and logs ``Signalled`` events that a test-local index table
keeps. Nothing in ``idlegrid.chain`` knows it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

from idlegrid.chain import CONTRACTS, ChainBackend, ContractClient, ContractSpec, TxResult
from idlegrid.chain._index_db import LogEvent
from idlegrid.protocol import Account, checksum

SOURCE = '''# pragma version ~=0.4.3
"""
@title Beacon
@notice A test contract: anyone posts numbered signals; the owner names a market.
"""

import ownable

initializes: ownable

exports: ownable.owner

token: public(address)
market: public(address)


event Signalled:
    sender: indexed(address)
    number: uint256


@deploy
def __init__(token_: address):
    """
    @param token_ The token this beacon belongs to.
    """
    ownable.__init__()
    self.token = token_


@external
def set_market(market_: address):
    """
    @notice Name the market. Owner only.
    """
    ownable._check_owner()
    self.market = market_


@external
def signal(number: uint256):
    """
    @notice Log `number`.
    """
    log Signalled(sender=msg.sender, number=number)
'''

SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    seq INTEGER PRIMARY KEY REFERENCES events (seq),
    sender TEXT NOT NULL,
    value INTEGER NOT NULL
);
"""


class BeaconClient(ContractClient):
    """Typed client of the test contract."""

    _name = "Beacon"

    def token(self) -> str:
        return checksum(self._call("token"))

    def market(self) -> str:
        return checksum(self._call("market"))

    def set_market(self, market: str, *, sender: Account) -> TxResult:
        return self._send("set_market", checksum(market), sender=sender)

    def signal(self, value: int, *, sender: Account) -> TxResult:
        return self._send("signal", value, sender=sender)


def _signalled(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    conn.execute(
        "INSERT INTO signals (seq, sender, value) VALUES (?, ?, ?)",
        (seq, ev.args["sender"], ev.args["number"]),
    )


def write_source(directory: Path) -> Path:
    """Write ``Beacon.vy`` into ``directory``; its path."""
    path = directory / "Beacon.vy"
    path.write_text(SOURCE)
    return path


def beacon_spec(source: Path) -> ContractSpec:
    """The registry entry of the Beacon compiled from ``source``."""

    def wire(backend: ChainBackend, addresses: Mapping[str, str], owner: Account) -> object:
        return BeaconClient(backend, addresses["beacon"], abi=spec.artifact().abi).set_market(
            addresses["market"], sender=owner
        )

    spec = ContractSpec(
        key="beacon",
        name="Beacon",
        args=lambda cfg, at: [at["token"]],
        client=BeaconClient,
        events={"Signalled": _signalled},
        schema=SCHEMA,
        wire=wire,
        source=source,
    )
    return spec


def with_beacon(source: Path) -> tuple[ContractSpec, ...]:
    """The ledger's registry plus the Beacon: a test-local table."""
    return (*CONTRACTS, beacon_spec(source))


def signals(index_path: Path) -> list[tuple[str, int]]:
    """(sender, value) of every indexed Signalled event, in order."""
    with closing(sqlite3.connect(index_path)) as conn:
        rows = conn.execute("SELECT sender, value FROM signals ORDER BY seq").fetchall()
    return [(str(sender), int(value)) for sender, value in rows]
