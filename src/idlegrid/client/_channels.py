"""The client's payment channels: one per provider, opened, topped up and closed here.

:class:`Channels` is the one owner of the client's channels on chain: it opens a
channel to a provider when a job needs one, tops it up (doubling) when its deposit
cannot cover what is committed, and closes them all when the client is done. What
each channel owes (receipts, the prefix a voucher covers) is the channel's own
(:class:`~idlegrid.client.ClientChannel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from .._exceptions import ContractReverted, IdlegridError
from ..chain import ChannelTerms, Ledger
from ..protocol import Account
from ._session import ClientChannel, ProviderFailed, ProviderSession

__all__ = ["CHANNEL_TTL_S", "Channels", "ClosedChannel"]

log = logging.getLogger("idlegrid.client")

#: how long a channel the client opens stays open
CHANNEL_TTL_S = 3600
#: a channel expiring sooner than this is not used for a new job
MIN_TTL_S = 120

#: ``sessions_for(provider)``: sessions to try to reach ``provider``, best first
SessionsFor = Callable[[str], Awaitable[list[ProviderSession]]]


@dataclass(frozen=True)
class ClosedChannel:
    """A channel :meth:`Client.close_channels` closed (or could not close yet)."""

    provider: str
    channel: str  # 0x id
    closed: bool
    how: str  # "provider" (early close), "client" (after expiry + window), or why not


class Channels:
    """The client's channels, the latest one per provider, and every one it opened."""

    def __init__(self, account: Account, ledger: Ledger) -> None:
        self.account = account
        self.ledger = ledger
        self._by_provider: dict[str, ClientChannel] = {}
        self._all: list[ClientChannel] = []
        self._lock: asyncio.Lock | None = None  # one chain transaction of ours at a time

    def __getitem__(self, provider: str) -> ClientChannel:
        """The channel in use to ``provider`` (KeyError if none was opened)."""
        return self._by_provider[provider]

    def all(self) -> list[ClientChannel]:
        """Every channel this client opened, oldest first (a snapshot)."""
        return list(self._all)

    def _chain_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def acquire(
        self, session: ProviderSession, amount: int, *, reserve: bool = True
    ) -> ClientChannel:
        """A channel to ``session``'s provider with ``amount`` reserved on it (``committed``).

        Opens one, or tops it up (doubling), when the deposit cannot cover it.
        """
        async with self._chain_lock():
            ch = self._by_provider.get(session.address)
            market = self.ledger.market
            if ch is not None and not ch.retired:
                if ch.committed + amount <= ch.deposit and ch.expiry > time.time() + MIN_TTL_S:
                    ch.committed += amount if reserve else 0
                    return ch
                state = await asyncio.to_thread(market.channel, ch.terms)
                if state.open and state.expiry > time.time() + MIN_TTL_S:
                    ch.deposit, ch.expiry = state.deposit, state.expiry
                    if ch.committed + amount > state.deposit:
                        add = max(ch.committed + amount - state.deposit, state.deposit)
                        await asyncio.to_thread(self._allow, add)
                        await asyncio.to_thread(
                            market.top_up, ch.terms, add, state.expiry, sender=self.account
                        )
                        ch.deposit += add
                    ch.committed += amount if reserve else 0
                    return ch
            if ch is not None and not ch.voucher_delivered:
                with contextlib.suppress(ProviderFailed):
                    await session.send_voucher(ch)
            deposit = max(amount, 1)
            await asyncio.to_thread(self._allow, deposit)
            expiry = (
                int(await asyncio.to_thread(self.ledger.backend.next_timestamp)) + CHANNEL_TTL_S
            )
            terms, _ = await asyncio.to_thread(
                market.open_channel, session.address, deposit, expiry, sender=self.account
            )
            ch = ClientChannel(terms, deposit=deposit, expiry=expiry)
            ch.committed += amount if reserve else 0
            self._by_provider[session.address] = ch
            self._all.append(ch)
            return ch

    async def open_dedicated(self, session: ProviderSession, amount: int) -> ClientChannel:
        """A new channel to ``session``'s provider holding ``amount``, for one node-driven
        run alone: the node numbers the run's segments itself, so no other job of this
        client may take a sequence number on that channel. It is closed with the rest."""
        async with self._chain_lock():
            deposit = max(amount, 1)
            await asyncio.to_thread(self._allow, deposit)
            expiry = (
                int(await asyncio.to_thread(self.ledger.backend.next_timestamp)) + CHANNEL_TTL_S
            )
            terms, _ = await asyncio.to_thread(
                self.ledger.market.open_channel,
                session.address,
                deposit,
                expiry,
                sender=self.account,
            )
            ch = ClientChannel(terms, deposit=deposit, expiry=expiry)
            self._all.append(ch)
            return ch

    def _allow(self, amount: int) -> None:
        """Let the market pull what the market balance lacks for ``amount`` (blocking)."""
        market, token = self.ledger.market, self.ledger.token
        shortfall = amount - market.balance_of(self.account.address)
        if shortfall > 0 and token.allowance(self.account.address, market.address) < shortfall:
            token.approve(market.address, shortfall, sender=self.account)

    async def close(
        self, others: Iterable[ChannelTerms], *, sessions_for: SessionsFor
    ) -> list[ClosedChannel]:
        """Close every channel this client opened and not closed yet, and ``others``
        (open channels of this client from earlier sessions): each by its provider
        (early close), or by the client once past its expiry and the close window."""
        market = self.ledger.market
        window, now = await asyncio.gather(
            asyncio.to_thread(market.close_window), asyncio.to_thread(self.ledger.backend.timestamp)
        )
        todo: list[tuple[ChannelTerms, ClientChannel | None]] = [
            (ch.terms, ch) for ch in self._all if not ch.closed
        ]
        todo += [(terms, None) for terms in others]
        for _, ch in todo:
            if ch is not None:
                ch.retire()  # no more jobs on it, whatever happens next
        results = await asyncio.gather(
            *(self._close_one(terms, ch, int(now), int(window), sessions_for) for terms, ch in todo)
        )
        return list(results)

    async def _close_one(
        self,
        terms: ChannelTerms,
        ch: ClientChannel | None,
        now: int,
        window: int,
        sessions_for: SessionsFor,
    ) -> ClosedChannel:
        market = self.ledger.market

        def done(closed: bool, how: str) -> ClosedChannel:
            if closed and ch is not None:
                ch.closed = True
            if not closed:
                log.warning("channel %s stays open: %s", "0x" + terms.id.hex()[:12], how)
            return ClosedChannel(terms.provider, "0x" + terms.id.hex(), closed, how)

        state = await asyncio.to_thread(market.channel, terms)
        if not state.open:
            return done(True, "already closed")
        if state.expiry + window <= now:
            try:
                async with self._chain_lock():
                    await asyncio.to_thread(market.close, terms, sender=self.account)
            except ContractReverted as exc:
                return done(False, f"the market refused: {exc.reason}")
            return done(True, "client")
        voucher = ch.voucher_model() if ch is not None else None
        error = "provider not found"
        for session in await sessions_for(terms.provider):
            try:
                await session.close_channel(terms, voucher)
            except IdlegridError as exc:
                error = str(exc)
                continue
            if not (await asyncio.to_thread(market.channel, terms)).open:
                return done(True, "provider")
            error = f"{terms.provider} said it closed the channel, but it is open on chain"
        return done(False, f"{error}; the client may close it after {state.expiry + window}")
