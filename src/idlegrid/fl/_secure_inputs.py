"""A secure round's published inputs: what its reward posting is computed from, so that
anyone can recompute it and challenge it, as a clear round's (:mod:`._inputs`).

Under secure aggregation the coordinator sees each round's aggregate only, and a
round's contributions are fitted over the run's secure rounds so far
(:func:`~idlegrid.fl.group_contributions`): each round's cohort and the gain of its
aggregate on the sponsor's validation set, ``v(after) − v(before)``. The inputs are
what those gains are computed from: for every secure round up to this one, its number,
its cohort, the global model before it and the aggregate it produced (both already
public: each round's model is in the lineage), with the validation set, the model's
spec and the round's reward part. No single update is in them: publishing them tells
nobody more than the lineage already does.

The file is an ``.npz`` read with the same budgets and checks as a clear round's:
stored members ``meta.npy`` (format ``idlegrid/secure-round-inputs/1``, the run, the
round, the model, the clients of the whole history in ascending address order, the
part), ``models.npy`` (float32 ``[M, P]``: the distinct parameter vectors the rounds
name; without differential privacy a round's aggregate is the next round's start, so
``M`` is the number of rounds plus one), ``steps.npy`` (int64 ``[R, 3]``: each round's
number and the rows of ``models`` before and after it, rounds ascending, the last
being this round), ``cohorts.npy`` (uint8 ``[R, C]``: 1 where a client was in a round's
cohort), ``x_val.npy`` and ``y_val.npy``. Its size grows with the rounds (``M × P``
floats); past :data:`~idlegrid.fl.MAX_INPUTS_BYTES` the coordinator posts without
inputs (its posting can then not be challenged) and says so.

:func:`read_round_inputs` reads either kind of inputs from a stranger's bytes, by the
format its ``meta.npy`` names.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from .._exceptions import InvalidInput
from ..protocol import checksum
from ..workloads._train_models import (
    CnnModel,
    MlpModel,
    TransformerModel,
    input_shape,
    param_count,
)
from ._contrib import group_contributions, split_reward, validation_value
from ._inputs import (
    _F32,
    _I64,
    _MEMBERS,
    _U8,
    FORMAT,
    MAX_INPUTS_BYTES,
    RoundInputs,
    _array,
    _check_header,
    _check_validation,
    _data_hash,
    _file,
    _floats,
    _is_address,
    _members,
    _meta_doc,
    _meta_json,
    _Published,
    check_posting,
)

if TYPE_CHECKING:
    from ._run_inputs import RunInputs

__all__ = ["SECURE_FORMAT", "SecureRoundInputs", "inputs_format", "read_round_inputs"]

#: the format's name, in ``meta.npy``
SECURE_FORMAT = "idlegrid/secure-round-inputs/1"
#: the members of a secure round's file (without ``.npy``)
MEMBERS = ("meta", "models", "steps", "cohorts", "x_val", "y_val")
#: distinct clients a run's secure history may name (the addresses fill ``meta.npy``)
MAX_CLIENTS = 1024
#: secure rounds a history may hold (a federated spec's most rounds)
MAX_ROUNDS = 10_000

_META_KEYS = {"format", "run", "round", "model", "clients", "part"}


def _fail(why: str) -> NoReturn:
    raise InvalidInput(f"secure round inputs: {why}")


@dataclass(frozen=True, eq=False)
class SecureRoundInputs(_Published):
    """What secure round ``round`` of run ``run`` paid its cohort from (see the module's
    notes). Checked when built, as :class:`~idlegrid.fl.RoundInputs`: a
    ``SecureRoundInputs`` always writes a file :meth:`from_bytes` reads."""

    run: bytes
    round: int
    model: MlpModel | CnnModel | TransformerModel
    #: every client of the history, in ascending address order
    clients: Sequence[str]
    #: float32 [M, P]: the parameter vectors the rounds start from and end at
    models: np.ndarray
    #: int64 [R, 3]: each secure round's number, and its rows of ``models`` before and after
    steps: np.ndarray
    #: uint8 [R, C]: 1 where client c was in round r's cohort
    cohorts: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    #: the round's reward part (wei)
    part: int

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def from_history(
        cls,
        *,
        run: bytes,
        model: MlpModel | CnnModel | TransformerModel,
        history: Sequence[tuple[int, Sequence[str], np.ndarray, np.ndarray]],
        x_val: np.ndarray,
        y_val: np.ndarray,
        part: int,
    ) -> SecureRoundInputs:
        """The inputs of the last round of ``history``: ``(round, cohort, before,
        after)`` of each secure round so far, oldest first (the same vector named twice,
        as one round's end and the next one's start, is stored once)."""
        if not history:
            _fail("a history of at least one round")
        try:
            clients = sorted({checksum(a) for _, cohort, _, _ in history for a in cohort},
                             key=lambda a: int(a, 16))  # fmt: skip
        except InvalidInput as exc:
            _fail(str(exc))
        column = {a: i for i, a in enumerate(clients)}
        vectors: list[np.ndarray] = []
        steps = np.zeros((len(history), 3), np.int64)
        cohorts = np.zeros((len(history), len(clients)), np.uint8)

        def row(vector: np.ndarray) -> int:
            if vectors and np.array_equal(vectors[-1], vector):
                return len(vectors) - 1
            vectors.append(np.asarray(vector, dtype=np.float32))
            return len(vectors) - 1

        for r, (number, cohort, before, after) in enumerate(history):
            steps[r] = (number, row(before), row(after))
            for a in cohort:
                cohorts[r, column[checksum(a)]] = 1
        return cls(
            run=run,
            round=int(steps[-1, 0]),
            model=model,
            clients=clients,
            models=np.stack(vectors),
            steps=steps,
            cohorts=cohorts,
            x_val=x_val,
            y_val=y_val,
            part=part,
        )

    # -- the recomputation -------------------------------------------------------------
    @property
    def cohort(self) -> list[str]:
        """This round's cohort (the clients its posting may pay)."""
        return [a for a, x in zip(self.clients, self.cohorts[-1], strict=True) if x]

    def gains(self) -> list[float]:
        """Each round's gain on the validation set, ``v(after) − v(before)``."""
        return list(self._gains)

    def contributions(self) -> dict[str, float]:
        """This round's cohort's contributions, fitted over the secure rounds so far."""
        return dict(self._contributions)

    def amounts(self) -> dict[str, int]:
        """What the round's posting pays each contributor (wei)."""
        return split_reward(self.part, self._contributions)

    def check(self, posted: Mapping[str, int]) -> str | None:
        """Why ``posted`` (address -> wei) is not this round's posting; None if it is."""
        why = check_posting(posted, self.amounts(), self.part)
        if why is not None:
            return why
        cohort = set(self.cohort)
        for who in map(checksum, posted):  # addresses, check_posting made sure
            if who not in cohort:
                return f"{who} is paid and was not in round {self.round}'s cohort"
        return None

    @cached_property
    def _gains(self) -> list[float]:
        value = validation_value(self.model, self.x_val, self.y_val)
        scores: dict[int, float] = {}

        def score(i: int) -> float:
            if i not in scores:
                scores[i] = float(value(self.models[i]))
            return scores[i]

        return [score(int(after)) - score(int(before)) for _, before, after in self.steps]

    @cached_property
    def _contributions(self) -> dict[str, float]:
        history = [
            ([a for a, x in zip(self.clients, members, strict=True) if x], gain)
            for members, gain in zip(self.cohorts, self._gains, strict=True)
        ]
        estimate = group_contributions(history)
        return {a: estimate[a] for a in self.cohort}

    # -- the file ----------------------------------------------------------------------
    @property
    def data_hash(self) -> bytes:
        """The validation set's hash as the run registers it with each round's model."""
        return _data_hash(self.x_val, self.y_val)

    @property
    def size(self) -> int:
        """The file's bytes, without writing it."""
        arrays = (self.models, self.steps, self.cohorts, self.x_val, self.y_val)
        return sum(a.nbytes for a in arrays) + 4096 + 45 * len(self.clients)

    def _write(self) -> bytes:
        meta = {
            "format": SECURE_FORMAT,
            "run": self.run.hex(),
            "round": self.round,
            "model": self.model.model_dump(mode="json"),
            "clients": list(self.clients),
            "part": self.part,
        }
        arrays: dict[str, np.ndarray | None] = {
            "models": self.models,
            "steps": self.steps,
            "cohorts": self.cohorts,
            "x_val": self.x_val,
            "y_val": self.y_val,
        }
        return _file(meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int = MAX_INPUTS_BYTES) -> SecureRoundInputs:
        """A stranger's file, read within budgets; InvalidInput says what is wrong."""
        members = _members(data, max_bytes, MEMBERS)
        meta = _meta_json(members.pop("meta"), _META_KEYS, SECURE_FORMAT)
        clients = meta["clients"]
        if not isinstance(clients, list) or not all(isinstance(c, str) for c in clients):
            _fail("clients is not a list of addresses")
        model = meta["model"]
        p, shape = param_count(model), input_shape(model)
        models = _array("models", members["models"], _F32, 2)
        steps = _array("steps", members["steps"], _I64, 2)
        cohorts = _array("cohorts", members["cohorts"], _U8, 2)
        x_val = _array("x_val", members["x_val"], _F32, 1 + len(shape))
        y_val = _array("y_val", members["y_val"], _I64, 1)
        want = {
            "models": (models, (len(models), p)),
            "steps": (steps, (len(steps), 3)),
            "cohorts": (cohorts, (len(steps), len(clients))),
            "x_val": (x_val, (len(y_val), *shape)),
        }
        for name, (array, expected) in want.items():
            if array.shape != expected:
                _fail(
                    f"{name} is {list(array.shape)}, the model, rounds and clients make it "
                    f"{list(expected)}"
                )
        return cls(
            run=meta["run"],
            round=meta["round"],
            model=model,
            clients=clients,
            models=models,
            steps=steps,
            cohorts=cohorts,
            x_val=x_val,
            y_val=y_val,
            part=meta["part"],
        )


def _check(r: SecureRoundInputs) -> None:
    """The meaning of a secure round's inputs (a file's shapes are checked as it is
    read); normalises them to contiguous arrays."""
    _check_header(r.run, r.round, r.model, r.part, _fail)
    clients = list(r.clients)
    if not 1 <= len(clients) <= MAX_CLIENTS:
        _fail(f"{len(clients)} clients, not 1 to {MAX_CLIENTS}")
    if not all(_is_address(a) for a in clients):
        _fail("a client is not a checksummed address")
    numbers = [int(a, 16) for a in clients]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        _fail("the clients are not in ascending address order, each once")
    steps, cohorts = r.steps, r.cohorts
    if not isinstance(steps, np.ndarray) or steps.dtype != np.int64 or steps.ndim != 2:
        _fail("steps is not int64 [rounds, 3]")
    rounds = len(steps)
    if not 1 <= rounds <= MAX_ROUNDS or steps.shape[1] != 3:
        _fail(f"steps is {list(steps.shape)}, not [1 to {MAX_ROUNDS}, 3]")
    p = param_count(r.model)
    if not isinstance(r.models, np.ndarray) or r.models.ndim != 2 or not len(r.models):
        _fail("models is not float32 [vectors, parameters]")
    models = _floats(r.models, (len(r.models), p), "models", _fail)
    numbers_of_rounds = steps[:, 0]
    if int(numbers_of_rounds[0]) < 1 or bool(np.any(np.diff(numbers_of_rounds) <= 0)):
        _fail("the rounds are not numbered in ascending order from 1")
    if int(numbers_of_rounds[-1]) != r.round:
        _fail(f"the history ends at round {int(numbers_of_rounds[-1])}, not {r.round}")
    if int(steps[:, 1:].min()) < 0 or int(steps[:, 1:].max()) >= len(models):
        _fail(f"a round names a model outside the {len(models)} given")
    if not isinstance(cohorts, np.ndarray) or cohorts.dtype != np.uint8:
        _fail("cohorts is not uint8 [rounds, clients]")
    if cohorts.shape != (rounds, len(clients)):
        _fail(f"cohorts is {list(cohorts.shape)}, not {[rounds, len(clients)]}")
    if int(cohorts.max()) > 1 or bool(np.any(cohorts.sum(axis=1) == 0)):
        _fail("a cohort is not 0s and 1s with at least one member")
    if bool(np.any(cohorts.sum(axis=0) == 0)):
        _fail("a client is in no round's cohort")
    x = _check_validation(r.x_val, r.y_val, r.model, _fail)
    set_ = object.__setattr__
    set_(r, "clients", tuple(clients))
    set_(r, "models", models)
    set_(r, "steps", np.ascontiguousarray(steps))
    set_(r, "cohorts", np.ascontiguousarray(cohorts))
    set_(r, "x_val", x)
    set_(r, "round", int(r.round))
    set_(r, "part", int(r.part))


def inputs_format(data: bytes, *, max_bytes: int = MAX_INPUTS_BYTES) -> str:
    """The format a stranger's round-inputs file names in its ``meta.npy`` (only that
    member is read; the file's size and directory are checked as for any inputs)."""
    from ._run_inputs import MAX_RUN_ROUNDS, ROUND_MEMBER

    names = tuple(dict.fromkeys(_MEMBERS + MEMBERS))
    optional = tuple(n for n in names if n != "meta")
    most = max(len(names), 1 + MAX_RUN_ROUNDS)
    raw = _members(
        data, max_bytes, names, optional=optional, only="meta", pattern=ROUND_MEMBER, most=most
    )["meta"]
    doc = _meta_doc(raw)
    found = doc.get("format") if isinstance(doc, dict) else None
    if not isinstance(found, str):
        raise InvalidInput("round inputs: meta.npy names no format")
    return found


def read_round_inputs(
    data: bytes, *, max_bytes: int = MAX_INPUTS_BYTES
) -> RoundInputs | SecureRoundInputs | RunInputs:
    """A clear or a secure round's published inputs, or a run's settlement inputs, from
    a stranger's bytes, by the format they name; InvalidInput for any other format or a
    bad file."""
    from ._run_inputs import RUN_FORMAT, RunInputs

    found = inputs_format(data, max_bytes=max_bytes)
    if found == SECURE_FORMAT:
        return SecureRoundInputs.from_bytes(data, max_bytes=max_bytes)
    if found == FORMAT:
        return RoundInputs.from_bytes(data, max_bytes=max_bytes)
    if found == RUN_FORMAT:
        return RunInputs.from_bytes(data, max_bytes=max_bytes)
    formats = ", ".join(repr(f) for f in (FORMAT, SECURE_FORMAT, RUN_FORMAT))
    raise InvalidInput(f"round inputs: format {found!r}, not one of {formats}")
