"""What the explorer shows, as JSON-ready dicts built from the indexer alone.

Every view reads the index (:class:`~idlegrid.chain.Indexer`): its typed tables
(providers, channels, redemptions, slashes, disputes) and its activity log (every event
of every contract, with its arguments). Nothing here calls the chain, so a view is as
trustworthy as the index, and anyone who runs their own index sees the same.

Each figure says where it comes from (:func:`figure`): ``observed`` (a value an event
or a contract's state carries, linked to its transaction), ``derived`` (computed here
from observed events: sums, rates, latencies) or ``unknown`` (not on chain or not yet
seen). A zero is a zero; an unknown is ``null`` with its reason, never a zero.

Lists page by key (``after``: the last row's key of the page before), sort and filter
on the server, and never return more than ``MAX_PAGE`` rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from .._exceptions import InvalidInput
from ..chain import TOKEN, Activity, Indexer
from ..protocol import Receipt, checksum, verify_proof

__all__ = [
    "MAX_PAGE",
    "Page",
    "activity_rows",
    "activity_rows_of",
    "channel_view",
    "check_receipt",
    "dispute_view",
    "disputes_view",
    "earnings_view",
    "figure",
    "model_view",
    "models_view",
    "oracle_view",
    "overview",
    "provider_view",
    "providers_view",
    "run_view",
    "runs_view",
    "search",
    "tokens",
    "tx_view",
]

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


# -- the network at a glance ---------------------------------------------------------
def _redemption_deltas(index: Indexer, provider: str | None = None) -> list[dict[str, Any]]:
    """Each redemption with what it added (jobs, units: the channel's totals are
    cumulative) and its block's time, oldest first."""
    where, params = "", []
    if provider is not None:
        where, params = "WHERE r.provider = ?", [provider]
    rows = index.read(
        "SELECT r.channel, r.provider, r.amount, r.jobs, r.units, r.block, r.tx_hash, "
        "b.timestamp FROM redemptions r LEFT JOIN blocks b ON b.number = r.block "
        f"{where} ORDER BY r.seq",
        params,
    )
    last: dict[bytes, tuple[int, int]] = {}
    out = []
    for channel, prov, amount, jobs, units, block, tx, ts in rows:
        jobs_before, units_before = last.get(bytes(channel), (0, 0))
        jobs, units = int(jobs), int(units)
        last[bytes(channel)] = (jobs, units)
        out.append(
            {
                "channel": "0x" + bytes(channel).hex(),
                "provider": prov,
                "amount": int(amount),
                "jobs": jobs - jobs_before,
                "units": units - units_before,
                "block": int(block),
                "tx": tx,
                "timestamp": None if ts is None else int(ts),
            }
        )
    return out


def overview(index: Indexer) -> dict[str, Any]:
    """Providers active, stake, jobs and tokens in the last hour, price per unit over
    time and tokens per hour, as of the index's last block."""
    as_of = _as_of(index)
    providers = index.providers(active_only=False)
    active = [p for p in providers if p.active]
    redemptions = _redemption_deltas(index)
    now = as_of["timestamp"]
    recent = [
        r
        for r in redemptions
        if now is not None and r["timestamp"] is not None and r["timestamp"] > now - HOUR
    ]
    prices = [
        {
            "timestamp": r["timestamp"],
            "block": r["block"],
            "tx": r["tx"],
            "price_per_unit_wei": r["amount"] / r["units"],
        }
        for r in redemptions
        if r["units"] > 0 and r["timestamp"] is not None
    ]
    hourly: dict[int, dict[str, int]] = {}
    for r in redemptions:
        if r["timestamp"] is None:
            continue
        bucket = hourly.setdefault(r["timestamp"] // HOUR * HOUR, {"jobs": 0, "wei": 0})
        bucket["jobs"] += r["jobs"]
        bucket["wei"] += r["amount"]
    disputes = index.read("SELECT COUNT(*), SUM(status != 'resolved') FROM disputes")
    models = len(_events(index, "models", ["ModelRegistered"]))
    return {
        "as_of": as_of,
        "providers_active": figure(len(active), "derived"),
        "providers_registered": figure(len(providers), "derived"),
        "stake": _amount(sum(p.stake for p in active), "derived"),
        "jobs_last_hour": figure(sum(r["jobs"] for r in recent), "derived"),
        "tokens_last_hour": _amount(sum(r["amount"] for r in recent), "derived"),
        "jobs_total": figure(sum(r["jobs"] for r in redemptions), "derived"),
        "tokens_paid_total": _amount(sum(r["amount"] for r in redemptions), "derived"),
        "disputes": figure(int(disputes[0][0] or 0), "derived"),
        "disputes_open": figure(int(disputes[0][1] or 0), "derived"),
        "models": figure(models, "derived"),
        "price_history": prices,
        "hourly": [
            {
                "hour": h,
                "jobs": v["jobs"],
                "tokens": v["wei"] / TOKEN,
                "partial": now is not None and h + HOUR > now,
            }
            for h, v in sorted(hourly.items())
        ],
    }


# -- providers -------------------------------------------------------------------------
def providers_view(
    index: Indexer,
    *,
    sort: str = "stake",
    descending: bool = True,
    active_only: bool = False,
    after: str | None = None,
    limit: int = 50,
) -> Page:
    """A page of providers sorted on the server; ``after`` is the previous page's
    ``next`` (the last row's sort value and address)."""
    column = PROVIDER_SORTS.get(sort)
    if column is None:
        raise InvalidInput(f"sort must be one of {', '.join(PROVIDER_SORTS)}, not {sort!r}")
    limit = _limit(limit)
    op, order = ("<", "DESC") if descending else (">", "ASC")
    where, params = ["1 = 1"], []
    if active_only:
        where.append("active = 1")
    if after is not None:
        key, sep, address = after.rpartition("~")
        if not sep or not address:
            raise InvalidInput("after must be a page's `next` value")
        where.append(f"({column}, address) {op} (?, ?)")
        params.extend([_sort_key(column, key), address])
    rows = index.read(
        f"SELECT address, {column} FROM providers WHERE {' AND '.join(where)} "
        f"ORDER BY {column} {order}, address {order} LIMIT ?",
        (*params, limit + 1),
    )
    more = len(rows) > limit
    rows = rows[:limit]
    reps = index.reputations()
    out = []
    for address, _key in rows:
        p = index.provider(address)
        assert p is not None
        c = index.contribution(address)
        rep = reps.get(address)
        out.append(
            {
                "address": address,
                "endpoint": p.endpoint,
                "active": p.active,
                "stake": _amount(p.stake),
                "price_per_unit_wei": figure(str(p.price), "observed"),
                "earned": _amount(c.earned, "derived"),
                "jobs": figure(c.jobs, "derived"),
                "units": figure(c.units, "derived"),
                "reputation": figure(None if rep is None else rep.points / 1000, "derived"),
                "slashed": _amount(p.slashed_total),
                "registered_block": p.registered_block,
            }
        )
    nxt = None
    if more and rows:
        last_address, last_key = rows[-1]
        nxt = f"{last_key}~{last_address}"
    return Page(out, nxt)


def _sort_key(column: str, text: str) -> Any:
    if column == "registered_block":
        try:
            return int(text)
        except ValueError:
            raise InvalidInput("after must be a page's `next` value") from None
    return text


def provider_view(index: Indexer, address: str) -> dict[str, Any] | None:
    """Everything about one provider; None if the index never saw it register."""
    address = _address(address)
    p = index.provider(address)
    if p is None:
        return None
    rep = index.reputation(address)
    c = index.contribution(address)
    earnings, total = [], 0
    for r in _redemption_deltas(index, address):
        total += r["amount"]
        earnings.append(
            {
                "timestamp": r["timestamp"],
                "block": r["block"],
                "tx": r["tx"],
                "amount_tokens": r["amount"] / TOKEN,
                "cumulative_tokens": total / TOKEN,
            }
        )
    channels = [
        {
            "id": "0x" + ch.id.hex(),
            "client": ch.client,
            "status": ch.status.value,
            "deposit": _amount(ch.deposit),
            "paid": _amount(ch.paid, "derived"),
            "jobs": ch.jobs,
            "units": ch.units,
            "receipts_root": None if ch.receipts_root is None else "0x" + ch.receipts_root.hex(),
        }
        for ch in index.channels(provider=address)
    ]
    disputes = [
        {"id": "0x" + bytes(d).hex(), "status": s, "outcome": o, "block": b}
        for d, s, o, b in index.read(
            "SELECT id, status, outcome, opened_block FROM disputes WHERE provider = ? "
            "ORDER BY opened_block DESC",
            (address,),
        )
    ]
    registered = index.activity(contract="registry", names=["ProviderRegistered"], limit=1000)
    reg_tx = next((a.tx_hash for a in registered if a.args.get("provider") == address), None)
    return {
        "address": address,
        "endpoint": p.endpoint,
        "active": p.active,
        "stake": _amount(p.stake),
        "unbonding": _amount(p.unbonding),
        "price_per_unit_wei": figure(str(p.price), "observed"),
        "hardware": figure(_declared(p.capabilities), "observed", tx=reg_tx),
        "registered_block": p.registered_block,
        "registered_tx": reg_tx,
        "reputation": {
            "points": figure(rep.points / 1000, "derived"),
            "clients": rep.clients,
            "counted": _amount(rep.counted, "derived"),
            "discounted": _amount(rep.discounted, "derived"),
            "disputes_won": rep.disputes_won,
            "disputes_lost": rep.disputes_lost,
            "slashed": _amount(rep.slashed, "derived"),
            "how": "points grow with net payments from distinct paying clients (tokens "
            "from the provider itself or given to its clients first are discounted) and "
            "fall with every slash and lost dispute",
        },
        "earned": _amount(c.earned, "derived"),
        "jobs": figure(c.jobs, "derived"),
        "units": figure(c.units, "derived"),
        "redemptions": c.redemptions,
        "earnings": earnings,
        "channels": channels,
        "slashes": [
            {
                "amount": _amount(s.amount, tx=s.tx_hash, block=s.block),
                "beneficiary": s.beneficiary,
            }
            for s in index.slashes(address)
        ],
        "disputes": disputes,
        "audits": {
            "disputes_won": figure(rep.disputes_won, "derived"),
            "disputes_lost": figure(rep.disputes_lost, "derived"),
        },
    }


DAY = 86400


def earnings_view(
    index: Indexer, address: str, *, since: str | None = None, until: str | None = None
) -> dict[str, Any] | None:
    """A provider's earnings per UTC day between ``since`` and ``until`` (ISO dates,
    both included; open ends by default); the day of the index's last block is
    ``partial`` (still running), so charts draw it apart."""
    address = _address(address)
    if index.provider(address) is None:
        return None
    lo, hi = _day(since, "since"), _day(until, "until")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidInput("since must not be after until")
    as_of = _as_of(index)["timestamp"]
    today = None if as_of is None else as_of // DAY * DAY
    days: dict[int, dict[str, int]] = {}
    for r in _redemption_deltas(index, address):
        if r["timestamp"] is None:
            continue
        day = r["timestamp"] // DAY * DAY
        if (lo is not None and day < lo) or (hi is not None and day > hi):
            continue
        bucket = days.setdefault(day, {"wei": 0, "jobs": 0})
        bucket["wei"] += r["amount"]
        bucket["jobs"] += r["jobs"]
    return {
        "address": address,
        "since": since,
        "until": until,
        "kind": "derived",
        "days": [
            {
                "day": datetime.fromtimestamp(d, UTC).date().isoformat(),
                "start": d,
                "tokens": v["wei"] / TOKEN,
                "wei": str(v["wei"]),
                "jobs": v["jobs"],
                "partial": d == today,
            }
            for d, v in sorted(days.items())
        ],
        "total": _amount(sum(v["wei"] for v in days.values()), "derived"),
    }


def _day(text: str | None, what: str) -> int | None:
    if text is None or text == "":
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{what} must be a date, YYYY-MM-DD") from None
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _declared(capabilities: bytes) -> str:
    """What a provider declared of its hardware: text if it is text, else hex."""
    raw = capabilities.rstrip(b"\x00")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + capabilities.hex()
    return text if text.isprintable() and text else "0x" + capabilities.hex()


def channel_view(index: Indexer, channel: str) -> dict[str, Any] | None:
    """One channel and its redemptions; None if unknown."""
    cid = _hex32(channel, "a channel id")
    ch = index.channel(cid)
    if ch is None:
        return None
    return {
        "id": "0x" + cid.hex(),
        "client": ch.client,
        "provider": ch.provider,
        "status": ch.status.value,
        "deposit": _amount(ch.deposit),
        "paid": _amount(ch.paid),
        "remaining": _amount(ch.remaining, "derived"),
        "refund": None if ch.refund is None else _amount(ch.refund),
        "expiry": ch.expiry,
        "jobs": figure(ch.jobs, "observed"),
        "units": figure(ch.units, "observed"),
        "receipts_root": None if ch.receipts_root is None else "0x" + ch.receipts_root.hex(),
        "opened_block": ch.opened_block,
        "closed_block": ch.closed_block,
        "redemptions": [
            {
                "amount": _amount(r.amount, tx=r.tx_hash, block=r.block),
                "paid": str(r.paid),
                "jobs": r.jobs,
                "units": r.units,
                "receipts_root": "0x" + r.receipts_root.hex(),
                "tx": r.tx_hash,
                "block": r.block,
            }
            for r in index.redemptions(channel=cid)
        ],
    }


def check_receipt(index: Indexer, channel: str, receipt: Mapping[str, Any]) -> dict[str, Any]:
    """Whether ``receipt`` (its fields and ``proof``, a list of 32-byte hex siblings) is
    a leaf of the channel's latest redeemed receipts root."""
    cid = _hex32(channel, "a channel id")
    ch = index.channel(cid)
    if ch is None:
        raise InvalidInput(f"no channel {channel[:70]} in the index")
    try:
        rec = Receipt(
            channel=cid,
            job_id=_hex32(str(receipt["job_id"]), "job_id"),
            provider=_address(str(receipt.get("provider", ch.provider))),
            spec_hash=_hex32(str(receipt["spec_hash"]), "spec_hash"),
            input_hash=_hex32(str(receipt["input_hash"]), "input_hash"),
            result_hash=_hex32(str(receipt["result_hash"]), "result_hash"),
            units=int(receipt["units"]),
            amount=int(receipt["amount"]),
        )
        proof_in = receipt.get("proof", [])
        if not isinstance(proof_in, list) or len(proof_in) > 64:
            raise InvalidInput("proof must be a list of at most 64 hashes")
        proof = [_hex32(str(p), "a proof hash") for p in proof_in]
    except KeyError as exc:
        raise InvalidInput(f"the receipt lacks {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed receipt: {exc}") from None
    root = ch.receipts_root
    leaf = rec.leaf()
    return {
        "channel": "0x" + cid.hex(),
        "leaf": "0x" + leaf.hex(),
        "receipts_root": None if root is None else "0x" + root.hex(),
        "included": root is not None and verify_proof(leaf, proof, root),
    }


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


# -- models, runs and rewards ----------------------------------------------------------
def models_view(index: Indexer) -> list[dict[str, Any]]:
    """Every registered model, newest first."""
    return [
        {
            "model": a.args["model"],
            "trainer": a.args["trainer"],
            "registrant": a.args["registrant"],
            "parent": None if a.args["parent"] == ZERO32 else a.args["parent"],
            "run": None if a.args["run"] == ZERO32 else a.args["run"],
            "block": a.block,
            "tx": a.tx_hash,
            "timestamp": a.timestamp,
        }
        for a in reversed(_events(index, "models", ["ModelRegistered"]))
    ]


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


# -- transactions and search -----------------------------------------------------------
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


def search(index: Indexer, query: str) -> list[dict[str, str]]:
    """Where ``query`` (an address, a transaction hash, a channel, job, dispute, model
    or run id) leads: a list of {kind, id, url}."""
    q = query.strip()
    if len(q) > 200:
        raise InvalidInput("a search is an address or a 32-byte hash")
    hits: list[dict[str, str]] = []
    raw = q.removeprefix("0x").lower()
    if len(raw) == 40:
        address = _address(q)
        if index.provider(address) is not None:
            hits.append({"kind": "provider", "id": address, "url": f"/providers/{address}"})
        hits.append({"kind": "address", "id": address, "url": f"/providers/{address}"})
        return hits[:1]
    if len(raw) != 64:
        return hits
    key = "0x" + _hex32(q, "a hash").hex()
    if index.read("SELECT 1 FROM events WHERE tx_hash = ? LIMIT 1", (key,)):
        hits.append({"kind": "transaction", "id": key, "url": f"/tx/{key}"})
    if index.channel(bytes.fromhex(raw)) is not None:
        hits.append({"kind": "channel", "id": key, "url": f"/channels/{key}"})
    if index.read("SELECT 1 FROM disputes WHERE id = ?", (bytes.fromhex(raw),)):
        hits.append({"kind": "dispute", "id": key, "url": f"/disputes/{key}"})
    for (d,) in index.read("SELECT id FROM disputes WHERE job_id = ?", (bytes.fromhex(raw),)):
        did = "0x" + bytes(d).hex()
        hits.append({"kind": "job", "id": key, "url": f"/disputes/{did}"})
    if any(m["model"] == key for m in models_view(index)):
        hits.append({"kind": "model", "id": key, "url": f"/models/{key}"})
    if any(r["run"] == key for r in runs_view(index)):
        hits.append({"kind": "run", "id": key, "url": f"/runs/{key}"})
    return hits
