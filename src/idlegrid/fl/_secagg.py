"""SecAgg+-style secure aggregation as pure functions over a stateless client.

The coordinator learns the SUM of the members' update vectors and nothing about any one
of them, even when some members drop out. The protocol is Flower's SecAgg+
(``flwr.clientapp`` ``secaggplus_mod`` and ``flwr.server.workflow.SecAggPlusWorkflow``,
after Bell et al. 2020), run as four request/answer stages that the owner carries over
HTTP jobs::

    keys    client_keys(secret, run, rnd)                     -> RoundKeys (pk1, pk2)
    share   client_shares(..., roster, cfg)                   -> {j: ciphertext for j}
    mask    client_mask(..., roster, cfg, vector)             -> masked uint64 [P]
    unmask  client_unmask(..., roster, inbox, survivors, dropped) -> {j: share}
    server  SecAggServer(roster, cfg).add(me, masked) ... .unmask(answers) -> float64 [P]

Taken from Flower (``flwr.common.secure_aggregation``): Shamir sharing (the format of
``create_shares``/``combine_shares``, on the same pycryptodome ``Shamir``, without the
thread pool Flower starts on every call), the key derivation after the key exchange
(HKDF-SHA256 to a urlsafe Fernet key, as ``generate_shared_key``) and Fernet encryption
(``encrypt``/``decrypt``), the share plaintext layout naming (sender, receiver)
(``share_keys_plaintext_concat``/``_separate``), stochastic quantization
(``quantize``/``dequantize``), ``parameters_mod``, and the defaults (clip 8.0, target
range 2**22, modulus 2**32).

Ours, and why:

* Stateless client. Flower's mod keeps the round's keys and the received shares in the
  client's context between stages. An edge node answering HTTP jobs should not, so every
  round secret (encryption key pair sk1/pk1, masking key pair sk2/pk2, self-mask seed b)
  is DERIVED with HKDF-SHA256 from one long-lived 32-byte ``secret`` and ``(run, rnd)``,
  and in stage "unmask" the coordinator relays the share ciphertexts again and the
  client re-decrypts them. (Key numbering is this module's: pk1 encrypts the shares and
  pk2 masks; Flower numbers them the other way round.)
* ``UnmaskLedger``, the one piece of client state: a stateless client could be asked to
  unmask the same round twice (once with j "dropped", once with j "surviving", which
  gives the coordinator both of j's masks) or to mask two vectors under the same
  one-time masks. The ledger refuses both.
* The mask generator. Flower's ``pseudo_rand_gen`` folds the seed into 32 bits by XOR
  (``b"AAAABBBB"`` and ``b"BBBBAAAA"`` give the same mask) and draws from MT19937 with
  ``randint(0, mod_range - 1)``, which never yields ``mod_range - 1``. Here the seed keys
  ChaCha20 (via SHA-256), whose keystream taken modulo a power of two is uniform.
* X25519 key agreement, not Flower's ECDH on SECP384R1. A round costs each member about
  3n key agreements (share, mask, unmask) plus two key derivations, and on SECP384R1
  that was the costliest part of a secure round (0.2 ms per agreement and per key,
  against 0.03 ms for X25519, measured here). X25519 gives 128-bit security, the level
  of the Fernet/AES-128 encryption the shares travel under anyway.
* Public keys travel as raw 32-byte X25519 keys (canonical encodings only, so "two
  members with the same key" is a byte comparison), not PEM.
* Member ids are the Shamir x-coordinates 1..n, so a share names its holder.

Not implemented: SecAgg+'s k-regular neighbour graph (every member masks against every
other: O(n) key agreements and masks per client, fine for n up to about 50), the
weighting factor Flower masks along with the vector (pre-scale the update instead), and
authentication of the roster, which is the caller's: the ``fl`` workload has each node
sign its ``RoundKeys`` and every member check every entry (``workloads/_kind_fl.py``).
Every member of the roster must have answered "share" before anyone masks; the
coordinator agrees keys again without a member that did not.

Caches (a worker process lives across a round's stages): a member's round secrets, the
parsed public keys and the shared keys are kept, so that "unmask" does not redo the
key agreements "share" did.

Security needs ``2 * threshold > n``: a coordinator that tells half the members "j
dropped" and the other half "j survived" then cannot reach the threshold for both of
j's secrets, since each member answers "unmask" only once per round.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from Crypto.Util.Padding import pad, unpad
from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flwr.common.secure_aggregation.crypto.symmetric_encryption import decrypt, encrypt
from flwr.common.secure_aggregation.ndarrays_arithmetic import parameters_mod
from flwr.common.secure_aggregation.quantization import dequantize, quantize
from flwr.common.secure_aggregation.secaggplus_utils import (
    share_keys_plaintext_concat,
    share_keys_plaintext_separate,
)
from numpy.typing import NDArray

from idlegrid._exceptions import InvalidInput

__all__ = [
    "RoundKeys",
    "SecAggConfig",
    "SecAggServer",
    "UnmaskLedger",
    "client_keys",
    "client_mask",
    "client_shares",
    "client_unmask",
]

#: an X25519 key, private or public
_KEY_BYTES = 32
#: 2**255 - 19: a canonical X25519 public key is a u-coordinate below it
_P25519 = 2**255 - 19
_SEED_BYTES = 32
_SALT = b"idlegrid/secagg/v1"
_MAX_RUN_BYTES = 256

Vector = NDArray[np.uint64]


@dataclass(frozen=True, kw_only=True)
class SecAggConfig:
    """What every member and the coordinator of one round must agree on.

    ``threshold`` shares rebuild a member's secret. Each coordinate is clipped to
    ``[-clip_range, clip_range]`` and quantized to ``[0, target_range]``; masks live
    modulo ``mod_range``, a power of two. The sum of n quantized vectors must not wrap:
    ``n * target_range < mod_range`` (the defaults, Flower's, allow n <= 1023), checked
    against the roster size.
    """

    threshold: int
    clip_range: float = 8.0
    target_range: int = 2**22
    mod_range: int = 2**32

    def __post_init__(self) -> None:
        if self.threshold < 2:
            raise InvalidInput(f"secagg: threshold must be at least 2, got {self.threshold}")
        if not (math.isfinite(self.clip_range) and self.clip_range > 0):
            raise InvalidInput(f"secagg: clip_range must be positive, got {self.clip_range}")
        if not 2 <= self.target_range < 2**31:  # Flower's quantize rounds into int32
            raise InvalidInput(
                f"secagg: target_range must be in [2, 2**31), got {self.target_range}"
            )
        m = self.mod_range
        if not (2 <= m <= 2**64 and m & (m - 1) == 0):
            raise InvalidInput(f"secagg: mod_range must be a power of two <= 2**64, got {m}")

    @classmethod
    def for_clients(
        cls,
        n: int,
        *,
        dropout: float = 0.3,
        clip_range: float = 8.0,
        target_range: int = 2**22,
        mod_range: int = 2**32,
    ) -> SecAggConfig:
        """A config for ``n`` members that unmasks with up to ``dropout`` of them gone.

        ``threshold = n - floor(dropout * n)``, and at least ``n // 2 + 1`` so that no
        minority (nor two disjoint groups) can rebuild a member's secrets.
        """
        if n < 3:
            raise InvalidInput(f"secagg: need at least 3 members, got {n}")
        if not 0.0 <= dropout < 0.5:
            raise InvalidInput(f"secagg: dropout must be in [0, 0.5), got {dropout}")
        threshold = max(n - math.floor(round(dropout * n, 9)), n // 2 + 1)
        cfg = cls(
            threshold=threshold,
            clip_range=clip_range,
            target_range=target_range,
            mod_range=mod_range,
        )
        cfg.check_roster_size(n)
        return cfg

    def check_roster_size(self, n: int) -> None:
        """Raise ``InvalidInput`` unless a roster of ``n`` members fits this config."""
        if n < self.threshold:
            raise InvalidInput(f"secagg: {n} members are fewer than the threshold {self.threshold}")
        if 2 * self.threshold <= n:
            raise InvalidInput(
                f"secagg: threshold {self.threshold} is not a majority of {n} members: two "
                "disjoint groups could each rebuild a member's secrets"
            )
        if n * self.target_range >= self.mod_range:
            raise InvalidInput(
                f"secagg: the sum of {n} values in [0, {self.target_range}] would wrap "
                f"modulo {self.mod_range}"
            )


@dataclass(frozen=True)
class RoundKeys:
    """A member's public keys for one round: ``pk1`` encrypts shares, ``pk2`` masks."""

    pk1: bytes
    pk2: bytes


@dataclass(frozen=True)
class _RoundSecrets:
    sk1: x25519.X25519PrivateKey
    sk2: x25519.X25519PrivateKey
    b: bytes


def _hkdf(secret: bytes, run: str, rnd: int, label: bytes, length: int) -> bytes:
    if len(secret) != 32:
        raise InvalidInput(f"secagg: the client secret must be 32 bytes, got {len(secret)}")
    run_bytes = run.encode()
    if len(run_bytes) > _MAX_RUN_BYTES:
        raise InvalidInput(f"secagg: run id longer than {_MAX_RUN_BYTES} bytes")
    if not 0 <= rnd < 2**63:
        raise InvalidInput(f"secagg: round must be in [0, 2**63), got {rnd}")
    # Length-prefixed so that no (run, rnd, label) can be read as another one.
    info = len(run_bytes).to_bytes(2, "big") + run_bytes + rnd.to_bytes(8, "big") + label
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info).derive(secret)


@functools.lru_cache(maxsize=64)
def _derive(secret: bytes, run: str, rnd: int) -> _RoundSecrets:
    """This member's round secrets (kept for the few rounds a worker sees in a row: a
    round's stages derive the same keys)."""

    def key(label: bytes) -> x25519.X25519PrivateKey:
        # any 32 bytes are an X25519 private key (X25519 clamps them)
        return x25519.X25519PrivateKey.from_private_bytes(
            _hkdf(secret, run, rnd, label, _KEY_BYTES)
        )

    return _RoundSecrets(key(b"sk1"), key(b"sk2"), _hkdf(secret, run, rnd, b"b", _SEED_BYTES))


def _pk_bytes(sk: x25519.X25519PrivateKey) -> bytes:
    return sk.public_key().public_bytes_raw()


def _load_pk(data: bytes, who: int) -> x25519.X25519PublicKey:
    try:
        return _parsed_pk(data)
    except InvalidInput as exc:
        raise InvalidInput(f"secagg: member {who}'s public key: {exc}") from None


@functools.lru_cache(maxsize=1024)
def _parsed_pk(data: bytes) -> x25519.X25519PublicKey:
    """A raw X25519 public key in its one canonical encoding, parsed once (a roster's
    keys come back in every stage of a round)."""
    if len(data) != _KEY_BYTES:
        raise InvalidInput(f"not a 32-byte X25519 key ({len(data)} bytes)")
    if int.from_bytes(data, "little") >= _P25519:
        raise InvalidInput("not a canonical X25519 key (u >= 2**255 - 19)")
    return x25519.X25519PublicKey.from_public_bytes(data)


def _prg(seed: bytes, size: int, mod_range: int) -> Vector:
    """``size`` uniform values in ``[0, mod_range)`` from ChaCha20 keyed by ``seed``."""
    key = hashlib.sha256(b"idlegrid/secagg/prg" + seed).digest()
    stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    out = np.frombuffer(stream.update(bytes(8 * size)), dtype="<u8").astype(np.uint64)
    return out & np.uint64(mod_range - 1)


#: shared keys already agreed, by (my public key, theirs): a round's share and unmask
#: stages agree on the same pairs
_SHARED: OrderedDict[tuple[bytes, bytes], bytes] = OrderedDict()
_SHARED_MAX = 4096
_SHARED_LOCK = threading.Lock()


def _agree(sk: x25519.X25519PrivateKey, pk: x25519.X25519PublicKey) -> bytes:
    """X25519, then Flower's HKDF-SHA256 to a urlsafe Fernet key (as its
    ``generate_shared_key`` does after ECDH), kept for the pairs a worker meets again."""
    key = (_pk_bytes(sk), pk.public_bytes_raw())
    with _SHARED_LOCK:
        hit = _SHARED.get(key)
        if hit is not None:
            _SHARED.move_to_end(key)
            return hit
    try:
        raw = sk.exchange(pk)
    except ValueError as exc:  # a small-order point: the shared secret would be zero
        raise InvalidInput("secagg: a public key of small order") from exc
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=None).derive(raw)
    shared = base64.urlsafe_b64encode(derived)
    with _SHARED_LOCK:
        _SHARED[key] = shared
        while len(_SHARED) > _SHARED_MAX:
            _SHARED.popitem(last=False)
    return shared


class _Roster:
    """A checked roster: ids 1..n, parsed keys, no key twice."""

    def __init__(self, roster: Mapping[int, RoundKeys], cfg: SecAggConfig) -> None:
        n = len(roster)
        if set(roster) != set(range(1, n + 1)):
            raise InvalidInput(f"secagg: members must be numbered 1..{n}, got {sorted(roster)}")
        cfg.check_roster_size(n)
        self.n = n
        self.pk1 = {j: _load_pk(keys.pk1, j) for j, keys in roster.items()}
        self.pk2 = {j: _load_pk(keys.pk2, j) for j, keys in roster.items()}
        raw = [k.pk1 for k in roster.values()] + [k.pk2 for k in roster.values()]
        if len(set(raw)) != len(raw):
            raise InvalidInput("secagg: two roster entries share a public key")
        self.keys = dict(roster)

    def check_me(self, me: int, mine: _RoundSecrets) -> None:
        if me not in self.keys:
            raise InvalidInput(f"secagg: member {me} is not in the roster")
        if self.keys[me] != RoundKeys(_pk_bytes(mine.sk1), _pk_bytes(mine.sk2)):
            raise InvalidInput(f"secagg: the roster does not hold member {me}'s keys")


def _member_set(name: str, ids: Collection[int], roster: _Roster) -> frozenset[int]:
    out = frozenset(ids)
    if len(out) != len(ids) or not out <= set(roster.keys):
        raise InvalidInput(f"secagg: {name} must be distinct roster members, got {sorted(ids)}")
    return out


def client_keys(secret: bytes, run: str, rnd: int) -> RoundKeys:
    """Stage "keys": this member's public keys for round ``(run, rnd)``."""
    mine = _derive(secret, run, rnd)
    return RoundKeys(_pk_bytes(mine.sk1), _pk_bytes(mine.sk2))


def client_shares(
    secret: bytes,
    run: str,
    rnd: int,
    me: int,
    roster: Mapping[int, RoundKeys],
    cfg: SecAggConfig,
) -> dict[int, bytes]:
    """Stage "share": Shamir shares of b and sk2, one ciphertext per member (me too).

    The ciphertext for member j holds ``share_keys_plaintext_concat(me, j, b_j, sk2_j)``
    under the Fernet key derived from X25519(sk1_me, pk1_j). New shares each call.
    """
    checked = _Roster(roster, cfg)
    mine = _derive(secret, run, rnd)
    checked.check_me(me, mine)
    b_shares = create_shares(mine.b, cfg.threshold, checked.n)
    sk_shares = create_shares(mine.sk2.private_bytes_raw(), cfg.threshold, checked.n)
    out: dict[int, bytes] = {}
    for j in range(1, checked.n + 1):  # create_shares gives x-coordinate j at index j - 1
        plaintext = share_keys_plaintext_concat(me, j, b_shares[j - 1], sk_shares[j - 1])
        out[j] = encrypt(_agree(mine.sk1, checked.pk1[j]), plaintext)
    return out


def _sign(me: int, j: int) -> int:
    """The sign of the pairwise mask of ``me`` with ``j`` in ``me``'s vector."""
    return 1 if me > j else -1


def client_mask(
    secret: bytes,
    run: str,
    rnd: int,
    me: int,
    roster: Mapping[int, RoundKeys],
    cfg: SecAggConfig,
    vector: NDArray[Any],
) -> Vector:
    """Stage "mask": quantize ``vector`` [P] and hide it under b and the pairwise masks.

    ``q + PRG(b) + sum_j ±PRG(X25519(sk2_me, pk2_j)) mod mod_range``, + when me > j.
    Quantization draws its stochastic rounding from numpy's global generator (Flower's
    ``quantize``); that noise is not secret. Use ``UnmaskLedger.admit_mask`` first.
    """
    checked = _Roster(roster, cfg)
    mine = _derive(secret, run, rnd)
    checked.check_me(me, mine)
    x = _check_update(vector)
    q = quantize([x], cfg.clip_range, cfg.target_range)[0].astype(np.uint64)
    out = q + _prg(mine.b, x.size, cfg.mod_range)
    for j, pk2 in checked.pk2.items():
        if j != me:
            mask = _prg(_agree(mine.sk2, pk2), x.size, cfg.mod_range)
            out = out + mask if _sign(me, j) > 0 else out - mask  # uint64 wraps: mod 2**64
    result: Vector = parameters_mod([out], cfg.mod_range)[0]
    return result


def _check_update(vector: NDArray[Any]) -> NDArray[np.float64]:
    x = np.asarray(vector)
    if x.ndim != 1 or x.size == 0 or not np.issubdtype(x.dtype, np.floating):
        raise InvalidInput(
            f"secagg: the update must be a non-empty float vector, got {x.dtype} {x.shape}"
        )
    if not np.isfinite(x).all():
        raise InvalidInput("secagg: the update holds NaN or infinite values")
    return x.astype(np.float64)


def client_unmask(
    secret: bytes,
    run: str,
    rnd: int,
    me: int,
    roster: Mapping[int, RoundKeys],
    cfg: SecAggConfig,
    inbox: Mapping[int, bytes],
    survivors: Collection[int],
    dropped: Collection[int],
) -> dict[int, bytes]:
    """Stage "unmask": my share of b_j for each survivor j, of sk2_j for each dropped j.

    ``inbox[j]`` is the ciphertext j addressed to me in stage "share", relayed again.
    Use ``UnmaskLedger.admit_unmask`` first: this function does not remember.
    """
    checked = _Roster(roster, cfg)
    alive = _member_set("survivors", survivors, checked)
    gone = _member_set("dropped", dropped, checked)
    if alive & gone:
        raise InvalidInput(f"secagg: members {sorted(alive & gone)} both survived and dropped")
    if len(alive) < cfg.threshold:
        raise InvalidInput(
            f"secagg: {len(alive)} survivors are fewer than the threshold {cfg.threshold}"
        )
    mine = _derive(secret, run, rnd)
    checked.check_me(me, mine)
    out: dict[int, bytes] = {}
    for j in sorted(alive | gone):
        if j not in inbox:
            raise InvalidInput(f"secagg: no ciphertext from member {j} to unmask with")
        try:
            plaintext = decrypt(_agree(mine.sk1, checked.pk1[j]), inbox[j])
        except (InvalidToken, TypeError, ValueError) as exc:
            raise InvalidInput(f"secagg: the ciphertext from member {j} does not decrypt") from exc
        src, dst, b_share, sk_share = share_keys_plaintext_separate(plaintext)
        if (src, dst) != (j, me):
            raise InvalidInput(
                f"secagg: the ciphertext relayed as {j} -> {me} names {src} -> {dst}"
            )
        out[j] = b_share if j in alive else sk_share
    return out


#: GF(2^128) as pycryptodome's ``Shamir`` defines it: 1 + x + x^2 + x^7 + x^128
_IRREDUCIBLE = (1 << 128) | 0x87


def _gf_mul(a: int, b: int) -> int:
    """Product in GF(2^128) (pycryptodome's field; its own multiply is written to run in
    constant time and is about 20 times slower: the coordinator's reconstruction of
    others' secrets needs no such care)."""
    z = 0
    while b:
        if b & 1:
            z ^= a
        b >>= 1
        a <<= 1
        if a >> 128:
            a ^= _IRREDUCIBLE
    return z


def _gf_inverse(a: int) -> int:
    """Inverse in GF(2^128), by the extended Euclidean algorithm over GF(2)[x]."""
    if a == 0:
        raise ValueError("Failed to combine shares")
    r0, r1, s0, s1 = a, _IRREDUCIBLE, 1, 0
    while r1:
        q = 0
        r = r0
        while r.bit_length() >= r1.bit_length():
            shift = r.bit_length() - r1.bit_length()
            q ^= 1 << shift
            r ^= r1 << shift
        r0, r1 = r1, r
        prod = 0
        qq, ss = q, s1
        while qq:  # carry-less q * s1, no reduction (degrees stay below 128)
            if qq & 1:
                prod ^= ss
            qq >>= 1
            ss <<= 1
        s0, s1 = s1, s0 ^ prod
    return s0


def create_shares(secret: bytes, threshold: int, num: int) -> list[bytes]:
    """Flower's ``shamir.create_shares``, in its format (``<4-byte little-endian index>``
    then a 16-byte share of each 16-byte chunk of the PKCS#7-padded secret, as
    pycryptodome's ``Shamir.split`` makes them), without its thread pool (Flower starts a
    ``ThreadPoolExecutor`` per call, which costs more than the arithmetic) and with a
    field multiply that does not walk 128 bits for a small x; ``test_secagg`` checks
    both ways that the formats agree."""
    padded = pad(secret, 16)
    out = [bytearray(i.to_bytes(4, "little")) for i in range(1, num + 1)]
    for k in range(0, len(padded), 16):
        # pycryptodome's Shamir.split: random coefficients, the chunk as the constant
        # term, evaluated by Horner's rule at x = 1..num (here with a multiply whose loop
        # runs over the small x, not over 128 bits)
        coeffs = [int.from_bytes(os.urandom(16), "big") for _ in range(threshold - 1)]
        coeffs.append(int.from_bytes(padded[k : k + 16], "big"))
        for x in range(1, num + 1):
            y = 0
            for c in coeffs:
                y = _gf_mul(y, x) ^ c
            out[x - 1] += y.to_bytes(16, "big")
    return [bytes(share) for share in out]


def combine_shares(share_list: list[bytes]) -> bytes:
    """Flower's ``shamir.combine_shares`` (pycryptodome's ``Shamir.combine`` on each chunk)
    computed once per share set: the Lagrange weights at 0 depend only on the indices,
    so they are found once for every chunk; ValueError when the shares do not rebuild a
    padded secret or name an index twice."""
    chunks = (len(share_list[0]) - 4) >> 4
    xs = [int.from_bytes(share[:4], "little") for share in share_list]
    if len(set(xs)) != len(xs) or 0 in xs or any(len(s) != 4 + 16 * chunks for s in share_list):
        raise ValueError("Failed to combine shares")
    weights = []
    for j, xj in enumerate(xs):
        num = den = 1
        for m, xm in enumerate(xs):
            if m != j:
                num = _gf_mul(num, xm)  # (0 - x_m) is x_m in characteristic 2
                den = _gf_mul(den, xj ^ xm)
        weights.append(_gf_mul(num, _gf_inverse(den)))
    secret = bytearray()
    for c in range(chunks):
        start = 4 + 16 * c
        value = 0
        for w, share in zip(weights, share_list, strict=True):
            value ^= _gf_mul(w, int.from_bytes(share[start : start + 16], "big"))
        secret += value.to_bytes(16, "big")
    try:
        return unpad(bytes(secret), 16)
    except ValueError:
        raise ValueError("Failed to combine shares") from None


class UnmaskLedger:
    """A client's memory of what it masked and unmasked, per round ``(run, rnd)``.

    ``admit_unmask`` records the (survivors, dropped) sets first answered and refuses
    different ones later: otherwise a coordinator could ask once with j "dropped" and
    once with j "surviving" and learn both of j's masks, i.e. j's update.
    ``admit_mask`` records a digest of the vector first masked and refuses another
    vector: two vectors under the same one-time masks would leak their difference.
    The same request again is admitted (a retry). Holds at most ``max_rounds`` rounds;
    a forgotten round, and any older round of the same run, is refused from then on.
    Thread-safe.
    """

    def __init__(self, *, max_rounds: int = 1024) -> None:
        if max_rounds < 1:
            raise InvalidInput(f"secagg: max_rounds must be positive, got {max_rounds}")
        self._max = max_rounds
        self._rounds: OrderedDict[tuple[str, int], dict[str, object]] = OrderedDict()
        self._floor: OrderedDict[str, int] = OrderedDict()  # highest forgotten rnd per run
        self._lock = threading.Lock()

    def admit_mask(self, run: str, rnd: int, vector: NDArray[Any]) -> None:
        """Record the vector masked in this round, or raise if another one was."""
        x = np.ascontiguousarray(vector)
        digest = hashlib.sha256(f"{x.dtype.str}{x.shape}".encode() + x.tobytes()).digest()
        self._admit(run, rnd, "mask", digest, "a different vector was already masked")

    def admit_unmask(
        self, run: str, rnd: int, survivors: Collection[int], dropped: Collection[int]
    ) -> None:
        """Record the sets answered in this round, or raise if others were."""
        alive, gone = frozenset(survivors), frozenset(dropped)
        if alive & gone:
            raise InvalidInput(f"secagg: members {sorted(alive & gone)} both survived and dropped")
        self._admit(
            run, rnd, "unmask", (alive, gone), "it was already answered with other survivors"
        )

    def _admit(self, run: str, rnd: int, kind: str, value: object, why: str) -> None:
        with self._lock:
            if rnd <= self._floor.get(run, -1):
                raise InvalidInput(f"secagg: round {rnd} of run {run!r} is too old: forgotten")
            entry = self._rounds.setdefault((run, rnd), {})
            self._rounds.move_to_end((run, rnd))
            if entry.setdefault(kind, value) != value:
                raise InvalidInput(f"secagg: refusing to {kind} round {rnd} of {run!r}: {why}")
            while len(self._rounds) > self._max:
                (old_run, old_rnd), _ = self._rounds.popitem(last=False)
                self._floor[old_run] = max(old_rnd, self._floor.get(old_run, -1))
                self._floor.move_to_end(old_run)
                if len(self._floor) > self._max:
                    self._floor.popitem(last=False)


class SecAggServer:
    """The coordinator's side of one round: sums masked vectors, then removes the masks."""

    def __init__(self, roster: Mapping[int, RoundKeys], cfg: SecAggConfig) -> None:
        self._roster = _Roster(roster, cfg)
        self._cfg = cfg
        self._sum: Vector | None = None
        self._senders: set[int] = set()

    @property
    def survivors(self) -> frozenset[int]:
        """Members whose masked vectors were added."""
        return frozenset(self._senders)

    @property
    def dropped(self) -> frozenset[int]:
        """Members who sent no masked vector."""
        return frozenset(self._roster.keys) - self._senders

    def add(self, me: int, masked: NDArray[Any]) -> None:
        """Add member ``me``'s masked vector (``client_mask``'s output)."""
        if me not in self._roster.keys:
            raise InvalidInput(f"secagg: member {me} is not in the roster")
        if me in self._senders:
            raise InvalidInput(f"secagg: member {me} already sent a masked vector")
        y = np.asarray(masked)
        size = None if self._sum is None else self._sum.size
        if y.dtype != np.uint64 or y.ndim != 1 or y.size == 0 or size not in (None, y.size):
            raise InvalidInput(
                f"secagg: member {me} sent a {y.dtype} {y.shape} array, not uint64 [{size or 'P'}]"
            )
        if self._cfg.mod_range < 2**64 and (y >= np.uint64(self._cfg.mod_range)).any():
            raise InvalidInput(f"secagg: member {me} sent values outside [0, mod_range)")
        self._sum = y.copy() if self._sum is None else self._sum + y
        self._senders.add(me)

    def unmask(self, answers: Mapping[int, Mapping[int, bytes]]) -> NDArray[np.float64]:
        """The sum of the survivors' updates from ``answers[k] = client_unmask(k, ...)``.

        Rebuilds b_j of each survivor and sk2_j of each dropped member (their pairwise
        masks are still in the survivors' vectors) from ``threshold`` shares each.
        """
        if self._sum is None:
            raise InvalidInput("secagg: no masked vector was added")
        cfg, size = self._cfg, self._sum.size
        total = self._sum.copy()
        for j in sorted(self._roster.keys):
            secret = self._combine(j, answers)
            if j in self._senders:
                if len(secret) != _SEED_BYTES:
                    raise InvalidInput(f"secagg: the shares of member {j}'s seed are malformed")
                total -= _prg(secret, size, cfg.mod_range)
                continue
            sk2 = self._rebuild_sk2(j, secret)
            for k in self._senders:
                mask = _prg(_agree(sk2, self._roster.pk2[k]), size, cfg.mod_range)
                total = total - mask if _sign(k, j) > 0 else total + mask
        q = parameters_mod([total], cfg.mod_range)[0]
        n = len(self._senders)
        if (q > np.uint64(n * cfg.target_range)).any():
            raise InvalidInput(
                "secagg: the unmasked sum is out of range: a share or vector was bad"
            )
        recon = dequantize([q], cfg.clip_range, cfg.target_range)[0]
        out: NDArray[np.float64] = recon - (n - 1) * cfg.clip_range
        return out

    def _combine(self, j: int, answers: Mapping[int, Mapping[int, bytes]]) -> bytes:
        shares: list[bytes] = []
        for k in sorted(answers):
            if k not in self._roster.keys:
                raise InvalidInput(f"secagg: answer from {k}, who is not in the roster")
            share = answers[k].get(j)
            if share is None:
                continue
            if len(share) < 20 or (len(share) - 4) % 16 or int.from_bytes(share[:4], "little") != k:
                raise InvalidInput(f"secagg: member {k}'s share of {j}'s secret is malformed")
            shares.append(share)
        if len(shares) < self._cfg.threshold:
            raise InvalidInput(
                f"secagg: {len(shares)} shares of member {j}'s secret, "
                f"fewer than the threshold {self._cfg.threshold}: cannot unmask"
            )
        if len({len(s) for s in shares}) != 1:
            raise InvalidInput(f"secagg: the shares of member {j}'s secret differ in length")
        try:  # Shamir.combine wants exactly threshold shares
            return combine_shares(shares[: self._cfg.threshold])
        except ValueError as exc:
            raise InvalidInput(f"secagg: the shares of member {j}'s secret do not combine") from exc

    def _rebuild_sk2(self, j: int, secret: bytes) -> x25519.X25519PrivateKey:
        if len(secret) != _KEY_BYTES:
            raise InvalidInput(f"secagg: the shares of member {j}'s masking key are malformed")
        sk2 = x25519.X25519PrivateKey.from_private_bytes(secret)
        if _pk_bytes(sk2) != self._roster.keys[j].pk2:
            raise InvalidInput(
                f"secagg: the shares of member {j}'s masking key rebuild another key"
            )
        return sk2
