"""ModelRegistry: a model's lineage, registered once, read back with its ancestors."""

from __future__ import annotations

import hashlib

import pytest

from idlegrid import ContractReverted, InvalidInput
from idlegrid.chain import EmbeddedBackend, ModelRegistryClient, TrainingOutcome
from idlegrid.chain._clients import SEED_DELAY
from idlegrid.protocol import Account

from ..conftest import Env


def _h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _models(env: Env) -> ModelRegistryClient:
    return env.ledger.client("models", ModelRegistryClient)


def test_a_model_is_registered_once_with_its_lineage(env: Env) -> None:
    # Prepare
    models, alice, trainer = _models(env), env.users[0], env.users[1]

    # Execute
    result = models.register(
        _h("base"),
        spec_hash=_h("spec"),
        data_hash=_h("data"),
        checkpoints_root=_h("root"),
        trainer=trainer.address,
        sender=alice,
    )

    # Assert: the record, who registered it, when; one event
    record = models.model(_h("base"))
    assert record is not None
    assert (record.spec_hash, record.data_hash, record.checkpoints_root) == (
        _h("spec"),
        _h("data"),
        _h("root"),
    )
    assert (record.trainer, record.registrant) == (trainer.address, alice.address)
    assert record.parent == bytes(32) and record.registered_at > 0
    assert models.registered(_h("base")) and models.count() == 1
    [event] = models._events("ModelRegistered", result)
    assert bytes(event["model"]) == _h("base") and event["registrant"] == alice.address
    assert models.model(_h("never")) is None and not models.registered(_h("never"))


def test_a_fine_tuned_model_names_its_parent_and_the_lineage_reads_back(env: Env) -> None:
    # Prepare
    models, alice, bob = _models(env), env.users[0], env.users[1]
    models.register(_h("base"), spec_hash=_h("spec"), sender=alice)

    # Execute
    models.register(_h("tuned"), parent=_h("base"), data_hash=_h("mine"), sender=bob)
    models.register(_h("tuned2"), parent=_h("tuned"), sender=alice)

    # Assert
    chain = models.lineage(_h("tuned2"))
    assert [r.model for r in chain] == [_h("tuned2"), _h("tuned"), _h("base")]
    assert chain[1].registrant == bob.address and chain[1].data_hash == _h("mine")


@pytest.mark.parametrize(
    ("model", "parent", "reason"),
    [
        (bytes(32), bytes(32), "models: zero model hash"),
        (_h("orphan"), _h("unknown"), "models: parent not registered"),
        (_h("self"), _h("self"), "models: a model cannot be its own parent"),
    ],
)
def test_bad_registrations_are_refused(env: Env, model: bytes, parent: bytes, reason: str) -> None:
    # Execute / Assert
    with pytest.raises(ContractReverted) as caught:
        _models(env).register(model, parent=parent, sender=env.users[0])
    assert caught.value.reason == reason
    assert _models(env).count() == 0


def test_the_first_record_stands(env: Env) -> None:
    # Prepare: alice registers a model
    models, alice, mallory = _models(env), env.users[0], env.users[2]
    models.register(_h("base"), spec_hash=_h("spec"), sender=alice)

    # Execute / Assert: nobody can rewrite it, not even alice
    for who in (mallory, alice):
        with pytest.raises(ContractReverted, match="already registered"):
            models.register(_h("base"), spec_hash=_h("forged"), sender=who)
    record = models.model(_h("base"))
    assert record is not None
    assert record.registrant == alice.address and record.spec_hash == _h("spec")
    env.conservation()  # the registry holds no tokens


# -- training runs: commitment, seed, verification, the trained model ----------------------

RUN = _h("run")


def _mine(env: Env, blocks: int) -> None:
    """Mine ``blocks`` empty blocks (the chain mines only on transactions)."""
    if isinstance(env.backend, EmbeddedBackend):
        env.backend.tester.mine_blocks(blocks)
    else:
        env.backend.w3.provider.make_request("anvil_mine", [blocks])  # type: ignore[arg-type]


def _commit(env: Env, who: Account, run: bytes = RUN, intervals: int = 8) -> int:
    """Commit ``run`` from ``who``; the block it was mined in."""
    result = _models(env).commit_training(
        run,
        spec_hash=_h("spec"),
        data_hash=_h("data"),
        checkpoints_root=_h("root"),
        intervals=intervals,
        sender=who,
    )
    return result.block


def _drawn(env: Env, who: Account, run: bytes = RUN) -> bytes:
    """Commit ``run`` and draw its seed."""
    _commit(env, who, run)
    _mine(env, SEED_DELAY + 1)  # gas is estimated on the head
    return _models(env).draw(run, sender=who)


def test_a_training_run_is_committed_once(env: Env) -> None:
    # Prepare
    models, client, mallory = _models(env), env.users[0], env.users[2]

    # Execute
    block = _commit(env, client, intervals=12)

    # Assert: the commitment as sent, by its sender, in its block; nobody commits it again
    record = models.training(RUN)
    assert record is not None
    assert (record.spec_hash, record.data_hash, record.checkpoints_root) == (
        _h("spec"),
        _h("data"),
        _h("root"),
    )
    assert (record.intervals, record.committer, record.block) == (12, client.address, block)
    assert record.seed == bytes(32) and record.outcome == TrainingOutcome.NOT_VERIFIED
    assert record.seed_block == block + SEED_DELAY == block + models.seed_delay()
    assert models.training(_h("never")) is None
    for who in (mallory, client):
        with pytest.raises(ContractReverted, match="models: run already committed"):
            _commit(env, who)
    assert models.training(RUN) == record


@pytest.mark.parametrize(
    ("run", "root", "intervals", "reason"),
    [
        (bytes(32), _h("root"), 4, "models: zero run id"),
        (RUN, bytes(32), 4, "models: zero checkpoints root"),
        (RUN, _h("root"), 0, "models: no intervals"),
    ],
)
def test_bad_commitments_are_refused(
    env: Env, run: bytes, root: bytes, intervals: int, reason: str
) -> None:
    with pytest.raises(ContractReverted) as caught:
        _models(env).commit_training(
            run,
            spec_hash=_h("spec"),
            data_hash=_h("data"),
            checkpoints_root=root,
            intervals=intervals,
            sender=env.users[0],
        )
    assert caught.value.reason == reason


def test_the_seed_is_the_hash_of_the_block_seed_delay_after_the_commitment(env: Env) -> None:
    # Prepare
    models, client, anyone = _models(env), env.users[0], env.users[3]
    block = _commit(env, client)
    _mine(env, SEED_DELAY + 1)  # gas is estimated on the head

    # Execute: anyone may draw
    seed = models.draw(RUN, sender=anyone)

    # Assert
    expected = bytes(env.backend.w3.eth.get_block(block + SEED_DELAY)["hash"])
    assert seed == expected == models.seed(RUN)
    record = models.training(RUN)
    assert record is not None and record.seed == expected
    with pytest.raises(ContractReverted, match="models: seed already drawn"):
        models.draw(RUN, sender=client)


def test_a_seed_cannot_be_drawn_before_its_block_is_mined(env: Env) -> None:
    # Prepare
    models, client = _models(env), env.users[0]
    _commit(env, client)

    # Execute / Assert: neither at once nor a block later
    for _ in range(SEED_DELAY):
        with pytest.raises(ContractReverted, match="models: seed block not mined yet"):
            models.draw(RUN, sender=client)
        _mine(env, 1)
    assert models.seed(RUN) == bytes(32)
    with pytest.raises(ContractReverted, match="models: unknown run"):
        models.draw(_h("never"), sender=client)


def test_a_commitment_expires_once_its_seed_block_is_older_than_256_blocks(env: Env) -> None:
    # Prepare
    models, client = _models(env), env.users[0]
    _commit(env, client)
    _mine(env, SEED_DELAY + 260)

    # Execute / Assert: the seed can no longer be read; a new run id can be committed
    with pytest.raises(ContractReverted, match="models: seed block too old"):
        models.draw(RUN, sender=client)
    assert models.seed(RUN) == bytes(32)
    _commit(env, client, _h("run again"))
    assert models.wait_seed(_h("run again"), sender=client, timeout_s=30) != bytes(32)


def test_wait_seed_mines_on_a_dev_chain_and_draws(env: Env) -> None:
    # Prepare
    models, client = _models(env), env.users[0]
    block = _commit(env, client)

    # Execute
    seed = models.wait_seed(RUN, sender=client, timeout_s=30)
    again = models.wait_seed(RUN, sender=client, timeout_s=30)

    # Assert
    assert seed == again == bytes(env.backend.w3.eth.get_block(block + SEED_DELAY)["hash"])
    with pytest.raises(InvalidInput, match="never committed"):
        models.wait_seed(_h("never"), sender=client, timeout_s=1)


def test_the_committer_records_the_verification_once(env: Env) -> None:
    # Prepare
    models, client = _models(env), env.users[0]
    _drawn(env, client)

    # Execute
    result = models.record_verification(RUN, passed=True, checked=3, failed=0, sender=client)

    # Assert
    record = models.training(RUN)
    assert record is not None
    assert (record.outcome, record.checked, record.failed) == (TrainingOutcome.PASSED, 3, 0)
    assert models._events("VerificationRecorded", result) == [
        {"run": RUN, "committer": client.address, "passed": True, "checked": 3, "failed": 0}
    ]
    with pytest.raises(ContractReverted, match="models: already verified"):
        models.record_verification(RUN, passed=False, checked=3, failed=1, sender=client)


def test_a_failed_verification_is_recorded_as_failed(env: Env) -> None:
    models, client = _models(env), env.users[0]
    _drawn(env, client)

    models.record_verification(RUN, passed=False, checked=4, failed=1, sender=client)

    record = models.training(RUN)
    assert record is not None
    assert (record.outcome, record.checked, record.failed) == (TrainingOutcome.FAILED, 4, 1)


def test_only_the_committer_records_and_only_after_the_draw(env: Env) -> None:
    # Prepare
    models, client, mallory = _models(env), env.users[0], env.users[2]
    _commit(env, client)

    # Execute / Assert: before the draw, nobody; after it, only the committer
    with pytest.raises(ContractReverted, match="models: seed not drawn"):
        models.record_verification(RUN, passed=True, checked=1, failed=0, sender=client)
    _mine(env, SEED_DELAY + 1)  # gas is estimated on the head
    models.draw(RUN, sender=mallory)
    with pytest.raises(ContractReverted, match="models: only the committer"):
        models.record_verification(RUN, passed=True, checked=1, failed=0, sender=mallory)
    with pytest.raises(ContractReverted, match="models: unknown run"):
        models.record_verification(_h("never"), passed=True, checked=1, failed=0, sender=client)
    record = models.training(RUN)
    assert record is not None and record.outcome == TrainingOutcome.NOT_VERIFIED


@pytest.mark.parametrize(
    ("passed", "checked", "failed", "reason"),
    [
        (True, 9, 0, "models: more checked than intervals"),
        (False, 2, 3, "models: more failed than checked"),
        (True, 2, 1, "models: a pass with failed intervals"),
    ],
)
def test_inconsistent_verifications_are_refused(
    env: Env, passed: bool, checked: int, failed: int, reason: str
) -> None:
    # Prepare: a run of 8 intervals
    models, client = _models(env), env.users[0]
    _drawn(env, client)

    # Execute / Assert
    with pytest.raises(ContractReverted) as caught:
        models.record_verification(
            RUN, passed=passed, checked=checked, failed=failed, sender=client
        )
    assert caught.value.reason == reason


def test_a_trained_model_copies_its_commitment_and_shows_the_outcome(env: Env) -> None:
    # Prepare: a committed, drawn, verified run; a base model to fine-tune
    models, client, trainer = _models(env), env.users[0], env.users[1]
    models.register(_h("base"), sender=trainer)
    _drawn(env, client)
    models.record_verification(RUN, passed=True, checked=2, failed=0, sender=client)

    # Execute
    result = models.register_trained(
        _h("trained"), run=RUN, trainer=trainer.address, parent=_h("base"), sender=client
    )

    # Assert: the commitment's hashes, the run and its outcome on the model's record
    record = models.model(_h("trained"))
    assert record is not None
    assert (record.spec_hash, record.data_hash, record.checkpoints_root) == (
        _h("spec"),
        _h("data"),
        _h("root"),
    )
    assert (record.trainer, record.registrant, record.run) == (
        trainer.address,
        client.address,
        RUN,
    )
    assert record.training is not None and record.training.model == _h("trained")
    assert record.outcome == TrainingOutcome.PASSED and record.training.checked == 2
    assert [r.model for r in models.lineage(_h("trained"))] == [_h("trained"), _h("base")]
    base = models.model(_h("base"))
    assert base is not None and base.run == bytes(32) and base.training is None
    assert base.outcome == TrainingOutcome.NOT_VERIFIED
    [event] = models._events("ModelRegistered", result)
    assert event["run"] == RUN and event["checkpoints_root"] == _h("root")
    env.conservation()  # the registry holds no tokens


def test_a_trained_model_is_registered_only_by_the_committer_once_per_run(env: Env) -> None:
    # Prepare
    models, client, mallory = _models(env), env.users[0], env.users[2]
    _commit(env, client)

    # Execute / Assert: mallory cannot claim the run's commitment for her model
    with pytest.raises(ContractReverted, match="models: only the committer"):
        models.register_trained(_h("forged"), run=RUN, trainer=mallory.address, sender=mallory)
    with pytest.raises(ContractReverted, match="models: unknown run"):
        models.register_trained(_h("x"), run=_h("never"), trainer=client.address, sender=client)
    models.register_trained(_h("trained"), run=RUN, trainer=client.address, sender=client)
    with pytest.raises(ContractReverted, match="models: run already registered"):
        models.register_trained(_h("other"), run=RUN, trainer=client.address, sender=client)
    assert models.model(_h("forged")) is None and models.model(_h("other")) is None
    unverified = models.model(_h("trained"))
    assert unverified is not None and unverified.outcome == TrainingOutcome.NOT_VERIFIED


def test_a_trained_model_cannot_take_an_existing_models_hash(env: Env) -> None:
    # Prepare: mallory registered the hash first, without a run
    models, client, mallory = _models(env), env.users[0], env.users[2]
    models.register(_h("trained"), spec_hash=_h("forged"), sender=mallory)
    _commit(env, client)

    # Execute / Assert: the first record stands, and the run stays free for another model
    with pytest.raises(ContractReverted, match="models: model already registered"):
        models.register_trained(_h("trained"), run=RUN, trainer=client.address, sender=client)
    record = models.training(RUN)
    assert record is not None and record.model == bytes(32)


def test_training_gas(env: Env) -> None:
    # Execute: one run through, each step's gas
    models, client = _models(env), env.users[0]
    commit = models.commit_training(
        RUN,
        spec_hash=_h("spec"),
        data_hash=_h("data"),
        checkpoints_root=_h("root"),
        intervals=8,
        sender=client,
    )
    _mine(env, SEED_DELAY + 1)  # gas is estimated on the head
    draw = models._send("draw", RUN, sender=client)
    verify = models.record_verification(RUN, passed=True, checked=2, failed=0, sender=client)
    trained = models.register_trained(_h("m"), run=RUN, trainer=client.address, sender=client)

    # Assert: a run's on-chain bookkeeping stays cheap (stored words dominate)
    gas = {
        "commitTraining": commit.gas_used,
        "draw": draw.gas_used,
        "recordVerification": verify.gas_used,
        "registerTrained": trained.gas_used,
    }
    print(gas)
    assert gas["commitTraining"] < 200_000 and gas["registerTrained"] < 250_000
    assert gas["draw"] < 60_000 and gas["recordVerification"] < 100_000
