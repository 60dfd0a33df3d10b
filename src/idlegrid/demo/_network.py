"""`idlegrid demo`: the main job, end to end, on one machine with only pip installs.

1. start a devnet on the embedded chain (py-evm over JSON-RPC) with 3 provider
   node processes on loopback, each staked and registered;
2. train a scikit-learn classifier on ``load_digits`` and export it to ONNX;
3. run batch inference on the test split, sharded over the providers, and
   SIGKILL one provider partway through: its shards go to the others and the
   batch completes;
4. check the results equal local onnxruntime;
5. restart the killed provider: it redeems the vouchers it was given before
   it died, from its journal;
6. a provider spends the tokens it earned on compute from the others;
7. the clients close their channels as they finish (each provider redeems the
   latest voucher and closes the channel early), so no deposit stays locked;
8. stop the providers and print, from the chain, what each provider did and
   earned, and everyone's balances before and after.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._process import ProcessRef, spawn, stop
from ..chain import Indexer, Ledger, free_port
from ..devnet import devnet_down, devnet_up, load_devnet, node_argv, wait_for_node

__all__ = ["run_demo"]

PROVIDERS = 3
ROWS_PER_SHARD = 5
KILL_AFTER_SHARDS = 25
KILLED = 2  # provider index (dev account) that dies mid-batch
SPENDER = 1  # provider index that later buys compute with its earnings


def _holdings(ledger: Ledger, addresses: dict[str, str]) -> dict[str, dict[str, int]]:
    token, market, registry = ledger.token, ledger.market, ledger.registry
    out = {}
    for name, address in addresses.items():
        info = registry.provider(address)
        out[name] = {
            "wallet": token.balance_of(address),
            "market": market.balance_of(address),
            "staked": info.stake + info.unbonding,
        }
    return out


def _wait_redeemed(
    ledger: Ledger, expected: dict[str, int], timeout: float = 60.0
) -> dict[str, int]:
    """Poll the chain until each provider's earnings reach what it was vouchered."""
    deadline = time.monotonic() + timeout
    while True:
        earned = {a: ledger.market.record(a).earned for a in expected}
        if all(earned[a] >= amount for a, amount in expected.items()):
            return earned
        if time.monotonic() > deadline:
            return earned
        time.sleep(0.5)


def run_demo(
    progress: Callable[[str], None] | None = None,
    workdir: Path | None = None,
    *,
    explorer: bool = False,
    linger: float = 0.0,
) -> dict[str, Any]:
    """Run the demo; return what it showed as a JSON-ready dict. With ``explorer``, the
    devnet serves the explorer (its address is said at once: watch the batch land);
    ``linger`` keeps the devnet up that many seconds after the demo."""
    import onnxruntime as ort

    from ..client import Client
    from ..workloads import train_digits_model

    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    directory = workdir or Path(tempfile.mkdtemp(prefix="idlegrid-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    say(f"starting a devnet with {PROVIDERS} provider nodes in {directory}")
    record = devnet_up(directory, providers=PROVIDERS, accounts=6, backend="embedded",
                       progress=say, explorer=explorer)  # fmt: skip
    if explorer:
        say(f"watch it live: {record['explorer_url']}")
    try:
        result = _run(directory, say, started, Client, train_digits_model, ort)
        if explorer:
            result["explorer_url"] = record["explorer_url"]
        if linger > 0:
            say(f"the devnet stays up {linger:g} s more (Ctrl-C ends it)")
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(linger)
        return result
    finally:
        devnet_down(directory)
        if workdir is None:  # a directory of its own: nothing in it is needed after
            shutil.rmtree(directory, ignore_errors=True)


def _run(
    directory: Path,
    say: Callable[[str], None],
    started: float,
    client_cls: Any,
    train: Any,
    ort: Any,
) -> dict[str, Any]:
    net = load_devnet(directory)
    ledger = net.ledger()
    client_acct = net.accounts[0]
    providers = net.accounts[1 : PROVIDERS + 1]
    names = {"client": client_acct.address}
    names.update({f"provider-{i}": p.address for i, p in enumerate(providers, start=1)})
    holders = [*(a.address for a in net.accounts), ledger.registry.address, ledger.market.address]
    supply_before = ledger.token.total_supply()
    before = _holdings(ledger, names)

    say("training a logistic regression on sklearn's digits and exporting it to ONNX")
    model, _, x_test, _, _ = train()
    model_path = directory / "digits.onnx"
    model_path.write_bytes(model)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    local = session.run(None, {session.get_inputs()[0].name: x_test})[0]

    raw = (directory / "devnet.json").read_text()
    import json

    refs = {r["role"]: ProcessRef.from_dict(r) for r in json.loads(raw)["processes"]}
    killed_ref = refs[f"provider-{KILLED}"]
    killed = {"done": False}

    def on_progress(done: int, total: int) -> None:
        if done >= KILL_AFTER_SHARDS and not killed["done"]:
            killed["done"] = True
            os.kill(killed_ref.pid, signal.SIGKILL)
            say(f"SIGKILL provider-{KILLED} after {done}/{total} shards")

    n_shards = -(-x_test.shape[0] // ROWS_PER_SHARD)
    n_rows = x_test.shape[0]
    say(f"batch inference: {n_rows} rows in {n_shards} signed jobs over {PROVIDERS} providers")
    client = client_cls(client_acct, ledger, inflight=1)
    try:
        t0 = time.perf_counter()
        result = client.infer(
            model_path, x_test, rows_per_shard=ROWS_PER_SHARD, on_progress=on_progress
        )
        batch_s = time.perf_counter() - t0
        report = client.last_report
        client.flush()
        matches = bool(result.shape == local.shape and np.array_equal(result, local))
        say(f"results equal local onnxruntime: {matches}; fail-overs: {len(report.failovers)}")

        say(f"restarting provider-{KILLED}: it redeems the vouchers in its journal")
        stop(killed_ref, timeout=1)
        port = free_port()
        restart_argv = node_argv(
            directory / "devnet.json", KILLED, port, directory / ".idlegrid" / f"node-{KILLED}"
        )
        proc, restarted = spawn(
            restart_argv,
            log=directory / ".idlegrid" / f"node-{KILLED}-restart.log",
            role=f"provider-{KILLED}-restarted",
        )
        wait_for_node(f"http://127.0.0.1:{port}", proc)
        # the voucher for its last results never reached it before it died: hand it over
        client.flush()
        vouchered: dict[str, int] = {}
        for ch in client.channels():
            vouchered[ch.terms.provider] = vouchered.get(ch.terms.provider, 0) + ch.amount
        say("the client is done: each provider redeems its last voucher and closes the channel")
        closed = client.close_channels()
    finally:
        client.close()
    earned = _wait_redeemed(ledger, vouchered)
    lost = {a: vouchered[a] - earned.get(a, 0) for a in vouchered}

    spender = providers[SPENDER - 1]

    def holdings(address: str) -> int:  # what it can spend: its wallet and market balance
        return ledger.token.balance_of(address) + ledger.market.balance_of(address)

    spend_before = ledger.market.balance_of(spender.address)
    held_before = holdings(spender.address)
    say(f"provider-{SPENDER} buys compute from the others with what it earned")
    with client_cls(spender, ledger, inflight=1) as buyer:
        bought = buyer.infer(model_path, x_test[:40], rows_per_shard=10)
        buyer.flush()
        buyer_paid = sum(ch.amount for ch in buyer.channels())
        buyer_locked = sum(ch.deposit for ch in buyer.channels())
    spend_after = ledger.market.balance_of(spender.address)
    held_after = holdings(spender.address)

    say("stopping the providers: they redeem what is left as they shut down")
    for role, ref in sorted(refs.items()):
        if role.startswith("provider-") and role != f"provider-{KILLED}":
            stop(ref, timeout=20)
    stop(restarted, timeout=20)

    index = Indexer(ledger.backend, ledger.deployment, directory / "index.sqlite")
    index.sync()
    rows = []
    for i, p in enumerate(providers, start=1):
        record = ledger.market.record(p.address)
        redemptions = index.redemptions(provider=p.address)
        rows.append(
            {
                "name": f"provider-{i}",
                "address": p.address,
                "jobs": record.jobs,
                "units": record.units,
                "tokens_earned": record.earned,
                "stake": ledger.registry.provider(p.address).stake,
                "shards_served": report.by_provider.get(p.address, 0),
                "killed_mid_batch": i == KILLED,
                "redemptions": len(redemptions),
                "receipts_root": ("0x" + redemptions[-1].receipts_root.hex())
                if redemptions
                else None,
            }
        )
    open_locked = sum(c.deposit - c.paid for c in index.channels(status="open"))
    after = _holdings(ledger, names)
    index.close()
    supply_after = ledger.token.total_supply()
    holder_sum = sum(ledger.token.balance_of(h) for h in holders)
    market_ok = (
        ledger.token.balance_of(ledger.market.address)
        == sum(ledger.market.balance_of(a.address) for a in net.accounts) + open_locked
    )
    total_before = sum(sum(v.values()) for v in before.values())
    total_after = sum(sum(v.values()) for v in after.values()) + open_locked
    conserved = (
        supply_before == supply_after == holder_sum and market_ok and (total_before == total_after)
    )
    return {
        "chain": {"backend": "embedded (py-evm over JSON-RPC)", "chain_id": net.chain_id},
        "contracts": ledger.deployment.as_dict(),
        "model": {"kind": "logistic regression (sklearn digits)", "onnx_bytes": len(model)},
        "batch": {
            "rows": int(x_test.shape[0]),
            "shards": report.shards,
            "seconds": round(batch_s, 3),
            "by_provider": report.by_provider,
            "failovers": [{"provider": a, "reason": r} for a, r in report.failovers],
        },
        "results_match_local": matches,
        "providers": rows,
        "unredeemed_after_restart": lost,
        "provider_spends_earnings": {
            "provider": spender.address,
            "market_balance_before": spend_before,
            "market_balance_after": spend_after,
            # wallet + market balance: channel deposits may come from either (the market
            # balance first), and what they did not pay comes back to the market balance
            "holdings_before": held_before,
            "holdings_after": held_after,
            "paid_to_others": buyer_paid,
            "channel_deposits": buyer_locked,
            "rows": int(bought.shape[0]),
        },
        "balances_before": before,
        "balances_after": after,
        "locked_in_channels": open_locked,
        "channels_closed": {
            "count": sum(c.closed for c in closed),
            "open_left": [c.channel for c in closed if not c.closed],
        },
        "balances_conserved": bool(conserved),
        "total_supply": supply_after,
        "seconds": round(time.perf_counter() - started, 1),
    }
