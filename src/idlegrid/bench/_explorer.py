"""`idlegrid bench explorer`: what the explorer's views cost on a long history.

Method (printed with the figures):

* An index of a ledger deployed on the embedded chain, then a synthetic history applied
  by the index's own handlers (the code a sync runs for each decoded event, not rows
  written around it): ``providers`` providers registered and active, ``channels``
  channels opened to them, then ``redemptions`` vouchers redeemed round-robin over the
  channels, ``per_block`` to a block, blocks ``block_s`` seconds apart, each block's
  time stored before its events as a sync stores it. The events are made, not mined:
  a million real redemptions on py-evm would take hours.
* ``index_events_per_s``: events applied per second, in transactions of 10,000.
* ``overview_ms``: the median of ``repeats`` calls of the overview (what ``/`` and
  ``/api/overview`` serve) and ``overview_kib`` its JSON; ``providers_page_ms`` a page
  of 50 providers by stake; ``provider_ms`` the busiest provider's page (its latest
  500 redemptions with their running total); ``earnings_ms`` its earnings per day.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._exceptions import InvalidInput

__all__ = ["run_explorer_bench"]

BATCH = 10_000
Say = Callable[[str], None]


def run_explorer_bench(
    *,
    redemptions: int = 100_000,
    channels: int = 2_000,
    providers: int = 200,
    per_block: int = 4,
    block_s: int = 12,
    repeats: int = 10,
    progress: Say | None = None,
) -> dict[str, Any]:
    """Build the synthetic index, time the views; a JSON-ready dict."""
    if min(redemptions, channels, providers, per_block, block_s, repeats) < 1:
        raise InvalidInput("every count must be 1 or more")
    if providers > channels:
        raise InvalidInput("providers must not outnumber channels (each has one at least)")
    from ..chain import EmbeddedBackend, Indexer, Ledger, LedgerConfig
    from ..explorer import _views as views

    say = progress or (lambda _msg: None)
    backend = EmbeddedBackend(accounts=2)
    ledger = Ledger.deploy(backend, backend.dev_accounts()[0], LedgerConfig())
    with tempfile.TemporaryDirectory(prefix="idlegrid-bench-") as tmp:
        path = Path(tmp) / "index.sqlite"
        with Indexer(backend, ledger.deployment, path, block_times=True) as index:
            index.sync()  # the real deployment's events
            say(f"indexing {providers} providers, {channels} channels, {redemptions:,} "
                "redemptions")  # fmt: skip
            events, seconds, busiest = _history(
                index, redemptions, channels, providers, per_block, block_s, say
            )

            def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
                runs, result = [], None
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    result = fn()
                    runs.append(time.perf_counter() - t0)
                return round(statistics.median(runs) * 1000, 2), result

            say(f"timing the views, {repeats} calls each")
            overview_ms, overview = timed(lambda: views.overview(index))
            page_ms, page = timed(lambda: views.providers_view(index, limit=50))
            provider_ms, provider = timed(lambda: views.provider_view(index, busiest))
            earnings_ms, earnings = timed(lambda: views.earnings_view(index, busiest))
    assert provider is not None and earnings is not None
    return {
        "benchmark": "explorer",
        "overview_ms": overview_ms,
        "overview_kib": round(len(json.dumps(overview, default=str)) / 1024, 1),
        "providers_page_ms": page_ms,
        "provider_ms": provider_ms,
        "earnings_ms": earnings_ms,
        "index_events_per_s": round(events / seconds, 1),
        "shown": {
            "jobs_total": overview["jobs_total"]["value"],
            "jobs_last_hour": overview["jobs_last_hour"]["value"],
            "price_points": len(overview["price_history"]),
            "hours": len(overview["hourly"]),
            "providers_on_page": len(page.rows),
            "provider_redemptions_listed": len(provider["earnings"]),
            "provider_earned_tokens": provider["earnings"][-1]["cumulative_tokens"],
            "provider_days": len(earnings["days"]),
            "provider_days_tokens": sum(d["tokens"] for d in earnings["days"]),
        },
        "method": {
            "text": (__doc__ or "").split("Method (printed with the figures):", 1)[-1].strip(),
            "redemptions": redemptions,
            "channels": channels,
            "providers": providers,
            "per_block": per_block,
            "block_s": block_s,
            "repeats": repeats,
            "events_applied": events,
        },
    }


def _history(
    index: Any,
    redemptions: int,
    channels: int,
    providers: int,
    per_block: int,
    block_s: int,
    say: Say,
) -> tuple[int, float, str]:
    """Apply the synthetic history; (events applied, seconds, the busiest provider)."""
    from ..chain import TOKEN
    from ..chain._index_db import MARKET_EVENTS, REGISTRY_EVENTS, LogEvent, apply
    from ..protocol import checksum

    last = index.last_block
    (t0,) = index.read("SELECT MAX(timestamp) FROM blocks")[0]
    addresses = [checksum(f"0x{0xA11CE000 + i:040x}") for i in range(providers)]
    client = checksum(f"0x{0xC11E7:040x}")
    state = {"block": last, "log": 0, "events": 0}

    def event(name: str, contract: str, args: dict[str, Any]) -> LogEvent:
        state["log"] += 1
        state["events"] += 1
        return LogEvent(name, int(state["block"]), f"0x{state['events']:064x}", 0, args,
                        contract)  # fmt: skip

    def new_block(conn: Any) -> None:
        state["block"] += 1
        conn.execute(
            "INSERT INTO blocks (number, hash, timestamp) VALUES (?, ?, ?)",
            (state["block"], f"0x{state['block']:064x}", t0 + block_s * (state["block"] - last)),
        )

    handlers = {**REGISTRY_EVENTS, **MARKET_EVENTS}
    totals: dict[int, tuple[int, int, int]] = {}
    started = time.perf_counter()
    # the index's own transaction (a sync's), private to the chain package: this
    # benchmark stands in for the sync
    with index._transaction() as conn:  # the registrations and channels, one block
        new_block(conn)
        for i, address in enumerate(addresses):
            args = {"provider": address, "endpoint": f"http://p{i}", "price": 10**12,
                    "capabilities": b"\0" * 32, "stake": (100 + i) * TOKEN}  # fmt: skip
            apply(conn, ev := event("ProviderRegistered", "registry", args), handlers[ev.name])
            ev = event("ProviderActivated", "registry", {"provider": address})
            apply(conn, ev, handlers[ev.name])
        for c in range(channels):
            args = {"channel": c.to_bytes(32, "big"), "client": client,
                    "provider": addresses[c % providers], "deposit": 10**6 * TOKEN,
                    "expiry": 2**40, "salt": c}  # fmt: skip
            apply(conn, ev := event("ChannelOpened", "market", args), handlers[ev.name])
    for start in range(0, redemptions, BATCH):
        with index._transaction() as conn:
            for i in range(start, min(start + BATCH, redemptions)):
                if i % per_block == 0:
                    new_block(conn)
                c = i % channels
                paid, jobs, units = totals.get(c, (0, 0, 0))
                totals[c] = (paid + 3 * 10**15, jobs + 3, units + 3000)
                args = {"channel": c.to_bytes(32, "big"), "provider": addresses[c % providers],
                        "amount": 3 * 10**15, "paid": totals[c][0], "jobs": totals[c][1],
                        "units": totals[c][2], "receipts_root": b"\1" * 32}  # fmt: skip
                apply(conn, ev := event("VoucherRedeemed", "market", args), handlers[ev.name])
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'last_block'", (str(state["block"]),)
            )
        say(f"  {min(start + BATCH, redemptions):,} redemptions indexed")
    return int(state["events"]), time.perf_counter() - started, addresses[0]
