# pragma version ~=0.4.3
"""
@title idlegrid RewardPool
@notice Pays a federated run's data contributors for what their data added to the
        model. The run's sponsor funds a pool (`fund`, locked until a time it
        chooses, so that contributors can count on it while the run goes on);
        after a round, the run's coordinator (the one the ModelRegistry records
        for the run) posts the contributions as the Merkle root of
        (contributor, amount) leaves with the round's global model, which must be
        the model the ModelRegistry's lineage holds for that round (`post`). Once
        the posting's challenge window has passed, each contributor claims its
        amount with a proof (`claim`; anyone may send it, the tokens go to the
        contributor). What nobody claimed within `claim_period` after that goes
        back to the pool (`expire`), and the sponsor takes back what no posting
        holds once its lock is over (`reclaim`).
@dev Money: the pool's token balance always equals the sum over runs of
     `budget` (funded, not posted) plus, over postings, `total - claimed`
     (posted, not yet claimed nor expired). A posting moves tokens from its run's
     budget to itself; a claim from a posting to its contributor, once per leaf;
     an expiry from a posting back to the budget; a reclaim from the budget to the
     sponsor. Nothing else moves tokens.
     A leaf is keccak256(abi_encode(run, round, contributor, amount)); the tree
     hashes sorted pairs with keccak256, as idlegrid.protocol's merkle trees.
     Challenges of a posting within its window (a recomputation of the
     contributions by the trust layer's referees) are not built yet: the window
     delays the claims so that they can be.
"""

from ethereum.ercs import IERC20

import merkle


struct FederatedRun:
    coordinator: address
    rounds: uint256
    last_round: uint256
    last_model: bytes32


interface IModels:
    def federatedRun(run: bytes32) -> FederatedRun: view
    def roundModel(run: bytes32, round: uint256) -> bytes32: view


struct Pool:
    sponsor: address
    # funded and not posted
    budget: uint256
    # the sponsor cannot take the budget back before this time
    locked_until: uint256


struct Posting:
    root: bytes32
    model: bytes32
    total: uint256
    claimed: uint256
    posted_at: uint256
    expired: bool


MAX_PROOF: public(constant(uint256)) = 32
# bounds of the constructor's periods (seconds)
MAX_PERIOD: public(constant(uint256)) = 365 * 86400


event Funded:
    run: indexed(bytes32)
    sponsor: indexed(address)
    amount: uint256
    budget: uint256
    locked_until: uint256


event Posted:
    run: indexed(bytes32)
    round: indexed(uint256)
    model: indexed(bytes32)
    root: bytes32
    total: uint256
    claimable_at: uint256


event Claimed:
    run: indexed(bytes32)
    round: indexed(uint256)
    contributor: indexed(address)
    amount: uint256


event Expired:
    run: indexed(bytes32)
    round: indexed(uint256)
    returned: uint256


event Reclaimed:
    run: indexed(bytes32)
    sponsor: indexed(address)
    amount: uint256


token: public(immutable(IERC20))
models: public(immutable(IModels))
challenge_window: public(immutable(uint256))
claim_period: public(immutable(uint256))

pools: public(HashMap[bytes32, Pool])
postings: public(HashMap[bytes32, HashMap[uint256, Posting]])
# keccak256(abi_encode(run, round, contributor)) of every leaf paid
claimed: public(HashMap[bytes32, bool])


@deploy
def __init__(token_: IERC20, models_: IModels, challenge_window_: uint256, claim_period_: uint256):
    """
    @param token_ The network's token (rewards are paid in it).
    @param models_ The ModelRegistry: a run's coordinator and its rounds' models.
    @param challenge_window_ Seconds after a posting before its claims open.
    @param claim_period_ Seconds after that for claiming; the rest then goes back.
    """
    assert challenge_window_ >= 1 and challenge_window_ <= MAX_PERIOD, "rewards: period out of range"
    assert claim_period_ >= 1 and claim_period_ <= MAX_PERIOD, "rewards: period out of range"
    token = token_
    models = models_
    challenge_window = challenge_window_
    claim_period = claim_period_


@external
def fund(run: bytes32, amount: uint256, locked_until: uint256):
    """
    @notice Put `amount` tokens (approve first) in `run`'s pool, kept for its
            contributors until `locked_until` at least. The first funder is the
            run's sponsor and the only one who funds it afterwards; a later lock
            may only be longer.
    @param run The federated run's id (as the ModelRegistry knows it).
    @param amount Tokens for the run's contributors.
    @param locked_until The time before which the sponsor cannot take them back.
    """
    assert run != empty(bytes32), "rewards: zero run id"
    assert amount > 0, "rewards: nothing to fund"
    pool: Pool = self.pools[run]
    if pool.sponsor == empty(address):
        pool.sponsor = msg.sender
    assert msg.sender == pool.sponsor, "rewards: only the run's sponsor funds its pool"
    assert locked_until >= pool.locked_until, "rewards: a lock cannot be shortened"
    assert locked_until <= block.timestamp + MAX_PERIOD, "rewards: lock too long"
    pool.budget += amount
    pool.locked_until = locked_until
    self.pools[run] = pool
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), "rewards: token transfer failed"
    log Funded(run=run, sponsor=msg.sender, amount=amount, budget=pool.budget, locked_until=locked_until)


@external
def post(run: bytes32, round: uint256, model: bytes32, root: bytes32, total: uint256):
    """
    @notice Post round `round`'s contributions: the Merkle root of (contributor,
            amount) leaves summing to `total`, for the round's global `model`. The
            run's coordinator only, once per round, from the pool's budget.
    """
    assert root != empty(bytes32) and total > 0, "rewards: an empty posting"
    coordinator: address = (staticcall models.federatedRun(run)).coordinator
    assert coordinator != empty(address), "rewards: no such federated run"
    assert msg.sender == coordinator, "rewards: only the run's coordinator posts"
    assert staticcall models.roundModel(run, round) == model, "rewards: not the round's model in the lineage"
    assert self.postings[run][round].posted_at == 0, "rewards: round already posted"
    budget: uint256 = self.pools[run].budget
    assert total <= budget, "rewards: the pool holds less than the posting"
    self.pools[run].budget = budget - total
    self.postings[run][round] = Posting(
        root=root, model=model, total=total, claimed=0, posted_at=block.timestamp, expired=False
    )
    log Posted(run=run, round=round, model=model, root=root, total=total, claimable_at=block.timestamp + challenge_window)


@external
def claim(run: bytes32, round: uint256, contributor: address, amount: uint256, proof: DynArray[bytes32, MAX_PROOF]):
    """
    @notice Pay `contributor` its `amount` of round `round`'s posting, with the
            Merkle proof of its leaf; anyone may send it, once per leaf, after the
            challenge window and before the claim period ends.
    """
    p: Posting = self.postings[run][round]
    assert p.posted_at != 0, "rewards: round not posted"
    assert not p.expired, "rewards: the claim period is over"
    assert block.timestamp >= p.posted_at + challenge_window, "rewards: still in the challenge window"
    assert block.timestamp < p.posted_at + challenge_window + claim_period, "rewards: the claim period is over"
    key: bytes32 = keccak256(abi_encode(run, round, contributor))
    assert not self.claimed[key], "rewards: already claimed"
    leaf: bytes32 = keccak256(abi_encode(run, round, contributor, amount))
    assert merkle._verify(leaf, proof, p.root), "rewards: not a leaf of the posting"
    assert p.claimed + amount <= p.total, "rewards: the posting's leaves sum to more than its total"
    self.claimed[key] = True
    self.postings[run][round].claimed = p.claimed + amount
    assert extcall token.transfer(contributor, amount, default_return_value=True), "rewards: token transfer failed"
    log Claimed(run=run, round=round, contributor=contributor, amount=amount)


@external
def expire(run: bytes32, round: uint256):
    """
    @notice After the claim period, put what nobody claimed of round `round`'s
            posting back in the run's budget (anyone).
    """
    p: Posting = self.postings[run][round]
    assert p.posted_at != 0, "rewards: round not posted"
    assert not p.expired, "rewards: already expired"
    assert block.timestamp >= p.posted_at + challenge_window + claim_period, "rewards: the claim period is not over"
    rest: uint256 = p.total - p.claimed
    self.postings[run][round].expired = True
    self.pools[run].budget += rest
    log Expired(run=run, round=round, returned=rest)


@external
def reclaim(run: bytes32) -> uint256:
    """
    @notice The sponsor takes back the budget no posting holds, once its lock is over.
    @return The amount returned.
    """
    pool: Pool = self.pools[run]
    assert msg.sender == pool.sponsor, "rewards: only the run's sponsor reclaims"
    assert block.timestamp >= pool.locked_until, "rewards: the pool is locked"
    assert pool.budget > 0, "rewards: nothing to reclaim"
    self.pools[run].budget = 0
    assert extcall token.transfer(msg.sender, pool.budget, default_return_value=True), "rewards: token transfer failed"
    log Reclaimed(run=run, sponsor=msg.sender, amount=pool.budget)
    return pool.budget


@external
@view
def leaf(run: bytes32, round: uint256, contributor: address, amount: uint256) -> bytes32:
    """
    @notice The Merkle leaf of a contributor's amount (a cross-check for tree builders).
    """
    return keccak256(abi_encode(run, round, contributor, amount))
