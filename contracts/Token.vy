# pragma version ~=0.4.3
"""
@title idlegrid Token
@notice A standard ERC-20 (EIP-20) with EIP-2612 `permit`. Only the owner mints
        (the devnet faucet). Supply is capped at 2**96 - 1 so that the market
        can pack amounts in 96 bits.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

import ecdsa
import eip712
import ownable

implements: IERC20
implements: IERC20Detailed

initializes: ownable
initializes: eip712

exports: (ownable.owner, ownable.pending_owner, ownable.transfer_ownership, ownable.accept_ownership, eip712.DOMAIN_SEPARATOR)

MAX_SUPPLY: public(constant(uint256)) = 2**96 - 1
PERMIT_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)

decimals: public(constant(uint8)) = 18

name: public(String[32])
symbol: public(String[16])
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
nonces: public(HashMap[address, uint256])


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


@deploy
def __init__(name_: String[32], symbol_: String[16]):
    """
    @param name_ ERC-20 name, also the EIP-712 domain name of `permit`.
    @param symbol_ ERC-20 symbol.
    """
    ownable.__init__()
    eip712.__init__(name_)
    self.name = name_
    self.symbol = symbol_


@external
def transfer(receiver: address, amount: uint256) -> bool:
    """
    @notice Move `amount` tokens from the caller to `receiver`.
    @return Always True; failures revert.
    """
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    """
    @notice Move `amount` tokens from `sender` to `receiver` using the caller's
            allowance, which decreases by `amount` (EIP-20).
    @return Always True; failures revert.
    """
    allowed: uint256 = self.allowance[sender][msg.sender]
    assert allowed >= amount, "token: insufficient allowance"
    self.allowance[sender][msg.sender] = allowed - amount
    self._transfer(sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Let `spender` move up to `amount` of the caller's tokens.
    @dev Sets, never adds: the EIP-20 approve race applies as usual.
    @return Always True.
    """
    self._approve(msg.sender, spender, amount)
    return True


@external
def permit(
    owner: address,
    spender: address,
    amount: uint256,
    deadline: uint256,
    v: uint8,
    r: bytes32,
    s: bytes32,
) -> bool:
    """
    @notice EIP-2612: approve by an off-chain signature of `owner`.
    @param deadline Unix time after which the signature is void.
    @return Always True; a bad, expired or replayed signature reverts.
    """
    assert owner != empty(address), "token: permit owner is the zero address"
    assert block.timestamp <= deadline, "token: permit expired"
    assert convert(s, uint256) <= ecdsa.SECP256K1_HALF_N, "token: malleable permit signature"
    nonce: uint256 = self.nonces[owner]
    struct_hash: bytes32 = keccak256(
        abi_encode(PERMIT_TYPEHASH, owner, spender, amount, nonce, deadline)
    )
    signer: address = ecdsa._recover(eip712._hash_typed_data(struct_hash), v, r, s)
    assert signer == owner, "token: invalid permit signature (wrong signer, nonce, chain or contract)"
    self.nonces[owner] = nonce + 1
    self._approve(owner, spender, amount)
    return True


@external
def mint(receiver: address, amount: uint256):
    """
    @notice Create `amount` new tokens for `receiver`. Owner only.
    """
    ownable._check_owner()
    assert receiver != empty(address), "token: mint to the zero address"
    supply: uint256 = self.totalSupply + amount
    assert supply <= MAX_SUPPLY, "token: supply cap exceeded"
    self.totalSupply = supply
    self.balanceOf[receiver] += amount
    log Transfer(sender=empty(address), receiver=receiver, value=amount)


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    assert receiver != empty(address), "token: transfer to the zero address"
    balance: uint256 = self.balanceOf[sender]
    assert balance >= amount, "token: transfer amount exceeds balance"
    self.balanceOf[sender] = balance - amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)


@internal
def _approve(owner: address, spender: address, amount: uint256):
    assert spender != empty(address), "token: approve to the zero address"
    self.allowance[owner][spender] = amount
    log Approval(owner=owner, spender=spender, value=amount)
