"""The wire model of a dispute's evidence, as a challenger hands it to the committee.

The chain holds what the provider signed (the receipt's spec, input and output hashes);
the committee needs the work itself to re-execute it: the job's spec fields, the blobs
they name (the model, an input blob) and the output the provider returned. A referee
takes none of it on trust: the fields must hash to the receipt's ``spec_hash`` and
``input_hash`` (``Workload.digests``), each blob to its name, the output to the
receipt's ``output_hash``; evidence that does not is dropped, and a referee without
valid evidence votes that the provider was right.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from ._jobs import Bytes32Hex, KindName, Sha256Hex, _Model

__all__ = ["MAX_EVIDENCE_BLOBS", "DisputeEvidence"]

#: blobs one piece of evidence may carry (a model and an input, with room to spare)
MAX_EVIDENCE_BLOBS = 4

Base64 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]*={0,2}$")]


class DisputeEvidence(_Model):
    """``POST /v1/disputes/evidence``: the disputed job, for a committee member."""

    dispute: Bytes32Hex = Field(description="the dispute's id (the receipt's leaf)")
    kind: KindName
    fields: dict[str, Any] = Field(description="the job's spec fields, as the provider got them")
    output_npy: Base64 = Field(description="base64 of the output .npy the provider returned")
    blobs: dict[Sha256Hex, Base64] = Field(
        default_factory=dict,
        max_length=MAX_EVIDENCE_BLOBS,
        description="base64 of the blobs the spec names, by sha256",
    )
