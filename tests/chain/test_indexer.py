"""The event indexer against the contracts' own view, on both backends.

A scripted ledger history (two providers, three channels, top-up, vouchers,
slash, unbonding, withdrawals, closes) runs in two phases; every test checks
the index it builds against what the registry and market say.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode
from eth_utils import keccak
from web3 import Web3

from idlegrid import ConfigError, InvalidInput, UsageError
from idlegrid.chain import (
    CONTRACTS,
    TOKEN,
    ChannelStatus,
    ChannelTerms,
    Deployment,
    Indexer,
    Ledger,
    RegistryClient,
    TxResult,
    _index_db,
    deploy_contract,
)
from idlegrid.protocol import Voucher, sign_voucher

from ..conftest import CONFIG, Env

#: the ledger the script runs on: token, registry and market, without the dispute
#: contract, so that the script can name an account the market's arbiter and slash
CORE = tuple(spec for spec in CONTRACTS if spec.key in ("token", "registry", "market"))


@pytest.fixture
def env(env: Env) -> Iterator[Env]:
    """The shared env, with a fresh registry and market (no arbiter yet) on its token."""
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
    addresses = {"token": env.token.address, "registry": registry, "market": market}
    saved = env.ledger
    env.ledger = Ledger(backend, Deployment(backend.chain_id, addresses), contracts=CORE)
    try:
        yield env
    finally:
        env.ledger = saved


# ledger events the index does not apply (wiring and allowances, not state it keeps)
def ledger_logs(env: Env, until: int | None = None) -> int:
    """How many events the index should record up to block ``until`` (the head if
    None): every log of the ledger's contracts since the deployment, as the chain
    reports them."""
    ledger = [
        Web3.to_checksum_address(a)
        for a in (env.token.address, env.registry.address, env.market.address)
    ]
    last = env.backend.block_number() if until is None else until
    logs = env.backend.w3.eth.get_logs(
        {"fromBlock": env.ledger.deployment.start_block, "toBlock": last, "address": ledger}
    )
    return len(logs)


def _root(n: int) -> bytes:
    return bytes([n]) * 32


@dataclass
class Script:
    """Runs the scripted history on ``env``; remembers what it did."""

    env: Env
    results: list[TxResult] = field(default_factory=list)
    channels: dict[str, ChannelTerms] = field(default_factory=dict)
    roots: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.p1, self.p2, self.c1, self.c2, self.arbiter, self.beneficiary = self.env.users[:6]

    def tx(self, result: TxResult) -> None:
        self.results.append(result)

    def redeem(self, name: str, amount: int, jobs: int, units: int, root: bytes) -> None:
        terms = self.channels[name]
        client = self.c1 if terms.client == self.c1.address else self.c2
        provider = self.p1 if terms.provider == self.p1.address else self.p2
        voucher = Voucher(terms.id, amount, jobs, units, root)
        signature = sign_voucher(client, self.env.market.domain(), voucher)
        self.tx(self.env.market.redeem(terms, voucher, signature, sender=provider))
        self.roots[name] = root

    def phase_one(self) -> None:
        """Register, update, stake, deposit, open, top up, redeem."""
        env, t = self.env, TOKEN
        for p in (self.p1, self.p2):
            self.tx(env.token.approve(env.registry.address, 1000 * t, sender=p))
        self.tx(env.registry.register("http://p1", 3, _root(1), 200 * t, sender=self.p1))
        self.tx(env.registry.register("http://p2", 5, _root(2), 150 * t, sender=self.p2))
        self.tx(env.registry.update("http://p1:8080", 4, _root(3), sender=self.p1))
        self.tx(env.registry.add_stake(50 * t, sender=self.p2))
        for c in (self.c1, self.c2):
            self.tx(env.token.approve(env.market.address, 1000 * t, sender=c))
        self.tx(env.market.deposit(100 * t, sender=self.c1))
        expiry = env.now() + 3600
        for name, client, provider, amount in (
            ("a", self.c1, self.p1, 300 * t),  # 100 from the market balance, 200 from the wallet
            ("b", self.c1, self.p2, 50 * t),
            ("c", self.c2, self.p1, 80 * t),
        ):
            terms, result = env.market.open_channel(provider.address, amount, expiry, sender=client)
            self.channels[name] = terms
            self.tx(result)
        self.tx(env.market.top_up(self.channels["a"], 40 * t, expiry + 600, sender=self.c1))
        self.redeem("a", 50 * t, 2, 10, _root(10))
        self.redeem("a", 120 * t, 5, 30, _root(11))
        self.redeem("b", 20 * t, 1, 7, _root(12))
        self.redeem("c", 80 * t, 3, 9, _root(13))
        # a last block with no event the index applies
        self.tx(env.token.approve(env.market.address, 1000 * t, sender=self.c2))

    def phase_two(self) -> None:
        """Unbond below the minimum, withdraw stake (its channels expired), restake,
        slash, close, withdraw."""
        env, t = self.env, TOKEN
        self.tx(env.registry.begin_unbonding(150 * t, sender=self.p1))
        env.backend.advance_time(env.registry.unbonding_delay() + 1)
        self.tx(env.registry.withdraw(sender=self.p1))
        self.tx(env.registry.add_stake(100 * t, sender=self.p1))
        self.tx(env.market.set_arbiter(self.arbiter.address, sender=env.owner))
        self.tx(
            env.market.slash(self.p2.address, 30 * t, self.beneficiary.address, sender=self.arbiter)
        )
        self.tx(env.market.close(self.channels["b"], sender=self.p2))
        self.tx(env.market.close(self.channels["a"], sender=self.c1))
        self.tx(env.market.withdraw(100 * t, sender=self.p1))
        self.tx(env.market.withdraw(10 * t, sender=self.c1))

    def applied_events(self) -> int:
        """How many events the index should record for the history so far."""
        return ledger_logs(self.env)


def assert_matches_chain(index: Indexer, script: Script) -> None:
    """The index says what the contracts say, for every account and channel."""
    env = script.env
    for p in (script.p1, script.p2):
        chain = env.registry.provider(p.address)
        got = index.provider(p.address)
        assert got is not None
        assert (got.address, got.endpoint, got.price, got.capabilities) == (
            chain.address,
            chain.endpoint,
            chain.price,
            chain.capabilities,
        )
        assert (got.stake, got.unbonding, got.withdrawable_at, got.active) == (
            chain.stake,
            chain.unbonding,
            chain.withdrawable_at,
            chain.active,
        )
    assert sorted(p.address for p in index.providers()) == sorted(env.registry.active_providers())
    for name, terms in script.channels.items():
        chain_state = env.market.channel(terms)
        channel = index.channel(terms.id)
        assert channel is not None
        assert channel.terms == terms
        assert (channel.deposit, channel.expiry, channel.paid, channel.jobs, channel.units) == (
            chain_state.deposit,
            chain_state.expiry,
            chain_state.paid,
            chain_state.jobs,
            chain_state.units,
        )
        assert (channel.status is ChannelStatus.CLOSED) == chain_state.closed
        assert (channel.status is ChannelStatus.OPEN) == chain_state.open
        assert index.receipts_root(terms.id) == script.roots.get(name)
    for address in env.all_addresses():
        assert index.contribution(address).as_contribution() == env.market.record(address)
        assert index.balance_of(address) == env.market.balance_of(address)


def dump(index: Indexer, env: Env) -> tuple[Any, ...]:
    """Everything the index can answer, for comparing two indexes."""
    return (
        index.last_block,
        index.providers(active_only=False),
        index.channels(),
        index.redemptions(),
        index.contributions(),
        index.slashes(),
        [index.balance_of(a) for a in env.all_addresses()],
    )


def new_index(env: Env, path: Path, **options: Any) -> Indexer:
    return Indexer(env.backend, env.ledger.deployment, path, contracts=CORE, **options)


def test_index_matches_contracts_after_full_history(env: Env, tmp_path: Path) -> None:
    # Prepare
    script = Script(env)
    script.phase_one()
    script.phase_two()

    # Execute
    with new_index(env, tmp_path / "index.db") as index:
        report = index.sync()

        # Assert
        assert report.events_applied == script.applied_events()
        assert report.last_block == report.head == env.backend.block_number()
        assert_matches_chain(index, script)
        p1, p2, t = script.p1.address, script.p2.address, TOKEN
        a, b, c = (script.channels[n] for n in "abc")
        assert [r.amount for r in index.redemptions(channel=a.id)] == [50 * t, 70 * t]
        assert [(r.paid, r.jobs, r.units) for r in index.redemptions(channel=a.id)] == [
            (50 * t, 2, 10),
            (120 * t, 5, 30),
        ]
        assert [r.channel for r in index.redemptions(provider=p1)] == [a.id, a.id, c.id]
        # the latest few, still oldest first
        assert index.redemptions(provider=p1, latest=2) == index.redemptions(provider=p1)[1:]
        assert index.redemptions(latest=1) == index.redemptions()[-1:]
        with pytest.raises(InvalidInput):
            index.redemptions(latest=0)
        assert index.contribution(p1) == dataclasses.replace(
            index.contribution(p1), earned=200 * t, jobs=8, units=39, redemptions=3
        )
        assert index.contributions() == sorted(
            [index.contribution(p1), index.contribution(p2)], key=lambda x: x.provider
        )
        provider1, provider2 = index.provider(p1), index.provider(p2)
        assert provider1 is not None and provider2 is not None
        assert (provider1.endpoint, provider1.price, provider1.capabilities) == (
            "http://p1:8080",
            4,
            _root(3),
        )
        assert (provider1.stake, provider1.slashed_total) == (150 * t, 0)
        assert (provider2.stake, provider2.slashed_total) == (170 * t, 30 * t)
        [slash] = index.slashes()
        assert (slash.provider, slash.beneficiary, slash.amount, slash.stake) == (
            p2,
            script.beneficiary.address,
            30 * t,
            170 * t,
        )
        assert index.slashes(provider=p1) == []
        # reputation: p1 paid by two clients (c1's 120 capped at 100 tokens), p2 slashed
        rep1, rep2 = index.reputation(p1), index.reputation(p2)
        assert (rep1.clients, rep1.counted, rep1.points) == (2, 200 * t, 10_000 + 8_944)
        assert rep2.penalised and index.reputations() == {p1: rep1, p2: rep2}
        channel_a, channel_b = index.channel(a.id), index.channel(b.id)
        assert channel_a is not None and channel_b is not None
        assert (channel_a.opening_deposit, channel_a.deposit) == (300 * t, 340 * t)
        assert (channel_a.refund, channel_b.refund) == (220 * t, 30 * t)
        assert [ch.id for ch in index.channels(client=script.c1.address)] == [a.id, b.id]
        assert [ch.id for ch in index.channels(provider=p1)] == [a.id, c.id]
        assert [ch.id for ch in index.channels(status="open")] == [c.id]
        assert [ch.id for ch in index.channels(provider=p1, status=ChannelStatus.CLOSED)] == [a.id]
        assert index.channels(client=script.c2.address, provider=p2) == []


def test_index_answers_for_unknown_things(env: Env, tmp_path: Path) -> None:
    # Prepare
    stranger = env.users[9].address
    with new_index(env, tmp_path / "index.db") as index:
        # Execute
        report = index.sync()

        # Assert: only the setup's (the token's mints, the contracts' wiring)
        assert report.events_applied == ledger_logs(env)
        assert index.providers(active_only=False) == []
        assert index.provider(stranger) is None
        assert index.channel(b"\x07" * 32) is None
        assert index.receipts_root(b"\x07" * 32) is None
        assert index.contribution(stranger).as_contribution() == env.market.record(stranger)
        assert index.balance_of(stranger) == 0
        assert index.reputation(stranger).points == 0 and index.reputations() == {}
        with pytest.raises(InvalidInput):
            index.channels(status="pending")
        with pytest.raises(InvalidInput):
            index.channel(b"short")
        with pytest.raises(InvalidInput):
            index.provider("not an address")
    with pytest.raises(UsageError):
        index.providers()


def test_incremental_sync_applies_only_new_events(env: Env, tmp_path: Path) -> None:
    # Prepare
    script = Script(env)
    script.phase_one()
    with new_index(env, tmp_path / "index.db") as index:
        first = index.sync()
        phase_one_events = script.applied_events()
        assert first.events_applied == phase_one_events
        assert_matches_chain(index, script)
        script.phase_two()

        # Execute
        second = index.sync()
        third = index.sync()

        # Assert
        assert second.events_applied == script.applied_events() - phase_one_events
        assert first.last_block is not None
        assert second.blocks_scanned == env.backend.block_number() - first.last_block
        assert (third.blocks_scanned, third.events_applied) == (0, 0)
        assert_matches_chain(index, script)
        assert len(index.redemptions()) == 4


def test_index_survives_restart(env: Env, tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "index.db"
    script = Script(env)
    script.phase_one()
    with new_index(env, path) as index:
        index.sync()
        before = dump(index, env)

    # Execute
    with new_index(env, path) as reopened:
        unsynced = dump(reopened, env)
        again = reopened.sync()
        after = dump(reopened, env)
        script.phase_two()
        more = reopened.sync()

        # Assert
        assert unsynced == before == after
        assert again.events_applied == 0
        assert more.events_applied > 0
        assert_matches_chain(reopened, script)
        keys = [(r.tx_hash, r.log_index) for r in reopened.redemptions()]
        assert len(keys) == len(set(keys)) == 4


def test_crash_mid_batch_rolls_back_the_whole_batch(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the third redemption fails as it is applied
    script = Script(env)
    script.phase_one()
    script.phase_two()
    real = _index_db.MARKET_EVENTS["VoucherRedeemed"]
    calls: list[int] = []

    def crash_on_third(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("crash")
        real(*args)

    monkeypatch.setitem(_index_db.MARKET_EVENTS, "VoucherRedeemed", crash_on_third)
    path = tmp_path / "index.db"

    # Execute
    with new_index(env, path, batch_blocks=1) as index, pytest.raises(RuntimeError):
        index.sync()
    calls.clear()
    with new_index(env, tmp_path / "one-batch.db") as index, pytest.raises(RuntimeError):
        index.sync()
    monkeypatch.setitem(_index_db.MARKET_EVENTS, "VoucherRedeemed", real)
    with new_index(env, tmp_path / "one-batch.db") as index:
        one_batch = dump(index, env)
    with new_index(env, path, batch_blocks=1) as index:
        crashed = dump(index, env)
        index.sync()
        resumed = dump(index, env)
    with new_index(env, tmp_path / "reference.db") as reference:
        reference.sync()
        expected = dump(reference, env)

    # Assert: stopped just before the block of the failed redemption, with
    # every event of the earlier blocks; then resumed to the same index. With
    # one batch for everything, nothing at all was kept.
    assert one_batch[:6] == (None, [], [], [], [], [])
    last_block, redemptions = crashed[0], crashed[3]
    assert last_block == expected[3][2].block - 1
    assert redemptions == expected[3][:2]
    assert resumed == expected


def test_small_batches_give_the_same_index(env: Env, tmp_path: Path) -> None:
    # Prepare
    script = Script(env)
    script.phase_one()
    script.phase_two()

    # Execute
    states = []
    for batch in (1, 2, 2000):
        with new_index(env, tmp_path / f"batch{batch}.db", batch_blocks=batch) as index:
            report = index.sync()
            assert report.events_applied == script.applied_events()
            states.append(dump(index, env))

    # Assert
    assert states[0] == states[1] == states[2]


def test_confirmations_hold_back_the_newest_blocks(env: Env, tmp_path: Path) -> None:
    # Prepare: the script ends with the redemption on channel c, then an approval
    script = Script(env)
    script.phase_one()
    channel_c = script.channels["c"].id
    with new_index(env, tmp_path / "index.db", confirmations=2) as index:
        # Execute
        held = index.sync()
        root_held = index.receipts_root(channel_c)
        for _ in range(2):  # two more blocks bury those two transactions deep enough
            env.token.transfer(env.owner.address, 1, sender=script.c2)
        released = index.sync()

        # Assert
        head = env.backend.block_number()
        assert held.last_block == head - 4
        assert held.events_applied == ledger_logs(env, head - 4)
        assert held.events_applied < script.applied_events()
        assert root_held is None
        assert released.last_block == head - 2
        assert released.events_applied == ledger_logs(env, head - 2) - ledger_logs(env, head - 4)
        assert index.receipts_root(channel_c) == _root(13)
        assert_matches_chain(index, script)


def test_opening_for_another_deployment_raises(env: Env, tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "index.db"
    deployment = env.ledger.deployment
    with new_index(env, path) as index:
        index.sync()
    elsewhere = env.users[9].address

    # Execute / Assert
    for other in (
        dataclasses.replace(deployment, chain_id=deployment.chain_id + 1),
        deployment.replace(registry=elsewhere),
        deployment.replace(market=elsewhere),
        deployment.replace(token=elsewhere),
    ):
        with pytest.raises(ConfigError):
            Indexer(env.backend, other, path, contracts=CORE)
    with new_index(env, path) as index:  # the right deployment still opens it
        assert index.last_block is not None


def test_backend_on_another_chain_raises(env: Env, tmp_path: Path) -> None:
    # Prepare
    other = dataclasses.replace(env.ledger.deployment, chain_id=env.backend.chain_id + 1)

    # Execute / Assert
    with (
        Indexer(env.backend, other, tmp_path / "index.db", contracts=CORE) as index,
        pytest.raises(ConfigError),
    ):
        index.sync()


def test_file_that_is_not_an_index_raises(env: Env, tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "index.db"
    path.write_bytes(b"not a database, " * 64)

    # Execute / Assert
    with pytest.raises(ConfigError):
        new_index(env, path)


def test_rewritten_history_raises(env: Env, tmp_path: Path) -> None:
    # Prepare: index a block, then replace it with another
    script = Script(env)
    snapshot = env.backend.snapshot()
    env.token.transfer(env.owner.address, 1, sender=script.p1)
    with new_index(env, tmp_path / "index.db") as index:
        index.sync()
        env.backend.revert(snapshot)
        env.token.transfer(env.owner.address, 2, sender=script.p2)

        # Execute / Assert
        with pytest.raises(ConfigError):
            index.sync()


def test_invalid_options_raise(env: Env, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        new_index(env, tmp_path / "a.db", confirmations=-1)
    with pytest.raises(InvalidInput):
        new_index(env, tmp_path / "b.db", batch_blocks=0)


def test_endpoint_that_is_not_utf8_does_not_stop_the_index(env: Env, tmp_path: Path) -> None:
    # Prepare: the registry stores String bytes unchecked, so raw calldata can
    # register an endpoint that is not UTF-8
    provider, t = env.users[0], TOKEN
    env.token.approve(env.registry.address, 100 * t, sender=provider)
    selector = keccak(text="register(string,uint256,bytes32,uint256)")[:4]
    args = encode(["bytes", "uint256", "bytes32", "uint256"], [b"\xffhttp", 1, _root(1), 100 * t])
    env.backend.send(
        provider, {"to": env.registry.address, "data": selector + args}, function="register"
    )

    with new_index(env, tmp_path / "index.db") as index:
        # Execute
        report = index.sync()

        # Assert
        # the setup's, then the approval, registered, activated and the stake's transfer
        assert report.events_applied == ledger_logs(env)
        [got] = index.providers()
        assert (got.address, got.endpoint, got.stake) == (provider.address, "\ufffdhttp", 100 * t)


def test_two_indexers_on_one_file_apply_each_event_once(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the second indexer syncs while the first is between fetch and write
    script = Script(env)
    script.phase_one()
    path = tmp_path / "index.db"
    with new_index(env, path) as first, new_index(env, path) as second:
        fetch = first._fetch

        def fetch_then_let_the_other_sync(start: int, end: int) -> Any:
            events = fetch(start, end)
            second.sync()
            return events

        monkeypatch.setattr(first, "_fetch", fetch_then_let_the_other_sync)

        # Execute
        report = first.sync()

        # Assert
        assert report.events_applied == 0
        assert first.last_block == second.last_block == env.backend.block_number()
        assert len(first.redemptions()) == 4
        assert_matches_chain(first, script)


def test_index_started_after_a_registration_raises(env: Env, tmp_path: Path) -> None:
    # Prepare: an index that starts after the provider registered misses its entry
    provider = env.users[0]
    env.token.approve(env.registry.address, 100 * TOKEN, sender=provider)
    registered = env.registry.register("http://p", 1, _root(1), 100 * TOKEN, sender=provider)
    env.registry.update("http://q", 2, _root(2), sender=provider)
    late = dataclasses.replace(env.ledger.deployment, start_block=registered.block + 1)

    with Indexer(env.backend, late, tmp_path / "index.db", contracts=CORE) as index:
        # Execute / Assert
        with pytest.raises(ConfigError):
            index.sync()
        assert index.last_block is None
        assert index.providers(active_only=False) == []


def test_activity_is_every_event_newest_first_with_its_block_time(env: Env, tmp_path: Path) -> None:
    # Prepare
    script = Script(env)
    script.phase_one()
    script.phase_two()

    with new_index(env, tmp_path / "index.db", block_times=True) as index:
        # Execute
        index.sync()
        newest = index.activity(limit=3)
        older = index.activity(limit=1000, before=newest[-1].seq)
        redeemed = index.activity(contract="market", names=["VoucherRedeemed"], limit=1000)

        # Assert: the whole log, once, in chain order, with the chain's timestamps
        everything = newest + older
        assert len(everything) == script.applied_events()
        assert [a.seq for a in everything] == sorted((a.seq for a in everything), reverse=True)
        head = env.backend.w3.eth.get_block(newest[0].block)
        assert newest[0].timestamp == int(head["timestamp"])
        assert index.block_time(newest[0].block) == int(head["timestamp"])
        assert len(redeemed) == len(index.redemptions())
        assert {a.args["channel"] for a in redeemed} == {
            "0x" + r.channel.hex() for r in index.redemptions()
        }
        assert index.activity(after=newest[0].seq) == []
        with pytest.raises(InvalidInput):
            index.read("DELETE FROM events")
        with pytest.raises(InvalidInput):
            index.activity(limit=0)


def test_without_block_times_only_a_batch_s_last_block_is_timed(env: Env, tmp_path: Path) -> None:
    # Prepare
    Script(env).phase_one()

    with new_index(env, tmp_path / "index.db") as index:
        # Execute
        report = index.sync()
        times = {a.block: a.timestamp for a in index.activity(limit=1000)}

    # Assert: no block read per event (a client's index needs no clock)
    assert report.last_block is not None
    assert times[report.last_block] is not None
    assert all(t is None for block, t in times.items() if block != report.last_block)


def test_each_redemption_s_increase_and_the_sums_by_hour_and_day_are_kept(
    env: Env, tmp_path: Path
) -> None:
    # Prepare: the script's redemptions, then one in the next hour (channel a is open
    # for 70 minutes from its top-up)
    script = Script(env)
    script.phase_one()
    env.backend.advance_time(3600 - env.now() % 3600 + 1)
    script.redeem("a", 150 * TOKEN, 9, 41, _root(14))

    # Execute: with the blocks' times (in one batch and block by block), and without
    indexes = {}
    runs: dict[str, dict[str, Any]] = {
        "timed": {"block_times": True},
        "timed_by_block": {"block_times": True, "batch_blocks": 1},
        "untimed": {},
    }
    for name, options in runs.items():
        with new_index(env, tmp_path / f"{name}.db", **options) as index:
            index.sync()
            added = index.read("SELECT jobs_added, units_added FROM redemptions ORDER BY seq")
            hourly = index.read("SELECT hour, amount, jobs, units, redemptions FROM hourly")
            daily = index.read("SELECT provider, day, amount, jobs FROM provider_days")
            redemptions = index.redemptions()
            times = {r.block: index.block_time(r.block) for r in redemptions}
            indexes[name] = ([(int(j), int(u)) for j, u in added], sorted(hourly), times,
                             sorted(daily))  # fmt: skip

    # Assert: what each redemption added to its channel's totals
    before: dict[bytes, tuple[int, int]] = {}
    expected_added = []
    for r in redemptions:
        jobs, units = before.get(r.channel, (0, 0))
        expected_added.append((r.jobs - jobs, r.units - units))
        before[r.channel] = (r.jobs, r.units)
    assert expected_added[-1] == (4, 11)  # channel a: 5 jobs and 30 units, then 9 and 41
    # the sums by the hour of each redemption's block, from the chain's own timestamps
    _, hourly, times, daily = indexes["timed"]
    sums: dict[int, list[int]] = {}
    for r, (jobs, units) in zip(redemptions, expected_added, strict=True):
        timestamp = times[r.block]
        assert timestamp is not None  # the timed index has every block's time
        hour = sums.setdefault(timestamp // 3600 * 3600, [0, 0, 0, 0])
        for i, value in enumerate((r.amount, jobs, units, 1)):
            hour[i] += value
    assert len(sums) >= 2  # the last redemption is in a later hour than the others
    assert [(h, int(a), int(j), int(u), n) for h, a, j, u, n in hourly] == sorted(
        (h, *v) for h, v in sums.items()
    )
    assert sum(int(a) for _, a, *_ in hourly) == sum(r.amount for r in redemptions)
    # and by provider and UTC day
    days: dict[tuple[str, int], list[int]] = {}
    for r, (jobs, _units) in zip(redemptions, expected_added, strict=True):
        timestamp = times[r.block]
        assert timestamp is not None
        day = days.setdefault((r.provider, timestamp // 86400 * 86400), [0, 0])
        day[0] += r.amount
        day[1] += jobs
    assert [(p, d, int(a), int(j)) for p, d, a, j in daily] == sorted(
        (p, d, *v) for (p, d), v in days.items()
    )
    assert indexes["timed"][:2] + indexes["timed"][3:] == (
        indexes["timed_by_block"][:2] + indexes["timed_by_block"][3:]
    )
    # an index without the blocks' times keeps the increases but no partial sums by time
    untimed = indexes["untimed"]
    assert untimed[0] == expected_added and untimed[1] == [] and untimed[3] == []
