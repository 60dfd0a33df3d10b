# pragma version ~=0.4.3
"""
@title idlegrid ModelRegistry
@notice The lineage of models, permanent and public: for each model (keyed by
        the sha256 of its weights), the hashes of the spec it was trained from
        and of its dataset, the Merkle root of its training checkpoints, who
        trained it, who registered it and when, the model it was fine-tuned
        from, and, for a model trained on the network, its training run: the
        commitment made before verification, the seed that chose what to check,
        and the verification's outcome. Anyone may register a model once; the
        first record stands.
@dev Training runs: the run's committer (the client who paid for it) commits
     spec, data and checkpoints root (`commitTraining`); the hash of the block
     `SEED_DELAY` blocks later, unknown when the root was committed, becomes
     the run's seed (`draw`, anyone); the committer records what its
     verification of the intervals the seed selected found
     (`recordVerification`), and registers the trained model with the run
     (`registerTrained`).
     What a record proves: that the committer fixed the checkpoints root before
     the seed existed (so the checked intervals could not be chosen to suit the
     trainer), and that the committer reported this outcome. What it does not:
     that the replays were really run or that the outcome is true (the
     committer's word; a provider contests a wrong verdict through the
     dispute path), nor anything about the intervals not checked beyond the
     detection probability 1 - (1 - f)^q.
     Federated runs: each round's global model is registered by the run's
     coordinator (`registerRound`) with the clients whose updates went into it,
     linked to the previous round's model, so that data contributors can be
     paid from the lineage. What a round record proves: that the coordinator
     named these participants for this model, in this order of rounds. What it
     does not: that the participants really trained (the coordinator's word).
     A run id names either a training run or a federated run, never both.
     The registry holds no tokens.
"""

# blocks between a commitment and the block whose hash is its seed: the
# committer cannot know (or, short of mining, steer) a hash two blocks ahead
SEED_DELAY: public(constant(uint256)) = 2
# the EVM answers BLOCKHASH for the 256 most recent blocks only
BLOCKHASH_WINDOW: constant(uint256) = 256
# clients named in one federated round; bounds the storage (and gas) of a round
MAX_PARTICIPANTS: public(constant(uint256)) = 128
# a round's accuracy or privacy budget the coordinator did not measure
NOT_MEASURED: public(constant(uint256)) = max_value(uint256)
# accuracy and epsilon are given in millionths
MILLION: constant(uint256) = 1_000_000

NOT_VERIFIED: constant(uint8) = 0
PASSED: constant(uint8) = 1
FAILED: constant(uint8) = 2


struct Model:
    spec_hash: bytes32
    data_hash: bytes32
    checkpoints_root: bytes32
    parent: bytes32
    trainer: address
    registrant: address
    registered_at: uint256
    run: bytes32


struct Training:
    spec_hash: bytes32
    data_hash: bytes32
    checkpoints_root: bytes32
    intervals: uint256
    committer: address
    commit_block: uint256
    seed: bytes32
    outcome: uint8
    checked: uint256
    failed: uint256
    model: bytes32


struct FederatedRun:
    coordinator: address
    rounds: uint256
    last_round: uint256
    last_model: bytes32


_models: HashMap[bytes32, Model]
_runs: HashMap[bytes32, Training]
_federated: HashMap[bytes32, FederatedRun]
_round_models: HashMap[bytes32, HashMap[uint256, bytes32]]
_participants: HashMap[bytes32, DynArray[address, MAX_PARTICIPANTS]]
# participants already seen in this transaction's round, keyed by its model (a
# model is registered once, so no two rounds share a key): EIP-1153 transient
# storage, 100 gas a read or write and gone when the transaction ends, makes the
# repeat check linear where a pairwise check of 128 would cost over a million gas
_seen: transient(HashMap[bytes32, HashMap[address, bool]])
count: public(uint256)
# each model's zero-knowledge verifier: a contract that checks a proof that the model
# gives an output on an input (`verify(model, input, output, proof) -> bool`), linked
# once by the model's registrant; the AI oracle asks it in zero-knowledge mode
verifier: public(HashMap[bytes32, address])


event ModelRegistered:
    model: indexed(bytes32)
    registrant: indexed(address)
    trainer: indexed(address)
    spec_hash: bytes32
    data_hash: bytes32
    checkpoints_root: bytes32
    parent: bytes32
    run: bytes32


event TrainingCommitted:
    run: indexed(bytes32)
    committer: indexed(address)
    spec_hash: bytes32
    data_hash: bytes32
    checkpoints_root: bytes32
    intervals: uint256
    seed_block: uint256


event SeedDrawn:
    run: indexed(bytes32)
    seed: bytes32


event VerificationRecorded:
    run: indexed(bytes32)
    committer: indexed(address)
    passed: bool
    checked: uint256
    failed: uint256


event VerifierLinked:
    model: indexed(bytes32)
    registrant: indexed(address)
    verifier: address


event RoundRegistered:
    run: indexed(bytes32)
    round: uint256
    model: indexed(bytes32)
    coordinator: indexed(address)
    participants: DynArray[address, MAX_PARTICIPANTS]
    # the coordinator's claims, in millionths (NOT_MEASURED when it has none)
    accuracy: uint256
    epsilon_spent: uint256


@external
def register(
    model: bytes32,
    spec_hash: bytes32,
    data_hash: bytes32,
    checkpoints_root: bytes32,
    trainer: address,
    parent: bytes32,
):
    """
    @notice Record a model's lineage. Zero hashes mean "not known" (a model
            trained elsewhere has no checkpoints root); `parent` is zero or a
            model registered before. The record has no training run.
    @param model The sha256 of the model's weights (its ONNX file, say).
    @param spec_hash The sha256 of the training spec.
    @param data_hash The sha256 of the dataset.
    @param checkpoints_root The Merkle root of the training checkpoints' hashes.
    @param trainer Who trained it (a claim; zero when unknown).
    @param parent The model it was fine-tuned from, or zero.
    """
    self._register(model, spec_hash, data_hash, checkpoints_root, trainer, parent, empty(bytes32))


@external
def commitTraining(
    run: bytes32,
    spec_hash: bytes32,
    data_hash: bytes32,
    checkpoints_root: bytes32,
    intervals: uint256,
):
    """
    @notice Commit a training run's checkpoints before anything is verified:
            once per run id, by its committer (the sender). The seed that
            selects the intervals to check is the hash of block
            `block.number + SEED_DELAY`.
    @param run The run's id (any 32 bytes the committer chooses, not used before).
    @param spec_hash The sha256 of the training spec.
    @param data_hash The sha256 of the dataset.
    @param checkpoints_root The Merkle root of the initial state's hash and the
           hash of the state after each interval.
    @param intervals How many intervals the run has (leaves of the tree less one).
    """
    assert run != empty(bytes32), "models: zero run id"
    assert self._runs[run].committer == empty(address), "models: run already committed"
    assert self._federated[run].coordinator == empty(address), "models: run id used by a federated run"
    assert checkpoints_root != empty(bytes32), "models: zero checkpoints root"
    assert intervals != 0, "models: no intervals"
    self._runs[run] = Training(
        spec_hash=spec_hash,
        data_hash=data_hash,
        checkpoints_root=checkpoints_root,
        intervals=intervals,
        committer=msg.sender,
        commit_block=block.number,
        seed=empty(bytes32),
        outcome=NOT_VERIFIED,
        checked=0,
        failed=0,
        model=empty(bytes32),
    )
    log TrainingCommitted(
        run=run,
        committer=msg.sender,
        spec_hash=spec_hash,
        data_hash=data_hash,
        checkpoints_root=checkpoints_root,
        intervals=intervals,
        seed_block=block.number + SEED_DELAY,
    )


@external
def draw(run: bytes32) -> bytes32:
    """
    @notice Fix the run's seed: the hash of block `commit block + SEED_DELAY`.
            Anyone may call it, once that block is mined and while it is one of
            the 256 most recent; later the commitment has expired (its seed can
            no longer be read) and the run must be committed again under a new id.
    @param run The run's id.
    @return The seed.
    """
    # field by field, not the whole struct: each stored word read costs 2,100 gas
    assert self._runs[run].committer != empty(address), "models: unknown run"
    assert self._runs[run].seed == empty(bytes32), "models: seed already drawn"
    seed_block: uint256 = self._runs[run].commit_block + SEED_DELAY
    assert block.number > seed_block, "models: seed block not mined yet"
    assert block.number - seed_block <= BLOCKHASH_WINDOW, "models: seed block too old"
    seed: bytes32 = blockhash(seed_block)
    self._runs[run].seed = seed
    log SeedDrawn(run=run, seed=seed)
    return seed


@external
def recordVerification(run: bytes32, passed: bool, checked: uint256, failed: uint256):
    """
    @notice Record what the verification of the run found (its committer, once,
            after the seed is drawn): `checked` intervals replayed, `failed` of
            them outside the tolerance. A pass has no failed interval.
    @param run The run's id.
    @param passed Whether the run passed.
    @param checked How many intervals were replayed.
    @param failed How many of those failed.
    """
    committer: address = self._runs[run].committer
    assert committer != empty(address), "models: unknown run"
    assert msg.sender == committer, "models: only the committer"
    assert self._runs[run].seed != empty(bytes32), "models: seed not drawn"
    assert self._runs[run].outcome == NOT_VERIFIED, "models: already verified"
    assert checked <= self._runs[run].intervals, "models: more checked than intervals"
    assert failed <= checked, "models: more failed than checked"
    assert not passed or failed == 0, "models: a pass with failed intervals"
    self._runs[run].outcome = PASSED if passed else FAILED
    self._runs[run].checked = checked
    self._runs[run].failed = failed
    log VerificationRecorded(
        run=run, committer=msg.sender, passed=passed, checked=checked, failed=failed
    )


@external
def registerTrained(model: bytes32, run: bytes32, trainer: address, parent: bytes32):
    """
    @notice Register the model a committed run trained (the run's committer,
            one model per run): spec, data and checkpoints root are the
            commitment's, and the record links the run (and so its outcome).
    @param model The sha256 of the model's weights.
    @param run The run that trained it.
    @param trainer Who trained it (the provider; a claim).
    @param parent The model it was fine-tuned from, or zero.
    """
    committer: address = self._runs[run].committer
    assert committer != empty(address), "models: unknown run"
    assert msg.sender == committer, "models: only the committer"
    assert self._runs[run].model == empty(bytes32), "models: run already registered"
    self._runs[run].model = model
    self._register(
        model,
        self._runs[run].spec_hash,
        self._runs[run].data_hash,
        self._runs[run].checkpoints_root,
        trainer,
        parent,
        run,
    )


@external
def registerRound(
    model: bytes32,
    run: bytes32,
    round: uint256,
    spec_hash: bytes32,
    data_hash: bytes32,
    parent: bytes32,
    participants: DynArray[address, MAX_PARTICIPANTS],
    accuracy: uint256,
    epsilon_spent: uint256,
):
    """
    @notice Register a federated round's global model with the clients whose
            updates went into it, and what its coordinator measured of it. The sender of a run's first round becomes its
            coordinator, and only it registers later rounds; round numbers start
            at 1 and strictly increase (a round that failed may be skipped).
            The model's record names the run, the coordinator as trainer and
            registrant, and no checkpoints root.
    @dev Repeats are found through transient storage (`_seen`), in one pass.
    @param model The sha256 of the round's global model weights.
    @param run The federated run's id (not a training run's).
    @param round The round number, above the run's last registered round.
    @param spec_hash The sha256 of the federated run's spec.
    @param data_hash The sha256 of the sponsor's validation set.
    @param parent The previous round's model: the run's last model for every
           round after the first; for the first, zero or a registered model
           (the initial model).
    @param participants The clients whose updates the model aggregates: 1 to
           MAX_PARTICIPANTS distinct non-zero addresses.
    @param accuracy The model's accuracy on the sponsor's validation set
           (`data_hash`) as the coordinator measured it, in millionths (at most
           1_000_000), or NOT_MEASURED. A claim, recorded for anyone to see and
           recompute from the model and the validation set; not checked here.
    @param epsilon_spent The differential-privacy budget the run has spent up to this
           round, in millionths, or NOT_MEASURED (a run without DP).
    """
    assert accuracy <= MILLION or accuracy == NOT_MEASURED, "models: accuracy over 1"
    assert run != empty(bytes32), "models: zero run id"
    assert self._runs[run].committer == empty(address), "models: run id used by a training run"
    coordinator: address = self._federated[run].coordinator
    if coordinator == empty(address):
        self._federated[run].coordinator = msg.sender
    else:
        assert msg.sender == coordinator, "models: only the run's coordinator"
        # a round's global model starts from the one before: the lineage has no gaps
        assert parent == self._federated[run].last_model, "models: parent not the run's last model"
    assert round > self._federated[run].last_round, "models: round not after the last"
    assert len(participants) != 0, "models: no participants"
    for participant: address in participants:
        assert participant != empty(address), "models: zero participant"
        assert not self._seen[model][participant], "models: repeated participant"
        self._seen[model][participant] = True
    self._register(model, spec_hash, data_hash, empty(bytes32), msg.sender, parent, run)
    self._federated[run].rounds += 1
    self._federated[run].last_round = round
    self._federated[run].last_model = model
    self._round_models[run][round] = model
    self._participants[model] = participants
    log RoundRegistered(
        run=run,
        round=round,
        model=model,
        coordinator=msg.sender,
        participants=participants,
        accuracy=accuracy,
        epsilon_spent=epsilon_spent,
    )


@external
def linkVerifier(model: bytes32, verifier: address):
    """
    @notice Link the verifier of `model`'s zero-knowledge proofs (a contract); by the
            model's registrant, once: the record, like the lineage, stands.
    @param model The sha256 of the model.
    @param verifier The contract answering `verify(model, input, output, proof)`.
    """
    registrant: address = self._models[model].registrant
    assert registrant != empty(address), "models: model not registered"
    assert msg.sender == registrant, "models: only the model's registrant links its verifier"
    assert self.verifier[model] == empty(address), "models: a verifier is linked already"
    assert verifier.is_contract, "models: the verifier is not a contract"
    self.verifier[model] = verifier
    log VerifierLinked(model=model, registrant=msg.sender, verifier=verifier)


@external
@view
def model(model: bytes32) -> Model:
    """
    @notice A model's record (all zeros when it was never registered; `run`
            zero when it was registered without a training run).
    @param model The sha256 of the model's weights.
    """
    return self._models[model]


@external
@view
def training(run: bytes32) -> Training:
    """
    @notice A training run's commitment, seed and outcome (0 not verified,
            1 passed, 2 failed); all zeros when it was never committed.
    @param run The run's id.
    """
    return self._runs[run]


@external
@view
def seed(run: bytes32) -> bytes32:
    """
    @notice The run's seed (zero until drawn).
    @param run The run's id.
    """
    return self._runs[run].seed


@external
@view
def participants(model: bytes32) -> DynArray[address, MAX_PARTICIPANTS]:
    """
    @notice The clients a federated round's model aggregates, in the order its
            coordinator gave (empty for any other model).
    @param model The sha256 of the model's weights.
    """
    return self._participants[model]


@external
@view
def federatedRun(run: bytes32) -> FederatedRun:
    """
    @notice A federated run's coordinator, how many rounds it registered, the
            last round's number and model; all zeros when it has none.
    @param run The federated run's id.
    """
    return self._federated[run]


@external
@view
def roundModel(run: bytes32, round: uint256) -> bytes32:
    """
    @notice The global model a federated run registered for `round` (zero if none).
    @param run The federated run's id.
    @param round The round number.
    """
    return self._round_models[run][round]


@external
@view
def registered(model: bytes32) -> bool:
    """
    @notice Whether `model` has a record.
    @param model The sha256 of the model's weights.
    """
    return self._models[model].registered_at != 0


@internal
def _register(
    model: bytes32,
    spec_hash: bytes32,
    data_hash: bytes32,
    checkpoints_root: bytes32,
    trainer: address,
    parent: bytes32,
    run: bytes32,
):
    assert model != empty(bytes32), "models: zero model hash"
    assert self._models[model].registered_at == 0, "models: model already registered"
    assert model != parent, "models: a model cannot be its own parent"
    if parent != empty(bytes32):
        assert self._models[parent].registered_at != 0, "models: parent not registered"
    self._models[model] = Model(
        spec_hash=spec_hash,
        data_hash=data_hash,
        checkpoints_root=checkpoints_root,
        parent=parent,
        trainer=trainer,
        registrant=msg.sender,
        registered_at=block.timestamp,
        run=run,
    )
    self.count += 1
    log ModelRegistered(
        model=model,
        registrant=msg.sender,
        trainer=trainer,
        spec_hash=spec_hash,
        data_hash=data_hash,
        checkpoints_root=checkpoints_root,
        parent=parent,
        run=run,
    )
