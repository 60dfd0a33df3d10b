"""The client's channels: opened once per provider, topped up by doubling, closed at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from idlegrid import IdlegridError
from idlegrid.chain import TOKEN, ChannelTerms, EmbeddedBackend, Ledger, LedgerConfig
from idlegrid.client._channels import Channels
from idlegrid.client._session import ProviderSession
from idlegrid.protocol import Account, VoucherModel

T = TypeVar("T")


@dataclass
class StubSession:
    """What :class:`Channels` asks of a session: the provider's address, vouchers, close."""

    address: str
    ledger: Ledger
    provider: Account
    closes: bool = True
    closed: list[ChannelTerms] = field(default_factory=list)

    async def send_voucher(self, channel: object) -> None:
        return None

    async def close_channel(self, terms: ChannelTerms, voucher: VoucherModel | None) -> None:
        if not self.closes:
            raise IdlegridError("the provider is down")
        self.ledger.market.close(terms, sender=self.provider)
        self.closed.append(terms)


@dataclass
class Setup:
    ledger: Ledger
    channels: Channels
    session: StubSession

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(coro)

    def acquire(self, amount: int, *, reserve: bool = True) -> Any:
        as_session: ProviderSession = self.session  # type: ignore[assignment]
        return self.run(self.channels.acquire(as_session, amount, reserve=reserve))

    async def sessions_for(self, provider: str) -> list[ProviderSession]:
        return [self.session] if provider == self.session.address else []  # type: ignore[list-item]


@pytest.fixture
def setup() -> Setup:
    backend = EmbeddedBackend(accounts=3)
    owner, provider, client = backend.dev_accounts()[:3]
    ledger = Ledger.deploy(backend, owner, LedgerConfig(min_stake=TOKEN))
    ledger.token.mint(client.address, 100 * TOKEN, sender=owner)
    return Setup(ledger, Channels(client, ledger), StubSession(provider.address, ledger, provider))


def test_one_channel_per_provider_reused_while_it_covers(setup: Setup) -> None:
    # Prepare
    first = setup.acquire(TOKEN, reserve=False)  # opened with room for TOKEN, none used

    # Execute
    again = setup.acquire(TOKEN // 2)

    # Assert
    assert again is first
    assert (first.deposit, first.committed) == (TOKEN, TOKEN // 2)
    assert setup.channels.all() == [first]
    assert setup.channels[setup.session.address] is first
    assert setup.ledger.market.channel(first.terms).deposit == TOKEN


def test_a_channel_that_cannot_cover_is_topped_up_by_doubling(setup: Setup) -> None:
    # Prepare
    ch = setup.acquire(TOKEN)

    # Execute
    same = setup.acquire(TOKEN // 4)

    # Assert: the deposit doubles (at least), on chain too
    assert same is ch
    assert ch.deposit == 2 * TOKEN
    assert ch.committed == TOKEN + TOKEN // 4
    assert setup.ledger.market.channel(ch.terms).deposit == 2 * TOKEN


def test_a_retired_channel_is_replaced(setup: Setup) -> None:
    # Prepare
    old = setup.acquire(TOKEN)
    old.retire()

    # Execute
    new = setup.acquire(TOKEN)

    # Assert
    assert new is not old
    assert setup.channels.all() == [old, new]
    assert setup.channels[setup.session.address] is new


def test_close_asks_the_provider_and_reports_each_channel(setup: Setup) -> None:
    # Prepare
    ch = setup.acquire(TOKEN)

    # Execute
    closed = setup.run(setup.channels.close([], sessions_for=setup.sessions_for))

    # Assert
    assert [(c.closed, c.how) for c in closed] == [(True, "provider")]
    assert ch.closed and ch.retired
    assert not setup.ledger.market.channel(ch.terms).open
    assert setup.run(setup.channels.close([], sessions_for=setup.sessions_for)) == []


def test_a_channel_its_provider_cannot_close_stays_open_and_says_why(setup: Setup) -> None:
    # Prepare
    ch = setup.acquire(TOKEN)
    setup.session.closes = False

    # Execute
    closed = setup.run(setup.channels.close([], sessions_for=setup.sessions_for))

    # Assert
    assert [c.closed for c in closed] == [False]
    assert "the provider is down" in closed[0].how
    assert ch.retired and not ch.closed
    assert setup.ledger.market.channel(ch.terms).open
