"""The explorer in a real browser (Debian's chromium, driven by Playwright), on the
scripted history of the embedded chain: what a person sees, live updates arriving
without a reload, sorting and paging by clicking, charts drawn, times switched between
UTC and local, a receipt checked, and no page error anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from idlegrid.chain import TOKEN
from idlegrid.explorer import Explorer
from idlegrid.protocol import Voucher, receipts_proof, receipts_root, sign_voucher

from .conftest import Page, World, _receipts


@pytest.fixture(scope="module")
def served(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Explorer]:
    # the embedded chain is not shared between threads: the test polls (feed.poll())
    path = tmp_path_factory.mktemp("explorer") / "index.sqlite"
    with Explorer(world.backend, world.ledger.deployment, path, interval=None) as ex:
        yield ex


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def test_the_overview_draws_its_charts_and_shows_new_work_as_it_lands(
    world: World, served: Explorer, tab: Page
) -> None:
    # Prepare: the page open, its event stream connected
    page = tab.page
    page.goto(served.url + "/")
    page.wait_for_selector(".chart[data-chart=price][data-drawn=true]")
    page.wait_for_selector(".chart[data-chart=hourly][data-drawn=true]")
    before_rows = page.locator("tbody#activity tr").count()
    before_block = int(page.locator("#badge .badge").get_attribute("data-block") or 0)
    page.wait_for_function(
        "() => document.querySelector('#badge .ago').textContent.includes('s ago')"
    )
    _wait_viewers(served, 1)
    tab.shot("overview-embedded")

    # Execute: another client pays another provider; the explorer polls once
    client, provider = world.clients[1], world.providers[1]
    market = world.ledger.market
    world.ledger.token.approve(market.address, 50 * TOKEN, sender=client)
    expiry = world.backend.next_timestamp() + 7200
    terms, _ = market.open_channel(provider.address, 50 * TOKEN, expiry, sender=client)
    receipts = _receipts(terms.id, provider.address, 2)
    voucher = Voucher(terms.id, sum(r.amount for r in receipts), 2,
                      sum(r.units for r in receipts), receipts_root(receipts))  # fmt: skip
    market.redeem(terms, voucher, sign_voucher(client, market.domain(), voucher), sender=provider)
    served.feed.poll()

    # Assert: without a reload, the new events arrive on top and the badge moves on
    page.wait_for_function(
        f"() => document.querySelectorAll('tbody#activity tr').length > {before_rows}"
    )
    assert "VoucherRedeemed" in page.locator("tbody#activity tr").first.inner_text()
    page.wait_for_function(
        f"() => Number(document.querySelector('#badge .badge').dataset.block) > {before_block}"
    )
    # the cards follow: two more jobs than before
    page.wait_for_function(
        "() => document.querySelector('#stats').textContent.includes('7 in all')"
    )
    tab.clean()


def test_providers_sort_and_page_by_clicking(world: World, served: Explorer, tab: Page) -> None:
    # Prepare: two rows a page, by stake (largest first)
    page = tab.page
    page.goto(served.url + "/providers?limit=2")
    first = _addresses(page)

    # Execute: the next page, then sort by stake the other way
    page.click("a.next")
    page.wait_for_function("() => location.search.includes('after=')")
    page.wait_for_selector("table.providers tbody tr >> nth=0")
    second = _addresses(page)
    page.click("th >> text=Stake")
    page.wait_for_selector("table.providers[data-order=asc]")
    ascending = _addresses(page)

    # Assert: the pages cover every provider once, in the server's order
    by_stake = [p.address for p in reversed(world.providers)]
    assert first + second == by_stake
    assert ascending == [world.providers[0].address,
                                                   world.providers[1].address]  # fmt: skip
    assert "sort=stake" in page.url and "order=asc" in page.url
    tab.shot("providers")
    tab.clean()


def test_a_provider_page_draws_its_earnings_and_times_switch_to_local(
    world: World, served: Explorer, tab: Page
) -> None:
    # Prepare
    page = tab.page
    page.goto(f"{served.url}/providers/{world.providers[0].address}")
    page.wait_for_selector(".chart[data-chart=earnings][data-drawn=true]")
    utc = page.locator("#tz").inner_text()

    # Execute
    page.click("#tz")

    # Assert
    assert utc == "UTC"
    assert page.locator("#tz").inner_text() == "Local time"
    assert "on chain" in page.locator(".card").first.inner_text()
    assert page.locator("table >> text=" + _hex(world.channel.id)[:6]).count() >= 1
    tab.shot("provider-embedded")
    tab.clean()


def test_a_person_checks_a_receipt_against_the_channel_s_root(
    world: World, served: Explorer, tab: Page
) -> None:
    # Prepare
    import json

    page = tab.page
    page.goto(f"{served.url}/channels/{_hex(world.channel.id)}")
    r = world.receipts[1]
    receipt = {"job_id": _hex(r.job_id), "spec_hash": _hex(r.spec_hash),
               "input_hash": _hex(r.input_hash), "result_hash": _hex(r.result_hash),
               "units": r.units, "amount": r.amount,
               "proof": [_hex(p) for p in receipts_proof(world.receipts, 1)]}  # fmt: skip

    # Execute
    page.fill("#check textarea", json.dumps(receipt))
    page.click("#check button")
    page.wait_for_function("() => document.querySelector('#check-result').textContent !== ''")
    good = page.locator("#check-result").inner_text()
    page.fill("#check textarea", json.dumps({**receipt, "units": r.units + 1}))
    page.click("#check button")
    page.wait_for_function(
        "() => document.querySelector('#check-result').textContent.includes('NOT')"
    )

    # Assert
    assert "included under the root" in good
    tab.clean()


def test_a_model_page_draws_its_lineage(world: World, served: Explorer, tab: Page) -> None:
    # Execute
    page = tab.page
    page.goto(f"{served.url}/models/{_hex(world.models[1])}")
    page.wait_for_selector(".chart[data-chart=lineage][data-drawn=true]")

    # Assert: the graph has a node for each generation (ECharts draws SVG text labels)
    labels = page.locator(".chart[data-chart=lineage] svg text").all_text_contents()
    assert sum(1 for t in labels if t.startswith("0x")) == 3
    assert "unknown" in page.locator("dl").inner_text()  # never verified, said so

    # Execute: the list of models and runs, and a click through to the run
    page.goto(f"{served.url}/models")
    page.click(f"table.runs a[title='{_hex(world.run)}']")

    # Assert
    page.wait_for_selector(".chart[data-chart=run][data-drawn=true]")
    assert page.locator("table.rounds tbody tr").count() == 1
    assert "0.9100" in page.locator("table.rounds td.accuracy").inner_text()
    tab.clean()


def _addresses(page: Any) -> list[str]:
    """The providers' addresses in the table's order (each link's title: the text is
    shortened)."""
    return [
        str(link.get_attribute("title"))
        for link in page.locator("table.providers tbody tr td:first-child a.addr").all()
    ]


def _wait_viewers(served: Explorer, n: int) -> None:
    import time

    for _ in range(400):
        if served.feed.viewers >= n:
            return
        time.sleep(0.025)
    raise AssertionError(f"{n} viewer(s) never connected to the event stream")
