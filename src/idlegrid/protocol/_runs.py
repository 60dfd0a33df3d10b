"""The wire model of a node-driven run (``POST /v1/runs``): a long kind's first segment
and how the node goes on from it (see ``docs/network.md``, "Long-running jobs")."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

from ._jobs import ChannelModel, KindName, Uint, VoucherModel, _Model

__all__ = ["RunRequest"]


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
