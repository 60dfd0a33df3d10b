"""Stateful invariant test of the whole ledger: token, registry, market, disputes and
the reward pool.

Hypothesis drives random sequences of registrations, stake changes, unbonding and
withdrawal of stake (refused while channels or disputes back it), attempts to take
the arbiter or slash outside a dispute (always refused), disputes of redeemed job
receipts (opened with a bond, drawn, voted, resolved, or left open for a while),
market deposits and withdrawals
(earnings included), channels, top-ups, off-chain vouchers, redemptions (latest,
stale, replayed or forged), closes (client after expiry and window, provider early,
strangers never), approvals, the passing of time, and a federated run's reward pool
(funding, rounds registered and posted, claims with true or false amounts, expiries,
the sponsor's reclaim; models fine-tuned from its rounds, royalty terms set once,
royalties paid for any model and shared up its lineage, trainers' withdrawals,
contributors' royalty claims) against one deployment, on the embedded EVM and on
anvil. A Python model applies the contracts' rules and says
whether each call must revert, and with which reason. After every step that changes
the chain the machine checks:

1. token supply == the sum of the balances of every holder;
2. token.balanceOf(registry) == sum of stake + unbonding over providers;
3. token.balanceOf(market) == sum of market balances + (deposit - paid) over
   open channels;
3b. token.balanceOf(disputes) == bond * disputes not resolved;
3c. token.balanceOf(rewards) == budget + (total - claimed) over postings not expired
    + owed over trainers + (data royalty - claimed) over models;
4. every wallet, market balance, allowance, provider entry (and the registry's
   active set), provider record, channel, dispute, pool, posting, trainer's royalty and
   model's data royalty equals the model's: no token moved except by the rules.

An expected revert that mines no block cannot have changed anything; one that does
gets the full check. A reward rule's transactions touch only wallets, allowances, the
pool and the model registry, so the check after one reads those (1, 3c, 4) and leaves
the registry, market and disputes to the next step that changes them. Each example
starts from a snapshot of the session's deployment and reverts to it when it ends.

The last test is a regression test for a bug found while modelling the market:
provider records overflowed once cumulative earnings passed 96 bits, and the
redemption was refused; the record now saturates and the payment goes through.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar, TypeVar

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from idlegrid import ContractReverted
from idlegrid.chain import (
    TOKEN,
    ChannelTerms,
    Contribution,
    DataRoyalty,
    DisputeClient,
    EmbeddedBackend,
    ModelRegistryClient,
    RewardPoolClient,
    RewardTree,
    vote_commitment,
)
from idlegrid.protocol import Account, Signature, Voucher, merkle_proof, merkle_root, sign_voucher

from ..conftest import CONFIG, Env
from .receipts import Receipt2, node_domain, sign_receipt

T = TypeVar("T")

MIN_STAKE = CONFIG.min_stake
DELAY = CONFIG.unbonding_delay
WINDOW = CONFIG.close_window
BOND = CONFIG.dispute_bond
DISPUTE_WINDOW = CONFIG.dispute_window
COMMITTEE = CONFIG.committee_size
SALT = b"\x5a" * 32
# the dispute contract's lifecycle and outcomes
DRAWING, VOTING, RESOLVED = 1, 2, 3
WRONG, RIGHT, NO_DECISION = 1, 2, 3
MAX = 2**256 - 1
MAX_SUPPLY = 2**96 - 1  # the token's cap
MASK_56, MASK_96, MASK_104 = 2**56 - 1, 2**96 - 1, 2**104 - 1  # a provider record's widths
MAX_CHANNEL_TTL = 365 * 24 * 3600  # how far ahead an expiry may lie
HOUR = 3600
DAY = 86400
CAPS = b"\x01" * 32
ENDPOINT = "http://provider.test:1"
ACTORS = 3  # users[0:3] act; the other users only hold tokens
MAX_CHANNELS = 5  # bounds the reads of each check
# the reward pool (contracts/RewardPool.vy)
RUN = keccak(b"the machine's federated run")
CHALLENGE = CONFIG.reward_challenge_window
CLAIM_PERIOD = CONFIG.reward_claim_period
BPS, PARENT_BPS, DEFAULT_DATA_BPS, MAX_DEPTH = 10_000, 2_000, 5_000, 8
MAX_ROUNDS = 3  # the run's rounds in an example
MAX_FINE_TUNED = 3  # models fine-tuned by actors in an example
UNREGISTERED = keccak(b"a model nobody registered")
ZERO = "0x" + "00" * 20
# A transaction's block.timestamp is the chain's time (env.now()) or a few seconds
# later (anvil's clock follows the wall clock). A step whose outcome hangs on a
# deadline closer than this is skipped.
MARGIN = 600

# Sequences of 30 steps; the embedded chain sends 15-30 transactions a second.
# Derandomized, so every run tries the same examples. The embedded chain (py-evm) runs
# them at under half anvil's speed (160 s against 73 s for 15 sequences, the suite's
# slowest test), so it runs 6 sequences to anvil's 10 (180 and 300 steps). Set
# IDLEGRID_LEDGER_SEQUENCES for a longer search (anvil's count; the embedded chain
# runs 60% of it), e.g. 100 before changing a contract.
SEQUENCES = int(os.environ.get("IDLEGRID_LEDGER_SEQUENCES", "10"))
SETTINGS = settings(
    max_examples=SEQUENCES,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _mostly(usual: T, rarely: T) -> st.SearchStrategy[T]:
    """``usual`` three times in four, else ``rarely``."""
    return st.sampled_from([usual, usual, usual, rarely])


# -- strategies ----------------------------------------------------------------

actor = st.integers(0, ACTORS - 1)
party = st.integers(-1, ACTORS - 1)  # -1 is the owner
amounts = st.one_of(
    st.integers(1, 3_000).map(lambda n: n * TOKEN),
    st.integers(1, 3_000).map(lambda n: n * TOKEN),
    st.integers(1, 10**18),
    st.sampled_from([0, 20_000 * TOKEN]),  # nothing; more than anyone has
)
valid_stakes = st.integers(100, 2_000).map(lambda n: n * TOKEN)
stakes = st.one_of(
    valid_stakes, valid_stakes, st.sampled_from([MIN_STAKE, MIN_STAKE - 1, 20_000 * TOKEN])
)
# a share of some current value in percent; 101 means the value plus one wei
percent = st.sampled_from([50, 100, 1, 0, 101])
hours = st.sampled_from([1, 12, 25, 7 * 24 + 1])
# a rank among the actors (or accounts) ordered by who can succeed: mostly the first
ranked = st.sampled_from([0, 0, 0, 1, 2])
# the actors' weights in a round's posting: at least one contributor
weights = st.lists(st.integers(0, 3), min_size=ACTORS, max_size=ACTORS).filter(any)
# a royalty: the usual, a wei, too little to hand a part up, tokens, nothing, too much
royalties = st.sampled_from([10**6, 10**6, 1, 4, 3 * TOKEN, 0, 20_000 * TOKEN])


def _share(total: int, pct: int) -> int:
    return total + 1 if pct > 100 else total * pct // 100


def _first(*checks: tuple[bool, str]) -> str | None:
    """The reason of the first failing check, in the contract's order; None if all pass."""
    return next((reason for failed, reason in checks if failed), None)


# -- the model -----------------------------------------------------------------


@dataclass
class _Provider:
    stake: int = 0
    unbonding: int = 0
    withdrawable_at: int = 0
    registered: bool = False


@dataclass
class _Record:
    earned: int = 0
    jobs: int = 0
    units: int = 0


@dataclass(eq=False)
class _Channel:
    terms: ChannelTerms
    client: Account
    provider: Account
    deposit: int
    expiry: int
    paid: int = 0
    jobs: int = 0
    units: int = 0
    closed: bool = False
    latest: _Signed | None = None  # the client's latest voucher
    redeemed: _Signed | None = None  # the latest voucher redeemed: its receipts are disputable


@dataclass(eq=False)
class _Dispute:
    id: bytes
    provider: str
    challenger: str
    client: str
    amount: int  # the receipt's amount, capped at what the channel paid
    draw_deadline: int
    status: int = DRAWING
    outcome: int = 0
    committee: tuple[str, ...] = ()
    votes: dict[str, bool] = field(default_factory=dict)  # revealed votes
    reveal_deadline: int = 0


@dataclass(eq=False)
class _Posting:
    round: int
    model: bytes
    tree: RewardTree
    posted_at: int
    claimed: int = 0
    expired: bool = False
    paid: set[str] = field(default_factory=set)  # contributors whose leaf was claimed
    royalty_paid: dict[str, int] = field(default_factory=dict)  # their royalty so far


@dataclass
class _Model:
    registrant: str
    owed_to: str  # its trainer, or its registrant when it names none
    parent: bytes | None
    data_bps: int | None = None  # its terms' data part; None: no terms
    posting: _Posting | None = None
    received: int = 0  # its data royalty
    claimed: int = 0


@dataclass
class _Pool:
    sponsor: str = ZERO
    budget: int = 0
    locked_until: int = 0


@dataclass(frozen=True)
class _Start:
    """What the chain holds when each example begins: the same every time."""

    supply: int
    wallet: dict[str, int]  # the modelled accounts, the registry and the market
    others_total: int  # every other account
    allowance: dict[tuple[str, str], int]
    free: dict[str, int]


@dataclass(frozen=True, eq=False)
class _Signed:
    channel: _Channel
    voucher: Voucher
    signature: Signature
    genuine: bool  # signed by the channel's client
    receipts: tuple[Receipt2, ...]  # the job receipts under the voucher's root


class LedgerMachine(RuleBasedStateMachine):
    """Random calls against the ledger, checked against a model of its rules."""

    env: ClassVar[Env]
    start: ClassVar[_Start]
    channels = Bundle("channels")
    vouchers = Bundle("vouchers")

    def __init__(self) -> None:
        super().__init__()
        env, start = self.env, self.start
        self.token, self.registry, self.market = env.token, env.registry, env.market
        self.disputes = env.ledger.client("disputes", DisputeClient)
        self.domain = self.market.domain()
        self.node_domain = node_domain(env.backend.chain_id, self.market.address)
        self.snapshot = env.backend.snapshot()
        self.owner = env.owner
        self.actors = env.users[:ACTORS]
        self.others = [u.address for u in env.users[ACTORS:]]
        self.accounts = [self.owner.address, *(a.address for a in self.actors)]
        self.supply = start.supply
        self.wallet = dict(start.wallet)
        self.others_total = start.others_total
        self.allowance = dict(start.allowance)
        self.free = dict(start.free)
        self.providers = {a.address: _Provider() for a in self.actors}
        self.records = {a.address: _Record() for a in self.actors}
        self.active: list[str] = []  # the registry's enumeration, in its order
        self.locked_until = {a.address: 0 for a in self.actors}  # latest expiry + window
        self.pending = {a.address: 0 for a in self.actors}  # open disputes that may slash
        self.all_disputes: dict[bytes, _Dispute] = {}
        self.all_channels: list[_Channel] = []
        self.salt = 0
        self.dirty = True
        self.last_sender = self.owner.address
        self.rewards = env.ledger.client("rewards", RewardPoolClient)
        self.models = env.ledger.client("models", ModelRegistryClient)
        self.pool = _Pool()
        self.lineage: dict[bytes, _Model] = {}  # the registered models, base first
        self.base = b""
        self.rounds: list[bytes] = []  # the run's round models, posted or not
        self.postings: list[_Posting] = []
        self.owed = {a: 0 for a in self.accounts}  # trainers' royalties
        self.rewards_dirty = True

    def teardown(self) -> None:
        try:
            # holders outside the model never gain or lose a token
            assert sum(self.token.balance_of(o) for o in self.others) == self.others_total
        finally:
            self.env.backend.revert(self.snapshot)

    # -- helpers -------------------------------------------------------------

    def _party(self, index: int) -> Account:
        return self.owner if index < 0 else self.actors[index]

    def _ranked(self, index: int, key: Callable[[str], int]) -> Account:
        """Actor ``index`` in order of ``key`` (truthy and large first), so that the small
        indices Hypothesis favours mostly hit actors for whom the call can succeed."""
        return sorted(self.actors, key=lambda a: key(a.address), reverse=True)[index]

    def _attempt(self, sender: Account, reason: str | None, call: Callable[[], object]) -> bool:
        """Send ``call``; it must succeed when ``reason`` is None, else revert with ``reason``.

        A revert that mined no block cannot have changed any state, so the last full
        check still holds; if a block was mined the next check runs in full.
        """
        self.last_sender = sender.address
        if reason is None:
            call()
            self.dirty = True
            return True
        block = self.env.backend.block_number()
        with pytest.raises(ContractReverted) as exc:
            call()
        assert exc.value.reason == reason
        if self.env.backend.block_number() != block:
            self.dirty = True
        return False

    def _reached(self, deadline: int) -> bool | None:
        """Whether the next block's timestamp is at least ``deadline``; None if too close."""
        now = self.env.now()
        if deadline <= now:
            return True
        if deadline > now + MARGIN:
            return False
        return None

    def _wait_until(self, deadline: int) -> None:
        now = self.env.now()
        if deadline + MARGIN > now:
            self.env.backend.advance_time(deadline + MARGIN - now)

    def _lock(self, provider: str, expiry: int) -> None:
        # the market: a provider's stake stays until its channels can no longer be
        # redeemed (expiry + close window) plus the dispute window
        until = (expiry + WINDOW) // DAY * DAY + DAY  # rounded up to the next whole day
        self.locked_until[provider] = max(self.locked_until[provider], until)

    def _slash(self, provider: str, amount: int, beneficiary: str) -> int:
        # the registry: unbonding tokens first, then stake; what is there, never more
        entry = self.providers[provider]
        taken = min(amount, entry.stake + entry.unbonding)
        from_unbonding = min(taken, entry.unbonding)
        entry.unbonding -= from_unbonding
        entry.stake -= taken - from_unbonding
        self.wallet[self.registry.address] -= taken
        self.wallet[beneficiary] += taken
        self._sync_active(provider)
        return taken

    def _sync_active(self, provider: str) -> None:
        # active == registered with at least the minimum stake; leaving is swap-and-pop
        entry = self.providers[provider]
        should = entry.registered and entry.stake >= MIN_STAKE
        if should and provider not in self.active:
            self.active.append(provider)
        elif not should and provider in self.active:
            position = self.active.index(provider)
            self.active[position] = self.active[-1]
            self.active.pop()

    def _pull_reason(self, owner: str, spender: str, amount: int) -> str | None:
        return _first(
            (self.allowance[owner, spender] < amount, "token: insufficient allowance"),
            (self.wallet[owner] < amount, "token: transfer amount exceeds balance"),
        )

    def _pull(self, owner: str, spender: str, amount: int) -> None:
        self.allowance[owner, spender] -= amount
        self.wallet[owner] -= amount
        self.wallet[spender] += amount

    def _debit_reason(self, account: str, amount: int) -> str | None:
        # the market spends the market balance first, then pulls the shortfall
        shortfall = amount - self.free[account]
        return (
            None if shortfall <= 0 else self._pull_reason(account, self.market.address, shortfall)
        )

    def _debit(self, account: str, amount: int) -> None:
        shortfall = amount - self.free[account]
        if shortfall <= 0:
            self.free[account] -= amount
        else:
            self.free[account] = 0
            self._pull(account, self.market.address, shortfall)

    def _register(self, account: Account, stake: int, endpoint: str = ENDPOINT) -> None:
        entry = self.providers[account.address]
        reason = _first(
            (entry.registered, "registry: already registered"),
            (not endpoint, "registry: empty endpoint"),
            (stake < MIN_STAKE, "registry: stake below minimum"),
        ) or self._pull_reason(account.address, self.registry.address, stake)
        if self._attempt(
            account,
            reason,
            lambda: self.registry.register(endpoint, 7, CAPS, stake, sender=account),
        ):
            self._pull(account.address, self.registry.address, stake)
            entry.registered, entry.stake = True, stake
            self._sync_active(account.address)

    def _open(
        self, client: Account, provider: Account, amount: int, expiry_hours: int
    ) -> _Channel | None:
        # "0 hours" is an hour in the past: a node's clock (anvil follows the wall clock)
        # may stamp the block a second off the time read here, never an hour
        expiry = self.env.now() + (expiry_hours * HOUR if expiry_hours else -HOUR)
        self.salt += 1
        salt = self.salt
        reason = _first(
            (provider == client, "market: channel to self"),
            (amount == 0, "market: zero deposit"),
            (expiry_hours == 0, "market: expiry in the past"),
            (expiry_hours * HOUR > MAX_CHANNEL_TTL, "market: expiry too far ahead"),
        ) or self._debit_reason(client.address, amount)

        def call() -> object:
            return self.market.open_channel(
                provider.address, amount, expiry, sender=client, salt=salt
            )

        if not self._attempt(client, reason, call):
            return None
        self._debit(client.address, amount)
        self._lock(provider.address, expiry)
        terms = ChannelTerms(client.address, provider.address, amount, expiry, salt)
        channel = _Channel(terms, client, provider, amount, expiry)
        self.all_channels.append(channel)
        return channel

    # -- setup ---------------------------------------------------------------

    @initialize(
        target=channels,
        stakes=st.tuples(valid_stakes, valid_stakes),
        unbond=st.sampled_from([50, 100, 1]),
        deposit=st.integers(1, 1_000).map(lambda n: n * TOKEN),
        pct=st.sampled_from([10, 50, 100]),
    )
    def setup_market(
        self, stakes: tuple[int, int], unbond: int, deposit: int, pct: int
    ) -> _Channel:
        """Start where every rule can do something: actors 0, 1 and 2 are providers, 2 is
        unbonding part of its stake, and 0 has paid 1 for some jobs through a channel
        (a receipt to dispute, and referees to draw)."""
        self._register(self.actors[0], stakes[0])
        self._register(self.actors[1], stakes[0])
        self._register(self.actors[2], stakes[1])
        self._begin_unbonding(self.actors[2], _share(stakes[1], unbond))
        channel = self._open(self.actors[0], self.actors[1], deposit, 24)
        assert channel is not None
        self._redeem(self._sign(channel, pct, 1, 100, forged=False), by_provider=True)
        return channel

    # -- token -----------------------------------------------------------------

    @rule(
        who=actor,
        spender=st.sampled_from(["market", "registry"]),
        amount=st.sampled_from([MAX, 1_000 * TOKEN, 50 * TOKEN, 0]),
    )
    def approve(self, who: int, spender: str, amount: int) -> None:
        account = self.actors[who]
        target = self.registry.address if spender == "registry" else self.market.address
        self._attempt(account, None, lambda: self.token.approve(target, amount, sender=account))
        self.allowance[account.address, target] = amount

    # -- registry ----------------------------------------------------------------

    @rule(who=actor, stake=stakes, endpoint=_mostly(ENDPOINT, ""))
    def register(self, who: int, stake: int, endpoint: str) -> None:
        self._register(self.actors[who], stake, endpoint)

    @precondition(lambda self: any(p.registered for p in self.providers.values()))
    @rule(who=actor, amount=amounts)
    def add_stake(self, who: int, amount: int) -> None:
        account = self._ranked(who, lambda a: self.providers[a].registered)
        entry = self.providers[account.address]
        reason = _first(
            (not entry.registered, "registry: not registered"),
            (amount == 0, "registry: zero amount"),
        ) or self._pull_reason(account.address, self.registry.address, amount)
        if self._attempt(account, reason, lambda: self.registry.add_stake(amount, sender=account)):
            self._pull(account.address, self.registry.address, amount)
            entry.stake += amount
            self._sync_active(account.address)

    @precondition(lambda self: any(p.registered for p in self.providers.values()))
    @rule(who=actor, pct=percent)
    def begin_unbonding(self, who: int, pct: int) -> None:
        account = self._ranked(who, lambda a: self.providers[a].registered)
        self._begin_unbonding(account, _share(self.providers[account.address].stake, pct))

    def _begin_unbonding(self, account: Account, amount: int) -> None:
        entry = self.providers[account.address]
        reason = _first(
            (not entry.registered, "registry: not registered"),
            (amount == 0, "registry: zero amount"),
            (amount > entry.stake, "registry: amount exceeds stake"),
        )
        if self._attempt(
            account, reason, lambda: self.registry.begin_unbonding(amount, sender=account)
        ):
            entry.stake -= amount
            entry.unbonding += amount
            # the latest block is this transaction's
            entry.withdrawable_at = self.env.backend.timestamp() + DELAY
            self._sync_active(account.address)

    @precondition(lambda self: any(p.unbonding for p in self.providers.values()))
    @rule(who=actor, wait=_mostly(True, False))
    def withdraw_stake(self, who: int, wait: bool) -> None:
        """Withdraw unbonded stake, after waiting out the delay or (mostly failing) not."""
        account = self._ranked(who, lambda a: self.providers[a].unbonding)
        entry = self.providers[account.address]
        free_at = self.locked_until[account.address] + DISPUTE_WINDOW
        if wait and entry.unbonding > 0:
            self._wait_until(max(entry.withdrawable_at, free_at))
        reached = self._reached(entry.withdrawable_at)
        unlocked = self._reached(free_at)
        if reached is None or unlocked is None:
            return
        locked = not unlocked or self.pending[account.address] > 0
        reason = _first(
            (entry.unbonding == 0, "registry: nothing unbonding"),
            (not reached, "registry: unbonding delay not over"),
            (locked, "registry: stake backs open channels or disputes"),
        )
        if self._attempt(account, reason, lambda: self.registry.withdraw(sender=account)):
            self.wallet[self.registry.address] -= entry.unbonding
            self.wallet[account.address] += entry.unbonding
            entry.unbonding = 0

    @rule(seconds=hours.map(lambda h: h * HOUR))
    def advance_time(self, seconds: int) -> None:
        """Mine an empty block later in time; it changes no state, so no check follows."""
        self.env.backend.advance_time(seconds)

    # -- arbiter and slashing ------------------------------------------------------

    @rule(by_owner=_mostly(True, False), who=party)
    def set_arbiter(self, by_owner: bool, who: int) -> None:
        """Taking the arbiter's role never works: the deployment gave it to the dispute
        contract, once."""
        sender = self.owner if by_owner else self.actors[0]
        arbiter = self._party(who).address
        reason = "market: arbiter already set" if by_owner else "ownable: caller is not the owner"
        self._attempt(sender, reason, lambda: self.market.set_arbiter(arbiter, sender=sender))

    @rule(caller=party, provider=actor, pct=percent, beneficiary=party, direct=_mostly(False, True))
    def slash(self, caller: int, provider: int, pct: int, beneficiary: int, direct: bool) -> None:
        """Slash outside a dispute, through the market or straight at the registry, as
        the owner or anyone: never allowed."""
        sender = self._party(caller)
        target = self._ranked(provider, lambda a: self.providers[a].registered).address
        receiver = self._party(beneficiary).address
        entry = self.providers[target]
        amount = _share(entry.stake + entry.unbonding, pct)
        if direct:
            self._attempt(
                sender,
                "registry: caller is not the market",
                lambda: self.registry.slash(target, amount, receiver, sender=sender),
            )
            return
        self._attempt(
            sender,
            "market: caller is not the arbiter",
            lambda: self.market.slash(target, amount, receiver, sender=sender),
        )

    # -- disputes ----------------------------------------------------------------

    # one dispute an example (about ten transactions): fifteen examples a backend
    @precondition(lambda self: not self.all_disputes and any(c.redeemed for c in self.all_channels))
    @rule(
        pick=st.integers(0, 20),
        challenger=st.sampled_from([-1, -1, 0, 2]),  # mostly the owner, funded by _start
        draw=_mostly(True, False),
        votes=st.lists(st.sampled_from([False, True, None, True]), min_size=2, max_size=2),
        evidence=st.sampled_from(["redeemed", "redeemed", "redeemed", "latest", "forged"]),
    )
    def dispute(
        self, pick: int, challenger: int, draw: bool, votes: list[bool | None], evidence: str
    ) -> None:
        """Dispute a redeemed receipt: open with a bond and a voucher as evidence (mostly
        the one redeemed; else the client's latest, redeemed or not, or the redeemed one
        signed by the provider), then (mostly) draw a committee whose members vote or
        not, then (mostly: ``pick`` not a multiple of 5) resolve once the deadlines allow;
        a dispute left open freezes stakes until ``resolve_disputes``."""
        channels = [c for c in self.all_channels if c.redeemed]
        channel = channels[pick % len(channels)]
        redeemed = channel.redeemed
        assert redeemed is not None
        # mostly a receipt not disputed yet (a repeat is refused)
        fresh = [r for r in redeemed.receipts if r.leaf() not in self.all_disputes]
        candidates = fresh if fresh and pick % 4 else list(redeemed.receipts)
        receipt = candidates[pick % len(candidates)]
        # the client's latest voucher covers every receipt of the redeemed one too
        shown = channel.latest if evidence == "latest" and channel.latest else redeemed
        v, voucher_signature = shown.voucher, shown.signature
        if evidence == "forged":
            voucher_signature = sign_voucher(channel.provider, self.domain, v)
        sender = self._party(challenger)
        if sender.address == channel.provider.address:
            sender = self.owner  # a provider disputing itself: tests/chain/test_disputes.py
        closes = channel.expiry + WINDOW + DISPUTE_WINDOW
        reached = self._reached(closes)
        if reached is None:
            return
        leaf = receipt.leaf()
        paid_for = 0 < v.amount <= channel.paid and v.jobs <= channel.jobs
        reason = _first(
            (reached, "disputes: dispute window over"),
            (not paid_for, "disputes: voucher not redeemed"),
            (leaf in self.all_disputes, "disputes: receipt already disputed"),
            (evidence == "forged", "disputes: voucher not signed by the channel's client"),
        ) or self._pull_reason(sender.address, self.disputes.address, BOND)
        leaves = [r.leaf() for r in shown.receipts]
        proof = merkle_proof(leaves, leaves.index(leaf))
        signature = sign_receipt(channel.provider, self.node_domain, leaf)
        if not self._attempt(
            sender,
            reason,
            lambda: self.disputes.open(
                channel.terms, v, voucher_signature, receipt, signature, proof, sender=sender
            ),
        ):
            return
        self._pull(sender.address, self.disputes.address, BOND)
        provider = channel.provider.address
        opened = _Dispute(
            leaf,
            provider,
            sender.address,
            channel.client.address,
            min(receipt.amount, channel.paid),
            self.env.backend.timestamp() + CONFIG.draw_period,
        )
        self.all_disputes[leaf] = opened
        self.pending[provider] += 1
        if draw:
            self._draw(opened, votes)
        if pick % 5:
            self._resolve(opened)

    @precondition(lambda self: any(d.status != RESOLVED for d in self.all_disputes.values()))
    @rule()
    def resolve_disputes(self) -> None:
        """Every dispute still open ends once its deadlines pass."""
        for opened in self.all_disputes.values():
            if opened.status != RESOLVED:
                self._resolve(opened)

    def _draw(self, opened: _Dispute, votes: list[bool | None]) -> None:
        backend = self.env.backend
        backend.advance_time(1)  # the seed block, and one more (anvil estimates at the
        backend.advance_time(1)  # latest block's number)
        reached = self._reached(opened.draw_deadline)
        if reached is None:
            return
        eligible = [a for a in self.active if a not in (opened.provider, opened.challenger)]
        if not self._attempt(
            self.owner,
            "disputes: draw deadline passed" if reached else None,
            lambda: self.disputes.draw(opened.id, sender=self.owner),
        ):
            return
        state = self.disputes.dispute(opened.id)
        committee = state.committee
        # drawn from the active providers, never the accused nor the challenger; with
        # no more eligible than seats, all of them (64 draws: missing one is ~1e-11)
        assert len(set(committee)) == len(committee) == min(COMMITTEE, len(eligible))
        assert set(committee) <= set(eligible)
        opened.status, opened.committee = VOTING, committee
        opened.reveal_deadline = state.reveal_deadline
        for member in committee:
            self.pending[member] += 1
        actors = {a.address: a for a in self.actors}
        ballots = list(zip(committee, votes, strict=False))
        for member, vote in ballots:
            if vote is not None:
                commitment = vote_commitment(opened.id, member, vote, SALT)
                self._attempt(
                    actors[member],
                    None,
                    partial(self.disputes.commit, opened.id, commitment, sender=actors[member]),
                )
        if any(vote is None for _, vote in ballots) or len(ballots) < len(committee):
            self._wait_until(state.commit_deadline)
        for member, vote in ballots:
            if vote is not None:
                self._attempt(
                    actors[member],
                    None,
                    partial(self.disputes.reveal, opened.id, vote, SALT, sender=actors[member]),
                )
                opened.votes[member] = vote

    def _resolve(self, opened: _Dispute) -> None:
        if opened.status == DRAWING:
            self._wait_until(opened.draw_deadline)
        elif len(opened.votes) < len(opened.committee):
            self._wait_until(opened.reveal_deadline)
        self._attempt(self.owner, None, lambda: self.disputes.resolve(opened.id, sender=self.owner))
        wrong = sum(opened.votes.values())
        right = len(opened.votes) - wrong
        outcome = WRONG if wrong > right else RIGHT if right > wrong else NO_DECISION
        opened.status, opened.outcome = RESOLVED, outcome
        self.pending[opened.provider] -= 1
        for member in opened.committee:
            self.pending[member] -= 1
        vault = self.disputes.address
        paid: dict[str, int] = {}
        if outcome == WRONG:
            entry = self.providers[opened.provider]
            asked = min(
                (entry.stake + entry.unbonding) * CONFIG.dispute_slash_bps // 10_000,
                CONFIG.dispute_penalty + opened.amount,
            )
            taken = self._slash(opened.provider, asked, vault) if asked else 0
            refund = min(taken, opened.amount)
            reward = (taken - refund) // 2 // wrong
            paid[opened.client] = refund
            for member, vote in opened.votes.items():
                if vote:
                    paid[member] = paid.get(member, 0) + reward
            challenger = taken - refund - reward * wrong + BOND
            paid[opened.challenger] = paid.get(opened.challenger, 0) + challenger
        elif outcome == RIGHT:
            paid[opened.provider] = BOND
        else:
            paid[opened.challenger] = BOND
        for account, amount in paid.items():
            self.wallet[vault] -= amount
            self.wallet[account] += amount
        receiver = opened.provider if outcome == RIGHT else opened.challenger
        for member in opened.committee:
            if member not in opened.votes:
                self._slash(member, CONFIG.referee_penalty, receiver)
        state = self.disputes.dispute(opened.id)
        assert (state.status, state.outcome, state.committee) == (
            RESOLVED,
            outcome,
            opened.committee,
        )
        assert (state.wrong_votes, state.right_votes) == (wrong, right)
        # nothing frees a stake the dispute contract still holds, nor holds it longer
        assert {a: self.disputes.pending(a) for a in self.pending} == self.pending

    # -- market balances -----------------------------------------------------------

    @rule(who=actor, amount=amounts)
    def deposit(self, who: int, amount: int) -> None:
        account = self.actors[who]
        reason = _first((amount == 0, "market: zero amount")) or self._pull_reason(
            account.address, self.market.address, amount
        )
        if self._attempt(account, reason, lambda: self.market.deposit(amount, sender=account)):
            self._pull(account.address, self.market.address, amount)
            self.free[account.address] += amount

    @precondition(lambda self: any(self.free.values()))
    @rule(who=actor, pct=percent)
    def withdraw(self, who: int, pct: int) -> None:
        """Withdraw a share of the market balance, unswept earnings included."""
        account = self._ranked(who, self.free.__getitem__)
        amount = _share(self.free[account.address], pct)
        reason = _first(
            (amount == 0, "market: zero amount"),
            (amount > self.free[account.address], "market: insufficient balance"),
        )
        if self._attempt(account, reason, lambda: self.market.withdraw(amount, sender=account)):
            self.free[account.address] -= amount
            self.wallet[self.market.address] -= amount
            self.wallet[account.address] += amount

    # -- channels ------------------------------------------------------------------

    @precondition(lambda self: len(self.all_channels) < MAX_CHANNELS)
    @rule(
        target=channels,
        client=actor,
        to=st.sampled_from([1, 2, 1, 2, 0]),
        amount=amounts,
        expiry_hours=st.sampled_from([24, 1, 72, 0, 366 * 24]),
    )
    def open_channel(self, client: int, to: int, amount: int, expiry_hours: int) -> object:
        """Open a channel to the actor ``to`` places after the client (0: itself)."""
        payer, payee = self.actors[client], self.actors[(client + to) % ACTORS]
        channel = self._open(payer, payee, amount, expiry_hours)
        return multiple() if channel is None else channel

    @rule(channel=channels)
    def reopen_channel(self, channel: _Channel) -> None:
        """Opening a channel with the same terms again never works."""
        terms = channel.terms
        reached = self._reached(terms.expiry)
        if reached is None:
            return
        reason = "market: expiry in the past" if reached else "market: channel exists"
        self._attempt(
            channel.client,
            reason,
            lambda: self.market.open_channel(
                terms.provider, terms.deposit, terms.expiry, sender=channel.client, salt=terms.salt
            ),
        )

    @rule(
        channel=channels,
        by_client=_mostly(True, False),
        amount=amounts,
        extend_hours=st.sampled_from([24, 0, 1, -1, 366 * 24]),
    )
    def top_up(self, channel: _Channel, by_client: bool, amount: int, extend_hours: int) -> None:
        sender = channel.client if by_client else channel.provider
        expiry = channel.expiry + extend_hours * HOUR
        limit = self.env.now() + MAX_CHANNEL_TTL  # keeping the current expiry is always allowed
        if expiry != channel.expiry and abs(expiry - limit) <= MARGIN:
            return
        reason = _first(
            (not by_client, "market: caller is not the channel's client"),
            (channel.closed, "market: channel closed"),
            (expiry < channel.expiry, "market: expiry earlier than current"),
            (expiry != channel.expiry and expiry > limit, "market: expiry too far ahead"),
        ) or self._debit_reason(sender.address, amount)
        if self._attempt(
            sender,
            reason,
            lambda: self.market.top_up(channel.terms, amount, expiry, sender=sender),
        ):
            self._debit(sender.address, amount)
            channel.deposit += amount
            channel.expiry = expiry
            self._lock(channel.provider.address, expiry)

    @rule(
        target=vouchers,
        channel=channels,
        pct=st.sampled_from([10, 50, 100, 0, 101]),
        jobs=st.integers(0, 3),
        units=st.integers(0, 1_000),
        forged=_mostly(False, True),
    )
    def sign_voucher(
        self, channel: _Channel, pct: int, jobs: int, units: int, forged: bool
    ) -> _Signed:
        """Off-chain: the client signs its next cumulative voucher, for a share of what is
        left in the channel (101: one wei more than that), or the provider forges one."""
        return self._sign(channel, pct, jobs, units, forged=forged)

    @rule(
        target=vouchers,
        channel=channels,
        pct=st.sampled_from([10, 50, 100]),
        jobs=st.integers(1, 3),
        units=st.integers(1, 1_000),
    )
    def pay(self, channel: _Channel, pct: int, jobs: int, units: int) -> _Signed:
        """Jobs are done: the client signs its next voucher and the provider redeems it."""
        signed = self._sign(channel, pct, jobs, units, forged=False)
        self._redeem(signed, by_provider=True)
        return signed

    @rule(signed=vouchers, by_provider=_mostly(True, False))
    def redeem(self, signed: _Signed, by_provider: bool) -> None:
        """Redeem any voucher signed so far: the latest, a stale or replayed one, a forgery."""
        self._redeem(signed, by_provider)

    def _sign(self, channel: _Channel, pct: int, jobs: int, units: int, *, forged: bool) -> _Signed:
        base = (
            channel.latest.voucher
            if channel.latest
            else Voucher(channel.terms.id, 0, 0, 0, b"\x00" * 32)
        )
        amount = base.amount + _share(max(channel.deposit - base.amount, 0), pct)
        # one more job receipt, for what this voucher adds; the root covers them all
        done = channel.latest.receipts if channel.latest else ()
        self.salt += 1
        receipt = Receipt2(
            channel.terms.id,
            keccak(self.salt.to_bytes(32, "big")),
            channel.provider.address,
            b"\xaa" * 32,
            b"\xbb" * 32,
            keccak(amount.to_bytes(32, "big")),
            units,
            amount - base.amount,
        )
        receipts = (*done, receipt)
        root = merkle_root([r.leaf() for r in receipts])
        voucher = Voucher(channel.terms.id, amount, base.jobs + jobs, base.units + units, root)
        signer = channel.provider if forged else channel.client
        signature = sign_voucher(signer, self.domain, voucher)
        signed = _Signed(channel, voucher, signature, not forged, receipts)
        if not forged:
            channel.latest = signed
        return signed

    def _redeem(self, signed: _Signed, by_provider: bool) -> None:
        channel, v = signed.channel, signed.voucher
        sender = channel.provider if by_provider else channel.client
        reason = _first(
            (not by_provider, "market: caller is not the channel's provider"),
            (channel.closed, "market: channel closed"),
            (
                v.amount < channel.paid or v.jobs < channel.jobs or v.units < channel.units,
                "market: stale voucher",
            ),
            (
                (v.amount, v.jobs, v.units) == (channel.paid, channel.jobs, channel.units),
                "market: voucher already redeemed",
            ),
            (v.amount == channel.paid, "market: voucher pays nothing"),
            (v.amount > channel.deposit, "market: voucher exceeds channel deposit"),
            (
                not signed.genuine,
                "market: voucher not signed by the channel's client"
                " (wrong signer, chain or contract)",
            ),
        )
        if self._attempt(
            sender,
            reason,
            lambda: self.market.redeem(channel.terms, v, signed.signature, sender=sender),
        ):
            # the record's counters saturate; the provider is paid in full regardless
            record = self.records[channel.provider.address]
            record.earned = min(record.earned + v.amount - channel.paid, MASK_96)
            record.jobs = min(record.jobs + v.jobs - channel.jobs, MASK_56)
            record.units = min(record.units + v.units - channel.units, MASK_104)
            self.free[channel.provider.address] += v.amount - channel.paid
            channel.paid, channel.jobs, channel.units = v.amount, v.jobs, v.units
            channel.redeemed = signed

    @rule(
        channel=channels,
        caller=st.sampled_from(["client", "provider", "client", "stranger"]),
        wait=_mostly(True, False),
    )
    def close(self, channel: _Channel, caller: str, wait: bool) -> None:
        """Close as the client (after expiry and the window, waiting for it or not), as the
        provider (any time) or as a stranger (never)."""
        if caller == "client":
            sender = channel.client
            if wait:
                self._wait_until(channel.expiry + WINDOW)
            reached = self._reached(channel.expiry + WINDOW)
            if reached is None:
                return
        else:
            reached = True
            parties = (channel.client, channel.provider)
            sender = (
                channel.provider
                if caller == "provider"
                else next(a for a in self.actors if a not in parties)
            )
        reason = _first(
            (caller == "stranger", "market: caller is not a party of the channel"),
            (channel.closed, "market: channel closed"),
            (not reached, "market: channel not expired or still in its redeem window"),
        )
        if self._attempt(sender, reason, lambda: self.market.close(channel.terms, sender=sender)):
            self.free[channel.client.address] += channel.deposit - channel.paid
            channel.closed = True

    # -- the reward pool -------------------------------------------------------------

    @initialize(
        amount=st.integers(1, 1_000).map(lambda n: n * TOKEN),
        lock_days=st.sampled_from([1, 30]),
        weights=weights,
        royalty=st.sampled_from([10**6, 3 * TOKEN]),
    )
    def setup_rewards(self, amount: int, lock_days: int, weights: list[int], royalty: int) -> None:
        """Start where every reward rule can do something: the run's base model
        (registered by actor 2, trained by actor 1); actor 0 funds the run's pool; round 1,
        fine-tuned from the base, is posted with half the budget; actor 2 pays a royalty
        for it."""
        self.base = self._register_model(self.actors[2], self.actors[1].address, None)
        self._fund(self.actors[0], amount, lock_days * DAY)
        self._post(weights, 50, by_coordinator=True)
        self._pay_royalty(self.actors[2], self.rounds[0], royalty)

    def _reward_attempt(
        self, sender: Account, reason: str | None, call: Callable[[], object]
    ) -> bool:
        """:meth:`_attempt` for a reward rule. Its transactions move tokens and change the
        pool (and the model registry), never the provider registry, the market nor the
        disputes: the check that follows reads the wallets and the pool only."""
        ledger = self.dirty
        done = self._attempt(sender, reason, call)
        self.rewards_dirty |= self.dirty
        self.dirty = ledger
        return done

    def _register_model(self, registrant: Account, trainer: str, parent: bytes | None) -> bytes:
        model = keccak(b"model %d" % len(self.lineage))
        self._reward_attempt(
            registrant,
            None,
            lambda: self.models.register(
                model, trainer=trainer, parent=parent or bytes(32), sender=registrant
            ),
        )
        owed_to = registrant.address if trainer == ZERO else trainer
        self.lineage[model] = _Model(registrant.address, owed_to, parent)
        return model

    def _fund(self, sponsor: Account, amount: int, lock: int) -> None:
        locked_until = self.env.now() + lock
        pool = self.pool
        reason = _first(
            (amount == 0, "rewards: nothing to fund"),
            (
                pool.sponsor not in (ZERO, sponsor.address),
                "rewards: only the run's sponsor funds its pool",
            ),
            (locked_until < pool.locked_until, "rewards: a lock cannot be shortened"),
        ) or self._pull_reason(sponsor.address, self.rewards.address, amount)
        if self._reward_attempt(
            sponsor, reason, lambda: self.rewards.fund(RUN, amount, locked_until, sender=sponsor)
        ):
            self._pull(sponsor.address, self.rewards.address, amount)
            pool.sponsor = sponsor.address
            pool.budget += amount
            pool.locked_until = locked_until

    @rule(who=ranked, amount=amounts, lock_days=st.sampled_from([1, 30, 0]))
    def fund(self, who: int, amount: int, lock_days: int) -> None:
        """Fund the run's pool: its sponsor (mostly), or another (refused); a lock
        shorter than the current one is refused."""
        self._fund(self._ranked(who, lambda a: a == self.pool.sponsor), amount, lock_days * DAY)

    @precondition(lambda self: len(self.rounds) < MAX_ROUNDS)
    @rule(
        weights=weights,
        pct=st.sampled_from([10, 50, 100, 101]),
        by_coordinator=_mostly(True, False),
    )
    def post(self, weights: list[int], pct: int, by_coordinator: bool) -> None:
        """The coordinator (the owner) registers the run's next round, fine-tuned from the
        last, and posts a share of the budget split by ``weights`` among the actors (101:
        a wei more than the budget; a wei each when the budget is too small); an actor
        posting instead is refused."""
        self._post(weights, pct, by_coordinator=by_coordinator)

    def _post(self, weights: list[int], pct: int, *, by_coordinator: bool) -> None:
        rnd = len(self.rounds) + 1
        model = keccak(b"model %d" % len(self.lineage))
        parent = self.rounds[-1] if self.rounds else self.base
        self._reward_attempt(
            self.owner,
            None,
            lambda: self.models.register_round(
                model,
                RUN,
                rnd,
                spec_hash=CAPS,
                data_hash=CAPS,
                parent=parent,
                participants=[a.address for a in self.actors],
                sender=self.owner,
            ),
        )
        self.rounds.append(model)
        self.lineage[model] = _Model(self.owner.address, self.owner.address, parent)
        target = _share(self.pool.budget, pct)
        tree = RewardTree(
            RUN,
            rnd,
            {
                a.address: max(target * w // sum(weights), 1)
                for a, w in zip(self.actors, weights, strict=True)
                if w
            },
        )
        sender = self.owner if by_coordinator else self.actors[0]
        reason = _first(
            (not by_coordinator, "rewards: only the run's coordinator posts"),
            (tree.total > self.pool.budget, "rewards: the pool holds less than the posting"),
        )
        if self._reward_attempt(
            sender, reason, lambda: self.rewards.post(tree, model, sender=sender)
        ):
            self.pool.budget -= tree.total
            posting = _Posting(rnd, model, tree, self.env.backend.timestamp())
            self.postings.append(posting)
            self.lineage[model].posting = posting

    @precondition(lambda self: bool(self.postings))
    @rule(pick=st.integers(0, 20), honest=_mostly(True, False), wait=_mostly(True, False))
    def claim(self, pick: int, honest: bool, wait: bool) -> None:
        """Claim a contributor's leaf (its amount, or a wei more), after the challenge
        window (mostly waiting for it) and before the claim period ends."""
        posting = self.postings[pick % len(self.postings)]
        who = posting.tree.contributors[pick % len(posting.tree.contributors)]
        amount = posting.tree.amounts[who] + (0 if honest else 1)
        opens = posting.posted_at + CHALLENGE
        if wait and not posting.expired:
            self._wait_until(opens)
        opened, closed = self._reached(opens), self._reached(opens + CLAIM_PERIOD)
        if opened is None or closed is None:
            return
        reason = _first(
            (posting.expired, "rewards: the claim period is over"),
            (not opened, "rewards: still in the challenge window"),
            (closed, "rewards: the claim period is over"),
            (who in posting.paid, "rewards: already claimed"),
            (not honest, "rewards: not a leaf of the posting"),
        )
        sender = self.actors[pick % ACTORS]
        proof = posting.tree.proof(who)
        if self._reward_attempt(
            sender,
            reason,
            lambda: self.rewards.claim(RUN, posting.round, who, amount, proof, sender=sender),
        ):
            posting.paid.add(who)
            posting.claimed += amount
            self.wallet[self.rewards.address] -= amount
            self.wallet[who] += amount

    @precondition(lambda self: bool(self.postings))
    @rule(pick=st.integers(0, 20), wait=_mostly(False, True))
    def expire(self, pick: int, wait: bool) -> None:
        """Put what a posting's contributors left back in the budget, once its claim
        period is over (waiting for it, sometimes)."""
        posting = self.postings[pick % len(self.postings)]
        over = posting.posted_at + CHALLENGE + CLAIM_PERIOD
        if wait:
            self._wait_until(over)
        reached = self._reached(over)
        if reached is None:
            return
        reason = _first(
            (posting.expired, "rewards: already expired"),
            (not reached, "rewards: the claim period is not over"),
        )
        sender = self.actors[pick % ACTORS]
        if self._reward_attempt(
            sender, reason, lambda: self.rewards.expire(RUN, posting.round, sender=sender)
        ):
            posting.expired = True
            self.pool.budget += posting.tree.total - posting.claimed

    @rule(who=ranked, wait=_mostly(True, False))
    def reclaim(self, who: int, wait: bool) -> None:
        """The sponsor (mostly) takes back the budget once the lock is over (mostly
        waiting for it)."""
        sender = self._ranked(who, lambda a: a == self.pool.sponsor)
        if wait:
            self._wait_until(self.pool.locked_until)
        reached = self._reached(self.pool.locked_until)
        if reached is None:
            return
        reason = _first(
            (sender.address != self.pool.sponsor, "rewards: only the run's sponsor reclaims"),
            (not reached, "rewards: the pool is locked"),
            (self.pool.budget == 0, "rewards: nothing to reclaim"),
        )
        if self._reward_attempt(sender, reason, lambda: self.rewards.reclaim(RUN, sender=sender)):
            self.wallet[self.rewards.address] -= self.pool.budget
            self.wallet[sender.address] += self.pool.budget
            self.pool.budget = 0

    @precondition(lambda self: len(self.lineage) - len(self.rounds) <= MAX_FINE_TUNED)
    @rule(who=actor, pick=st.integers(0, 20), trainer=st.integers(-1, ACTORS - 1))
    def fine_tune(self, who: int, pick: int, trainer: int) -> None:
        """An actor registers a model fine-tuned from any registered one, naming one of
        the actors as its trainer, or none (-1)."""
        parent = list(self.lineage)[pick % len(self.lineage)]
        named = ZERO if trainer < 0 else self.actors[trainer].address
        self._register_model(self.actors[who], named, parent)

    @rule(
        pick=st.integers(0, 20),
        by_registrant=_mostly(True, False),
        rate=st.sampled_from([5, 5, 1, 0]),
        data_bps=st.sampled_from([6_000, 0, 10_000, 10_001]),
    )
    def set_royalty(self, pick: int, by_registrant: bool, rate: int, data_bps: int) -> None:
        """Set a model's terms, by its registrant (once) or another; or an unregistered
        model's (refused)."""
        models = [*self.lineage, UNREGISTERED]
        model = models[pick % len(models)]
        entry = self.lineage.get(model)
        registrant = entry.registrant if entry else ZERO
        everyone = [self.owner, *self.actors]
        sender = next(
            a for a in everyone if (a.address == registrant) == (by_registrant and bool(entry))
        )
        reason = _first(
            (entry is None, "rewards: model not registered"),
            (sender.address != registrant, "rewards: only the model's registrant sets its royalty"),
            (entry is not None and entry.data_bps is not None, "rewards: royalty already set"),
            (rate == 0, "rewards: zero royalty rate"),
            (data_bps > BPS, "rewards: data part above 10000 bps"),
        )
        if self._reward_attempt(
            sender, reason, lambda: self.rewards.set_royalty(model, rate, data_bps, sender=sender)
        ):
            assert entry is not None
            entry.data_bps = data_bps

    @rule(pick=st.integers(0, 20), payer=actor, amount=royalties)
    def pay_royalty(self, pick: int, payer: int, amount: int) -> None:
        """An actor pays a royalty for a model (or for an unregistered one: refused)."""
        models = [*self.lineage, UNREGISTERED]
        self._pay_royalty(self.actors[payer], models[pick % len(models)], amount)

    def _pay_royalty(self, sender: Account, model: bytes, amount: int) -> None:
        reason = _first(
            (amount == 0, "rewards: nothing to pay"),
            (model not in self.lineage, "rewards: model not registered"),
        ) or self._pull_reason(sender.address, self.rewards.address, amount)
        if self._reward_attempt(
            sender, reason, lambda: self.rewards.pay_royalty(model, amount, sender=sender)
        ):
            self._pull(sender.address, self.rewards.address, amount)
            self._share_royalty(model, amount)

    def _share_royalty(self, model: bytes, amount: int) -> None:
        # each level: a fifth up to the parent (none on the last level), of the rest the
        # data part to a posted model's contributors, the remainder to its trainer
        for level in range(MAX_DEPTH):
            entry = self.lineage[model]
            up = amount * PARENT_BPS // BPS if entry.parent and level < MAX_DEPTH - 1 else 0
            rest = amount - up
            to_data = 0
            if entry.posting is not None:
                bps = DEFAULT_DATA_BPS if entry.data_bps is None else entry.data_bps
                to_data = rest * bps // BPS
                entry.received += to_data
            self.owed[entry.owed_to] += rest - to_data
            if up == 0 or entry.parent is None:
                return
            model, amount = entry.parent, up

    @rule(who=st.sampled_from([0, 0, 0, ACTORS]))
    def withdraw_royalties(self, who: int) -> None:
        """Withdraw a trainer's royalties (the owner and the actors, most owed first)."""
        everyone = [self.owner, *self.actors]
        account = sorted(everyone, key=lambda a: self.owed[a.address], reverse=True)[who]
        amount = self.owed[account.address]
        if self._reward_attempt(
            account,
            _first((amount == 0, "rewards: nothing owed")),
            lambda: self.rewards.withdraw_royalties(sender=account),
        ):
            self.owed[account.address] = 0
            self.wallet[self.rewards.address] -= amount
            self.wallet[account.address] += amount

    @rule(
        pick=st.integers(0, 20),
        posted=_mostly(True, False),
        honest=_mostly(True, False),
        wait=_mostly(True, False),
    )
    def claim_royalty(self, pick: int, posted: bool, honest: bool, wait: bool) -> None:
        """Claim a contributor's share of a posted model's data royalty, with its leaf (or
        a wei more) in the posting behind the model, after its challenge window (mostly
        waiting for it); or for a model no posting paid for."""
        models = [m for m, e in self.lineage.items() if (e.posting is not None) == posted]
        models = models or list(self.lineage)
        model = models[pick % len(models)]
        entry = self.lineage[model]
        sender = self.actors[pick % ACTORS]
        posting = entry.posting
        if posting is None:
            self._reward_attempt(
                sender,
                "rewards: no posting for the model",
                lambda: self.rewards._send(
                    "claim_royalty", model, sender.address, 1, [], sender=sender
                ),
            )
            return
        tree = posting.tree
        who = tree.contributors[pick % len(tree.contributors)]
        amount = tree.amounts[who] + (0 if honest else 1)
        opens = posting.posted_at + CHALLENGE
        if wait:
            self._wait_until(opens)
        opened = self._reached(opens)
        if opened is None:
            return
        entitled = entry.received * tree.amounts[who] // tree.total
        before = posting.royalty_paid.get(who, 0)
        reason = _first(
            (not opened, "rewards: still in the challenge window"),
            (not honest, "rewards: not a leaf of the posting"),
            (entitled == before, "rewards: nothing to claim"),
        )
        proof = tree.proof(who)
        if self._reward_attempt(
            sender,
            reason,
            lambda: self.rewards._send("claim_royalty", model, who, amount, proof, sender=sender),
        ):
            posting.royalty_paid[who] = entitled
            entry.claimed += entitled - before
            self.wallet[self.rewards.address] -= entitled - before
            self.wallet[who] += entitled - before

    # -- the check -------------------------------------------------------------------

    @invariant()
    def ledger_matches_model(self) -> None:
        # signing a voucher sends nothing to the chain
        if not (self.dirty or self.rewards_dirty):
            return
        token = self.token
        supply = token.total_supply()
        wallets = {h: token.balance_of(h) for h in self.wallet}
        spenders = (self.registry, self.market, self.disputes, self.rewards)
        allowances = {
            (self.last_sender, s.address): token.allowance(self.last_sender, s.address)
            for s in spenders
        }
        # (1) nothing is created or destroyed; the holders outside the model are
        # checked at teardown, and a token sent to them breaks this sum at once
        assert supply == self.supply
        assert supply == sum(wallets.values()) + self.others_total
        # (4) every wallet and allowance is what the rules say
        assert wallets == self.wallet
        for key, value in allowances.items():
            assert value == self.allowance[key]
        if self.dirty:
            self.dirty = False
            self._check_ledger(wallets)
        if self.rewards_dirty:
            self.rewards_dirty = False
            self._check_rewards(wallets[self.rewards.address])

    def _check_ledger(self, wallets: dict[str, int]) -> None:
        registry, market = self.registry, self.market
        providers = {a: registry.provider(a) for a in self.providers}
        free = {a: market.balance_of(a) for a in self.accounts}
        states = [market.channel(c.terms) for c in self.all_channels]
        records = {a: market.record(a) for a in self.records}
        active = registry.active_providers()

        # (2) the registry holds exactly the stakes and unbonding tokens
        assert wallets[registry.address] == sum(p.stake + p.unbonding for p in providers.values())
        # (3) the market holds exactly the free balances and what open channels have left
        assert wallets[market.address] == sum(free.values()) + sum(
            s.deposit - s.paid for s in states if s.open
        )
        # (3b) the dispute contract holds exactly the bonds of disputes not resolved
        unresolved = sum(d.status != RESOLVED for d in self.all_disputes.values())
        assert wallets[self.disputes.address] == BOND * unresolved
        # (4) and every entry is what the rules say
        assert free == self.free
        for address, info in providers.items():
            entry = self.providers[address]
            assert (info.stake, info.unbonding, info.withdrawable_at, info.registered) == (
                entry.stake,
                entry.unbonding,
                entry.withdrawable_at,
                entry.registered,
            )
            assert info.active == (address in self.active)
        assert active == self.active
        for address, got in records.items():
            record = self.records[address]
            assert (got.earned, got.jobs, got.units) == (record.earned, record.jobs, record.units)
        for channel, state in zip(self.all_channels, states, strict=True):
            assert state.id == channel.terms.id
            assert (state.deposit, state.expiry, state.paid, state.jobs, state.units) == (
                channel.deposit,
                channel.expiry,
                channel.paid,
                channel.jobs,
                channel.units,
            )
            assert (state.open, state.closed) == (not channel.closed, channel.closed)

    def _check_rewards(self, held: int) -> None:
        rewards = self.rewards
        pool = rewards.pool(RUN)
        postings = [rewards.posting(RUN, p.round) for p in self.postings]
        owed = {a: rewards.owed(a) for a in self.owed}
        data = {m: rewards.royalties_of(m) for m in self.lineage}
        # (3c) the pool holds exactly its budget, what open postings have not paid, what
        # trainers are owed and what contributors have not claimed of their royalties
        assert held == (
            pool.budget
            + sum(s.total - s.claimed for s in postings if not s.expired)
            + sum(owed.values())
            + sum(d.received - d.claimed for d in data.values())
        )
        # (4) and every entry is what the rules say
        assert (pool.sponsor, pool.budget, pool.locked_until) == (
            self.pool.sponsor,
            self.pool.budget,
            self.pool.locked_until,
        )
        for posting, state in zip(self.postings, postings, strict=True):
            assert (state.model, state.total, state.claimed, state.posted_at, state.expired) == (
                posting.model,
                posting.tree.total,
                posting.claimed,
                posting.posted_at,
                posting.expired,
            )
        assert owed == self.owed
        assert data == {m: DataRoyalty(e.received, e.claimed) for m, e in self.lineage.items()}


def _start(env: Env) -> _Start:
    """Approve the contracts that pull tokens from every actor's wallet; read what
    everyone holds."""
    actors = [u.address for u in env.users[:ACTORS]]
    disputes = env.ledger.deployment.address("disputes")
    rewards = env.ledger.deployment.address("rewards")
    # the owner challenges too: it needs the bonds
    env.token.mint(env.owner.address, 1_000 * TOKEN, sender=env.owner)
    env.token.approve(disputes, MAX, sender=env.owner)
    for user in env.users[:ACTORS]:
        env.token.approve(env.registry.address, MAX, sender=user)
        env.token.approve(env.market.address, MAX, sender=user)
        env.token.approve(disputes, MAX, sender=user)
        env.token.approve(rewards, MAX, sender=user)
    accounts = [env.owner.address, *actors]
    contracts = [env.registry.address, env.market.address, disputes, rewards]
    return _Start(
        supply=env.token.total_supply(),
        wallet={h: env.token.balance_of(h) for h in [*accounts, *contracts]},
        others_total=sum(env.token.balance_of(u.address) for u in env.users[ACTORS:]),
        allowance={(a, c): env.token.allowance(a, c) for a in accounts for c in contracts},
        free={a: env.market.balance_of(a) for a in accounts},
    )


def test_ledger_invariants(session_env: Env) -> None:
    """Random sequences of calls keep the books (see the module docstring)."""
    env = session_env
    outer = env.backend.snapshot()
    # Reads name a sender: eth-tester otherwise looks up its account list on every call.
    w3 = env.backend.w3
    default_account = w3.eth.default_account
    w3.eth.default_account = w3.to_checksum_address(env.owner.address)
    try:
        machine = type("Machine", (LedgerMachine,), {"env": env, "start": _start(env)})
        embedded = isinstance(env.backend, EmbeddedBackend)
        chosen = (
            settings(SETTINGS, max_examples=max(1, SEQUENCES * 3 // 5)) if embedded else SETTINGS
        )
        run_state_machine_as_test(machine, settings=chosen)
    finally:
        w3.eth.default_account = default_account
        env.backend.revert(outer)


def test_provider_earnings_beyond_96_bits_saturate_the_record_and_pay_in_full(env: Env) -> None:
    """Earnings circulate, so a provider's cumulative earnings can pass the 2**96 - 1
    that caps the supply (and the width of the packed record). The redemption that
    crosses it pays in full: the record's earned stops at 2**96 - 1 and the excess is
    credited to the provider's balance, which it can withdraw; so does the next one.
    """
    # Prepare
    client, provider = env.users[0], env.users[1]
    env.token.mint(client.address, MAX_SUPPLY - env.token.total_supply(), sender=env.owner)
    env.token.approve(env.market.address, MAX, sender=client)

    def channel(amount: int, salt: int) -> tuple[ChannelTerms, Voucher, Signature]:
        terms, _ = env.market.open_channel(
            provider.address, amount, env.now() + HOUR, sender=client, salt=salt
        )
        voucher = Voucher(terms.id, amount, 1, 1, b"\x11" * 32)
        return terms, voucher, sign_voucher(client, env.market.domain(), voucher)

    first = env.token.balance_of(client.address)
    env.market.redeem(*channel(first, salt=1), sender=provider)
    env.market.withdraw(first, sender=provider)  # the provider spends its earnings,
    env.token.transfer(client.address, first, sender=provider)  # and they come back
    second = MAX_SUPPLY - first + 1  # cumulative earnings reach exactly 2**96
    terms, voucher, signature = channel(second, salt=2)

    # Execute
    env.market.redeem(terms, voucher, signature, sender=provider)

    # Assert
    assert env.market.record(provider.address) == Contribution(MASK_96, 2, 2)
    assert env.market.balance_of(provider.address) == second
    assert env.market.channel(terms).paid == second
    env.conservation()
    wallet = env.token.balance_of(provider.address)
    env.market.withdraw(second, sender=provider)
    assert env.token.balance_of(provider.address) == wallet + second
    assert env.market.balance_of(provider.address) == 0
    env.token.transfer(client.address, 7, sender=provider)
    env.market.redeem(*channel(7, salt=3), sender=provider)  # and the next one too
    assert env.market.record(provider.address) == Contribution(MASK_96, 3, 3)
    assert env.market.balance_of(provider.address) == 7
    env.conservation()
