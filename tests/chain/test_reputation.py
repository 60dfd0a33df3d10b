"""Reputation that cannot be bought: the pure scoring, and the self-dealing exploit on chain.

The exploit (issue 8): a provider's second address, acting as its client, pumped the
provider's record with vouchers that paid nothing or were paid from the provider's own
tokens, with jobs counts the client simply signed, and the self-dealer ranked first
while charging twice the price.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from pathlib import Path

import pytest

from idlegrid.chain import (
    TOKEN,
    ChannelTerms,
    Indexer,
    ProviderHistory,
    ReputationRules,
    score_reputation,
)
from idlegrid.client import Candidate, Response, Transport, rank
from idlegrid.client._discovery import discover
from idlegrid.protocol import Account, NodeInfo, Voucher, sign_voucher

from ..conftest import Env

T = TOKEN
P, C1, C2, C3 = "0xP", "0xC1", "0xC2", "0xC3"


def _score(**history: object) -> int:
    return score_reputation(ProviderHistory(P, **history)).points  # type: ignore[arg-type]


# -- the scoring, pure ------------------------------------------------------------
def test_a_newcomer_has_zero_and_payments_earn_the_square_root_of_whole_tokens() -> None:
    # Execute
    newcomer = score_reputation(ProviderHistory(P))
    paid = score_reputation(ProviderHistory(P, paid={C1: 4 * T, C2: 9 * T}))

    # Assert: thousandths of sqrt(4) + sqrt(9)
    assert (newcomer.points, newcomer.clients) == (0, 0)
    assert (paid.points, paid.clients, paid.counted, paid.discounted) == (5000, 2, 13 * T, 0)


def test_redemptions_that_pay_nothing_or_dust_earn_nothing() -> None:
    # Execute / Assert: however many, whatever jobs they claimed (jobs are never read)
    assert _score(paid={C1: 0}) == 0
    assert _score(paid={C1: 1}) == 0  # one wei
    assert score_reputation(ProviderHistory(P, paid={C1: 0, C2: 1})).clients == 0


def test_what_a_provider_pays_itself_or_funds_earns_nothing() -> None:
    # Execute
    itself = score_reputation(ProviderHistory(P, paid={P: 100 * T}))
    funded = score_reputation(ProviderHistory(P, paid={C1: 100 * T}, funded={C1: 100 * T}))
    part = score_reputation(ProviderHistory(P, paid={C1: 100 * T}, funded={C1: 75 * T}))

    # Assert: a funded client counts only for what it paid beyond the funding
    assert (itself.points, itself.discounted) == (0, 100 * T)
    assert (funded.points, funded.clients, funded.discounted) == (0, 0, 100 * T)
    assert (part.points, part.counted, part.discounted) == (5000, 25 * T, 75 * T)


def test_one_client_cannot_dominate() -> None:
    # Prepare
    cap = ReputationRules().client_cap

    # Execute
    one_big = _score(paid={C1: 100 * T})
    one_huge = _score(paid={C1: 10**9 * T})
    four_small = _score(paid={C: 25 * T for C in (C1, C2, C3, "0xC4")})

    # Assert: concave in each client, capped at client_cap tokens
    assert one_huge == one_big == math.isqrt(cap) * 1000
    assert four_small == 2 * one_big


def test_slashes_and_lost_disputes_rank_below_a_newcomer_and_won_disputes_add_a_little() -> None:
    # Prepare
    record: Mapping[str, int] = {C1: 100 * T, C2: 100 * T}

    # Execute
    slashed = _score(paid=record, slashes=1, slashed=30 * T)
    twice = _score(paid=record, slashes=2, slashed=60 * T)
    lost = _score(paid=record, disputes_lost=1)
    won = _score(paid=record, disputes_won=2)
    staged = _score(paid=record, disputes_won=1000)

    # Assert
    assert twice < slashed < 0 and lost < 0
    assert won == _score(paid=record) + 2 * ReputationRules().dispute_points
    assert staged == _score(paid=record) + 5 * ReputationRules().dispute_points


def test_a_referee_that_did_not_vote_loses_a_point_but_is_not_an_offender() -> None:
    # Execute: each absence came with a small slash
    absent = _score(paid={C1: 100 * T}, absences=2, slashes=2, slashed=2 * T)
    newcomer = _score(absences=1, slashes=1, slashed=T)
    also_cheated = _score(paid={C1: 100 * T}, absences=1, slashes=2, disputes_lost=1)

    # Assert
    assert absent == _score(paid={C1: 100 * T}) - 2 * ReputationRules().absence_points
    assert newcomer == 0
    assert also_cheated < 0


# -- the exploit, end to end on the embedded chain ----------------------------------
class Nodes(Transport):
    """Answers /v1/info for each endpoint host from ``infos``, and /v1/health with 200."""

    def __init__(self, infos: Mapping[str, bytes]) -> None:
        self.infos = infos

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        timeout: float,
    ) -> Response:
        host = url.split("/")[2]
        body = self.infos[host] if url.endswith("/v1/info") else b'{"ok": true}'
        return Response(200, {}, body)

    async def aclose(self) -> None:
        pass


def _info(env: Env, provider: Account, price: int) -> bytes:
    return (
        NodeInfo(
            address=provider.address,
            chain_id=env.backend.chain_id,
            market=env.market.address,
            unit_price=price,
            workloads=["onnx"],
            hardware={},
            capabilities_hash="0x" + "00" * 32,
            limits={},
            version="test",
        )
        .model_dump_json()
        .encode()
    )


def _pay(
    env: Env, client: Account, provider: Account, terms: ChannelTerms, amount: int, jobs: int
) -> None:
    voucher = Voucher(terms.id, amount, jobs, jobs, bytes(32))
    signature = sign_voucher(client, env.market.domain(), voucher)
    env.market.redeem(terms, voucher, signature, sender=provider)


def _open(env: Env, client: Account, provider: Account, deposit: int) -> ChannelTerms:
    env.token.approve(env.market.address, deposit, sender=client)
    terms, _ = env.market.open_channel(provider.address, deposit, env.now() + 3600, sender=client)
    return terms


def _register(env: Env, provider: Account, name: str, price: int) -> None:
    env.token.approve(env.registry.address, 100 * T, sender=provider)
    env.registry.register(f"http://{name}.test", price, bytes(32), 100 * T, sender=provider)


@pytest.mark.parametrize("session_env", ["embedded"], indirect=True)
def test_a_self_dealt_record_earns_no_reputation_and_ranks_below_an_honest_one(
    env: Env, tmp_path: Path
) -> None:
    # Prepare: an honest provider paid by three clients over 10 redemptions; a
    # self-dealer at twice the price, whose second address it funded pays it dust
    # 30 times with jobs up to 2**48 - 1, then pays back the tokens it was given
    honest, dealer, sybil, paid_sybil, *clients = env.users[:7]
    _register(env, honest, "honest", 100)
    _register(env, dealer, "dealer", 200)
    for i, client in enumerate(clients):
        terms = _open(env, client, honest, 20 * T)
        for k in range(1, 4 if i else 5):
            _pay(env, client, honest, terms, k * 3 * T, k)
    env.token.transfer(sybil.address, 50 * T, sender=dealer)
    terms = _open(env, sybil, dealer, 50 * T)
    for k in range(1, 31):
        _pay(env, sybil, dealer, terms, k, (2**48 - 1) * k // 30)
    _pay(env, sybil, dealer, terms, 50 * T, 2**48 - 1)
    # a second address funded through the market: the dealer pays it as its client
    terms = _open(env, dealer, paid_sybil, 20 * T)
    _pay(env, dealer, paid_sybil, terms, 20 * T, 1)
    terms = _open(env, paid_sybil, dealer, 20 * T)
    _pay(env, paid_sybil, dealer, terms, 20 * T, 2**48 - 1)

    with Indexer(env.backend, env.ledger.deployment, tmp_path / "a.db") as index:
        # Execute
        index.sync()
        standing = index.reputations()
        transport = Nodes(
            {"honest.test": _info(env, honest, 100), "dealer.test": _info(env, dealer, 200)}
        )
        found = asyncio.run(discover(env.ledger, index, transport))

        # Assert: the record is pumped as before (count and claimed jobs)...
        pumped, earned = index.contribution(dealer.address), index.contribution(honest.address)
        assert (pumped.redemptions, earned.redemptions) == (32, 10)
        assert pumped.jobs == 2 * (2**48 - 1) > earned.jobs
        # ...but buys no reputation, and the honest provider ranks first
        assert standing[dealer.address].points == 0
        assert standing[dealer.address].discounted == 70 * T
        assert (standing[honest.address].clients, standing[honest.address].counted) == (
            3,
            12 * T + 9 * T + 9 * T,
        )
        assert standing[honest.address].points > 0
        assert [c.address for c in rank(found)] == [honest.address, dealer.address]
        same_price = [
            Candidate(p.address, "http://x", 100, 1.0, standing[p.address].points)
            for p in (dealer, honest)
        ]
        assert [c.address for c in rank(same_price)] == [honest.address, dealer.address]

    # and any other index of the same chain computes the same scores
    with Indexer(env.backend, env.ledger.deployment, tmp_path / "b.db", batch_blocks=3) as other:
        other.sync()
        assert other.reputations() == standing
