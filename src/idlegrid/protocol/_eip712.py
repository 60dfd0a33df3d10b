"""EIP-712 typed data: the voucher a client signs for a provider, and EIP-2612 permits.

The type strings here and in ``contracts/`` must agree byte for byte; the
contract tests check that a Python signature verifies on chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_account import Account as _EthAccount
from eth_account.messages import encode_typed_data

from .._exceptions import BadSignature, InvalidInput
from ._fastsig import recover_digest, sign_digest
from ._keccak import keccak256 as keccak
from ._keys import Account, checksum

__all__ = [
    "MARKET_DOMAIN_NAME",
    "MAX_ROYALTY_LINES",
    "Domain",
    "Permit",
    "Signature",
    "Voucher",
    "domain_separator",
    "eth_account_voucher_digest",
    "recover_voucher_signer",
    "royalties_hash",
    "sign_permit",
    "sign_voucher",
    "typed_digest",
    "voucher_digest",
]

MARKET_DOMAIN_NAME = "idlegrid JobMarket"
_SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_VOUCHER_TYPE = [
    {"name": "channel", "type": "bytes32"},
    {"name": "amount", "type": "uint256"},
    {"name": "jobs", "type": "uint256"},
    {"name": "units", "type": "uint256"},
    {"name": "receiptsRoot", "type": "bytes32"},
    {"name": "royalties", "type": "bytes32"},
]
#: most models whose royalties one channel's vouchers may carry (``JobMarket.MAX_ROYALTIES``)
MAX_ROYALTY_LINES = 16
_PERMIT_TYPE = [
    {"name": "owner", "type": "address"},
    {"name": "spender", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]


@dataclass(frozen=True)
class Domain:
    """An EIP-712 domain: binds a signature to one contract on one chain."""

    name: str
    chain_id: int
    verifying_contract: str
    version: str = "1"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": checksum(self.verifying_contract),
        }


@dataclass(frozen=True)
class Signature:
    """A secp256k1 signature split as the contracts take it."""

    v: int
    r: bytes
    s: bytes

    def to_bytes(self) -> bytes:
        """65 bytes r || s || v."""
        return self.r + self.s + bytes([self.v])

    @classmethod
    def from_bytes(cls, raw: bytes) -> Signature:
        """Parse r || s || v; raise BadSignature if malformed."""
        if len(raw) != 65:
            raise BadSignature(f"signature must be 65 bytes, got {len(raw)}")
        v = raw[64]
        if v in (0, 1):
            v += 27
        if v not in (27, 28):
            raise BadSignature(f"signature v must be 27 or 28, got {raw[64]}")
        if int.from_bytes(raw[32:64], "big") > _SECP256K1_HALF_N:
            raise BadSignature("signature s is in the upper half of the curve order")
        return cls(v=v, r=raw[:32], s=raw[32:64])


@dataclass(frozen=True)
class Voucher:
    """A client's cumulative promise to pay on one channel."""

    channel: bytes
    amount: int
    jobs: int
    units: int
    receipts_root: bytes
    #: the part of ``amount`` owed as usage royalties, by model: cumulative
    #: ``(model, amount)`` lines in ascending model order (empty: none); the market
    #: pays each line's increase to the model's lineage in the RewardPool
    royalties: tuple[tuple[bytes, int], ...] = ()

    def __post_init__(self) -> None:
        if len(self.channel) != 32 or len(self.receipts_root) != 32:
            raise InvalidInput("voucher channel and receipts_root must be 32 bytes")
        if min(self.amount, self.jobs, self.units) < 0:
            raise InvalidInput("voucher amount, jobs and units must be non-negative")
        if len(self.royalties) > MAX_ROYALTY_LINES:
            raise InvalidInput(f"a voucher carries at most {MAX_ROYALTY_LINES} royalty lines")
        previous = b""
        for model, owed in self.royalties:
            if len(model) != 32 or not 0 < owed < 2**256:
                raise InvalidInput("a royalty line is a 32-byte model and a positive amount")
            if model <= previous:
                raise InvalidInput("royalty lines must be in ascending model order, once each")
            previous = model
        if sum(owed for _, owed in self.royalties) > self.amount:
            raise InvalidInput("a voucher's royalties exceed its amount")


@dataclass(frozen=True)
class Permit:
    """An EIP-2612 approval by signature."""

    owner: str
    spender: str
    value: int
    nonce: int
    deadline: int


def _typed(
    domain: Domain, primary: str, fields: list[dict[str, str]], message: dict[str, Any]
) -> Any:
    return encode_typed_data(
        full_message={
            "types": {"EIP712Domain": _DOMAIN_TYPE, primary: fields},
            "primaryType": primary,
            "domain": domain.as_dict(),
            "message": message,
        }
    )


def _voucher_message(voucher: Voucher) -> dict[str, Any]:
    return {
        "channel": voucher.channel,
        "amount": voucher.amount,
        "jobs": voucher.jobs,
        "units": voucher.units,
        "receiptsRoot": voucher.receipts_root,
        "royalties": royalties_hash(voucher.royalties),
    }


def _sign(account: Account, signable: Any) -> Signature:
    signed = _EthAccount.sign_message(signable, private_key=account.key)
    return Signature(
        v=int(signed.v), r=int(signed.r).to_bytes(32, "big"), s=int(signed.s).to_bytes(32, "big")
    )


_EIP712_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_VOUCHER_TYPEHASH = keccak(
    b"Voucher(bytes32 channel,uint256 amount,uint256 jobs,uint256 units,bytes32 receiptsRoot,"
    b"bytes32 royalties)"
)
_ZERO32 = bytes(32)


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


@lru_cache(maxsize=256)
def domain_separator(domain: Domain) -> bytes:
    """The EIP-712 domain separator of ``domain`` (cached: hot path)."""
    return bytes(
        keccak(
            _EIP712_DOMAIN_TYPEHASH
            + keccak(domain.name.encode())
            + keccak(domain.version.encode())
            + _word(domain.chain_id)
            + bytes(12)
            + bytes.fromhex(checksum(domain.verifying_contract)[2:])
        )
    )


def typed_digest(domain: Domain, struct_hash: bytes) -> bytes:
    """``keccak256(0x1901 || domainSeparator || structHash)``."""
    return bytes(keccak(b"\x19\x01" + domain_separator(domain) + struct_hash))


def royalties_hash(royalties: tuple[tuple[bytes, int], ...]) -> bytes:
    """What a voucher signs of its royalty lines: zero for none, else the chain
    ``h = keccak256(h || model || amount)`` from ``h = 0`` (``JobMarket._royalties_hash``)."""
    h = _ZERO32
    for model, owed in royalties:
        h = bytes(keccak(h + model + _word(owed)))
    return h


def voucher_digest(domain: Domain, voucher: Voucher) -> bytes:
    """The 32-byte EIP-712 digest of ``voucher`` (what the market's ``voucher_digest`` returns)."""
    struct_hash = keccak(
        _VOUCHER_TYPEHASH
        + voucher.channel
        + _word(voucher.amount)
        + _word(voucher.jobs)
        + _word(voucher.units)
        + voucher.receipts_root
        + royalties_hash(voucher.royalties)
    )
    return typed_digest(domain, bytes(struct_hash))


def sign_voucher(account: Account, domain: Domain, voucher: Voucher) -> Signature:
    """Sign ``voucher`` for the market in ``domain``."""
    return Signature.from_bytes(sign_digest(account.key, voucher_digest(domain, voucher)))


def recover_voucher_signer(domain: Domain, voucher: Voucher, signature: Signature) -> str:
    """The address that signed ``voucher`` in ``domain``; raise BadSignature if unrecoverable."""
    raw = recover_digest(voucher_digest(domain, voucher), signature.to_bytes())
    return checksum("0x" + raw.hex())


def eth_account_voucher_digest(domain: Domain, voucher: Voucher) -> bytes:
    """The same digest through eth-account's generic EIP-712 encoder (a cross-check)."""
    signable = _typed(domain, "Voucher", _VOUCHER_TYPE, _voucher_message(voucher))
    return bytes(keccak(b"\x19" + signable.version + signable.header + signable.body))


def sign_permit(account: Account, domain: Domain, permit: Permit) -> Signature:
    """Sign an EIP-2612 permit for the token in ``domain``."""
    if checksum(permit.owner) != account.address:
        raise InvalidInput("a permit must be signed by its owner")
    message = {
        "owner": checksum(permit.owner),
        "spender": checksum(permit.spender),
        "value": permit.value,
        "nonce": permit.nonce,
        "deadline": permit.deadline,
    }
    return _sign(account, _typed(domain, "Permit", _PERMIT_TYPE, message))
