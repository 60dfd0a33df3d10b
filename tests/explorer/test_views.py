"""The explorer's JSON and pages on a scripted history of the embedded chain: what each
view says, where each figure comes from, server-side sorting and paging, and what
strangers' input gets (a clear 4xx, never a 500 or a path on disk)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from idlegrid.chain import TOKEN
from idlegrid.explorer import Explorer, _views_network
from idlegrid.explorer._views import figure
from idlegrid.protocol import receipts_proof, receipts_root

from .conftest import World


@pytest.fixture
def api(served: Explorer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=10.0) as client:
        yield client


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def test_the_overview_counts_what_the_chain_says(world: World, api: httpx.Client) -> None:
    # Execute
    got = api.get("/api/overview").json()

    # Assert
    assert got["providers_active"] == {"value": 3, "kind": "derived"}
    assert int(got["stake"]["value"]) == (100 + 150 + 200) * TOKEN
    paid = sum(r.amount for r in world.receipts)
    assert int(got["tokens_paid_total"]["value"]) == paid
    assert got["jobs_total"]["value"] == 5
    assert got["models"]["value"] == 4  # the three of the lineage and the round's
    # one point per redemption: what it paid over the units it added
    assert [p["price_per_unit_wei"] for p in got["price_history"]] == [
        sum(r.amount for r in world.receipts[:3]) / sum(r.units for r in world.receipts[:3]),
        sum(r.amount for r in world.receipts[3:]) / sum(r.units for r in world.receipts[3:]),
    ]
    assert got["as_of"]["block"] == world.backend.block_number()


def test_the_overview_draws_the_latest_prices_and_the_last_hours_from_the_index_s_sums(
    world: World, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: what the overview shows with room for everything
    full = api.get("/api/overview").json()

    # Execute: one price point and one hour at most
    monkeypatch.setattr(_views_network, "PRICE_POINTS", 1)
    monkeypatch.setattr(_views_network, "HOURLY_HOURS", 1)
    got = api.get("/api/overview").json()

    # Assert: the hours' sums are every redemption's; the bounded overview the latest
    assert sum(h["jobs"] for h in full["hourly"]) == full["jobs_total"]["value"] == 5
    assert sum(h["tokens"] for h in full["hourly"]) == pytest.approx(
        int(full["tokens_paid_total"]["value"]) / TOKEN
    )
    assert len(full["price_history"]) == 2
    assert got["price_history"] == full["price_history"][-1:]
    now = got["as_of"]["timestamp"]
    assert got["hourly"] == [h for h in full["hourly"] if h["hour"] == now // 3600 * 3600]
    assert got["jobs_total"] == full["jobs_total"]


def test_a_provider_s_page_lists_its_latest_redemptions_with_their_running_total(
    world: World, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    address = world.providers[0].address
    full = api.get(f"/api/providers/{address}").json()

    # Execute: one redemption listed at most
    monkeypatch.setattr(_views_network, "EARNING_POINTS", 1)
    got = api.get(f"/api/providers/{address}").json()

    # Assert: the latest, its running total counting the ones before it
    paid = sum(r.amount for r in world.receipts)
    assert len(full["earnings"]) == 2
    assert got["earnings"] == full["earnings"][-1:]
    assert got["earnings"][0]["cumulative_tokens"] == pytest.approx(paid / TOKEN)
    # a channel's page lists its latest redemptions the same way
    channel = api.get(f"/api/channels/{_hex(world.channel.id)}").json()
    assert len(channel["redemptions"]) == 1 and int(channel["paid"]["value"]) == paid


def test_providers_sort_and_page_on_the_server(world: World, api: httpx.Client) -> None:
    # Execute: two rows a page, by stake, both directions
    first = api.get("/api/providers", params={"sort": "stake", "limit": 2}).json()
    second = api.get(
        "/api/providers", params={"sort": "stake", "limit": 2, "after": first["next"]}
    ).json()
    ascending = api.get("/api/providers", params={"sort": "stake", "order": "asc"}).json()

    # Assert
    stakes = [int(r["stake"]["value"]) for r in first["rows"] + second["rows"]]
    assert stakes == [200 * TOKEN, 150 * TOKEN, 100 * TOKEN]
    assert second["next"] is None
    assert [r["address"] for r in ascending["rows"]] == [p.address for p in world.providers]
    assert first["rows"][0]["address"] == world.providers[2].address


def test_a_provider_shows_its_stake_earnings_and_channels_with_provenance(
    world: World, api: httpx.Client
) -> None:
    # Execute
    p = api.get(f"/api/providers/{world.providers[0].address}").json()
    earnings = api.get(f"/api/providers/{world.providers[0].address}/earnings").json()

    # Assert
    paid = sum(r.amount for r in world.receipts)
    assert p["stake"]["kind"] == "observed" and int(p["stake"]["value"]) == 100 * TOKEN
    assert p["earned"] == {"value": str(paid), "kind": "derived", "tokens": f"{paid / TOKEN:,.4f}"}
    assert p["hardware"]["value"] == "gpu:none cpu:2" and p["hardware"]["tx"].startswith("0x")
    assert [c["id"] for c in p["channels"]] == [_hex(world.channel.id)]
    assert p["channels"][0]["receipts_root"] == _hex(receipts_root(world.receipts))
    assert p["earnings"][-1]["cumulative_tokens"] == pytest.approx(paid / TOKEN)
    assert sum(d["tokens"] for d in earnings["days"]) == pytest.approx(paid / TOKEN)
    assert earnings["days"][-1]["partial"] is True  # the index's last block's day


def test_earnings_over_a_date_range_leave_out_the_days_outside(
    world: World, api: httpx.Client
) -> None:
    # Execute
    empty = api.get(
        f"/api/providers/{world.providers[0].address}/earnings", params={"until": "2001-01-01"}
    ).json()
    backwards = api.get(
        f"/api/providers/{world.providers[0].address}/earnings",
        params={"since": "2030-01-02", "until": "2030-01-01"},
    )
    garbage = api.get(
        f"/api/providers/{world.providers[0].address}/earnings", params={"since": "yesterday"}
    )

    # Assert: nothing earned then is a zero total, not an unknown
    assert empty["days"] == [] and empty["total"]["value"] == "0"
    assert backwards.status_code == 400 and "after" in backwards.json()["detail"]
    assert garbage.status_code == 400 and "YYYY-MM-DD" in garbage.json()["detail"]


def test_a_receipt_is_checked_against_the_channel_s_root(world: World, api: httpx.Client) -> None:
    # Prepare: the third receipt and its proof, as a client keeps them
    r = world.receipts[2]
    body = {
        "job_id": _hex(r.job_id),
        "spec_hash": _hex(r.spec_hash),
        "input_hash": _hex(r.input_hash),
        "result_hash": _hex(r.result_hash),
        "units": r.units,
        "amount": r.amount,
        "proof": [_hex(p) for p in receipts_proof(world.receipts, 2)],
    }
    url = f"/api/channels/{_hex(world.channel.id)}/check-receipt"

    # Execute
    good = api.post(url, json=body).json()
    forged = api.post(url, json={**body, "amount": r.amount * 2}).json()
    short = api.post(url, json={k: v for k, v in body.items() if k != "units"})
    huge = api.post(
        url, content=b"{" + b" " * 20_000 + b"}", headers={"Content-Type": "application/json"}
    )
    long_proof = api.post(url, json={**body, "proof": [_hex(bytes(32))] * 65})

    # Assert
    assert good["included"] is True and good["leaf"] == _hex(r.leaf())
    assert forged["included"] is False
    assert short.status_code == 400 and "units" in short.json()["detail"]
    assert huge.status_code == 413
    assert long_proof.status_code == 400


def test_a_model_shows_its_lineage_and_a_run_its_posted_shares(
    world: World, api: httpx.Client
) -> None:
    # Execute
    middle = api.get(f"/api/models/{_hex(world.models[1])}").json()
    run = api.get(f"/api/runs/{_hex(world.run)}").json()
    runs = api.get("/api/runs").json()

    # Assert: the lineage is the whole family, edges parent -> child
    assert {n["model"] for n in middle["lineage"]["nodes"]} == {_hex(m) for m in world.models}
    assert {(e["from"], e["to"]) for e in middle["lineage"]["edges"]} == {
        (_hex(world.models[0]), _hex(world.models[1])),
        (_hex(world.models[1]), _hex(world.models[2])),
    }
    assert middle["parent"] == _hex(world.models[0])
    assert middle["verification"]["kind"] == "unknown"  # never verified: not "failed"
    assert middle["royalties_paid"]["value"] == "0"  # none paid: a zero, observed by sums
    [round_1] = run["rounds"]
    assert round_1["participants"] == [c.address for c in world.contributors]
    shares = {s["contributor"]: s["share"]["value"] for s in round_1["posting"]["shares"]}
    assert shares == pytest.approx(
        {c.address: (i + 1) / 6 for i, c in enumerate(world.contributors)}
    )
    # the coordinator's measured accuracy, on chain; no DP: an unknown, not a zero
    assert round_1["accuracy"]["value"] == 0.91 and round_1["accuracy"]["kind"] == "observed"
    assert round_1["accuracy"]["claimed_by"] == world.owner.address
    assert run["epsilon"] == figure(None, "unknown", why="no differential privacy")
    assert int(run["pool"]["value"]) == 60 * TOKEN
    assert runs[0]["run"] == _hex(world.run) and runs[0]["participants"] == 3


def test_models_page_newest_first_by_key(world: World, api: httpx.Client) -> None:
    # Execute: two a page
    first = api.get("/api/models", params={"limit": 2}).json()
    second = api.get("/api/models", params={"limit": 2, "after": first["next"]}).json()
    bad = api.get("/api/models", params={"after": -1})

    # Assert: the round's model, then the lineage from its youngest; every model once
    got = [r["model"] for r in first["rows"] + second["rows"]]
    assert got[1:] == [_hex(m) for m in reversed(world.models)]
    assert len(set(got)) == 4 and second["next"] is None
    assert first["rows"][0]["run"] == _hex(world.run)
    assert bad.status_code == 422


def test_search_finds_addresses_transactions_channels_and_models(
    world: World, api: httpx.Client
) -> None:
    # Prepare
    tx = api.get("/api/activity", params={"limit": 1}).json()[0]["tx"]

    # Execute
    def kinds(q: str) -> list[str]:
        return [h["kind"] for h in api.get("/api/search", params={"q": q}).json()]

    # Assert
    assert kinds(world.providers[1].address.lower()) == ["provider"]
    assert "transaction" in kinds(tx)
    assert kinds(_hex(world.channel.id)) == ["channel"]
    assert kinds(_hex(world.models[2])) == ["model"]
    assert kinds(_hex(world.run)) == ["run"]
    assert kinds(_hex(bytes(32))) == []
    assert kinds("not a hash at all") == []
    page = api.get("/search", params={"q": _hex(world.models[2])}, follow_redirects=False)
    assert (
        page.status_code == 303 and page.headers["location"] == f"/models/{_hex(world.models[2])}"
    )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/providers/0x" + "ab" * 20, 404),
        ("/api/providers/not-an-address", 400),
        ("/api/channels/0x1234", 400),
        ("/api/models/" + "0x" + "00" * 32, 404),
        ("/api/disputes/0x" + "zz" * 32, 400),
        ("/api/runs/0x" + "11" * 32, 404),
        ("/api/providers?sort=endpoint", 400),
        ("/api/providers?after=nonsense", 400),
        ("/api/providers?limit=100000", 422),
        ("/api/tx/0x" + "11" * 32, 404),  # a hash the index never saw
        ("/providers/0x" + "ab" * 20, 404),
        ("/models/0x" + "00" * 32, 404),
        ("/disputes/%2e%2e%2fetc%2fpasswd", 404),
        ("/disputes/0x12", 400),
        ("/static/..%2f_app.py", 404),
        ("/static/app.py", 404),
        ("/vendor/..%2f..%2fpackage.json", 404),
    ],
)
def test_strangers_input_gets_a_clear_client_error(
    api: httpx.Client, path: str, status: int
) -> None:
    # Execute
    got = api.get(path)

    # Assert: a 4xx that says why (an HTML page for pages, JSON for the API); no 500
    assert got.status_code == status, got.text[:300]
    if status >= 400 and path.startswith("/api/"):
        assert got.json()["detail"]
    if status == 404 and not path.startswith(("/api/", "/static", "/vendor")):
        assert "<h1>404</h1>" in got.text


def test_the_api_is_described_in_openapi(api: httpx.Client) -> None:
    # Execute
    spec = api.get("/openapi.json").json()

    # Assert: every JSON route a chart or table reads is described
    for path in (
        "/api/overview",
        "/api/providers",
        "/api/providers/{address}",
        "/api/providers/{address}/earnings",
        "/api/channels/{channel}",
        "/api/disputes",
        "/api/disputes/{dispute}",
        "/api/models",
        "/api/models/{model}",
        "/api/runs",
        "/api/runs/{run}",
        "/api/oracle",
        "/api/activity",
        "/api/search",
        "/api/status",
    ):
        assert path in spec["paths"], path


def test_one_poll_feeds_every_viewer(world: World, served: Explorer, api: httpx.Client) -> None:
    # Prepare: three viewers connected to the event stream
    clients = [httpx.Client(base_url=served.url, timeout=10.0) for _ in range(3)]
    with contextlib.ExitStack() as stack:
        streams = [stack.enter_context(c.stream("GET", "/sse")) for c in clients]
        lines = streams[0].iter_lines()
        assert next(lines).startswith("retry:")
        viewers = _wait_for(lambda: api.get("/api/status").json()["viewers"], 3)
        polls = served.feed.polls

        # Execute: a new block with an event, one poll
        world.ledger.token.mint(world.owner.address, 1, sender=world.owner)
        served.feed.poll()

        # Assert: the one poll reached the first viewer
        seen = _read_until(lines, "event: activity")
    for c in clients:
        c.close()
    assert viewers == 3
    assert served.feed.polls == polls + 1
    assert any("Transfer" in line for line in seen)


def _wait_for(read: Callable[[], Any], want: Any, tries: int = 200) -> Any:
    import time

    for _ in range(tries):
        got = read()
        if got == want:
            return got
        time.sleep(0.05)
    return read()


def _read_until(lines: Iterator[str], marker: str, limit: int = 200) -> list[str]:
    seen = []
    for line in lines:
        seen.append(line)
        if line == marker:
            # the event's data lines follow until a blank line
            for data in lines:
                if not data:
                    return seen
                seen.append(data)
        if len(seen) > limit:
            break
    return seen


def test_nothing_in_a_request_names_a_file(tmp_path: Path, api: httpx.Client) -> None:
    # Execute: the vendored scripts are served by name from a fixed table only
    names = ["htmx.min.js", "sse.js", "echarts.min.js"]
    got = [api.get(f"/vendor/{n}") for n in names]

    # Assert: installed here (npm ci), served as JavaScript
    assert [g.status_code for g in got] == [200, 200, 200]
    assert all(g.headers["content-type"].startswith("text/javascript") for g in got)


def test_an_index_of_another_chain_is_refused_or_rebuilt(world: World, tmp_path: Path) -> None:
    # Prepare: an index of the world's chain, then a new chain with the same addresses
    from idlegrid import ConfigError
    from idlegrid.chain import EmbeddedBackend, Ledger, LedgerConfig
    from idlegrid.explorer._serve import open_index

    path = tmp_path / "explorer.sqlite"
    open_index(world.backend, world.ledger.deployment, path, rebuild=False).close()
    backend = EmbeddedBackend(accounts=3)
    ledger = Ledger.deploy(backend, backend.dev_accounts()[0], LedgerConfig())
    assert ledger.deployment.contracts == world.ledger.deployment.contracts

    # Execute / Assert: a file the user named is refused with the reason; the
    # explorer's own cache is built again for the new chain
    with pytest.raises(ConfigError, match=r"new file|another"):
        open_index(backend, ledger.deployment, path, rebuild=False)
    index = open_index(backend, ledger.deployment, path, rebuild=True)
    assert index.last_block == backend.block_number()
    index.close()
