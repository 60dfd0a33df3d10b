"""A run's settlement inputs: every clear round's published inputs in one file, so that
a run paid once, at its end, by its contributions netted over the rounds can be
recomputed and challenged as a round's posting is.

Paying each round's part by that round's positive values (``payout: round``) clips each
round at zero: a client whose update helped one round and hurt the next keeps the first
and loses nothing for the second, and an update's noise pays as a lottery ticket each
round (``E[max(0, noise)] > 0``), one ticket an identity. Netting sums each client's
signed values over the run and clips once, at the end (``payout: run``): the rounds a
client hurt offset the rounds it helped, and noise cancels. Each round weighs the same
(its values as fractions of their total absolute value, :func:`~idlegrid.fl.net_rounds`),
as when each round is paid. On the rewards benchmark's runs (``idlegrid bench rewards``,
seeds 0 to 9, every client playing each game in turn) a client with half its labels
flipped earns nothing instead of 0.12 of its clean reward, 30 % flipped 0.05 instead of
0.25; ten identities of one data set earn 0.87 times the data as one instead of 1.05
(the lottery tickets, one an identity, pay them back what their split data lost).

The file is an ``.npz`` read with the budgets of :mod:`._inputs`: stored members
``meta.npy`` (format ``idlegrid/run-inputs/2``, the run, the last round, the rounds'
numbers, the model, the settlement's part) and ``round-NNNNN.npy`` for each round (uint8:
that round's :class:`~idlegrid.fl.RoundInputs` file, read by its own reader within the
same budget).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NoReturn

import numpy as np

from .._exceptions import InvalidInput
from ..protocol import checksum
from ._contrib import net_rounds, split_reward
from ._inputs import (
    _U8,
    MAX_INPUTS_BYTES,
    RoundInputs,
    _array,
    _file,
    _is_int,
    _members,
    _meta_json,
    _Published,
    check_posting,
)

__all__ = ["MAX_RUN_ROUNDS", "RUN_FORMAT", "RunInputs"]

#: the format's name, in ``meta.npy``
RUN_FORMAT = "idlegrid/run-inputs/2"
#: rounds a settlement's inputs may hold (each is a member of the zip's directory)
MAX_RUN_ROUNDS = 1024
#: a round's member (without ``.npy``)
ROUND_MEMBER = re.compile(r"round-\d{5}")

_META_KEYS = {"format", "run", "round", "rounds", "model", "part"}


def _fail(why: str) -> NoReturn:
    raise InvalidInput(f"run inputs: {why}")


def _member(rnd: int) -> str:
    return f"round-{rnd:05d}"


@dataclass(frozen=True, eq=False)
class RunInputs(_Published):
    """What run ``run``'s settlement paid from: its clear rounds' inputs, ascending, and
    the settlement's part (wei). Checked when built: a ``RunInputs`` always writes a
    file :meth:`from_bytes` reads."""

    run: bytes
    rounds: Sequence[RoundInputs]
    part: int

    def __post_init__(self) -> None:
        _check(self)

    @property
    def round(self) -> int:
        """The round the settlement is posted for: the run's last."""
        return self.rounds[-1].round

    @property
    def data_hash(self) -> bytes:
        """The validation set's hash (the same in every round)."""
        return self.rounds[-1].data_hash

    @property
    def participants(self) -> list[str]:
        """Every client that took part in a round, ascending by address."""
        clients = {a for r in self.rounds for a in r.updates}
        return sorted(clients, key=lambda a: int(a, 16))

    # -- the recomputation -------------------------------------------------------------
    def contributions(self) -> dict[str, float]:
        """Each participant's contributions netted over the rounds (signed; each round's
        values as fractions of their total absolute value, summed: :func:`net_rounds`)."""
        return dict(self._contributions)

    def amounts(self) -> dict[str, int]:
        """What the settlement pays each contributor (wei): the part split by the netted
        contributions, clipped at zero."""
        return split_reward(self.part, self._contributions)

    def check(self, posted: Mapping[str, int]) -> str | None:
        """Why ``posted`` (address -> wei) is not this settlement; None if it is."""
        why = check_posting(posted, self.amounts(), self.part)
        if why is not None:
            return why
        took_part = set(self.participants)
        for who in map(checksum, posted):  # addresses, check_posting made sure
            if who not in took_part:
                return f"{who} is paid and took part in none of the run's rounds"
        return None

    @cached_property
    def _contributions(self) -> dict[str, float]:
        total = net_rounds([r.contributions() for r in self.rounds])
        return {a: total[a] for a in self.participants}

    # -- the file ----------------------------------------------------------------------
    @property
    def size(self) -> int:
        """The file's bytes, about (the rounds' files and their directory)."""
        return sum(len(r.to_bytes()) + 256 for r in self.rounds) + 4096

    def _write(self) -> bytes:
        meta = {
            "format": RUN_FORMAT,
            "run": self.run.hex(),
            "round": self.round,
            "rounds": [r.round for r in self.rounds],
            "model": self.rounds[0].model.model_dump(mode="json"),
            "part": self.part,
        }
        arrays: dict[str, np.ndarray | None] = {
            _member(r.round): np.frombuffer(r.to_bytes(), dtype=_U8) for r in self.rounds
        }
        return _file(meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes, *, max_bytes: int = MAX_INPUTS_BYTES) -> RunInputs:
        """A stranger's file, read within budgets; InvalidInput says what is wrong."""
        members = _members(
            data, max_bytes, ("meta",), pattern=ROUND_MEMBER, most=1 + MAX_RUN_ROUNDS
        )
        meta = _meta_json(members.pop("meta"), _META_KEYS, RUN_FORMAT)
        numbers = meta["rounds"]
        if not isinstance(numbers, list) or not all(_is_int(n) for n in numbers):
            _fail("rounds is not a list of round numbers")
        if not 1 <= len(numbers) <= MAX_RUN_ROUNDS or not all(1 <= n < 10**5 for n in numbers):
            _fail(f"rounds names {len(numbers)} rounds, not 1 to {MAX_RUN_ROUNDS} numbered 1 on")
        if set(members) != {_member(n) for n in numbers} or len(set(numbers)) != len(numbers):
            _fail("its members are not one per round it names")
        if numbers[-1] != meta["round"]:
            _fail(f"the rounds end at {numbers[-1]}, not at round {meta['round']!r}")
        rounds = []
        for n in numbers:
            raw = _array(_member(n), members[_member(n)], _U8, 1).tobytes()
            rounds.append(RoundInputs.from_bytes(raw, max_bytes=max_bytes))
            if rounds[-1].round != n:
                _fail(f"{_member(n)} holds round {rounds[-1].round}'s inputs")
            if rounds[-1].model != meta["model"]:
                _fail(f"round {n}'s model is not the run's")
        return cls(run=meta["run"], rounds=rounds, part=meta["part"])


def _check(r: RunInputs) -> None:
    """The meaning of a run's settlement inputs."""
    if not isinstance(r.run, bytes) or len(r.run) != 32:
        _fail("the run id is 32 bytes")
    if not _is_int(r.part) or not 0 <= r.part < 2**256:
        _fail(f"the settlement's part {r.part!r} is not an amount of wei")
    rounds = list(r.rounds)
    if not 1 <= len(rounds) <= MAX_RUN_ROUNDS:
        _fail(f"{len(rounds)} rounds, not 1 to {MAX_RUN_ROUNDS}")
    if not all(isinstance(x, RoundInputs) for x in rounds):
        _fail("a round is not a round's inputs")
    for x in rounds:
        if x.run != r.run:
            _fail(f"round {x.round} is another run's")
        if x.model != rounds[0].model:
            _fail(f"round {x.round}'s model is not round {rounds[0].round}'s")
        if x.data_hash != rounds[0].data_hash:
            _fail(f"round {x.round}'s validation set is not round {rounds[0].round}'s")
    if any(b.round <= a.round for a, b in itertools.pairwise(rounds)):
        _fail("the rounds are not in ascending order, each once")
    object.__setattr__(r, "rounds", tuple(rounds))
    object.__setattr__(r, "part", int(r.part))
