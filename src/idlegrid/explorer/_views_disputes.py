"""Disputes: their committees, votes and timelines (see ``_views.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._exceptions import InvalidInput
from ..chain import Indexer
from ._figures import (
    Page,
    _activity_row,
    _amount,
    _events,
    _hex32,
    _limit,
    figure,
)

# -- disputes --------------------------------------------------------------------------
_DISPUTE_COLS = (
    "id, provider, challenger, client, channel, job_id, units, amount, bond, status, "
    "outcome, committee, wrong_votes, right_votes, slashed, refund, challenger_paid, "
    "referee_reward, absent, opened_block, resolved_block"
)


def _dispute_row(r: Sequence[Any]) -> dict[str, Any]:
    (
        did,
        provider,
        challenger,
        client,
        channel,
        job_id,
        units,
        amount,
        bond,
        status,
        outcome,
        committee,
        wrong,
        right,
        slashed,
        _refund,
        _paid,
        _reward,
        absent,
        opened,
        resolved,
    ) = r
    return {
        "id": "0x" + bytes(did).hex(),
        "provider": provider,
        "challenger": challenger,
        "client": client,
        "channel": "0x" + bytes(channel).hex(),
        "job_id": "0x" + bytes(job_id).hex(),
        "units": int(units),
        "amount": _amount(int(amount)),
        "bond": _amount(int(bond)),
        "status": status,
        "outcome": outcome,
        "committee": [c for c in str(committee).split(",") if c],
        "votes": {"provider_wrong": wrong, "provider_right": right},
        "slashed": None if slashed is None else _amount(int(slashed)),
        "absent": absent,
        "opened_block": opened,
        "resolved_block": resolved,
    }


def disputes_view(
    index: Indexer, *, status: str | None = None, after: int | None = None, limit: int = 50
) -> Page:
    """Disputes, newest first; ``status`` one of drawing, voting, resolved."""
    limit = _limit(limit)
    where, params = ["1 = 1"], list[Any]()
    if status is not None:
        if status not in ("drawing", "voting", "resolved"):
            raise InvalidInput("status must be drawing, voting or resolved")
        where.append("status = ?")
        params.append(status)
    if after is not None:
        where.append("rowid < ?")
        params.append(after)
    rows = index.read(
        f"SELECT rowid, {_DISPUTE_COLS} FROM disputes WHERE {' AND '.join(where)} "
        "ORDER BY rowid DESC LIMIT ?",
        (*params, limit + 1),
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([_dispute_row(r[1:]) for r in rows], str(rows[-1][0]) if more and rows else None)


def dispute_view(index: Indexer, dispute: str) -> dict[str, Any] | None:
    """One dispute with its committee's votes and its timeline from opening to ruling."""
    did = _hex32(dispute, "a dispute id")
    rows = index.read(f"SELECT {_DISPUTE_COLS} FROM disputes WHERE id = ?", (did,))
    if not rows:
        return None
    out = _dispute_row(rows[0])
    out["seats"] = [
        {"referee": ref, "vote": vote}
        for ref, vote in index.read(
            "SELECT referee, vote FROM dispute_votes WHERE dispute = ? ORDER BY referee", (did,)
        )
    ]
    key = "0x" + did.hex()
    timeline = [
        _activity_row(a)
        for a in _events(index, "disputes", _DISPUTE_EVENTS)
        if a.args.get("dispute") == key
    ]
    out["timeline"] = timeline
    times = [t["timestamp"] for t in timeline if t["timestamp"] is not None]
    out["duration_s"] = (
        figure(times[-1] - times[0], "derived")
        if out["status"] == "resolved" and times
        else figure(None, "unknown", why="not resolved yet")
    )
    return out


_DISPUTE_EVENTS = [
    "DisputeOpened",
    "PostingChallenged",
    "AnswerDisputed",
    "DrawDeferred",
    "CommitteeDrawn",
    "VoteCommitted",
    "VoteRevealed",
    "DisputeResolved",
]
