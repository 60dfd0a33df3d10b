"""Merkle trees over job receipts, hashed exactly as ``JobMarket.verify_receipt``.

Leaves are 32-byte hashes. An inner node is ``keccak256(min(a, b) || max(a, b))``
(sorted pairs, so a proof is just the list of siblings). A level with an odd
count carries its last node up unchanged. The root of no leaves is 32 zero bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._exceptions import InvalidInput
from ._keccak import keccak256 as keccak

__all__ = [
    "EMPTY_ROOT",
    "MerkleAccumulator",
    "hash_pair",
    "merkle_proof",
    "merkle_root",
    "verify_proof",
]

EMPTY_ROOT = b"\x00" * 32


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Hash two nodes in sorted order."""
    return bytes(keccak(a + b if a < b else b + a))


def _check(leaves: Sequence[bytes]) -> None:
    for leaf in leaves:
        if len(leaf) != 32:
            raise InvalidInput(f"merkle leaves must be 32 bytes, got {len(leaf)}")


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        up = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            up.append(level[-1])
        levels.append(up)
    return levels


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root of the tree over ``leaves`` in order."""
    _check(leaves)
    if not leaves:
        return EMPTY_ROOT
    return _levels(leaves)[-1][0]


def merkle_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Siblings from leaf ``index`` up to the root."""
    _check(leaves)
    if not 0 <= index < len(leaves):
        raise InvalidInput(f"leaf index {index} out of range for {len(leaves)} leaves")
    proof: list[bytes] = []
    for level in _levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return proof


def verify_proof(leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """True when ``leaf`` with ``proof`` hashes up to ``root``."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root


class MerkleAccumulator:
    """Append-only leaves with the :func:`merkle_root` of all of them in O(log n).

    The tree above splits its leaves into perfect subtrees by the binary digits
    of their count (a level with an odd count carries its last node up), so
    the root is ``hash_pair(P1, hash_pair(P2, ...))`` over the roots of those
    subtrees, largest first: the same frontier a Merkle mountain range keeps.
    """

    def __init__(self) -> None:
        self._frontier: list[tuple[int, bytes]] = []  # (size, root), sizes strictly falling
        self.count = 0

    def append(self, leaf: bytes) -> None:
        if len(leaf) != 32:
            raise InvalidInput(f"merkle leaves must be 32 bytes, got {len(leaf)}")
        size, node = 1, leaf
        while self._frontier and self._frontier[-1][0] == size:
            _, left = self._frontier.pop()
            node = hash_pair(left, node)
            size *= 2
        self._frontier.append((size, node))
        self.count += 1

    def root(self) -> bytes:
        if not self._frontier:
            return EMPTY_ROOT
        node = self._frontier[-1][1]
        for _, left in reversed(self._frontier[:-1]):
            node = hash_pair(left, node)
        return node
