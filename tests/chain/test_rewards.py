"""RewardPool: a federated run's sponsor funds it, the run's coordinator posts each
round's contributions as a Merkle root, contributors claim with proofs; success and
attack side by side, on the embedded EVM and on anvil, the token conserved after every
test and the pool's balance equal to what it owes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from idlegrid import ContractReverted, InvalidInput
from idlegrid.chain import TOKEN, ModelRegistryClient, RewardPoolClient, RewardTree, reward_leaf
from idlegrid.protocol import Account

from ..conftest import Env

MAX = 2**256 - 1
RUN = hashlib.sha256(b"a federated run").digest()
DAY = 24 * 3600


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

    def register_round(self, rnd: int) -> bytes:
        model = hashlib.sha256(b"round %d" % rnd).digest()
        parent = self.rounds.get(rnd - 1)
        self.models.register_round(
            model, RUN, rnd, spec_hash=b"\x01" * 32, data_hash=b"\x02" * 32, parent=parent,
            participants=[c.address for c in self.contributors], sender=self.coordinator,
        )  # fmt: skip
        self.rounds[rnd] = model
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
    """The pool's balance is its run's budget plus what its postings have not paid."""
    rest = 0
    for rnd in p.rounds:
        posting = p.pool.posting(RUN, rnd)
        if posting.posted_at and not posting.expired:
            rest += posting.total - posting.claimed
    assert p.env.token.balance_of(p.pool.address) == p.pool.pool(RUN).budget + rest


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
