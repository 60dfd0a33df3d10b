"""Signed HTTP messages between clients and provider nodes.

Every request and response that matters carries an EIP-712 signature by its
sender over the method, path, a hash of the exact body bytes, the recipient,
a nonce and an expiry, in the domain ``("idlegrid Node", "1", chainId,
market)``. A provider refuses unsigned, expired, replayed or wrongly signed
requests; a client refuses a response not signed by the provider it asked,
or signed for another request. (Bittensor's axon signed neither request
bodies by default nor responses; here the signature always covers the body.)

Wire format: headers ``x-idlegrid-sender``, ``x-idlegrid-nonce``,
``x-idlegrid-expiry``, ``x-idlegrid-signature`` (0x + 65 bytes hex) on
requests; ``x-idlegrid-sender``, ``x-idlegrid-request`` (the request digest) and
``x-idlegrid-signature`` on responses.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .._exceptions import BadSignature, ConfigError
from ._eip712 import Domain, typed_digest
from ._fastsig import address_bytes, recover_digest, sign_digest
from ._keccak import keccak256 as keccak
from ._keys import Account, checksum

__all__ = [
    "H_EXPIRY",
    "H_NONCE",
    "H_REQUEST",
    "H_SENDER",
    "H_SIGNATURE",
    "NODE_DOMAIN_NAME",
    "ReplayGuard",
    "SignedRequest",
    "node_domain",
    "request_digest",
    "response_digest",
    "sign_request",
    "sign_response",
    "verify_request",
    "verify_response",
]

NODE_DOMAIN_NAME = "idlegrid Node"
H_SENDER = "x-idlegrid-sender"
H_NONCE = "x-idlegrid-nonce"
H_EXPIRY = "x-idlegrid-expiry"
H_SIGNATURE = "x-idlegrid-signature"
H_REQUEST = "x-idlegrid-request"

#: requests may not be valid for longer than this (bounds the replay cache)
MAX_TTL_S = 300
#: clock skew tolerated between client and provider
SKEW_S = 30

_REQUEST_TYPEHASH = keccak(
    b"Request(address sender,address recipient,string method,string path,"
    b"bytes32 bodyHash,uint256 nonce,uint256 expiry)"
)
_RESPONSE_TYPEHASH = keccak(
    b"Response(address sender,address recipient,bytes32 request,uint256 status,bytes32 bodyHash)"
)


def node_domain(chain_id: int, market: str) -> Domain:
    """The EIP-712 domain of node messages: bound to one chain and one market."""
    return Domain(NODE_DOMAIN_NAME, chain_id, market)


def _addr(raw: bytes) -> bytes:
    return bytes(12) + raw


def request_digest(
    domain: Domain,
    sender: bytes,
    recipient: bytes,
    method: str,
    path: str,
    body: bytes,
    nonce: int,
    expiry: int,
) -> bytes:
    """EIP-712 digest of a request (addresses as 20 raw bytes)."""
    struct_hash = keccak(
        _REQUEST_TYPEHASH
        + _addr(sender)
        + _addr(recipient)
        + keccak(method.upper().encode())
        + keccak(path.encode())
        + keccak(body)
        + nonce.to_bytes(32, "big")
        + expiry.to_bytes(32, "big")
    )
    return typed_digest(domain, bytes(struct_hash))


def response_digest(
    domain: Domain, sender: bytes, recipient: bytes, request: bytes, status: int, body: bytes
) -> bytes:
    """EIP-712 digest of a response to the request with digest ``request``."""
    struct_hash = keccak(
        _RESPONSE_TYPEHASH
        + _addr(sender)
        + _addr(recipient)
        + request
        + status.to_bytes(32, "big")
        + keccak(body)
    )
    return typed_digest(domain, bytes(struct_hash))


@dataclass(frozen=True)
class SignedRequest:
    """Headers to send, and the digest to match the response against."""

    headers: dict[str, str]
    digest: bytes


def sign_request(
    account: Account,
    domain: Domain,
    recipient: str,
    method: str,
    path: str,
    body: bytes,
    *,
    ttl_s: int = 60,
    now: float | None = None,
) -> SignedRequest:
    """Sign a request from ``account`` to the node ``recipient``."""
    nonce = secrets.randbits(128)
    expiry = int(now if now is not None else time.time()) + ttl_s
    sender = address_bytes(account.address)
    digest = request_digest(
        domain, sender, address_bytes(recipient), method, path, body, nonce, expiry
    )
    signature = sign_digest(account.key, digest)
    return SignedRequest(
        headers={
            H_SENDER: account.address,
            H_NONCE: str(nonce),
            H_EXPIRY: str(expiry),
            H_SIGNATURE: "0x" + signature.hex(),
        },
        digest=digest,
    )


class ReplayGuard:
    """Remembers (sender, nonce) pairs until their expiry; refuses repeats.

    Memory is bounded because a request may be valid for at most MAX_TTL_S: pairs
    are dropped once their request has expired (plus the tolerated skew).

    With ``path``, every pair is also written to a SQLite file (WAL,
    ``synchronous=NORMAL``) before the check returns, so before the request is
    answered, and the pairs not yet expired are loaded when the guard is opened:
    a request replayed after the node restarts, cleanly or killed, is refused as
    well. The write is not flushed to disk on its own (no fsync per request): an
    operating-system crash or power cut may lose the last pairs, which the
    journal's durable records cover for anything that moves money (see
    docs/network.md).
    """

    def __init__(self, path: Path | str | None = None, *, now: float | None = None) -> None:
        self._seen: dict[tuple[bytes, int], int] = {}
        self._lock = threading.Lock()
        self._next_purge = 0.0
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._open(Path(path), time.time() if now is None else now)

    def _open(self, path: Path, now: float) -> None:
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS nonces (sender BLOB NOT NULL, nonce BLOB NOT NULL,"
                " expiry INTEGER NOT NULL, PRIMARY KEY (sender, nonce)) WITHOUT ROWID"
            )
            db.execute("DELETE FROM nonces WHERE expiry < ?", (int(now - SKEW_S),))
            rows = db.execute("SELECT sender, nonce, expiry FROM nonces").fetchall()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the nonce store {path}: {exc}") from exc
        self._seen = {(bytes(s), int.from_bytes(n, "big")): int(e) for s, n, e in rows}
        self._db = db

    def check_and_remember(self, sender: bytes, nonce: int, expiry: int, now: float) -> None:
        with self._lock:
            if now >= self._next_purge:
                self._purge(now)
            key = (sender, nonce)
            if key in self._seen:
                raise BadSignature("replayed request: this nonce was already used")
            if self._db is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO nonces VALUES (?, ?, ?)",
                    (sender, nonce.to_bytes(32, "big"), expiry),
                )
            self._seen[key] = expiry

    def _purge(self, now: float) -> None:
        horizon = now - SKEW_S
        self._seen = {k: e for k, e in self._seen.items() if e >= horizon}
        if self._db is not None:
            self._db.execute("DELETE FROM nonces WHERE expiry < ?", (int(horizon),))
        self._next_purge = now + 10

    def close(self) -> None:
        """Close the nonce file, if any (the guard is not used afterwards)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __len__(self) -> int:
        return len(self._seen)


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise BadSignature(f"unsigned request: header {name} is missing")
    return value


def verify_request(
    domain: Domain,
    recipient: str,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    replay: ReplayGuard,
    now: float | None = None,
) -> tuple[str, bytes]:
    """Check a signed request addressed to ``recipient``; return (sender, request digest).

    Raises BadSignature with the reason: missing headers, malformed values,
    expired, expiry too far ahead, replayed nonce, or a signature that does
    not recover to the claimed sender (wrong key, body, path, chain or market).
    """
    t = time.time() if now is None else now
    sender_text = _header(headers, H_SENDER)
    try:
        nonce = int(_header(headers, H_NONCE))
        expiry = int(_header(headers, H_EXPIRY))
        signature = bytes.fromhex(_header(headers, H_SIGNATURE).removeprefix("0x"))
        sender = address_bytes(sender_text)
    except ValueError as exc:
        raise BadSignature(f"malformed signature headers: {exc}") from exc
    if not 0 <= nonce < 2**256 or not 0 <= expiry < 2**64:
        raise BadSignature("nonce or expiry out of range")
    if expiry < t - SKEW_S:
        raise BadSignature(f"expired request: expiry {expiry} is in the past")
    if expiry > t + MAX_TTL_S + SKEW_S:
        raise BadSignature(f"request expiry more than {MAX_TTL_S}s ahead")
    digest = request_digest(
        domain, sender, address_bytes(recipient), method, path, body, nonce, expiry
    )
    if recover_digest(digest, signature) != sender:
        raise BadSignature(
            "bad signature: it does not match the sender, body, path, chain or market"
        )
    replay.check_and_remember(sender, nonce, expiry, t)
    return checksum("0x" + sender.hex()), digest


def sign_response(
    account: Account, domain: Domain, recipient: str, request: bytes, status: int, body: bytes
) -> dict[str, str]:
    """Headers that sign a response to the request with digest ``request``."""
    digest = response_digest(
        domain, address_bytes(account.address), address_bytes(recipient), request, status, body
    )
    return {
        H_SENDER: account.address,
        H_REQUEST: "0x" + request.hex(),
        H_SIGNATURE: "0x" + sign_digest(account.key, digest).hex(),
    }


def verify_response(
    domain: Domain,
    provider: str,
    recipient: str,
    request: bytes,
    status: int,
    body: bytes,
    headers: Mapping[str, str],
) -> None:
    """Check that ``provider`` signed this response to our request; raise BadSignature if not."""
    try:
        signature = bytes.fromhex(_header(headers, H_SIGNATURE).removeprefix("0x"))
        answered = bytes.fromhex(_header(headers, H_REQUEST).removeprefix("0x"))
    except ValueError as exc:
        raise BadSignature(f"malformed response signature headers: {exc}") from exc
    if answered != request:
        raise BadSignature("response answers another request")
    expected = address_bytes(provider)
    digest = response_digest(domain, expected, address_bytes(recipient), request, status, body)
    if recover_digest(digest, signature) != expected:
        raise BadSignature("response not signed by the provider (or body altered)")
