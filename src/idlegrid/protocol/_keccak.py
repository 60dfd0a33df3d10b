"""keccak256, from the fastest implementation installed.

``eth_hash`` (what ``eth_utils.keccak`` calls) prefers pycryptodome when both of its
backends are installed, and pycryptodome's keccak builds cffi objects on every call:
about 4 us a hash here, against under 1 us for ``safe-pysha3``'s C implementation. A
job's signed request, voucher, receipt and response take some 25 hashes on each side,
so the hot paths of the protocol hash through this module.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["keccak256"]


def _pick() -> Callable[[bytes], bytes]:
    try:
        from sha3 import keccak_256  # type: ignore[import-untyped]  # safe-pysha3
    except ImportError:  # pragma: no cover - the core install has it
        from eth_hash.auto import keccak

        return lambda data: bytes(keccak(data))

    def fast(data: bytes) -> bytes:
        return keccak_256(data).digest()  # type: ignore[no-any-return]

    return fast


#: keccak256 of ``data`` (32 bytes)
keccak256: Callable[[bytes], bytes] = _pick()
