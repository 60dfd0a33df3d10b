# pragma version ~=0.4.3
"""
@title Merkle
@custom:contract-name merkle
@notice Merkle proofs as idlegrid.protocol's trees make them (sorted-pair
        keccak256), shared by the contracts that check a leaf under a root
        (`Disputes`: a job receipt under a voucher's receipts root; `RewardPool`: a
        contributor's amount under a posting's root). Stateless: `import merkle`.
"""

# siblings in a proof, at most (a tree of 2^64 leaves)
MAX_PROOF: constant(uint256) = 64


@internal
@pure
def _verify(leaf: bytes32, proof: DynArray[bytes32, MAX_PROOF], root: bytes32) -> bool:
    # sorted-pair keccak256, as idlegrid.protocol's merkle trees
    node: bytes32 = leaf
    for sibling: bytes32 in proof:
        if convert(node, uint256) < convert(sibling, uint256):
            node = keccak256(concat(node, sibling))
        else:
            node = keccak256(concat(sibling, node))
    return node == root
