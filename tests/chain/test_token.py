"""Token (ERC-20 + EIP-2612): success / failure pairs for every external function.

Functions the typed client does not wrap (``MAX_SUPPLY``, ``DOMAIN_SEPARATOR``) are
reached through the client's own ``_send`` / ``_call``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from eth_abi import encode
from eth_account import Account as EthAccount
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from web3 import Web3
from web3.types import TxParams

from idlegrid import ContractReverted, InvalidInput
from idlegrid.chain import TOKEN
from idlegrid.protocol import Account, Domain, Permit, Signature, sign_permit

from ..conftest import Env

MAX = 2**256 - 1
MAX_SUPPLY = 2**96 - 1
ZERO = "0x" + "00" * 20
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
BAD_PERMIT = "token: invalid permit signature (wrong signer, nonce, chain or contract)"

#: the parts of EIP-20 a wallet or library relies on, written out by hand
ERC20_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "balanceOf",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
    {
        "type": "function",
        "name": "transfer",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    },
    {
        "type": "function",
        "name": "decimals",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [{"name": "", "type": "uint8"}],
    },
    {
        "type": "function",
        "name": "totalSupply",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [{"name": "", "type": "uint256"}],
    },
    {
        "type": "event",
        "name": "Transfer",
        "anonymous": False,
        "inputs": [
            {"name": "from", "type": "address", "indexed": True},
            {"name": "to", "type": "address", "indexed": True},
            {"name": "value", "type": "uint256", "indexed": False},
        ],
    },
]


def _reverts(action: Callable[[], object]) -> str:
    """Run ``action``, expect a revert, return the contract's reason."""
    with pytest.raises(ContractReverted) as exc:
        action()
    return exc.value.reason


def _permit(env: Env, owner: Account, spender: Account, value: int, *, ttl: int = 3600) -> Permit:
    return Permit(
        owner.address, spender.address, value, env.token.nonce(owner.address), env.now() + ttl
    )


def _signable(domain: Domain, permit: Permit) -> Any:
    """The EIP-712 permit message, built by eth-account independently of idlegrid."""
    return encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "Permit",
            "domain": domain.as_dict(),
            "message": dataclasses.asdict(permit),
        }
    )


def _sign_raw(key: bytes, domain: Domain, permit: Permit) -> Signature:
    """Sign the permit digest with any key (sign_permit insists on the owner's)."""
    signed = EthAccount.sign_message(_signable(domain, permit), private_key=key)
    return Signature(
        int(signed.v), int(signed.r).to_bytes(32, "big"), int(signed.s).to_bytes(32, "big")
    )


# -- views -------------------------------------------------------------------


def test_metadata_views(env: Env) -> None:
    assert env.token.name() == "idlegrid"
    assert env.token.symbol() == "IDLE"
    assert env.token.decimals() == 18
    assert env.token.owner() == env.owner.address
    assert env.token._call("MAX_SUPPLY") == MAX_SUPPLY
    assert env.token.total_supply() == len(env.users) * 10_000 * TOKEN


def test_domain_separator_matches_python_domain(env: Env) -> None:
    domain = env.token.domain()
    typehash = keccak(
        b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    expected = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                typehash,
                keccak(text=domain.name),
                keccak(text="1"),
                env.backend.chain_id,
                env.token.address,
            ],
        )
    )

    on_chain = bytes(env.token._call("DOMAIN_SEPARATOR"))

    assert on_chain == expected
    assert bytes(env.token._call("PERMIT_TYPEHASH")) == keccak(
        b"Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
    )
    assert on_chain == _signable(domain, _permit(env, env.users[0], env.users[1], 1)).header


def test_domain_separator_is_not_another_contracts(env: Env) -> None:
    market_domain = bytes(env.market._call("DOMAIN_SEPARATOR"))

    assert bytes(env.token._call("DOMAIN_SEPARATOR")) != market_domain


# -- transfer ------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, 1, 250 * TOKEN, 10_000 * TOKEN])
def test_transfer_moves_balance_and_logs(env: Env, amount: int) -> None:
    alice, bob = env.users[0], env.users[1]
    before_a, before_b = env.token.balance_of(alice.address), env.token.balance_of(bob.address)

    result = env.token.transfer(bob.address, amount, sender=alice)

    assert env.token.balance_of(alice.address) == before_a - amount
    assert env.token.balance_of(bob.address) == before_b + amount
    assert env.token._events("Transfer", result) == [
        {"sender": alice.address, "receiver": bob.address, "value": amount}
    ]
    env.conservation()


def test_transfer_to_self_keeps_balance(env: Env) -> None:
    alice = env.users[0]
    before = env.token.balance_of(alice.address)

    env.token.transfer(alice.address, before, sender=alice)

    assert env.token.balance_of(alice.address) == before
    env.conservation()


def test_transfer_exceeding_balance_reverts(env: Env) -> None:
    alice, bob = env.users[0], env.users[1]
    balance = env.token.balance_of(alice.address)

    reason = _reverts(lambda: env.token.transfer(bob.address, balance + 1, sender=alice))

    assert reason == "token: transfer amount exceeds balance"
    assert env.token.balance_of(alice.address) == balance
    env.conservation()


def test_transfer_from_empty_account_reverts(env: Env) -> None:
    reason = _reverts(lambda: env.token.transfer(env.users[0].address, 1, sender=env.owner))

    assert reason == "token: transfer amount exceeds balance"


def test_transfer_to_zero_address_reverts(env: Env) -> None:
    reason = _reverts(lambda: env.token.transfer(ZERO, 1, sender=env.users[0]))

    assert reason == "token: transfer to the zero address"
    env.conservation()


# -- approve -------------------------------------------------------------------


def test_approve_sets_allowance_and_logs(env: Env) -> None:
    alice, bob = env.users[0], env.users[1]

    result = env.token.approve(bob.address, 100 * TOKEN, sender=alice)

    assert env.token.allowance(alice.address, bob.address) == 100 * TOKEN
    assert env.token._events("Approval", result) == [
        {"owner": alice.address, "spender": bob.address, "value": 100 * TOKEN}
    ]


def test_approve_sets_rather_than_adds(env: Env) -> None:
    alice, bob = env.users[0], env.users[1]
    env.token.approve(bob.address, 100 * TOKEN, sender=alice)

    env.token.approve(bob.address, 30 * TOKEN, sender=alice)

    assert env.token.allowance(alice.address, bob.address) == 30 * TOKEN


def test_approve_beyond_balance_is_allowed(env: Env) -> None:
    alice, bob = env.users[0], env.users[1]

    env.token.approve(bob.address, MAX, sender=alice)

    assert env.token.allowance(alice.address, bob.address) == MAX
    assert env.token.allowance(bob.address, alice.address) == 0


def test_approve_zero_spender_reverts(env: Env) -> None:
    reason = _reverts(lambda: env.token.approve(ZERO, 1, sender=env.users[0]))

    assert reason == "token: approve to the zero address"


# -- transferFrom --------------------------------------------------------------


@pytest.mark.parametrize("allowance", [75 * TOKEN, 200 * TOKEN, MAX])
def test_transfer_from_decrements_allowance(env: Env, allowance: int) -> None:
    owner, spender, receiver = env.users[0], env.users[1], env.users[2]
    env.token.approve(spender.address, allowance, sender=owner)
    before_o, before_r = env.token.balance_of(owner.address), env.token.balance_of(receiver.address)

    result = env.token.transfer_from(owner.address, receiver.address, 75 * TOKEN, sender=spender)

    # EIP-20: the allowance falls by the amount, even from max uint256
    assert env.token.allowance(owner.address, spender.address) == allowance - 75 * TOKEN
    assert env.token.balance_of(owner.address) == before_o - 75 * TOKEN
    assert env.token.balance_of(receiver.address) == before_r + 75 * TOKEN
    assert env.token.balance_of(spender.address) == 10_000 * TOKEN
    assert env.token._events("Transfer", result) == [
        {"sender": owner.address, "receiver": receiver.address, "value": 75 * TOKEN}
    ]
    env.conservation()


def test_transfer_from_insufficient_allowance_reverts(env: Env) -> None:
    owner, spender = env.users[0], env.users[1]
    env.token.approve(spender.address, 10 * TOKEN, sender=owner)

    reason = _reverts(
        lambda: env.token.transfer_from(
            owner.address, spender.address, 10 * TOKEN + 1, sender=spender
        )
    )

    assert reason == "token: insufficient allowance"
    assert env.token.allowance(owner.address, spender.address) == 10 * TOKEN
    env.conservation()


def test_transfer_from_without_allowance_reverts(env: Env) -> None:
    owner, spender = env.users[0], env.users[1]

    reason = _reverts(
        lambda: env.token.transfer_from(owner.address, spender.address, 1, sender=spender)
    )

    assert reason == "token: insufficient allowance"


def test_transfer_from_insufficient_balance_reverts(env: Env) -> None:
    owner, spender = env.users[0], env.users[1]
    env.token.approve(spender.address, MAX, sender=owner)
    balance = env.token.balance_of(owner.address)

    reason = _reverts(
        lambda: env.token.transfer_from(owner.address, spender.address, balance + 1, sender=spender)
    )

    assert reason == "token: transfer amount exceeds balance"
    assert env.token.allowance(owner.address, spender.address) == MAX
    assert env.token.balance_of(owner.address) == balance
    env.conservation()


def test_transfer_from_to_zero_address_reverts(env: Env) -> None:
    owner, spender = env.users[0], env.users[1]
    env.token.approve(spender.address, MAX, sender=owner)

    reason = _reverts(lambda: env.token.transfer_from(owner.address, ZERO, 1, sender=spender))

    assert reason == "token: transfer to the zero address"


# -- permit --------------------------------------------------------------------


def test_permit_signed_in_python_sets_allowance(env: Env) -> None:
    owner, spender, relayer = env.users[0], env.users[1], env.users[2]
    permit = _permit(env, owner, spender, 40 * TOKEN)
    signature = sign_permit(owner, env.token.domain(), permit)

    result = env.token.permit(permit, signature, sender=relayer)

    assert env.token.allowance(owner.address, spender.address) == 40 * TOKEN
    assert env.token.nonce(owner.address) == permit.nonce + 1
    assert env.token._events("Approval", result) == [
        {"owner": owner.address, "spender": spender.address, "value": 40 * TOKEN}
    ]
    env.token.transfer_from(owner.address, spender.address, 40 * TOKEN, sender=spender)
    assert env.token.balance_of(spender.address) == 10_040 * TOKEN
    env.conservation()


def test_permit_nonces_advance_one_by_one(env: Env) -> None:
    owner, spender = env.users[0], env.users[1]

    for value in (1, 2, 3):
        permit = _permit(env, owner, spender, value)
        env.token.permit(permit, sign_permit(owner, env.token.domain(), permit), sender=spender)

    assert env.token.nonce(owner.address) == 3
    assert env.token.nonce(spender.address) == 0
    assert env.token.allowance(owner.address, spender.address) == 3


def test_permit_expired_deadline_reverts(env: Env) -> None:
    owner, spender = env.users[0], env.users[1]
    permit = _permit(env, owner, spender, 1, ttl=-1)
    signature = sign_permit(owner, env.token.domain(), permit)

    reason = _reverts(lambda: env.token.permit(permit, signature, sender=spender))

    assert reason == "token: permit expired"
    assert env.token.nonce(owner.address) == 0


def test_permit_expires_once_time_passes(env: Env) -> None:
    owner, spender = env.users[0], env.users[1]
    permit = _permit(env, owner, spender, 1, ttl=60)
    signature = sign_permit(owner, env.token.domain(), permit)
    env.backend.advance_time(120)

    reason = _reverts(lambda: env.token.permit(permit, signature, sender=spender))

    assert reason == "token: permit expired"


def test_permit_replay_reverts(env: Env) -> None:
    owner, spender = env.users[0], env.users[1]
    permit = _permit(env, owner, spender, 5 * TOKEN)
    signature = sign_permit(owner, env.token.domain(), permit)
    env.token.permit(permit, signature, sender=spender)
    env.token.approve(spender.address, 0, sender=owner)

    reason = _reverts(lambda: env.token.permit(permit, signature, sender=spender))

    assert reason == BAD_PERMIT
    assert env.token.allowance(owner.address, spender.address) == 0
    assert env.token.nonce(owner.address) == 1


def test_permit_with_future_nonce_reverts(env: Env) -> None:
    owner, spender = env.users[0], env.users[1]
    permit = dataclasses.replace(_permit(env, owner, spender, 1), nonce=1)
    signature = sign_permit(owner, env.token.domain(), permit)

    reason = _reverts(lambda: env.token.permit(permit, signature, sender=spender))

    assert reason == BAD_PERMIT


def test_permit_wrong_signer_reverts(env: Env) -> None:
    owner, spender, thief = env.users[0], env.users[1], env.users[2]
    permit = _permit(env, owner, thief, MAX)
    signature = _sign_raw(thief.key, env.token.domain(), permit)

    reason = _reverts(lambda: env.token.permit(permit, signature, sender=thief))

    assert reason == BAD_PERMIT
    assert env.token.allowance(owner.address, thief.address) == 0
    # the same helper with the owner's key is accepted: only the signer was wrong
    env.token.permit(permit, _sign_raw(owner.key, env.token.domain(), permit), sender=spender)
    assert env.token.allowance(owner.address, thief.address) == MAX


def test_sign_permit_refuses_a_non_owner_key(env: Env) -> None:
    permit = _permit(env, env.users[0], env.users[1], 1)

    with pytest.raises(InvalidInput):
        sign_permit(env.users[1], env.token.domain(), permit)


def test_permit_for_zero_owner_reverts(env: Env) -> None:
    spender = env.users[1]
    permit = Permit(ZERO, spender.address, MAX, 0, env.now() + 3600)
    # an invalid signature: ecrecover returns the zero address for it
    garbage = Signature(27, b"\x00" * 32, b"\x00" * 32)

    reason = _reverts(lambda: env.token.permit(permit, garbage, sender=spender))

    assert reason == "token: permit owner is the zero address"


def test_permit_unrecoverable_signature_reverts(env: Env) -> None:
    owner, spender = env.users[0], env.users[1]
    permit = _permit(env, owner, spender, 1)
    garbage = Signature(27, b"\x00" * 32, b"\x00" * 32)

    reason = _reverts(lambda: env.token.permit(permit, garbage, sender=spender))

    assert reason == BAD_PERMIT


WRONG_DOMAINS: dict[str, Callable[[Env, Domain], Domain]] = {
    "chain_id": lambda env, d: dataclasses.replace(d, chain_id=d.chain_id + 1),
    "verifying_contract": lambda env, d: dataclasses.replace(
        d, verifying_contract=env.registry.address
    ),
    "name": lambda env, d: dataclasses.replace(d, name="idlegrid JobMarket"),
    "version": lambda env, d: dataclasses.replace(d, version="2"),
}


@pytest.mark.parametrize("field", sorted(WRONG_DOMAINS))
def test_permit_for_another_domain_reverts(env: Env, field: str) -> None:
    owner, spender = env.users[0], env.users[1]
    permit = _permit(env, owner, spender, 1)
    domain = WRONG_DOMAINS[field](env, env.token.domain())
    signature = sign_permit(owner, domain, permit)

    reason = _reverts(lambda: env.token.permit(permit, signature, sender=spender))

    assert reason == BAD_PERMIT
    assert env.token.nonce(owner.address) == 0


def test_permit_malleable_high_s_reverts(env: Env) -> None:
    owner, spender = env.users[0], env.users[1]
    permit = _permit(env, owner, spender, 7)
    good = sign_permit(owner, env.token.domain(), permit)
    # (v', r, n - s) recovers the same signer: EIP-2 says reject it
    high_s = Signature(
        55 - good.v, good.r, (SECP256K1_N - int.from_bytes(good.s, "big")).to_bytes(32, "big")
    )

    reason = _reverts(lambda: env.token.permit(permit, high_s, sender=spender))

    assert reason == "token: malleable permit signature"
    assert env.token.nonce(owner.address) == 0
    env.token.permit(permit, good, sender=spender)
    assert env.token.allowance(owner.address, spender.address) == 7


# -- mint ----------------------------------------------------------------------


def test_mint_by_owner_creates_supply(env: Env) -> None:
    alice = env.users[0]
    supply = env.token.total_supply()

    result = env.token.mint(alice.address, 5 * TOKEN, sender=env.owner)

    assert env.token.total_supply() == supply + 5 * TOKEN
    assert env.token.balance_of(alice.address) == 10_005 * TOKEN
    assert env.token._events("Transfer", result) == [
        {"sender": ZERO, "receiver": alice.address, "value": 5 * TOKEN}
    ]
    env.conservation()


def test_mint_up_to_supply_cap(env: Env) -> None:
    alice = env.users[0]

    env.token.mint(alice.address, MAX_SUPPLY - env.token.total_supply(), sender=env.owner)

    assert env.token.total_supply() == MAX_SUPPLY
    env.conservation()


def test_mint_beyond_supply_cap_reverts(env: Env) -> None:
    alice = env.users[0]
    env.token.mint(alice.address, MAX_SUPPLY - env.token.total_supply(), sender=env.owner)

    reason = _reverts(lambda: env.token.mint(alice.address, 1, sender=env.owner))

    assert reason == "token: supply cap exceeded"
    assert env.token.total_supply() == MAX_SUPPLY
    env.conservation()


def test_mint_overflowing_uint256_reverts(env: Env) -> None:
    # total + amount overflows uint256: Vyper's checked add reverts, with no reason,
    # before the cap check; both backends must say so the same way
    reason = _reverts(lambda: env.token.mint(env.users[0].address, MAX, sender=env.owner))

    assert reason == "reverted without a reason"
    assert env.token.total_supply() == len(env.users) * 10_000 * TOKEN


def test_mint_by_non_owner_reverts(env: Env) -> None:
    alice = env.users[0]

    reason = _reverts(lambda: env.token.mint(alice.address, 1, sender=alice))

    assert reason == "ownable: caller is not the owner"
    assert env.token.balance_of(alice.address) == 10_000 * TOKEN


def test_mint_to_zero_address_reverts(env: Env) -> None:
    reason = _reverts(lambda: env.token.mint(ZERO, 1, sender=env.owner))

    assert reason == "token: mint to the zero address"


# -- transfer_ownership / accept_ownership (two steps) ---------------------------


def test_transfer_ownership_hands_over_minting_once_accepted(env: Env) -> None:
    new_owner = env.users[0]

    started = env.token.transfer_ownership(new_owner.address, sender=env.owner)
    assert env.token.owner() == env.owner.address  # nothing changes before the accept
    assert env.token.pending_owner() == new_owner.address
    result = env.token.accept_ownership(sender=new_owner)

    assert env.token._events("OwnershipTransferStarted", started) == [
        {"previous_owner": env.owner.address, "new_owner": new_owner.address}
    ]
    assert env.token.owner() == new_owner.address
    assert env.token.pending_owner() == ZERO
    assert env.token._events("OwnershipTransferred", result) == [
        {"previous_owner": env.owner.address, "new_owner": new_owner.address}
    ]
    env.token.mint(new_owner.address, 1, sender=new_owner)
    assert _reverts(lambda: env.token.mint(new_owner.address, 1, sender=env.owner)) == (
        "ownable: caller is not the owner"
    )
    env.conservation()


def test_transfer_ownership_by_non_owner_reverts(env: Env) -> None:
    user = env.users[0]

    reason = _reverts(lambda: env.token.transfer_ownership(user.address, sender=user))

    assert reason == "ownable: caller is not the owner"
    assert env.token.owner() == env.owner.address


def test_accept_ownership_by_anyone_but_the_pending_owner_reverts(env: Env) -> None:
    proposed, stranger = env.users[0], env.users[1]
    env.token.transfer_ownership(proposed.address, sender=env.owner)

    reasons = [
        _reverts(lambda: env.token.accept_ownership(sender=stranger)),
        _reverts(lambda: env.token.accept_ownership(sender=env.owner)),
    ]

    assert reasons == ["ownable: caller is not the pending owner"] * 2
    assert env.token.owner() == env.owner.address


def test_transfer_ownership_to_zero_address_cancels(env: Env) -> None:
    proposed = env.users[0]
    env.token.transfer_ownership(proposed.address, sender=env.owner)

    env.token.transfer_ownership(ZERO, sender=env.owner)

    assert env.token.pending_owner() == ZERO
    reason = _reverts(lambda: env.token.accept_ownership(sender=proposed))
    assert reason == "ownable: caller is not the pending owner"
    assert env.token.owner() == env.owner.address


# -- a plain ERC-20 seen by web3 -----------------------------------------------


def test_standard_erc20_abi_reads_and_transfers(env: Env) -> None:
    w3 = env.backend.w3
    erc20 = w3.eth.contract(address=Web3.to_checksum_address(env.token.address), abi=ERC20_ABI)
    alice, bob = env.users[0], env.users[1]
    assert erc20.functions.decimals().call() == 18
    assert erc20.functions.totalSupply().call() == env.token.total_supply()
    assert erc20.functions.transfer(bob.address, 3 * TOKEN).call({"from": alice.address}) is True
    sender = Web3.to_checksum_address(alice.address)
    params: TxParams = {
        "from": sender,
        "nonce": w3.eth.get_transaction_count(sender),
        "chainId": env.backend.chain_id,
    }
    tx = erc20.functions.transfer(bob.address, 3 * TOKEN).build_transaction(params)

    tx_hash = w3.eth.send_raw_transaction(
        w3.eth.account.sign_transaction(tx, alice.key).raw_transaction
    )
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)

    assert receipt["status"] == 1
    assert erc20.functions.balanceOf(alice.address).call() == 9_997 * TOKEN
    assert erc20.functions.balanceOf(bob.address).call() == 10_003 * TOKEN
    (log,) = erc20.events.Transfer().process_receipt(receipt)
    assert dict(log["args"]) == {"from": alice.address, "to": bob.address, "value": 3 * TOKEN}
    env.conservation()
