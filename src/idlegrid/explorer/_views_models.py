"""Models and their lineage, federated runs and their rewards, oracle requests
(see ``_views.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..chain import Activity, Indexer
from ._figures import (
    ZERO32,
    Page,
    _amount,
    _events,
    _hex32,
    _limit,
    figure,
)


# -- models, runs and rewards ----------------------------------------------------------
def models_view(index: Indexer, *, after: int | None = None, limit: int = 50) -> Page:
    """Registered models, newest first, a page at a time (``after``: the previous page's
    ``next``, a position in the event log)."""
    limit = _limit(limit)
    got = index.activity(contract="models", names=["ModelRegistered"], before=after,
                         limit=limit + 1)  # fmt: skip
    rows = [_model_row(a) for a in got[:limit]]
    return Page(rows, str(got[limit - 1].seq) if len(got) > limit else None)


def _model_row(a: Activity) -> dict[str, Any]:
    return {
        "model": a.args["model"],
        "trainer": a.args["trainer"],
        "registrant": a.args["registrant"],
        "parent": None if a.args["parent"] == ZERO32 else a.args["parent"],
        "run": None if a.args["run"] == ZERO32 else a.args["run"],
        "block": a.block,
        "tx": a.tx_hash,
        "timestamp": a.timestamp,
    }


def is_model(index: Indexer, key: str) -> bool:
    """Whether ``key`` (0x-hex) is a registered model."""
    return any(a.args["model"] == key for a in _events(index, "models", ["ModelRegistered"]))


def model_view(index: Indexer, model: str) -> dict[str, Any] | None:
    """A model with its lineage (ancestors and descendants, as a graph), its training
    and verification, its data contributors and their shares, and royalties paid."""
    key = "0x" + _hex32(model, "a model hash").hex()
    registered = {a.args["model"]: a for a in _events(index, "models", ["ModelRegistered"])}
    me = registered.get(key)
    if me is None:
        return None
    # the lineage graph: every ancestor, and every model fine-tuned from one of them
    nodes, edges = {key}, []
    at = me
    while at.args["parent"] != ZERO32 and at.args["parent"] not in nodes:
        nodes.add(at.args["parent"])
        if at.args["parent"] not in registered:
            break
        at = registered[at.args["parent"]]
    grew = True
    while grew:
        grew = False
        for m, a in registered.items():
            if a.args["parent"] in nodes and m not in nodes:
                nodes.add(m)
                grew = True
    for m in nodes:
        node = registered.get(m)
        if node is not None and node.args["parent"] != ZERO32:
            edges.append({"from": node.args["parent"], "to": m})
    run = me.args["run"]
    rounds = [
        a for a in _events(index, "models", ["RoundRegistered"]) if a.args.get("model") == key
    ]
    verification = [
        a for a in _events(index, "models", ["VerificationRecorded"]) if a.args["run"] == run
    ]
    posted = [a for a in _events(index, "rewards", ["Posted"]) if a.args["model"] == key]
    shares = _shares(posted)
    paid = [a for a in _events(index, "rewards", ["RoyaltyPaid"]) if a.args["model"] == key]
    terms = [a for a in _events(index, "rewards", ["RoyaltySet"]) if a.args["model"] == key]
    return {
        "model": key,
        "trainer": me.args["trainer"],
        "registrant": me.args["registrant"],
        "spec_hash": me.args["spec_hash"],
        "data_hash": me.args["data_hash"],
        "checkpoints_root": figure(
            None if me.args["checkpoints_root"] == ZERO32 else me.args["checkpoints_root"],
            "observed" if me.args["checkpoints_root"] != ZERO32 else "unknown",
            tx=me.tx_hash,
            why=None
            if me.args["checkpoints_root"] != ZERO32
            else "registered without checkpoints (trained elsewhere)",
        ),
        "parent": None if me.args["parent"] == ZERO32 else me.args["parent"],
        "run": None if run == ZERO32 else run,
        "tx": me.tx_hash,
        "block": me.block,
        "timestamp": me.timestamp,
        "verification": (
            figure(
                {
                    "passed": verification[-1].args["passed"],
                    "checked": verification[-1].args["checked"],
                    "failed": verification[-1].args["failed"],
                },
                "observed",
                tx=verification[-1].tx_hash,
            )
            if verification
            else figure(None, "unknown", why="no verification recorded")
        ),
        "federated_round": (
            {
                "run": rounds[0].args["run"],
                "round": rounds[0].args["round"],
                "participants": rounds[0].args["participants"],
                "tx": rounds[0].tx_hash,
            }
            if rounds
            else None
        ),
        "lineage": {
            "nodes": [
                {
                    "model": m,
                    "trainer": registered[m].args["trainer"] if m in registered else None,
                    "known": m in registered,
                    "self": m == key,
                }
                for m in sorted(nodes)
            ],
            "edges": edges,
        },
        "contributors": shares,
        "royalty": (
            {
                "rate_wei_per_unit": str(terms[-1].args["rate"]),
                "data_bps": terms[-1].args["data_bps"],
                "tx": terms[-1].tx_hash,
            }
            if terms
            else None
        ),
        "royalties_paid": _amount(sum(int(a.args["amount"]) for a in paid), "derived"),
        "royalty_payments": [
            {
                "payer": a.args["payer"],
                "amount": _amount(int(a.args["amount"]), tx=a.tx_hash),
                "block": a.block,
                "timestamp": a.timestamp,
            }
            for a in paid[-50:]
        ],
    }


def _shares(posted: Iterable[Activity]) -> list[dict[str, Any]]:
    """Each contributor's posted amount summed over postings, and its share."""
    totals: dict[str, int] = {}
    for a in posted:
        for who, amount in zip(a.args["contributors"], a.args["amounts"], strict=False):
            totals[who] = totals.get(who, 0) + int(amount)
    whole = sum(totals.values())
    return [
        {
            "contributor": who,
            "amount": _amount(amount),
            "share": figure(amount / whole if whole else 0.0, "derived"),
        }
        for who, amount in sorted(totals.items(), key=lambda kv: -kv[1])
    ]


def runs_view(index: Indexer) -> list[dict[str, Any]]:
    """Federated runs (from their registered rounds), newest first."""
    runs: dict[str, dict[str, Any]] = {}
    for a in _events(index, "models", ["RoundRegistered"]):
        run = runs.setdefault(
            a.args["run"],
            {
                "run": a.args["run"],
                "rounds": 0,
                "coordinator": a.args["coordinator"],
                "participants": set(),
                "first_block": a.block,
            },
        )
        run["rounds"] += 1
        run["participants"].update(a.args["participants"])
        run["last_block"] = a.block
    return [
        {**r, "participants": len(r["participants"])}
        for r in sorted(runs.values(), key=lambda r: -int(r["last_block"]))
    ]


def run_view(index: Indexer, run: str) -> dict[str, Any] | None:
    """A federated run round by round: participants, the round's model, what each
    contributor was posted, the sponsor's pool, claims and challenges."""
    key = "0x" + _hex32(run, "a run id").hex()
    rounds = [a for a in _events(index, "models", ["RoundRegistered"]) if a.args["run"] == key]
    if not rounds:
        return None
    posted = {
        int(a.args["round"]): a
        for a in _events(index, "rewards", ["Posted"])
        if a.args["run"] == key
    }
    claims = [a for a in _events(index, "rewards", ["Claimed"]) if a.args["run"] == key]
    funded = [a for a in _events(index, "rewards", ["Funded"]) if a.args["run"] == key]
    voided = {
        int(a.args["round"])
        for a in _events(index, "rewards", ["PostingVoided"])
        if a.args["run"] == key
    }
    disputed = {
        int(a.args["round"])
        for a in _events(index, "rewards", ["PostingDisputed"])
        if a.args["run"] == key
    }
    out_rounds = []
    for a in rounds:
        r = int(a.args["round"])
        p = posted.get(r)
        out_rounds.append(
            {
                "round": r,
                "model": a.args["model"],
                "participants": a.args["participants"],
                "block": a.block,
                "timestamp": a.timestamp,
                "tx": a.tx_hash,
                "posting": None
                if p is None
                else {
                    "total": _amount(int(p.args["total"]), tx=p.tx_hash),
                    "root": p.args["root"],
                    "inputs": p.args["inputs"],
                    "shares": _shares([p]),
                    "challenged": r in disputed,
                    "voided": r in voided,
                },
                # what the coordinator measured, recorded with the round: a claim anyone
                # can recompute from the model and the validation set (data_hash)
                "accuracy": _measured(a, "accuracy", "not measured by the coordinator"),
                "epsilon": _measured(a, "epsilon_spent", "no differential privacy"),
            }
        )
    return {
        "run": key,
        "coordinator": rounds[0].args["coordinator"],
        "rounds": out_rounds,
        "contributors": _shares(p for r, p in posted.items() if r not in voided),
        "pool": _amount(sum(int(a.args["amount"]) for a in funded), "derived"),
        "claimed": _amount(sum(int(a.args["amount"]) for a in claims), "derived"),
        "epsilon": (
            out_rounds[-1]["epsilon"]
            if out_rounds
            else figure(None, "unknown", why="no round registered")
        ),
    }


#: ModelRegistry.NOT_MEASURED: a round's figure its coordinator did not measure
NOT_MEASURED = 2**256 - 1


def _measured(a: Activity, field: str, why: str) -> dict[str, Any]:
    """A round's figure recorded in millionths by its coordinator, or unknown."""
    raw = a.args.get(field)
    if raw is None or int(raw) == NOT_MEASURED:
        return figure(None, "unknown", why=why)
    out = figure(int(raw) / 1_000_000, "observed", tx=a.tx_hash, block=a.block)
    out["claimed_by"] = a.args["coordinator"]
    return out


# -- the oracle ------------------------------------------------------------------------
def oracle_view(index: Indexer, *, limit: int = 50) -> dict[str, Any]:
    """Oracle requests, newest first, each from ask to callback with its latency."""
    limit = _limit(limit)
    asked = _events(index, "oracle", ["Requested"])
    done = {
        int(a.args["request_id"]): a for a in _events(index, "oracle", ["Fulfilled", "Cancelled"])
    }
    rows = []
    for a in reversed(asked[-limit:]):
        rid = int(a.args["request_id"])
        end = done.get(rid)
        latency = (
            figure(end.timestamp - a.timestamp, "derived", tx=end.tx_hash)
            if end is not None and end.timestamp is not None and a.timestamp is not None
            else figure(None, "unknown", why="not answered yet")
        )
        rows.append(
            {
                "request_id": rid,
                "consumer": a.args["consumer"],
                "model": a.args["model"],
                "fee": _amount(int(a.args["fee"]), tx=a.tx_hash),
                "k": a.args["k"],
                "asked_block": a.block,
                "asked_tx": a.tx_hash,
                "asked_at": a.timestamp,
                "state": "pending" if end is None else end.name.lower(),
                "answered_tx": None if end is None else end.tx_hash,
                "answered_block": None if end is None else end.block,
                "callback_ok": None if end is None else end.args.get("callback_ok"),
                "latency_s": latency,
                "latency_blocks": None if end is None else end.block - a.block,
            }
        )
    return {"requests": rows, "total": len(asked)}
