# pragma version ~=0.4.3
"""
@title EIP-712 domain
@custom:contract-name eip712
@notice The EIP-712 domain separator and typed-data digest of one contract,
        shared by the idlegrid contracts as a Vyper 0.4 module
        (`initializes: eip712`, `exports: eip712.DOMAIN_SEPARATOR`).
@dev The separator is recomputed on every use rather than cached, so that on a
     chain fork with a new chain id every signature made for the old chain is
     void at once.
"""

EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)

# every idlegrid domain is version "1"; a constant costs less to read than an immutable
_VERSION_HASH: constant(bytes32) = keccak256("1")

_NAME_HASH: immutable(bytes32)


@deploy
def __init__(name: String[50]):
    """
    @param name The domain's name (the EIP-712 `name` field).
    """
    _NAME_HASH = keccak256(name)


@external
@view
def DOMAIN_SEPARATOR() -> bytes32:
    """
    @notice The EIP-712 domain separator of this contract, for the current chain id.
    """
    return self._domain_separator()


@internal
@view
def _domain_separator() -> bytes32:
    return keccak256(
        abi_encode(EIP712_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, chain.id, self)
    )


@internal
@view
def _hash_typed_data(struct_hash: bytes32) -> bytes32:
    # the digest a signer signs: "\x19\x01" || domain separator || struct hash. The
    # separator is written out rather than taken from _domain_separator: one internal
    # call less on every voucher redemption.
    separator: bytes32 = keccak256(
        abi_encode(EIP712_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, chain.id, self)
    )
    return keccak256(concat(b"\x19\x01", separator, struct_hash))
