# pragma version ~=0.4.3
"""
@title idlegrid ModelRegistry
@notice The lineage of models, permanent and public: for each model (keyed by
        the sha256 of its weights), the hashes of the spec it was trained from
        and of its dataset, the Merkle root of its training checkpoints, who
        trained it, who registered it and when, and the model it was fine-tuned
        from. Anyone may register a model once; the first record stands.
@dev What a record proves: that `registrant` claimed these hashes at
     `registered_at`, and (for a parent) that the parent was registered before.
     What it does not: that the trainer really trained it, or that the weights
     follow from spec and data; that is the verification's job (proof-of-learning
     and disputes), whose outcome a later contract records. The registry holds
     no tokens.
"""

struct Model:
    spec_hash: bytes32
    data_hash: bytes32
    checkpoints_root: bytes32
    parent: bytes32
    trainer: address
    registrant: address
    registered_at: uint256


event ModelRegistered:
    model: indexed(bytes32)
    registrant: indexed(address)
    trainer: indexed(address)
    spec_hash: bytes32
    data_hash: bytes32
    checkpoints_root: bytes32
    parent: bytes32


_models: HashMap[bytes32, Model]
count: public(uint256)


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
            model registered before.
    @param model The sha256 of the model's weights (its ONNX file, say).
    @param spec_hash The sha256 of the training spec.
    @param data_hash The sha256 of the dataset.
    @param checkpoints_root The Merkle root of the training checkpoints' hashes.
    @param trainer Who trained it (a claim; zero when unknown).
    @param parent The model it was fine-tuned from, or zero.
    """
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
    )


@external
@view
def model(model: bytes32) -> Model:
    """
    @notice A model's record (all zeros when it was never registered).
    """
    return self._models[model]


@external
@view
def registered(model: bytes32) -> bool:
    """
    @notice Whether `model` has a record.
    """
    return self._models[model].registered_at != 0
