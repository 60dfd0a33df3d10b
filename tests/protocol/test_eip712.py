"""EIP-712 signing in Python: recover, domain binding, malformed signatures, keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from eth_account import Account as EthAccount
from hypothesis import given
from hypothesis import strategies as st

from idlegrid import BadSignature, ConfigError, InvalidInput
from idlegrid.protocol import (
    KEY_ENV,
    Account,
    Domain,
    Permit,
    Receipt,
    Signature,
    Voucher,
    address_bytes,
    eth_account_voucher_digest,
    recover_digest,
    recover_voucher_signer,
    sign_digest,
    sign_permit,
    sign_voucher,
    voucher_digest,
)

DOMAIN = Domain("idlegrid JobMarket", 31337, "0x" + "ab" * 20)
VOUCHER = Voucher(b"\x01" * 32, 10, 2, 3, b"\x02" * 32)


def test_sign_and_recover_voucher() -> None:
    account = Account.create()
    sig = sign_voucher(account, DOMAIN, VOUCHER)
    assert recover_voucher_signer(DOMAIN, VOUCHER, sig) == account.address
    assert Signature.from_bytes(sig.to_bytes()) == sig


@pytest.mark.parametrize(
    "other",
    [
        dataclasses.replace(DOMAIN, chain_id=1),
        dataclasses.replace(DOMAIN, verifying_contract="0x" + "cd" * 20),
        dataclasses.replace(DOMAIN, version="2"),
    ],
)
def test_signature_is_bound_to_its_domain(other: Domain) -> None:
    account = Account.create()
    sig = sign_voucher(account, DOMAIN, VOUCHER)
    assert voucher_digest(other, VOUCHER) != voucher_digest(DOMAIN, VOUCHER)
    assert recover_voucher_signer(other, VOUCHER, sig) != account.address


def test_malformed_signatures_are_refused() -> None:
    with pytest.raises(BadSignature):
        Signature.from_bytes(b"\x00" * 64)
    with pytest.raises(BadSignature):
        Signature.from_bytes(b"\x01" * 64 + b"\x05")
    with pytest.raises(BadSignature):  # high s
        Signature.from_bytes(b"\x01" * 32 + b"\xff" * 32 + b"\x1b")


def test_bad_voucher_and_receipt_fields_are_refused() -> None:
    with pytest.raises(InvalidInput):
        Voucher(b"\x01" * 31, 1, 1, 1, b"\x00" * 32)
    with pytest.raises(InvalidInput):
        Voucher(b"\x01" * 32, -1, 1, 1, b"\x00" * 32)
    zero = b"\x00" * 32
    with pytest.raises(InvalidInput):
        Receipt(b"\x01" * 32, b"\x02" * 32, "0x" + "ab" * 20, zero, zero, zero, -1, 0)


def test_permit_must_be_signed_by_owner() -> None:
    owner, other = Account.create(), Account.create()
    permit = Permit(owner.address, other.address, 1, 0, 2**40)
    with pytest.raises(InvalidInput):
        sign_permit(other, DOMAIN, permit)


def test_keys_from_env_and_keystore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    account = Account.create()
    monkeypatch.setenv(KEY_ENV, account.key_hex)
    assert Account.from_env() == account
    path = account.to_keystore(tmp_path / "key.json", "pw")
    assert Account.from_keystore(path, "pw") == account
    assert account.key.hex() not in repr(account)  # repr hides the key
    with pytest.raises(ConfigError):
        Account.from_keystore(path, "wrong")
    with pytest.raises(ConfigError):
        Account.from_keystore(tmp_path / "missing.json", "pw")
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError):
        Account.from_env()
    with pytest.raises(InvalidInput):
        Account.from_key("0x1234")


@given(
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**64),
    st.integers(0, 2**128),
    st.integers(1, 2**64),
    st.dictionaries(st.binary(min_size=32, max_size=32), st.integers(1, 2**64), max_size=4),
)
def test_fast_digest_matches_eth_account(
    channel: bytes, amount: int, jobs: int, units: int, chain_id: int, lines: dict[bytes, int]
) -> None:
    """With and without royalty lines (the voucher signs their hash chain)."""
    domain = dataclasses.replace(DOMAIN, chain_id=chain_id)
    royalties = tuple(sorted(lines.items())) if sum(lines.values()) <= amount else ()
    voucher = Voucher(channel, amount, jobs, units, b"\x07" * 32, royalties)
    assert voucher_digest(domain, voucher) == eth_account_voucher_digest(domain, voucher)
    if royalties:  # the lines are signed: dropping them is another voucher
        bare = dataclasses.replace(voucher, royalties=())
        assert voucher_digest(domain, bare) != voucher_digest(domain, voucher)


def test_fast_signature_recovers_like_eth_account() -> None:
    account = Account.create()
    sig = sign_voucher(account, DOMAIN, VOUCHER)
    digest = voucher_digest(DOMAIN, VOUCHER)
    assert EthAccount._recover_hash(digest, signature=sig.to_bytes()) == account.address
    assert recover_digest(digest, sig.to_bytes()) == address_bytes(account.address)
    with pytest.raises(BadSignature):
        recover_digest(digest, sig.to_bytes()[:64])
    with pytest.raises(InvalidInput):
        sign_digest(account.key, b"short")
