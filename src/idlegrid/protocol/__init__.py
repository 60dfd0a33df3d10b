"""Wire formats: accounts, EIP-712 typed data, receipts and Merkle proofs."""

from ._eip712 import (
    MARKET_DOMAIN_NAME,
    Domain,
    Permit,
    Signature,
    Voucher,
    domain_separator,
    eth_account_voucher_digest,
    recover_voucher_signer,
    sign_permit,
    sign_voucher,
    typed_digest,
    voucher_digest,
)
from ._envelope import (
    NODE_DOMAIN_NAME,
    ReplayGuard,
    SignedRequest,
    node_domain,
    sign_request,
    sign_response,
    verify_request,
    verify_response,
)
from ._fastsig import address_bytes, recover_digest, sign_digest
from ._keys import KEY_ENV, Account, checksum
from ._merkle import EMPTY_ROOT, hash_pair, merkle_proof, merkle_root, verify_proof
from ._receipts import Receipt, receipts_proof, receipts_root

__all__ = [
    "EMPTY_ROOT",
    "KEY_ENV",
    "MARKET_DOMAIN_NAME",
    "NODE_DOMAIN_NAME",
    "Account",
    "Domain",
    "Permit",
    "Receipt",
    "ReplayGuard",
    "Signature",
    "SignedRequest",
    "Voucher",
    "address_bytes",
    "checksum",
    "domain_separator",
    "eth_account_voucher_digest",
    "hash_pair",
    "merkle_proof",
    "merkle_root",
    "node_domain",
    "receipts_proof",
    "receipts_root",
    "recover_digest",
    "recover_voucher_signer",
    "sign_digest",
    "sign_permit",
    "sign_request",
    "sign_response",
    "sign_voucher",
    "typed_digest",
    "verify_proof",
    "verify_request",
    "verify_response",
    "voucher_digest",
]
