# pragma version ~=0.4.3
"""
@title idlegrid Disputes
@notice The market's arbiter: the only route to a slash. Whoever holds a
        provider's signed job receipt disputes its result with a bond. The
        contract checks the evidence on chain (the receipt leaf computed from
        its fields, the provider's signature in the node domain, a voucher of
        the channel signed by its client that the channel has paid at least,
        so that it or a later voucher was redeemed, and a Merkle proof of the
        leaf to that voucher's receipts root), then a committee
        of staked providers, drawn with the hash of a block mined after the
        dispute opened, re-executes the job and votes (commit, then reveal)
        whether the receipt's output hash is wrong. The majority of revealed
        votes decides:
          provider wrong: up to `slash_bps` of its stake is slashed, capped at
            `penalty` + the receipt's amount; the receipt's amount goes back to
            the channel's client, half the rest to the referees who voted with
            the majority and the other half to the challenger, whose bond is
            returned;
          provider right: the challenger's bond goes to the provider;
          tie, no votes or no committee: the bond goes back to the challenger
            and nothing is slashed.
        A referee who does not reveal a vote loses `referee_penalty` of its
        stake (to the challenger, or to the provider when it was right).
@dev Lifecycle, each stage with a deadline so no dispute hangs and no funds
     stay locked: open -> draw (anyone, once the seed block is mined, before
     `draw_deadline`) -> commit (until `commit_deadline`) -> reveal (until
     `reveal_deadline`) -> resolve (anyone, after the reveal deadline, once
     every member revealed, or after `draw_deadline` when nobody drew).
     A dispute is keyed by the receipt's leaf: a receipt is disputed at most
     once. While a dispute is open its provider and its committee members
     cannot withdraw stake (`pending`, read by the market's `stake_locked`).
     Token accounting: token.balanceOf(self) == bond * (disputes not resolved).
"""

from ethereum.ercs import IERC20

import ecdsa
import merkle

MAX_COMMITTEE: public(constant(uint256)) = 15
MAX_PROOF: constant(uint256) = 64
# draws sample the active list with replacement; a bounded number of tries keeps the
# gas bounded, at the price of a smaller committee in a very small registry
MAX_DRAW_TRIES: constant(uint256) = 64
MAX_PERIOD: public(constant(uint256)) = 30 * 86400
# outputs in one oracle answer (the oracle's MAX_OUTPUT)
MAX_OUTPUT: constant(uint256) = 16
BPS: constant(uint256) = 10000

# lifecycle
UNOPENED: constant(uint256) = 0
DRAWING: constant(uint256) = 1
VOTING: constant(uint256) = 2
RESOLVED: constant(uint256) = 3
# outcomes
PROVIDER_WRONG: public(constant(uint256)) = 1
PROVIDER_RIGHT: public(constant(uint256)) = 2
NO_DECISION: public(constant(uint256)) = 3
# a committee member's ballot
BALLOT_SEATED: constant(uint256) = 1
BALLOT_COMMITTED: constant(uint256) = 2
BALLOT_WRONG: constant(uint256) = 3
BALLOT_RIGHT: constant(uint256) = 4

EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
NODE_NAME_HASH: constant(bytes32) = keccak256("idlegrid Node")
VERSION_HASH: constant(bytes32) = keccak256("1")
RECEIPT_TYPEHASH: public(constant(bytes32)) = keccak256("Receipt(bytes32 leaf)")


struct Terms:
    client: address
    provider: address
    deposit: uint256
    expiry: uint256
    salt: uint256


struct Receipt:
    channel: bytes32
    job_id: bytes32
    provider: address
    spec_hash: bytes32
    input_hash: bytes32
    output_hash: bytes32
    units: uint256
    amount: uint256


struct Voucher:
    # a voucher of the channel as its client signed it (EIP-712, market domain)
    amount: uint256
    jobs: uint256
    units: uint256
    receipts_root: bytes32
    # the hash of its royalty lines (JobMarket.royalties_hash; zero for none)
    royalties: bytes32


struct Signature:
    v: uint8
    r: bytes32
    s: bytes32


struct Dispute:
    status: uint256
    outcome: uint256
    provider: address
    challenger: address
    client: address
    # the receipt's amount, capped at what the channel paid: what a client gets back
    amount: uint256
    seed_block: uint256
    draw_deadline: uint256
    commit_deadline: uint256
    reveal_deadline: uint256
    commits: uint256
    wrong_votes: uint256
    right_votes: uint256
    committee: DynArray[address, MAX_COMMITTEE]


interface IMarket:
    def channel(terms: Terms) -> (bytes32, uint256, uint256, uint256, uint256, uint256, bool, bool): view
    def voucher_digest(channel: bytes32, amount: uint256, jobs: uint256, units: uint256, receipts_root: bytes32, royalties: bytes32) -> bytes32: view
    def slash(provider: address, amount: uint256, beneficiary: address) -> uint256: nonpayable
    def close_window() -> uint256: view


interface IOracle:
    def outliers(key: bytes32) -> bytes32: view


interface IRewards:
    def freeze(run: bytes32, round: uint256) -> (address, uint256, bytes32, bytes32): nonpayable
    def settle(run: bytes32, round: uint256, wrong: bool): nonpayable


struct PostingRef:
    run: bytes32
    round: uint256


interface IRegistry:
    def slashable(provider: address) -> uint256: view
    def active_count() -> uint256: view
    def active_providers(offset: uint256, limit: uint256) -> DynArray[address, 256]: view


token: public(immutable(IERC20))
market: public(immutable(IMarket))
registry: public(immutable(IRegistry))
close_window: public(immutable(uint256))
bond: public(immutable(uint256))
slash_bps: public(immutable(uint256))
penalty: public(immutable(uint256))
referee_penalty: public(immutable(uint256))
committee_size: public(immutable(uint256))
dispute_window: public(immutable(uint256))
draw_period: public(immutable(uint256))
commit_period: public(immutable(uint256))
reveal_period: public(immutable(uint256))
# the AI oracle whose outlier answers can be disputed (`open_answer`); empty: none
oracle: public(immutable(IOracle))
rewards: public(immutable(IRewards))
# the posting a challenge disputes, by dispute id (a job's or an answer's: none)
_posting_of: HashMap[bytes32, PostingRef]

_disputes: HashMap[bytes32, Dispute]
_ballots: HashMap[bytes32, HashMap[address, uint256]]
_commitments: HashMap[bytes32, HashMap[address, bytes32]]
# open disputes that may still slash an address (as the accused or as a referee)
pending: public(HashMap[address, uint256])


event DisputeOpened:
    dispute: indexed(bytes32)
    provider: indexed(address)
    challenger: indexed(address)
    client: address
    channel: bytes32
    job_id: bytes32
    spec_hash: bytes32
    input_hash: bytes32
    output_hash: bytes32
    units: uint256
    amount: uint256
    bond: uint256
    seed_block: uint256
    draw_deadline: uint256


event PostingChallenged:
    dispute: indexed(bytes32)
    run: indexed(bytes32)
    round: indexed(uint256)
    coordinator: address


event AnswerDisputed:
    dispute: indexed(bytes32)
    request_id: indexed(uint256)
    provider: indexed(address)
    output: DynArray[int256, MAX_OUTPUT]


event DrawDeferred:
    dispute: indexed(bytes32)
    seed_block: uint256


event CommitteeDrawn:
    dispute: indexed(bytes32)
    committee: DynArray[address, MAX_COMMITTEE]
    commit_deadline: uint256
    reveal_deadline: uint256


event VoteCommitted:
    dispute: indexed(bytes32)
    referee: indexed(address)


event VoteRevealed:
    dispute: indexed(bytes32)
    referee: indexed(address)
    wrong: bool


event DisputeResolved:
    dispute: indexed(bytes32)
    provider: indexed(address)
    outcome: uint256
    wrong_votes: uint256
    right_votes: uint256
    slashed: uint256
    refund: uint256
    challenger_paid: uint256
    referee_reward: uint256
    absent: uint256


@deploy
def __init__(
    token_: IERC20,
    market_: IMarket,
    registry_: IRegistry,
    bond_: uint256,
    slash_bps_: uint256,
    penalty_: uint256,
    referee_penalty_: uint256,
    committee_size_: uint256,
    dispute_window_: uint256,
    draw_period_: uint256,
    commit_period_: uint256,
    reveal_period_: uint256,
    oracle_: IOracle,
    rewards_: IRewards,
):
    """
    @param token_ The token of stakes and bonds.
    @param market_ The market whose arbiter this contract is.
    @param registry_ The provider registry (stakes, the active list).
    @param bond_ Tokens a challenger locks to open a dispute; > 0.
    @param slash_bps_ Share of a provider's stake slashed when found wrong, in
           basis points (at most 10000), capped at `penalty_` + the receipt amount.
    @param penalty_ The cap of a slash beyond the receipt's amount.
    @param referee_penalty_ Slash of a committee member who does not reveal a vote.
    @param committee_size_ Referees per dispute, 1 to MAX_COMMITTEE (15).
    @param dispute_window_ Seconds after a channel's `expiry + close_window`
           during which its receipts can still be disputed.
    @param draw_period_ Seconds after opening by which the committee must be drawn.
    @param commit_period_ Seconds after the draw for committing votes.
    @param reveal_period_ Seconds after the commit deadline for revealing them.
    @param oracle_ The AI oracle whose outlier answers may be disputed (the zero
           address: none).
    @param rewards_ The RewardPool whose postings may be challenged (the zero
           address: none).
    """
    assert bond_ > 0, "disputes: bond must be positive"
    assert slash_bps_ <= BPS, "disputes: slash share above 100%"
    assert committee_size_ >= 1 and committee_size_ <= MAX_COMMITTEE, "disputes: committee size out of range"
    for period: uint256 in [dispute_window_, draw_period_, commit_period_, reveal_period_]:
        assert period >= 1 and period <= MAX_PERIOD, "disputes: period out of range"
    token = token_
    market = market_
    registry = registry_
    # the market's: a dispute may open until a channel's expiry + close_window + dispute_window
    close_window = staticcall market_.close_window()
    bond = bond_
    slash_bps = slash_bps_
    penalty = penalty_
    referee_penalty = referee_penalty_
    committee_size = committee_size_
    dispute_window = dispute_window_
    draw_period = draw_period_
    commit_period = commit_period_
    reveal_period = reveal_period_
    oracle = oracle_
    rewards = rewards_


@external
def open(
    terms: Terms,
    voucher: Voucher,
    voucher_signature: Signature,
    receipt: Receipt,
    receipt_signature: Signature,
    proof: DynArray[bytes32, MAX_PROOF],
) -> bytes32:
    """
    @notice Dispute the result of one job: lock `bond` tokens (needs an
            allowance) and present the provider's signed receipt with a proof
            that it is under the receipts root of a voucher the channel's
            client signed and the channel has paid at least (it, or a later
            voucher, was redeemed).
    @param terms The channel's terms (their hash is the channel id).
    @param voucher The voucher's amount, jobs, units and receipts root, as the
           client signed them for this channel; its amount and jobs at most
           what the market says the channel paid and did.
    @param voucher_signature The client's signature of the voucher (EIP-712,
           market domain; the market's `voucher_digest`, low s).
    @param receipt The receipt's fields, as the provider signed them.
    @param receipt_signature The provider's signature of the receipt (EIP-712,
           node domain, low s).
    @param proof Siblings from the receipt's leaf up to the voucher's receipts root.
    @return The dispute id: the receipt's leaf.
    """
    assert receipt.provider == terms.provider, "disputes: receipt is not the channel provider's"
    assert msg.sender != receipt.provider, "disputes: provider cannot dispute itself"
    channel: bytes32 = empty(bytes32)
    deposit: uint256 = 0
    expiry: uint256 = 0
    paid: uint256 = 0
    jobs: uint256 = 0
    units: uint256 = 0
    is_open: bool = False
    closed: bool = False
    channel, deposit, expiry, paid, jobs, units, is_open, closed = staticcall market.channel(terms)
    assert receipt.channel == channel, "disputes: receipt is for another channel"
    assert block.timestamp < expiry + close_window + dispute_window, "disputes: dispute window over"
    # the market redeems only vouchers that pay something, and paid and jobs only grow:
    # a voucher within them was redeemed, or a later one of the same client was
    assert voucher.amount > 0 and voucher.amount <= paid and voucher.jobs <= jobs, "disputes: voucher not redeemed"
    leaf: bytes32 = self._leaf(receipt)
    assert self._disputes[leaf].status == UNOPENED, "disputes: receipt already disputed"
    assert convert(voucher_signature.s, uint256) <= ecdsa.SECP256K1_HALF_N, "disputes: malleable voucher signature"
    voucher_digest: bytes32 = staticcall market.voucher_digest(
        channel, voucher.amount, voucher.jobs, voucher.units, voucher.receipts_root, voucher.royalties
    )
    assert ecdsa._recover(voucher_digest, voucher_signature.v, voucher_signature.r, voucher_signature.s) == terms.client, "disputes: voucher not signed by the channel's client"
    assert convert(receipt_signature.s, uint256) <= ecdsa.SECP256K1_HALF_N, "disputes: malleable receipt signature"
    assert ecdsa._recover(self._receipt_digest(leaf), receipt_signature.v, receipt_signature.r, receipt_signature.s) == receipt.provider, "disputes: receipt not signed by the provider"
    assert merkle._verify(leaf, proof, voucher.receipts_root), "disputes: receipt not in the voucher's receipts root"

    amount: uint256 = min(receipt.amount, paid)
    seed_block: uint256 = self._start(leaf, receipt.provider, terms.client, amount)
    log DisputeOpened(
        dispute=leaf,
        provider=receipt.provider,
        challenger=msg.sender,
        client=terms.client,
        channel=channel,
        job_id=receipt.job_id,
        spec_hash=receipt.spec_hash,
        input_hash=receipt.input_hash,
        output_hash=receipt.output_hash,
        units=receipt.units,
        amount=amount,
        bond=bond,
        seed_block=seed_block,
        draw_deadline=block.timestamp + draw_period,
    )
    return leaf


@external
def open_answer(
    request_id: uint256,
    provider: address,
    model: bytes32,
    input_hash: bytes32,
    output: DynArray[int256, MAX_OUTPUT],
    named_at: uint256,
) -> bytes32:
    """
    @notice Dispute an AI oracle answer that the oracle named an outlier: lock
            `bond` tokens (needs an allowance). The oracle keeps a record of each
            such answer (signed by its provider when delivered); the fields here
            must hash to it. The committee re-runs `model` on the request's input
            and votes whether `output` is wrong. Nothing was paid for the answer,
            so nothing is refunded: a slash goes to the referees and the challenger.
    @param request_id The oracle request.
    @param provider The provider whose answer is disputed.
    @param model The request's model (sha256 of its ONNX file).
    @param input_hash The request's input hash (keccak256(abi_encode(int256[]))).
    @param output The provider's answer, fixed point with 18 decimals.
    @param named_at When the oracle named it (the `Outlier` event's `named_at`).
    @return The dispute id: keccak256(abi_encode("oracle", request_id, provider)).
    """
    assert oracle.address != empty(address), "disputes: no oracle to dispute answers of"
    assert msg.sender != provider, "disputes: provider cannot dispute itself"
    assert block.timestamp < named_at + dispute_window, "disputes: dispute window over"
    encoded: Bytes[MAX_OUTPUT * 32 + 64] = abi_encode(output)
    output_hash: bytes32 = keccak256(slice(encoded, 64, 32 * len(output)))
    record: bytes32 = staticcall oracle.outliers(keccak256(abi_encode(request_id, provider)))
    assert record != empty(bytes32) and record == keccak256(abi_encode(model, input_hash, output_hash, named_at)), "disputes: not an answer the oracle named an outlier"
    dispute: bytes32 = keccak256(abi_encode("oracle", request_id, provider))
    assert self._disputes[dispute].status == UNOPENED, "disputes: answer already disputed"
    seed_block: uint256 = self._start(dispute, provider, empty(address), 0)
    log DisputeOpened(
        dispute=dispute,
        provider=provider,
        challenger=msg.sender,
        client=empty(address),
        channel=empty(bytes32),
        job_id=convert(request_id, bytes32),
        spec_hash=model,
        input_hash=input_hash,
        output_hash=output_hash,
        units=0,
        amount=0,
        bond=bond,
        seed_block=seed_block,
        draw_deadline=block.timestamp + draw_period,
    )
    log AnswerDisputed(dispute=dispute, request_id=request_id, provider=provider, output=output)
    return dispute


@external
def open_posting(run: bytes32, round: uint256) -> bytes32:
    """
    @notice Challenge the RewardPool's posting of a federated round's
            contributions within its challenge window: lock `bond` tokens (needs
            an allowance). The pool freezes the posting (no claim until the
            ruling). The committee recomputes the contributions from the round's
            published inputs (whose sha256 the posting recorded; the challenger
            hands them to the members) and votes whether the posted amounts are
            wrong; a wrong posting is void and its total goes back to the run's
            budget, for the coordinator to post again. The accused is the run's
            coordinator: its stake, if it has one, is slashed like a provider's.
    @param run The federated run.
    @param round The round whose posting is challenged.
    @return The dispute id: keccak256(abi_encode("posting", run, round, posted_at)).
    """
    assert rewards.address != empty(address), "disputes: no reward pool to challenge postings of"
    coordinator: address = empty(address)
    posted_at: uint256 = 0
    root: bytes32 = empty(bytes32)
    model: bytes32 = empty(bytes32)
    coordinator, posted_at, root, model = extcall rewards.freeze(run, round)
    assert msg.sender != coordinator, "disputes: the coordinator cannot challenge its own posting"
    dispute: bytes32 = keccak256(abi_encode("posting", run, round, posted_at))
    assert self._disputes[dispute].status == UNOPENED, "disputes: posting already challenged"
    self._posting_of[dispute] = PostingRef(run=run, round=round)
    seed_block: uint256 = self._start(dispute, coordinator, empty(address), 0)
    log DisputeOpened(
        dispute=dispute,
        provider=coordinator,
        challenger=msg.sender,
        client=empty(address),
        channel=run,
        job_id=convert(round, bytes32),
        spec_hash=model,
        input_hash=empty(bytes32),
        output_hash=root,
        units=0,
        amount=0,
        bond=bond,
        seed_block=seed_block,
        draw_deadline=block.timestamp + draw_period,
    )
    log PostingChallenged(dispute=dispute, run=run, round=round, coordinator=coordinator)
    return dispute


@internal
def _start(dispute: bytes32, provider: address, client: address, amount: uint256) -> uint256:
    # a new dispute awaiting its draw, the challenger's bond taken; its seed block
    seed_block: uint256 = block.number + 1
    self._disputes[dispute] = Dispute(
        status=DRAWING,
        outcome=0,
        provider=provider,
        challenger=msg.sender,
        client=client,
        amount=amount,
        seed_block=seed_block,
        draw_deadline=block.timestamp + draw_period,
        commit_deadline=0,
        reveal_deadline=0,
        commits=0,
        wrong_votes=0,
        right_votes=0,
        committee=[],
    )
    self.pending[provider] += 1
    assert extcall token.transferFrom(msg.sender, self, bond, default_return_value=True), "disputes: token transfer failed"
    return seed_block


@external
def draw(dispute: bytes32):
    """
    @notice Draw the committee from the registry's active providers (never the
            accused nor the challenger), seeded by the hash of the block after
            the one the dispute opened in. Anyone may call it once that block is
            mined. When its hash is no longer available (older than 256 blocks),
            the seed moves to the current block and the draw must be called again.
    """
    d: Dispute = self._disputes[dispute]
    assert d.status == DRAWING, "disputes: not awaiting a draw"
    assert block.timestamp < d.draw_deadline, "disputes: draw deadline passed"
    assert block.number > d.seed_block, "disputes: seed block not mined yet"
    if block.number - d.seed_block > 256:
        self._disputes[dispute].seed_block = block.number
        log DrawDeferred(dispute=dispute, seed_block=block.number)
        return
    seed: bytes32 = keccak256(concat(blockhash(d.seed_block), dispute))
    count: uint256 = staticcall registry.active_count()
    committee: DynArray[address, MAX_COMMITTEE] = []
    if count > 0:
        for i: uint256 in range(MAX_DRAW_TRIES):
            if len(committee) == committee_size:
                break
            pick: uint256 = convert(keccak256(concat(seed, convert(i, bytes32))), uint256) % count
            member: address = (staticcall registry.active_providers(pick, 1))[0]
            if member == d.provider or member == d.challenger or member in committee:
                continue
            committee.append(member)
    for member: address in committee:
        self._ballots[dispute][member] = BALLOT_SEATED
        self.pending[member] += 1
    commit_deadline: uint256 = block.timestamp + commit_period
    reveal_deadline: uint256 = commit_deadline + reveal_period
    self._disputes[dispute].status = VOTING
    self._disputes[dispute].committee = committee
    self._disputes[dispute].commit_deadline = commit_deadline
    self._disputes[dispute].reveal_deadline = reveal_deadline
    log CommitteeDrawn(
        dispute=dispute, committee=committee, commit_deadline=commit_deadline, reveal_deadline=reveal_deadline
    )


@external
def commit(dispute: bytes32, commitment: bytes32):
    """
    @notice Commit a vote: `commitment(dispute, caller, wrong, salt)`, kept secret
            until the reveal. Committee members only, once, before the commit deadline.
    """
    assert self._disputes[dispute].status == VOTING, "disputes: not voting"
    assert block.timestamp < self._disputes[dispute].commit_deadline, "disputes: commit deadline passed"
    ballot: uint256 = self._ballots[dispute][msg.sender]
    assert ballot != 0, "disputes: caller is not on the committee"
    assert ballot == BALLOT_SEATED, "disputes: vote already committed"
    self._ballots[dispute][msg.sender] = BALLOT_COMMITTED
    self._commitments[dispute][msg.sender] = commitment
    self._disputes[dispute].commits += 1
    log VoteCommitted(dispute=dispute, referee=msg.sender)


@external
def reveal(dispute: bytes32, wrong: bool, salt: bytes32):
    """
    @notice Reveal a committed vote: `wrong` is True when re-executing the job
            gave a result not close enough to the receipt's output. Open once
            the commit deadline passed or every member committed, until the
            reveal deadline.
    """
    d: Dispute = self._disputes[dispute]
    assert d.status == VOTING, "disputes: not voting"
    assert block.timestamp >= d.commit_deadline or d.commits == len(d.committee), "disputes: commit phase not over"
    assert block.timestamp < d.reveal_deadline, "disputes: reveal deadline passed"
    assert self._ballots[dispute][msg.sender] == BALLOT_COMMITTED, "disputes: no committed vote to reveal"
    assert self._commitments[dispute][msg.sender] == self._commitment(dispute, msg.sender, wrong, salt), "disputes: vote does not match its commitment"
    if wrong:
        self._ballots[dispute][msg.sender] = BALLOT_WRONG
        self._disputes[dispute].wrong_votes = d.wrong_votes + 1
    else:
        self._ballots[dispute][msg.sender] = BALLOT_RIGHT
        self._disputes[dispute].right_votes = d.right_votes + 1
    log VoteRevealed(dispute=dispute, referee=msg.sender, wrong=wrong)


@external
def resolve(dispute: bytes32):
    """
    @notice Settle a dispute by the majority of revealed votes and pay everyone
            (see the contract's notice). Anyone may call it after the reveal
            deadline, once every member revealed, or after the draw deadline
            when no committee was drawn.
    """
    d: Dispute = self._disputes[dispute]
    if d.status == DRAWING:
        assert block.timestamp >= d.draw_deadline, "disputes: committee not drawn yet"
    else:
        assert d.status == VOTING, "disputes: not open"
        revealed: uint256 = d.wrong_votes + d.right_votes
        assert block.timestamp >= d.reveal_deadline or revealed == len(d.committee), "disputes: voting not over"
    outcome: uint256 = NO_DECISION
    if d.wrong_votes > d.right_votes:
        outcome = PROVIDER_WRONG
    elif d.right_votes > d.wrong_votes:
        outcome = PROVIDER_RIGHT
    # effects before any transfer
    self._disputes[dispute].status = RESOLVED
    self._disputes[dispute].outcome = outcome
    self.pending[d.provider] -= 1
    for member: address in d.committee:
        self.pending[member] -= 1
    posting: PostingRef = self._posting_of[dispute]
    if posting.run != empty(bytes32):  # a challenged posting: void it, or let it stand
        extcall rewards.settle(posting.run, posting.round, outcome == PROVIDER_WRONG)

    slashed: uint256 = 0
    refund: uint256 = 0
    challenger_paid: uint256 = 0
    reward: uint256 = 0
    if outcome == PROVIDER_WRONG:
        asked: uint256 = min(staticcall registry.slashable(d.provider) * slash_bps // BPS, penalty + d.amount)
        if asked > 0:
            slashed = extcall market.slash(d.provider, asked, self)
        refund = min(slashed, d.amount)
        rest: uint256 = slashed - refund
        reward = rest // 2 // d.wrong_votes
        challenger_paid = rest - reward * d.wrong_votes + bond
        self._pay(d.client, refund)
        for member: address in d.committee:
            if self._ballots[dispute][member] == BALLOT_WRONG:
                self._pay(member, reward)
        self._pay(d.challenger, challenger_paid)
    elif outcome == PROVIDER_RIGHT:
        self._pay(d.provider, bond)
    else:
        challenger_paid = bond
        self._pay(d.challenger, bond)

    absent: uint256 = 0
    receiver: address = d.challenger
    if outcome == PROVIDER_RIGHT:
        receiver = d.provider
    for member: address in d.committee:
        if self._ballots[dispute][member] < BALLOT_WRONG:
            absent += 1
            if referee_penalty > 0:
                extcall market.slash(member, referee_penalty, receiver)
    log DisputeResolved(
        dispute=dispute,
        provider=d.provider,
        outcome=outcome,
        wrong_votes=d.wrong_votes,
        right_votes=d.right_votes,
        slashed=slashed,
        refund=refund,
        challenger_paid=challenger_paid,
        referee_reward=reward,
        absent=absent,
    )


@external
@view
def dispute(dispute: bytes32) -> Dispute:
    """
    @notice A dispute's state (status 0 none, 1 drawing, 2 voting, 3 resolved;
            outcome 0 none yet, 1 provider wrong, 2 provider right, 3 no decision).
    """
    return self._disputes[dispute]


@external
@view
def ballot(dispute: bytes32, referee: address) -> uint256:
    """
    @notice A referee's ballot: 0 not on the committee, 1 seated, 2 committed,
            3 revealed "wrong", 4 revealed "right".
    """
    return self._ballots[dispute][referee]


@external
@pure
def commitment(dispute: bytes32, referee: address, wrong: bool, salt: bytes32) -> bytes32:
    """
    @notice The commitment a referee sends: keccak256(abi_encode(dispute,
            referee, wrong, salt)). Binding the referee stops one member from
            copying another's commitment.
    """
    return self._commitment(dispute, referee, wrong, salt)


@external
@pure
def receipt_leaf(receipt: Receipt) -> bytes32:
    """
    @notice A receipt's Merkle leaf: keccak256(keccak256(abi_encode(channel,
            job_id, provider, spec_hash, input_hash, output_hash, units, amount))).
    """
    return self._leaf(receipt)


@external
@view
def receipt_digest(leaf: bytes32) -> bytes32:
    """
    @notice The EIP-712 digest a provider signs for a receipt leaf: struct
            Receipt(bytes32 leaf) in the domain "idlegrid Node", version "1",
            this chain, verifying contract the market.
    """
    return self._receipt_digest(leaf)


@internal
@pure
def _leaf(receipt: Receipt) -> bytes32:
    # hashed twice, so that no inner node (keccak256 of 64 bytes) can pass as a leaf
    return keccak256(
        keccak256(
            abi_encode(
                receipt.channel,
                receipt.job_id,
                receipt.provider,
                receipt.spec_hash,
                receipt.input_hash,
                receipt.output_hash,
                receipt.units,
                receipt.amount,
            )
        )
    )


@internal
@view
def _receipt_digest(leaf: bytes32) -> bytes32:
    separator: bytes32 = keccak256(
        abi_encode(EIP712_DOMAIN_TYPEHASH, NODE_NAME_HASH, VERSION_HASH, chain.id, market.address)
    )
    return keccak256(concat(b"\x19\x01", separator, keccak256(abi_encode(RECEIPT_TYPEHASH, leaf))))


@internal
@pure
def _commitment(dispute: bytes32, referee: address, wrong: bool, salt: bytes32) -> bytes32:
    return keccak256(abi_encode(dispute, referee, wrong, salt))


@internal
def _pay(to: address, amount: uint256):
    if amount > 0:
        assert extcall token.transfer(to, amount, default_return_value=True), "disputes: token transfer failed"
