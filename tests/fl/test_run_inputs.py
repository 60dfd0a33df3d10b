"""A run's settlement inputs (``payout: run``): every clear round's inputs in one file,
each client's contributions netted over the rounds, and the same strangers' files a
round's inputs refuse, refused here with a reason."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from idlegrid import InvalidInput, PayloadTooLarge
from idlegrid.fl import RoundInputs, RunInputs, read_round_inputs
from idlegrid.fl._contrib import split_reward, validation_value
from idlegrid.fl._inputs import _npy
from idlegrid.workloads._train_models import MlpModel, param_count

from ._npz import address as _address
from ._npz import members as _members
from ._npz import tamper as _tamper

MODEL = MlpModel(family="mlp", inputs=8, hidden=(4,), classes=3)
P = param_count(MODEL)
RUN = bytes(range(32))
BUDGET = 7 * 10**18


def _round(rnd: int, clients: list[int], *, seed: int, run: bytes = RUN) -> RoundInputs:
    """Round ``rnd`` of ``clients``' noisy steps from a random model, on one validation
    set (the same for every round)."""
    rng = np.random.default_rng(seed)
    start = rng.normal(size=P).astype(np.float32)
    val = np.random.default_rng(99)
    x_val = val.random((30, MODEL.inputs), dtype=np.float32)
    y_val = val.integers(0, MODEL.classes, 30)
    # each client a step up the validation score's gradient, with its own noise
    grad = validation_value(MODEL, x_val, y_val).path_gradient(start, np.zeros(P), 1)
    up = 0.3 * grad / np.linalg.norm(grad)
    return RoundInputs(
        run=run,
        round=rnd,
        model=MODEL,
        params=start,
        updates={
            _address(i): (start + up + 0.05 * rng.normal(size=P)).astype(np.float32)
            for i in clients
        },
        examples={_address(i): 10 + i for i in clients},
        previous_step=None,
        x_val=x_val,
        y_val=y_val,
        nodes=8,
        part=BUDGET // 3,
    )


def _run(**over: Any) -> RunInputs:
    kw: dict[str, Any] = {
        "run": RUN,
        "rounds": [_round(1, [0, 1, 2], seed=1), _round(2, [1, 2, 3], seed=2),
                   _round(4, [0, 3], seed=3)],
        "part": BUDGET,
        **over,
    }  # fmt: skip
    return RunInputs(**kw)


# -- the recomputation and the file -----------------------------------------------------


def test_a_settlement_nets_each_clients_contributions_over_the_rounds() -> None:
    inputs = _run()

    # Execute
    netted, amounts = inputs.contributions(), inputs.amounts()

    # Assert: each round's values as fractions of their total absolute value, summed per
    # client (a client absent from a round adds nothing for it), the budget split by the
    # positive sums, never more than the budget
    want: dict[str, float] = {}
    for r in inputs.rounds:
        values = r.contributions()
        scale = math.fsum(abs(v) for v in values.values())  # exactly, as paid
        for who, v in values.items():
            want[who] = want.get(who, 0.0) + v / scale
    assert netted == pytest.approx(want) and set(netted) == {_address(i) for i in range(4)}
    assert amounts == split_reward(BUDGET, want)
    assert 0 < sum(amounts.values()) <= BUDGET
    assert inputs.round == 4 and inputs.data_hash == inputs.rounds[0].data_hash


def test_a_client_whose_rounds_cancel_out_is_paid_nothing() -> None:
    # Prepare: client 1 helps one round about as much as it hurts the next (the same
    # start, its step the other way)
    base = _round(1, [0, 1], seed=5)
    start, step = base.params, base.updates[_address(1)] - base.params
    if base.contributions()[_address(1)] < 0:
        step = -step

    def with_step(rnd: int, s: np.ndarray) -> RoundInputs:
        return RoundInputs(
            run=RUN, round=rnd, model=MODEL, params=start,
            updates={_address(0): base.updates[_address(0)], _address(1): start + s},
            examples=base.examples, previous_step=None, x_val=base.x_val, y_val=base.y_val,
            nodes=8, part=base.part,
        )  # fmt: skip

    first, second = with_step(1, step), with_step(2, -step)
    per_round = []  # client 1's signed fraction of each round's absolute total
    for r in (first, second):
        values = r.contributions()
        per_round.append(values[_address(1)] / sum(abs(v) for v in values.values()))

    # Execute
    inputs = RunInputs(run=RUN, rounds=[first, second], part=BUDGET)

    # Assert: paid a round would have paid it for round 1; netted, what it gave is
    # about what it took
    assert per_round[0] * per_round[1] < 0
    assert first.amounts().get(_address(1), 0) > 0
    netted = inputs.contributions()[_address(1)]
    assert abs(netted) < 0.5 * max(abs(v) for v in per_round)


def test_the_inputs_come_back_from_their_bytes_byte_for_byte() -> None:
    inputs = _run()

    # Execute
    blob = inputs.to_bytes()
    back = RunInputs.from_bytes(blob)
    read = read_round_inputs(blob)

    # Assert: the same settlement, the same bytes, read by the format it names
    assert isinstance(read, RunInputs)
    assert back.to_bytes() == blob and back.sha256 == inputs.sha256
    assert back.amounts() == inputs.amounts() and read.amounts() == inputs.amounts()
    assert [r.round for r in back.rounds] == [1, 2, 4] and back.part == BUDGET
    assert sorted(_members(blob)) == [
        "meta.npy", "round-00001.npy", "round-00002.npy", "round-00004.npy",
    ]  # fmt: skip


def test_a_posting_that_pays_a_stranger_or_skews_the_split_is_caught() -> None:
    inputs = _run()
    amounts = inputs.amounts()
    first, *_ = amounts
    assert len(amounts) >= 2

    # Execute / Assert: right; everything to one; a stranger paid a little
    assert inputs.check(amounts) is None
    assert "the recomputation gives" in (inputs.check({first: sum(amounts.values())}) or "")
    stranger = _address(40)
    assert "took part in none" in (inputs.check({**amounts, stranger: 1}) or "")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"rounds": []}, "0 rounds"),
        ({"part": -1}, "part -1"),
        ({"run": b"x" * 31}, "32 bytes"),
        ({"rounds": [_round(2, [0], seed=1), _round(1, [0], seed=2)]}, "ascending"),
        ({"rounds": [_round(1, [0], seed=1), _round(2, [0], seed=2, run=bytes(32))]},
         "another run"),
    ],
)  # fmt: skip
def test_a_settlement_that_does_not_add_up_is_refused(change: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        _run(**change)


def test_rounds_on_another_model_or_validation_set_are_refused() -> None:
    other = MlpModel(family="mlp", inputs=8, hidden=(5,), classes=3)
    base = _round(1, [0, 1], seed=1)
    rng = np.random.default_rng(3)
    start = rng.normal(size=param_count(other)).astype(np.float32)
    foreign = RoundInputs(
        run=RUN, round=2, model=other, params=start, updates={_address(0): start + 0.1},
        examples={_address(0): 3}, previous_step=None, x_val=base.x_val, y_val=base.y_val,
        nodes=8, part=1,
    )  # fmt: skip
    moved = RoundInputs(
        run=RUN, round=2, model=MODEL, params=base.params, updates=dict(base.updates),
        examples=dict(base.examples), previous_step=None, x_val=base.x_val + 1,
        y_val=base.y_val, nodes=8, part=1,
    )  # fmt: skip

    with pytest.raises(InvalidInput, match="model is not round 1's"):
        RunInputs(run=RUN, rounds=[base, foreign], part=1)
    with pytest.raises(InvalidInput, match="validation set is not round 1's"):
        RunInputs(run=RUN, rounds=[base, moved], part=1)


# -- a stranger's file ------------------------------------------------------------------


def _with_member(blob: bytes, name: str, raw: bytes) -> bytes:
    from idlegrid.fl._inputs import _zip

    members = _members(blob)
    members[name] = raw
    return _zip(members)


def _without(blob: bytes, name: str) -> bytes:
    from idlegrid.fl._inputs import _zip

    members = _members(blob)
    del members[name]
    return _zip(members)


def _inner(rnd: RoundInputs) -> bytes:
    return _npy(np.frombuffer(rnd.to_bytes(), np.uint8))


HOSTILE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "a round named and missing": (lambda b: _without(b, "round-00002.npy"), "one per round"),
    "a round present and not named": (
        lambda b: _tamper(b, lambda d: d.update(rounds=[1, 4], round=4)),
        "one per round",
    ),
    "a foreign member": (lambda b: _with_member(b, "evil.npy", b"x"), "members"),
    "a member that is not a round's name": (
        lambda b: _with_member(b, "round-1.npy", b"x"), "members",
    ),
    "rounds not a list": (lambda b: _tamper(b, lambda d: d.update(rounds="1,2,4")), "rounds"),
    "a round number as a string": (
        lambda b: _tamper(b, lambda d: d.update(rounds=[1, 2, "4"])), "round numbers",
    ),
    "a round named twice": (
        lambda b: _tamper(b, lambda d: d.update(rounds=[1, 2, 4, 4])), "one per round",
    ),
    "the last round not the posting's": (
        lambda b: _tamper(b, lambda d: d.update(round=3)), "not at round 3",
    ),
    # (meta None: a member's name is no identifier, so the members come as **{name: ...})
    "a round's file swapped for another run's": (
        lambda b: _tamper(b, None, **{"round-00002": np.frombuffer(
            _round(2, [0], seed=2, run=bytes(32)).to_bytes(), np.uint8)}),
        "another run",
    ),
    "a round's file that is not inputs": (
        lambda b: _tamper(b, None, **{"round-00002": np.frombuffer(b"PK garbage", np.uint8)}),
        "not a zip",
    ),
    "a round's file as floats": (
        lambda b: _tamper(b, None, **{"round-00002": np.zeros(4, np.float32)}), "dtype",
    ),
    "a round's file numbered as another": (
        lambda b: _with_member(_without(b, "round-00002.npy"), "round-00002.npy",
                               _inner(_round(3, [1], seed=2))),
        "holds round 3's",
    ),
    "the model differs from the rounds'": (
        lambda b: _tamper(b, lambda d: d["model"].update(hidden=[5])), "model",
    ),
    "a negative part": (lambda b: _tamper(b, lambda d: d.update(part=-5)), "part -5"),
    "another format": (lambda b: _tamper(b, lambda d: d.update(format="x/1")), "format"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_settlement_file_is_refused_with_a_reason(case: str) -> None:
    make, why = HOSTILE[case]
    blob = make(_run().to_bytes())

    with pytest.raises(InvalidInput, match=why):
        RunInputs.from_bytes(blob)


def test_too_many_members_and_too_many_bytes_are_refused_before_reading() -> None:
    blob = _run().to_bytes()

    with pytest.raises(PayloadTooLarge):
        RunInputs.from_bytes(blob, max_bytes=len(blob) - 1)
    with pytest.raises(PayloadTooLarge):
        read_round_inputs(blob, max_bytes=100)
