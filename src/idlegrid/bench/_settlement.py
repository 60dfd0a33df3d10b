"""`idlegrid bench settlement`: gas per settled job, channels versus paying each job.

Method (printed with the figures):

* A real anvil node; contracts deployed fresh; gas is the ``gasUsed`` of mined
  transactions (transaction base cost and calldata included).
* Steady state: the client already holds a market balance (one ``deposit``,
  reported separately) and the provider has redeemed before, so neither pays
  for first-time storage of its account. ``first_redeem_extra_gas`` shows that
  one-off cost.
* For N jobs: open a channel (deposit covers N jobs), the client signs N
  cumulative vouchers off-chain (each with the Merkle root of the receipts so
  far), the provider redeems only the last one. gas_per_job[N] =
  (open + redeem) / N.
* Naive baseline, same run: one ``NaivePayments.pay_job`` per job, i.e. an
  ERC-20 ``transferFrom`` client -> provider plus the same contribution
  record; averaged over ``naive_samples`` jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..chain import (
    TOKEN,
    AnvilNode,
    ChainBackend,
    ContractClient,
    EmbeddedBackend,
    Ledger,
    RpcBackend,
    TokenClient,
    deploy_contract,
)
from ..protocol import Account, Receipt, Voucher, merkle_root, sign_voucher

__all__ = ["run_settlement"]

JOB_COUNTS = (1, 10, 100, 1000)
PRICE = 10**15  # tokens (wei) per job in the benchmark
UNITS = 1_000_000  # compute units per job
SPEC = b"\x51" * 32  # a job's spec and input hashes (their values do not change the gas)
INPUTS = b"\x1e" * 32
TARGET_100 = 1000


class _Naive(ContractClient):
    _name = "NaivePayments"


def _jobs(ledger: Ledger, client: Account, provider: Account, n: int) -> tuple[int, int, float]:
    """Open, sign n vouchers, redeem the last; return (open gas, redeem gas, signing s)."""
    market = ledger.market
    terms, opened = market.open_channel(
        provider.address, n * PRICE, ledger.backend.next_timestamp() + 3600, sender=client
    )
    domain = market.domain()
    leaves: list[bytes] = []
    t0 = time.perf_counter()
    voucher = signature = None
    for j in range(1, n + 1):
        receipt = Receipt(
            terms.id, j.to_bytes(32, "big"), provider.address, SPEC, INPUTS, bytes(32), UNITS,
            PRICE,
        )  # fmt: skip
        leaves.append(receipt.leaf())
        voucher = Voucher(terms.id, j * PRICE, j, j * UNITS, merkle_root(leaves))
        signature = sign_voucher(client, domain, voucher)
    signing = time.perf_counter() - t0
    assert voucher is not None and signature is not None
    redeemed = market.redeem(terms, voucher, signature, sender=provider)
    return opened.gas_used, redeemed.gas_used, signing


def run_settlement(
    *,
    backend: str = "anvil",
    naive_samples: int = 20,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the settlement benchmark and return its figures as a JSON-ready dict."""
    say = progress or (lambda _msg: None)
    node: AnvilNode | None = None
    chain: ChainBackend
    if backend == "anvil":
        node = AnvilNode(accounts=4)
        chain = RpcBackend(node.url, dev_account_count=4)
    else:
        chain = EmbeddedBackend(accounts=4)
    try:
        say(f"deploying on {backend}")
        owner, client, provider, _ = chain.dev_accounts()
        ledger = Ledger.deploy(chain, owner)
        token = ledger.token
        for who in (client, provider):
            token.mint(who.address, 100_000 * TOKEN, sender=owner)
        token.approve(ledger.registry.address, 2**256 - 1, sender=provider)
        ledger.registry.register(
            "http://127.0.0.1:1", PRICE // UNITS, bytes(32), 100 * TOKEN, sender=provider
        )
        token.approve(ledger.market.address, 2**256 - 1, sender=client)
        deposit_gas = ledger.market.deposit(50_000 * TOKEN, sender=client).gas_used

        say("warm-up: the provider's first redemption")
        open_w, redeem_first, _ = _jobs(ledger, client, provider, 1)
        open_again, redeem_again, _ = _jobs(ledger, client, provider, 1)

        gas_per_job: dict[str, float] = {}
        detail: dict[str, dict[str, float]] = {}
        for n in JOB_COUNTS:
            say(f"{n} jobs on one channel")
            open_gas, redeem_gas, signing = _jobs(ledger, client, provider, n)
            gas_per_job[str(n)] = round((open_gas + redeem_gas) / n, 1)
            detail[str(n)] = {
                "open_gas": open_gas,
                "redeem_gas": redeem_gas,
                "client_signing_ms_per_job": round(1000 * signing / n, 3),
            }

        say("channel opened straight from the wallet (transferFrom)")
        ledger.market.withdraw(ledger.market.balance_of(client.address), sender=client)
        wallet_open, wallet_redeem, _ = _jobs(ledger, client, provider, 100)
        withdraw_gas = ledger.market.withdraw(
            ledger.market.balance_of(provider.address), sender=provider
        ).gas_used

        say(f"naive: {naive_samples} jobs paid one transfer each")
        naive_addr = deploy_contract(chain, "NaivePayments", [token.address], sender=owner)
        naive = _Naive(chain, naive_addr)
        TokenClient(chain, token.address).approve(naive_addr, 2**256 - 1, sender=client)
        naive._send("pay_job", provider.address, PRICE, UNITS, sender=client)  # first-time record
        naive_gas = [
            naive._send("pay_job", provider.address, PRICE, UNITS, sender=client).gas_used
            for _ in range(naive_samples)
        ]
        naive_per_job = sum(naive_gas) / len(naive_gas)
        client_version = str(chain.w3.client_version)
    finally:
        chain.close()
        if node is not None:
            node.close()

    return {
        "benchmark": "settlement",
        "chain": client_version,
        "backend": backend,
        "gas_per_job": gas_per_job,
        "naive_gas_per_job": round(naive_per_job, 1),
        "savings_vs_naive_at_100": round(naive_per_job / gas_per_job["100"], 1),
        "target": {"gas_per_job_100_max": TARGET_100, "met": gas_per_job["100"] <= TARGET_100},
        "detail": detail,
        "one_off": {
            "client_deposit_gas": deposit_gas,
            "provider_withdraw_gas": withdraw_gas,
            "first_redeem_extra_gas": redeem_first - redeem_again,
            "first_open_gas": open_w,
            "steady_open_gas": open_again,
        },
        "open_from_wallet_gas_per_job_100": round((wallet_open + wallet_redeem) / 100, 1),
        "method": (__doc__ or "").split("Method (printed with the figures):", 1)[-1].strip(),
    }
