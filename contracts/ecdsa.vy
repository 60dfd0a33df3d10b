# pragma version ~=0.4.3
"""
@title ECDSA
@custom:contract-name ecdsa
@notice Signature checks shared by the idlegrid contracts as a stateless Vyper
        0.4 module (`import ecdsa`; no `initializes` needed). A caller checks
        `convert(s, uint256) <= ecdsa.SECP256K1_HALF_N` and the signer returned
        by `ecdsa._recover` with its own revert reasons.
@dev The low-s check is a constant comparison at the call site rather than an
     internal function: an internal call costs about 30 gas on every voucher
     redemption, the settlement path the market is measured by.
"""

# Half the secp256k1 curve order. Signatures with s above it are rejected (EIP-2):
# for every valid signature (v, r, s) there is a second one (v', r, n - s) of the
# same digest, and accepting both would let anyone restate a signature.
SECP256K1_HALF_N: constant(uint256) = (
    57896044618658097711785492504343953926418782139537452191302581570759080747168
)


@internal
@view
def _recover(digest: bytes32, v: uint8, r: bytes32, s: bytes32) -> address:
    # the signer of `digest`; the zero address when (v, r, s) is not a valid
    # signature, so a caller must never compare the result with the zero address
    return ecrecover(digest, v, r, s)
