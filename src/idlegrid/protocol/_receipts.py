"""Job receipts: what a provider signs for each job, and the Merkle leaf it becomes.

A receipt's leaf is ``keccak256(keccak256(abi_encode(channel, job_id, provider,
spec_hash, input_hash, result_hash, units, amount)))``: what was asked (the spec and
the inputs, by hash), what came out (the output's sha256, or the error's for a billed
failure) and what it cost. Hashing twice keeps a leaf from ever equalling an inner
node (``hash_pair`` of two 32-byte nodes), the second-preimage guard that
OpenZeppelin's MerkleProof recommends. The dispute contract computes the same leaf
from these fields on chain, so a signed receipt is evidence of exactly this job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._exceptions import InvalidInput
from ._eip712 import Domain, typed_digest
from ._keccak import keccak256 as keccak
from ._keys import checksum
from ._merkle import merkle_proof, merkle_root

__all__ = ["Receipt", "receipt_digest", "receipts_proof", "receipts_root"]


@dataclass(frozen=True)
class Receipt:
    """One job done on one channel: what was computed and what it cost."""

    channel: bytes
    job_id: bytes
    provider: str
    spec_hash: bytes
    input_hash: bytes
    result_hash: bytes
    units: int
    amount: int

    def __post_init__(self) -> None:
        for name in ("channel", "job_id", "spec_hash", "input_hash", "result_hash"):
            if len(getattr(self, name)) != 32:
                raise InvalidInput(f"receipt {name} must be 32 bytes")
        if self.units < 0 or self.amount < 0:
            raise InvalidInput("receipt units and amount must be non-negative")

    @property
    def output_hash(self) -> bytes:
        """The result hash, by the name the dispute contract gives it."""
        return self.result_hash

    def leaf(self) -> bytes:
        """The Merkle leaf of this receipt."""
        return bytes(keccak(keccak(self.abi_encoded())))

    def abi_encoded(self) -> bytes:
        """``abi.encode(channel, job_id, provider, spec_hash, input_hash, result_hash,
        units, amount)``.

        Every field is static, so the encoding is eight 32-byte words, written out here
        (a tenth of the time of a generic ABI encoder; the tests compare the two).
        """
        if self.units >= 2**256 or self.amount >= 2**256:
            raise InvalidInput("receipt units and amount must fit in uint256")
        return b"".join(
            (
                self.channel,
                self.job_id,
                bytes(12) + bytes.fromhex(checksum(self.provider)[2:]),
                self.spec_hash,
                self.input_hash,
                self.result_hash,
                self.units.to_bytes(32, "big"),
                self.amount.to_bytes(32, "big"),
            )
        )


def receipts_root(receipts: Sequence[Receipt]) -> bytes:
    """Merkle root over the receipts' leaves, in order."""
    return merkle_root([r.leaf() for r in receipts])


def receipts_proof(receipts: Sequence[Receipt], index: int) -> list[bytes]:
    """Proof that ``receipts[index]`` is under :func:`receipts_root` of ``receipts``."""
    return merkle_proof([r.leaf() for r in receipts], index)


_RECEIPT_TYPEHASH = keccak(b"Receipt(bytes32 leaf)")


def receipt_digest(domain: Domain, leaf: bytes) -> bytes:
    """What a provider signs for a receipt: the leaf, in the node domain (EIP-712)."""
    return typed_digest(domain, bytes(keccak(_RECEIPT_TYPEHASH + leaf)))
