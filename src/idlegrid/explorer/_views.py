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

from .._exceptions import InvalidInput
from ..chain import Indexer
from ._figures import (
    MAX_PAGE,
    Page,
    _address,
    _hex32,
    activity_rows,
    activity_rows_of,
    figure,
    summarise,
    tokens,
    tx_view,
)
from ._views_disputes import dispute_view, disputes_view
from ._views_models import is_model, model_view, models_view, oracle_view, run_view, runs_view
from ._views_network import (
    channel_view,
    check_receipt,
    earnings_view,
    overview,
    provider_view,
    providers_view,
)

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
    "summarise",
    "tokens",
    "tx_view",
]


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
    if is_model(index, key):
        hits.append({"kind": "model", "id": key, "url": f"/models/{key}"})
    if any(r["run"] == key for r in runs_view(index)):
        hits.append({"kind": "run", "id": key, "url": f"/runs/{key}"})
    return hits
