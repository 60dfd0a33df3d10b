"""Wire formats: accounts, EIP-712 typed data, receipts and Merkle proofs."""

from ._eip712 import (
    MARKET_DOMAIN_NAME,
    Domain,
    Permit,
    Signature,
    Voucher,
    recover_voucher_signer,
    sign_permit,
    sign_voucher,
    voucher_digest,
)
from ._keys import KEY_ENV, Account, checksum
from ._merkle import EMPTY_ROOT, hash_pair, merkle_proof, merkle_root, verify_proof
from ._receipts import Receipt, receipts_proof, receipts_root

__all__ = [
    "EMPTY_ROOT",
    "KEY_ENV",
    "MARKET_DOMAIN_NAME",
    "Account",
    "Domain",
    "Permit",
    "Receipt",
    "Signature",
    "Voucher",
    "checksum",
    "hash_pair",
    "merkle_proof",
    "merkle_root",
    "receipts_proof",
    "receipts_root",
    "recover_voucher_signer",
    "sign_permit",
    "sign_voucher",
    "verify_proof",
    "voucher_digest",
]
