"""The explorer on a live devnet, seen in a browser: anvil, three provider node
processes, and what the demo, a dispute, a training job, a federated run with rewards
and an oracle request leave on chain, each page checked as a person would read it.

One devnet for the module; each test starts its own explorer on it (it indexes the
chain from block 0 and polls it by itself) and drives the network with the public
client API, as the network tests do. The federated run comes last: its edge nodes
register as providers, and would sit on the committees of the tests before it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect

from idlegrid._process import spawn
from idlegrid.chain import (
    TOKEN,
    OracleClient,
    RewardPoolClient,
    RewardTree,
    free_port,
    to_fixed,
)
from idlegrid.client import Client, ModelStore
from idlegrid.devnet import wait_for_node
from idlegrid.edge._federation import EDGE_START_TIMEOUT
from idlegrid.fl._partition import FederatedData, digits_federated

from ..network.conftest import DEMO_CLIENT, Network, start_network
from ..network.test_disputes import MODEL_DIGEST, _caught
from ..network.test_federated import _spec
from ..network.test_oracle import funded_vault
from ..network.test_training import DATA, JOB
from ..network.test_verify import MODEL, PER_SHARD, X
from .conftest import SCREENSHOTS, SEE_MS, Page

pytestmark = pytest.mark.anvil

#: how long the chain may take to show what was done (redemptions, rulings, answers)
CHAIN_WAIT_S = 90.0
HTTP = httpx.Timeout(10.0)

Opener = Callable[..., Any]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    network = start_network(tmp_path_factory.mktemp("explorer-devnet"))
    try:
        yield network
    finally:
        network.close()


@pytest.fixture(autouse=True)
def _patient() -> Iterator[None]:
    """``expect`` waits as long as a person would look (a busy devnet on two cores
    takes longer than Playwright's 5 s to swap a card); back to its default after."""
    expect.set_options(timeout=SEE_MS)
    try:
        yield
    finally:
        expect.set_options(timeout=None)


def _explorer(open_explorer: Opener, net: Network) -> Any:
    """An explorer of the devnet that polls it by itself (the RPC backend is
    thread-safe)."""
    return open_explorer(net.info.connect(), net.info.deployment, interval=0.2)


def _api(ex: Any, path: str, until: Callable[[Any], bool], what: str) -> Any:
    """The JSON at ``path`` once ``until`` holds of it (the index catches up with the
    chain by itself); fail with ``what`` after ``CHAIN_WAIT_S``."""
    deadline = time.monotonic() + CHAIN_WAIT_S
    with httpx.Client(timeout=HTTP) as http:  # one client: ``httpx.get`` makes one a call
        while True:
            got = http.get(ex.url + path)
            if got.status_code == 200 and until(got.json()):
                return got.json()
            assert time.monotonic() < deadline, f"{what}: still {got.status_code} {got.text[:500]}"
            time.sleep(0.2)


def _tokens(wei: int) -> str:
    """An amount as the explorer writes it."""
    return f"{wei / TOKEN:,.4f}"


def _card(tab: Page, title: str) -> Any:
    return tab.page.locator("#stats .card, .cards .card").filter(has_text=title)


def _drawn(tab: Page, chart: str) -> None:
    expect(tab.page.locator(f'.chart[data-chart="{chart}"]')).to_have_attribute(
        "data-drawn", "true"
    )


def _series_points(tab: Page, chart: str) -> list[int]:
    """How many points each series of a drawn chart shows (ECharts' own option)."""
    return list(_series(tab, chart).values())


def _series(tab: Page, chart: str) -> dict[str, int]:
    """Each series of a drawn chart by its name (as its legend shows it), with how many
    points it draws."""
    return dict(
        tab.page.evaluate(
            """(name) => {
                const el = document.querySelector(`.chart[data-chart="${name}"]`);
                const option = echarts.getInstanceByDom(el).getOption();
                return option.series.map((s, i) => [
                    s.name || String(i),
                    (s.data || []).filter((d) => d !== null).length,
                ]);
            }""",
            chart,
        )
    )


#: true once no chart's drawing changed since the last poll (ECharts animates each draw)
SETTLED = """() => {
    const now = [...document.querySelectorAll('.chart')].map((c) => c.innerHTML).join();
    const same = now === window.lastCharts;
    window.lastCharts = now;
    return same;
}"""


def _shot(tab: Page, name: str) -> None:
    """A screenshot of the page (when asked for), its charts drawn to the end."""
    if SCREENSHOTS:
        tab.page.wait_for_function(SETTLED, polling=300)
    tab.shot(name)


# -- 1. inference jobs, paid and redeemed, arrive live ---------------------------------
def test_paid_inference_jobs_arrive_live_on_the_overview_and_show_as_earnings(
    net: Network, open_explorer: Opener, tab: Page
) -> None:
    # Prepare: the overview open, its live stream connected, nothing paid yet
    ex = _explorer(open_explorer, net)
    page = tab.page
    page.goto(ex.url + "/")
    page.wait_for_function("window.idlegridBlocks >= 1")  # the event stream is open
    page.evaluate("window.notReloaded = true")
    expect(_card(tab, "Jobs, last hour").locator(".num")).to_have_text("0")
    expect(_card(tab, "Providers active").locator(".num")).to_have_text("3")
    seqs = page.locator("tbody#activity tr.event").evaluate_all(
        "rows => rows.map((r) => Number(r.dataset.seq))"
    )
    newest_before = max(seqs, default=0)

    # Execute: the demo's kind of work, a batch sharded over the providers and paid
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)
    try:
        client.infer(MODEL, X, rows_per_shard=PER_SHARD)
        by_provider = client.last_report.by_provider
    finally:
        client.close()  # hands the last vouchers over: the nodes redeem them
    channels = client.channels()
    jobs = sum(by_provider.values())
    paid = sum(ch.amount for ch in channels)

    # Assert: the redemptions arrive as new rows and the cards change, on the same page
    redeemed = page.locator("tbody#activity tr.event").filter(
        has=page.locator("td:nth-child(4)", has_text=re.compile("^VoucherRedeemed$"))
    )
    expect(redeemed).to_have_count(len(channels), timeout=CHAIN_WAIT_S * 1000)
    expect(_card(tab, "Jobs, last hour").locator(".num")).to_have_text(str(jobs))
    expect(_card(tab, "Tokens paid, last hour").locator(".num")).to_have_text(_tokens(paid))
    new_seqs = redeemed.evaluate_all("rows => rows.map((r) => Number(r.dataset.seq))")
    assert min(new_seqs) > newest_before
    opened = page.locator("tbody#activity tr.event").filter(
        has=page.locator("td:nth-child(4)", has_text=re.compile("^ChannelOpened$"))
    )
    expect(opened).to_have_count(len(channels))
    assert page.evaluate("window.notReloaded") is True  # live, not reloaded
    _drawn(tab, "price")
    _drawn(tab, "hourly")
    page.wait_for_function(  # a point per redeemed voucher, redrawn as they landed
        """(n) => {
            const el = document.querySelector('.chart[data-chart="price"]');
            return echarts.getInstanceByDom(el).getOption().series[0].data.length === n;
        }""",
        arg=len(channels),
    )
    assert _series_points(tab, "price") == [len(channels)]
    _shot(tab, "overview")
    tab.clean()

    # Assert: the busiest provider's page shows what it earned, from its channels
    busiest = max(by_provider, key=lambda a: by_provider[a])
    earned = sum(ch.amount for ch in channels if ch.terms.provider == busiest)
    page.goto(f"{ex.url}/providers/{busiest}")
    expect(_card(tab, "Earned").locator(".num")).to_have_text(_tokens(earned))
    expect(_card(tab, "Jobs").locator(".num")).to_have_text(str(by_provider[busiest]))
    mine = [ch for ch in channels if ch.terms.provider == busiest]
    for ch in mine:
        row = page.locator("tr").filter(
            has=page.locator(f'a[href="/channels/0x{ch.terms.id.hex()}"]')
        )
        expect(row.locator("td").nth(4)).to_have_text(_tokens(ch.amount))
    _drawn(tab, "earnings")
    _shot(tab, "provider")
    tab.clean()


# -- 2. a dispute ----------------------------------------------------------------------
def test_a_dispute_shows_its_committee_votes_timeline_and_outcome(
    net: Network, open_explorer: Opener, tab: Page
) -> None:
    try:
        # Prepare: node 3 cheats on every job; a client caught it with an audit
        client, cheater = _caught(net, "random")

        # Execute: the client disputes; the two honest nodes, drawn as its committee, vote
        try:
            report = client.dispute(client.evidence[0], blobs={MODEL_DIGEST: MODEL})
        finally:
            client.close()
    finally:
        net.replace(net.nodes[2], net.nodes[2].argv)  # honest again, for what follows
    ex = _explorer(open_explorer, net)
    page = tab.page

    # Assert: the dispute's page, as the chain recorded it
    page.goto(f"{ex.url}/disputes/{report.dispute}")
    expect(page.locator("h1")).to_contain_text(report.dispute)
    expect(page.locator("dd.status")).to_contain_text("resolved")
    expect(page.locator("dd.status .outcome")).to_have_text("provider_wrong")
    seats = page.locator("table", has=page.locator("th", has_text="Referee")).locator("tbody tr")
    expect(seats).to_have_count(len(report.committee))
    shown = {
        seats.nth(i).locator("a.addr").get_attribute("title"): seats.nth(i).locator("td").nth(1)
        for i in range(seats.count())
    }
    assert sorted(shown) == sorted(report.committee)
    for vote in shown.values():
        expect(vote).to_have_text("wrong")
    steps = page.locator("ol.timeline li b").all_inner_texts()
    assert steps[0] == "DisputeOpened" and steps[-1] == "DisputeResolved", steps
    assert "CommitteeDrawn" in steps
    assert steps.count("VoteCommitted") == steps.count("VoteRevealed") == report.wrong_votes
    _shot(tab, "dispute")
    tab.clean()

    # Assert: the provider's page lists the dispute it lost, and its slash
    page.goto(f"{ex.url}/providers/{cheater}")
    row = page.locator("tr").filter(has=page.locator(f'a[href="/disputes/{report.dispute}"]'))
    expect(row.locator("td").nth(1)).to_have_text("resolved")
    expect(row.locator("td").nth(2)).to_have_text("provider_wrong")
    expect(_card(tab, "Disputes")).to_contain_text("0 won · 1 lost")
    slashes = page.locator("table", has=page.locator("th", has_text="To")).locator("tbody tr")
    expect(slashes.first.locator(".num")).to_have_text(_tokens(report.slashed))
    tab.clean()


# -- 3. a training job -----------------------------------------------------------------
def test_a_trained_model_shows_its_trainer_checkpoints_and_verification(
    net: Network, open_explorer: Opener, tab: Page, tmp_path: Path
) -> None:
    # Prepare: node 1 serves training too
    net.nodes[0] = net.replace(net.nodes[0], [*net.nodes[0].argv, "--train"])
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)

    # Execute: trained on the network, verified by proof-of-learning, registered
    try:
        model = client.train({**JOB, "epochs": 1}, DATA, store=ModelStore(tmp_path / "models"))
    finally:
        client.close()
    assert model.verified and model.verification is not None
    ex = _explorer(open_explorer, net)
    page = tab.page

    # Assert: the model's page says who trained it, on what checkpoints, and that the
    # replay passed; its lineage is drawn
    page.goto(f"{ex.url}/models/0x{model.model_hash.removeprefix('0x')}")
    trainer = page.locator("dt", has_text="Trainer").locator("xpath=following-sibling::dd[1]")
    expect(trainer.locator("a.addr")).to_have_attribute("title", net.nodes[0].address)
    root = page.locator("dt", has_text="Checkpoints root").locator("xpath=following-sibling::dd[1]")
    expect(root).to_contain_text(model.checkpoints_root)
    expect(root.locator(".prov")).to_have_text("on chain")
    checked = model.verification.checked
    verified = page.locator("dt", has_text="Verification").locator("xpath=following-sibling::dd[1]")
    expect(verified).to_contain_text(f"passed ({checked} intervals checked, 0 failed)")
    _drawn(tab, "lineage")
    assert _series_points(tab, "lineage") == [1]  # trained from scratch: itself alone
    _shot(tab, "model")
    tab.clean()


# -- 4. an oracle request --------------------------------------------------------------
def test_an_oracle_request_shows_answered_with_its_latency(
    net: Network, open_explorer: Opener, tab: Page
) -> None:
    # Prepare: a registered model on every node; the example vault, funded, asks
    ledger, owner = net.ledger, net.account(DEMO_CLIENT)
    vault = funded_vault(net, owner)
    oracle = ledger.client("oracle", OracleClient)
    ex = _explorer(open_explorer, net)

    # Execute: the vault asks; nobody but the provider nodes acts
    asked = vault._send("rebalance", to_fixed([0.2, 0.1, 0.3]), 3 * TOKEN, sender=owner)
    (req,) = oracle.requests(asked.block, asked.block)
    done = _api(
        ex,
        "/api/oracle",
        lambda o: any(
            q["request_id"] == req.request_id and q["state"] != "pending" for q in o["requests"]
        ),
        "the oracle request was not answered",
    )

    # Assert: the oracle page shows it answered, the callback made, and how long it took
    (shown,) = [q for q in done["requests"] if q["request_id"] == req.request_id]
    tab.page.goto(ex.url + "/oracle")
    row = tab.page.locator("table.oracle tbody tr").filter(
        has=tab.page.locator("td:first-child", has_text=re.compile(f"^{req.request_id}$"))
    )
    expect(row.locator("td.state")).to_have_text("fulfilled")
    expect(row.locator("td").nth(6)).to_contain_text("ok")
    latency = row.locator("td").nth(7)
    blocks = shown["latency_blocks"]
    expect(latency).to_contain_text(
        f"{shown['latency_s']['value']} s, {blocks} block{'' if blocks == 1 else 's'}"
    )
    expect(latency.locator(".prov")).to_have_text("derived")
    assert shown["latency_blocks"] >= 1  # answered in a later block than asked
    _drawn(tab, "oracle")
    assert _series_points(tab, "oracle") == [1]
    _shot(tab, "oracle")
    tab.clean()


# -- 5. a federated run with rewards, and a royalty ------------------------------------
EDGE_ACCOUNTS = (5, 6, 7)  # accounts no test here pays from
ROYALTY_RATE, DATA_BPS = 5 * 10**11, 6000  # wei per unit on top of the node's price


def _start_edges(net: Network, data: FederatedData) -> list[str]:
    """Edge nodes (``idlegrid edge start``) on the devnet, one partition each, stopped
    with it; their addresses."""
    started = []
    for account, part in zip(EDGE_ACCOUNTS, data.parts, strict=True):
        home = net.directory / "edges" / f"edge-{account}"
        (home / "data").mkdir(parents=True)
        np.savez_compressed(home / "data" / "digits.npz", x=data.x_train[part],
                            y=data.y_train[part])  # fmt: skip
        port = free_port()
        argv = [
            sys.executable, "-m", "idlegrid.cli", "edge", "start",
            "--data", str(home / "data"), "--network", str(net.info.path),
            "--account", str(account), "--port", str(port),
            "--data-dir", str(home / "node"), "--redeem-after", "2", "--log-json",
        ]  # fmt: skip
        proc, ref = spawn(argv, log=home / "edge.log", role=f"edge-{account}", cwd=home)
        net.restarted.append(ref)  # Network.close stops it and checks it is gone
        started.append((f"http://127.0.0.1:{port}", proc))
    for url, proc in started:
        wait_for_node(url, proc, timeout=EDGE_START_TIMEOUT)
    return [net.account(a).address for a in EDGE_ACCOUNTS]


def test_a_federated_run_shows_its_rounds_contributors_shares_and_royalties(
    net: Network, open_explorer: Opener, tab: Page, tmp_path: Path
) -> None:
    # Prepare: three edge nodes, each holding one partition of the digits
    data = digits_federated(len(EDGE_ACCOUNTS), 0.5, seed=0)
    edges = _start_edges(net, data)
    ledger, sponsor = net.ledger, net.account(DEMO_CLIENT)
    pool = ledger.client("rewards", RewardPoolClient)
    spec = _spec(rounds=2, clients_per_round=len(edges), seed=5, payout="round")

    # Execute: two rounds with 3 tokens of rewards, posted round by round
    with Client(sponsor, ledger, timeout_s=120) as client:
        result = client.federate(
            spec, (data.x_test, data.y_test), nodes=edges, rewards=3 * TOKEN,
            output=tmp_path / "run",
        )  # fmt: skip
    assert len(result.rounds) == 2, result.stopped
    last = result.rounds[-1]
    for account in EDGE_ACCOUNTS:  # --log-json: every line of an edge node's log is JSON
        lines = (net.directory / "edges" / f"edge-{account}" / "edge.log").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert any("edge data sets: digits" in r["message"] for r in records), lines[:5]
    onnx = (tmp_path / "run" / "model.onnx").read_bytes()
    assert hashlib.sha256(onnx).hexdigest() == last.model

    # Execute: a royalty on the last round's model, paid by inference jobs on it
    served = bytes.fromhex(last.model)
    pool.set_royalty(served, ROYALTY_RATE, DATA_BPS, sender=sponsor)
    with Client(sponsor, ledger) as client:
        client.infer(onnx, data.x_test[:40], rows_per_shard=20)
    royalty = sum(ledger.market.royalties_paid(ch.terms.id, served) for ch in client.channels())
    assert royalty > 0

    # Execute: once the challenge window is over, every contributor's reward is claimed
    run = bytes.fromhex(result.run)
    ledger.backend.advance_time(pool.challenge_window() + 1)
    for rnd, r in enumerate(result.rounds, start=1):
        tree = RewardTree(run, rnd, r.rewards)
        for who in tree.contributors:
            pool.claim_from(tree, who, sender=sponsor)
    claimed = sum(sum(r.rewards.values()) for r in result.rounds)
    ex = _explorer(open_explorer, net)
    _api(
        ex,
        f"/api/models/0x{last.model}",
        lambda m: m["royalties_paid"]["value"] == str(royalty),
        "the royalty's redemption is not in the index",
    )
    page = tab.page

    # Assert: the run's page, round by round: participants, what was posted, to whom
    page.goto(f"{ex.url}/runs/0x{result.run}")
    rows = page.locator("table.rounds tbody tr")
    expect(rows).to_have_count(len(result.rounds))
    for i, r in enumerate(result.rounds):
        cells = rows.nth(i).locator("td")
        expect(cells.nth(0)).to_have_text(str(r.round))
        expect(cells.nth(1).locator("a")).to_have_attribute("href", f"/models/0x{r.model}")
        expect(cells.nth(2)).to_have_text(str(len(r.participants)))
        expect(rows.nth(i).locator("td.accuracy")).to_contain_text(f"{r.accuracy:.4f}")
        expect(cells.nth(4).locator(".num")).to_have_text(_tokens(sum(r.rewards.values())))
        shares = cells.nth(5).locator("a.addr")
        expect(shares).to_have_count(len(r.rewards))
        assert sorted(shares.evaluate_all("as => as.map((a) => a.title)")) == sorted(r.rewards)
    pool_line = page.locator("dt", has_text="Reward pool").locator("xpath=following-sibling::dd[1]")
    expect(pool_line.locator(".num")).to_have_text([_tokens(3 * TOKEN), _tokens(claimed)])
    owed: dict[str, int] = {}
    for r in result.rounds:
        for who, amount in r.rewards.items():
            owed[who] = owed.get(who, 0) + amount
    _contributors(tab, owed)
    _drawn(tab, "run")
    # a stacked bar per contributor (named by its address), and the accuracy curve
    shown = _series(tab, "run")
    rounds = len(result.rounds)
    assert shown == {**{who[:8] + "…": rounds for who in owed}, "accuracy": rounds}, shown
    _shot(tab, "run")
    tab.clean()

    # Assert: the last round's model: its run and round, its contributors and their
    # shares, the royalty paid for it, its lineage from the round before
    page.goto(f"{ex.url}/models/0x{last.model}")
    expect(page.locator("dt", has_text="Training run").locator("xpath=following-sibling::dd[1]")
           ).to_contain_text(f"round {last.round} of")  # fmt: skip
    _contributors(tab, last.rewards)
    expect(page.locator(".royalties .num")).to_have_text(_tokens(royalty))
    _drawn(tab, "lineage")
    assert _series_points(tab, "lineage") == [2]
    _shot(tab, "round-model")
    tab.clean()


def _contributors(tab: Page, amounts: dict[str, int]) -> None:
    """The page's contributors table shows ``amounts`` and each one's share of them."""
    rows = tab.page.locator("table.contributors tbody tr")
    expect(rows).to_have_count(len(amounts))
    whole = sum(amounts.values())
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td")
        who = cells.nth(0).locator("a.addr").get_attribute("title")
        assert who in amounts, who
        expect(cells.nth(1).locator(".num")).to_have_text(_tokens(amounts[who]))
        expect(cells.nth(2)).to_have_text(f"{amounts[who] / whole * 100:.1f} %")


# -- strangers' ids --------------------------------------------------------------------
UNKNOWN = "0x" + "ab" * 32  # well formed, in no index
MALFORMED = ["0x1234", "0x" + "zz" * 32, "0x" + "a" * 4000, "not-a-hash"]


def test_unknown_ids_are_404_pages_and_malformed_ones_400(
    net: Network, open_explorer: Opener, tab: Page
) -> None:
    ex = _explorer(open_explorer, net)
    page = tab.page
    console: list[tuple[str, str]] = []  # each error the console shows, and its page
    visited: list[str] = []

    def logged(message: Any) -> None:
        if message.type == "error":
            console.append((message.text, message.location["url"]))

    page.on("console", logged)

    def visit(path: str, status: int, says: str) -> None:
        got = page.goto(ex.url + path)
        visited.append(ex.url + path)
        assert got is not None and got.status == status, (path[:80], got and got.status)
        expect(page.locator("h1")).to_have_text(str(status))
        expect(page.locator("p.error")).to_contain_text(says)

    for kind in ("disputes", "models", "runs", "channels", "tx"):
        # Execute, Assert: an id nobody has is not found, said on an explorer page
        visit(f"/{kind}/{UNKNOWN}", 404, "no such")
        api = httpx.get(f"{ex.url}/api/{kind}/{UNKNOWN}", timeout=HTTP)
        assert api.status_code == 404 and "no such" in api.json()["detail"], (kind, api.text)
        for bad in MALFORMED:
            # Execute, Assert: an id that cannot be one is the caller's mistake, said why
            visit(f"/{kind}/{bad}", 400, "32 bytes of hex")
            api = httpx.get(f"{ex.url}/api/{kind}/{bad}", timeout=HTTP)
            assert api.status_code == 400, (kind, bad[:20], api.status_code)
    visit(f"/providers/0x{'12' * 20}", 404, "no such provider")
    visit("/providers/0x12", 400, "not an address")

    # Assert: the browser's console names each error page's own status, and nothing else
    # went wrong on any of them (no script error, no failed request)
    assert [url for _, url in console] == visited, console
    assert all(text.startswith("Failed to load resource") for text, _ in console)
    tab.errors.clear()
    tab.clean()
