"""JobMarket: success / failure pairs for every external function."""

from __future__ import annotations

import dataclasses

import pytest
from eth_utils import keccak, to_canonical_address

from idlegrid import ContractReverted, InvalidInput
from idlegrid.chain import (
    TOKEN,
    ChannelTerms,
    Contribution,
    EmbeddedBackend,
    MarketClient,
    deploy_contract,
)
from idlegrid.protocol import (
    Account,
    Domain,
    Receipt,
    Signature,
    Voucher,
    receipts_proof,
    receipts_root,
    sign_voucher,
    voucher_digest,
)

from ..conftest import Env

ROOT = b"\x11" * 32
MAX = 2**256 - 1
DAY = 86400
MIN_CLOSE_WINDOW = 3600
MAX_CLOSE_WINDOW = 30 * DAY
MAX_CHANNEL_TTL = 365 * DAY
CLOSE_WINDOW = 24 * 3600  # the deployment's (conftest.CONFIG)
MASK_56, MASK_104 = 2**56 - 1, 2**104 - 1
RECORD_SLOT = 7  # JobMarket._record in the storage layout (vyper -f layout)


def _reason(exc: pytest.ExceptionInfo[ContractReverted]) -> str:
    return exc.value.reason


@pytest.fixture
def parties(env: Env) -> tuple[Account, Account]:
    """A client with the market approved and a registered provider."""
    client, provider = env.users[0], env.users[1]
    env.token.approve(env.market.address, MAX, sender=client)
    env.token.approve(env.registry.address, MAX, sender=provider)
    env.registry.register("http://127.0.0.1:1", 10, b"\x01" * 32, 100 * TOKEN, sender=provider)
    return client, provider


def _open(env: Env, client: Account, provider: Account, amount: int = 50 * TOKEN) -> ChannelTerms:
    terms, _ = env.market.open_channel(provider.address, amount, env.now() + 3600, sender=client)
    return terms


def _voucher(
    env: Env, client: Account, terms: ChannelTerms, amount: int, jobs: int, units: int
) -> tuple[Voucher, Signature]:
    voucher = Voucher(terms.id, amount, jobs, units, ROOT)
    return voucher, sign_voucher(client, env.market.domain(), voucher)


def _deploy_market(env: Env, close_window: int) -> MarketClient:
    address = deploy_contract(
        env.backend,
        "JobMarket",
        [env.token.address, env.registry.address, close_window],
        sender=env.owner,
    )
    return MarketClient(env.backend, address)


def _set_record(env: Env, provider: str, earned: int, jobs: int, units: int) -> None:
    """Write a provider's packed record straight into the market's storage (a development
    chain's trick to reach a full record without 2**56 jobs)."""
    slot = int.from_bytes(
        keccak(RECORD_SLOT.to_bytes(32, "big") + bytes(12) + to_canonical_address(provider)),
        "big",
    )
    value = earned | (jobs << 96) | (units << 152)
    backend = env.backend
    if isinstance(backend, EmbeddedBackend):
        chain = backend.tester.backend.chain
        state = chain.get_vm().state
        state.set_storage(to_canonical_address(env.market.address), slot, value)
        state.persist()
        chain.header = chain.header.copy(state_root=state.state_root)
        backend.advance_time(0)  # mine it
    else:
        backend.w3.provider.make_request(
            "anvil_setStorageAt",  # type: ignore[arg-type]
            [env.market.address, hex(slot), "0x" + value.to_bytes(32, "big").hex()],
        )
    assert env.market.record(provider) == Contribution(earned, jobs, units)


# -- deployment --------------------------------------------------------------


def test_bounds_are_published(env: Env) -> None:
    market = env.market
    assert market._call("MIN_CLOSE_WINDOW") == MIN_CLOSE_WINDOW
    assert market._call("MAX_CLOSE_WINDOW") == MAX_CLOSE_WINDOW
    assert market._call("MAX_CHANNEL_TTL") == MAX_CHANNEL_TTL
    assert MIN_CLOSE_WINDOW <= market.close_window() <= MAX_CLOSE_WINDOW


@pytest.mark.parametrize("close_window", [MIN_CLOSE_WINDOW, MAX_CLOSE_WINDOW])
def test_deploy_with_close_window_at_its_bounds(env: Env, close_window: int) -> None:
    market = _deploy_market(env, close_window)

    assert market.close_window() == close_window


@pytest.mark.parametrize(
    "close_window", [0, MIN_CLOSE_WINDOW - 1, MAX_CLOSE_WINDOW + 1, 2**255, MAX]
)
def test_deploy_with_close_window_out_of_range_reverts(env: Env, close_window: int) -> None:
    with pytest.raises(ContractReverted) as exc:
        _deploy_market(env, close_window)

    assert _reason(exc) == "market: close window out of range"


def test_longest_channel_in_the_longest_window_still_closes(env: Env) -> None:
    """The largest expiry and close window allowed add up without overflow: the client
    gets its deposit back after them."""
    client, provider = env.users[0], env.users[1]
    market = _deploy_market(env, MAX_CLOSE_WINDOW)
    env.token.approve(market.address, MAX, sender=client)
    terms, _ = market.open_channel(
        provider.address, 5 * TOKEN, env.now() + MAX_CHANNEL_TTL, sender=client
    )
    env.backend.advance_time(MAX_CHANNEL_TTL + MAX_CLOSE_WINDOW)

    market.close(terms, sender=client)

    assert market.channel(terms).closed
    assert market.balance_of(client.address) == 5 * TOKEN


# -- deposit / withdraw ------------------------------------------------------


def test_deposit_moves_tokens_into_market_balance(env: Env) -> None:
    user = env.users[0]
    env.token.approve(env.market.address, 30 * TOKEN, sender=user)

    env.market.deposit(30 * TOKEN, sender=user)

    assert env.market.balance_of(user.address) == 30 * TOKEN
    assert env.token.balance_of(env.market.address) == 30 * TOKEN
    env.conservation()


def test_deposit_without_allowance_reverts(env: Env) -> None:
    with pytest.raises(ContractReverted) as exc:
        env.market.deposit(1, sender=env.users[0])
    assert _reason(exc) == "token: insufficient allowance"


def test_deposit_zero_reverts(env: Env) -> None:
    with pytest.raises(ContractReverted) as exc:
        env.market.deposit(0, sender=env.users[0])
    assert _reason(exc) == "market: zero amount"


def test_withdraw_returns_tokens_to_wallet(env: Env) -> None:
    user = env.users[0]
    env.token.approve(env.market.address, 30 * TOKEN, sender=user)
    env.market.deposit(30 * TOKEN, sender=user)
    before = env.token.balance_of(user.address)

    env.market.withdraw(10 * TOKEN, sender=user)

    assert env.market.balance_of(user.address) == 20 * TOKEN
    assert env.token.balance_of(user.address) == before + 10 * TOKEN
    env.conservation()


def test_withdraw_more_than_balance_reverts(env: Env) -> None:
    user = env.users[0]
    env.token.approve(env.market.address, 5, sender=user)
    env.market.deposit(5, sender=user)
    with pytest.raises(ContractReverted) as exc:
        env.market.withdraw(6, sender=user)
    assert _reason(exc) == "market: insufficient balance"
    assert env.market.balance_of(user.address) == 5


# -- open_channel -------------------------------------------------------------


def test_open_channel_from_balance_then_wallet(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    env.market.deposit(20 * TOKEN, sender=client)
    wallet = env.token.balance_of(client.address)

    terms = _open(env, client, provider, 50 * TOKEN)

    assert env.market.balance_of(client.address) == 0
    assert env.token.balance_of(client.address) == wallet - 30 * TOKEN
    state = env.market.channel(terms)
    assert state.id == terms.id == env.market.channel_id(terms)
    assert (state.deposit, state.paid, state.open, state.closed) == (50 * TOKEN, 0, True, False)
    env.conservation()


@pytest.mark.parametrize(
    ("who", "amount", "expiry_delta", "reason"),
    [
        ("self", 1, 3600, "market: channel to self"),
        ("zero", 1, 3600, "market: provider is the zero address"),
        ("provider", 0, 3600, "market: zero deposit"),
        ("provider", 2**96, 3600, "market: deposit too large"),
        ("provider", 1, -10, "market: expiry in the past"),
        ("provider", 1, MAX_CHANNEL_TTL + 3600, "market: expiry too far ahead"),
        ("provider", 1, 2**64, "market: expiry too far ahead"),
    ],
)
def test_open_channel_rejects_bad_terms(
    env: Env,
    parties: tuple[Account, Account],
    who: str,
    amount: int,
    expiry_delta: int,
    reason: str,
) -> None:
    client, provider = parties
    target = {"self": client.address, "zero": "0x" + "00" * 20, "provider": provider.address}[who]
    with pytest.raises(ContractReverted) as exc:
        env.market.open_channel(target, amount, env.now() + expiry_delta, sender=client)
    assert _reason(exc) == reason


def test_open_channel_up_to_a_year_ahead(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    expiry = env.now() + MAX_CHANNEL_TTL

    terms, _ = env.market.open_channel(provider.address, TOKEN, expiry, sender=client)

    assert env.market.channel(terms).expiry == expiry


def test_open_channel_twice_with_same_terms_reverts(
    env: Env, parties: tuple[Account, Account]
) -> None:
    client, provider = parties
    terms = _open(env, client, provider)
    with pytest.raises(ContractReverted) as exc:
        env.market.open_channel(
            provider.address, terms.deposit, terms.expiry, sender=client, salt=terms.salt
        )
    assert _reason(exc) == "market: channel exists"


def test_open_channel_without_funds_reverts(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    with pytest.raises(ContractReverted) as exc:
        env.market.open_channel(provider.address, 20_000 * TOKEN, env.now() + 3600, sender=client)
    assert _reason(exc) == "token: transfer amount exceeds balance"


# -- top_up ------------------------------------------------------------------


def test_top_up_adds_deposit_and_extends_expiry(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    terms = _open(env, client, provider, 10 * TOKEN)

    env.market.top_up(terms, 5 * TOKEN, terms.expiry + 100, sender=client)
    env.market.top_up(terms, 1 * TOKEN, terms.expiry + 100, sender=client)

    state = env.market.channel(terms)
    assert (state.deposit, state.expiry) == (16 * TOKEN, terms.expiry + 100)
    voucher, sig = _voucher(env, client, terms, 16 * TOKEN, 1, 1)
    env.market.redeem(terms, voucher, sig, sender=provider)
    assert env.market.record(provider.address).earned == 16 * TOKEN
    env.conservation()


@pytest.mark.parametrize(
    ("sender_index", "expiry_delta", "reason"),
    [
        (1, 0, "market: caller is not the channel's client"),
        (0, -1, "market: expiry earlier than current"),
    ],
)
def test_top_up_failures(
    env: Env, parties: tuple[Account, Account], sender_index: int, expiry_delta: int, reason: str
) -> None:
    terms = _open(env, *parties)
    with pytest.raises(ContractReverted) as exc:
        env.market.top_up(terms, 1, terms.expiry + expiry_delta, sender=parties[sender_index])
    assert _reason(exc) == reason


def test_top_up_extends_expiry_up_to_a_year_ahead(
    env: Env, parties: tuple[Account, Account]
) -> None:
    terms = _open(env, *parties)
    expiry = env.now() + MAX_CHANNEL_TTL

    env.market.top_up(terms, 1, expiry, sender=parties[0])

    assert env.market.channel(terms).expiry == expiry


def test_top_up_beyond_a_year_ahead_reverts(env: Env, parties: tuple[Account, Account]) -> None:
    terms = _open(env, *parties)

    with pytest.raises(ContractReverted) as exc:
        env.market.top_up(terms, 1, env.now() + MAX_CHANNEL_TTL + 3600, sender=parties[0])

    assert _reason(exc) == "market: expiry too far ahead"
    assert env.market.channel(terms).expiry == terms.expiry


@pytest.mark.parametrize("amount", [2**96 - 50 * TOKEN, MAX])
def test_top_up_past_96_bits_reverts_with_a_reason(
    env: Env, parties: tuple[Account, Account], amount: int
) -> None:
    terms = _open(env, *parties)

    with pytest.raises(ContractReverted) as exc:
        env.market.top_up(terms, amount, terms.expiry, sender=parties[0])

    assert _reason(exc) == "market: deposit too large"


def test_top_up_unknown_channel_reverts(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    terms = ChannelTerms(client.address, provider.address, 1, env.now() + 10, 7)
    with pytest.raises(ContractReverted) as exc:
        env.market.top_up(terms, 1, terms.expiry, sender=client)
    assert _reason(exc) == "market: unknown channel"


# -- redeem ------------------------------------------------------------------


def test_redeem_pays_only_the_increase_and_records(
    env: Env, parties: tuple[Account, Account]
) -> None:
    client, provider = parties
    terms = _open(env, client, provider, 50 * TOKEN)

    v1, s1 = _voucher(env, client, terms, 3 * TOKEN, 3, 300)
    env.market.redeem(terms, v1, s1, sender=provider)
    v2, s2 = _voucher(env, client, terms, 7 * TOKEN, 8, 800)
    result = env.market.redeem(terms, v2, s2, sender=provider)

    assert env.market.balance_of(provider.address) == 7 * TOKEN
    assert env.market.record(provider.address) == dataclasses.replace(
        env.market.record(provider.address), earned=7 * TOKEN, jobs=8, units=800
    )
    state = env.market.channel(terms)
    assert (state.paid, state.jobs, state.units) == (7 * TOKEN, 8, 800)
    events = env.market._events("VoucherRedeemed", result)
    assert events[0]["amount"] == 4 * TOKEN and events[0]["receipts_root"] == ROOT
    # earnings are spendable: withdraw them to the wallet
    wallet = env.token.balance_of(provider.address)
    env.market.withdraw(7 * TOKEN, sender=provider)
    assert env.token.balance_of(provider.address) == wallet + 7 * TOKEN
    env.conservation()


def test_redeem_with_units_past_the_record_width_pays_in_full(
    env: Env, parties: tuple[Account, Account]
) -> None:
    """Two channels of 2**104 - 1 units each overflow the record's units: the counter
    saturates, the payment goes through in full."""
    client, provider = parties
    first, second = _open(env, client, provider, 3 * TOKEN), _open(env, client, provider, 4 * TOKEN)
    env.market.redeem(first, *_voucher(env, client, first, 3 * TOKEN, 1, MASK_104), sender=provider)

    env.market.redeem(
        second, *_voucher(env, client, second, 4 * TOKEN, 2, MASK_104), sender=provider
    )

    assert env.market.record(provider.address) == Contribution(7 * TOKEN, 3, MASK_104)
    assert env.market.balance_of(provider.address) == 7 * TOKEN
    assert env.market.channel(second).units == MASK_104
    env.conservation()


def test_redeem_with_a_full_record_pays_in_full(env: Env, parties: tuple[Account, Account]) -> None:
    """A record whose jobs and units are at their widths stays there; each later
    redemption pays the provider in full."""
    client, provider = parties
    _set_record(env, provider.address, 0, MASK_56 - 1, MASK_104 - 1)
    terms = _open(env, client, provider, 10 * TOKEN)
    env.market.redeem(terms, *_voucher(env, client, terms, 2 * TOKEN, 5, 5), sender=provider)

    env.market.redeem(terms, *_voucher(env, client, terms, 6 * TOKEN, 9, 9), sender=provider)

    assert env.market.record(provider.address) == Contribution(6 * TOKEN, MASK_56, MASK_104)
    assert env.market.balance_of(provider.address) == 6 * TOKEN
    wallet = env.token.balance_of(provider.address)
    env.market.withdraw(6 * TOKEN, sender=provider)
    assert env.token.balance_of(provider.address) == wallet + 6 * TOKEN
    env.conservation()


def test_redeem_replayed_voucher_reverts(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    terms = _open(env, client, provider)
    voucher, sig = _voucher(env, client, terms, TOKEN, 1, 1)
    env.market.redeem(terms, voucher, sig, sender=provider)
    with pytest.raises(ContractReverted) as exc:
        env.market.redeem(terms, voucher, sig, sender=provider)
    assert _reason(exc) == "market: voucher already redeemed"
    assert env.market.record(provider.address).earned == TOKEN


def test_redeem_voucher_that_pays_nothing_reverts(
    env: Env, parties: tuple[Account, Account]
) -> None:
    """More jobs and units for no more tokens would pump the record for free."""
    client, provider = parties
    terms = _open(env, client, provider)
    env.market.redeem(terms, *_voucher(env, client, terms, TOKEN, 1, 1), sender=provider)
    free_first = _open(env, client, provider)

    with pytest.raises(ContractReverted) as more_jobs:
        env.market.redeem(
            terms, *_voucher(env, client, terms, TOKEN, 2**48 - 1, 9), sender=provider
        )
    with pytest.raises(ContractReverted) as zero:
        env.market.redeem(free_first, *_voucher(env, client, free_first, 0, 5, 5), sender=provider)

    assert _reason(more_jobs) == _reason(zero) == "market: voucher pays nothing"
    assert env.market.record(provider.address) == Contribution(TOKEN, 1, 1)


def test_redeem_publishes_the_receipts_root_and_stores_none(
    env: Env, parties: tuple[Account, Account]
) -> None:
    """A redemption writes two slots (the channel's state, the provider's record): the
    receipts root travels in the event only; a dispute presents the signed voucher."""
    client, provider = parties
    paid_before = _open(env, client, provider)
    env.market.redeem(
        paid_before, *_voucher(env, client, paid_before, TOKEN, 1, 1), sender=provider
    )
    terms = _open(env, client, provider)
    first = Voucher(terms.id, TOKEN, 1, 1, b"\x01" * 32)
    second = Voucher(terms.id, 2 * TOKEN, 2, 2, b"\x02" * 32)

    one = env.market.redeem(
        terms, first, sign_voucher(client, env.market.domain(), first), sender=provider
    )
    two = env.market.redeem(
        terms, second, sign_voucher(client, env.market.domain(), second), sender=provider
    )

    roots = [env.market._events("VoucherRedeemed", r)[0]["receipts_root"] for r in (one, two)]
    assert roots == [b"\x01" * 32, b"\x02" * 32]
    assert not any(f.get("name") == "redeemed_root" for f in env.market._c.abi)
    # about 43.3k each; a stored root cost 22k more on the first, 5k on every later one
    assert max(one.gas_used, two.gas_used) < 45_000


def test_channels_lock_the_provider_stake_in_whole_days(
    env: Env, parties: tuple[Account, Account]
) -> None:
    client, provider = parties
    day = env.market._call("LOCK_GRANULARITY")
    start = env.now() // day * day + day  # the next day boundary: room for two opens
    env.backend.advance_time(start - env.now() + 60)
    expiry = start + 2 * day

    first, _ = env.market.open_channel(provider.address, TOKEN, expiry, sender=client)
    lock = env.market.locked_until(provider.address)
    env.market.open_channel(provider.address, TOKEN, expiry + 3600, sender=client)
    same_day = env.market.locked_until(provider.address)
    env.market.top_up(first, TOKEN, expiry + day, sender=client)

    end = expiry + CLOSE_WINDOW
    assert lock == same_day == end // day * day + day
    assert env.market.locked_until(provider.address) == lock + day
    assert env.market.stake_locked(provider.address)


def test_redeem_stale_voucher_reverts(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    terms = _open(env, client, provider)
    old, old_sig = _voucher(env, client, terms, TOKEN, 1, 1)
    new, new_sig = _voucher(env, client, terms, 2 * TOKEN, 2, 2)
    env.market.redeem(terms, new, new_sig, sender=provider)
    with pytest.raises(ContractReverted) as exc:
        env.market.redeem(terms, old, old_sig, sender=provider)
    assert _reason(exc) == "market: stale voucher"


SIGNER_REASON = (
    "market: voucher not signed by the channel's client (wrong signer, chain or contract)"
)


@pytest.mark.parametrize("case", ["wrong_signer", "wrong_chain", "wrong_contract"])
def test_redeem_rejects_voucher_from_wrong_signer_or_domain(
    env: Env, parties: tuple[Account, Account], case: str
) -> None:
    client, provider = parties
    terms = _open(env, client, provider)
    voucher = Voucher(terms.id, TOKEN, 1, 1, ROOT)
    domain = env.market.domain()
    signer = client
    if case == "wrong_signer":
        signer = env.users[5]
    elif case == "wrong_chain":
        domain = dataclasses.replace(domain, chain_id=domain.chain_id + 1)
    else:
        domain = dataclasses.replace(domain, verifying_contract=env.token.address)
    sig = sign_voucher(signer, domain, voucher)
    with pytest.raises(ContractReverted) as exc:
        env.market.redeem(terms, voucher, sig, sender=provider)
    assert _reason(exc) == SIGNER_REASON
    assert env.market.channel(terms).paid == 0


def test_redeem_rejects_malleable_signature(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    terms = _open(env, client, provider)
    voucher, sig = _voucher(env, client, terms, TOKEN, 1, 1)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    flipped = Signature(
        v=55 - sig.v, r=sig.r, s=(n - int.from_bytes(sig.s, "big")).to_bytes(32, "big")
    )
    with pytest.raises(ContractReverted) as exc:
        env.market.redeem(terms, voucher, flipped, sender=provider)
    assert _reason(exc) == "market: malleable voucher signature"


def test_redeem_more_than_deposit_reverts(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    terms = _open(env, client, provider, 5 * TOKEN)
    voucher, sig = _voucher(env, client, terms, 5 * TOKEN + 1, 1, 1)
    with pytest.raises(ContractReverted) as exc:
        env.market.redeem(terms, voucher, sig, sender=provider)
    assert _reason(exc) == "market: voucher exceeds channel deposit"


def test_redeem_by_non_provider_reverts(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    terms = _open(env, client, provider)
    voucher, sig = _voucher(env, client, terms, TOKEN, 1, 1)
    with pytest.raises(ContractReverted) as exc:
        env.market.redeem(terms, voucher, sig, sender=client)
    assert _reason(exc) == "market: caller is not the channel's provider"


def test_redeem_unknown_or_closed_channel_reverts(
    env: Env, parties: tuple[Account, Account]
) -> None:
    client, provider = parties
    ghost = ChannelTerms(client.address, provider.address, TOKEN, env.now() + 10, 1)
    voucher, sig = _voucher(env, client, ghost, 1, 1, 1)
    with pytest.raises(ContractReverted) as exc:
        env.market.redeem(ghost, voucher, sig, sender=provider)
    assert _reason(exc) == "market: unknown channel"

    terms = _open(env, client, provider)
    env.market.close(terms, sender=provider)
    voucher, sig = _voucher(env, client, terms, 1, 1, 1)
    with pytest.raises(ContractReverted) as exc:
        env.market.redeem(terms, voucher, sig, sender=provider)
    assert _reason(exc) == "market: channel closed"


def test_redeem_voucher_for_other_channel_is_refused_in_python(
    env: Env, parties: tuple[Account, Account]
) -> None:
    client, provider = parties
    a, b = _open(env, client, provider), _open(env, client, provider)
    voucher, sig = _voucher(env, client, a, 1, 1, 1)
    with pytest.raises(InvalidInput):
        env.market.redeem(b, voucher, sig, sender=provider)


def test_provider_redeems_after_expiry_inside_window(
    env: Env, parties: tuple[Account, Account]
) -> None:
    client, provider = parties
    terms = _open(env, client, provider)
    voucher, sig = _voucher(env, client, terms, TOKEN, 1, 1)
    env.backend.advance_time(3600 + 3600)  # expired, but the close window (1 day) is open

    env.market.redeem(terms, voucher, sig, sender=provider)

    assert env.market.channel(terms).paid == TOKEN


# -- close ---------------------------------------------------------------------


def test_client_closes_after_window_and_gets_the_rest(
    env: Env, parties: tuple[Account, Account]
) -> None:
    client, provider = parties
    terms = _open(env, client, provider, 50 * TOKEN)
    voucher, sig = _voucher(env, client, terms, 8 * TOKEN, 2, 2)
    env.market.redeem(terms, voucher, sig, sender=provider)
    env.backend.advance_time(3600 + 24 * 3600 + 1)

    env.market.close(terms, sender=client)

    assert env.market.balance_of(client.address) == 42 * TOKEN
    state = env.market.channel(terms)
    assert state.closed and not state.open
    env.conservation()


def test_client_cannot_close_inside_window(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    terms = _open(env, client, provider)
    env.backend.advance_time(3600 + 60)
    with pytest.raises(ContractReverted) as exc:
        env.market.close(terms, sender=client)
    assert _reason(exc) == "market: channel not expired or still in its redeem window"


def test_provider_may_close_early(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    terms = _open(env, client, provider, 50 * TOKEN)
    env.market.close(terms, sender=provider)
    assert env.market.balance_of(client.address) == 50 * TOKEN


def test_close_by_stranger_or_twice_reverts(env: Env, parties: tuple[Account, Account]) -> None:
    client, provider = parties
    terms = _open(env, client, provider)
    with pytest.raises(ContractReverted) as exc:
        env.market.close(terms, sender=env.users[7])
    assert _reason(exc) == "market: caller is not a party of the channel"
    env.market.close(terms, sender=provider)
    with pytest.raises(ContractReverted) as exc:
        env.market.close(terms, sender=provider)
    assert _reason(exc) == "market: channel closed"
    env.conservation()


# -- arbiter / slash hook ------------------------------------------------------


def test_deployment_names_the_dispute_contract_arbiter_for_good(env: Env) -> None:
    """The owner cannot point the arbiter at itself later (and take every stake)."""
    disputes = env.ledger.deployment.address("disputes")

    with pytest.raises(ContractReverted) as by_owner:
        env.market.set_arbiter(env.owner.address, sender=env.owner)
    with pytest.raises(ContractReverted) as by_user:
        env.market.set_arbiter(env.users[4].address, sender=env.users[4])

    assert env.market.arbiter() == disputes
    assert _reason(by_owner) == "market: arbiter already set"
    assert _reason(by_user) == "ownable: caller is not the owner"


def test_set_arbiter_once_owner_only(env: Env) -> None:
    market = _deploy_market(env, MIN_CLOSE_WINDOW)
    with pytest.raises(ContractReverted) as zero:
        market.set_arbiter("0x" + "00" * 20, sender=env.owner)
    with pytest.raises(ContractReverted) as stranger:
        market.set_arbiter(env.users[3].address, sender=env.users[3])

    market.set_arbiter(env.users[3].address, sender=env.owner)

    assert market.arbiter() == env.users[3].address
    with pytest.raises(ContractReverted) as again:
        market.set_arbiter(env.owner.address, sender=env.owner)
    assert _reason(zero) == "market: arbiter is the zero address"
    assert _reason(stranger) == "ownable: caller is not the owner"
    assert _reason(again) == "market: arbiter already set"


def test_market_ownership_moves_in_two_steps(env: Env) -> None:
    heir = env.users[5]

    env.market.transfer_ownership(heir.address, sender=env.owner)
    still = env.market.owner()
    env.market.accept_ownership(sender=heir)

    assert still == env.owner.address
    assert env.market.owner() == heir.address


# -- views shared with Python --------------------------------------------------


def test_voucher_digest_matches_python(env: Env, parties: tuple[Account, Account]) -> None:
    terms = _open(env, *parties)
    voucher = Voucher(terms.id, 123, 4, 5, ROOT)
    assert env.market.voucher_digest(voucher) == voucher_digest(env.market.domain(), voucher)


def test_wrong_domain_digest_differs(env: Env) -> None:
    voucher = Voucher(b"\x01" * 32, 1, 1, 1, ROOT)
    domain = env.market.domain()
    other = Domain(domain.name, domain.chain_id + 1, domain.verifying_contract)
    assert voucher_digest(other, voucher) != env.market.voucher_digest(voucher)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 8])
def test_receipt_proofs_verify_on_chain(env: Env, count: int) -> None:
    receipts = [
        Receipt(
            b"\x05" * 32,
            i.to_bytes(32, "big"),
            env.users[1].address,
            b"\x06" * 32,
            b"\x07" * 32,
            b"\x09" * 32,
            10 + i,
            100 + i,
        )
        for i in range(count)
    ]
    root = receipts_root(receipts)
    for i, receipt in enumerate(receipts):
        assert env.market.verify_receipt(receipt.leaf(), receipts_proof(receipts, i), root)
    tampered = dataclasses.replace(receipts[0], amount=receipts[0].amount + 1)
    assert not env.market.verify_receipt(tampered.leaf(), receipts_proof(receipts, 0), root)


# -- usage royalties ---------------------------------------------------------------


def _royal(
    env: Env,
    client: Account,
    terms: ChannelTerms,
    amount: int,
    jobs: int,
    lines: tuple[tuple[bytes, int], ...],
) -> tuple[Voucher, Signature]:
    """A voucher with royalty lines, signed; built without Voucher's own checks (so
    that attack tests can send what a careful client never signs)."""
    voucher = object.__new__(Voucher)
    for name, value in zip(
        ("channel", "amount", "jobs", "units", "receipts_root", "royalties"),
        (terms.id, amount, jobs, jobs, ROOT, lines),
        strict=True,
    ):
        object.__setattr__(voucher, name, value)
    return voucher, sign_voucher(client, env.market.domain(), voucher)


@pytest.fixture
def royal_model(env: Env) -> tuple[bytes, Account]:
    """A registered model whose registrant (and trainer) set a royalty."""
    from idlegrid.chain import ModelRegistryClient, RewardPoolClient

    registrant = env.users[2]
    model = keccak(b"a model with a royalty")
    env.ledger.client("models", ModelRegistryClient).register(model, sender=registrant)
    pool = env.ledger.client("rewards", RewardPoolClient)
    pool.set_royalty(model, 10**6, 0, sender=registrant)
    return model, registrant


def test_a_voucher_s_royalties_go_to_the_model_s_lineage_and_only_their_increase(
    env: Env, parties: tuple[Account, Account], royal_model: tuple[bytes, Account]
) -> None:
    from idlegrid.chain import RewardPoolClient

    client, provider = parties
    model, registrant = royal_model
    pool = env.ledger.client("rewards", RewardPoolClient)
    terms = _open(env, client, provider)

    env.market.redeem(
        terms, *_royal(env, client, terms, 3 * TOKEN, 2, ((model, TOKEN),)), sender=provider
    )
    first = (env.market.record(provider.address).earned, pool.owed(registrant.address))
    env.market.redeem(
        terms, *_royal(env, client, terms, 5 * TOKEN, 3, ((model, TOKEN + 7),)), sender=provider
    )

    assert first == (2 * TOKEN, TOKEN)
    assert env.market.record(provider.address).earned == 4 * TOKEN - 7
    assert pool.owed(registrant.address) == TOKEN + 7
    assert env.market.royalties_paid(terms.id, model) == TOKEN + 7
    assert env.market.channel(terms).paid == 5 * TOKEN
    env.conservation()


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (lambda m, o: ((m, 3 * TOKEN + 1),), "market: royalties exceed what the voucher pays"),
        (lambda m, o: ((o, 1), (m, 1)) if o > m else ((m, 1), (o, 1))[::-1], "ascending"),
        (lambda m, o: ((m, 1), (m, 1)), "ascending"),
        (lambda m, o: ((o, 1),), "rewards: model not registered"),
    ],
    ids=["more-than-paid", "unsorted", "repeated", "unregistered-model"],
)
def test_royalty_lines_a_careful_client_never_signs_are_refused(
    env: Env,
    parties: tuple[Account, Account],
    royal_model: tuple[bytes, Account],
    lines: object,
    reason: str,
) -> None:
    """Refused whole: nothing paid, and the provider can still redeem a right voucher."""
    client, provider = parties
    model, _ = royal_model
    other = keccak(b"a model nobody registered")
    terms = _open(env, client, provider)
    bad = lines(model, other)  # type: ignore[operator]

    with pytest.raises(ContractReverted) as exc:
        env.market.redeem(terms, *_royal(env, client, terms, 3 * TOKEN, 1, bad), sender=provider)
    env.market.redeem(
        terms, *_royal(env, client, terms, 3 * TOKEN, 1, ((model, 1),)), sender=provider
    )

    assert reason in _reason(exc)
    assert env.market.record(provider.address).earned == 3 * TOKEN - 1
    env.conservation()


def test_royalty_lines_are_signed_and_never_go_back(
    env: Env, parties: tuple[Account, Account], royal_model: tuple[bytes, Account]
) -> None:
    client, provider = parties
    model, _ = royal_model
    terms = _open(env, client, provider)
    voucher, signature = _royal(env, client, terms, 3 * TOKEN, 1, ((model, TOKEN),))
    stripped = dataclasses.replace(voucher, royalties=())  # the provider keeps it all

    with pytest.raises(ContractReverted) as forged:
        env.market.redeem(terms, stripped, signature, sender=provider)
    env.market.redeem(terms, voucher, signature, sender=provider)
    with pytest.raises(ContractReverted) as stale:
        env.market.redeem(
            terms, *_royal(env, client, terms, 4 * TOKEN, 2, ((model, 1),)), sender=provider
        )

    assert "not signed by the channel's client" in _reason(forged)
    assert _reason(stale) == "market: stale royalty line"
    assert env.market.royalties_paid(terms.id, model) == TOKEN
    env.conservation()


def test_a_market_without_a_royalty_pool_refuses_royalties_but_not_plain_vouchers(
    env: Env, parties: tuple[Account, Account], royal_model: tuple[bytes, Account]
) -> None:
    client, provider = parties
    model, _ = royal_model
    market = _deploy_market(env, CLOSE_WINDOW)
    env.token.approve(market.address, MAX, sender=client)
    terms, _ = market.open_channel(provider.address, 10 * TOKEN, env.now() + 3600, sender=client)
    royal = _royal(env, client, terms, TOKEN, 1, ((model, 1),))
    royal = (royal[0], sign_voucher(client, market.domain(), royal[0]))
    plain = Voucher(terms.id, TOKEN, 1, 1, ROOT)

    with pytest.raises(ContractReverted) as exc:
        market.redeem(terms, *royal, sender=provider)
    market.redeem(terms, plain, sign_voucher(client, market.domain(), plain), sender=provider)

    assert _reason(exc) == "market: no royalty pool to pay royalties to"
    assert market.record(provider.address).earned == TOKEN
    assert market.royalty_pool() is None
    env.conservation(market.address)
