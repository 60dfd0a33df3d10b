"""The network at a glance, providers, their earnings and channels (see ``_views.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from .._exceptions import InvalidInput
from ..chain import TOKEN, Indexer
from ..protocol import Receipt, verify_proof
from ._figures import (
    HOUR,
    PROVIDER_SORTS,
    Page,
    _address,
    _amount,
    _as_of,
    _hex32,
    _limit,
    figure,
)

# -- the network at a glance ---------------------------------------------------------
#: price points the overview draws: the latest redemptions that added units
PRICE_POINTS = 500
#: hours the overview's tokens-per-hour chart covers, up to the index's last block
HOURLY_HOURS = 7 * 24
#: redemptions a provider's page (with its cumulative earnings) and a channel's list:
#: the latest
EARNING_POINTS = 500

#: redemptions in blocks after a time (a block's time never goes back: from the first
#: block after it, found in ``blocks_by_time``)
_FROM_TIME = (
    "r.block >= COALESCE((SELECT MIN(number) FROM blocks WHERE timestamp > ?), "
    "(SELECT MAX(number) FROM blocks) + 1)"
)


def _redemption_deltas(
    index: Indexer,
    provider: str | None = None,
    *,
    since: int | None = None,
    latest: int | None = None,
    priced: bool = False,
) -> list[dict[str, Any]]:
    """Redemptions with what each added (jobs, units) and its block's time, oldest
    first: a ``provider``'s, those in blocks after time ``since``, only those that added
    units (``priced``), the ``latest`` few."""
    where: list[str] = []
    params: list[Any] = []
    if provider is not None:
        where.append("r.provider = ?")
        params.append(provider)
    if since is not None:
        where.append(_FROM_TIME)
        params.append(since)
    if priced:  # decimal text, zero-padded: no units added is all zeros
        where.append("LTRIM(r.units_added, '0') != ''")
    sql = (
        "SELECT r.channel, r.provider, r.amount, r.jobs_added, r.units_added, r.block, "
        "r.tx_hash, b.timestamp FROM redemptions r LEFT JOIN blocks b ON b.number = r.block"
        + (f" WHERE {' AND '.join(where)}" if where else "")
    )
    if latest is not None:
        sql += " ORDER BY r.seq DESC LIMIT ?"
        params.append(latest)
    elif since is not None:  # seq follows the blocks; by block, the index finds the rows
        sql += " ORDER BY r.block, r.seq"
    else:
        sql += " ORDER BY r.seq"
    rows = index.read(sql, params)
    if latest is not None:
        rows.reverse()
    return [
        {
            "channel": "0x" + bytes(channel).hex(),
            "provider": prov,
            "amount": int(amount),
            "jobs": int(jobs),
            "units": int(units),
            "block": int(block),
            "tx": tx,
            "timestamp": None if ts is None else int(ts),
        }
        for channel, prov, amount, jobs, units, block, tx, ts in rows
    ]


def overview(index: Indexer) -> dict[str, Any]:
    """Providers active, stake, jobs and tokens in the last hour and in all, the latest
    prices per unit and tokens per hour over the last week, as of the index's last
    block. It reads the sums the index keeps (by provider, by hour), the last hour's
    redemptions and the latest prices: what grows with the network's age is not read."""
    as_of = _as_of(index)
    providers = index.providers(active_only=False)
    active = [p for p in providers if p.active]
    totals = index.read("SELECT earned, jobs FROM contributions")
    now = as_of["timestamp"]
    recent = [] if now is None else _redemption_deltas(index, since=now - HOUR)
    prices = [
        {
            "timestamp": r["timestamp"],
            "block": r["block"],
            "tx": r["tx"],
            "price_per_unit_wei": r["amount"] / r["units"],
        }
        for r in _redemption_deltas(index, latest=PRICE_POINTS, priced=True)
        if r["timestamp"] is not None
    ]
    hourly = [] if now is None else _hourly(index, (now // HOUR - HOURLY_HOURS + 1) * HOUR)
    disputes = index.read("SELECT COUNT(*), SUM(status != 'resolved') FROM disputes")
    (models,) = index.read(
        "SELECT COUNT(*) FROM events WHERE contract = 'models' AND name = 'ModelRegistered'"
    )[0]
    return {
        "as_of": as_of,
        "providers_active": figure(len(active), "derived"),
        "providers_registered": figure(len(providers), "derived"),
        "stake": _amount(sum(p.stake for p in active), "derived"),
        "jobs_last_hour": figure(sum(r["jobs"] for r in recent), "derived"),
        "tokens_last_hour": _amount(sum(r["amount"] for r in recent), "derived"),
        "jobs_total": figure(sum(int(jobs) for _, jobs in totals), "derived"),
        "tokens_paid_total": _amount(sum(int(earned) for earned, _ in totals), "derived"),
        "disputes": figure(int(disputes[0][0] or 0), "derived"),
        "disputes_open": figure(int(disputes[0][1] or 0), "derived"),
        "models": figure(int(models), "derived"),
        "price_history": prices,
        "hourly": [
            {
                "hour": hour,
                "jobs": int(jobs),
                "tokens": wei / TOKEN,
                "partial": now is not None and hour + HOUR > now,
            }
            for hour, wei, jobs in hourly
        ],
    }


def _hourly(index: Indexer, start: int) -> list[tuple[int, int, int]]:
    """(hour, wei, jobs) of the redemptions in blocks from time ``start`` on, by the
    hour of their block (the index keeps the sums: ``hourly``)."""
    rows = index.read(
        "SELECT hour, amount, jobs FROM hourly WHERE hour >= ? ORDER BY hour", (start,)
    )
    return [(int(hour), int(wei), int(jobs)) for hour, wei, jobs in rows]


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
    out = []
    for address, _key in rows:
        p = index.provider(address)
        assert p is not None
        c = index.contribution(address)
        rep = index.reputation(address)  # the page's rows only: each is scored alone
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
                "reputation": figure(rep.points / 1000, "derived"),
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
    latest = _redemption_deltas(index, address, latest=EARNING_POINTS)
    earnings, total = [], c.earned - sum(r["amount"] for r in latest)  # before the window
    for r in latest:
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
    registered = index.read(
        "SELECT tx_hash FROM events WHERE contract = 'registry' AND name = 'ProviderRegistered' "
        "AND json_extract(args, '$.provider') = ? ORDER BY seq DESC LIMIT 1",
        (address,),
    )
    reg_tx = registered[0][0] if registered else None
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
    rows = index.read(  # the sums the index keeps by provider and day
        "SELECT day, amount, jobs FROM provider_days WHERE provider = ? AND day >= ? "
        "AND day <= ? ORDER BY day",
        (address, -1 if lo is None else lo, 2**62 if hi is None else hi),
    )
    days = {int(day): {"wei": int(wei), "jobs": int(jobs)} for day, wei, jobs in rows}
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
    """One channel and its latest redemptions (``EARNING_POINTS``); None if unknown."""
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
            for r in index.redemptions(channel=cid, latest=EARNING_POINTS)
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
