"""The embedded chain's gas estimate (``chain/_pyevm_gas.py``): a limit each transaction
was seen to succeed with, close above what it uses; bisection where the guess fails; a
revert still refused with its reason, costing nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from idlegrid import ContractReverted
from idlegrid.chain import (
    TOKEN,
    EmbeddedBackend,
    Ledger,
    compile_all,
    compile_file,
    deploy_contract,
)

# needs a high limit to pass its check, and uses little of it
GREEDY = """# pragma version ~=0.4.0
counter: public(uint256)

@external
def bump(need: uint256):
    assert msg.gas > need, "not enough gas left"
    self.counter += 1
"""


@pytest.fixture(scope="module")
def chain() -> tuple[EmbeddedBackend, Ledger]:
    backend = EmbeddedBackend(accounts=3)
    owner, *_ = backend.dev_accounts()
    return backend, Ledger.deploy(backend, owner)


def _estimate_and_send(backend: EmbeddedBackend, tx: dict[str, Any], sender: Any) -> Any:
    """The estimate for ``tx``, and its receipt when sent with exactly that limit."""
    w3 = backend.w3
    tx = {**tx, "from": sender.address, "chainId": backend.chain_id, "value": 0}
    estimate = w3.eth.estimate_gas(tx)  # type: ignore[arg-type]
    tx.update(
        gas=estimate, maxFeePerGas=10**11, maxPriorityFeePerGas=10**9,
        nonce=w3.eth.get_transaction_count(sender.address),
    )  # fmt: skip
    signed = w3.eth.account.sign_transaction(tx, sender.key)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction), timeout=30
    )
    return estimate, receipt


def test_a_transaction_sent_with_the_estimate_alone_succeeds_and_uses_most_of_it(
    chain: tuple[EmbeddedBackend, Ledger],
) -> None:
    backend, ledger = chain
    owner, alice, bob = backend.dev_accounts()
    ledger.token.mint(alice.address, 10 * TOKEN, sender=owner)
    contract = backend.w3.eth.contract(
        address=Web3.to_checksum_address(ledger.token.address), abi=compile_all()["Token"].abi
    )
    tx = contract.functions.transfer(bob.address, TOKEN).build_transaction(
        {"from": alice.address, "gas": 1}  # gas given: build only, no estimate
    )

    estimate, receipt = _estimate_and_send(backend, {"to": tx["to"], "data": tx["data"]}, alice)

    assert receipt["status"] == 1
    assert ledger.token.balance_of(bob.address) == TOKEN
    assert receipt["gasUsed"] <= estimate <= receipt["gasUsed"] * 5 // 4


def test_a_transaction_that_needs_more_than_it_uses_is_estimated_by_bisection(
    chain: tuple[EmbeddedBackend, Ledger], tmp_path: Path
) -> None:
    """``bump(need)`` passes only with ``need`` gas left, and uses ~45,000: the guess
    (used + an eighth) fails, and bisection finds a limit that passes."""
    backend, _ = chain
    owner, *_ = backend.dev_accounts()
    source = tmp_path / "Greedy.vy"
    source.write_text(GREEDY)
    artifact = compile_file(source)
    address = deploy_contract(backend, "Greedy", [], sender=owner, artifact=artifact)
    greedy = backend.w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)
    need = 3_000_000
    data = greedy.encode_abi("bump", [need])

    estimate, receipt = _estimate_and_send(backend, {"to": address, "data": data}, owner)

    assert receipt["status"] == 1 and greedy.functions.counter().call() == 1
    assert receipt["gasUsed"] < need < estimate <= need + 2 * 21_000


def test_a_call_that_reverts_is_refused_with_its_reason_and_costs_nothing(
    chain: tuple[EmbeddedBackend, Ledger],
) -> None:
    backend, ledger = chain
    _, alice, bob = backend.dev_accounts()
    block, balance = backend.block_number(), ledger.token.balance_of(alice.address)

    with pytest.raises(ContractReverted):
        ledger.token.transfer(bob.address, balance + 1, sender=alice)

    assert backend.block_number() == block
    assert ledger.token.balance_of(alice.address) == balance
