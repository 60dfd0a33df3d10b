"""ModelRegistry: a model's lineage, registered once, read back with its ancestors."""

from __future__ import annotations

import hashlib

import pytest

from idlegrid import ContractReverted
from idlegrid.chain import ModelRegistryClient

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
