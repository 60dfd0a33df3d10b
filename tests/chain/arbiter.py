"""A ledger whose market names a plain account as arbiter, for tests of ``slash`` itself.

The deployment wires the dispute contract as the market's arbiter, once, so on
the shared ledger no account can slash. Tests of the slash path deploy a fresh
registry and market on the same backend and token, wired to each other, with
``arbiter`` as the market's arbiter, and swap them into the env for one test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from idlegrid.chain import (
    CONTRACTS,
    Deployment,
    Ledger,
    MarketClient,
    RegistryClient,
    deploy_contract,
)
from idlegrid.protocol import Account

from ..conftest import CONFIG, Env

#: the token, registry and market specs: a ledger without the dispute contract
CORE = tuple(spec for spec in CONTRACTS if spec.key in ("token", "registry", "market"))


def core_ledger(env: Env, arbiter: Account) -> Ledger:
    """A registry and a market on ``env``'s token, with ``arbiter`` as the market's arbiter."""
    backend, owner = env.backend, env.owner
    registry = deploy_contract(
        backend,
        "ProviderRegistry",
        [env.token.address, CONFIG.min_stake, CONFIG.unbonding_delay],
        sender=owner,
    )
    market = deploy_contract(
        backend, "JobMarket", [env.token.address, registry, CONFIG.close_window], sender=owner
    )
    RegistryClient(backend, registry).set_market(market, sender=owner)
    MarketClient(backend, market).set_arbiter(arbiter.address, sender=owner)
    addresses = {"token": env.token.address, "registry": registry, "market": market}
    return Ledger(backend, Deployment(backend.chain_id, addresses), contracts=CORE)


@contextmanager
def arbitrated(env: Env, arbiter: Account) -> Iterator[Env]:
    """``env`` with :func:`core_ledger` in place of its ledger, for the ``with`` block."""
    saved = env.ledger
    env.ledger = core_ledger(env, arbiter)
    try:
        yield dataclasses.replace(env)
    finally:
        env.ledger = saved
