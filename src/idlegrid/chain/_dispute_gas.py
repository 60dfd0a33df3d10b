"""The gas of one whole dispute, open to payout, measured on a fresh embedded chain.

:func:`measure_dispute_gas` deploys the ledger on py-evm, registers an accused
provider and ``committee`` referees, pays the provider on one channel for three
receipts (v2), and runs a dispute of the second, with the redeemed voucher as
evidence: open, draw, every member commits and reveals "wrong", resolve (the
provider is slashed). ``idlegrid bench verify`` reports the total as
``dispute_gas``. It needs nothing but pip and takes a few seconds (compiling the
contracts the first time).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import (
    NODE_DOMAIN_NAME,
    Domain,
    Signature,
    Voucher,
    merkle_proof,
    merkle_root,
    receipt_digest,
    sign_digest,
    sign_voucher,
)
from ._backend import EmbeddedBackend
from ._clients import DisputeClient, vote_commitment
from ._ledger import Ledger
from ._types import TOKEN, DisputeOutcome, LedgerConfig

__all__ = ["DisputeGas", "measure_dispute_gas"]


@dataclass(frozen=True)
class DisputeGas:
    """Gas of each stage of one dispute (``commit`` and ``reveal``: all members)."""

    open: int
    draw: int
    commit: int
    reveal: int
    resolve: int
    committee: int
    #: PROVIDER_WRONG when every stage worked
    outcome: DisputeOutcome

    @property
    def total(self) -> int:
        """open + draw + commits + reveals + resolve: ``dispute_gas``."""
        return self.open + self.draw + self.commit + self.reveal + self.resolve


@dataclass(frozen=True)
class _Receipt:
    channel: bytes
    job_id: bytes
    provider: str
    spec_hash: bytes
    input_hash: bytes
    output_hash: bytes
    units: int
    amount: int


def measure_dispute_gas(*, committee: int = 3) -> DisputeGas:
    """Run one dispute against a cheating provider on a fresh embedded chain."""
    backend = EmbeddedBackend(accounts=committee + 4)
    try:
        return _run(backend, committee)
    finally:
        backend.close()


def _run(backend: EmbeddedBackend, size: int) -> DisputeGas:
    owner, accused, client, challenger, *referees = backend.dev_accounts()
    ledger = Ledger.deploy(backend, owner, LedgerConfig(committee_size=size))
    token, registry, market = ledger.token, ledger.registry, ledger.market
    disputes = ledger.client("disputes", DisputeClient)
    for account in (accused, client, challenger, *referees):
        token.mint(account.address, 1_000 * TOKEN, sender=owner)
    for provider in (accused, *referees):
        token.approve(registry.address, 2**256 - 1, sender=provider)
        registry.register("http://p", 1, b"\x01" * 32, 400 * TOKEN, sender=provider)
    token.approve(market.address, 2**256 - 1, sender=client)
    token.approve(disputes.address, 2**256 - 1, sender=challenger)
    terms, _ = market.open_channel(
        accused.address, 50 * TOKEN, backend.next_timestamp() + 3600, sender=client
    )
    receipts = [
        _Receipt(
            terms.id,
            bytes([i + 1]) * 32,
            accused.address,
            b"\xaa" * 32,
            bytes([0x10 + i]) * 32,
            bytes([0x20 + i]) * 32,
            i + 1,
            (i + 1) * TOKEN,
        )
        for i in range(3)
    ]
    leaves = [disputes.receipt_leaf(r) for r in receipts]
    voucher = Voucher(terms.id, 6 * TOKEN, 3, 6, merkle_root(leaves))
    voucher_signature = sign_voucher(client, market.domain(), voucher)
    market.redeem(terms, voucher, voucher_signature, sender=accused)

    domain = Domain(NODE_DOMAIN_NAME, backend.chain_id, market.address)
    signature = Signature.from_bytes(sign_digest(accused.key, receipt_digest(domain, leaves[1])))
    dispute, opened = disputes.open(
        terms,
        voucher,
        voucher_signature,
        receipts[1],
        signature,
        merkle_proof(leaves, 1),
        sender=challenger,
    )
    backend.advance_time(1)  # the seed block, and one more
    backend.advance_time(1)
    drawn = disputes.draw(dispute, sender=challenger)
    by_address = {r.address: r for r in referees}
    members = [by_address[a] for a in disputes.dispute(dispute).committee]
    salt = b"\x5a" * 32
    commit = sum(
        disputes.commit(dispute, vote_commitment(dispute, m.address, True, salt), sender=m).gas_used
        for m in members
    )
    reveal = sum(disputes.reveal(dispute, True, salt, sender=m).gas_used for m in members)
    resolved = disputes.resolve(dispute, sender=challenger)
    return DisputeGas(
        open=opened.gas_used,
        draw=drawn.gas_used,
        commit=commit,
        reveal=reveal,
        resolve=resolved.gas_used,
        committee=len(members),
        outcome=disputes.dispute(dispute).outcome,
    )
