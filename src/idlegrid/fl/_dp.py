"""Client-level differential privacy (DP-FedAvg) and its privacy accountant.

The scheme is Flower's *client-side fixed clipping* (McMahan et al., 2018,
arxiv.org/abs/1710.06963): each client clips its update ``params - global`` to L2
norm ``clip`` before sending it (``clip_update``); the server averages the clipped
weights and adds Gaussian noise of std ``noise_multiplier * clip / sampled``
(``noise_mean``). The clipping and the std are Flower's own functions
(``flwr.supercore.differential_privacy``); the noise is drawn from a
``numpy.random.Generator`` we are given, where Flower draws from numpy's global state,
so a run can be reproduced from its seed.

``z * C / n`` is the sensitivity of the *unweighted* mean of n clipped updates: a DP
run must weigh its clients alike (the same ``examples`` for every result), or one
client's share of the mean, and so what it can reveal, exceeds ``1/n``.

``PrivacyAccountant`` counts the privacy spent over rounds with opacus's RDP
accountant (one round is one step of the subsampled Gaussian mechanism, with
``sample_rate`` the share of clients sampled). It searches more Rényi orders than
opacus's default (up to 1024), so that a strongly private run gets a tight bound
instead of opacus's "optimal order is the largest alpha" warning.
"""

from __future__ import annotations

import copy
import importlib
import math
import numbers
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.supercore.differential_privacy import compute_clip_model_update, compute_stdv, get_norm

from .._exceptions import ConfigError, InvalidInput

__all__ = ["ALPHAS", "PrivacyAccountant", "clip_update", "noise_mean"]

Vector = npt.NDArray[np.float32]

#: the Rényi orders searched: opacus's defaults, then larger ones for small epsilons
ALPHAS: tuple[float, ...] = (
    *(1 + x / 10.0 for x in range(1, 100)),
    *range(12, 64),
    *range(64, 128, 4),
    *range(128, 1025, 32),
)


def clip_update(params: Vector, global_params: Vector, clip: float) -> tuple[Vector, float]:
    """``params`` with its update ``params - global_params`` scaled to L2 norm <= ``clip``.

    Returns the clipped weights (float32) and the update's norm before clipping. An
    update already within ``clip`` comes back unchanged (a copy); a longer one keeps its
    direction (Flower's ``compute_clip_model_update``, computed in float64).
    """
    clip = _positive(clip, "clip")
    new = _floats(params, "params")
    old = _floats(global_params, "global params")
    if new.shape != old.shape:
        raise InvalidInput(
            f"params {list(new.shape)} and global params {list(old.shape)} differ in shape"
        )
    wide, base = new.astype(np.float64), old.astype(np.float64)
    norm = get_norm([wide - base])
    if norm <= clip:
        return new.astype(np.float32, copy=True), norm
    clipped = [wide]
    compute_clip_model_update(clipped, [base], clip)
    return clipped[0].astype(np.float32), norm


def noise_mean(
    mean: Vector,
    *,
    noise_multiplier: float,
    clip: float,
    sampled: int,
    rng: np.random.Generator,
) -> Vector:
    """``mean`` plus Gaussian noise of std ``noise_multiplier * clip / sampled`` (float32).

    ``sampled`` is the number of clients sampled for the round (Flower's
    ``compute_stdv``), not the number that answered: fewer answers mean a larger
    share for each, which this noise does not cover.
    """
    noise_multiplier = _positive(noise_multiplier, "noise_multiplier")
    clip = _positive(clip, "clip")
    if isinstance(sampled, bool) or not isinstance(sampled, numbers.Integral) or sampled < 1:
        raise InvalidInput(f"sampled must be an integer >= 1, got {sampled!r}")
    if not isinstance(rng, np.random.Generator):
        raise InvalidInput(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    values = _floats(mean, "mean")
    std = compute_stdv(noise_multiplier, clip, int(sampled))
    noise = rng.normal(0.0, std, values.shape)
    return (values.astype(np.float64) + noise).astype(np.float32)


class PrivacyAccountant:
    """The (epsilon, delta) a DP-FedAvg run has spent, after opacus's ``RDPAccountant``.

    ``budget`` (an epsilon, or ``None`` for no limit) is what ``allows_round`` checks:
    a round is allowed only if the epsilon after it stays within the budget.
    """

    def __init__(
        self,
        noise_multiplier: float,
        sample_rate: float,
        delta: float,
        budget: float | None = None,
    ) -> None:
        self.noise_multiplier = _positive(noise_multiplier, "noise_multiplier")
        self.sample_rate = _real(sample_rate, "sample_rate")
        if not 0 < self.sample_rate <= 1:
            raise InvalidInput(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        self.delta = _real(delta, "delta")
        if not 0 < self.delta < 1:
            raise InvalidInput(f"delta must be in (0, 1), got {delta!r}")
        self.budget = None if budget is None else _positive(budget, "budget")
        self._accountant = _rdp_accountant()

    @property
    def rounds(self) -> int:
        """The rounds spent so far."""
        return sum(steps for _, _, steps in self._accountant.history)

    def epsilon(self) -> float:
        """The epsilon spent so far (0.0 before any round)."""
        return _epsilon(self._accountant, self.delta)

    def epsilon_after(self, rounds: int = 1) -> float:
        """The epsilon after ``rounds`` more rounds; nothing is spent."""
        if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 0:
            raise InvalidInput(f"rounds must be an integer >= 0, got {rounds!r}")
        future = copy.deepcopy(self._accountant)
        for _ in range(int(rounds)):
            self._step(future)
        return _epsilon(future, self.delta)

    def allows_round(self) -> bool:
        """Whether one more round keeps the spent epsilon within the budget."""
        return self.budget is None or self.epsilon_after(1) <= self.budget

    def spend(self) -> None:
        """Record one round."""
        self._step(self._accountant)

    def describe(self) -> dict[str, float | int | None]:
        """The settings and what is spent, for the run's lineage."""
        return {
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "delta": self.delta,
            "budget": self.budget,
            "rounds": self.rounds,
            "epsilon": self.epsilon(),
        }

    def _step(self, accountant: Any) -> None:
        try:
            accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        except (ValueError, ArithmeticError) as exc:
            raise InvalidInput(f"the privacy accountant refused the round: {exc}") from exc


def _rdp_accountant() -> Any:
    """A new opacus ``RDPAccountant`` (opacus imports torch: only when one is needed)."""
    try:
        accountants = importlib.import_module("opacus.accountants")
    except ImportError as exc:
        raise ConfigError("privacy accounting needs opacus: pip install 'idlegrid[fl]'") from exc
    return accountants.RDPAccountant()


def _epsilon(accountant: Any, delta: float) -> float:
    try:
        return float(accountant.get_epsilon(delta, alphas=list(ALPHAS)))
    except (ValueError, ArithmeticError) as exc:
        raise InvalidInput(f"the privacy accountant cannot compute epsilon: {exc}") from exc


def _real(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidInput(f"{what} must be finite, got {value!r}")
    return float(value)


def _positive(value: object, what: str) -> float:
    number = _real(value, what)
    if number <= 0:
        raise InvalidInput(f"{what} must be > 0, got {value!r}")
    return number


def _floats(x: object, what: str) -> npt.NDArray[np.floating[Any]]:
    if not isinstance(x, np.ndarray) or x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
        got = f"{x.dtype} {list(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
        raise InvalidInput(f"{what}: expected a float32 [P] vector, got {got}")
    if not np.isfinite(x).all():
        raise InvalidInput(f"{what}: has NaN or infinite values")
    return x
