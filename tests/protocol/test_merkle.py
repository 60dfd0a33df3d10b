"""Merkle trees: proofs round-trip, tampering is detected, edge cases are explicit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idlegrid import InvalidInput
from idlegrid.protocol import (
    EMPTY_ROOT,
    MerkleAccumulator,
    hash_pair,
    merkle_proof,
    merkle_root,
    verify_proof,
)

leaves_st = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40)


@given(leaves_st, st.data())
def test_every_leaf_proves_against_the_root(leaves: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    root = merkle_root(leaves)
    assert verify_proof(leaves[index], merkle_proof(leaves, index), root)


@given(leaves_st, st.data())
def test_a_changed_leaf_does_not_prove(leaves: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    forged = bytes([leaves[index][0] ^ 1]) + leaves[index][1:]
    assert not verify_proof(forged, merkle_proof(leaves, index), merkle_root(leaves))


def test_small_trees_by_hand() -> None:
    a, b, c = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    assert merkle_root([]) == EMPTY_ROOT
    assert merkle_root([a]) == a
    assert merkle_root([a, b]) == hash_pair(a, b) == hash_pair(b, a)
    # odd level: c is carried up unchanged
    assert merkle_root([a, b, c]) == hash_pair(hash_pair(a, b), c)
    assert merkle_proof([a, b, c], 2) == [hash_pair(a, b)]


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidInput):
        merkle_root([b"short"])
    with pytest.raises(InvalidInput):
        merkle_proof([b"\x00" * 32], 1)


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70))
def test_accumulator_root_equals_tree_root_at_every_count(leaves: list[bytes]) -> None:
    acc = MerkleAccumulator()
    assert acc.root() == EMPTY_ROOT
    for i, leaf in enumerate(leaves, start=1):
        acc.append(leaf)
        assert acc.count == i
        assert acc.root() == merkle_root(leaves[:i])
