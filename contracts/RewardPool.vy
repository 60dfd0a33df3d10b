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
        Royalties: a registered model's registrant sets, once, its price per
        compute unit and the part of its royalty that goes to its data
        contributors (`set_royalty`). Whoever serves or pays for the model pays
        the royalty in (`pay_royalty`) and it flows up the model's lineage: at
        each level `PARENT_BPS` to the model it was fine-tuned from (at most
        `MAX_DEPTH` levels), the model's data part (its terms' `data_bps`, or
        `DEFAULT_DATA_BPS`) of the rest to the contributors of the posting that
        paid for the model, and the remainder to its trainer. Trainers withdraw
        (`withdraw_royalties`); a contributor's share of a model's data royalty,
        in proportion to its posted amount, is claimed with the same proof as
        the posting (`claim_royalty`, any time after the posting's challenge
        window, whether the posting expired or not).
@dev Money: the pool's token balance always equals the sum over runs of
     `budget` (funded, not posted) plus, over postings not expired,
     `total - claimed` (posted, not yet claimed), plus the sum over accounts of
     `owed` (trainers' royalties not withdrawn), plus the sum over models of
     their data royalty less what their contributors claimed of it
     (`royalties_of`: `received - claimed`). A
     posting moves tokens from its run's budget to itself; a claim from a posting
     to its contributor, once per leaf; an expiry from a posting back to the
     budget; a reclaim from the budget to the sponsor; a royalty from its payer to
     `owed` and models' data royalties, split exactly (each level's parts sum to
     its amount); a withdrawal from `owed` to its account; a royalty claim from a
     model's data royalty to a contributor. Nothing else moves tokens.
     A contributor's royalty is `received * amount // total` less what it claimed
     before; the floor leaves up to (contributors - 1) wei of a model's data
     royalty unclaimed, held for the next royalty's claims (it stays in
     `received - claimed`).
     A leaf is keccak256(abi_encode(run, round, contributor, amount)); the tree
     hashes sorted pairs with keccak256, as idlegrid.protocol's merkle trees.
     Challenges: within a posting's window anyone may dispute it through the
     dispute contract (the arbiter), which freezes it (no claim, no expiry) and,
     when the committee's referees recompute the contributions from the round's
     published inputs and find the posting wrong, voids it: its total goes back
     to the budget and the coordinator posts the round again.
"""

from ethereum.ercs import IERC20

import merkle


struct FederatedRun:
    coordinator: address
    rounds: uint256
    last_round: uint256
    last_model: bytes32


struct Model:
    spec_hash: bytes32
    data_hash: bytes32
    checkpoints_root: bytes32
    parent: bytes32
    trainer: address
    registrant: address
    registered_at: uint256
    run: bytes32


interface IModels:
    def federatedRun(run: bytes32) -> FederatedRun: view
    def roundModel(run: bytes32, round: uint256) -> bytes32: view
    def model(model: bytes32) -> Model: view


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


# a model's royalty terms, set once by its registrant (rate 0: not set)
struct Royalty:
    # wei per compute unit
    rate: uint256
    # of the model's own royalty (after its parent's part), to its data contributors
    data_bps: uint256


# the posting that paid a model's data contributors (its first)
struct RoundRef:
    run: bytes32
    round: uint256


# a model's data royalty: received, and paid out to contributors
struct DataRoyalty:
    received: uint256
    claimed: uint256


MAX_PROOF: public(constant(uint256)) = 32
# contributors one posting pays (the ModelRegistry's MAX_PARTICIPANTS)
MAX_CONTRIBUTORS: public(constant(uint256)) = 128
# bounds of the constructor's periods (seconds)
MAX_PERIOD: public(constant(uint256)) = 365 * 86400
BPS: constant(uint256) = 10000
# levels of a lineage a royalty reaches: the served model and 7 ancestors; the
# last level keeps its whole amount (bounds the gas: one registry read a level)
MAX_DEPTH: public(constant(uint256)) = 8
# a level's part for the model it was fine-tuned from
PARENT_BPS: public(constant(uint256)) = 2000
# the data contributors' part of a posted model's royalty when its registrant set no terms
DEFAULT_DATA_BPS: public(constant(uint256)) = 5000


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
    # sha256 of the round's published inputs (what a challenger recomputes it from)
    inputs: bytes32
    contributors: DynArray[address, MAX_CONTRIBUTORS]
    amounts: DynArray[uint256, MAX_CONTRIBUTORS]


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


event ArbiterSet:
    arbiter: indexed(address)


event PostingDisputed:
    run: indexed(bytes32)
    round: indexed(uint256)


event PostingVoided:
    run: indexed(bytes32)
    round: indexed(uint256)
    model: indexed(bytes32)
    returned: uint256


# a model's royalty terms, fixed
event RoyaltySet:
    model: indexed(bytes32)
    rate: uint256
    data_bps: uint256


# a royalty paid in for a model (once a payment; its sharing follows)
event RoyaltyPaid:
    model: indexed(bytes32)
    payer: indexed(address)
    amount: uint256


# one level of a royalty's lineage: what its trainer, its data contributors and its
# parent got (the parent's part is the next level's amount)
event RoyaltyShared:
    model: indexed(bytes32)
    trainer: indexed(address)
    to_trainer: uint256
    to_data: uint256
    to_parent: uint256


# a trainer's royalties paid out
event RoyaltiesWithdrawn:
    account: indexed(address)
    amount: uint256


# a contributor's share of a model's data royalty paid out: `amount` now,
# `total_claimed` so far
event RoyaltyClaimed:
    model: indexed(bytes32)
    contributor: indexed(address)
    amount: uint256
    total_claimed: uint256


token: public(immutable(IERC20))
models: public(immutable(IModels))
challenge_window: public(immutable(uint256))
claim_period: public(immutable(uint256))

pools: public(HashMap[bytes32, Pool])
postings: public(HashMap[bytes32, HashMap[uint256, Posting]])
# keccak256(abi_encode(run, round, contributor)) of every leaf paid
claimed: public(HashMap[bytes32, bool])
_royalties: HashMap[bytes32, Royalty]
_round_of: HashMap[bytes32, RoundRef]
_data: HashMap[bytes32, DataRoyalty]
# trainers' royalties not withdrawn
owed: public(HashMap[address, uint256])
# keccak256(abi_encode(model, contributor)): the model's data royalty paid to it so far
royalty_claimed: public(HashMap[bytes32, uint256])
# the dispute contract: it freezes a challenged posting and voids a wrong one
arbiter: public(address)
_deployer: address
# postings under dispute: no claim, no expiry until it is settled
disputed: public(HashMap[bytes32, HashMap[uint256, bool]])


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
    self._deployer = msg.sender


@external
def set_arbiter(arbiter_: address):
    """
    @notice Name the dispute contract that may freeze and void postings. The
            deployer only, once: the deployment wires it.
    """
    assert msg.sender == self._deployer, "rewards: only the deployer names the arbiter"
    assert self.arbiter == empty(address), "rewards: arbiter already set"
    assert arbiter_ != empty(address), "rewards: arbiter is the zero address"
    self.arbiter = arbiter_
    log ArbiterSet(arbiter=arbiter_)


@external
def freeze(run: bytes32, round: uint256) -> (address, uint256, bytes32, bytes32):
    """
    @notice A challenge of round `round`'s posting was opened (the arbiter only,
            within the posting's challenge window, once at a time): its claims and
            expiry wait for the ruling.
    @return The run's coordinator (whom the challenge accuses), when the posting
            was made, its root and its model.
    """
    assert msg.sender == self.arbiter, "rewards: only the arbiter freezes a posting"
    p: Posting = self.postings[run][round]
    assert p.posted_at != 0 and not p.expired, "rewards: round not posted"
    assert block.timestamp < p.posted_at + challenge_window, "rewards: the challenge window is over"
    assert not self.disputed[run][round], "rewards: the posting is disputed already"
    self.disputed[run][round] = True
    log PostingDisputed(run=run, round=round)
    return (staticcall models.federatedRun(run)).coordinator, p.posted_at, p.root, p.model


@external
def settle(run: bytes32, round: uint256, wrong: bool):
    """
    @notice The ruling on a challenged posting (the arbiter only). A posting found
            wrong is void: its total goes back to the run's budget and the
            coordinator may post the round again (a correction); otherwise it
            stands and its claims open as usual.
    """
    assert msg.sender == self.arbiter, "rewards: only the arbiter settles a posting"
    assert self.disputed[run][round], "rewards: the posting is not disputed"
    self.disputed[run][round] = False
    if not wrong:
        return
    p: Posting = self.postings[run][round]
    # claims waited for the ruling, so nothing of it was paid
    self.pools[run].budget += p.total - p.claimed
    self.postings[run][round] = empty(Posting)
    if self._round_of[p.model].run == run and self._round_of[p.model].round == round:
        self._round_of[p.model] = empty(RoundRef)
    log PostingVoided(run=run, round=round, model=p.model, returned=p.total - p.claimed)


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
def post(
    run: bytes32,
    round: uint256,
    model: bytes32,
    contributors: DynArray[address, MAX_CONTRIBUTORS],
    amounts: DynArray[uint256, MAX_CONTRIBUTORS],
    inputs: bytes32,
):
    """
    @notice Post round `round`'s contributions for the round's global `model`:
            each contributor's amount, in ascending address order. The pool keeps
            the Merkle root of their (run, round, contributor, amount) leaves and
            their total, which moves from the run's budget to the posting; the
            `Posted` event records every amount, so that shares read back from the
            chain and a challenger can recompute them. The run's coordinator only,
            once per round.
    @param inputs The sha256 of the round's published inputs (the global model,
           the updates, the validation set and the seed the contributions were
           computed from).
    """
    assert len(contributors) != 0 and len(contributors) == len(amounts), "rewards: an empty posting"
    leaves: DynArray[bytes32, MAX_CONTRIBUTORS] = []
    total: uint256 = 0
    previous: uint256 = 0
    for i: uint256 in range(len(contributors), bound=MAX_CONTRIBUTORS):
        assert convert(contributors[i], uint256) > previous, "rewards: contributors not in ascending address order"
        previous = convert(contributors[i], uint256)
        assert amounts[i] > 0, "rewards: a contributor's amount is zero"
        total += amounts[i]
        leaves.append(keccak256(abi_encode(run, round, contributors[i], amounts[i])))
    root: bytes32 = self._root(leaves)
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
    if self._round_of[model].run == empty(bytes32):
        # the model's data contributors, for its royalties (rounds start at 1)
        self._round_of[model] = RoundRef(run=run, round=round)
    log Posted(
        run=run, round=round, model=model, root=root, total=total,
        claimable_at=block.timestamp + challenge_window, inputs=inputs,
        contributors=contributors, amounts=amounts,
    )


@internal
@pure
def _root(leaves: DynArray[bytes32, MAX_CONTRIBUTORS]) -> bytes32:
    # the Merkle root over `leaves` in order, as idlegrid.protocol.merkle_root: sorted
    # pairs hashed with keccak256, an odd level's last node carried up unchanged
    level: DynArray[bytes32, MAX_CONTRIBUTORS] = leaves
    for _: uint256 in range(8):  # 2**7 = MAX_CONTRIBUTORS leaves: 7 levels
        n: uint256 = len(level)
        if n == 1:
            break
        up: DynArray[bytes32, MAX_CONTRIBUTORS] = []
        for i: uint256 in range(n // 2, bound=MAX_CONTRIBUTORS // 2):
            a: bytes32 = level[2 * i]
            b: bytes32 = level[2 * i + 1]
            if convert(a, uint256) < convert(b, uint256):
                up.append(keccak256(concat(a, b)))
            else:
                up.append(keccak256(concat(b, a)))
        if n % 2 == 1:
            up.append(level[n - 1])
        level = up
    return level[0]


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
    assert not self.disputed[run][round], "rewards: the posting is disputed"
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
    assert not self.disputed[run][round], "rewards: the posting is disputed"
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
def set_royalty(model: bytes32, rate: uint256, data_bps: uint256):
    """
    @notice Set `model`'s royalty: `rate` wei per compute unit served, of which,
            after its parent's part, `data_bps` / 10000 goes to its data
            contributors. The model's registrant only, once: the price never
            changes, so a client and a provider always agree on it.
    @param model The sha256 of the model's weights (registered).
    @param rate Wei per compute unit, above zero.
    @param data_bps The data contributors' part in basis points, at most 10000.
    """
    registrant: address = (staticcall models.model(model)).registrant
    assert registrant != empty(address), "rewards: model not registered"
    assert msg.sender == registrant, "rewards: only the model's registrant sets its royalty"
    assert self._royalties[model].rate == 0, "rewards: royalty already set"
    assert rate > 0, "rewards: zero royalty rate"
    assert data_bps <= BPS, "rewards: data part above 10000 bps"
    self._royalties[model] = Royalty(rate=rate, data_bps=data_bps)
    log RoyaltySet(model=model, rate=rate, data_bps=data_bps)


@external
def pay_royalty(model: bytes32, amount: uint256):
    """
    @notice Pay `amount` (approve first) of royalty for `model` (anyone; the job
            market at a voucher's redemption) and share it along the lineage: at
            each level `PARENT_BPS` to the registered model it was fine-tuned
            from (none on the `MAX_DEPTH`th level), of the rest the data part to
            the model's data contributors (when a posting paid them) and the
            remainder to its trainer (its registrant when no trainer is named).
    @param model The sha256 of the served model's weights (registered).
    @param amount The royalty in wei, above zero.
    """
    assert amount > 0, "rewards: nothing to pay"
    # `registered_at` is what the registry's `registered` reads; one call gives both
    record: Model = staticcall models.model(model)
    assert record.registered_at != 0, "rewards: model not registered"
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), "rewards: token transfer failed"
    log RoyaltyPaid(model=model, payer=msg.sender, amount=amount)
    current: bytes32 = model
    level_amount: uint256 = amount
    # a loop, not recursion: each level hands its parent's part to the next
    for level: uint256 in range(MAX_DEPTH):
        up: uint256 = 0
        parent: Model = empty(Model)
        if record.parent != empty(bytes32) and level < MAX_DEPTH - 1:
            parent = staticcall models.model(record.parent)
            if parent.registered_at != 0:
                up = level_amount * PARENT_BPS // BPS
        rest: uint256 = level_amount - up
        to_data: uint256 = 0
        if self._round_of[current].run != empty(bytes32):
            data_bps: uint256 = DEFAULT_DATA_BPS
            terms: Royalty = self._royalties[current]
            if terms.rate != 0:
                data_bps = terms.data_bps
            to_data = rest * data_bps // BPS
            self._data[current].received += to_data
        trainer: address = record.trainer
        if trainer == empty(address):
            trainer = record.registrant
        self.owed[trainer] += rest - to_data
        log RoyaltyShared(model=current, trainer=trainer, to_trainer=rest - to_data, to_data=to_data, to_parent=up)
        if up == 0:
            break
        current = record.parent
        record = parent
        level_amount = up


@external
def withdraw_royalties() -> uint256:
    """
    @notice Pay the sender the royalties it is owed as a trainer.
    @return The amount paid.
    """
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "rewards: nothing owed"
    self.owed[msg.sender] = 0
    assert extcall token.transfer(msg.sender, amount, default_return_value=True), "rewards: token transfer failed"
    log RoyaltiesWithdrawn(account=msg.sender, amount=amount)
    return amount


@external
def claim_royalty(model: bytes32, contributor: address, amount: uint256, proof: DynArray[bytes32, MAX_PROOF]):
    """
    @notice Pay `contributor` its share of `model`'s data royalty so far, less what
            it claimed before: `data_royalty * amount // total` for its `amount`
            in the posting that paid for the model, proved by its leaf (the
            claim's proof). Anyone may send it; after the posting's challenge
            window, even once the posting expired.
    @param model The sha256 of the model's weights.
    @param contributor The data contributor (receives the tokens).
    @param amount Its amount in the model's posting.
    @param proof The Merkle proof of its leaf in that posting.
    """
    ref: RoundRef = self._round_of[model]
    assert ref.run != empty(bytes32), "rewards: no posting for the model"
    p: Posting = self.postings[ref.run][ref.round]
    assert block.timestamp >= p.posted_at + challenge_window, "rewards: still in the challenge window"
    assert not self.disputed[ref.run][ref.round], "rewards: the posting is disputed"
    leaf: bytes32 = keccak256(abi_encode(ref.run, ref.round, contributor, amount))
    assert merkle._verify(leaf, proof, p.root), "rewards: not a leaf of the posting"
    data: DataRoyalty = self._data[model]
    key: bytes32 = keccak256(abi_encode(model, contributor))
    before: uint256 = self.royalty_claimed[key]
    # never below `before`: `received` only grows
    entitled: uint256 = data.received * amount // p.total
    assert entitled > before, "rewards: nothing to claim"
    pay: uint256 = entitled - before
    assert data.claimed + pay <= data.received, "rewards: the posting's leaves sum to more than its total"
    self.royalty_claimed[key] = entitled
    self._data[model].claimed = data.claimed + pay
    assert extcall token.transfer(contributor, pay, default_return_value=True), "rewards: token transfer failed"
    log RoyaltyClaimed(model=model, contributor=contributor, amount=pay, total_claimed=entitled)


@external
@view
def royalty(model: bytes32) -> (uint256, uint256):
    """
    @notice `model`'s royalty terms: wei per compute unit and the data part in
            basis points (zeros when not set).
    @param model The sha256 of the model's weights.
    """
    terms: Royalty = self._royalties[model]
    return terms.rate, terms.data_bps


@external
@view
def royalty_rate(model: bytes32) -> uint256:
    """
    @notice `model`'s royalty in wei per compute unit (0 when not set).
    @param model The sha256 of the model's weights.
    """
    return self._royalties[model].rate


@external
@view
def royalties_of(model: bytes32) -> (uint256, uint256):
    """
    @notice `model`'s data royalty: received so far, and claimed by its contributors.
    @param model The sha256 of the model's weights.
    """
    data: DataRoyalty = self._data[model]
    return data.received, data.claimed


@external
@view
def round_of(model: bytes32) -> (bytes32, uint256):
    """
    @notice The run and round of the posting that paid `model`'s data contributors
            (zeros when none did).
    @param model The sha256 of the model's weights.
    """
    ref: RoundRef = self._round_of[model]
    return ref.run, ref.round


@external
@view
def leaf(run: bytes32, round: uint256, contributor: address, amount: uint256) -> bytes32:
    """
    @notice The Merkle leaf of a contributor's amount (a cross-check for tree builders).
    """
    return keccak256(abi_encode(run, round, contributor, amount))
