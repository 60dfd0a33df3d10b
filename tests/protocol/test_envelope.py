"""Signed requests and responses: every way to get it wrong is refused with a reason."""

from __future__ import annotations

import dataclasses

import pytest

from idlegrid import BadSignature
from idlegrid.protocol import (
    Account,
    ReplayGuard,
    node_domain,
    sign_request,
    sign_response,
    verify_request,
    verify_response,
)
from idlegrid.protocol._envelope import H_EXPIRY, H_NONCE, H_SENDER, H_SIGNATURE

CLIENT = Account.from_key("0x" + "11" * 32)
NODE = Account.from_key("0x" + "22" * 32)
DOMAIN = node_domain(31337, "0x" + "ab" * 20)
NOW = 1_800_000_000.0
BODY = b'{"job": 1}'


def _verify(headers: dict[str, str], **overrides: object) -> tuple[str, bytes]:
    args: dict[str, object] = {
        "domain": DOMAIN,
        "recipient": NODE.address,
        "method": "POST",
        "path": "/v1/jobs",
        "body": BODY,
        "headers": headers,
        "replay": ReplayGuard(),
        "now": NOW,
    }
    args.update(overrides)
    return verify_request(**args)  # type: ignore[arg-type]


def _signed() -> dict[str, str]:
    return sign_request(CLIENT, DOMAIN, NODE.address, "POST", "/v1/jobs", BODY, now=NOW).headers


def test_round_trip() -> None:
    signed = sign_request(CLIENT, DOMAIN, NODE.address, "POST", "/v1/jobs", BODY, now=NOW)
    sender, digest = _verify(signed.headers)
    assert sender == CLIENT.address and digest == signed.digest
    headers = sign_response(NODE, DOMAIN, CLIENT.address, digest, 200, b"ok")
    verify_response(DOMAIN, NODE.address, CLIENT.address, signed.digest, 200, b"ok", headers)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": b'{"job": 2}'}, "bad signature"),
        ({"path": "/v1/blobs"}, "bad signature"),
        ({"method": "PUT"}, "bad signature"),
        ({"recipient": CLIENT.address}, "bad signature"),
        ({"domain": dataclasses.replace(DOMAIN, chain_id=1)}, "bad signature"),
        ({"domain": node_domain(31337, "0x" + "cd" * 20)}, "bad signature"),
        ({"now": NOW + 3600}, "expired request"),
    ],
)
def test_tampered_or_misdirected_requests_are_refused(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(BadSignature, match=reason):
        _verify(_signed(), **change)


@pytest.mark.parametrize("header", [H_SENDER, H_NONCE, H_EXPIRY, H_SIGNATURE])
def test_missing_header_means_unsigned(header: str) -> None:
    headers = _signed()
    del headers[header]
    with pytest.raises(BadSignature, match="unsigned request"):
        _verify(headers)


def test_wrong_sender_claim_and_garbage_are_refused() -> None:
    headers = _signed() | {H_SENDER: NODE.address}
    with pytest.raises(BadSignature, match="bad signature"):
        _verify(headers)
    with pytest.raises(BadSignature, match="malformed"):
        _verify(_signed() | {H_NONCE: "abc"})
    with pytest.raises(BadSignature):
        _verify(_signed() | {H_SIGNATURE: "0x"})
    with pytest.raises(BadSignature, match=r"empty|unsigned"):
        _verify(_signed() | {H_SIGNATURE: ""})


def test_far_future_expiry_is_refused() -> None:
    headers = sign_request(
        CLIENT, DOMAIN, NODE.address, "POST", "/v1/jobs", BODY, ttl_s=3600, now=NOW
    ).headers
    with pytest.raises(BadSignature, match="ahead"):
        _verify(headers)


def test_replay_is_refused() -> None:
    guard = ReplayGuard()
    headers = _signed()
    _verify(headers, replay=guard)
    with pytest.raises(BadSignature, match="replayed"):
        _verify(headers, replay=guard)
    assert len(guard) == 1


def test_response_checks() -> None:
    signed = sign_request(CLIENT, DOMAIN, NODE.address, "POST", "/v1/jobs", BODY, now=NOW)
    headers = sign_response(NODE, DOMAIN, CLIENT.address, signed.digest, 200, b"result")
    with pytest.raises(BadSignature, match="not signed by the provider"):
        verify_response(
            DOMAIN, NODE.address, CLIENT.address, signed.digest, 200, b"forged", headers
        )
    with pytest.raises(BadSignature, match="not signed by the provider"):
        verify_response(
            DOMAIN, CLIENT.address, CLIENT.address, signed.digest, 200, b"result", headers
        )
    with pytest.raises(BadSignature, match="another request"):
        verify_response(DOMAIN, NODE.address, CLIENT.address, b"\x00" * 32, 200, b"result", headers)
    with pytest.raises(BadSignature, match="not signed by the provider"):
        verify_response(
            DOMAIN, NODE.address, CLIENT.address, signed.digest, 500, b"result", headers
        )
