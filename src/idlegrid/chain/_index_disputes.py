"""The indexer's view of the dispute contract: a ``disputes`` table and the votes.

``disputes`` has one row per dispute (keyed by the disputed receipt's leaf) with
its evidence, its stage (``status``: drawing, voting, resolved) and, once
resolved, its ``outcome`` (provider_wrong, provider_right, no_decision) and
payouts. ``dispute_votes`` has one row per committee seat: ``vote`` is
``seated``, ``committed``, ``wrong`` or ``right``; a seat still ``seated`` or
``committed`` after its dispute resolved is a referee who did not vote (and was
slashed ``referee_penalty``). Token amounts are 78-digit text (see ``u256``).
"""

from __future__ import annotations

import sqlite3

from ..protocol import checksum
from ._index_db import Handler, LogEvent, u256

__all__ = ["DISPUTE_EVENTS", "DISPUTE_SCHEMA", "OUTCOMES"]

#: the contract's outcome codes, as the ``outcome`` column spells them
OUTCOMES = {1: "provider_wrong", 2: "provider_right", 3: "no_decision"}

DISPUTE_SCHEMA = """
CREATE TABLE IF NOT EXISTS disputes (
    id BLOB PRIMARY KEY,
    provider TEXT NOT NULL,
    challenger TEXT NOT NULL,
    client TEXT NOT NULL,
    channel BLOB NOT NULL,
    job_id BLOB NOT NULL,
    spec_hash BLOB NOT NULL,
    input_hash BLOB NOT NULL,
    output_hash BLOB NOT NULL,
    units TEXT NOT NULL,
    amount TEXT NOT NULL,
    bond TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    committee TEXT NOT NULL,
    commit_deadline TEXT,
    reveal_deadline TEXT,
    wrong_votes INTEGER NOT NULL,
    right_votes INTEGER NOT NULL,
    slashed TEXT,
    refund TEXT,
    challenger_paid TEXT,
    referee_reward TEXT,
    absent INTEGER,
    opened_block INTEGER NOT NULL,
    resolved_block INTEGER
);
CREATE INDEX IF NOT EXISTS disputes_by_provider ON disputes (provider, outcome);
CREATE TABLE IF NOT EXISTS dispute_votes (
    dispute BLOB NOT NULL,
    referee TEXT NOT NULL,
    vote TEXT NOT NULL,
    PRIMARY KEY (dispute, referee)
);
CREATE INDEX IF NOT EXISTS dispute_votes_by_referee ON dispute_votes (referee);
"""


def _opened(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    conn.execute(
        "INSERT INTO disputes (id, provider, challenger, client, channel, job_id, spec_hash, "
        "input_hash, output_hash, units, amount, bond, status, outcome, committee, "
        "wrong_votes, right_votes, opened_block) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'drawing', NULL, '', 0, 0, ?)",
        (
            a["dispute"],
            a["provider"],
            a["challenger"],
            a["client"],
            a["channel"],
            a["job_id"],
            a["spec_hash"],
            a["input_hash"],
            a["output_hash"],
            u256(a["units"]),
            u256(a["amount"]),
            u256(a["bond"]),
            ev.block,
        ),
    )


def _drawn(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    committee = [checksum(m) for m in a["committee"]]
    conn.execute(
        "UPDATE disputes SET status = 'voting', committee = ?, commit_deadline = ?, "
        "reveal_deadline = ? WHERE id = ?",
        (",".join(committee), u256(a["commit_deadline"]), u256(a["reveal_deadline"]), a["dispute"]),
    )
    conn.executemany(
        "INSERT OR REPLACE INTO dispute_votes (dispute, referee, vote) VALUES (?, ?, 'seated')",
        [(a["dispute"], m) for m in committee],
    )


def _committed(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    conn.execute(
        "UPDATE dispute_votes SET vote = 'committed' WHERE dispute = ? AND referee = ?",
        (ev.args["dispute"], ev.args["referee"]),
    )


def _revealed(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    wrong = bool(a["wrong"])
    conn.execute(
        "UPDATE dispute_votes SET vote = ? WHERE dispute = ? AND referee = ?",
        ("wrong" if wrong else "right", a["dispute"], a["referee"]),
    )
    column = "wrong_votes" if wrong else "right_votes"
    conn.execute(f"UPDATE disputes SET {column} = {column} + 1 WHERE id = ?", (a["dispute"],))


def _resolved(conn: sqlite3.Connection, ev: LogEvent, seq: int) -> None:
    a = ev.args
    conn.execute(
        "UPDATE disputes SET status = 'resolved', outcome = ?, wrong_votes = ?, right_votes = ?, "
        "slashed = ?, refund = ?, challenger_paid = ?, referee_reward = ?, absent = ?, "
        "resolved_block = ? WHERE id = ?",
        (
            OUTCOMES.get(int(a["outcome"]), "unknown"),
            int(a["wrong_votes"]),
            int(a["right_votes"]),
            u256(a["slashed"]),
            u256(a["refund"]),
            u256(a["challenger_paid"]),
            u256(a["referee_reward"]),
            int(a["absent"]),
            ev.block,
            a["dispute"],
        ),
    )


#: how each Disputes event the index follows changes it
DISPUTE_EVENTS: dict[str, Handler] = {
    "DisputeOpened": _opened,
    "CommitteeDrawn": _drawn,
    "VoteCommitted": _committed,
    "VoteRevealed": _revealed,
    "DisputeResolved": _resolved,
}
