"""A federated run's spec: what ``idlegrid fl start SPEC.yaml`` reads.

```yaml
model: {family: mlp, inputs: 64, hidden: [64], classes: 10}
dataset: digits            # the name edge nodes advertise for their local data
strategy: {name: fedavg}   # fedprox {mu}, fedadam {eta, ...}, trimmed-mean {beta}, median, krum {f}
rounds: 20
clients_per_round: 10
min_clients: 5             # a round closes at its deadline with at least this many
deadline_s: 60
local: {epochs: 2, batch: 32, lr: 0.1, optimizer: sgd}
secagg: false              # SecAgg+ masks (the coordinator sees only the sum)
payout: run                # data rewards netted and posted once; round: each round (secagg)
dp: {clip: 1.0, noise_multiplier: 1.0, delta: 1.0e-5, epsilon: 8.0}   # or omitted
seed: 0
```
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from .._exceptions import InvalidInput
from ..workloads._kind_fl import DATASET_NAME, MAX_ROSTER
from ..workloads._train_models import ModelSpec

__all__ = ["DpSpec", "FederatedSpec", "LocalSpec", "StrategySpec", "load_spec"]

#: bytes a spec file may have
MAX_SPEC_BYTES = 64 * 2**10
#: reads ``secagg`` as the field does (YAML's and pydantic's words for true and false)
_BOOL = TypeAdapter(bool)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StrategySpec(_Strict):
    name: str = "fedavg"
    options: dict[str, float | int] = Field(default_factory=dict)


class LocalSpec(_Strict):
    """Each client's training per round."""

    epochs: int = Field(default=1, ge=1, le=100)
    batch: int = Field(default=32, ge=1, le=4096)
    lr: float = Field(default=0.1, gt=0, le=10)
    optimizer: Literal["sgd", "adam"] = "sgd"


class DpSpec(_Strict):
    """Client-level DP (DP-FedAvg): clip each update to ``clip``, add Gaussian noise
    of ``noise_multiplier * clip / clients`` to the mean; stop before ε at δ passes
    ``epsilon``."""

    clip: float = Field(gt=0, le=1e6)
    noise_multiplier: float = Field(gt=0, le=1e3)
    delta: float = Field(default=1e-5, gt=0, lt=1)
    epsilon: float = Field(gt=0, le=1e4, description="the privacy budget")


class FederatedSpec(_Strict):
    model: ModelSpec
    dataset: str = Field(pattern=DATASET_NAME)
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    rounds: int = Field(ge=1, le=10_000)
    clients_per_round: int = Field(ge=1, le=MAX_ROSTER)
    min_clients: int = Field(default=1, ge=1, le=MAX_ROSTER)
    deadline_s: float = Field(default=120.0, gt=0, le=86_400)
    local: LocalSpec = Field(default_factory=LocalSpec)
    secagg: bool = False
    #: SecAgg+: the share of sampled clients that may drop and still be unmasked
    secagg_dropout: float = Field(default=0.3, ge=0, lt=0.5)
    dp: DpSpec | None = None
    seed: int = Field(default=0, ge=0, lt=2**63)
    #: stop once the global model reaches this validation accuracy (None: run all rounds)
    target_accuracy: float | None = Field(default=None, gt=0, le=1)
    #: an update whose distance from the global model is above this is refused
    max_update_norm: float = Field(default=1e3, gt=0)
    #: how data contributors are paid (when the run funds rewards): ``run`` (the default
    #: of a clear run), the whole budget by each client's contributions netted over the
    #: run, posted once at its end (a round a client hurt offsets one it helped);
    #: ``round`` (the default, and the only payout, of a secure run), each round's part
    #: by that round's positive contributions, posted as the round ends
    payout: Literal["round", "run"] = "run"

    @model_validator(mode="before")
    @classmethod
    def _default_payout(cls, data: Any) -> Any:
        """A spec that names no payout gets ``run``, or ``round`` with ``secagg``."""
        if isinstance(data, dict) and "payout" not in data:
            try:
                secagg = _BOOL.validate_python(data.get("secagg", False))
            except ValidationError:
                return data  # the field's own check names it
            return {**data, "payout": "round" if secagg else "run"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> FederatedSpec:
        if self.min_clients > self.clients_per_round:
            raise ValueError("min_clients is more than clients_per_round")
        if self.secagg and self.payout == "run":
            raise ValueError(
                "payout: run nets each client's contributions over clear rounds; a secure "
                "run's contributions are already fitted over its rounds (use payout: round)"
            )
        if self.secagg and self.clients_per_round < 3:
            raise ValueError("secure aggregation needs at least 3 clients per round")
        from ._strategy import make_strategy

        try:
            strategy = make_strategy(self.strategy.name, **self.strategy.options)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from exc
        if self.secagg and strategy.robust:
            raise ValueError(
                f"strategy {self.strategy.name} needs each client's update; secure "
                "aggregation hides them (use fedavg, fedprox or fedadam, or turn secagg off)"
            )
        return self

    def spec_hash(self) -> bytes:
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).digest()


def load_spec(source: str | Path | dict[str, Any]) -> FederatedSpec:
    """A spec from a YAML file, YAML text or a dict; InvalidInput naming the first
    bad field."""
    if isinstance(source, dict):
        raw: Any = source
    else:
        text = source
        if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source):
            path = Path(source)
            if path.stat().st_size > MAX_SPEC_BYTES:
                raise InvalidInput(f"{path} is larger than {MAX_SPEC_BYTES} bytes")
            text = path.read_text()
        try:
            raw = yaml.safe_load(str(text))
        except yaml.YAMLError as exc:
            raise InvalidInput(f"the spec is not YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput("a federated spec is a mapping (model, dataset, rounds, ...)")
    try:
        return FederatedSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        raise InvalidInput(f"federated spec: {where + ': ' if where else ''}{err['msg']}") from exc
