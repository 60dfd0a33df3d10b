"""The wire model of a node-driven run (``POST /v1/runs``): a long kind's first segment
and how the node goes on from it (see ``docs/network.md``, "Long-running jobs")."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints

from ._jobs import ChannelModel, JobResult, KindName, Sha256Hex, Uint, VoucherModel, _Model

__all__ = ["RunProgress", "RunRequest", "RunStarted"]

#: a run's id, as the node makes it (hex)
RunId = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-f]{32}$")]
#: a metric's name: a short identifier
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]


class RunRequest(_Model):
    """A run of a long kind: the spec fields of its first segment (at the top level, as in
    a ``JobRequest``; a resumed run names its checkpoint and start step there), the
    channel that pays it, the price per unit, the units each segment may cost, and the
    steps of the whole run."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: KindName
    channel: ChannelModel
    unit_price: Uint
    max_units: Uint = Field(description="units one segment may cost")
    total_steps: Annotated[int, Field(ge=1, lt=2**48)]
    voucher: VoucherModel | None = None

    def spec_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RunStarted(_Model):
    """The node's answer to ``POST /v1/runs`` (202): where to follow the run."""

    run_id: RunId


class RunProgress(_Model):
    """A ``progress`` event of a run: one segment done, its signed result, and the node's
    report of it. ``result`` is checked like a job's result before it is paid;
    ``metrics`` (the node's own figures, such as the training loss on the data it holds)
    are informative only: the client computes the figures it trusts itself."""

    step: Annotated[int, Field(ge=1, lt=2**48)] = Field(description="the run's step after it")
    total: Annotated[int, Field(ge=1, lt=2**48)]
    units: Uint = Field(description="units billed by this node for the run so far")
    amount: Uint = Field(description="tokens (wei) billed by this node for the run so far")
    checkpoint: Sha256Hex
    metrics: dict[MetricName, float] = Field(default_factory=dict, max_length=32)
    result: JobResult
