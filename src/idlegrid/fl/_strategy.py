"""Aggregation strategies: Flower's own, behind one small interface.

The coordinator calls ``configure_fit``, ``aggregate_fit`` (or ``aggregate_mean``
under secure aggregation) and never asks which strategy it holds. Each strategy here
is an adapter: the maths and the server state (FedAdam's moments and current
weights) live in Flower's legacy strategy objects (``flwr.server.strategy``); this
module only converts our flat float32 vectors to Flower's ``FitRes`` and back, checks
inputs first, and turns Flower's errors into ``InvalidInput``.

A model travels as ONE flat float32 vector ``[P]``, handed to Flower as NDArrays
``[vector]``: every rule used here is element-wise (mean, Adam, trimmed mean, median)
or distance-based (Krum), so one flat "layer" gives exactly Flower's result.

Names and options (``make_strategy(name, **options)``):

* ``fedavg``: the example-weighted mean (Flower ``FedAvg``).
* ``fedprox``: FedAvg that sends ``proximal_mu`` to the clients (``mu``, Flower ``FedProx``).
* ``fedadam``: an Adam step on the server from the weighted mean (``eta``, ``eta_l``,
  ``beta_1``, ``beta_2``, ``tau``, Flower ``FedAdam``; ``eta_l`` is recorded only).
* ``trimmed-mean``: coordinate-wise mean without the ``beta`` share of each tail
  (Flower ``FedTrimmedAvg``; ``int(beta * n)`` values are cut at each end).
* ``median``: the coordinate-wise median (Flower ``FedMedian``).
* ``krum``: the update closest to its ``n - f - 2`` neighbours (``byzantine``: f);
  with ``keep`` m > 0, the weighted mean of the m best (multi-Krum). Needs n > 2f + 2.

The last three are *robust*: they need each update in the clear, so they refuse the
secure-aggregation path, where only the weighted mean is known.

Ours, not Flower's: the interface, the input checks, the option checks, and the
one-client ``ClientManager`` through which Flower's ``configure_fit`` produces the
round's config. We pass Flower a metrics aggregation function (ours does nothing: the
coordinator reports metrics itself) because without one Flower logs a warning in round 1.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
from flwr.common import (
    Code,
    FitRes,
    Parameters,
    Scalar,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server import strategy as flower
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy

from .._exceptions import InvalidInput

if TYPE_CHECKING:
    from flwr.common import (
        DisconnectRes,
        EvaluateIns,
        EvaluateRes,
        FitIns,
        GetParametersIns,
        GetParametersRes,
        GetPropertiesIns,
        GetPropertiesRes,
        ReconnectIns,
    )
    from flwr.server.criterion import Criterion

__all__ = ["STRATEGIES", "FitResult", "Strategy", "make_strategy"]

Vector = npt.NDArray[np.float32]

#: the client name Flower sees for the one pseudo-result of the secure-aggregation path
_SECURE_MEAN = "secure-aggregation"


@dataclass(frozen=True)
class FitResult:
    """One client's answer to a fit round."""

    client: str
    """The edge node's address."""
    params: Vector
    """float32 ``[P]``: the client's weights after local training."""
    examples: int
    """The local examples it trained on: its weight in the mean."""
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Option:
    default: float
    rule: str  # the allowed range, in words, for the error
    ok: Callable[[float], bool]
    integer: bool = False


class Strategy(ABC):
    """How the server turns the clients' weights into the next global model."""

    name: ClassVar[str]
    #: needs each client's update in the clear (refuses secure aggregation)
    robust: ClassVar[bool] = False
    _options: ClassVar[Mapping[str, _Option]] = {}

    def __init__(self, **options: Any) -> None:
        self.options: Mapping[str, float | int] = MappingProxyType(
            _check_options(self.name, self._options, options)
        )
        self._size: int | None = None
        self._flower = self._build()

    @abstractmethod
    def _build(self) -> flower.FedAvg:
        """The Flower strategy that does the work (every one used is a ``FedAvg``)."""

    def _start(self, params: Vector) -> None:
        """Take ``params`` as the starting global model (a hook for stateful strategies)."""
        return None

    def _check_count(self, n: int) -> None:
        """Refuse a round with ``n`` results that the rule cannot handle."""
        return None

    def configure_fit(self, rnd: int) -> dict[str, float | int | str]:
        """The config sent to every client this round, from Flower's ``configure_fit``."""
        _check_round(rnd)
        empty = Parameters(tensors=[], tensor_type="numpy.ndarray")
        [(_, fit_ins)] = self._flower.configure_fit(rnd, empty, _OneClient())
        return {k: v for k, v in fit_ins.config.items() if isinstance(v, int | float | str)}

    def initialize(self, params: Vector) -> None:
        """Start from ``params``: its size is checked from now on; FedAdam steps from it."""
        _vector(params, "initial params")
        self._size = int(params.size)
        self._start(params)

    def aggregate_fit(
        self, rnd: int, params: Vector, results: Sequence[FitResult], failures: int
    ) -> Vector:
        """The new global float32 ``[P]`` from the clients' weights.

        ``params`` is the current global model; a strategy not yet initialized starts
        from it. FedAdam steps from its own current weights (Flower keeps them: the
        model it returned last), so ``params`` should be that model. ``failures``
        counts the clients that did not answer: like Flower's default
        (``accept_failures=True``), a round with failures still aggregates.
        """
        _check_round(rnd)
        size = self._global(params)
        if isinstance(failures, bool) or not isinstance(failures, numbers.Integral):
            raise InvalidInput(f"failures must be an integer, got {failures!r}")
        if failures < 0:
            raise InvalidInput(f"failures must be >= 0, got {failures}")
        if not results:
            raise InvalidInput(f"{self.name}: no client results to aggregate in round {rnd}")
        self._check_count(len(results))
        fit = [_fit_res(r, size) for r in results]
        return self._run(rnd, fit, int(failures), size)

    def aggregate_mean(self, rnd: int, params: Vector, mean: Vector, examples: int) -> Vector:
        """The new global model when only the clients' weighted mean is known.

        The secure-aggregation path: the mean goes to Flower as the round's only
        result, whose weighted mean is itself, so FedAvg and FedProx return it and
        FedAdam takes its Adam step from it. Robust strategies refuse.
        """
        if self.robust:
            raise InvalidInput(
                f"{self.name} needs single updates; turn secure aggregation off "
                "or choose fedavg, fedprox or fedadam"
            )
        _check_round(rnd)
        size = self._global(params)
        _vector(mean, "the aggregated mean", size)
        result = FitResult(client=_SECURE_MEAN, params=mean, examples=examples)
        return self._run(rnd, [_fit_res(result, size)], 0, size)

    def evaluate(self, rnd: int, params: Vector) -> None:
        """Nothing: the coordinator evaluates, it holds the sponsor's validation set."""
        return None

    def describe(self) -> dict[str, Any]:
        """The name and options, for the run's lineage and spec."""
        return {"name": self.name, **self.options}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"make_strategy({self.name!r}{', ' if options else ''}{options})"

    def _global(self, params: Vector) -> int:
        _vector(params, "global params", self._size)
        if self._size is None:
            self.initialize(params)
        return int(params.size)

    def _run(
        self, rnd: int, fit: list[tuple[ClientProxy, FitRes]], failures: int, size: int
    ) -> Vector:
        failed: list[tuple[ClientProxy, FitRes] | BaseException] = [
            RuntimeError("the client did not answer") for _ in range(failures)
        ]
        try:
            parameters, _ = self._flower.aggregate_fit(rnd, fit, failed)
        except (ValueError, ArithmeticError, IndexError) as exc:
            raise InvalidInput(f"{self.name} could not aggregate round {rnd}: {exc}") from exc
        if parameters is None:
            raise InvalidInput(f"{self.name} returned no model for round {rnd}")
        layers = parameters_to_ndarrays(parameters)
        out = np.asarray(layers[0], dtype=np.float32) if len(layers) == 1 else None
        if out is None or out.shape != (size,) or not np.isfinite(out).all():
            raise InvalidInput(f"{self.name} produced no finite float32 [{size}] in round {rnd}")
        return out


class _FedAvg(Strategy):
    """The example-weighted mean of the clients' weights (McMahan et al., 2017)."""

    name = "fedavg"

    def _build(self) -> flower.FedAvg:
        return flower.FedAvg(**_FLOWER_DEFAULTS)


class _FedProx(Strategy):
    """FedAvg, with the clients' loss given ``mu/2 * |w - w_global|^2`` (Li et al., 2020)."""

    name = "fedprox"
    _options: ClassVar[Mapping[str, _Option]] = {
        "mu": _Option(0.01, "a finite number >= 0", lambda v: v >= 0)
    }

    def _build(self) -> flower.FedAvg:
        return flower.FedProx(proximal_mu=float(self.options["mu"]), **_FLOWER_DEFAULTS)


class _FedAdam(Strategy):
    """Adam on the server, the weighted mean minus the global model as its gradient.

    Flower's ``FedAdam`` keeps the current weights and both moments across rounds,
    and bias-corrects its step with ``server_round + 1`` (Reddi et al., 2021).
    """

    name = "fedadam"
    _options: ClassVar[Mapping[str, _Option]] = {
        "eta": _Option(0.1, "> 0", lambda v: v > 0),
        "eta_l": _Option(0.1, "> 0", lambda v: v > 0),
        "beta_1": _Option(0.9, "in [0, 1)", lambda v: 0 <= v < 1),
        "beta_2": _Option(0.99, "in [0, 1)", lambda v: 0 <= v < 1),
        "tau": _Option(1e-9, "> 0", lambda v: v > 0),
    }

    def _build(self) -> flower.FedAvg:
        # FedOpt needs a model now: an empty one until ``initialize`` gives the real one
        nothing = ndarrays_to_parameters([np.zeros(0, dtype=np.float32)])
        option = self.options
        return flower.FedAdam(
            initial_parameters=nothing,
            eta=float(option["eta"]),
            eta_l=float(option["eta_l"]),
            beta_1=float(option["beta_1"]),
            beta_2=float(option["beta_2"]),
            tau=float(option["tau"]),
            **_FLOWER_DEFAULTS,
        )

    def _start(self, params: Vector) -> None:
        fedadam = self._flower
        assert isinstance(fedadam, flower.FedAdam)
        fedadam.current_weights = [params.astype(np.float32, copy=True)]
        fedadam.m_t = None
        fedadam.v_t = None


class _TrimmedMean(Strategy):
    """The coordinate-wise mean after cutting ``int(beta * n)`` values at each end."""

    name = "trimmed-mean"
    robust = True
    _options: ClassVar[Mapping[str, _Option]] = {
        "beta": _Option(0.2, "in [0, 0.5)", lambda v: 0 <= v < 0.5)
    }

    def _build(self) -> flower.FedAvg:
        return flower.FedTrimmedAvg(beta=float(self.options["beta"]), **_FLOWER_DEFAULTS)


class _Median(Strategy):
    """The coordinate-wise median (Yin et al., 2018)."""

    name = "median"
    robust = True

    def _build(self) -> flower.FedAvg:
        return flower.FedMedian(**_FLOWER_DEFAULTS)


class _Krum(Strategy):
    """The update with the smallest distance to its ``n - f - 2`` nearest (Blanchard et al.)."""

    name = "krum"
    robust = True
    _options: ClassVar[Mapping[str, _Option]] = {
        "byzantine": _Option(0, "an integer >= 0", lambda v: v >= 0, integer=True),
        "keep": _Option(0, "an integer >= 0 (0: plain Krum)", lambda v: v >= 0, integer=True),
    }

    def _build(self) -> flower.FedAvg:
        return flower.Krum(
            num_malicious_clients=int(self.options["byzantine"]),
            num_clients_to_keep=int(self.options["keep"]),
            **_FLOWER_DEFAULTS,
        )

    def _check_count(self, n: int) -> None:
        f, m = int(self.options["byzantine"]), int(self.options["keep"])
        if n <= 2 * f + 2:
            raise InvalidInput(
                f"krum with byzantine={f} needs more than {2 * f + 2} results, got {n}"
            )
        if m > n:
            raise InvalidInput(f"krum cannot keep {m} of {n} results")


def _no_metrics(_: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
    return {}


# one client per "round" as Flower sees it; our coordinator does the sampling
_FLOWER_DEFAULTS: dict[str, Any] = {
    "min_fit_clients": 1,
    "min_evaluate_clients": 1,
    "min_available_clients": 1,
    "fit_metrics_aggregation_fn": _no_metrics,
}

_REGISTRY: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (_FedAvg, _FedProx, _FedAdam, _TrimmedMean, _Median, _Krum)
}

#: the names ``make_strategy`` knows
STRATEGIES: tuple[str, ...] = tuple(_REGISTRY)


def make_strategy(name: str, **options: Any) -> Strategy:
    """The strategy called ``name``, with its options (see the module docstring)."""
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidInput(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    return cls(**options)


def _check_options(
    name: str, known: Mapping[str, _Option], given: Mapping[str, Any]
) -> dict[str, float | int]:
    unknown = sorted(set(given) - set(known))
    if unknown:
        valid = ", ".join(known) or "none"
        raise InvalidInput(f"strategy {name!r} has no option {unknown[0]!r}; its options: {valid}")
    values: dict[str, float | int] = {}
    for key, option in known.items():
        value = given.get(key, option.default)
        number = _number(value, integer=option.integer)
        if number is None or not option.ok(number):
            raise InvalidInput(f"{name} option {key}={value!r}: must be {option.rule}")
        values[key] = number
    return values


def _number(value: object, *, integer: bool) -> float | int | None:
    """``value`` as an int (or a finite float), or None if it is not one."""
    if isinstance(value, bool):
        return None
    if integer:
        return int(value) if isinstance(value, numbers.Integral) else None
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return float(value)
    return None


def _check_round(rnd: int) -> None:
    if isinstance(rnd, bool) or not isinstance(rnd, numbers.Integral) or rnd < 1:
        raise InvalidInput(f"the round must be an integer >= 1, got {rnd!r}")


def _vector(x: object, what: str, size: int | None = None) -> Vector:
    shape = f"[{size}]" if size is not None else "[P]"
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 1:
        got = f"{x.dtype} {list(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
        raise InvalidInput(f"{what}: expected a float32 {shape} vector, got {got}")
    if size is not None and x.size != size:
        raise InvalidInput(f"{what}: expected float32 {shape}, got [{x.size}]")
    if x.size == 0:
        raise InvalidInput(f"{what}: the vector is empty")
    if not np.isfinite(x).all():
        raise InvalidInput(f"{what}: has NaN or infinite values")
    return x


def _fit_res(result: FitResult, size: int) -> tuple[ClientProxy, FitRes]:
    if not isinstance(result, FitResult):
        raise InvalidInput(f"expected a FitResult, got {type(result).__name__}")
    who = f"the result of {result.client!r}"
    params = _vector(result.params, who, size)
    examples = result.examples
    if isinstance(examples, bool) or not isinstance(examples, numbers.Integral) or examples < 1:
        raise InvalidInput(f"{who}: examples must be an integer >= 1, got {examples!r}")
    res = FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters([params]),
        num_examples=int(examples),
        metrics=dict(result.metrics),
    )
    return _Result(str(result.client)), res


_STAND_IN = "a result's stand-in: the coordinator talks to the clients"


class _Result(ClientProxy):
    """Names the client of a result; Flower's aggregation never calls it."""

    def get_properties(
        self, ins: GetPropertiesIns, timeout: float | None, group_id: int | None
    ) -> GetPropertiesRes:
        raise NotImplementedError(_STAND_IN)

    def get_parameters(
        self, ins: GetParametersIns, timeout: float | None, group_id: int | None
    ) -> GetParametersRes:
        raise NotImplementedError(_STAND_IN)

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None) -> FitRes:
        raise NotImplementedError(_STAND_IN)

    def evaluate(
        self, ins: EvaluateIns, timeout: float | None, group_id: int | None
    ) -> EvaluateRes:
        raise NotImplementedError(_STAND_IN)

    def reconnect(
        self, ins: ReconnectIns, timeout: float | None, group_id: int | None
    ) -> DisconnectRes:
        raise NotImplementedError(_STAND_IN)


class _OneClient(ClientManager):
    """A client pool of one, so Flower's ``configure_fit`` yields exactly one config."""

    def __init__(self) -> None:
        self._client = _Result("config")

    def num_available(self) -> int:
        return 1

    def register(self, client: ClientProxy) -> bool:
        return False

    def unregister(self, client: ClientProxy) -> None:
        return None

    def all(self) -> dict[str, ClientProxy]:
        return {self._client.cid: self._client}

    def wait_for(self, num_clients: int, timeout: int) -> bool:
        return num_clients <= 1

    def sample(
        self,
        num_clients: int,
        min_num_clients: int | None = None,
        criterion: Criterion | None = None,
    ) -> list[ClientProxy]:
        return [self._client]
