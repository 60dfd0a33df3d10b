"""Proof-of-learning: a ``train`` run checked by replaying a random sample of its intervals.

A run of ``total_steps`` steps with interval ``k`` has ``N = ceil(total_steps / k)``
intervals, interval ``i`` covering the steps ``[i*k, min((i+1)*k, total_steps))``. The
trainer commits the root of the tree over ``N + 1`` leaves: the hash of the initial
state, then the hash of the state after each interval. Later, a seed the trainer could
not know (a block hash after the commitment) selects ``q`` intervals
(``select_intervals``); for each, a verifier fetches the states at both ends, checks
that they hash to their leaves, replays the interval from the first and compares the
parameters it gets with those claimed (``param_distance``, at most ``POL_TOLERANCE``).

Everything here is a pure function of its arguments, except the replay itself (PyTorch)
and the clock ``verify_run`` reads to report the replay's compute.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..workloads._kind_train import TrainSpec

__all__ = [
    "ATTACKS",
    "POL_TOLERANCE",
    "IntervalVerdict",
    "PolCalibration",
    "PolReport",
    "calibrate_pol",
    "check_interval",
    "detection_probability",
    "digits_calibration",
    "interval_bounds",
    "intervals_needed",
    "param_distance",
    "replay_interval",
    "select_intervals",
    "spoof",
    "verify_run",
]

#: the largest relative distance between claimed and replayed parameters that passes
POL_TOLERANCE = 1e-3
_TINY = 1e-30
_LOSS = 2  # a state: [step // 2**24, step % 2**24, loss, ...] (workloads._kind_train)
_HEADER = 3
_SPACE = 2**256


def _uniform(seed: bytes, counter: int, bound: int) -> tuple[int, int]:
    """An integer uniform in ``[0, bound)`` from ``sha256(seed || counter)``, rejecting
    draws above the largest multiple of ``bound``; and the next counter."""
    limit = _SPACE - _SPACE % bound
    while True:
        digest = hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
        value = int.from_bytes(digest, "big")
        if value < limit:
            return value % bound, counter


def select_intervals(seed: bytes, n: int, q: int) -> list[int]:
    """``min(q, n)`` distinct interval indices in ``[0, n)``, sorted.

    A partial Fisher-Yates shuffle of ``0 .. n-1`` whose ``j``-th swap partner is uniform
    in ``[j, n)``, drawn from ``sha256(seed || counter)`` (``counter`` an 8-byte
    big-endian integer from 0, the 256-bit digest read big-endian, a draw at or above the
    largest multiple of the bound rejected and the next counter tried): every set of
    ``q`` indices is equally likely, and anyone with the seed gets the same one."""
    if n < 0 or q < 0:
        raise ValueError(f"n and q must not be negative, not {n} and {q}")
    if q >= n:
        return list(range(n))
    swapped: dict[int, int] = {}
    counter = 0
    for j in range(q):
        r, counter = _uniform(seed, counter, n - j)
        r += j
        swapped[j], swapped[r] = swapped.get(r, r), swapped.get(j, j)
    return sorted(swapped[j] for j in range(q))


def detection_probability(f: float, q: int) -> float:
    """``1 - (1 - f)**q``: the chance that ``q`` selected intervals include at least one
    of a fraction ``f`` fabricated (selection with replacement; without, as
    ``select_intervals`` draws, it is at least this)."""
    if not 0.0 <= f <= 1.0 or q < 0:
        raise ValueError(f"f must be in [0, 1] and q not negative, not {f} and {q}")
    return 1.0 - (1.0 - f) ** q


def intervals_needed(f: float, target: float) -> int:
    """The smallest ``q`` with ``detection_probability(f, q) >= target``."""
    if not 0.0 <= target < 1.0 or not 0.0 <= f <= 1.0:
        raise ValueError(f"target must be in [0, 1) and f in [0, 1], not {target} and {f}")
    if target == 0.0:
        return 0
    if f == 0.0:
        raise ValueError("nothing fabricated is never detected")
    if f == 1.0:
        return 1
    q = max(1, math.ceil(math.log1p(-target) / math.log1p(-f)))
    while q > 1 and detection_probability(f, q - 1) >= target:
        q -= 1
    while detection_probability(f, q) < target:
        q += 1
    return q


def interval_bounds(total_steps: int, interval: int) -> list[tuple[int, int]]:
    """``(start, steps)`` of each interval of a run: ``[i*k, min((i+1)*k, total))``."""
    if total_steps < 1 or interval < 1:
        raise ValueError(
            f"total_steps and interval must be positive, not {total_steps}, {interval}"
        )
    return [(s, min(interval, total_steps - s)) for s in range(0, total_steps, interval)]


def param_distance(before: np.ndarray, claimed: np.ndarray, replayed: np.ndarray) -> float:
    """How far the claimed parameters are from the replayed ones, relative to the update:
    ``||replayed - claimed|| / max(||claimed - before||, ||replayed - before||)`` (L2
    norms, in float64; 0 when all three are equal, inf when any value is not finite or
    the shapes differ).

    This is the normalised distance of the Proof-of-Learning paper (Jia et al., 2021):
    the replay error of an update divided by the size of that update, so the same
    tolerance serves any learning rate, model size and interval length. Taking the larger
    of the two updates keeps a claimed update of zero (nothing trained) at distance 1."""
    b = np.asarray(before, dtype=np.float64)
    c = np.asarray(claimed, dtype=np.float64)
    r = np.asarray(replayed, dtype=np.float64)
    if not b.shape == c.shape == r.shape:
        return math.inf
    if not (np.isfinite(b).all() and np.isfinite(c).all() and np.isfinite(r).all()):
        return math.inf
    scale = max(_norm(c - b), _norm(r - b), _TINY)
    return _norm(r - c) / scale


def _norm(v: np.ndarray) -> float:
    """The L2 norm by a plain reduction: ``np.linalg.norm`` calls BLAS, whose idle
    threads spin and would bill the verifier for CPU it does not use."""
    return float(np.sqrt(np.sum(np.square(v))))


@dataclass(frozen=True)
class IntervalVerdict:
    """The check of one interval of a run."""

    index: int
    #: the run's step the interval starts at, and its length
    start: int
    steps: int
    #: ``param_distance`` of the claimed state from the replay (inf: not replayed)
    distance: float
    ok: bool
    #: why it failed ("" when ok)
    reason: str


@dataclass(frozen=True)
class PolReport:
    """The proof-of-learning check of one run: the selected intervals' verdicts."""

    verdicts: tuple[IntervalVerdict, ...]
    #: whether leaf 0 is the hash of the initial state the seed gives
    initial_ok: bool
    #: CPU seconds of this process spent replaying (``time.process_time``, all threads)
    verify_seconds: float

    @property
    def checked(self) -> int:
        """Intervals replayed or refused."""
        return len(self.verdicts)

    @property
    def failed(self) -> tuple[int, ...]:
        """Indices of the intervals that did not pass."""
        return tuple(v.index for v in self.verdicts if not v.ok)

    @property
    def max_distance(self) -> float:
        """The largest distance of a replayed interval (0 when none was)."""
        return max((v.distance for v in self.verdicts), default=0.0)

    @property
    def ok(self) -> bool:
        """Whether the run passed: leaf 0 right and every selected interval within
        the tolerance."""
        return self.initial_ok and not self.failed


# -- replay: PyTorch from here on --------------------------------------------------------------
def _every(spec: TrainSpec) -> int:
    return spec.interval or spec.steps


def _one_interval(
    spec: TrainSpec, start: int, steps: int, before: np.ndarray, interval: int | None = None
) -> TrainSpec:
    """The segment of the run ``spec`` of ``steps`` steps from the state ``before`` at
    ``start`` (by default one interval)."""
    from ..workloads._kind_train import TrainSpec, state_hash

    fields = spec.model_dump()
    state = None if start == 0 else state_hash(before).hex()
    fields.update(start=start, steps=steps, interval=interval, state=state)
    return TrainSpec.model_validate(fields)


def replay_interval(
    spec: TrainSpec, x: np.ndarray, y: np.ndarray, before_state: np.ndarray, *, threads: int = 1
) -> np.ndarray:
    """The state after the interval of the run ``spec`` that starts at ``before_state``
    (at the step it holds), replayed with ``threads`` PyTorch threads (the previous
    count restored after). At step 0 the replay starts from the run's initial state, as
    the trainer's first segment does (``check_interval`` checks ``before_state`` is it)."""
    from ..workloads._kind_train import state_step, torch_threads, train_steps

    start = state_step(before_state)
    steps = min(_every(spec), spec.total_steps - start)
    if steps < 1:
        raise ValueError(f"no interval of the run starts at step {start}")
    one = _one_interval(spec, start, steps, before_state)
    with torch_threads(threads):
        (after,) = train_steps(one, None if start == 0 else before_state, x, y)
    return after


def _state_problem(spec: TrainSpec, state: np.ndarray, step: int) -> str:
    """Why ``state`` cannot be the run's state at ``step`` ("" when it can)."""
    from ..workloads._kind_train import state_size, state_step

    size = state_size(spec)
    if state.dtype != np.float32 or state.shape != (size,):
        return f"not a float32 [{size}] state"
    if not np.isfinite(state).all():
        return "has NaN or Inf"
    if state_step(state) != step:
        return f"is at step {state_step(state)}, not {step}"
    return ""


def check_interval(
    spec: TrainSpec,
    x: np.ndarray,
    y: np.ndarray,
    index: int,
    before_state: np.ndarray,
    after_state: np.ndarray,
    leaves: Sequence[bytes],
    *,
    threads: int = 1,
    tolerance: float = POL_TOLERANCE,
) -> IntervalVerdict:
    """Interval ``index`` of the run ``spec``: its states must hash to ``leaves[index]``
    and ``leaves[index + 1]``, be finite and at the interval's first and last step (the
    first, for interval 0, exactly the initial state the seed gives), and the replay
    from the first must land within ``tolerance`` (``param_distance``) of the second."""
    from ..workloads._kind_train import initial_state, params_of, state_hash

    bounds = interval_bounds(spec.total_steps, _every(spec))
    if not 0 <= index < len(bounds) or len(leaves) != len(bounds) + 1:
        raise ValueError(f"interval {index} of {len(bounds)}, with {len(leaves)} leaves")
    start, steps = bounds[index]
    before, after = np.asarray(before_state), np.asarray(after_state)

    def refused(reason: str) -> IntervalVerdict:
        return IntervalVerdict(index, start, steps, math.inf, False, reason)

    for name, state, leaf, step in (
        ("before", before, leaves[index], start),
        ("after", after, leaves[index + 1], start + steps),
    ):
        if state_hash(state) != leaf:
            return refused(f"the state {name} does not hash to its leaf")
        problem = _state_problem(spec, state, step)
        if problem:
            return refused(f"the state {name} {problem}")
    if index == 0 and not np.array_equal(before, initial_state(spec)):
        return refused("the initial state is not the one the seed gives")
    replayed = replay_interval(spec, x, y, before, threads=threads)
    distance = param_distance(
        params_of(spec, before), params_of(spec, after), params_of(spec, replayed)
    )
    if not distance <= tolerance:
        reason = f"the replay is {distance:.3g} away (tolerance {tolerance:g})"
        return IntervalVerdict(index, start, steps, distance, False, reason)
    loss, replayed_loss = float(after[_LOSS]), float(replayed[_LOSS])
    if not abs(loss - replayed_loss) <= tolerance * max(abs(replayed_loss), _TINY):
        reason = f"the claimed loss {loss:.6g} is not the replay's {replayed_loss:.6g}"
        return IntervalVerdict(index, start, steps, distance, False, reason)
    return IntervalVerdict(index, start, steps, distance, True, "")


def verify_run(
    spec: TrainSpec,
    x: np.ndarray,
    y: np.ndarray,
    leaves: Sequence[bytes],
    fetch_state: Callable[[bytes], np.ndarray],
    seed: bytes,
    q: int,
    *,
    threads: int = 1,
    tolerance: float = POL_TOLERANCE,
) -> PolReport:
    """Check the run ``spec`` whose tree has ``leaves`` (the initial state's hash, then
    each interval's): ``q`` intervals selected by ``seed`` are each replayed from the
    states ``fetch_state(digest)`` returns (each fetched once; its exceptions are the
    caller's), and leaf 0 must be the hash of the initial state the seed gives.

    ``verify_seconds`` counts the CPU time of this process (``time.process_time``, all
    threads) spent in the checks, replays included, fetching not: compare it with the
    CPU time of the training."""
    from ..workloads._kind_train import initial_state, state_hash

    n = len(interval_bounds(spec.total_steps, _every(spec)))
    if len(leaves) != n + 1:
        raise ValueError(f"a run of {n} intervals has {n + 1} leaves, not {len(leaves)}")
    states: dict[bytes, np.ndarray] = {}

    def fetched(digest: bytes) -> np.ndarray:
        if digest not in states:
            states[digest] = np.asarray(fetch_state(digest))
        return states[digest]

    seconds = 0.0
    clock = time.process_time()
    initial_ok = state_hash(initial_state(spec)) == leaves[0]
    seconds += time.process_time() - clock
    verdicts = []
    for i in select_intervals(seed, n, q):
        before, after = fetched(leaves[i]), fetched(leaves[i + 1])
        clock = time.process_time()
        verdicts.append(
            check_interval(
                spec, x, y, i, before, after, leaves, threads=threads, tolerance=tolerance
            )
        )
        seconds += time.process_time() - clock
    return PolReport(tuple(verdicts), initial_ok, seconds)


# -- calibration ------------------------------------------------------------------------------
#: the spoofing attacks the calibration measures
ATTACKS = ("skip-steps", "interpolate", "backfit")


@dataclass(frozen=True)
class PolCalibration:
    """Distances of honest replays and of spoofed intervals for one run's spec."""

    family: str
    optimizer: str
    #: steps per interval, and the intervals measured
    interval: int
    intervals: int
    #: thread count -> the largest distance of a replay with that many threads from the
    #: trajectory trained with one
    honest: dict[int, float]
    #: attack -> the smallest distance of an interval it spoofed
    attacks: dict[str, float]

    @property
    def honest_max(self) -> float:
        return max(self.honest.values(), default=0.0)

    @property
    def attack_min(self) -> float:
        return min(self.attacks.values(), default=math.inf)

    def as_dict(self) -> dict[str, object]:
        return {
            "family": self.family,
            "optimizer": self.optimizer,
            "interval": self.interval,
            "intervals": self.intervals,
            "honest": {str(t): d for t, d in self.honest.items()},
            "attacks": dict(self.attacks),
        }


def _at(state: np.ndarray, step: int) -> np.ndarray:
    out = state.astype(np.float32, copy=True)
    out[0], out[1] = step // 2**24, step % 2**24
    return out


def spoof(
    attack: str,
    spec: TrainSpec,
    x: np.ndarray,
    y: np.ndarray,
    trajectory: Sequence[np.ndarray],
    index: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(before, after)``: interval ``index`` of the run ``spec`` as ``attack`` forges
    it, given the honest ``trajectory`` (the initial state, then each interval's):

    * ``skip-steps``: from the honest state, half the interval's steps run (the cheating
      node's ``skip-steps``), all claimed;
    * ``interpolate``: no step run, the previous interval's update added again (the
      cheating node's ``interpolate``; interval 0, with none before it, stays put);
    * ``backfit``: a trajectory fitted backwards from the final state, every state on
      the line from the initial one to it (``i / N`` of the way), its step as if honest.
    """
    from ..workloads._kind_train import train_steps

    start, steps = interval_bounds(spec.total_steps, _every(spec))[index]
    before = trajectory[index]
    if attack == "skip-steps":
        one = _one_interval(spec, start, steps, before)
        fabricate = {"mode": "skip-steps", "rate": 1.0, "seed": 0}
        first = None if start == 0 else before
        (after,) = train_steps(one, first, x, y, fabricate=fabricate)
        return before, after
    if attack == "interpolate":
        after = _at(before, start + steps)
        if index > 0:
            after[_HEADER:] += before[_HEADER:] - trajectory[index - 1][_HEADER:]
        return before, after
    if attack == "backfit":
        n = len(trajectory) - 1
        first, last = trajectory[0], trajectory[n]

        def fitted(i: int) -> np.ndarray:
            state = _at(trajectory[i], start if i == index else start + steps)
            state[_HEADER:] = first[_HEADER:] + (last[_HEADER:] - first[_HEADER:]) * (i / n)
            return state

        return fitted(index), fitted(index + 1)
    raise ValueError(f"unknown attack {attack!r}; one of {', '.join(ATTACKS)}")


def calibrate_pol(
    spec: TrainSpec,
    x: np.ndarray,
    y: np.ndarray,
    intervals: int,
    threads: Sequence[int] = (1, 2, 4),
) -> PolCalibration:
    """Train the first ``intervals`` intervals of the run ``spec`` with one thread,
    replay each with every count of ``threads``, and forge each with every attack
    (``spoof``): the largest honest distances and the smallest forged ones."""
    from ..workloads._kind_train import initial_state, params_of, torch_threads, train_steps

    k = _every(spec)
    steps = min(intervals * k, spec.total_steps)
    run = _one_interval(spec, 0, steps, initial_state(spec), interval=k)
    with torch_threads(1):
        trajectory = [initial_state(spec), *train_steps(run, None, x, y)]
    n = len(trajectory) - 1

    def distance(before: np.ndarray, after: np.ndarray, replayed: np.ndarray) -> float:
        p = params_of(spec, before), params_of(spec, after), params_of(spec, replayed)
        return param_distance(*p)

    honest = {
        t: max(
            distance(
                trajectory[i],
                trajectory[i + 1],
                replay_interval(spec, x, y, trajectory[i], threads=t),
            )
            for i in range(n)
        )
        for t in threads
    }
    attacks = {}
    for attack in ATTACKS:
        forged = []
        for i in range(n):
            before, after = spoof(attack, spec, x, y, trajectory, i)
            replayed = (
                trajectory[i + 1] if attack != "backfit" else replay_interval(spec, x, y, before)
            )
            forged.append(distance(before, after, replayed))
        attacks[attack] = min(forged)
    family = spec.model.family
    return PolCalibration(family, spec.optimizer, k, n, honest, attacks)


#: the networks ``digits_calibration`` measures, one per family
DIGITS_MODELS: dict[str, dict[str, object]] = {
    "mlp": {"family": "mlp", "inputs": 64, "hidden": [32], "classes": 10},
    "cnn": {"family": "cnn", "channels": 1, "height": 8, "width": 8, "conv": [4, 8], "classes": 10},
    "transformer": {
        "family": "transformer",
        "vocab": 17,
        "seq": 8,
        "d_model": 16,
        "heads": 2,
        "layers": 2,
        "ff": 32,
        "classes": 10,
    },
}


def digits_data(family: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits (packaged, no download) shaped for ``family``:
    64 pixels in [0, 1] (mlp), a 1x8x8 image (cnn), or 8 tokens in 0..16, each image
    row's pixel sum doubled and floored (transformer)."""
    from sklearn.datasets import load_digits

    pixels, labels = load_digits(return_X_y=True)
    x = (pixels / 16.0).astype(np.float32)
    y = labels.astype(np.int64)
    if family == "cnn":
        return x.reshape(-1, 1, 8, 8), y
    if family == "transformer":
        return np.minimum(np.floor(2 * x.reshape(-1, 8, 8).sum(axis=2)), 16).astype(np.int64), y
    return x, y


def digits_calibration(
    *,
    families: Sequence[str] = ("mlp", "cnn", "transformer"),
    ks: Sequence[int] = (1, 4, 16),
    intervals: int = 5,
    threads: Sequence[int] = (1, 2, 4),
    optimizer: str = "adam",
    schedule: str = "cosine",
) -> list[PolCalibration]:
    """``calibrate_pol`` for each family of ``DIGITS_MODELS`` and interval length in
    ``ks``: runs of ``intervals * k`` steps, batch 32, seed 3, learning rate 0.01 (adam)
    or 0.1 (sgd), on ``digits_data``."""
    from ..workloads._kind_train import TrainSpec

    out = []
    for family in families:
        x, y = digits_data(family)
        for k in ks:
            spec = TrainSpec.model_validate(
                {
                    "model": DIGITS_MODELS[family],
                    "optimizer": optimizer,
                    "lr": 0.01 if optimizer == "adam" else 0.1,
                    "schedule": schedule,
                    "total_steps": intervals * k,
                    "batch": 32,
                    "seed": 3,
                    "data": "0" * 64,
                    "start": 0,
                    "steps": intervals * k,
                    "interval": k,
                }
            )
            out.append(calibrate_pol(spec, x, y, intervals, threads))
    return out
