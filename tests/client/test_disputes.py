"""The challenger's evidence of payment: the voucher the provider redeemed, signed by the
client, and a proof of the disputed receipt under its root (``client/_disputes.py``)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from idlegrid import InvalidInput
from idlegrid.chain import ChannelState, ChannelTerms
from idlegrid.client import ClientChannel
from idlegrid.client._disputes import _redeemed_proof
from idlegrid.protocol import (
    MARKET_DOMAIN_NAME,
    Account,
    Domain,
    Receipt,
    recover_voucher_signer,
    verify_proof,
)

MARKET = Domain(MARKET_DOMAIN_NAME, 31337, "0x" + "42" * 20)


@dataclass
class _Market:
    state: ChannelState

    def channel(self, terms: ChannelTerms) -> ChannelState:
        return self.state


def _setup(jobs_redeemed: int, paid: int | None = None) -> tuple[Any, ClientChannel, list[Receipt]]:
    client, provider = Account.create(), Account.create()
    terms = ChannelTerms.new(client.address, provider.address, 10**9, int(time.time()) + 3600)
    channel = ClientChannel(terms, deposit=terms.deposit, expiry=terms.expiry)
    receipts = [
        Receipt(
            terms.id,
            bytes([i]) * 32,
            provider.address,
            b"\x01" * 32,
            b"\x02" * 32,
            bytes([i + 9]) * 32,
            100 * i,
            1000 * i,
        )
        for i in (1, 2, 3)
    ]
    for seq, receipt in enumerate(receipts, start=1):
        channel.take_seq()
        channel.accept(seq, receipt, client, MARKET)
    amount = sum(r.amount for r in receipts[:jobs_redeemed])
    state = ChannelState(terms.id, terms.deposit, terms.expiry, amount if paid is None else paid,
                         jobs_redeemed, 0, True, False)  # fmt: skip
    fake = SimpleNamespace(
        ledger=SimpleNamespace(market=_Market(state)), account=client, _market=MARKET
    )
    return fake, channel, receipts


def test_the_latest_voucher_is_the_evidence_when_the_provider_redeemed_it() -> None:
    # Prepare: all three jobs redeemed
    client, channel, receipts = _setup(jobs_redeemed=3)

    # Execute
    voucher, signature, proof = asyncio.run(_redeemed_proof(client, channel, receipts[1]))

    # Assert: the very voucher the client signed, and the receipt under its root
    assert channel.voucher is not None and (voucher, signature) == channel.voucher
    assert verify_proof(receipts[1].leaf(), proof, voucher.receipts_root)


def test_an_earlier_redeemed_voucher_is_signed_again_and_pays_nothing_more() -> None:
    # Prepare: the provider redeemed jobs 1..2 while the client signed for 1..3
    client, channel, receipts = _setup(jobs_redeemed=2)

    # Execute
    voucher, signature, proof = asyncio.run(_redeemed_proof(client, channel, receipts[0]))

    # Assert: the voucher for 1..2 exactly (what the channel paid), signed by the client
    assert (voucher.jobs, voucher.amount, voucher.units) == (2, 3000, 300)
    assert recover_voucher_signer(MARKET, voucher, signature) == client.account.address
    assert verify_proof(receipts[0].leaf(), proof, voucher.receipts_root)


def test_receipts_that_do_not_add_up_to_what_the_channel_paid_are_refused() -> None:
    # Prepare: the chain says 2 jobs but less paid than their receipts (not our receipts)
    client, channel, receipts = _setup(jobs_redeemed=2, paid=2999)

    # Execute / Assert
    with pytest.raises(InvalidInput, match="not the receipts the provider redeemed"):
        asyncio.run(_redeemed_proof(client, channel, receipts[0]))
