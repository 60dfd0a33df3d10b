"""ModelRegistry: federated rounds in the lineage, each with the clients it aggregates."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from idlegrid import ContractReverted, InvalidInput
from idlegrid.chain import FederatedRunRecord, ModelRegistryClient, TxResult
from idlegrid.chain._clients import MAX_PARTICIPANTS, NOT_MEASURED
from idlegrid.protocol import Account, checksum

from ..conftest import Env

RUN = hashlib.sha256(b"federated run").digest()
ZERO = "0x" + "00" * 20


def _h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _models(env: Env) -> ModelRegistryClient:
    return env.ledger.client("models", ModelRegistryClient)


def _addresses(n: int, offset: int = 1) -> list[str]:
    """``n`` distinct made-up client addresses."""
    return [checksum("0x" + (offset + i).to_bytes(20, "big").hex()) for i in range(n)]


def _round(
    env: Env,
    round: int,
    participants: Sequence[str],
    *,
    sender: Account,
    run: bytes = RUN,
    parent: bytes | None = None,
) -> TxResult:
    """Register round ``round``'s model (``_h(f"round {round}")``) of ``run``."""
    return _models(env).register_round(
        _h(f"round {round}"),
        run,
        round,
        spec_hash=_h("fl spec"),
        data_hash=_h("validation set"),
        parent=parent,
        participants=participants,
        sender=sender,
    )


def _raw_round(
    env: Env, round: int, participants: Sequence[str], *, sender: Account, parent: bytes = bytes(32)
) -> TxResult:
    """Send ``registerRound`` around the client's local checks."""
    return _models(env)._send(
        "registerRound",
        _h(f"round {round}"),
        RUN,
        round,
        _h("fl spec"),
        _h("validation set"),
        parent,
        list(participants),
        NOT_MEASURED,
        NOT_MEASURED,
        sender=sender,
    )


def test_a_three_round_run_is_a_lineage_with_its_participants(env: Env) -> None:
    # Prepare: an initial model, three rounds with different clients
    models, sponsor, coordinator = _models(env), env.users[0], env.users[1]
    models.register(_h("initial"), spec_hash=_h("fl spec"), sender=sponsor)
    clients = [u.address for u in env.users[2:7]]
    joined = [clients[:3], clients[1:5], [clients[4], clients[0]]]

    # Execute: round 1 starts from the initial model, each later round from the one before
    results, parent = [], _h("initial")
    for number, participants in enumerate(joined, start=1):
        results.append(_round(env, number, participants, sender=coordinator, parent=parent))
        parent = _h(f"round {number}")

    # Assert: three records linked by parent, each naming the run and the coordinator
    chain = models.lineage(_h("round 3"))
    assert [r.model for r in chain] == [_h(f"round {n}") for n in (3, 2, 1)] + [_h("initial")]
    for record in chain[:3]:
        assert (record.run, record.trainer, record.registrant) == (
            RUN,
            coordinator.address,
            coordinator.address,
        )
        assert (record.spec_hash, record.data_hash) == (_h("fl spec"), _h("validation set"))
        assert record.checkpoints_root == bytes(32) and record.training is None
    for number, participants in enumerate(joined, start=1):
        assert models.participants(_h(f"round {number}")) == participants
        assert models.round_model(RUN, number) == _h(f"round {number}")
    assert models.participants(_h("initial")) == []
    assert models.round_model(RUN, 4) is None and models.round_model(_h("other"), 1) is None
    assert models.federated_run(RUN) == FederatedRunRecord(
        run=RUN, coordinator=coordinator.address, rounds=3, last_round=3, last_model=_h("round 3")
    )
    assert models.federated_run(_h("never")) is None
    assert models.training(RUN) is None and models.count() == 4
    # one RoundRegistered and one ModelRegistered event a round
    for number, (result, participants) in enumerate(zip(results, joined, strict=True), start=1):
        assert models._events("RoundRegistered", result) == [
            {
                "run": RUN,
                "round": number,
                "model": _h(f"round {number}"),
                "coordinator": coordinator.address,
                "participants": participants,
                "accuracy": NOT_MEASURED,
                "epsilon_spent": NOT_MEASURED,
            }
        ]
        [registered] = models._events("ModelRegistered", result)
        assert registered["run"] == RUN and registered["trainer"] == coordinator.address
    logged = models.logs("RoundRegistered", results[0].block, results[-1].block, run=RUN)
    assert [args["round"] for _, args in logged] == [1, 2, 3]
    env.conservation()  # the registry holds no tokens


def test_rounds_may_skip_numbers_but_never_go_back(env: Env) -> None:
    # Prepare
    models, coordinator = _models(env), env.users[1]
    clients = _addresses(3)
    _round(env, 2, clients, sender=coordinator)

    # Execute / Assert: neither the same round again nor an earlier one; a later one is fine
    for number in (2, 1):
        with pytest.raises(ContractReverted) as caught:
            _round(env, number, clients, sender=coordinator, parent=_h("round 2"))
        assert caught.value.reason == "models: round not after the last"
    _round(env, 5, clients, sender=coordinator, parent=_h("round 2"))
    run = models.federated_run(RUN)
    assert run is not None and (run.rounds, run.last_round) == (2, 5)
    assert models.round_model(RUN, 1) is None and models.round_model(RUN, 5) == _h("round 5")


def test_only_the_coordinator_registers_later_rounds(env: Env) -> None:
    # Prepare: the first round's sender is the coordinator
    models, coordinator, mallory = _models(env), env.users[1], env.users[2]
    _round(env, 1, _addresses(2), sender=coordinator)

    # Execute / Assert: mallory cannot add a round (and so cannot name herself)
    with pytest.raises(ContractReverted) as caught:
        _round(env, 2, [mallory.address], sender=mallory, parent=_h("round 1"))
    assert caught.value.reason == "models: only the run's coordinator"
    assert models.model(_h("round 2")) is None and models.participants(_h("round 2")) == []
    run = models.federated_run(RUN)
    assert run is not None and (run.coordinator, run.rounds) == (coordinator.address, 1)


def test_a_later_round_starts_from_the_runs_last_model(env: Env) -> None:
    # Prepare: round 1 and an unrelated registered model
    models, coordinator = _models(env), env.users[1]
    models.register(_h("elsewhere"), sender=coordinator)
    _round(env, 1, _addresses(2), sender=coordinator)

    # Execute / Assert: round 2 cannot fork from another model or have none
    for parent in (_h("elsewhere"), None):
        with pytest.raises(ContractReverted) as caught:
            _round(env, 2, _addresses(2), sender=coordinator, parent=parent)
        assert caught.value.reason == "models: parent not the run's last model"
    _round(env, 2, _addresses(2), sender=coordinator, parent=_h("round 1"))
    assert models.model(_h("round 2")) is not None


def test_a_round_cannot_take_a_registered_models_hash(env: Env) -> None:
    # Prepare: mallory registered round 1's hash first
    models, coordinator, mallory = _models(env), env.users[1], env.users[2]
    models.register(_h("round 1"), spec_hash=_h("forged"), sender=mallory)

    # Execute / Assert: the first record stands and the run does not start
    with pytest.raises(ContractReverted, match="models: model already registered"):
        _round(env, 1, _addresses(2), sender=coordinator)
    assert models.federated_run(RUN) is None and models.participants(_h("round 1")) == []


@pytest.mark.parametrize(
    ("participants", "reason"),
    [
        ([], "1 to 128 participants, got 0"),
        (_addresses(MAX_PARTICIPANTS + 1), "1 to 128 participants, got 129"),
        ([*_addresses(3), _addresses(1)[0]], "participants named more than once"),
        ([_addresses(1)[0].lower(), _addresses(1)[0]], "participants named more than once"),
        ([*_addresses(2), ZERO], "the zero address cannot be a participant"),
        (["0x1234"], "not an Ethereum address"),
    ],
)
def test_the_client_refuses_bad_participants_before_sending(
    env: Env, participants: list[str], reason: str
) -> None:
    # Execute / Assert: refused locally, nothing mined
    block = env.backend.w3.eth.block_number
    with pytest.raises(InvalidInput, match=reason):
        _round(env, 1, participants, sender=env.users[1])
    assert env.backend.w3.eth.block_number == block


def test_the_client_refuses_round_zero(env: Env) -> None:
    with pytest.raises(InvalidInput, match="rounds are numbered from 1"):
        _round(env, 0, _addresses(1), sender=env.users[1])


@pytest.mark.parametrize(
    ("round", "participants", "reason"),
    [
        (1, [], "models: no participants"),
        (1, [*_addresses(3), _addresses(1)[0]], "models: repeated participant"),
        (1, [*_addresses(2), ZERO], "models: zero participant"),
        (0, _addresses(1), "models: round not after the last"),
    ],
)
def test_the_contract_refuses_bad_rounds_sent_around_the_client(
    env: Env, round: int, participants: list[str], reason: str
) -> None:
    # Execute / Assert
    models = _models(env)
    with pytest.raises(ContractReverted) as caught:
        _raw_round(env, round, participants, sender=env.users[1])
    assert caught.value.reason == reason
    assert models.federated_run(RUN) is None and models.count() == 0


def test_the_contract_refuses_more_than_max_participants(env: Env) -> None:
    # Prepare: the bound is the contract's own
    models = _models(env)
    assert int(models._call("MAX_PARTICIPANTS")) == MAX_PARTICIPANTS

    # Execute / Assert: 129 fail the ABI decoding (no reason); 128 are accepted
    with pytest.raises(ContractReverted):
        _raw_round(env, 1, _addresses(MAX_PARTICIPANTS + 1), sender=env.users[1])
    assert models.federated_run(RUN) is None
    _raw_round(env, 1, _addresses(MAX_PARTICIPANTS), sender=env.users[1])
    assert models.participants(_h("round 1")) == _addresses(MAX_PARTICIPANTS)


def test_a_federated_run_id_is_not_a_training_run_id(env: Env) -> None:
    # Prepare: a federated run and a training run
    models, coordinator, committer = _models(env), env.users[1], env.users[2]
    _round(env, 1, _addresses(2), sender=coordinator)
    models.commit_training(
        _h("training"),
        spec_hash=_h("spec"),
        data_hash=_h("data"),
        checkpoints_root=_h("root"),
        intervals=4,
        sender=committer,
    )

    # Execute / Assert: neither id can be taken by the other kind of run, by anyone
    for who in (coordinator, committer):
        with pytest.raises(ContractReverted) as caught:
            models.commit_training(
                RUN,
                spec_hash=_h("spec"),
                data_hash=_h("data"),
                checkpoints_root=_h("root"),
                intervals=4,
                sender=who,
            )
        assert caught.value.reason == "models: run id used by a federated run"
        with pytest.raises(ContractReverted) as caught:
            _round(env, 1, _addresses(2), sender=who, run=_h("training"))
        assert caught.value.reason == "models: run id used by a training run"
    # nor can the federated run's id carry a trained model
    with pytest.raises(ContractReverted, match="models: unknown run"):
        models.register_trained(_h("m"), run=RUN, trainer=coordinator.address, sender=coordinator)
    assert models.training(RUN) is None and models.federated_run(_h("training")) is None
    with pytest.raises(ContractReverted) as caught:
        _round(env, 1, _addresses(2), sender=coordinator, run=bytes(32))
    assert caught.value.reason == "models: zero run id"


def test_register_round_gas(env: Env) -> None:
    # Execute: a first and a later round with 10 participants, one round with the most
    coordinator = env.users[1]
    first = _round(env, 1, _addresses(10), sender=coordinator)
    later = _round(env, 2, _addresses(10, 100), sender=coordinator, parent=_h("round 1"))
    most = _round(env, 3, _addresses(MAX_PARTICIPANTS), sender=coordinator, run=_h("big"))

    # Assert: a stored word a participant dominates (20k gas a fresh slot)
    gas = {"first round, 10": first.gas_used, "later round, 10": later.gas_used}
    gas["first round, 128"] = most.gas_used
    print(gas)
    assert gas["first round, 10"] < 600_000 and gas["later round, 10"] < 600_000
    assert gas["first round, 128"] < 4_000_000


# -- a stateful check: random rounds against a model of the contract's rules -------------

# About 100 steps a backend (py-evm estimates gas by binary search: a few sends a
# second). Derandomized, so every run tries the same examples.
SETTINGS = settings(
    max_examples=8,
    stateful_step_count=12,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow],
)
RUNS = [_h("run a"), _h("run b"), _h("a training run")]  # the last is committed for training
POOL = [*_addresses(3), ZERO]  # participants drawn from here, repeats allowed
_CLEAN = st.lists(st.sampled_from(POOL[:3]), min_size=1, max_size=3, unique=True)


@dataclass
class _Run:
    coordinator: str
    rounds: int = 0
    last_round: int = 0
    last_model: bytes = bytes(32)


class RoundsMachine(RuleBasedStateMachine):
    """Raw ``registerRound`` calls (around the client's checks) from three senders on two
    federated runs and one training run's id; a Python model says which must revert, and
    with which reason, and the registry's runs, rounds and participants must equal it."""

    env: ClassVar[Env]

    def __init__(self) -> None:
        super().__init__()
        self.snapshot = self.env.backend.snapshot()
        self.models = _models(self.env)
        self.senders = self.env.users[:3]
        self.runs: dict[bytes, _Run] = {}
        self.registered = {_h("initial")}
        self.rounds: dict[tuple[bytes, int], tuple[bytes, list[str]]] = {}
        self.made = 0

    def teardown(self) -> None:
        try:
            # no later call, failed or not, changed a registered round
            for run, number in self.rounds:
                self._check_round(run, number)
        finally:
            self.env.backend.revert(self.snapshot)

    def _reason(
        self, who: str, run: bytes, number: int, model: bytes, parent: bytes, named: list[str]
    ) -> str | None:
        state = self.runs.get(run)
        if run == RUNS[-1]:
            return "models: run id used by a training run"
        if state is not None and who != state.coordinator:
            return "models: only the run's coordinator"
        if state is not None and parent != state.last_model:
            return "models: parent not the run's last model"
        if number <= (state.last_round if state else 0):
            return "models: round not after the last"
        if not named:
            return "models: no participants"
        for i, participant in enumerate(named):
            if participant == ZERO:
                return "models: zero participant"
            if participant in named[:i]:
                return "models: repeated participant"
        if model in self.registered:
            return "models: model already registered"
        if parent != bytes(32) and parent not in self.registered:
            return "models: parent not registered"
        return None

    # weighted towards calls that can succeed, so that runs grow several rounds long
    @rule(
        sender=st.sampled_from([0, 0, 0, 0, 1, 2]),
        run=st.sampled_from([*RUNS[:2], *RUNS]),
        step=st.sampled_from([1, 1, 1, 2, 0, -1]),
        reuse=st.sampled_from([False] * 5 + [True]),
        parent=st.sampled_from(["last"] * 4 + ["zero", "initial", "unknown"]),
        named=st.one_of(*[_CLEAN] * 3, st.lists(st.sampled_from(POOL), max_size=4)),
    )
    def register_round(
        self, sender: int, run: bytes, step: int, reuse: bool, parent: str, named: list[str]
    ) -> None:
        state = self.runs.get(run)
        number = (state.last_round if state else 0) + step
        if reuse and self.registered:
            model = sorted(self.registered)[0]
        else:
            self.made += 1
            model = _h(f"model {self.made}")
        parents = {"zero": bytes(32), "initial": _h("initial"), "unknown": _h("unknown")}
        parent_hash = (
            state.last_model if state and parent == "last" else parents.get(parent, bytes(32))
        )
        who = self.senders[sender]
        reason = self._reason(who.address, run, number, model, parent_hash, named)
        call = (
            model, run, max(number, 0), _h("fl spec"), _h("validation set"), parent_hash, named,
            NOT_MEASURED, NOT_MEASURED,
        )  # fmt: skip
        if reason is not None:
            with pytest.raises(ContractReverted) as caught:
                self.models._send("registerRound", *call, sender=who)
            assert caught.value.reason == reason
            return
        self.models._send("registerRound", *call, sender=who)
        if state is None:
            state = self.runs[run] = _Run(who.address)
        state.rounds, state.last_round, state.last_model = state.rounds + 1, number, model
        self.registered.add(model)
        self.rounds[(run, number)] = (model, named)
        self._check_round(run, number)

    @invariant()
    def the_runs_equal_the_model(self) -> None:
        for run in RUNS[:2]:
            state = self.runs.get(run)
            expected = state and FederatedRunRecord(run, **vars(state))
            assert self.models.federated_run(run) == expected

    def _check_round(self, run: bytes, number: int) -> None:
        model, named = self.rounds[(run, number)]
        assert self.models.round_model(run, number) == model
        assert self.models.participants(model) == named
        record = self.models.model(model)
        assert record is not None and record.run == run


def test_random_rounds_follow_the_rules(session_env: Env) -> None:
    """Random rounds keep every run's record, round models and participants as modelled."""
    env = session_env
    outer = env.backend.snapshot()
    # Reads name a sender: eth-tester otherwise looks up its account list on every call.
    w3 = env.backend.w3
    default_account = w3.eth.default_account
    w3.eth.default_account = w3.to_checksum_address(env.owner.address)
    try:
        models = _models(env)
        models.register(_h("initial"), sender=env.owner)
        models.commit_training(
            RUNS[-1],
            spec_hash=_h("spec"),
            data_hash=_h("data"),
            checkpoints_root=_h("root"),
            intervals=4,
            sender=env.owner,
        )
        machine = type("Machine", (RoundsMachine,), {"env": env})
        run_state_machine_as_test(machine, settings=SETTINGS)
    finally:
        w3.eth.default_account = default_account
        env.backend.revert(outer)


def test_a_round_records_the_coordinator_s_accuracy_and_epsilon(env: Env) -> None:
    # Prepare
    coordinator, a, b = env.users[:3]
    models = _models(env)

    # Execute
    result = models.register_round(
        _h("round 1"), RUN, 1, spec_hash=_h("fl spec"), data_hash=_h("validation set"),
        parent=None, participants=[a.address, b.address], sender=coordinator,
        accuracy=0.9639, epsilon=2.5,
    )  # fmt: skip
    with pytest.raises(InvalidInput, match="accuracy"):
        models.register_round(
            _h("round 2"), RUN, 2, spec_hash=_h("fl spec"), data_hash=_h("validation set"),
            parent=_h("round 1"), participants=[a.address], sender=coordinator, accuracy=1.5,
        )  # fmt: skip
    with pytest.raises(ContractReverted, match="accuracy over 1"):
        models._send(
            "registerRound", _h("round 2"), RUN, 2, _h("fl spec"), _h("validation set"),
            _h("round 1"), [a.address], 1_000_001, NOT_MEASURED, sender=coordinator,
        )  # fmt: skip

    # Assert: in millionths, on the round's event
    [event] = models._events("RoundRegistered", result)
    assert (event["accuracy"], event["epsilon_spent"]) == (963_900, 2_500_000)
    assert models.federated_run(RUN) is not None
