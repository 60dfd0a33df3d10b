"""Long-running kinds: a job that runs for minutes, as a sequence of short segments.

A long kind (``LongWorkload``) is an ordinary :class:`~idlegrid.workloads.Workload`
whose job is one *segment*: a checkpoint (its state) in, ``steps`` steps, the next
checkpoint out. Each segment is a short job like any other (one signed request, one
signed receipt, checked and vouchered before the next one starts), so the node and
the executor need nothing new, and a run is paid as it goes: neither side is ever
exposed for more than one segment's work.

A checkpoint is the segment's output, as ``.npy`` bytes, named by its sha256, which is
also the ``result_hash`` of the segment's receipt: the provider signed it. The client
keeps the last one; when its provider dies it uploads that checkpoint to another
provider and goes on from there (``idlegrid.client.Run``).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from ._base import BlobSink, ClientHost, NodeHost, OutputSpec, Spec, Workload

__all__ = ["LongPlan", "LongWorkload", "Segment"]

SpecT = TypeVar("SpecT", bound=Spec)


@dataclass(frozen=True)
class Segment:
    """One segment of a run, as the client sends it: steps ``start`` .. ``start+steps``."""

    start: int
    steps: int
    units: int  # the exact bill (units are counted from the spec, never metered)
    rows: int  # output rows the checkpoint has
    expect: OutputSpec  # what the checkpoint must be


class LongPlan:
    """A client's run of a long kind, once read: what every segment shares."""

    workload: LongWorkload[Any]
    #: steps of the whole run
    total_steps: int
    #: steps per segment (the last one may have fewer)
    segment_steps: int

    def segments(self, start: int = 0) -> list[Segment]:
        """The segments from step ``start`` to the end, in order."""
        out = []
        for first in range(start, self.total_steps, self.segment_steps):
            steps = min(self.segment_steps, self.total_steps - first)
            out.append(self.segment(first, steps))
        return out

    @abstractmethod
    def segment(self, start: int, steps: int) -> Segment:
        """The segment that runs ``steps`` steps from step ``start``."""

    async def upload(self, sink: BlobSink) -> None:
        """Put on a provider, once, what every segment names (a data set)."""

    @abstractmethod
    async def fields(self, segment: Segment, state: bytes | None, sink: BlobSink) -> dict[str, Any]:
        """The spec fields of ``segment`` from checkpoint ``state`` (None: the start),
        uploading the checkpoint to ``sink``."""

    def accept(self, segment: Segment, output: np.ndarray, provider: str, job_id: str) -> None:
        """Record a segment once its result is checked and before it is paid (``train``:
        its checkpoint hashes); raise InvalidInput to refuse it as the provider's fault."""

    def metrics(self, state: bytes) -> dict[str, float]:
        """Metrics of a checkpoint, computed here (the client holds the data)."""
        return {}

    def result(self, state: bytes) -> np.ndarray:
        """The run's result from its last checkpoint."""
        from ..protocol import array_from_npy

        return array_from_npy(state)


class LongWorkload(Workload[SpecT, Any]):
    """A kind whose job is one segment of a long run (see the module's docstring)."""

    long: ClassVar[bool] = True

    @abstractmethod
    async def start(self, client: ClientHost, **options: Any) -> LongPlan:
        """A client's plan for a run; InvalidInput before any segment."""

    def step_after(self, spec: SpecT) -> int:
        """The run's step once the segment ``spec`` is done (node-driven runs)."""
        raise NotImplementedError

    def report(self, spec: SpecT, checkpoint: bytes, node: NodeHost) -> dict[str, float]:
        """The node's figures of a segment's checkpoint (a training loss on the data it
        holds), sent with the run's progress; runs in a thread. Informative only: the
        client computes the figures it trusts itself (``LongPlan.metrics``)."""
        return {}

    def state_digest(self, spec: SpecT, output: bytes) -> str:
        """The sha256 naming the state the run goes on from after the segment ``spec``
        whose output is ``output`` (default: the output itself)."""
        import hashlib

        return hashlib.sha256(output).hexdigest()

    def next_fields(self, spec: SpecT, checkpoint: str, total_steps: int) -> dict[str, Any] | None:
        """A node-driven run's segment after ``spec``, from the checkpoint blob named
        ``checkpoint`` (its sha256); None when the run has its ``total_steps``."""
        from .._exceptions import InvalidInput

        raise InvalidInput(f"{self.name} runs only segment by segment, from the client")

    async def plan(self, inputs: Any, client: ClientHost, **options: Any) -> Any:
        from .._exceptions import InvalidInput

        raise InvalidInput(f"{self.name} is a long-running kind: use Client.start or run_long")
