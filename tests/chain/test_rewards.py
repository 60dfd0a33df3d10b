"""RewardPool: a federated run's sponsor funds it, the run's coordinator posts each
round's contributions as a Merkle root, contributors claim with proofs; a served
model's royalty flows up its lineage to trainers and data contributors. Success and
attack side by side, on the embedded EVM and on anvil, the token conserved after every
test and the pool's balance equal to what it owes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from idlegrid import ContractReverted, InvalidInput
from idlegrid.chain import (
    TOKEN,
    DataRoyalty,
    DisputeClient,
    DisputeStatus,
    ModelRegistryClient,
    RewardPoolClient,
    RewardTree,
    RoyaltyTerms,
    reward_leaf,
    vote_commitment,
)
from idlegrid.protocol import Account

from ..conftest import Env

MAX = 2**256 - 1
RUN = hashlib.sha256(b"a federated run").digest()
DAY = 24 * 3600
ZERO = "0x" + "00" * 20


@dataclass
class Pool:
    env: Env
    pool: RewardPoolClient
    models: ModelRegistryClient
    sponsor: Account
    coordinator: Account
    contributors: list[Account]
    #: the global model of each registered round
    rounds: dict[int, bytes]
    #: models registered outside the run (royalties may be held for them)
    others: list[bytes] = field(default_factory=list)

    def register_round(self, rnd: int, *, parent: bytes | None = None) -> bytes:
        """Register round ``rnd``'s model: the last round's child, or ``parent``'s."""
        model = hashlib.sha256(b"round %d" % rnd).digest()
        parent = self.rounds.get(rnd - 1, parent)
        self.models.register_round(
            model, RUN, rnd, spec_hash=b"\x01" * 32, data_hash=b"\x02" * 32, parent=parent,
            participants=[c.address for c in self.contributors], sender=self.coordinator,
        )  # fmt: skip
        self.rounds[rnd] = model
        return model

    def register(self, name: bytes, registrant: Account, *, trainer: str = ZERO,
                 parent: bytes | None = None) -> bytes:  # fmt: skip
        model = hashlib.sha256(name).digest()
        self.models.register(model, trainer=trainer, parent=parent or bytes(32), sender=registrant)
        self.others.append(model)
        return model

    def tree(self, rnd: int, amounts: list[int]) -> RewardTree:
        return RewardTree(
            RUN, rnd, {c.address: a for c, a in zip(self.contributors, amounts, strict=True)}
        )


@pytest.fixture
def setup(env: Env) -> Iterator[Pool]:
    pool = env.ledger.client("rewards", RewardPoolClient)
    models = env.ledger.client("models", ModelRegistryClient)
    sponsor, coordinator = env.users[0], env.users[1]
    contributors = env.users[2:6]
    env.token.approve(pool.address, MAX, sender=sponsor)
    p = Pool(env, pool, models, sponsor, coordinator, contributors, {})
    yield p
    env.conservation()
    _pool_holds(p)


def _pool_holds(p: Pool) -> None:
    """The pool's balance is its run's budget plus what its postings have not paid,
    plus the royalties owed to trainers and not claimed by data contributors."""
    rest = 0
    for rnd in p.rounds:
        posting = p.pool.posting(RUN, rnd)
        if posting.posted_at and not posting.expired:
            rest += posting.total - posting.claimed
    owed = sum(p.pool.owed(a) for a in p.env.all_addresses())
    held = 0
    for model in [*p.rounds.values(), *p.others]:
        data = p.pool.royalties_of(model)
        held += data.received - data.claimed
    assert p.env.token.balance_of(p.pool.address) == p.pool.pool(RUN).budget + rest + owed + held


def _after_window(p: Pool) -> None:
    p.env.backend.advance_time(p.pool.challenge_window() + 1)


def test_contributors_claim_their_posted_shares_after_the_challenge_window(setup: Pool) -> None:
    # Prepare: 10 tokens funded; round 1's global model in the lineage
    p, env = setup, setup.env
    p.pool.fund(RUN, 10 * TOKEN, env.now() + 30 * DAY, sender=p.sponsor)
    model = p.register_round(1)
    tree = p.tree(1, [3 * TOKEN, 2 * TOKEN, TOKEN, 1])
    before = {c.address: env.token.balance_of(c.address) for c in p.contributors}

    # Execute: the coordinator posts; once the window is over, each claims (one by a
    # stranger on the contributor's behalf: the tokens go to the contributor)
    p.pool.post(tree, model, sender=p.coordinator)
    with pytest.raises(ContractReverted, match="still in the challenge window"):
        p.pool.claim_from(tree, p.contributors[0].address, sender=p.contributors[0])
    _after_window(p)
    for c in p.contributors[:3]:
        p.pool.claim_from(tree, c.address, sender=c)
    p.pool.claim_from(tree, p.contributors[3].address, sender=p.sponsor)

    # Assert: each got its amount; the budget holds the rest
    for c, amount in zip(p.contributors, [3 * TOKEN, 2 * TOKEN, TOKEN, 1], strict=True):
        assert env.token.balance_of(c.address) - before[c.address] == amount
        assert p.pool.claimed(RUN, 1, c.address)
    posting = p.pool.posting(RUN, 1)
    assert (posting.total, posting.claimed, posting.model) == (tree.total, tree.total, model)
    assert p.pool.pool(RUN).budget == 10 * TOKEN - tree.total
    assert p.pool._call("leaf", RUN, 1, p.contributors[0].address, 3 * TOKEN) == reward_leaf(
        RUN, 1, p.contributors[0].address, 3 * TOKEN
    )


def test_forged_repeated_and_late_claims_are_refused(setup: Pool) -> None:
    # Prepare
    p, env = setup, setup.env
    p.pool.fund(RUN, 10 * TOKEN, env.now() + 30 * DAY, sender=p.sponsor)
    model = p.register_round(1)
    tree = p.tree(1, [TOKEN, TOKEN, TOKEN, TOKEN])
    p.pool.post(tree, model, sender=p.coordinator)
    _after_window(p)
    alice, bob = p.contributors[0], p.contributors[1]
    stranger = env.users[9]
    held = env.token.balance_of(p.pool.address)

    # Execute / Assert: more than its amount, someone else's proof, a stranger, another
    # round: refused, nothing paid
    for who, amount, proof, rnd, reason in (
        (alice.address, 2 * TOKEN, tree.proof(alice.address), 1, "not a leaf"),
        (alice.address, TOKEN, tree.proof(bob.address), 1, "not a leaf"),
        (stranger.address, TOKEN, tree.proof(alice.address), 1, "not a leaf"),
        (alice.address, TOKEN, tree.proof(alice.address), 2, "round not posted"),
    ):
        with pytest.raises(ContractReverted, match=reason):
            p.pool.claim(RUN, rnd, who, amount, proof, sender=stranger)
    assert env.token.balance_of(p.pool.address) == held
    p.pool.claim_from(tree, alice.address, sender=alice)
    with pytest.raises(ContractReverted, match="already claimed"):
        p.pool.claim_from(tree, alice.address, sender=alice)
    with pytest.raises(InvalidInput, match="not in round 1"):
        tree.proof(stranger.address)

    # after the claim period, the rest goes back to the budget; no more claims
    env.backend.advance_time(p.pool.claim_period())
    with pytest.raises(ContractReverted, match="claim period is over"):
        p.pool.claim_from(tree, bob.address, sender=bob)
    budget = p.pool.pool(RUN).budget
    p.pool.expire(RUN, 1, sender=stranger)
    assert p.pool.pool(RUN).budget == budget + 3 * TOKEN
    with pytest.raises(ContractReverted, match="already expired"):
        p.pool.expire(RUN, 1, sender=stranger)
    with pytest.raises(ContractReverted, match="claim period is over"):
        p.pool.claim_from(tree, bob.address, sender=bob)


def test_only_the_coordinator_posts_the_lineage_s_model_within_the_budget(setup: Pool) -> None:
    # Prepare
    p, env = setup, setup.env
    p.pool.fund(RUN, 4 * TOKEN, env.now() + 30 * DAY, sender=p.sponsor)
    model = p.register_round(1)
    tree = p.tree(1, [TOKEN, TOKEN, TOKEN, TOKEN])
    big = p.tree(1, [TOKEN, TOKEN, TOKEN, TOKEN + 1])

    # Execute / Assert
    with pytest.raises(ContractReverted, match="only the run's coordinator"):
        p.pool.post(tree, model, sender=p.sponsor)
    with pytest.raises(ContractReverted, match="not the round's model"):
        p.pool.post(tree, hashlib.sha256(b"another").digest(), sender=p.coordinator)
    with pytest.raises(ContractReverted, match="not the round's model"):  # round 2: none yet
        p.pool.post(p.tree(2, [1, 1, 1, 1]), model, sender=p.coordinator)
    with pytest.raises(ContractReverted, match="holds less than the posting"):
        p.pool.post(big, model, sender=p.coordinator)
    with pytest.raises(ContractReverted, match="no such federated run"):
        p.pool.post(RewardTree(b"\x07" * 32, 1, {p.contributors[0].address: 1}), model,
                    sender=p.coordinator)  # fmt: skip
    p.pool.post(tree, model, sender=p.coordinator)
    with pytest.raises(ContractReverted, match="already posted"):
        p.pool.post(tree, model, sender=p.coordinator)
    with pytest.raises(InvalidInput, match="positive"):
        p.tree(3, [TOKEN, 0, TOKEN, TOKEN])


def test_the_sponsor_takes_back_only_the_unposted_budget_after_its_lock(setup: Pool) -> None:
    # Prepare
    p, env = setup, setup.env
    until = env.now() + 30 * DAY
    p.pool.fund(RUN, 10 * TOKEN, until, sender=p.sponsor)
    model = p.register_round(1)
    p.pool.post(p.tree(1, [TOKEN, TOKEN, TOKEN, TOKEN]), model, sender=p.coordinator)
    wallet = env.token.balance_of(p.sponsor.address)

    # Execute / Assert: not before the lock, not by another, not a shorter lock, not a
    # second sponsor
    with pytest.raises(ContractReverted, match="the pool is locked"):
        p.pool.reclaim(RUN, sender=p.sponsor)
    with pytest.raises(ContractReverted, match="only the run's sponsor reclaims"):
        p.pool.reclaim(RUN, sender=p.coordinator)
    with pytest.raises(ContractReverted, match="cannot be shortened"):
        p.pool.fund(RUN, TOKEN, until - 1, sender=p.sponsor)
    env.token.approve(p.pool.address, MAX, sender=p.coordinator)
    with pytest.raises(ContractReverted, match="only the run's sponsor funds"):
        p.pool.fund(RUN, TOKEN, until, sender=p.coordinator)
    env.backend.advance_time(30 * DAY + 1)
    got = p.pool.reclaim(RUN, sender=p.sponsor)

    # Assert: the 6 tokens no posting holds came back; the posted 4 stay for claims
    assert env.token.balance_of(p.sponsor.address) - wallet == 6 * TOKEN
    (event,) = p.pool._events("Reclaimed", got)
    assert event["amount"] == 6 * TOKEN and p.pool.pool(RUN).budget == 0
    with pytest.raises(ContractReverted, match="nothing to reclaim"):
        p.pool.reclaim(RUN, sender=p.sponsor)


# -- royalties -------------------------------------------------------------------------

UNIT = 1_000_000  # wei of royalty in the examples: every part below is exact


def _payer(p: Pool) -> Account:
    """A client paying royalties (the job market does it at redemption)."""
    payer = p.env.users[18]
    p.env.token.approve(p.pool.address, MAX, sender=payer)
    return payer


def _fine_tuned_run(p: Pool) -> tuple[bytes, bytes, bytes, RewardTree]:
    """A base model (trainer users[8]); a run's round 1 fine-tuned from it, posted for
    contributors 3:2:1:1 and priced by the coordinator with 60 % to data; a child of
    round 1 registered by users[9] naming no trainer."""
    base = p.register(b"base", p.env.users[7], trainer=p.env.users[8].address)
    p.pool.fund(RUN, 10 * TOKEN, p.env.now() + 30 * DAY, sender=p.sponsor)
    round1 = p.register_round(1, parent=base)
    tree = p.tree(1, [3 * TOKEN, 2 * TOKEN, TOKEN, TOKEN])
    p.pool.post(tree, round1, sender=p.coordinator)
    p.pool.set_royalty(round1, 5, 6_000, sender=p.coordinator)
    child = p.register(b"child", p.env.users[9], parent=round1)
    return base, round1, child, tree


def test_a_royalty_flows_up_the_lineage_to_trainers_and_data_contributors_to_the_wei(
    setup: Pool,
) -> None:
    # Prepare
    p, env = setup, setup.env
    base, round1, child, tree = _fine_tuned_run(p)
    payer = _payer(p)
    wallet = env.token.balance_of(payer.address)

    # Execute: a client pays 1,000,000 wei of royalty for the child
    paid = p.pool.pay_royalty(child, UNIT, sender=payer)

    # Assert: the child's registrant (no trainer named) keeps 80 %; of round 1's 20 %,
    # 20 % goes up to the base, 60 % of the rest to round 1's contributors and the
    # remainder to its coordinator (its trainer); the base's trainer gets the 4 %
    assert env.token.balance_of(payer.address) == wallet - UNIT
    (event,) = p.pool._events("RoyaltyPaid", paid)
    assert (event["model"], event["payer"], event["amount"]) == (child, payer.address, UNIT)
    shared = [
        (e["model"], e["trainer"], e["to_trainer"], e["to_data"], e["to_parent"])
        for e in p.pool._events("RoyaltyShared", paid)
    ]
    assert shared == [
        (child, env.users[9].address, 800_000, 0, 200_000),
        (round1, p.coordinator.address, 64_000, 96_000, 40_000),
        (base, env.users[8].address, 40_000, 0, 0),
    ]
    assert p.pool.owed(env.users[9].address) == 800_000
    assert p.pool.owed(p.coordinator.address) == 64_000
    assert p.pool.owed(env.users[8].address) == 40_000
    assert p.pool.royalties_of(round1) == DataRoyalty(96_000, 0)
    assert p.pool.royalties_of(child) == p.pool.royalties_of(base) == DataRoyalty(0, 0)
    assert p.pool.round_of(round1) == (RUN, 1) and p.pool.round_of(child) is None
    assert p.pool.royalty(round1) == RoyaltyTerms(5, 6_000) and p.pool.royalty(child) is None
    assert (p.pool.royalty_rate(round1), p.pool.royalty_rate(child)) == (5, 0)

    # Execute / Assert: the trainer withdraws; each contributor's claim (a stranger may
    # send it) pays its posted share of round 1's data royalty, rounded down: 2 wei wait
    trainer = env.users[9]
    before = env.token.balance_of(trainer.address)
    p.pool.withdraw_royalties(sender=trainer)
    assert env.token.balance_of(trainer.address) - before == 800_000
    assert p.pool.owed(trainer.address) == 0
    _after_window(p)
    for c, share in zip(p.contributors, [3, 2, 1, 1], strict=True):
        before = env.token.balance_of(c.address)
        claim = p.pool.claim_royalty(round1, tree, c.address, sender=env.users[9])
        assert env.token.balance_of(c.address) - before == 96_000 * share // 7
        assert p.pool.royalty_claimed(round1, c.address) == 96_000 * share // 7
        (event,) = p.pool._events("RoyaltyClaimed", claim)
        assert (event["contributor"], event["amount"]) == (c.address, 96_000 * share // 7)
    assert p.pool.royalties_of(round1) == DataRoyalty(96_000, 96_000 - 2)


def test_a_contributor_claims_again_only_what_later_royalties_added(setup: Pool) -> None:
    # Prepare: a round's model without terms (the default: half to data), posted
    p, env = setup, setup.env
    p.pool.fund(RUN, 10 * TOKEN, env.now() + 30 * DAY, sender=p.sponsor)
    model = p.register_round(1)
    tree = p.tree(1, [3 * TOKEN, 2 * TOKEN, TOKEN, TOKEN])
    p.pool.post(tree, model, sender=p.coordinator)
    payer = _payer(p)
    alice = p.contributors[0]
    p.pool.pay_royalty(model, UNIT, sender=payer)
    _after_window(p)
    p.pool.claim_royalty(model, tree, alice.address, sender=alice)
    with pytest.raises(ContractReverted, match="nothing to claim"):
        p.pool.claim_royalty(model, tree, alice.address, sender=alice)
    wallet = env.token.balance_of(alice.address)

    # Execute: more royalty, after the posting itself expired
    env.backend.advance_time(p.pool.claim_period())
    p.pool.expire(RUN, 1, sender=payer)
    p.pool.pay_royalty(model, 2 * UNIT, sender=payer)
    p.pool.claim_royalty(model, tree, alice.address, sender=alice)

    # Assert: half of each royalty is data royalty; alice got 3/7 of all of it in total
    assert p.pool.owed(p.coordinator.address) == 3 * UNIT // 2
    assert p.pool.royalties_of(model).received == 3 * UNIT // 2
    assert env.token.balance_of(alice.address) - wallet == 1_500_000 * 3 // 7 - 500_000 * 3 // 7
    assert p.pool.royalty_claimed(model, alice.address) == 1_500_000 * 3 // 7


def test_royalty_terms_are_set_once_by_the_registrant_within_bounds(setup: Pool) -> None:
    # Prepare
    p, env = setup, setup.env
    registrant, stranger = env.users[7], env.users[9]
    model = p.register(b"a model", registrant, trainer=env.users[8].address)

    # Execute / Assert: a stranger, the trainer, a zero rate, more than all of it to
    # data, a model nobody registered: refused
    for sender, target, rate, bps, reason in (
        (stranger, model, 5, 1_000, "only the model's registrant"),
        (env.users[8], model, 5, 1_000, "only the model's registrant"),
        (registrant, model, 0, 1_000, "zero royalty rate"),
        (registrant, model, 5, 10_001, "data part above 10000 bps"),
        (registrant, b"\x09" * 32, 5, 1_000, "model not registered"),
    ):
        with pytest.raises(ContractReverted, match=reason):
            p.pool.set_royalty(target, rate, bps, sender=sender)
    assert p.pool.royalty(model) is None
    set_ = p.pool.set_royalty(model, 7, 10_000, sender=registrant)
    (event,) = p.pool._events("RoyaltySet", set_)
    assert (event["model"], event["rate"], event["data_bps"]) == (model, 7, 10_000)
    with pytest.raises(ContractReverted, match="royalty already set"):
        p.pool.set_royalty(model, 1, 0, sender=registrant)
    assert p.pool.royalty(model) == RoyaltyTerms(7, 10_000)


def test_empty_or_unregistered_royalties_and_empty_withdrawals_are_refused(setup: Pool) -> None:
    # Prepare
    p, env = setup, setup.env
    payer = _payer(p)
    model = p.register(b"a model", env.users[7])
    poor = env.users[17]  # holds tokens, approved nothing
    held = env.token.balance_of(p.pool.address)

    # Execute / Assert
    with pytest.raises(ContractReverted, match="model not registered"):
        p.pool.pay_royalty(b"\x09" * 32, UNIT, sender=payer)
    with pytest.raises(ContractReverted, match="nothing to pay"):
        p.pool.pay_royalty(model, 0, sender=payer)
    with pytest.raises(ContractReverted, match="insufficient allowance"):
        p.pool.pay_royalty(model, UNIT, sender=poor)
    with pytest.raises(ContractReverted, match="nothing owed"):
        p.pool.withdraw_royalties(sender=env.users[7])
    assert env.token.balance_of(p.pool.address) == held
    p.pool.pay_royalty(model, UNIT, sender=payer)  # no trainer named: its registrant's
    p.pool.withdraw_royalties(sender=env.users[7])
    with pytest.raises(ContractReverted, match="nothing owed"):
        p.pool.withdraw_royalties(sender=env.users[7])


def test_royalty_claims_with_a_wrong_leaf_or_another_model_s_posting_are_refused(
    setup: Pool,
) -> None:
    # Prepare: rounds 1 and 2 posted with different contributors' amounts; royalties
    # for both
    p, env = setup, setup.env
    p.pool.fund(RUN, 10 * TOKEN, env.now() + 30 * DAY, sender=p.sponsor)
    first, second = p.register_round(1), p.register_round(2)
    tree1 = p.tree(1, [TOKEN, TOKEN, TOKEN, TOKEN])
    tree2 = p.tree(2, [4 * TOKEN, 1, 1, 1])
    p.pool.post(tree1, first, sender=p.coordinator)
    payer = _payer(p)
    p.pool.pay_royalty(first, UNIT, sender=payer)
    unposted = p.register(b"unposted", env.users[7])
    p.pool.pay_royalty(unposted, UNIT, sender=payer)
    alice, bob = p.contributors[0], p.contributors[1]
    with pytest.raises(ContractReverted, match="still in the challenge window"):
        p.pool.claim_royalty(first, tree1, alice.address, sender=alice)
    p.pool.post(tree2, second, sender=p.coordinator)
    _after_window(p)
    p.pool.pay_royalty(second, UNIT, sender=payer)
    held = env.token.balance_of(p.pool.address)
    proof = tree1.proof(alice.address)

    # Execute / Assert: a bigger amount, bob's proof, a stranger, round 2's leaf for
    # round 1's model, a model with no posting: refused, nothing paid
    for model, who, amount, leaf_proof, reason in (
        (first, alice.address, 2 * TOKEN, proof, "not a leaf"),
        (first, alice.address, TOKEN, tree1.proof(bob.address), "not a leaf"),
        (first, env.users[9].address, TOKEN, proof, "not a leaf"),
        (first, alice.address, 4 * TOKEN, tree2.proof(alice.address), "not a leaf"),
        (unposted, alice.address, TOKEN, proof, "no posting for the model"),
    ):
        with pytest.raises(ContractReverted, match=reason):
            p.pool._send("claim_royalty", model, who, amount, leaf_proof, sender=env.users[9])
    with pytest.raises(ContractReverted, match="no posting"):
        p.pool.claim_royalty(b"\x09" * 32, tree1, alice.address, sender=alice)
    with pytest.raises(InvalidInput, match="not in round 1"):
        p.pool.claim_royalty(first, tree1, env.users[9].address, sender=alice)
    assert env.token.balance_of(p.pool.address) == held
    # and round 2's own claim pays from round 2's royalty only (80 % of it stayed with
    # round 2, a fine-tuning of round 1; half of that, by default, went to data)
    p.pool.claim_royalty(second, tree2, alice.address, sender=alice)
    assert p.pool.royalties_of(second).claimed == 400_000 * 4 * TOKEN // tree2.total
    assert p.pool.royalties_of(first).claimed == 0


def test_a_lineage_deeper_than_max_depth_stops_there(setup: Pool) -> None:
    # Prepare: ten generations, each fine-tuned from the one before, each trainer its own
    p, env = setup, setup.env
    depth = p.pool._call("MAX_DEPTH")
    assert (depth, p.pool._call("PARENT_BPS"), p.pool._call("DEFAULT_DATA_BPS")) == (8, 2000, 5000)
    trainers = [u.address for u in env.users[6:16]]
    chain: list[bytes] = []
    for i, trainer in enumerate(trainers):
        parent = chain[-1] if chain else None
        chain.append(p.register(b"generation %d" % i, p.sponsor, trainer=trainer, parent=parent))
    payer = _payer(p)

    # Execute: 10**8 wei for the youngest
    paid = p.pool.pay_royalty(chain[-1], 10**8, sender=payer)

    # Assert: each of the 8 youngest generations hands a fifth up; the 8th keeps all it
    # got (10**8 / 5**7); the two oldest get nothing
    expected = [10**8 // 5**k * 4 // 5 for k in range(depth - 1)] + [10**8 // 5 ** (depth - 1)]
    got = [p.pool.owed(t) for t in reversed(trainers)]
    assert got == [*expected, 0, 0]
    assert sum(expected) == 10**8
    shared = p.pool._events("RoyaltyShared", paid)
    assert [e["model"] for e in shared] == chain[::-1][:depth]
    assert shared[-1]["to_parent"] == 0 and shared[-1]["to_trainer"] == 1280


def test_the_pool_computes_a_posting_s_root_and_total_from_its_amounts(setup: Pool) -> None:
    """The posting is its amounts: the root and total are the pool's, the event records
    every amount (shares read back from the chain), and a list a careful coordinator
    never sends is refused whole."""
    p, env = setup, setup.env
    p.pool.fund(RUN, 10 * TOKEN, env.now() + 30 * DAY, sender=p.sponsor)
    model = p.register_round(1)
    tree = p.tree(1, [4, 3, 2, 1])
    who = tree.contributors
    bad = [
        ([who[1], who[0]], [1, 1], "ascending address order"),
        ([who[0], who[0]], [1, 1], "ascending address order"),
        ([who[0]], [0], "amount is zero"),
        ([who[0], who[1]], [1], "an empty posting"),
        ([], [], "an empty posting"),
    ]

    for contributors, amounts, reason in bad:
        with pytest.raises(ContractReverted, match=reason):
            p.pool._send(
                "post", RUN, 1, model, contributors, amounts, b"\x09" * 32, sender=p.coordinator
            )
    p.pool.post(tree, model, inputs=b"\x09" * 32, sender=p.coordinator)

    state = p.pool.posting(RUN, 1)
    assert (state.root, state.total) == (tree.root, 10)
    posted = p.pool.posted(model)
    assert posted is not None and posted.amounts == dict(tree.amounts)
    assert posted.inputs == b"\x09" * 32 and posted.tree().root == tree.root
    assert [int(c, 16) for c in who] == sorted(int(c, 16) for c in who)
    env.conservation()


# -- challenges of a posting -----------------------------------------------------------

REFEREE_STAKE = 200 * TOKEN
SALT = b"\x5a" * 32


def _open_challenge(p: Pool, challenger: Account) -> bytes:
    """Three staked referees, and ``challenger``'s challenge of round 1's posting."""
    env = p.env
    disputes = env.ledger.client("disputes", DisputeClient)
    for r in env.users[6:9]:
        env.token.approve(env.registry.address, MAX, sender=r)
        env.registry.register("http://r", 1, b"\x01" * 32, REFEREE_STAKE, sender=r)
    env.token.approve(disputes.address, MAX, sender=challenger)
    dispute, _ = disputes.open_posting(RUN, 1, sender=challenger)
    return dispute


def _rule(
    p: Pool,
    dispute: bytes,
    votes: list[bool],
    sender: Account,
    between: Callable[[], object] = lambda: None,
) -> None:
    """The committee drawn, votes ``votes`` (True: the posting is wrong; ``between``
    runs once they are committed), resolved."""
    env = p.env
    disputes = env.ledger.client("disputes", DisputeClient)
    env.backend.advance_time(1)
    env.backend.advance_time(1)
    disputes.draw(dispute, sender=sender)
    by_address = {r.address: r for r in env.users[6:9]}
    members = [by_address[a] for a in disputes.dispute(dispute).committee]
    for member, vote in zip(members, votes, strict=True):
        commitment = vote_commitment(dispute, member.address, vote, SALT)
        disputes.commit(dispute, commitment, sender=member)
    between()
    for member, vote in zip(members, votes, strict=True):
        disputes.reveal(dispute, vote, SALT, sender=member)
    disputes.resolve(dispute, sender=sender)


def test_a_wrong_posting_is_challenged_voided_and_posted_again(setup: Pool) -> None:
    """Frozen while disputed (no claim, no expiry), void when the committee finds it
    wrong (its total back in the budget), then posted again, corrected, and claimed."""
    p, env = setup, setup.env
    p.pool.fund(RUN, 10 * TOKEN, env.now() + 30 * DAY, sender=p.sponsor)
    model = p.register_round(1)
    wrong, right = p.tree(1, [4, 3, 2, 1]), p.tree(1, [1, 2, 3, 4])
    p.pool.post(wrong, model, inputs=b"\x09" * 32, sender=p.coordinator)
    challenger = p.contributors[3]
    before = env.token.balance_of(challenger.address)

    disputes = env.ledger.client("disputes", DisputeClient)
    dispute = _open_challenge(p, challenger)
    refused: list[str] = []

    def claim_after_the_window() -> None:  # the window ends while the dispute runs
        _after_window(p)
        with pytest.raises(ContractReverted) as exc:
            p.pool.claim_from(wrong, p.contributors[0].address, sender=p.sponsor)
        refused.append(exc.value.reason)

    _rule(p, dispute, [True, True, True], challenger, claim_after_the_window)

    assert refused == ["rewards: the posting is disputed"]
    assert disputes.dispute(dispute).status is DisputeStatus.RESOLVED
    assert not p.pool.disputed(RUN, 1)
    assert p.pool.posting(RUN, 1).posted_at == 0 and p.pool.pool(RUN).budget == 10 * TOKEN
    assert p.pool.round_of(model) is None
    assert env.token.balance_of(challenger.address) == before  # its bond came back
    with pytest.raises(ContractReverted, match="round not posted"):
        p.pool.claim_from(wrong, p.contributors[0].address, sender=p.sponsor)

    # Execute: the coordinator posts the round again, corrected; claims follow its window
    p.pool.post(right, model, inputs=b"\x0a" * 32, sender=p.coordinator)
    _after_window(p)
    for c in p.contributors:
        p.pool.claim_from(right, c.address, sender=p.sponsor)
    assert p.pool.posting(RUN, 1).claimed == 10 and p.pool.round_of(model) == (RUN, 1)
    env.conservation()


def test_a_right_posting_stands_and_the_challenger_loses_its_bond(setup: Pool) -> None:
    p, env = setup, setup.env
    p.pool.fund(RUN, 10 * TOKEN, env.now() + 30 * DAY, sender=p.sponsor)
    model = p.register_round(1)
    tree = p.tree(1, [1, 2, 3, 4])
    p.pool.post(tree, model, inputs=b"\x09" * 32, sender=p.coordinator)
    coordinator_wallet = env.token.balance_of(p.coordinator.address)

    _rule(p, _open_challenge(p, p.contributors[0]), [False, False, True], p.contributors[0])
    _after_window(p)
    p.pool.claim_from(tree, p.contributors[0].address, sender=p.sponsor)

    assert p.pool.posting(RUN, 1).total == 10 and not p.pool.disputed(RUN, 1)
    bond = env.ledger.client("disputes", DisputeClient).bond()
    assert env.token.balance_of(p.coordinator.address) == coordinator_wallet + bond
    env.conservation()


def test_a_posting_is_challenged_only_in_its_window_once_and_not_by_its_coordinator(
    setup: Pool,
) -> None:
    p, env = setup, setup.env
    disputes = env.ledger.client("disputes", DisputeClient)
    p.pool.fund(RUN, 10 * TOKEN, env.now() + 30 * DAY, sender=p.sponsor)
    model = p.register_round(1)
    p.pool.post(p.tree(1, [1, 2, 3, 4]), model, sender=p.coordinator)
    for who in (p.coordinator, p.contributors[0], p.contributors[1]):
        env.token.approve(disputes.address, MAX, sender=who)

    with pytest.raises(ContractReverted, match="cannot challenge its own posting"):
        disputes.open_posting(RUN, 1, sender=p.coordinator)
    with pytest.raises(ContractReverted, match="round not posted"):
        disputes.open_posting(RUN, 2, sender=p.contributors[0])
    disputes.open_posting(RUN, 1, sender=p.contributors[0])
    with pytest.raises(ContractReverted, match="disputed already"):
        disputes.open_posting(RUN, 1, sender=p.contributors[1])
    with pytest.raises(ContractReverted, match="only the arbiter"):
        p.pool._send("settle", RUN, 1, True, sender=p.coordinator)
    with pytest.raises(ContractReverted, match="only the arbiter"):
        p.pool._send("freeze", RUN, 1, sender=p.contributors[1])
    with pytest.raises(ContractReverted, match="arbiter already set"):
        p.pool.set_arbiter(p.sponsor.address, sender=env.owner)

    env.backend.advance_time(p.pool.challenge_window() + 1)
    p.pool.fund(RUN, TOKEN, env.now() + 30 * DAY, sender=p.sponsor)
    model2 = p.register_round(2)
    p.pool.post(p.tree(2, [1, 1, 1, 1]), model2, sender=p.coordinator)
    env.backend.advance_time(p.pool.challenge_window() + 1)
    with pytest.raises(ContractReverted, match="challenge window is over"):
        disputes.open_posting(RUN, 2, sender=p.contributors[0])
    env.conservation()
