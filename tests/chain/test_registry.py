"""ProviderRegistry: success / failure pairs for every external function.

Every test that moves tokens checks that the registry holds exactly the sum of
stake and unbonding tokens of its providers, and that supply is conserved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial

import pytest

from idlegrid import ContractReverted
from idlegrid.chain import TOKEN, RegistryClient, deploy_contract
from idlegrid.protocol import Account

from ..conftest import CONFIG, Env
from .arbiter import arbitrated

MIN = CONFIG.min_stake
DELAY = CONFIG.unbonding_delay
MAX = 2**256 - 1
ZERO = "0x" + "00" * 20
CAPS = b"\x01" * 32
START = 10_000 * TOKEN
MIN_DELAY = 3600
MAX_DELAY = 365 * 86400


def _reverts(action: Callable[[], object]) -> str:
    """Run ``action``, expect a revert, return the contract's reason."""
    with pytest.raises(ContractReverted) as exc:
        action()
    return exc.value.reason


def _register(env: Env, provider: Account, stake: int = MIN, endpoint: str = "http://p:1") -> None:
    env.token.approve(env.registry.address, MAX, sender=provider)
    env.registry.register(endpoint, 10, CAPS, stake, sender=provider)


def _assert_books(env: Env, providers: Sequence[Account]) -> None:
    """The registry holds exactly stake + unbonding of ``providers``; supply is conserved."""
    held = sum(
        env.registry.provider(p.address).stake + env.registry.provider(p.address).unbonding
        for p in providers
    )
    assert env.token.balance_of(env.registry.address) == held
    env.conservation()


@pytest.fixture
def arbiter(env: Env) -> Iterator[Account]:
    """An account named the market's arbiter (the only route to ``slash``): for this
    test, ``env`` holds a fresh registry and market wired to it (see ``arbiter.py``)."""
    arbiter = env.users[-1]
    with arbitrated(env, arbiter):
        yield arbiter


# -- views and wiring -----------------------------------------------------------


def test_configuration_views(env: Env) -> None:
    assert env.registry.min_stake() == MIN
    assert env.registry.unbonding_delay() == DELAY
    assert env.registry.market() == env.market.address
    assert env.registry._call("token") == env.token.address
    assert env.registry._call("owner") == env.owner.address
    assert env.registry.active_count() == 0
    assert env.registry.active_providers() == []


def test_deploy_with_zero_min_stake_reverts(env: Env) -> None:
    reason = _reverts(
        lambda: deploy_contract(
            env.backend, "ProviderRegistry", [env.token.address, 0, DELAY], sender=env.owner
        )
    )

    assert reason == "registry: min stake must be positive"


def test_delay_bounds_are_published(env: Env) -> None:
    assert env.registry._call("MIN_UNBONDING_DELAY") == MIN_DELAY
    assert env.registry._call("MAX_UNBONDING_DELAY") == MAX_DELAY


@pytest.mark.parametrize("delay", [MIN_DELAY, MAX_DELAY])
def test_deploy_with_unbonding_delay_at_its_bounds_and_withdraw_after_it(
    env: Env, delay: int
) -> None:
    provider = env.users[0]
    address = deploy_contract(
        env.backend, "ProviderRegistry", [env.token.address, MIN, delay], sender=env.owner
    )
    registry = RegistryClient(env.backend, address)
    env.token.approve(address, MAX, sender=provider)
    registry.register("http://p:1", 10, CAPS, MIN, sender=provider)
    registry.begin_unbonding(MIN, sender=provider)
    env.backend.advance_time(delay)

    registry.withdraw(sender=provider)

    assert registry.unbonding_delay() == delay
    assert registry.provider(provider.address).unbonding == 0
    assert env.token.balance_of(provider.address) == START


@pytest.mark.parametrize("delay", [0, MIN_DELAY - 1, MAX_DELAY + 1, 2**255, MAX])
def test_deploy_with_unbonding_delay_out_of_range_reverts(env: Env, delay: int) -> None:
    reason = _reverts(
        lambda: deploy_contract(
            env.backend, "ProviderRegistry", [env.token.address, MIN, delay], sender=env.owner
        )
    )

    assert reason == "registry: unbonding delay out of range"


# -- set_market -----------------------------------------------------------------


def test_set_market_once_on_fresh_registry(env: Env) -> None:
    address = deploy_contract(
        env.backend, "ProviderRegistry", [env.token.address, MIN, DELAY], sender=env.owner
    )
    registry = RegistryClient(env.backend, address)
    assert registry.market() == ZERO

    result = registry.set_market(env.users[0].address, sender=env.owner)

    assert registry.market() == env.users[0].address
    assert registry._events("MarketSet", result) == [{"market": env.users[0].address}]


def test_set_market_twice_reverts(env: Env) -> None:
    reason = _reverts(lambda: env.registry.set_market(env.users[0].address, sender=env.owner))

    assert reason == "registry: market already set"
    assert env.registry.market() == env.market.address


def test_set_market_by_non_owner_reverts(env: Env) -> None:
    address = deploy_contract(
        env.backend, "ProviderRegistry", [env.token.address, MIN, DELAY], sender=env.owner
    )
    registry = RegistryClient(env.backend, address)
    user = env.users[0]

    reason = _reverts(lambda: registry.set_market(user.address, sender=user))

    assert reason == "ownable: caller is not the owner"
    assert registry.market() == ZERO


def test_set_market_zero_address_reverts(env: Env) -> None:
    address = deploy_contract(
        env.backend, "ProviderRegistry", [env.token.address, MIN, DELAY], sender=env.owner
    )
    registry = RegistryClient(env.backend, address)

    reason = _reverts(lambda: registry.set_market(ZERO, sender=env.owner))

    assert reason == "registry: market is the zero address"


# -- register -------------------------------------------------------------------


def test_register_locks_stake_and_activates(env: Env) -> None:
    provider = env.users[0]
    env.token.approve(env.registry.address, 150 * TOKEN, sender=provider)

    result = env.registry.register(
        "https://gpu.example:8443", 7, CAPS, 150 * TOKEN, sender=provider
    )

    info = env.registry.provider(provider.address)
    assert (info.endpoint, info.price, info.capabilities) == ("https://gpu.example:8443", 7, CAPS)
    assert (info.stake, info.unbonding, info.withdrawable_at) == (150 * TOKEN, 0, 0)
    assert info.registered and info.active
    assert env.registry.is_active(provider.address)
    assert env.registry.active_providers() == [provider.address]
    assert env.registry.active_count() == 1
    assert env.token.balance_of(provider.address) == START - 150 * TOKEN
    assert env.token.allowance(provider.address, env.registry.address) == 0
    assert env.registry._events("ProviderRegistered", result) == [
        {
            "provider": provider.address,
            "endpoint": "https://gpu.example:8443",
            "price": 7,
            "capabilities": CAPS,
            "stake": 150 * TOKEN,
        }
    ]
    assert env.registry._events("ProviderActivated", result) == [{"provider": provider.address}]
    _assert_books(env, [provider])


def test_register_with_exactly_min_stake(env: Env) -> None:
    provider = env.users[0]

    _register(env, provider, stake=MIN)

    assert env.registry.is_active(provider.address)
    _assert_books(env, [provider])


def test_register_twice_reverts(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)

    reason = _reverts(lambda: env.registry.register("http://q:2", 1, CAPS, MIN, sender=provider))

    assert reason == "registry: already registered"
    assert env.registry.provider(provider.address).endpoint == "http://p:1"
    _assert_books(env, [provider])


def test_register_empty_endpoint_reverts(env: Env) -> None:
    provider = env.users[0]
    env.token.approve(env.registry.address, MAX, sender=provider)

    reason = _reverts(lambda: env.registry.register("", 1, CAPS, MIN, sender=provider))

    assert reason == "registry: empty endpoint"
    assert not env.registry.provider(provider.address).registered


def test_register_stake_below_minimum_reverts(env: Env) -> None:
    provider = env.users[0]
    env.token.approve(env.registry.address, MAX, sender=provider)

    reason = _reverts(
        lambda: env.registry.register("http://p:1", 1, CAPS, MIN - 1, sender=provider)
    )

    assert reason == "registry: stake below minimum"
    assert not env.registry.provider(provider.address).registered
    _assert_books(env, [provider])


def test_register_without_allowance_reverts(env: Env) -> None:
    provider = env.users[0]

    reason = _reverts(lambda: env.registry.register("http://p:1", 1, CAPS, MIN, sender=provider))

    assert reason == "token: insufficient allowance"
    assert not env.registry.is_active(provider.address)
    _assert_books(env, [provider])


def test_register_beyond_balance_reverts(env: Env) -> None:
    provider = env.users[0]
    env.token.approve(env.registry.address, MAX, sender=provider)

    reason = _reverts(
        lambda: env.registry.register("http://p:1", 1, CAPS, START + 1, sender=provider)
    )

    assert reason == "token: transfer amount exceeds balance"
    _assert_books(env, [provider])


# -- update ---------------------------------------------------------------------


def test_update_changes_offer(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)

    result = env.registry.update("http://new:9", 99, b"\x02" * 32, sender=provider)

    info = env.registry.provider(provider.address)
    assert (info.endpoint, info.price, info.capabilities) == ("http://new:9", 99, b"\x02" * 32)
    assert info.stake == MIN and info.active
    assert env.registry._events("ProviderUpdated", result) == [
        {
            "provider": provider.address,
            "endpoint": "http://new:9",
            "price": 99,
            "capabilities": b"\x02" * 32,
        }
    ]
    _assert_books(env, [provider])


def test_update_not_registered_reverts(env: Env) -> None:
    reason = _reverts(lambda: env.registry.update("http://x:1", 1, CAPS, sender=env.users[0]))

    assert reason == "registry: not registered"


def test_update_empty_endpoint_reverts(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)

    reason = _reverts(lambda: env.registry.update("", 1, CAPS, sender=provider))

    assert reason == "registry: empty endpoint"
    assert env.registry.provider(provider.address).endpoint == "http://p:1"


# -- add_stake ------------------------------------------------------------------


def test_add_stake_increases_stake(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)

    result = env.registry.add_stake(25 * TOKEN, sender=provider)

    assert env.registry.provider(provider.address).stake == MIN + 25 * TOKEN
    assert env.token.balance_of(provider.address) == START - MIN - 25 * TOKEN
    assert env.registry._events("StakeAdded", result) == [
        {"provider": provider.address, "amount": 25 * TOKEN, "stake": MIN + 25 * TOKEN}
    ]
    # already active: no second activation, no duplicate in the set
    assert env.registry._events("ProviderActivated", result) == []
    assert env.registry.active_providers() == [provider.address]
    _assert_books(env, [provider])


def test_add_stake_reactivates_provider_below_minimum(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)
    env.registry.begin_unbonding(1, sender=provider)
    assert not env.registry.is_active(provider.address)

    result = env.registry.add_stake(1, sender=provider)

    assert env.registry.is_active(provider.address)
    assert env.registry.active_providers() == [provider.address]
    assert env.registry._events("ProviderActivated", result) == [{"provider": provider.address}]
    info = env.registry.provider(provider.address)
    assert (info.stake, info.unbonding) == (MIN, 1)
    _assert_books(env, [provider])


def test_add_stake_still_below_minimum_stays_inactive(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)
    env.registry.begin_unbonding(MIN, sender=provider)

    env.registry.add_stake(MIN - 1, sender=provider)

    assert not env.registry.is_active(provider.address)
    assert env.registry.active_count() == 0
    _assert_books(env, [provider])


def test_add_stake_not_registered_reverts(env: Env) -> None:
    user = env.users[0]
    env.token.approve(env.registry.address, MAX, sender=user)

    reason = _reverts(lambda: env.registry.add_stake(MIN, sender=user))

    assert reason == "registry: not registered"
    _assert_books(env, [user])


def test_add_stake_zero_reverts(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)

    reason = _reverts(lambda: env.registry.add_stake(0, sender=provider))

    assert reason == "registry: zero amount"


# -- begin_unbonding --------------------------------------------------------------


def test_begin_unbonding_moves_stake_keeping_active(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider, stake=MIN + 30 * TOKEN)

    result = env.registry.begin_unbonding(30 * TOKEN, sender=provider)

    info = env.registry.provider(provider.address)
    assert (info.stake, info.unbonding) == (MIN, 30 * TOKEN)
    block_time = env.backend.w3.eth.get_block(result.block)["timestamp"]
    assert info.withdrawable_at == block_time + DELAY
    assert info.active
    assert env.registry._events("UnbondingStarted", result) == [
        {
            "provider": provider.address,
            "amount": 30 * TOKEN,
            "stake": MIN,
            "unbonding": 30 * TOKEN,
            "withdrawable_at": block_time + DELAY,
        }
    ]
    assert env.registry._events("ProviderDeactivated", result) == []
    # tokens stay in the registry until withdrawn
    _assert_books(env, [provider])
    assert env.token.balance_of(env.registry.address) == MIN + 30 * TOKEN


def test_begin_unbonding_below_minimum_deactivates(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)

    result = env.registry.begin_unbonding(1, sender=provider)

    assert not env.registry.is_active(provider.address)
    assert env.registry.provider(provider.address).registered
    assert env.registry.active_providers() == []
    assert env.registry._events("ProviderDeactivated", result) == [{"provider": provider.address}]
    _assert_books(env, [provider])


def test_begin_unbonding_restarts_delay_for_all(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider, stake=MIN + 2)
    env.registry.begin_unbonding(1, sender=provider)
    env.backend.advance_time(DELAY // 2)

    result = env.registry.begin_unbonding(1, sender=provider)

    info = env.registry.provider(provider.address)
    block_time = env.backend.w3.eth.get_block(result.block)["timestamp"]
    assert (info.unbonding, info.withdrawable_at) == (2, block_time + DELAY)
    env.backend.advance_time(DELAY // 2 + 600)  # past the first call's deadline only
    reason = _reverts(lambda: env.registry.withdraw(sender=provider))
    assert reason == "registry: unbonding delay not over"
    _assert_books(env, [provider])


def test_begin_unbonding_exceeding_stake_reverts(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)

    reason = _reverts(lambda: env.registry.begin_unbonding(MIN + 1, sender=provider))

    assert reason == "registry: amount exceeds stake"
    assert env.registry.provider(provider.address).stake == MIN


def test_begin_unbonding_zero_reverts(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)

    reason = _reverts(lambda: env.registry.begin_unbonding(0, sender=provider))

    assert reason == "registry: zero amount"


def test_begin_unbonding_not_registered_reverts(env: Env) -> None:
    reason = _reverts(lambda: env.registry.begin_unbonding(1, sender=env.users[0]))

    assert reason == "registry: not registered"


# -- withdraw ---------------------------------------------------------------------


def test_withdraw_after_delay_returns_tokens(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider, stake=MIN + 40 * TOKEN)
    env.registry.begin_unbonding(40 * TOKEN, sender=provider)
    env.backend.advance_time(DELAY)

    result = env.registry.withdraw(sender=provider)

    info = env.registry.provider(provider.address)
    assert (info.stake, info.unbonding) == (MIN, 0)
    assert env.token.balance_of(provider.address) == START - MIN
    assert env.registry._events("StakeWithdrawn", result) == [
        {"provider": provider.address, "amount": 40 * TOKEN}
    ]
    _assert_books(env, [provider])


def test_withdraw_whole_stake_leaves_registered_inactive(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)
    env.registry.begin_unbonding(MIN, sender=provider)
    env.backend.advance_time(DELAY + 1)

    env.registry.withdraw(sender=provider)

    info = env.registry.provider(provider.address)
    assert info.registered and not info.active
    assert env.token.balance_of(provider.address) == START
    assert env.token.balance_of(env.registry.address) == 0
    _assert_books(env, [provider])


def test_withdraw_before_delay_reverts(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)
    env.registry.begin_unbonding(10, sender=provider)
    env.backend.advance_time(DELAY - 120)

    reason = _reverts(lambda: env.registry.withdraw(sender=provider))

    assert reason == "registry: unbonding delay not over"
    assert env.registry.provider(provider.address).unbonding == 10
    _assert_books(env, [provider])


def test_withdraw_twice_reverts(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)
    env.registry.begin_unbonding(10, sender=provider)
    env.backend.advance_time(DELAY)
    env.registry.withdraw(sender=provider)

    reason = _reverts(lambda: env.registry.withdraw(sender=provider))

    assert reason == "registry: nothing unbonding"
    _assert_books(env, [provider])


def test_withdraw_nothing_unbonding_reverts(env: Env) -> None:
    provider = env.users[0]
    _register(env, provider)

    reason = _reverts(lambda: env.registry.withdraw(sender=provider))

    assert reason == "registry: nothing unbonding"
    assert (
        _reverts(lambda: env.registry.withdraw(sender=env.users[1]))
        == "registry: nothing unbonding"
    )


# -- slash ------------------------------------------------------------------------


def test_slash_through_market_takes_unbonding_then_stake(env: Env, arbiter: Account) -> None:
    provider, victim = env.users[0], env.users[1]
    _register(env, provider, stake=MIN + 50 * TOKEN)
    env.registry.begin_unbonding(50 * TOKEN, sender=provider)

    result = env.market.slash(provider.address, MIN + 20 * TOKEN, victim.address, sender=arbiter)

    info = env.registry.provider(provider.address)
    assert (info.stake, info.unbonding) == (30 * TOKEN, 0)
    assert not info.active and info.registered
    assert env.token.balance_of(victim.address) == START + MIN + 20 * TOKEN
    assert env.registry._events("ProviderSlashed", result) == [
        {
            "provider": provider.address,
            "beneficiary": victim.address,
            "amount": MIN + 20 * TOKEN,
            "stake": 30 * TOKEN,
            "unbonding": 0,
        }
    ]
    assert env.registry._events("ProviderDeactivated", result) == [{"provider": provider.address}]
    _assert_books(env, [provider])


def test_slash_takes_unbonding_tokens_first(env: Env, arbiter: Account) -> None:
    provider, victim = env.users[0], env.users[1]
    _register(env, provider, stake=MIN + 50 * TOKEN)
    env.registry.begin_unbonding(10 * TOKEN, sender=provider)

    env.market.slash(provider.address, 40 * TOKEN, victim.address, sender=arbiter)

    info = env.registry.provider(provider.address)
    assert (info.stake, info.unbonding) == (MIN + 10 * TOKEN, 0)
    assert info.active
    assert env.token.balance_of(victim.address) == START + 40 * TOKEN
    _assert_books(env, [provider])


def test_slash_below_minimum_deactivates(env: Env, arbiter: Account) -> None:
    provider, other, victim = env.users[0], env.users[1], env.users[2]
    _register(env, provider)
    _register(env, other)

    env.market.slash(provider.address, 1, victim.address, sender=arbiter)

    assert not env.registry.is_active(provider.address)
    assert env.registry.active_providers() == [other.address]
    _assert_books(env, [provider, other])


def test_slash_everything_including_unbonding(env: Env, arbiter: Account) -> None:
    provider, victim = env.users[0], env.users[1]
    _register(env, provider, stake=MIN + 5)
    env.registry.begin_unbonding(5, sender=provider)

    env.market.slash(provider.address, MIN + 5, victim.address, sender=arbiter)

    info = env.registry.provider(provider.address)
    assert (info.stake, info.unbonding) == (0, 0)
    env.backend.advance_time(DELAY)
    assert _reverts(lambda: env.registry.withdraw(sender=provider)) == "registry: nothing unbonding"
    _assert_books(env, [provider])


def test_slash_exceeding_stake_and_unbonding_takes_what_is_there(
    env: Env, arbiter: Account
) -> None:
    """A front-run unbonding or withdrawal cannot void a slash: it takes what is left."""
    provider, victim = env.users[0], env.users[1]
    _register(env, provider, stake=MIN + 5)
    env.registry.begin_unbonding(5, sender=provider)

    result = env.market.slash(provider.address, MIN + 6, victim.address, sender=arbiter)

    info = env.registry.provider(provider.address)
    assert (info.stake, info.unbonding) == (0, 0)
    assert env.token.balance_of(victim.address) == START + MIN + 5
    [event] = env.registry._events("ProviderSlashed", result)
    assert event["amount"] == MIN + 5
    _assert_books(env, [provider])


def test_slash_of_a_provider_holding_nothing_takes_nothing(env: Env, arbiter: Account) -> None:
    stranger, victim = env.users[0], env.users[1]

    result = env.market.slash(stranger.address, 10 * TOKEN, victim.address, sender=arbiter)

    assert env.registry._events("ProviderSlashed", result) == []
    assert env.token.balance_of(victim.address) == START
    _assert_books(env, [])


def test_slash_zero_reverts(env: Env, arbiter: Account) -> None:
    provider = env.users[0]
    _register(env, provider)

    reason = _reverts(
        lambda: env.market.slash(provider.address, 0, env.users[1].address, sender=arbiter)
    )

    assert reason == "registry: zero amount"


def test_slash_to_zero_beneficiary_reverts(env: Env, arbiter: Account) -> None:
    provider = env.users[0]
    _register(env, provider)

    reason = _reverts(lambda: env.market.slash(provider.address, 1, ZERO, sender=arbiter))

    assert reason == "registry: beneficiary is the zero address"
    _assert_books(env, [provider])


def test_slash_called_directly_reverts(env: Env) -> None:
    provider, user = env.users[0], env.users[1]
    _register(env, provider)

    for caller in (user, env.owner):
        reason = _reverts(
            partial(env.registry.slash, provider.address, 1, caller.address, sender=caller)
        )
        assert reason == "registry: caller is not the market"
    _assert_books(env, [provider])


def test_market_slash_by_non_arbiter_reverts(env: Env, arbiter: Account) -> None:
    provider, user = env.users[0], env.users[1]
    _register(env, provider)

    for caller in (user, env.owner, provider):
        reason = _reverts(
            partial(env.market.slash, provider.address, 1, caller.address, sender=caller)
        )
        assert reason == "market: caller is not the arbiter"
    assert env.registry.provider(provider.address).stake == MIN
    _assert_books(env, [provider])


# -- active enumeration -------------------------------------------------------------


def test_active_set_tracks_joins_and_leaves_exactly(env: Env) -> None:
    a, b, c, d, e = env.users[:5]
    for p in (a, b, c, d):
        _register(env, p)
    assert env.registry.active_providers() == [a.address, b.address, c.address, d.address]

    env.registry.begin_unbonding(1, sender=b)  # b leaves: d fills its slot
    assert env.registry.active_providers() == [a.address, d.address, c.address]

    env.registry.begin_unbonding(1, sender=c)  # c is last: plain pop
    assert env.registry.active_providers() == [a.address, d.address]

    _register(env, e)
    env.registry.add_stake(1, sender=b)  # b comes back at the end
    assert env.registry.active_providers() == [a.address, d.address, e.address, b.address]

    env.registry.begin_unbonding(1, sender=a)  # the first leaves
    assert env.registry.active_providers() == [b.address, d.address, e.address]

    for p in (b, d, e):
        env.registry.begin_unbonding(1, sender=p)
    assert env.registry.active_providers() == []
    assert env.registry.active_count() == 0
    assert not any(env.registry.is_active(p.address) for p in (a, b, c, d, e))

    env.registry.add_stake(1, sender=c)
    assert env.registry.active_providers() == [c.address]
    _assert_books(env, [a, b, c, d, e])


def test_active_providers_pages_by_offset_and_limit(env: Env) -> None:
    providers = env.users[:5]
    for p in providers:
        _register(env, p)
    everyone = [p.address for p in providers]

    assert env.registry._call("active_providers", 0, 2) == everyone[:2]
    assert env.registry._call("active_providers", 2, 2) == everyone[2:4]
    assert env.registry._call("active_providers", 4, 10) == everyone[4:]
    assert env.registry._call("active_providers", 5, 10) == []
    assert env.registry._call("active_providers", 0, 0) == []
    assert env.registry._call("active_providers", 0, 1000) == everyone


def test_is_active_only_for_registered_with_min_stake(env: Env) -> None:
    active, inactive = env.users[0], env.users[1]
    _register(env, active)
    _register(env, inactive)
    env.registry.begin_unbonding(1, sender=inactive)

    assert env.registry.is_active(active.address)
    assert not env.registry.is_active(inactive.address)
    assert not env.registry.is_active(env.users[2].address)
    assert not env.registry.is_active(ZERO)
