"""The client as challenger: take a caught provider's signed receipt to the dispute contract.

``Client.dispute(evidence)`` (evidence from a verified batch: ``Client.evidence``):

1. picks the receipt of a job whose output is not within the workload's tolerance of
   what the witnesses agreed on (each job's rows are compared on their own);
2. makes sure the provider redeemed a voucher covering that receipt (the dispute proves
   the receipt against the receipts root of a voucher the client signed and the channel
   paid): if not yet, it asks the provider to close the channel now
   (``POST /v1/channels/close``: it redeems the latest voucher first). A provider that
   will not redeem is never paid for the job, and there is nothing to dispute;
3. opens the dispute with the redeemed voucher and the client's signature of it, the
   receipt's fields, the provider's signature, a Merkle proof of the receipt under the
   voucher's root and the bond (``Disputes.open``), and draws the committee once the
   seed block is mined (``Disputes.draw``; on a development chain that mines only on
   transactions, an empty block is mined for it);
4. hands every committee member the evidence (``POST /v1/disputes/evidence``: the job's
   spec fields, the blobs they name, the provider's output), which each referee checks
   against the receipt's hashes before it re-executes the job;
5. waits for the committee to vote and settle (the referees resolve it; after the
   reveal deadline the client resolves it itself), and reports the outcome with what
   moved: the stake slashed, the client's refund, the challenger's pay.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import (
    ChainTimeout,
    ContractReverted,
    IdlegridError,
    InvalidInput,
    ProviderFailed,
)
from ..chain import DisputeClient, DisputeOutcome, DisputeStatus
from ..protocol import (
    DisputeEvidence,
    Receipt,
    Signature,
    Voucher,
    array_from_npy,
    receipts_proof,
    receipts_root,
    sign_voucher,
)
from ..verify import Evidence, SignedReceipt
from ..workloads import get_workload
from ._selection import Candidate
from ._session import ClientChannel, ProviderSession

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["DisputeReport", "dispute", "dispute_receipt"]

log = logging.getLogger("idlegrid.client")

#: how often the client reads the chain while it waits for a dispute to move
POLL_S = 0.5


@dataclass(frozen=True)
class DisputeReport:
    """How a dispute ended, and what moved."""

    dispute: str  # 0x id (the receipt's leaf)
    provider: str
    outcome: str  # provider_wrong, provider_right, no_decision
    wrong_votes: int
    right_votes: int
    committee: tuple[str, ...]
    slashed: int  # taken from the provider's stake
    refund: int  # to the channel's client
    challenger_paid: int  # to the challenger (the bond back included)
    referee_reward: int  # to each referee who voted with the majority
    gas: int  # of the client's own transactions (bond approval, open, draw)
    approval_gas: int  # of those, the bond's ERC-20 approval


async def dispute(
    client: Client,
    evidence: Evidence,
    blobs: Mapping[str, bytes],
    *,
    timeout_s: float,
) -> DisputeReport:
    """Dispute the provider of ``evidence`` on chain (see the module's docstring)."""
    signed, channel = _pick(client, evidence)
    return await dispute_receipt(client, signed, channel, blobs, timeout_s=timeout_s)


async def dispute_receipt(
    client: Client,
    signed: SignedReceipt,
    channel: ClientChannel,
    blobs: Mapping[str, bytes],
    *,
    timeout_s: float,
) -> DisputeReport:
    """Dispute one signed receipt paid on ``channel`` (steps 2 to 5 of the module's
    docstring): the caller has found its result wrong (``dispute`` by the witnesses'
    agreement; a ``train`` run by its proof-of-learning replay)."""
    disputes = client.ledger.client("disputes", DisputeClient)
    receipt: Receipt = signed.receipt
    body = _evidence(receipt.leaf(), signed, blobs)  # a dispute's id is its receipt's leaf
    voucher, voucher_signature, proof = await _redeemed_proof(client, channel, receipt)
    gas = 0
    bond = await asyncio.to_thread(disputes.bond)
    token = client.ledger.token
    approval = await asyncio.to_thread(token.approve, disputes.address, bond, sender=client.account)
    gas += approval.gas_used
    approval_gas = approval.gas_used
    signature = Signature.from_bytes(bytes.fromhex(signed.signature[2:]))
    dispute_id, opened = await asyncio.to_thread(
        disputes.open,
        channel.terms,
        voucher,
        voucher_signature,
        receipt,
        signature,
        proof,
        sender=client.account,
    )
    gas += opened.gas_used
    seed = (await asyncio.to_thread(disputes.dispute, dispute_id)).seed_block
    backend = client.ledger.backend
    await asyncio.to_thread(backend.wait_for_block, seed + 1, timeout_s=timeout_s)
    drawn = await asyncio.to_thread(disputes.draw, dispute_id, sender=client.account)
    gas += drawn.gas_used
    state = await _ruling(client, disputes, dispute_id, body, timeout_s=timeout_s)
    return await asyncio.to_thread(_report, disputes, dispute_id, state, gas, approval_gas)


async def challenge_posting(
    client: Client, run: bytes, round: int, inputs: bytes, *, timeout_s: float
) -> DisputeReport:
    """Challenge a RewardPool posting within its window: open the dispute (the pool
    freezes the posting), draw the committee, hand every member the round's published
    ``inputs`` (the referees recompute the contributions from them and vote), and wait
    for the ruling; a posting found wrong is void, for its coordinator to post again."""
    from ..chain import RewardPoolClient

    disputes = client.ledger.client("disputes", DisputeClient)
    pool = client.ledger.client("rewards", RewardPoolClient)
    start = client.ledger.deployment.start_block
    posted = (await asyncio.to_thread(pool.postings_of, run, start)).get(round)
    digest = hashlib.sha256(inputs).digest()
    if posted is None:
        raise InvalidInput(f"round {round} of run 0x{run.hex()[:12]} has no posting")
    if posted.inputs != digest:
        raise InvalidInput(
            "these are not the inputs the posting names (sha256 "
            f"{digest.hex()[:16]}… against {posted.inputs.hex()[:16]}…)"
        )
    bond = await asyncio.to_thread(disputes.bond)
    approval = await asyncio.to_thread(
        client.ledger.token.approve, disputes.address, bond, sender=client.account
    )
    dispute_id, opened = await asyncio.to_thread(
        disputes.open_posting, run, round, sender=client.account
    )
    gas = approval.gas_used + opened.gas_used
    seed = (await asyncio.to_thread(disputes.dispute, dispute_id)).seed_block
    await asyncio.to_thread(client.ledger.backend.wait_for_block, seed + 1, timeout_s=timeout_s)
    drawn = await asyncio.to_thread(disputes.draw, dispute_id, sender=client.account)
    gas += drawn.gas_used
    body = (
        DisputeEvidence(
            dispute="0x" + dispute_id.hex(),
            kind="fl",
            fields={"posting": {"run": "0x" + run.hex(), "round": round}},
            output_npy="",
            blobs={digest.hex(): base64.b64encode(inputs).decode()},
        )
        .model_dump_json()
        .encode()
    )
    state = await _ruling(client, disputes, dispute_id, body, timeout_s=timeout_s)
    return await asyncio.to_thread(_report, disputes, dispute_id, state, gas, approval.gas_used)


async def _ruling(
    client: Client, disputes: DisputeClient, dispute_id: bytes, body: bytes, *, timeout_s: float
) -> Any:
    """Hand the committee the evidence ``body``, then wait for the ruling (resolving it
    once the reveal deadline passed, if no referee did); the resolved dispute."""
    state = await asyncio.to_thread(disputes.dispute, dispute_id)
    for member in state.committee:
        try:
            await _hand_over(client, member, body)
        except IdlegridError as exc:  # a member we cannot reach votes without it
            log.warning("dispute: %s did not take the evidence: %s", member, exc)
    deadline = time.monotonic() + timeout_s
    while True:
        state = await asyncio.to_thread(disputes.dispute, dispute_id)
        if state.status is DisputeStatus.RESOLVED:
            break
        now = await asyncio.to_thread(client.ledger.backend.next_timestamp)
        if state.status is DisputeStatus.VOTING and now >= state.reveal_deadline:
            with contextlib.suppress(ContractReverted):  # a referee resolved it first
                await asyncio.to_thread(disputes.resolve, dispute_id, sender=client.account)
            continue
        if time.monotonic() > deadline:
            raise ChainTimeout(
                f"dispute 0x{dispute_id.hex()} not resolved in {timeout_s:g} s (it is "
                f"{state.status.name.lower()}); anyone may resolve it once chain time passes "
                f"{state.reveal_deadline} (`Disputes.resolve`), and nothing stays locked"
            )
        await asyncio.sleep(POLL_S)
    return state


def _pick(client: Client, evidence: Evidence) -> tuple[SignedReceipt, ClientChannel]:
    """The receipt of a job whose own rows are wrong, and the channel it was paid on."""
    workload = get_workload(evidence.kind)
    start = 0
    for signed in evidence.receipts:
        if not signed.output_npy:
            continue
        output = array_from_npy(signed.output_npy, max_bytes=len(signed.output_npy) + 1)
        rows = output.shape[0] if output.ndim else 1
        reference = np.asarray(evidence.reference)[start : start + rows]
        start += rows
        if output.shape == reference.shape and workload.close_enough(output, reference):
            continue
        for channel in client._channels.all():
            if channel.terms.id == signed.receipt.channel:
                return signed, channel
    raise InvalidInput(
        "the evidence holds no signed receipt of a wrong job on this client's channels"
    )


async def _redeemed_proof(
    client: Client, channel: ClientChannel, receipt: Receipt
) -> tuple[Voucher, Signature, list[bytes]]:
    """The voucher the provider redeemed (covering ``receipt``), the client's signature
    of it and a proof of ``receipt`` under its receipts root, asking the provider to
    redeem (close the channel) first when it has not redeemed that far yet."""
    market = client.ledger.market
    seq = next(s for s, r in channel.accepted.items() if r.job_id == receipt.job_id)
    state = await asyncio.to_thread(market.channel, channel.terms)
    if state.jobs < seq:
        for session in await client._sessions_for(channel.terms.provider):
            voucher = channel.voucher_model()
            with contextlib.suppress(ProviderFailed):
                await session.close_channel(channel.terms, voucher)
                channel.retire()
                channel.closed = True
                break
        state = await asyncio.to_thread(market.channel, channel.terms)
    if state.jobs < seq:
        raise InvalidInput(
            f"the provider redeemed {state.jobs} jobs of the channel, not job {seq}: "
            "an unredeemed receipt cannot be disputed (and was never paid)"
        )
    # the latest voucher redeemed covers jobs 1..state.jobs: the client signed it (the
    # provider can redeem nothing else), and the dispute contract checks amount <= paid
    receipts = [channel.accepted[s] for s in range(1, state.jobs + 1)]
    amount, units = sum(r.amount for r in receipts), sum(r.units for r in receipts)
    redeemed = Voucher(
        channel.terms.id,
        amount,
        state.jobs,
        units,
        receipts_root(receipts),
        channel.royalties_upto(state.jobs),
    )
    if amount > state.paid:
        raise InvalidInput(
            f"the receipts of the {state.jobs} jobs redeemed add up to {amount}, but the "
            f"channel paid {state.paid}: they are not the receipts the provider redeemed"
        )
    if channel.voucher is not None and channel.voucher[0] == redeemed:
        signature = channel.voucher[1]
    else:  # an earlier voucher than the latest: signed again, it pays nothing more
        signature = sign_voucher(client.account, client._market, redeemed)
    return redeemed, signature, receipts_proof(receipts, seq - 1)


def _evidence(dispute_id: bytes, signed: SignedReceipt, blobs: Mapping[str, bytes]) -> bytes:
    request = signed.request
    fields = {k: v for k, v in request.spec_fields().items() if v is not None}
    workload = get_workload(request.kind)
    named = workload.blobs(workload.parse(fields))
    missing = [d for d in named if d not in blobs]
    if missing:
        raise InvalidInput(f"the dispute needs the blobs its job names: {', '.join(missing)}")
    evidence = DisputeEvidence(
        dispute="0x" + dispute_id.hex(),
        kind=request.kind,
        fields=fields,
        output_npy=base64.b64encode(signed.output_npy).decode(),
        blobs={d: base64.b64encode(blobs[d]).decode() for d in named},
    )
    return evidence.model_dump_json().encode()


async def _hand_over(client: Client, member: str, body: bytes) -> None:
    info = await asyncio.to_thread(client.ledger.registry.provider, member)
    candidate = Candidate(info.address, info.endpoint, info.price, latency_ms=0.0)
    session = ProviderSession(
        client.account, candidate, client._node, client._market, client._transport,
        timeout_s=client.timeout_s,
    )  # fmt: skip
    status, data = await session.call("POST", "/v1/disputes/evidence", body)
    if status != 200:
        raise ProviderFailed(f"{member} did not take the evidence: {session.reason(data)}")


def _report(
    disputes: DisputeClient, dispute_id: bytes, state: Any, gas: int, approval_gas: int
) -> DisputeReport:
    head = disputes.backend.block_number()
    found = disputes.logs("DisputeResolved", max(0, head - 10_000), head, dispute=dispute_id)
    if len(found) != 1:
        raise InvalidInput(f"dispute 0x{dispute_id.hex()[:12]}: no DisputeResolved event found")
    resolved = found[-1][1]
    outcome = DisputeOutcome(int(resolved["outcome"])).name.lower()
    return DisputeReport(
        dispute="0x" + dispute_id.hex(),
        provider=state.provider,
        outcome=outcome,
        wrong_votes=int(resolved["wrong_votes"]),
        right_votes=int(resolved["right_votes"]),
        committee=state.committee,
        slashed=int(resolved["slashed"]),
        refund=int(resolved["refund"]),
        challenger_paid=int(resolved["challenger_paid"]),
        referee_reward=int(resolved["referee_reward"]),
        gas=gas,
        approval_gas=approval_gas,
    )
