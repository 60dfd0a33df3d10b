"""The ``Workload`` interface: everything that varies between kinds of job, in one class.

A kind of job (``onnx``, ``embed``, and the kinds to come) is one subclass of
:class:`Workload`, in one file, registered by name (``_registry.py``). The node
and the client hold a ``Workload`` and never ask which one (Flower's server loop
and its strategies): adding a kind is one new file plus its tests.

What a kind says:

* ``name``, ``Spec`` (the pydantic model of the job's own fields, which travel at
  the top level of a ``JobRequest``: the client builds it, the node parses it) and
  ``task`` (the allow-listed ``module:function`` that runs it in a worker);
* pure functions, the same on both sides: ``units(spec, inputs)`` (the bill),
  ``outputs(spec, inputs)`` (the dtype and per-row shape every output must have),
  ``close_enough(a, b)`` (how far two honest results may differ), and how a batch
  is split into jobs and their outputs joined (``rows``, ``split``, ``join``);
* on the node, ``blobs`` (pinned while the job runs), ``check`` (cheap checks
  before anything is parsed) and ``prepare`` (the worker payload and the bill);
* on the client, ``plan``: a :class:`Plan` for one batch, which says what every job
  of it shares (what it costs, what to upload first, the job's fields).
"""

from __future__ import annotations

import hashlib
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from .._exceptions import InvalidInput, OutputTooLarge

__all__ = [
    "JOB_SENDER",
    "BlobSink",
    "ClientHost",
    "NodeHost",
    "OutputSpec",
    "Plan",
    "Prepared",
    "Spec",
    "Workload",
    "npy_output",
]

#: the address that signed the job a node is preparing (set by the node around a job,
#: so that a workload can bind later requests of the same client to this one)
JOB_SENDER: ContextVar[str | None] = ContextVar("idlegrid_job_sender", default=None)

Inputs = TypeVar("Inputs")
SpecT = TypeVar("SpecT", bound="Spec")


class Spec(BaseModel):
    """A job's own fields (the base of every kind's spec): strict, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class OutputSpec:
    """What every output of a job must be: its dtype and its dims after the batch dim
    (None where the kind leaves a dim dynamic)."""

    name: str
    dtype: np.dtype[Any]
    trailing: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.trailing)
        return f"{self.dtype}[N{', ' + dims if dims else ''}]"

    def check(self, output: np.ndarray, rows: int) -> str | None:
        """Why ``output`` is not a valid output for ``rows`` input rows; None if it is."""
        if output.ndim == 0:
            return "output is a scalar (0-d), not one row per input row"
        if output.shape[0] != rows:
            return f"{output.shape[0]} output rows for {rows} input rows"
        if output.dtype != self.dtype:
            return f"output dtype {output.dtype}, the model declares {self.dtype}"
        if output.ndim != 1 + len(self.trailing):
            return f"output shape {output.shape}, the model declares {self.describe()}"
        for got, want in zip(output.shape[1:], self.trailing, strict=True):
            if want is not None and got != want:
                return f"output shape {output.shape}, the model declares {self.describe()}"
        return None


@dataclass(frozen=True)
class Prepared:
    """A job ready for a worker: the task, its payload (a pickle the node built), the
    rows it returns, its static units, and whether it is metered (billed CPU time)."""

    task: str
    payload: bytes
    rows: int
    units: int
    metered: bool = False


class NodeHost(Protocol):
    """What a node lends a workload while it checks and prepares a job."""

    #: whether the node runs jobs whose units are metered (CPU time), not counted
    metered: bool
    max_blob_bytes: int
    max_model_bytes: int

    def blob_size(self, digest: str) -> int:
        """Bytes of a stored blob; BlobNotFound if it is not there."""
        ...

    def blob(self, digest: str) -> bytes: ...

    def blob_path(self, digest: str) -> str | None:
        """A file holding the blob (workers read it), or None for a store without files."""
        ...

    def model_known(self, digest: str) -> bool:
        """Whether the node's model inspector has this model's facts already."""
        ...

    async def model_cost(self, digest: str) -> Any:
        """The model's ``ModelFacts`` (flops_per_row, metering, inputs), counted away
        from the event loop; InvalidInput if the model is refused."""
        ...


class BlobSink(Protocol):
    """Where a client's job puts what does not travel inline (one provider)."""

    def inline_room(self) -> int:
        """Bytes an input may have to travel inside the job request."""
        ...

    async def put_blob(self, data: bytes, *, digest: str | None = None) -> str:
        """Upload ``data`` unless the provider holds it; its sha256 hex digest."""
        ...

    async def put_shared(self, data: bytes, digest: str) -> None:
        """Upload what every job of the batch names; a provider that cannot take it is
        refused for this batch."""
        ...


class ClientHost(Protocol):
    """What a client lends a workload while it plans a batch."""

    #: the client's cache for this kind (read models, probes), kept between batches
    memo: dict[Any, Any]

    async def fetch_blob(self, digest: str) -> bytes:
        """A blob from any provider of this kind that holds it (checked against its hash)."""
        ...


class Plan(ABC, Generic[Inputs]):
    """A client's batch of one kind, once read: what every job of it shares."""

    #: the kind whose batch this is
    workload: Workload[Any, Inputs]
    #: the whole batch, as the kind reads it (split into jobs by ``workload.split``)
    inputs: Inputs

    #: the first output every job returns
    expect: OutputSpec
    #: bytes per row of input and output, to fit jobs within a provider's limits
    in_row_bytes: int = 1
    out_row_bytes: int = 1
    #: rows per job asked for (None: as many as fit, a fair share per provider)
    per_job: int | None = None
    #: why the jobs are metered (billed CPU time within a budget), or None
    metered: str | None = None

    def eligible(self, limits: Any) -> bool:
        """Whether a provider with these advertised limits may take the batch."""
        return True

    @abstractmethod
    def units(self, part: Inputs) -> int:
        """The static units of one job on ``part`` (the exact bill, or a metered floor)."""

    def max_units(self, part: Inputs, limits: Any) -> int:
        """The most one job on ``part`` may be billed by a provider with ``limits``."""
        return self.units(part)

    async def upload(self, sink: BlobSink) -> None:
        """Put on a provider, once, what every job names (a model)."""

    @abstractmethod
    async def fields(self, part: Inputs, sink: BlobSink) -> dict[str, Any]:
        """The spec fields of one job on ``part``, uploading large inputs to ``sink``."""


class Workload(ABC, Generic[SpecT, Inputs]):
    """One kind of job. Subclasses set the class attributes and implement the methods."""

    #: the kind's name, as in ``JobRequest.kind`` and a node's ``workloads``
    name: ClassVar[str]
    #: the job's own fields (they travel at the top level of the job request)
    Spec: ClassVar[type[Spec]]
    #: the allow-listed worker task (``module:function``, bytes in, ``.npy`` bytes out)
    task: ClassVar[str]
    #: one line for ``idlegrid workloads``
    summary: ClassVar[str] = ""
    #: the spec fields that carry the job's inputs; a receipt hashes them apart from the
    #: rest of the spec (its ``input_hash`` and ``spec_hash``)
    input_fields: ClassVar[tuple[str, ...]] = ()
    #: whether the worker's result carries blobs besides the output (``split_output``)
    side_outputs: ClassVar[bool] = False
    #: a task each worker runs once when the node starts (imports, first-call set-up),
    #: so that the first job does not pay for it; None: nothing to warm
    warm_task: ClassVar[str | None] = None
    #: libraries the kind's task needs, imported once by a node's forkserver (the
    #: process its workers fork from) so that every worker, and every replacement of one
    #: that died, starts with them loaded instead of importing them again (PyTorch: 3 s
    #: of CPU a worker). Only libraries that start no thread when imported: a process
    #: with threads cannot be forked safely.
    preload: ClassVar[tuple[str, ...]] = ()

    # -- the spec -------------------------------------------------------------------
    def parse(self, fields: Mapping[str, Any]) -> SpecT:
        """The job's spec from its fields; InvalidInput naming the first bad field."""
        try:
            spec = self.Spec.model_validate(dict(fields))
        except ValidationError as exc:
            errors = exc.errors()
            where = ".".join(str(p) for p in errors[0].get("loc", ())) if errors else ""
            msg = errors[0].get("msg", "invalid") if errors else "invalid"
            raise InvalidInput(f"{self.name} job: {where + ': ' if where else ''}{msg}") from exc
        return spec  # type: ignore[return-value]

    def digests(self, fields: Mapping[str, Any]) -> tuple[bytes, bytes]:
        """``(spec_hash, input_hash)`` of a job's spec fields, as its receipt names them.

        ``spec_hash`` is the sha256 of the canonical JSON (sorted keys, no spaces) of the
        kind and every field but the inputs; ``input_hash`` is :meth:`input_digest` of the
        input fields. Fields that are ``None`` are left out, as on the wire. Both sides
        compute them from the same fields, so a receipt binds the provider's signature
        to the exact work it was given (the evidence of a dispute).
        """
        spec: dict[str, Any] = {"kind": self.name}
        inputs: dict[str, Any] = {}
        for key, value in fields.items():
            if value is not None:
                (inputs if key in self.input_fields else spec)[key] = value
        return _sha256_json(spec), self.input_digest(inputs)

    def input_digest(self, inputs: Mapping[str, Any]) -> bytes:
        """The sha256 naming a job's inputs: of their canonical JSON, unless a kind says
        otherwise (``onnx``: of the input ``.npy`` bytes, inline or a blob alike)."""
        return _sha256_json(dict(inputs))

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the spec (``idlegrid workloads``, ``/v1/info``)."""
        return self.Spec.model_json_schema()

    # -- pure functions ---------------------------------------------------------------
    @abstractmethod
    def units(self, spec: SpecT, inputs: Inputs) -> int:
        """Compute units of a job (one unit is one FLOP): what its bill must be."""

    @abstractmethod
    def outputs(self, spec: SpecT, inputs: Inputs) -> OutputSpec:
        """The dtype and per-row shape every output of the job must have."""

    @abstractmethod
    def close_enough(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether two results of the same job agree, as two honest runs do."""

    def rows(self, inputs: Inputs) -> int:
        """Rows of a batch (each gives one output row)."""
        return len(inputs)  # type: ignore[arg-type]

    def split(self, inputs: Inputs, per: int) -> list[Inputs]:
        """A batch as jobs of at most ``per`` rows, in order."""
        if per < 1:
            raise ValueError("per must be >= 1")
        n = self.rows(inputs)
        return [inputs[i : i + per] for i in range(0, n, per)]  # type: ignore[index]

    def join(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """The outputs of a split batch as one, in order."""
        return parts[0] if len(parts) == 1 else np.concatenate(list(parts), axis=0)

    def royalty_model(self, spec: SpecT) -> bytes | None:
        """The registered model (sha256) whose lineage a job of ``spec`` pays a usage
        royalty to, at the rate its registrant set in the RewardPool; None: no royalty."""
        return None

    def royalty_model_of(self, fields: Mapping[str, Any]) -> bytes | None:
        """:meth:`royalty_model` of the spec ``fields`` make, read without parsing them
        all (the client's side, before it sends the job)."""
        return None

    # -- on the node ----------------------------------------------------------------
    def blobs(self, spec: SpecT) -> tuple[str, ...]:
        """Blobs the job names: pinned in the store while it runs."""
        return ()

    async def check(self, spec: SpecT, node: NodeHost) -> None:
        """Cheap checks before anything is read or parsed (named blobs, their sizes)."""

    def split_output(self, spec: SpecT, raw: bytes) -> tuple[bytes, list[bytes]]:
        """A kind with ``side_outputs``: the worker's result as the job's output and the
        blobs the node keeps for the client (``train``: every checkpoint); runs in a
        thread, InvalidInput when the result does not have the kind's layout."""
        return raw, []

    @abstractmethod
    async def prepare(self, spec: SpecT, node: NodeHost) -> Prepared:
        """The worker payload and the static bill, validated before the job runs
        (a job refused here is not billed)."""

    # -- on the client ----------------------------------------------------------------
    @abstractmethod
    async def plan(self, inputs: Inputs, client: ClientHost, **options: Any) -> Plan[Inputs]:
        """A client's plan for a batch; InvalidInput (or ModelRejected) before any job."""


def npy_output(array: Any, limit: int | None = None) -> bytes:
    """A worker's output as ``.npy``; OutputTooLarge, before a byte is written, past
    ``limit`` (the worker checks the encoded size again)."""
    if limit is None:
        from ..executor import output_limit

        limit = output_limit()
    array = np.ascontiguousarray(array)
    if limit is not None and array.nbytes > limit:
        raise OutputTooLarge(
            f"the output {array.dtype}{list(array.shape)} has {array.nbytes} bytes, more than "
            f"the {limit} a job may return",
            size=array.nbytes,
            limit=limit,
        )
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _sha256_json(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).digest()
