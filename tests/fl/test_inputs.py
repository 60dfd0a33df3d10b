"""A round's published inputs: the same bytes for the same inputs, the coordinator's
recomputation from them, a stranger's file refused with a reason before it costs much,
and a posting judged against the recomputation."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from idlegrid import InvalidInput, PayloadTooLarge
from idlegrid.fl import RoundInputs, check_posting
from idlegrid.fl._contrib import aumann_shapley, split_reward, validation_value
from idlegrid.fl._inputs import _npy, _zip
from idlegrid.workloads._train_models import MlpModel, param_count

from ._npz import address as _address
from ._npz import members as _members
from ._npz import tamper as _tamper

MODEL = MlpModel(family="mlp", inputs=8, hidden=(4,), classes=3)
PART = 3 * 10**18


def _synthetic(clients: int = 4, *, previous: bool = True, seed: int = 0) -> RoundInputs:
    """A round of ``clients`` noisy steps from a random model (no training)."""
    rng = np.random.default_rng(seed)
    p = param_count(MODEL)
    start = rng.normal(size=p).astype(np.float32)
    return RoundInputs(
        run=bytes(range(32)),
        round=2,
        model=MODEL,
        params=start,
        updates={
            _address(i): (start + 0.1 * rng.normal(size=p)).astype(np.float32)
            for i in range(clients)
        },
        examples={_address(i): 10 + i for i in range(clients)},
        previous_step=(0.01 * rng.normal(size=p)).astype(np.float32) if previous else None,
        x_val=rng.random((30, MODEL.inputs), dtype=np.float32),
        y_val=rng.integers(0, MODEL.classes, 30),
        nodes=8,
        part=PART,
    )


# -- the file -------------------------------------------------------------------------


def test_the_inputs_come_back_from_their_bytes() -> None:
    # Prepare
    inputs = _synthetic()

    # Execute
    blob = inputs.to_bytes()
    back = RoundInputs.from_bytes(blob)

    # Assert: every field, and numpy reads the file as a plain .npz
    assert (back.run, back.round, back.model, back.nodes, back.part) == (
        inputs.run, inputs.round, inputs.model, inputs.nodes, inputs.part
    )  # fmt: skip
    assert list(back.updates) == list(inputs.updates) and back.examples == inputs.examples
    for a in inputs.updates:
        assert np.array_equal(back.updates[a], inputs.updates[a])
    for name in ("params", "previous_step", "x_val", "y_val"):
        assert np.array_equal(getattr(back, name), getattr(inputs, name))
        assert getattr(back, name).dtype == getattr(inputs, name).dtype
    assert back.to_bytes() == blob and back.sha256 == inputs.sha256
    assert back.data_hash == inputs.data_hash
    npz = np.load(io.BytesIO(blob), allow_pickle=False)
    assert npz["updates"].shape == (4, param_count(MODEL))
    first = RoundInputs.from_bytes(_synthetic(previous=False).to_bytes())
    assert first.previous_step is None


def test_the_same_inputs_give_the_same_bytes_whatever_their_order() -> None:
    # Prepare: the same round twice, the second with its participants in reverse order
    one, two = _synthetic(), _synthetic()
    reverse = replace(two, updates=dict(reversed(list(two.updates.items()))))

    # Execute
    blobs = {one.to_bytes(), two.to_bytes(), reverse.to_bytes()}

    # Assert: one file; participants in ascending address order
    assert len(blobs) == 1
    order = list(reverse.updates)
    assert order == sorted(order, key=lambda a: int(a, 16))
    assert reverse.amounts() == one.amounts()


def test_the_amounts_are_the_split_of_the_round_s_contributions() -> None:
    # Prepare: one round of 4 digits clients trained from a shared start
    pytest.importorskip("torch")
    from idlegrid.fl import initial_params, local_fit
    from idlegrid.fl._partition import client_seed, digits_federated

    model = MlpModel(family="mlp", inputs=64, hidden=(16,), classes=10)
    data = digits_federated(4, 1.0, seed=0)
    start = initial_params(model, 0)
    updates, examples = {}, {}
    for i in range(4):
        x, y = data.client(i)
        fit = local_fit(model, start, x, y, epochs=1, batch=16, lr=0.3,
                        seed=client_seed(0, 1, i))  # fmt: skip
        updates[_address(i)], examples[_address(i)] = fit.params, fit.examples
    inputs = RoundInputs(
        run=bytes(32), round=1, model=model, params=start, updates=updates,
        examples=examples, previous_step=None, x_val=data.x_test, y_val=data.y_test,
        nodes=8, part=PART,
    )  # fmt: skip

    # Execute: the referee's recomputation from the published bytes
    got = RoundInputs.from_bytes(inputs.to_bytes())
    amounts = got.amounts()

    # Assert: aumann_shapley over the participants in ascending address order
    order = sorted(updates, key=lambda a: int(a, 16))
    direct = aumann_shapley(
        start,
        {i: updates[a] for i, a in enumerate(order)},
        {i: examples[a] for i, a in enumerate(order)},
        validation_value(model, data.x_test, data.y_test),
        nodes=8,
    )
    values = {order[i]: v for i, v in direct.values.items()}
    assert got.contributions() == values
    assert amounts == split_reward(PART, values) == inputs.amounts()
    assert amounts and sum(amounts.values()) <= PART
    assert got.check(amounts) is None


# -- a stranger's file ----------------------------------------------------------------


def _pickled() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _huge_header() -> bytes:
    """An .npy that says it holds 2 GiB of float32 and holds 16 bytes."""
    buf = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (2**29,)}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + bytes(16)


def _declared(blob: bytes, size: int) -> bytes:
    """``blob`` with its first member's sizes in the zip's directory set to ``size``."""
    at = blob.index(b"PK\x01\x02")
    return blob[: at + 20] + struct.pack("<2L", size, size) + blob[at + 28 :]


def _compressed(blob: bytes) -> bytes:
    """``blob``'s members deflated, the validation set a megabyte of zeros."""
    members = _members(blob)
    members["x_val.npy"] = _npy(np.zeros((2**15, MODEL.inputs), np.float32))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return buf.getvalue()


def _many(doc: dict[str, Any]) -> None:
    doc["clients"] = [_address(i) for i in range(129)]
    doc["examples"] = [1] * 129


P = param_count(MODEL)
HOSTILE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "not a zip": (lambda b: b"PK\x03\x04" + bytes(100), "not a zip"),
    "truncated": (lambda b: b[: len(b) // 2], "not a zip"),
    "a pickled object array": (lambda b: _tamper(b, updates=_pickled()), "dtype object"),
    "a missing member": (
        lambda b: _zip({k: v for k, v in _members(b).items() if k != "y_val.npy"}),
        "no y_val",
    ),
    "a foreign member": (
        lambda b: _zip({**_members(b), "evil.npy": _npy(np.zeros(1))}),
        "members",
    ),
    "an update of the wrong size": (
        lambda b: _tamper(b, updates=np.zeros((4, P - 1), np.float32)),
        rf"updates is \[4, {P - 1}\], the model and participants make it \[4, {P}\]",
    ),
    "float64 updates": (lambda b: _tamper(b, updates=np.zeros((4, P))), "dtype float64"),
    "a NaN in an update": (
        lambda b: _tamper(b, updates=np.full((4, P), np.nan, np.float32)),
        "update has NaN",
    ),
    "an Inf in the validation set": (
        lambda b: _tamper(b, x_val=np.full((30, 8), np.inf, np.float32)),
        "validation set has NaN or Inf",
    ),
    "too many participants": (
        lambda b: _tamper(b, _many, updates=np.zeros((129, P), np.float32)),
        "129 participants, not 1 to 128",
    ),
    "a 2 GiB array header": (lambda b: _tamper(b, params=_huge_header()), "declares"),
    "a member declaring 4 GiB": (lambda b: _declared(b, 2**32 - 2), "more than the file"),
    "a zip bomb": (_compressed, "compressed"),
    "a lower-case address": (
        lambda b: _tamper(b, lambda d: d["clients"].__setitem__(0, d["clients"][0].lower())),
        "not a checksummed address",
    ),
    "a bad address": (
        lambda b: _tamper(b, lambda d: d["clients"].__setitem__(1, "0x" + "zz" * 20)),
        "not a checksummed address",
    ),
    "a participant twice": (
        lambda b: _tamper(b, lambda d: d["clients"].__setitem__(1, d["clients"][0])),
        "named twice",
    ),
    "zero examples": (
        lambda b: _tamper(b, lambda d: d["examples"].__setitem__(2, 0)),
        "claims 0 examples",
    ),
    "a label outside the classes": (
        lambda b: _tamper(b, y_val=np.full(30, 3, np.int64)),
        "outside the model's 3 classes",
    ),
    "a negative part": (lambda b: _tamper(b, lambda d: d.update(part=-1)), "part -1"),
    "another format": (lambda b: _tamper(b, lambda d: d.update(format="x/2")), "format"),
    "the old format": (
        lambda b: _tamper(b, lambda d: d.update(format="idlegrid/round-inputs/2")),
        "not 'idlegrid/round-inputs/3'",
    ),
    "no quadrature nodes": (lambda b: _tamper(b, lambda d: d.update(nodes=0)), "nodes 0"),
    "a costly quadrature": (lambda b: _tamper(b, lambda d: d.update(nodes=10**6)), "nodes 1000000"),
    "nodes as a string": (lambda b: _tamper(b, lambda d: d.update(nodes="8")), "nodes '8'"),
    "a bad model": (
        lambda b: _tamper(b, lambda d: d["model"].update(classes=1)),
        "model: mlp.classes",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_file_is_refused_with_a_reason(case: str) -> None:
    # Prepare
    make, reason = HOSTILE[case]
    blob = make(_synthetic().to_bytes())

    # Execute / Assert
    with pytest.raises(InvalidInput, match=reason):
        RoundInputs.from_bytes(blob)


def test_a_file_over_the_limit_is_refused_before_it_is_read() -> None:
    blob = _synthetic().to_bytes()
    with pytest.raises(PayloadTooLarge, match="over"):
        RoundInputs.from_bytes(blob, max_bytes=len(blob) - 1)
    assert RoundInputs.from_bytes(blob, max_bytes=len(blob)).to_bytes() == blob


def test_inputs_that_do_not_check_out_cannot_be_built() -> None:
    good = _synthetic()
    with pytest.raises(InvalidInput, match="32 bytes"):
        replace(good, run=b"x")
    with pytest.raises(InvalidInput, match="example count"):
        replace(good, examples={})
    with pytest.raises(InvalidInput, match="not a float32 array"):
        replace(good, params=good.params.astype(np.float64))


# -- judging a posting ----------------------------------------------------------------

A, B, C = (_address(i) for i in range(3))
TOL = PART // 10_000


def test_the_recomputation_and_float_drift_pass() -> None:
    right = {A: PART // 2, B: PART // 3, C: PART // 6 - 7}
    assert check_posting(right, right, PART) is None
    drift = {A: right[A] - TOL, B: right[B] + TOL, C: right[C]}
    assert check_posting(drift, right, PART) is None
    # a contributor recomputed within the tolerance of nothing may be left out
    assert check_posting({A: right[A], B: right[B]}, {**right, C: TOL}, PART) is None
    assert check_posting({**right, C: TOL}, {A: right[A], B: right[B]}, PART) is None
    # lower case addresses are the same contributors
    assert check_posting({k.lower(): v for k, v in right.items()}, right, PART) is None
    assert check_posting({A: 1}, {A: 2}, 10) is None  # at least 1 wei of tolerance


@pytest.mark.parametrize(
    ("posted", "reason"),
    [
        (
            {A: PART // 2 - 2 * TOL, B: PART // 3 + 2 * TOL, C: PART // 6 - 7},
            "the recomputation gives",
        ),
        ({A: PART // 2, B: PART // 3}, f"{C} is owed"),
        ({A: PART // 2, B: PART // 3, C: PART // 6 - 7, _address(9): 2 * TOL}, "earned nothing"),
        ({A: PART // 2 + TOL, B: PART // 3 + TOL, C: PART // 6 - 7 + TOL}, "more than the round"),
        ({A: -1, B: PART // 3, C: PART // 6}, "negative"),
        ({"0xnope": 1}, "not an Ethereum address"),
    ],
    ids=["moved", "missing", "extra", "over the part", "negative", "not an address"],
)
def test_a_wrong_posting_is_refused_with_a_reason(posted: dict[str, int], reason: str) -> None:
    recomputed = {A: PART // 2, B: PART // 3, C: PART // 6 - 7}
    why = check_posting(posted, recomputed, PART)
    assert why is not None and reason in why


def test_a_round_s_inputs_refuse_pay_to_a_stranger_even_within_the_tolerance() -> None:
    # Prepare
    inputs = _synthetic()
    amounts = inputs.amounts()
    stranger = _address(50)

    # Execute
    why = inputs.check({**amounts, stranger: 1})

    # Assert
    assert inputs.check(amounts) is None
    assert why is not None and f"{stranger} is paid and did not take part" in why
