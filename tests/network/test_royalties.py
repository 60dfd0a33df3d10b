"""Usage royalties end to end: a registered model's registrant sets a royalty, a client
runs the model on a real provider process and pays it through its ordinary vouchers,
and the provider's redemption takes it to the model's lineage in the RewardPool: the
trainer, the data contributors of the round that made the model (by their posted
amounts) and the model it was fine-tuned from. Earned royalties are tokens like any
other: a contributor spends what it claimed on compute."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from idlegrid import ContractReverted
from idlegrid.chain import TOKEN, ModelRegistryClient, RewardPoolClient, RewardTree
from idlegrid.client import Client

from .conftest import DEMO_CLIENT, Digits, Network

REDEEM_TIMEOUT = 60.0


def _cli(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "idlegrid.cli", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


RATE = 5 * 10**11  # wei per compute unit, on top of the node's 10**12
DATA_BPS = 6000
PARENT_BPS, BPS = 2000, 10_000  # RewardPool's


def test_a_royalty_paid_with_inference_jobs_reaches_the_model_s_lineage(
    make_network: Callable[..., Network], digits: Digits
) -> None:
    # Prepare: the served model is round 1 of a federated run fine-tuned from a base
    # model; the run's posting paid two contributors 3:1
    net = make_network(providers=1)
    ledger = net.ledger
    models = ledger.client("models", ModelRegistryClient)
    pool = ledger.client("rewards", RewardPoolClient)
    coordinator, base_trainer = net.account(2), net.account(3)
    first, second = net.account(5), net.account(6)
    served = bytes.fromhex(digits.digest)
    base = hashlib.sha256(b"the base model " + net.directory.name.encode()).digest()
    run = hashlib.sha256(b"the run that made the served model").digest()
    models.register(base, sender=base_trainer)
    models.register_round(
        served, run, 1, spec_hash=b"\x01" * 32, data_hash=b"\x02" * 32, parent=base,
        participants=[first.address, second.address], sender=coordinator,
    )  # fmt: skip
    tree = RewardTree(run, 1, {first.address: 3 * TOKEN, second.address: TOKEN})
    ledger.token.approve(pool.address, tree.total, sender=coordinator)
    pool.fund(run, tree.total, ledger.backend.next_timestamp() + 3600, sender=coordinator)
    pool.post(tree, served, sender=coordinator)
    pool.set_royalty(served, RATE, DATA_BPS, sender=coordinator)
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)

    # Execute: inference on the provider process, paid through the channel's vouchers
    try:
        labels = client.infer(digits.model, digits.x_test[:120], rows_per_shard=40)
    finally:
        client.close()
    channels = client.channels()
    market = ledger.market
    deadline = time.monotonic() + REDEEM_TIMEOUT
    while [market.channel(ch.terms).paid for ch in channels] != [ch.amount for ch in channels]:
        assert time.monotonic() < deadline, "vouchers not redeemed in time"
        time.sleep(0.25)

    # Assert: the right labels, and each job's royalty in its voucher, signed
    np.testing.assert_array_equal(labels, digits.labels[:120])
    royalty = 0
    for ch in channels:
        assert ch.voucher is not None
        voucher = ch.voucher[0]
        units = sum(r.units for r in ch.accepted.values())
        assert voucher.royalties == ((served, units * RATE),)
        assert voucher.amount == units * (10**12 + RATE)
        assert market.royalties_paid(ch.terms.id, served) == units * RATE
        royalty += units * RATE
    assert royalty == 120 * digits.flops_per_row * RATE

    # Assert: the provider earned the compute, the lineage the royalty, to the wei
    provider = net.nodes[0].address
    assert market.record(provider).earned == sum(ch.amount for ch in channels) - royalty
    up = royalty * PARENT_BPS // BPS
    data = (royalty - up) * DATA_BPS // BPS
    assert pool.owed(base_trainer.address) == up
    assert pool.owed(coordinator.address) == royalty - up - data
    assert pool.royalties_of(served).received == data

    # Execute: the trainers withdraw; once the posting's challenge window is over, the
    # contributors claim by its leaves
    wallets = {a.address: ledger.token.balance_of(a.address) for a in (coordinator, first)}
    pool.withdraw_royalties(sender=coordinator)
    pool.withdraw_royalties(sender=base_trainer)
    ledger.backend.advance_time(pool.challenge_window() + 1)
    pool.claim_royalty(served, tree, first.address, sender=second)  # anyone may send it
    pool.claim_royalty(served, tree, second.address, sender=second)

    # Assert: 3:1, as posted; nothing left owed; a second claim has nothing to pay
    assert ledger.token.balance_of(coordinator.address) == (
        wallets[coordinator.address] + royalty - up - data
    )
    got_first = ledger.token.balance_of(first.address) - wallets[first.address]
    assert got_first == data * 3 // 4
    assert pool.royalties_of(served).claimed == data * 3 // 4 + data // 4
    assert pool.owed(coordinator.address) == pool.owed(base_trainer.address) == 0
    try:
        pool.claim_royalty(served, tree, first.address, sender=first)
    except ContractReverted as exc:
        assert "nothing to claim" in str(exc)
    else:
        raise AssertionError("a second claim paid again")

    # Assert: the command line shows the lineage's contributors and shares, and what
    # an address earned as contributor and trainer
    where = ["--network", str(net.info.path), "--json"]
    shown = json.loads(_cli("model", "show", digits.digest, *where))["lineage"]
    earned = json.loads(_cli("rewards", second.address, *where))
    trainer = json.loads(_cli("rewards", coordinator.address, *where))
    assert [r["model"] for r in shown] == [served.hex(), base.hex()]
    posting = shown[0]["contributors"]
    assert {c["contributor"]: c["share"] for c in posting["shares"]} == {
        first.address: 0.75,
        second.address: 0.25,
    }
    assert shown[0]["royalty"]["rate"] == RATE and shown[0]["royalty"]["data_received"] == data
    assert shown[1]["contributors"] is None and shown[1]["royalty"] is None
    assert earned["data_contributor"]["royalties_claimed"] == data // 4
    assert earned["data_contributor"]["claimable"] == TOKEN  # its posted reward, unclaimed
    assert trainer["trainer"]["royalties_withdrawn"] == royalty - up - data

    # Execute: the contributor spends its royalty on compute (tokens circulate)
    spender = Client(first, ledger)
    try:
        again = spender.infer(digits.model, digits.x_test[:40], rows_per_shard=40)
    finally:
        spender.close()

    # Assert
    np.testing.assert_array_equal(again, digits.labels[:40])
    assert sum(ch.amount for ch in spender.channels()) > 0
