"""JSON bodies of the provider API (pydantic models: the wire format lives here).

Big integers (token amounts, units) travel as JSON numbers; Python reads them
exactly. Bytes travel as 0x-hex (hashes, signatures) or base64 (arrays in
``.npy`` format). Conversion to and from the plain types the rest of the code
uses (``ChannelTerms``, ``Voucher``, ``Receipt``, numpy arrays) is here too.
"""

from __future__ import annotations

import base64
import io
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .._exceptions import InvalidInput
from ._eip712 import MAX_ROYALTY_LINES, Signature, Voucher

__all__ = [
    "Bytes32Hex",
    "ChannelClose",
    "ChannelModel",
    "JobRequest",
    "JobResult",
    "NodeInfo",
    "Sha256Hex",
    "VoucherModel",
    "VoucherSubmission",
    "array_from_npy",
    "npy_bytes",
]

Bytes32Hex = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{64}$")]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
AddressHex = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{40}$")]
SignatureHex = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{130}$")]
Uint = Annotated[int, Field(ge=0, lt=2**256)]
#: a kind of job (``idlegrid.workloads``): lower-case letters, digits, - and _
KindName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]

#: an ``.npy`` payload larger than this must go through the blob store
MAX_INLINE_BYTES = 8 * 2**20


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelModel(_Model):
    """A payment channel's terms (its id is their hash)."""

    client: AddressHex
    provider: AddressHex
    deposit: Uint
    expiry: Uint
    salt: Uint


class RoyaltyLine(_Model):
    """What a channel owes one model's lineage in usage royalties, so far."""

    model: Bytes32Hex
    amount: Uint


class VoucherModel(_Model):
    """A client-signed cumulative voucher for one channel."""

    amount: Uint
    jobs: Uint
    units: Uint
    receipts_root: Bytes32Hex
    signature: SignatureHex
    royalties: list[RoyaltyLine] = Field(default_factory=list, max_length=MAX_ROYALTY_LINES)

    def to_voucher(self, channel: bytes) -> tuple[Voucher, Signature]:
        voucher = Voucher(
            channel,
            self.amount,
            self.jobs,
            self.units,
            bytes.fromhex(self.receipts_root[2:]),
            tuple((bytes.fromhex(r.model[2:]), r.amount) for r in self.royalties),
        )
        return voucher, Signature.from_bytes(bytes.fromhex(self.signature[2:]))

    @classmethod
    def of(cls, voucher: Voucher, signature: Signature) -> VoucherModel:
        return cls(
            amount=voucher.amount,
            jobs=voucher.jobs,
            units=voucher.units,
            receipts_root="0x" + voucher.receipts_root.hex(),
            signature="0x" + signature.to_bytes().hex(),
            royalties=[RoyaltyLine(model="0x" + m.hex(), amount=a) for m, a in voucher.royalties],
        )


class JobRequest(_Model):
    """One job: its kind, the kind's own fields, and how it is paid.

    The fields of the kind's spec (``idlegrid.workloads``: ``model`` and ``input_npy``
    or ``input_blob`` for ``onnx``, ``texts`` for ``embed``) travel at the top level
    next to these, and are kept in :meth:`spec_fields`; the node parses them with the
    kind's spec, which refuses unknown ones.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    job_id: Bytes32Hex
    kind: KindName
    channel: ChannelModel
    seq: Annotated[int, Field(ge=1, lt=2**48)]
    unit_price: Uint
    max_units: Uint
    voucher: VoucherModel | None = Field(
        None, description="the latest voucher for results already delivered on this channel"
    )
    royalty_rate: Uint | None = Field(
        None,
        description="what the job's model pays its lineage per unit (RewardPool.royalty_rate),"
        " on top of unit_price; absent: none",
    )

    def spec_fields(self) -> dict[str, Any]:
        """The fields of the kind's spec (everything but the fields above)."""
        return dict(self.model_extra or {})


class JobResult(_Model):
    """A job's output, or why it failed, and the receipt the client includes in its vouchers.

    ``status == "ok"`` (HTTP 200): exactly one of ``output_npy`` (base64 ``.npy``) and
    ``output_blob`` (the sha256 of an ``.npy`` blob the client downloads from the node),
    and ``result_hash`` is the sha256 of those ``.npy`` bytes. ``status == "failed"``
    (HTTP 422): the job ran and failed in the worker (timeout, the task raised, output
    too large, out of memory); ``error`` says "<ErrorClass>: <reason>", there is no
    output, ``result_hash`` is the sha256 of ``error`` (utf-8), and the units are the
    time the job used, billed as ``docs/network.md`` says. ``metered``: the units were
    measured (CPU time), not counted from the graph. ``spec_hash`` and ``input_hash``
    (``Workload.digests`` of the job's spec fields) name the work in the signed receipt.
    """

    job_id: Bytes32Hex
    seq: int
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    output_npy: str | None = None
    output_blob: Sha256Hex | None = None
    units: Uint
    amount: Uint
    result_hash: Bytes32Hex
    spec_hash: Bytes32Hex = Field(description="sha256 of the job's spec, inputs left out")
    input_hash: Bytes32Hex = Field(description="sha256 naming the job's inputs")
    receipt_signature: SignatureHex
    rows: int
    flops_per_row: int
    metered: bool = False

    @model_validator(mode="after")
    def _one_output_when_ok(self) -> JobResult:
        outputs = (self.output_npy is not None) + (self.output_blob is not None)
        if self.status == "ok" and (outputs != 1 or self.error is not None):
            raise ValueError("an ok result has exactly one of output_npy and output_blob")
        if self.status == "failed" and (outputs or not self.error):
            raise ValueError("a failed result has an error and no output")
        return self


class VoucherSubmission(_Model):
    """A voucher sent on its own (the last one of a batch, say)."""

    channel: ChannelModel
    voucher: VoucherModel


class ChannelClose(_Model):
    """A client done with a channel asks its provider to close it now (early close),
    with the latest voucher, which the provider redeems first."""

    channel: ChannelModel
    voucher: VoucherModel | None = None


class NodeInfo(_Model):
    """What a node tells anyone who asks (unsigned). Fields a newer node adds are
    ignored, so that clients keep reading it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    address: AddressHex
    chain_id: int
    market: AddressHex
    unit_price: Uint
    workloads: list[str]
    hardware: dict[str, object]
    capabilities_hash: Bytes32Hex
    limits: dict[str, float | int | None]
    version: str
    #: the JSON schema of each served kind's spec, by kind (absent from older nodes)
    specs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: an edge node's local data sets, by name: rows, feature shape, distinct labels
    #: (the data never leaves the node; ``fl`` jobs name a data set)
    datasets: dict[str, dict[str, Any]] = Field(default_factory=dict)


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def array_from_npy(data: bytes | str, *, max_bytes: int = MAX_INLINE_BYTES) -> np.ndarray:
    """Parse ``.npy`` bytes (or their base64); never unpickles; InvalidInput if malformed."""
    if isinstance(data, str):
        if len(data) > max_bytes * 4 // 3 + 4:
            raise InvalidInput(f"inline array larger than {max_bytes} bytes: upload it as a blob")
        try:
            data = base64.b64decode(data, validate=True)
        except ValueError as exc:
            raise InvalidInput("array is not valid base64") from exc
    if len(data) > max_bytes:
        raise InvalidInput(f"array larger than {max_bytes} bytes")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidInput(f"not a valid .npy array: {exc}") from exc
    if not isinstance(array, np.ndarray) or array.dtype.hasobject:
        raise InvalidInput("array must be a plain numeric .npy array")
    return array
