"""Job receipts (v2) as a provider signs them, for the dispute tests.

The fields, the leaf and the signature follow the dispute contract: leaf =
keccak256(keccak256(abi_encode(channel, job_id, provider, spec_hash, input_hash,
output_hash, units, amount))), signed as EIP-712 ``Receipt(bytes32 leaf)`` in
the node domain (name "idlegrid Node", verifying contract the market).
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak

from idlegrid.protocol import (
    NODE_DOMAIN_NAME,
    Account,
    Domain,
    Signature,
    receipt_digest,
    sign_digest,
)

_TYPES = ["bytes32", "bytes32", "address", "bytes32", "bytes32", "bytes32", "uint256", "uint256"]


@dataclass(frozen=True)
class Receipt2:
    """A job receipt (v2)."""

    channel: bytes
    job_id: bytes
    provider: str
    spec_hash: bytes
    input_hash: bytes
    output_hash: bytes
    units: int
    amount: int

    def leaf(self) -> bytes:
        values = [
            self.channel,
            self.job_id,
            self.provider,
            self.spec_hash,
            self.input_hash,
            self.output_hash,
            self.units,
            self.amount,
        ]
        return bytes(keccak(keccak(encode(_TYPES, values))))


def node_domain(chain_id: int, market: str) -> Domain:
    """The domain providers sign receipts in."""
    return Domain(NODE_DOMAIN_NAME, chain_id, market)


def sign_receipt(signer: Account, domain: Domain, leaf: bytes) -> Signature:
    """``signer``'s EIP-712 signature of a receipt leaf."""
    return Signature.from_bytes(sign_digest(signer.key, receipt_digest(domain, leaf)))
