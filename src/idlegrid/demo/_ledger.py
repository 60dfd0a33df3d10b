"""`idlegrid demo --ledger`: the ledger's whole money loop on the embedded chain.

Until the provider node and client exist, the jobs are bookkeeping only: each
"job" is a receipt with a job id, compute units and a price, the way the
inference jobs of the next milestone will be paid. Everything on chain is
real: contracts compiled from contracts/, deployed on py-evm, signatures
checked by the contracts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..chain import TOKEN, ChannelTerms, EmbeddedBackend, Ledger, LedgerConfig
from ..protocol import (
    Account,
    Receipt,
    Signature,
    Voucher,
    receipts_proof,
    receipts_root,
    sign_voucher,
    verify_proof,
)

__all__ = ["run_ledger_demo"]

UNIT_PRICE = 10**12  # tokens (wei) per compute unit
JOBS_PER_PROVIDER = (12, 7)


@dataclass
class _Channel:
    terms: ChannelTerms
    receipts: list[Receipt]
    voucher: Voucher | None = None
    signature: Signature | None = None


def _job(channel: _Channel, provider: Account, index: int) -> Receipt:
    job_id = hashlib.sha256(f"{channel.terms.id.hex()}/{index}".encode()).digest()
    units = 50_000 + 1_000 * index  # stands in for FLOPs counted from the job's model
    result = hashlib.sha256(b"result" + job_id).digest()
    spec = hashlib.sha256(b"spec").digest()  # stands in for the job's spec and inputs
    inputs = hashlib.sha256(b"inputs" + job_id).digest()
    return Receipt(
        channel.terms.id, job_id, provider.address, spec, inputs, result, units,
        units * UNIT_PRICE,
    )  # fmt: skip


def _sign_next(ledger: Ledger, client: Account, channel: _Channel, receipt: Receipt) -> None:
    channel.receipts.append(receipt)
    voucher = Voucher(
        channel.terms.id,
        sum(r.amount for r in channel.receipts),
        len(channel.receipts),
        sum(r.units for r in channel.receipts),
        receipts_root(channel.receipts),
    )
    channel.voucher = voucher
    channel.signature = sign_voucher(client, ledger.market.domain(), voucher)


def run_ledger_demo(progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the demo; return everything it showed as a JSON-ready dict."""
    say = progress or (lambda _msg: None)
    backend = EmbeddedBackend(accounts=5)
    faucet, client, alice, bob, _ = backend.dev_accounts()
    providers = [alice, bob]
    names = {client.address: "client", alice.address: "alice", bob.address: "bob"}

    say("compiling and deploying Token, ProviderRegistry, JobMarket on the embedded EVM")
    config = LedgerConfig()
    ledger = Ledger.deploy(backend, faucet, config)
    token, registry, market = ledger.token, ledger.registry, ledger.market
    for who in (client, alice, bob):
        token.mint(who.address, 1_000 * TOKEN, sender=faucet)

    def holdings() -> dict[str, dict[str, int]]:
        return {
            names[a]: {"wallet": token.balance_of(a), "market": market.balance_of(a)} for a in names
        }

    before = holdings()
    supply = token.total_supply()

    say("providers stake and register (endpoint, price per unit, capabilities hash)")
    for i, provider in enumerate(providers):
        token.approve(registry.address, config.min_stake, sender=provider)
        caps = hashlib.sha256(f"onnx,cpu,provider-{i}".encode()).digest()
        registry.register(
            f"http://127.0.0.1:{8701 + i}", UNIT_PRICE, caps, config.min_stake, sender=provider
        )

    say("client deposits into the market and opens one channel per provider")
    token.approve(market.address, 200 * TOKEN, sender=client)
    market.deposit(200 * TOKEN, sender=client)
    expiry = backend.next_timestamp() + 3600
    channels: dict[str, _Channel] = {}
    open_gas = 0
    for provider in providers:
        terms, tx = market.open_channel(provider.address, 20 * TOKEN, expiry, sender=client)
        channels[provider.address] = _Channel(terms, [])
        open_gas += tx.gas_used

    say("jobs run; after each accepted result the client signs a cumulative voucher")
    for provider, count in zip(providers, JOBS_PER_PROVIDER, strict=True):
        channel = channels[provider.address]
        for index in range(count):
            _sign_next(ledger, client, channel, _job(channel, provider, index))

    say("providers redeem their latest voucher: one transaction each, any number of jobs")
    redeem_gas = 0
    for provider in providers:
        channel = channels[provider.address]
        assert channel.voucher is not None and channel.signature is not None
        redeem_gas += market.redeem(
            channel.terms, channel.voucher, channel.signature, sender=provider
        ).gas_used

    say("any single receipt can be proven against the root the client signed")
    sample = channels[alice.address]
    proof = receipts_proof(sample.receipts, 3)
    assert sample.voucher is not None
    root = sample.voucher.receipts_root
    proven_python = verify_proof(sample.receipts[3].leaf(), proof, root)
    proven_chain = market.verify_receipt(sample.receipts[3].leaf(), proof, root)

    say("alice spends what she earned on compute from bob (no token transfer needed)")
    spend = market.record(alice.address).earned // 2
    terms, _ = market.open_channel(bob.address, spend, expiry, sender=alice)
    circulated = _Channel(terms, [])
    for index in range(3):
        _sign_next(ledger, alice, circulated, _job(circulated, bob, index))
    assert circulated.voucher is not None and circulated.signature is not None
    market.redeem(terms, circulated.voucher, circulated.signature, sender=bob)

    say("channels expire; after the redeem window the payers close and take back the rest")
    backend.advance_time(3600 + config.close_window + 1)
    refunds = 0
    for channel, payer in [*((c, client) for c in channels.values()), (circulated, alice)]:
        state = market.channel(channel.terms)
        refunds += state.remaining
        market.close(channel.terms, sender=payer)

    after = holdings()
    holders = [*names, faucet.address, registry.address, market.address]
    conserved = token.total_supply() == supply == sum(token.balance_of(h) for h in holders)
    market_ok = token.balance_of(market.address) == sum(market.balance_of(a) for a in names)
    registry_ok = token.balance_of(registry.address) == sum(
        registry.provider(p.address).stake for p in providers
    )

    rows: list[dict[str, Any]] = []
    for provider in providers:
        record = market.record(provider.address)
        info = registry.provider(provider.address)
        rows.append(
            {
                "name": names[provider.address],
                "address": provider.address,
                "jobs": record.jobs,
                "units": record.units,
                "tokens_earned": record.earned,
                "stake": info.stake,
                "receipts_root": "0x"
                + (channels[provider.address].voucher or sample.voucher).receipts_root.hex(),
            }
        )
    total_jobs = sum(r["jobs"] for r in rows)
    return {
        "chain": {"backend": "embedded (py-evm)", "chain_id": backend.chain_id},
        "contracts": ledger.deployment.as_dict(),
        "providers": rows,
        "balances_before": before,
        "balances_after": after,
        "refunded_on_close": refunds,
        "receipt_proof": {
            "python": proven_python,
            "on_chain": proven_chain,
            "proof_length": len(proof),
        },
        "gas": {
            "open_channels": open_gas,
            "redeem_vouchers": redeem_gas,
            "jobs_settled": total_jobs - 3,
            "per_job": round((open_gas + redeem_gas) / (total_jobs - 3), 1),
        },
        "balances_conserved": bool(conserved and market_ok and registry_ok),
        "total_supply": supply,
    }
