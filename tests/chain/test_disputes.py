"""Disputes: the market's arbiter, end to end on the chain.

A provider's signed receipt is disputed with a bond; a committee of staked
providers is drawn, commits and reveals votes; ``resolve`` slashes and pays.
Also the two exploits issue 8 quotes (the owner slashing through the arbiter,
a provider leaving before its channel's vouchers are redeemed), now refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import pytest

from idlegrid import ContractReverted
from idlegrid.chain import (
    TOKEN,
    ChannelTerms,
    DisputeClient,
    DisputeOutcome,
    DisputeStatus,
    EmbeddedBackend,
    Indexer,
    TxResult,
    deploy_contract,
    measure_dispute_gas,
    vote_commitment,
)
from idlegrid.protocol import (
    Account,
    Domain,
    Signature,
    Voucher,
    hash_pair,
    merkle_proof,
    merkle_root,
    receipt_digest,
    sign_voucher,
)

from ..conftest import CONFIG, Env
from .receipts import Receipt2, node_domain, sign_receipt

MAX = 2**256 - 1
DAY = 86400
STAKE = 400 * TOKEN
REFEREE_STAKE = 200 * TOKEN
SALT = b"\x5a" * 32
ZERO = "0x" + "00" * 20
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _reverts(action: Callable[[], object]) -> str:
    with pytest.raises(ContractReverted) as exc:
        action()
    return exc.value.reason


@dataclass
class Case:
    """A provider paid on one channel for three jobs, staked referees and a challenger."""

    env: Env
    disputes: DisputeClient
    accused: Account
    client: Account
    challenger: Account
    referees: list[Account]
    terms: ChannelTerms
    receipts: list[Receipt2]
    #: the voucher the provider redeemed (jobs 1..3) and the client's signature of it
    voucher: Voucher
    voucher_signature: Signature

    def node_domain(self) -> Domain:
        return node_domain(self.env.backend.chain_id, self.env.market.address)

    def sign(self, leaf: bytes, signer: Account | None = None) -> Signature:
        return sign_receipt(signer or self.accused, self.node_domain(), leaf)

    def proof(self, index: int) -> list[bytes]:
        return merkle_proof([r.leaf() for r in self.receipts], index)

    def open(self, index: int = 1) -> bytes:
        dispute, _ = self.open_with(self.receipts[index], self.proof(index))
        return dispute

    def open_with(
        self,
        receipt: Receipt2,
        proof: list[bytes],
        *,
        voucher: Voucher | None = None,
        voucher_signature: Signature | None = None,
        signature: Signature | None = None,
        terms: ChannelTerms | None = None,
        sender: Account | None = None,
    ) -> tuple[bytes, TxResult]:
        """Open a dispute of ``receipt``; by default with the redeemed voucher, the
        provider's signature of the receipt, on the case's channel, by the challenger."""
        return self.disputes.open(
            terms or self.terms,
            voucher or self.voucher,
            voucher_signature or self.voucher_signature,
            receipt,
            signature or self.sign(receipt.leaf()),
            proof,
            sender=sender or self.challenger,
        )

    def mine_seed(self) -> None:
        """Mine the seed block and one more: some nodes (anvil) estimate a transaction
        at the latest block's number, so the draw waits until it is past the seed."""
        self.env.backend.advance_time(1)
        self.env.backend.advance_time(1)

    def draw(self, dispute: bytes) -> list[Account]:
        self.mine_seed()
        self.disputes.draw(dispute, sender=self.challenger)
        committee = self.disputes.dispute(dispute).committee
        return [r for r in self.referees if r.address in committee]

    def vote(self, dispute: bytes, votes: Sequence[bool | None]) -> list[int]:
        """Committee members commit and reveal ``votes`` in order (None: no vote);
        returns the gas of every transaction."""
        committee = self.draw_order(dispute)
        gas = []
        for member, vote in zip(committee, votes, strict=True):
            if vote is not None:
                commitment = vote_commitment(dispute, member.address, vote, SALT)
                gas.append(self.disputes.commit(dispute, commitment, sender=member).gas_used)
        if None in votes:  # not everyone committed: reveals wait for the commit deadline
            self.env.backend.advance_time(self.disputes.commit_period())
        for member, vote in zip(committee, votes, strict=True):
            if vote is not None:
                gas.append(self.disputes.reveal(dispute, vote, SALT, sender=member).gas_used)
        return gas

    def draw_order(self, dispute: bytes) -> list[Account]:
        by_address = {r.address: r for r in self.referees}
        return [by_address[a] for a in self.disputes.dispute(dispute).committee]

    def wallets(self) -> dict[str, int]:
        people = [self.accused, self.client, self.challenger, *self.referees]
        return {p.address: self.env.token.balance_of(p.address) for p in people}

    def conservation(self) -> None:
        holders = [
            *self.env.all_addresses(),
            self.env.registry.address,
            self.env.market.address,
            self.disputes.address,
        ]
        assert self.env.token.total_supply() == sum(self.env.token.balance_of(h) for h in holders)


@pytest.fixture
def case(env: Env) -> Case:
    accused, client, challenger, *referees = env.users[:6]
    registry, market = env.registry, env.market
    disputes = env.ledger.client("disputes", DisputeClient)
    for provider, stake in ((accused, STAKE), *((r, REFEREE_STAKE) for r in referees)):
        env.token.approve(registry.address, MAX, sender=provider)
        registry.register("http://p", 1, b"\x01" * 32, stake, sender=provider)
    env.token.approve(market.address, MAX, sender=client)
    env.token.approve(disputes.address, MAX, sender=challenger)
    terms, _ = market.open_channel(accused.address, 50 * TOKEN, env.now() + 3600, sender=client)
    receipts = [
        Receipt2(
            terms.id,
            bytes([i + 1]) * 32,
            accused.address,
            b"\xaa" * 32,
            bytes([0x10 + i]) * 32,
            bytes([0x20 + i]) * 32,
            i + 1,
            (i + 1) * TOKEN,
        )
        for i in range(3)
    ]
    root = merkle_root([r.leaf() for r in receipts])
    voucher = Voucher(terms.id, 6 * TOKEN, 3, 6, root)
    voucher_signature = sign_voucher(client, market.domain(), voucher)
    market.redeem(terms, voucher, voucher_signature, sender=accused)
    return Case(
        env, disputes, accused, client, challenger, referees, terms, receipts, voucher,
        voucher_signature,
    )  # fmt: skip


# -- deployment ------------------------------------------------------------------


def test_deployment_wires_disputes_as_the_only_arbiter(env: Env) -> None:
    disputes = env.ledger.client("disputes", DisputeClient)

    assert env.market.arbiter() == disputes.address
    assert disputes.market() == env.market.address
    assert (disputes.bond(), disputes.committee_size()) == (CONFIG.dispute_bond, 3)
    assert disputes.dispute_window() == CONFIG.dispute_window


def test_contract_computes_leaf_digest_and_commitment_as_python(case: Case) -> None:
    receipt = case.receipts[0]

    leaf = case.disputes.receipt_leaf(receipt)

    assert leaf == receipt.leaf()
    assert case.disputes.receipt_digest(leaf) == receipt_digest(case.node_domain(), leaf)
    expected = vote_commitment(leaf, case.referees[0].address, True, SALT)
    assert case.disputes.commitment(leaf, case.referees[0].address, True, SALT) == expected


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"bond": 0}, "disputes: bond must be positive"),
        ({"slash_bps": 10_001}, "disputes: slash share above 100%"),
        ({"committee": 0}, "disputes: committee size out of range"),
        ({"committee": 16}, "disputes: committee size out of range"),
        ({"reveal": 0}, "disputes: period out of range"),
        ({"window": 30 * DAY + 1}, "disputes: period out of range"),
    ],
)
def test_deploy_refuses_parameters_that_would_lock_funds_or_never_slash(
    env: Env, change: dict[str, int], reason: str
) -> None:
    p = {"bond": 1, "slash_bps": 5000, "committee": 3, "window": DAY, "reveal": DAY, **change}
    args = [
        env.token.address,
        env.market.address,
        env.registry.address,
        p["bond"],
        p["slash_bps"],
        TOKEN,
        TOKEN,
        p["committee"],
        p["window"],
        DAY,
        DAY,
        p["reveal"],
        "0x" + "00" * 20,  # no oracle
        "0x" + "00" * 20,  # no reward pool
    ]

    got = _reverts(lambda: deploy_contract(env.backend, "Disputes", args, sender=env.owner))

    assert got == reason


# -- the outcomes ----------------------------------------------------------------


def test_cheater_is_slashed_challenger_and_majority_paid_client_refunded(case: Case) -> None:
    # Prepare
    env, disputes = case.env, case.disputes
    before = case.wallets()
    bond = disputes.bond()

    # Execute: open, draw, two "wrong" and one "right" vote, resolve
    receipt = case.receipts[1]
    dispute, opened = case.open_with(receipt, case.proof(1))
    assert env.market.stake_locked(case.accused.address)
    case.mine_seed()
    drawn = disputes.draw(dispute, sender=case.challenger)
    committee = case.draw_order(dispute)
    gas = case.vote(dispute, [True, True, False])
    resolved = disputes.resolve(dispute, sender=case.challenger)

    # Assert: slashed min(50 % of 400, penalty 100 + receipt 2) = 102 tokens
    state = disputes.dispute(dispute)
    assert (state.status, state.outcome) == (DisputeStatus.RESOLVED, DisputeOutcome.PROVIDER_WRONG)
    slashed = CONFIG.dispute_penalty + receipt.amount
    assert env.registry.slashable(case.accused.address) == STAKE - slashed
    rest = slashed - receipt.amount
    reward = rest // 2 // 2
    after = case.wallets()
    assert after[case.client.address] == before[case.client.address] + receipt.amount
    assert after[committee[0].address] == before[committee[0].address] + reward
    assert after[committee[1].address] == before[committee[1].address] + reward
    assert after[committee[2].address] == before[committee[2].address]
    challenger_gain = after[case.challenger.address] - before[case.challenger.address]
    assert challenger_gain == rest - 2 * reward
    [event] = disputes._events("DisputeResolved", resolved)
    assert (event["slashed"], event["refund"], event["challenger_paid"]) == (
        slashed,
        receipt.amount,
        rest - 2 * reward + bond,
    )
    assert [disputes.pending(a.address) for a in (case.accused, *committee)] == [0, 0, 0, 0]
    case.conservation()
    assert opened.gas_used + drawn.gas_used + sum(gas) + resolved.gas_used < 3_000_000


def test_false_challenge_loses_its_bond_to_the_provider(case: Case) -> None:
    before = case.wallets()
    dispute = case.open()
    case.draw(dispute)
    case.vote(dispute, [False, False, True])

    case.disputes.resolve(dispute, sender=case.accused)

    after = case.wallets()
    state = case.disputes.dispute(dispute)
    assert state.outcome == DisputeOutcome.PROVIDER_RIGHT
    bond = case.disputes.bond()
    assert after[case.challenger.address] == before[case.challenger.address] - bond
    assert after[case.accused.address] == before[case.accused.address] + bond
    assert case.env.registry.slashable(case.accused.address) == STAKE
    case.conservation()


def test_referee_who_does_not_vote_is_penalised(case: Case) -> None:
    dispute = case.open()
    committee = case.draw(dispute)
    order = case.draw_order(dispute)
    case.vote(dispute, [True, True, None])
    case.env.backend.advance_time(case.disputes.reveal_period())

    case.disputes.resolve(dispute, sender=case.challenger)

    absent = order[2]
    assert len(committee) == 3
    penalty = case.disputes.referee_penalty()
    assert case.env.registry.slashable(absent.address) == REFEREE_STAKE - penalty
    assert case.disputes.ballot(dispute, absent.address) == 1  # seated, never voted
    for voter in order[:2]:
        assert case.env.registry.slashable(voter.address) == REFEREE_STAKE
    case.conservation()


def test_dispute_whose_committee_never_votes_ends_and_releases_everything(case: Case) -> None:
    before = case.wallets()
    dispute = case.open()
    case.draw(dispute)
    assert _reverts(lambda: case.disputes.resolve(dispute, sender=case.challenger)) == (
        "disputes: voting not over"
    )
    case.env.backend.advance_time(case.disputes.commit_period() + case.disputes.reveal_period())

    case.disputes.resolve(dispute, sender=case.client)

    state = case.disputes.dispute(dispute)
    assert state.outcome == DisputeOutcome.NO_DECISION
    after = case.wallets()
    penalty = case.disputes.referee_penalty()
    # the bond comes back, with the three absent referees' penalties
    assert after[case.challenger.address] == before[case.challenger.address] + 3 * penalty
    assert case.env.registry.slashable(case.accused.address) == STAKE
    assert case.env.token.balance_of(case.disputes.address) == 0
    assert case.disputes.pending(case.accused.address) == 0
    case.conservation()


def test_dispute_nobody_draws_ends_after_the_draw_deadline(case: Case) -> None:
    before = case.wallets()
    dispute = case.open()
    assert _reverts(lambda: case.disputes.resolve(dispute, sender=case.challenger)) == (
        "disputes: committee not drawn yet"
    )
    case.env.backend.advance_time(case.disputes.draw_period())

    late = _reverts(lambda: case.disputes.draw(dispute, sender=case.challenger))
    case.disputes.resolve(dispute, sender=case.challenger)

    assert late == "disputes: draw deadline passed"
    assert case.disputes.dispute(dispute).outcome == DisputeOutcome.NO_DECISION
    assert case.wallets() == before
    assert case.disputes.pending(case.accused.address) == 0
    case.conservation()


def test_draw_from_a_seed_older_than_256_blocks_moves_the_seed(case: Case) -> None:
    dispute = case.open()
    backend = case.env.backend
    if isinstance(backend, EmbeddedBackend):
        backend.tester.mine_blocks(258)
    else:
        backend.w3.provider.make_request("anvil_mine", [258])  # type: ignore[arg-type]

    result = case.disputes.draw(dispute, sender=case.challenger)
    deferred = case.disputes.dispute(dispute)
    case.mine_seed()
    case.disputes.draw(dispute, sender=case.challenger)

    assert case.disputes._events("DrawDeferred", result) == [
        {"dispute": dispute, "seed_block": result.block}
    ]
    assert (deferred.status, deferred.seed_block) == (DisputeStatus.DRAWING, result.block)
    state = case.disputes.dispute(dispute)
    assert state.status == DisputeStatus.VOTING and len(state.committee) == 3


# -- evidence refused ------------------------------------------------------------


def test_forged_signature_inner_node_and_wrong_root_are_refused(case: Case) -> None:
    # Prepare: three kinds of bad evidence
    receipt = case.receipts[0]
    forged = case.sign(receipt.leaf(), signer=case.client)
    leaves = [r.leaf() for r in case.receipts]
    inner = hash_pair(leaves[0], leaves[1])
    unknown = replace(receipt, output_hash=b"\x77" * 32)  # not in the voucher's root
    other_terms = replace(case.terms, salt=case.terms.salt + 1)

    def attempt(
        r: Receipt2, terms: ChannelTerms | None = None, signature: Signature | None = None
    ) -> str:
        voucher = replace(case.voucher, channel=(terms or case.terms).id)
        return _reverts(
            lambda: case.open_with(
                r, case.proof(0), terms=terms, voucher=voucher, signature=signature
            )
        )

    # Execute / Assert
    assert attempt(receipt, signature=forged) == "disputes: receipt not signed by the provider"
    assert attempt(unknown) == "disputes: receipt not in the voucher's receipts root"
    assert attempt(receipt, other_terms) == "disputes: receipt is for another channel"
    # an inner node cannot be presented as a receipt: the contract computes the leaf
    # from the fields, and hashing twice keeps it from ever equalling a pair hash
    assert inner not in leaves and case.disputes.receipt_leaf(receipt) != inner
    case.conservation()


def test_open_refuses_self_disputes_repeats_and_late_disputes(case: Case) -> None:
    receipt = case.receipts[0]
    proof = case.proof(0)
    env = case.env
    env.token.approve(case.disputes.address, MAX, sender=case.accused)

    by_self = _reverts(lambda: case.open_with(receipt, proof, sender=case.accused))
    case.open_with(receipt, proof)
    again = _reverts(lambda: case.open_with(receipt, proof))
    env.backend.advance_time(3600 + CONFIG.close_window + CONFIG.dispute_window)
    late = _reverts(lambda: case.open_with(case.receipts[2], case.proof(2)))

    assert by_self == "disputes: provider cannot dispute itself"
    assert again == "disputes: receipt already disputed"
    assert late == "disputes: dispute window over"


# -- the voucher as evidence -----------------------------------------------------


def test_an_earlier_voucher_the_channel_paid_past_is_evidence(case: Case) -> None:
    """The client signed a voucher for jobs 1..2 before the one the provider redeemed
    (jobs 1..3): the channel paid more than it, so its receipts were paid for."""
    leaves = [r.leaf() for r in case.receipts[:2]]
    earlier = Voucher(case.terms.id, 3 * TOKEN, 2, 3, merkle_root(leaves))
    signature = sign_voucher(case.client, case.env.market.domain(), earlier)

    dispute, _ = case.open_with(
        case.receipts[1], merkle_proof(leaves, 1), voucher=earlier, voucher_signature=signature
    )

    state = case.disputes.dispute(dispute)
    assert (state.status, state.amount) == (DisputeStatus.DRAWING, case.receipts[1].amount)
    case.conservation()


def test_voucher_signed_by_anyone_but_the_client_is_refused(case: Case) -> None:
    # Prepare: the redeemed voucher signed by the challenger, by the provider, by the
    # client for another channel, and in its malleable twin (s -> n - s)
    market = case.env.market
    by_challenger = sign_voucher(case.challenger, market.domain(), case.voucher)
    by_provider = sign_voucher(case.accused, market.domain(), case.voucher)
    other_channel = replace(case.voucher, channel=b"\x99" * 32)
    for_other = sign_voucher(case.client, market.domain(), other_channel)
    sig = case.voucher_signature
    high_s = (SECP256K1_N - int.from_bytes(sig.s, "big")).to_bytes(32, "big")
    twin = Signature(55 - sig.v, sig.r, high_s)

    # Execute
    reasons = [
        _reverts(partial(case.open_with, case.receipts[1], case.proof(1), voucher_signature=s))
        for s in (by_challenger, by_provider, for_other, twin)
    ]

    # Assert
    assert reasons == [
        "disputes: voucher not signed by the channel's client",
        "disputes: voucher not signed by the channel's client",
        "disputes: voucher not signed by the channel's client",
        "disputes: malleable voucher signature",
    ]
    assert case.disputes.pending(case.accused.address) == 0
    case.conservation()


def test_voucher_the_channel_has_not_paid_is_refused(case: Case) -> None:
    """A receipt the provider was never paid for (job 4: the client signed its voucher,
    the provider did not redeem it) cannot be disputed."""
    # Prepare: job 4 and the client's voucher for jobs 1..4, never redeemed
    extra = replace(case.receipts[2], job_id=b"\x04" * 32, units=4, amount=4 * TOKEN)
    receipts = [*case.receipts, extra]
    leaves = [r.leaf() for r in receipts]
    market = case.env.market
    unpaid = Voucher(case.terms.id, 10 * TOKEN, 4, 10, merkle_root(leaves))
    more_jobs = Voucher(case.terms.id, 6 * TOKEN, 4, 10, merkle_root(leaves))
    nothing = Voucher(case.terms.id, 0, 0, 0, merkle_root(leaves))

    # Execute
    reasons = [
        _reverts(
            partial(
                case.open_with,
                extra,
                merkle_proof(leaves, 3),
                voucher=v,
                voucher_signature=sign_voucher(case.client, market.domain(), v),
            )
        )
        for v in (unpaid, more_jobs, nothing)
    ]

    # Assert
    assert reasons == ["disputes: voucher not redeemed"] * 3
    assert case.disputes.pending(case.accused.address) == 0
    case.conservation()


def test_proof_against_another_root_is_refused(case: Case) -> None:
    # Prepare: a proof of receipt 1 in a tree of other leaves, and one of the right
    # tree presented with an earlier voucher whose root is another
    receipt = case.receipts[1]
    other_tree = [receipt.leaf(), b"\x55" * 32, b"\x66" * 32]
    leaves = [r.leaf() for r in case.receipts]
    earlier = Voucher(case.terms.id, TOKEN, 1, 1, leaves[0])
    earlier_signature = sign_voucher(case.client, case.env.market.domain(), earlier)

    # Execute
    reasons = [
        _reverts(lambda: case.open_with(receipt, merkle_proof(other_tree, 0))),
        _reverts(
            lambda: case.open_with(
                receipt, case.proof(1), voucher=earlier, voucher_signature=earlier_signature
            )
        ),
    ]

    # Assert
    assert reasons == ["disputes: receipt not in the voucher's receipts root"] * 2
    case.conservation()


def test_refund_is_capped_at_what_the_channel_paid(case: Case) -> None:
    """A client-signed voucher may hold a receipt worth more than the channel paid
    (here 9 tokens, paid 6): a slash refunds no more than the channel paid."""
    # Prepare
    before = case.wallets()
    big = replace(case.receipts[2], job_id=b"\x09" * 32, amount=9 * TOKEN)
    leaves = [big.leaf(), case.receipts[0].leaf()]
    voucher = Voucher(case.terms.id, 6 * TOKEN, 2, 6, merkle_root(leaves))
    signature = sign_voucher(case.client, case.env.market.domain(), voucher)

    # Execute
    dispute, _ = case.open_with(
        big, merkle_proof(leaves, 0), voucher=voucher, voucher_signature=signature
    )
    case.draw(dispute)
    case.vote(dispute, [True, True, True])
    resolved = case.disputes.resolve(dispute, sender=case.challenger)

    # Assert
    assert case.disputes.dispute(dispute).amount == 6 * TOKEN
    [event] = case.disputes._events("DisputeResolved", resolved)
    assert event["refund"] == 6 * TOKEN
    assert case.wallets()[case.client.address] == before[case.client.address] + 6 * TOKEN
    case.conservation()


def test_votes_only_from_the_committee_in_their_phases(case: Case) -> None:
    dispute = case.open()
    too_early = _reverts(lambda: case.disputes.draw(dispute, sender=case.challenger))
    case.draw(dispute)
    member = case.draw_order(dispute)[0]
    commitment = vote_commitment(dispute, member.address, True, SALT)

    stranger = _reverts(lambda: case.disputes.commit(dispute, commitment, sender=case.client))
    case.disputes.commit(dispute, commitment, sender=member)
    twice = _reverts(lambda: case.disputes.commit(dispute, commitment, sender=member))
    early = _reverts(lambda: case.disputes.reveal(dispute, True, SALT, sender=member))
    case.env.backend.advance_time(case.disputes.commit_period())
    mismatch = _reverts(lambda: case.disputes.reveal(dispute, False, SALT, sender=member))
    case.disputes.reveal(dispute, True, SALT, sender=member)

    assert too_early == "disputes: seed block not mined yet"
    assert stranger == "disputes: caller is not on the committee"
    assert twice == "disputes: vote already committed"
    assert early == "disputes: commit phase not over"
    assert mismatch == "disputes: vote does not match its commitment"
    assert case.disputes.dispute(dispute).wrong_votes == 1


# -- the exploits of issue 8 -----------------------------------------------------


def test_owner_cannot_slash(env: Env) -> None:
    """Issue 8: the owner pointed the arbiter at itself and took 800 tokens."""
    provider, unbonding = env.users[0], env.users[1]
    for p in (provider, unbonding):
        env.token.approve(env.registry.address, MAX, sender=p)
        env.registry.register("http://p", 1, b"\x01" * 32, 400 * TOKEN, sender=p)
    env.registry.begin_unbonding(400 * TOKEN, sender=unbonding)
    owner = env.owner

    reasons = [
        _reverts(lambda: env.market.set_arbiter(owner.address, sender=owner)),
        _reverts(
            lambda: env.market.slash(provider.address, 400 * TOKEN, owner.address, sender=owner)
        ),
        _reverts(
            lambda: env.registry.slash(provider.address, 400 * TOKEN, owner.address, sender=owner)
        ),
    ]

    assert reasons == [
        "market: arbiter already set",
        "market: caller is not the arbiter",
        "registry: caller is not the market",
    ]
    assert env.registry.slashable(provider.address) + env.registry.slashable(unbonding.address) == (
        800 * TOKEN
    )


def test_unbonding_provider_with_an_open_channel_cannot_withdraw(env: Env) -> None:
    """Issue 8: a provider on a 60-day channel unbonded after 7 days, withdrew its stake,
    then redeemed while unslashable."""
    provider, client = env.users[0], env.users[1]
    env.token.approve(env.registry.address, MAX, sender=provider)
    env.registry.register("http://p", 1, b"\x01" * 32, 400 * TOKEN, sender=provider)
    env.token.approve(env.market.address, MAX, sender=client)
    expiry = env.now() + 60 * DAY
    env.market.open_channel(provider.address, 900 * TOKEN, expiry, sender=client)
    env.backend.advance_time(7 * DAY)
    env.registry.begin_unbonding(400 * TOKEN, sender=provider)
    env.backend.advance_time(CONFIG.unbonding_delay + 1)

    blocked = _reverts(lambda: env.registry.withdraw(sender=provider))
    disputes = env.ledger.client("disputes", DisputeClient)
    locked_until = (expiry + CONFIG.close_window) // DAY * DAY + DAY  # whole days
    free_at = locked_until + disputes.dispute_window()
    env.backend.advance_time(free_at - env.now() - 600)
    still = _reverts(lambda: env.registry.withdraw(sender=provider))
    env.backend.advance_time(601)
    env.registry.withdraw(sender=provider)

    assert blocked == still == "registry: stake backs open channels or disputes"
    assert env.market.locked_until(provider.address) == locked_until
    assert env.registry.slashable(provider.address) == 0


def test_open_dispute_freezes_the_accused_stake(case: Case) -> None:
    env = case.env
    env.registry.begin_unbonding(STAKE, sender=case.accused)
    dispute = case.open()
    free_at = case.env.market.locked_until(case.accused.address) + CONFIG.dispute_window
    unbonded_at = env.registry.provider(case.accused.address).withdrawable_at
    env.backend.advance_time(max(free_at, unbonded_at) - env.now() + 1)

    frozen = _reverts(lambda: env.registry.withdraw(sender=case.accused))
    case.disputes.resolve(dispute, sender=case.challenger)  # nobody drew: no decision
    env.registry.withdraw(sender=case.accused)

    assert frozen == "registry: stake backs open channels or disputes"
    assert env.registry.slashable(case.accused.address) == 0
    case.conservation()


# -- the index and the bench ---------------------------------------------------------


def test_indexer_follows_disputes_to_their_outcome(case: Case, tmp_path: Path) -> None:
    # Prepare: one dispute resolved against the provider, one left drawing
    resolved = case.open(1)
    case.draw(resolved)
    order = case.draw_order(resolved)
    case.vote(resolved, [True, True, False])
    case.disputes.resolve(resolved, sender=case.challenger)
    drawing = case.open(0)

    # Execute
    with Indexer(case.env.backend, case.env.ledger.deployment, tmp_path / "index.db") as index:
        index.sync()
    with sqlite3.connect(tmp_path / "index.db") as db:
        rows = db.execute(
            "SELECT id, provider, status, outcome, committee, wrong_votes, right_votes, "
            "amount FROM disputes ORDER BY opened_block"
        ).fetchall()
        votes = dict(
            db.execute("SELECT referee, vote FROM dispute_votes WHERE dispute = ?", (resolved,))
        )

    # Assert
    provider = case.accused.address
    assert [r[:4] for r in rows] == [
        (resolved, provider, "resolved", "provider_wrong"),
        (drawing, provider, "drawing", None),
    ]
    assert rows[0][4] == ",".join(m.address for m in order)
    assert (rows[0][5], rows[0][6], int(rows[0][7])) == (2, 1, case.receipts[1].amount)
    assert votes == {
        order[0].address: "wrong",
        order[1].address: "wrong",
        order[2].address: "right",
    }


def test_measure_dispute_gas_runs_a_whole_dispute() -> None:
    gas = measure_dispute_gas()

    assert gas.outcome == DisputeOutcome.PROVIDER_WRONG and gas.committee == 3
    assert gas.total == gas.open + gas.draw + gas.commit + gas.reveal + gas.resolve
    assert 0 < gas.total < 3_000_000
