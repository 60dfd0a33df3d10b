"""Fixtures of the explorer's tests: a real browser (Debian's chromium, driven by
Playwright; never ``playwright install``) and an explorer served on loopback.

``SCREENSHOTS`` (the environment variable ``IDLEGRID_SCREENSHOTS``, a folder) makes
the browser tests save the main pages there; ``docs/images`` holds the ones the docs
and the README show.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from idlegrid.chain import (
    TOKEN,
    ChannelTerms,
    EmbeddedBackend,
    Ledger,
    LedgerConfig,
    ModelRegistryClient,
    RewardPoolClient,
    RewardTree,
)
from idlegrid.explorer import Explorer
from idlegrid.protocol import Account, Receipt, Voucher, receipts_root, sign_voucher

CHROMIUM = os.environ.get("IDLEGRID_CHROMIUM", "/usr/bin/chromium")
#: as root, with no display, on a machine whose network is closed: no sandbox, no GPU,
#: none of the background connections chromium makes on its own
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SCREENSHOTS = os.environ.get("IDLEGRID_SCREENSHOTS")
#: how long the browser waits for something a person would see (not a timing claim)
SEE_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium for one test module. Not for the session: Playwright's sync
    API runs an asyncio loop in this thread while it is open, and every later test that
    calls ``asyncio.run`` would fail ("cannot be called from a running event loop")."""
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


#: the failure text of a request the browser itself cancelled (a navigation away)
ABORTED = "net::ERR_ABORTED"


class Page:
    """A browser tab that records every page error and failed request, so a test can
    say that a page showed without one."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.failed: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", self._console)
        page.on("requestfailed", self._failed)
        page.set_default_timeout(SEE_MS)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _failed(self, request: Any) -> None:
        # a request the browser cancels when the page navigates away (an SSE stream, a
        # poll still waiting on a server slowed by other tests) is not a failure: it is
        # ERR_ABORTED, which neither the server nor the network can cause (those fail
        # as ERR_CONNECTION_*, ERR_EMPTY_RESPONSE, ... or answer with a status)
        if request.url.endswith("/sse") or request.failure == ABORTED:
            return
        self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def shot(self, name: str) -> None:
        """Save a screenshot of the whole page as ``name``.png when asked to."""
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.failed == [], self.failed


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    """A fresh browser context and tab, 1300 px wide."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    try:
        yield Page(context.new_page())
    finally:
        context.close()


@pytest.fixture
def open_explorer(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start an :class:`~idlegrid.explorer.Explorer` on a chain (stopped after the test);
    ``interval=None`` on the embedded chain: the test polls (``ex.feed.poll()``)."""
    from idlegrid.explorer import Explorer

    started: list[Explorer] = []

    def start(backend: Any, deployment: Any, *, interval: float | None = 0.2) -> Explorer:
        ex = Explorer(
            backend, deployment, tmp_path / f"index-{len(started)}.sqlite", interval=interval
        )
        started.append(ex.start())
        return ex

    try:
        yield start
    finally:
        for ex in started:
            ex.stop()


# -- a scripted history on the embedded chain -------------------------------------------
@dataclass
class World:
    """A ledger with three providers, two clients' channels with redeemed receipts,
    a model lineage of three generations, and one federated round's rewards posted."""

    backend: EmbeddedBackend
    ledger: Ledger
    owner: Account
    providers: list[Account]
    clients: list[Account]
    channel: ChannelTerms
    receipts: list[Receipt]
    models: list[bytes]
    run: bytes
    contributors: list[Account]


def _h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _receipts(channel: bytes, provider: str, n: int) -> list[Receipt]:
    return [
        Receipt(
            channel,
            _h(f"job {i}"),
            provider,
            _h("spec"),
            _h(f"in {i}"),
            _h(f"out {i}"),
            units=10 + i,
            amount=(10 + i) * 10**15,
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def world() -> World:
    backend = EmbeddedBackend(accounts=12)
    owner, *users = backend.dev_accounts()
    ledger = Ledger.deploy(backend, owner, LedgerConfig())
    providers, clients, contributors = users[:3], users[3:5], users[5:8]
    for u in users:
        ledger.token.mint(u.address, 10_000 * TOKEN, sender=owner)
    for i, p in enumerate(providers):
        ledger.token.approve(ledger.registry.address, 1000 * TOKEN, sender=p)
        stake = (100 + 50 * i) * TOKEN
        ledger.registry.register(
            f"http://127.0.0.1:{9000 + i}",
            10**12 * (i + 1),
            b"gpu:none cpu:2".ljust(32, b"\0"),
            stake,
            sender=p,
        )
    market = ledger.market
    ledger.token.approve(market.address, 1000 * TOKEN, sender=clients[0])
    expiry = backend.next_timestamp() + 7200
    terms, _ = market.open_channel(providers[0].address, 100 * TOKEN, expiry, sender=clients[0])
    receipts = _receipts(terms.id, providers[0].address, 5)
    for upto in (3, 5):
        got = receipts[:upto]
        voucher = Voucher(
            terms.id,
            sum(r.amount for r in got),
            upto,
            sum(r.units for r in got),
            receipts_root(got),
        )
        market.redeem(
            terms, voucher, sign_voucher(clients[0], market.domain(), voucher), sender=providers[0]
        )
    models_client = ledger.client("models", ModelRegistryClient)
    models = [_h("base"), _h("fine-tuned"), _h("fine-tuned twice")]
    parent = bytes(32)
    for m in models:
        models_client.register(
            m,
            spec_hash=_h("spec"),
            data_hash=_h("data"),
            trainer=providers[1].address,
            parent=parent,
            sender=owner,
        )
        parent = m
    run, round_model = _h("run"), _h("round 1 model")
    models_client.register_round(
        round_model,
        run,
        1,
        spec_hash=_h("spec"),
        data_hash=_h("data"),
        parent=None,
        participants=[c.address for c in contributors],
        sender=owner,
        accuracy=0.91,
    )
    pool = ledger.client("rewards", RewardPoolClient)
    ledger.token.approve(pool.address, 100 * TOKEN, sender=owner)
    ledger.token.mint(owner.address, 100 * TOKEN, sender=owner)
    pool.fund(run, 60 * TOKEN, backend.next_timestamp() + 86400, sender=owner)
    amounts = {c.address: (i + 1) * 10 * TOKEN for i, c in enumerate(contributors)}
    pool.post(RewardTree(run, 1, amounts), round_model, sender=owner)
    return World(
        backend, ledger, owner, providers, clients, terms, receipts, models, run, contributors
    )


@pytest.fixture(scope="module")
def served(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Explorer]:
    # the embedded chain is not shared between threads: the test polls (feed.poll())
    path = tmp_path_factory.mktemp("explorer") / "index.sqlite"
    with Explorer(world.backend, world.ledger.deployment, path, interval=None) as ex:
        yield ex
