"""A TESTING AID: a node that lies about a fraction of its results, on purpose.

``idlegrid node start --cheat-rate F --cheat-mode MODE [--cheat-after N]`` makes a
node answer a fraction ``F`` of its successful jobs wrongly, optionally only after
``N`` honest ones (the on-off attack on a reputation). It exists so that tests and
``bench verify`` can show that verification catches a cheater; a real provider has
no reason to run it, and the node logs a loud warning when it is on.

The lie is told where an honest node bills and hashes its output, so the node signs
its receipt over what it returns: a cheater signs its lie, and the receipt is the
evidence against it. Modes:

* ``random``: random values of the declared dtype and shape;
* ``noise``: the honest output plus noise just beyond the kind's tolerance (the
  smallest the kind's ``close_enough`` refuses, within 2x: ``trust.just_beyond``);
* ``skip``: zeros of the declared dtype and shape, as if the work were skipped (the
  aid runs the job to learn the shape; a client sees the same as from a real skip);
* ``stale``: an older output of the same dtype and row shape, its rows repeated to
  the job's row count (the first such job is answered honestly: nothing to replay);
* ``skip-steps`` and ``interpolate``: for ``train`` jobs only (other kinds are answered
  honestly), the worker fabricates a fraction ``F`` of a run's checkpoint intervals,
  running half of an interval's steps or none (adding the previous update again) while
  claiming them all; the intervals are drawn from the aid's seed, the run's seed and the
  interval's index, so a test knows which were fabricated (``train_steps`` in
  ``workloads/_kind_train.py``).

The choice of which jobs to cheat on uses the object's own seeded generator, so a
test sees the same sequence every run.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = ["CHEAT_MODES", "Cheat"]

#: modes that fabricate training (the worker does it) rather than tamper with outputs;
#: ``sign-flip`` is a federated client's poisoning: it sends its update reversed
TRAIN_MODES = ("skip-steps", "interpolate", "sign-flip")
CHEAT_MODES = ("random", "noise", "skip", "stale", *TRAIN_MODES)


class Cheat:
    """Decides, job by job, whether to lie and how (a pure object but for its RNG)."""

    def __init__(self, rate: float, mode: str, *, after: int = 0, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("cheat rate must be within [0, 1]")
        if mode not in CHEAT_MODES:
            raise ValueError(f"cheat mode must be one of {', '.join(CHEAT_MODES)}")
        if after < 0:
            raise ValueError("cheat after must be >= 0")
        self.rate, self.mode, self.after = rate, mode, after
        self.seed = seed or 0
        self._rng = np.random.default_rng(seed)
        self._jobs = 0
        #: jobs answered wrongly so far
        self.lies = 0
        self._older: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}

    def fabrication(self) -> dict[str, Any] | None:
        """How a ``train`` worker fabricates intervals (``train_steps``), or None."""
        if self.mode not in TRAIN_MODES:
            return None
        return {"mode": self.mode, "rate": self.rate, "seed": self.seed}

    def tamper(self, workload: Any, output: bytes) -> bytes:
        """The ``.npy`` output the node returns for a job whose honest output is
        ``output``: the same bytes, or a lie."""
        if self.mode in TRAIN_MODES:
            return output  # the worker fabricates; other kinds are answered honestly
        self._jobs += 1
        lie = self._jobs > self.after and self._rng.random() < self.rate
        honest = np.load(io.BytesIO(output), allow_pickle=False)
        if honest.ndim == 0:
            return output
        key = (honest.dtype.str, tuple(honest.shape[1:]))
        older = self._older.get(key)
        self._older[key] = honest
        if not lie:
            return output
        wrong = self._wrong(workload, honest, older)
        if wrong is None:
            return output
        self.lies += 1
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(wrong), allow_pickle=False)
        return buf.getvalue()

    def _wrong(self, workload: Any, honest: np.ndarray, older: np.ndarray | None) -> Any:
        rng = self._rng
        if self.mode == "skip":
            return np.zeros_like(honest)
        if self.mode == "noise":
            from ..verify import just_beyond

            return just_beyond(workload, honest, rng)
        if self.mode == "stale":
            if older is None:
                return None
            return np.take(older, np.arange(honest.shape[0]) % older.shape[0], axis=0)
        kind = honest.dtype.kind
        if kind in "fc":
            return rng.random(honest.shape).astype(honest.dtype)
        if kind == "b":
            return rng.random(honest.shape) < 0.5
        low, high = (int(honest.min()), int(honest.max()) + 2) if honest.size else (0, 2)
        return rng.integers(low, high, honest.shape).astype(honest.dtype)
