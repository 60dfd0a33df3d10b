"""A secure round's published inputs: its run's secure history (cohorts, the models
before and after each round), from which anyone recomputes the group fit and the
posting; the same bytes for the same history, a stranger's file refused with a reason,
and either kind of inputs read by the format it names."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from idlegrid import InvalidInput, PayloadTooLarge
from idlegrid.fl import RoundInputs, SecureRoundInputs, read_round_inputs
from idlegrid.fl._contrib import group_contributions, split_reward, validation_value
from idlegrid.fl._inputs import _npy, _zip
from idlegrid.workloads._train_models import MlpModel, param_count

from ._npz import address as _address
from ._npz import members as _members
from ._npz import tamper as _tamper

MODEL = MlpModel(family="mlp", inputs=8, hidden=(4,), classes=3)
P = param_count(MODEL)
PART = 5 * 10**18


def _history(
    rounds: int = 4, clients: int = 5, *, noised: bool = False, seed: int = 0
) -> list[tuple[int, list[str], np.ndarray, np.ndarray]]:
    """``rounds`` secure rounds of random cohorts of 3 of ``clients``, each a random step;
    ``noised``: each next round starts from its aggregate plus noise (as under DP)."""
    rng = np.random.default_rng(seed)
    params = rng.normal(size=P).astype(np.float32)
    out = []
    for rnd in range(1, rounds + 1):
        cohort = [_address(int(i)) for i in rng.choice(clients, 3, replace=False)]
        after = (params + 0.2 * rng.normal(size=P)).astype(np.float32)
        out.append((rnd, cohort, params, after))
        params = after + (rng.normal(size=P).astype(np.float32) if noised else 0)
    return out


def _inputs(**over: Any) -> SecureRoundInputs:
    rng = np.random.default_rng(1)
    kw: dict[str, Any] = {
        "run": bytes(range(32)),
        "model": MODEL,
        "history": _history(),
        "x_val": rng.random((40, MODEL.inputs), dtype=np.float32),
        "y_val": rng.integers(0, MODEL.classes, 40),
        "part": PART,
        **over,
    }
    return SecureRoundInputs.from_history(**kw)


def _array(blob: bytes, name: str) -> np.ndarray:
    array: np.ndarray = np.load(io.BytesIO(_members(blob)[f"{name}.npy"]), allow_pickle=False)
    return array


# -- the file and the recomputation ---------------------------------------------------


def test_the_inputs_come_back_from_their_bytes_and_store_each_model_once() -> None:
    # Prepare: a history without DP (each round starts at the previous aggregate) and
    # one with (each starts elsewhere)
    plain, noised = _inputs(), _inputs(history=_history(noised=True))

    # Execute
    back = SecureRoundInputs.from_bytes(plain.to_bytes())

    # Assert: every field; 4 rounds name 5 models without DP, 8 with
    assert (back.run, back.round, back.model, back.part) == (plain.run, 4, MODEL, PART)
    assert back.clients == plain.clients == tuple(sorted(plain.clients, key=lambda a: int(a, 16)))
    for name in ("models", "steps", "cohorts", "x_val", "y_val"):
        assert np.array_equal(getattr(back, name), getattr(plain, name))
    assert back.to_bytes() == plain.to_bytes() and back.sha256 == plain.sha256
    assert back.data_hash == plain.data_hash
    assert len(plain.models) == 5 and len(noised.models) == 8
    assert np.load(io.BytesIO(plain.to_bytes()), allow_pickle=False)["steps"].shape == (4, 3)


def test_the_same_history_gives_the_same_bytes_whatever_the_cohorts_order() -> None:
    history = _history()
    shuffled = [(n, list(reversed(c)), b, a) for n, c, b, a in history]
    assert _inputs(history=history).to_bytes() == _inputs(history=shuffled).to_bytes()


def test_the_amounts_are_the_group_fit_of_the_history_s_gains() -> None:
    # Prepare: what the coordinator fits, computed here directly from the history
    history = _history(rounds=6)
    inputs = _inputs(history=history)
    value = validation_value(MODEL, inputs.x_val, inputs.y_val)
    gains = [float(value(a)) - float(value(b)) for _, _, b, a in history]
    direct = group_contributions([(c, g) for (_, c, _, _), g in zip(history, gains, strict=True)])
    last = history[-1][1]

    # Execute: the referee's recomputation from the published bytes
    got = read_round_inputs(inputs.to_bytes())

    # Assert: the gains, the last cohort's fitted values, their split of the part
    assert isinstance(got, SecureRoundInputs)
    assert got.gains() == gains
    assert got.contributions() == {a: direct[a] for a in last}
    assert sorted(got.cohort) == sorted(last)
    amounts = got.amounts()
    assert amounts == split_reward(PART, {a: direct[a] for a in last})
    assert amounts and sum(amounts.values()) <= PART and set(amounts) <= set(last)
    assert got.check(amounts) is None


def test_a_posting_that_pays_outside_the_round_s_cohort_or_skews_it_is_wrong() -> None:
    inputs = _inputs()
    amounts = inputs.amounts()
    outsider = next(a for a in inputs.clients if a not in inputs.cohort)
    first = next(iter(amounts))
    shifted = {**amounts, first: amounts[first] - 1, outsider: 1}  # within the tolerance
    assert inputs.check(shifted) == (f"{outsider} is paid and was not in round 4's cohort")
    other = next(a for a in inputs.cohort if a != first)
    half = amounts[first] // 2
    skewed = {**amounts, first: amounts[first] - half, other: amounts.get(other, 0) + half}
    assert "the recomputation gives" in (inputs.check(skewed) or "")


def test_either_kind_of_inputs_is_read_by_the_format_it_names() -> None:
    # Prepare: a clear round's inputs
    rng = np.random.default_rng(2)
    start = rng.normal(size=P).astype(np.float32)
    clear = RoundInputs(
        run=bytes(32), round=1, model=MODEL, params=start,
        updates={_address(0): start + 0.1}, examples={_address(0): 5}, previous_step=None,
        x_val=rng.random((10, 8), dtype=np.float32), y_val=rng.integers(0, 3, 10),
        nodes=4, part=PART,
    )  # fmt: skip
    secure = _inputs()

    # Execute / Assert: each reader takes its own format and refuses the other by name
    assert isinstance(read_round_inputs(clear.to_bytes()), RoundInputs)
    assert isinstance(read_round_inputs(secure.to_bytes()), SecureRoundInputs)
    with pytest.raises(InvalidInput, match=r"members .*models\.npy"):
        RoundInputs.from_bytes(secure.to_bytes())
    with pytest.raises(InvalidInput, match=r"members .*updates\.npy"):
        SecureRoundInputs.from_bytes(clear.to_bytes())
    other = _tamper(secure.to_bytes(), lambda d: d.update(format="idlegrid/x/9"))
    with pytest.raises(InvalidInput, match="'idlegrid/x/9', not"):
        read_round_inputs(other)
    with pytest.raises(PayloadTooLarge):
        read_round_inputs(secure.to_bytes(), max_bytes=100)


# -- a stranger's file ----------------------------------------------------------------


def _steps(blob: bytes, change: Callable[[np.ndarray], None]) -> bytes:
    steps = _array(blob, "steps").copy()
    change(steps)
    return _tamper(blob, steps=steps)


def _cohorts(blob: bytes, change: Callable[[np.ndarray], None]) -> bytes:
    cohorts = _array(blob, "cohorts").copy()
    change(cohorts)
    return _tamper(blob, cohorts=cohorts)


def _swap_clients(doc: dict[str, Any]) -> None:
    doc["clients"][0], doc["clients"][1] = doc["clients"][1], doc["clients"][0]


HOSTILE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "rounds out of order": (
        lambda b: _steps(b, lambda s: s.__setitem__((slice(None), 0), [1, 3, 2, 4])),
        "ascending order",
    ),
    "a history that ends elsewhere": (
        lambda b: _tamper(b, lambda d: d.update(round=9)),
        "ends at round 4, not 9",
    ),
    "a model index outside the models": (
        lambda b: _steps(b, lambda s: s.__setitem__((0, 2), 99)),
        "outside the 5 given",
    ),
    "a negative model index": (
        lambda b: _steps(b, lambda s: s.__setitem__((0, 1), -1)),
        "outside the 5 given",
    ),
    "steps of the wrong width": (
        lambda b: _tamper(b, steps=np.zeros((4, 2), np.int64)),
        r"steps is \[4, 2\]",
    ),
    "cohorts of the wrong shape": (
        lambda b: _tamper(b, cohorts=np.ones((3, 5), np.uint8)),
        r"cohorts is \[3, 5\]",
    ),
    "a cohort value of 2": (lambda b: _cohorts(b, lambda c: c.__setitem__((0, 0), 2)), "0s and 1s"),
    "an empty cohort": (lambda b: _cohorts(b, lambda c: c.__setitem__(1, 0)), "at least one"),
    "a client in no cohort": (
        lambda b: _cohorts(b, lambda c: c.__setitem__((slice(None), 0), 0)),
        "in no round's cohort",
    ),
    "cohorts as int64": (
        lambda b: _tamper(b, cohorts=_array(b, "cohorts").astype(np.int64)),
        "dtype int64",
    ),
    "clients out of order": (lambda b: _tamper(b, _swap_clients), "ascending address order"),
    "a lower-case client": (
        lambda b: _tamper(b, lambda d: d["clients"].__setitem__(0, d["clients"][0].lower())),
        "not a checksummed address",
    ),
    "a NaN in a model": (
        lambda b: _tamper(b, models=np.full((5, P), np.nan, np.float32)),
        "models has NaN",
    ),
    "models of another model": (
        lambda b: _tamper(b, models=np.zeros((5, P + 1), np.float32)),
        rf"models is \[5, {P + 1}\]",
    ),
    "a member of the clear kind": (
        lambda b: _zip({**_members(b), "updates.npy": _npy(np.zeros((1, P), np.float32))}),
        "members",
    ),
    "a missing member": (
        lambda b: _zip({k: v for k, v in _members(b).items() if k != "cohorts.npy"}),
        "no cohorts",
    ),
    "a negative part": (lambda b: _tamper(b, lambda d: d.update(part=-1)), "part -1"),
    "an extra meta key": (lambda b: _tamper(b, lambda d: d.update(nodes=8)), "JSON object of"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_file_is_refused_with_a_reason(case: str) -> None:
    make, reason = HOSTILE[case]
    blob = make(_inputs().to_bytes())
    with pytest.raises(InvalidInput, match=reason):
        read_round_inputs(blob)


def test_inputs_that_do_not_check_out_cannot_be_built() -> None:
    good = _inputs()
    with pytest.raises(InvalidInput, match="32 bytes"):
        replace(good, run=b"x")
    with pytest.raises(InvalidInput, match="at least one round"):
        _inputs(history=[])
    with pytest.raises(InvalidInput, match=r"not an Ethereum address|checksum"):
        _inputs(history=[(1, ["0xnope"], good.models[0], good.models[1])])
    many = [(1, [f"0x{i + 1:040x}" for i in range(1025)], good.models[0], good.models[1])]
    with pytest.raises(InvalidInput, match="1025 clients, not 1 to 1024"):
        _inputs(history=many)
