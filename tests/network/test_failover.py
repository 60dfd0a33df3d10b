"""Providers that die: fail-over mid-batch, and a restart that redeems what the journal kept.

Each test has a devnet of its own, since it kills nodes with SIGKILL (no shutdown, no
redemption on the way out) and starts them again with their own command lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import numpy as np

from idlegrid.client import Client
from idlegrid.client._session import ClientChannel
from idlegrid.protocol import recover_voucher_signer

from .conftest import DEMO_CLIENT, Digits, Network, Node

ROWS_PER_SHARD = 5  # 450 test rows: 90 jobs, so that the kill lands mid-batch
KILL_AFTER = 20  # shards done when a provider is killed
REDEEM_TIMEOUT = 60.0


def vouchered(channels: list[ClientChannel], provider: str) -> int:
    """What the client's latest vouchers promise ``provider``, over all its channels."""
    return sum(ch.amount for ch in channels if ch.terms.provider == provider)


def wait_earned(net: Network, provider: str, expected: int) -> int:
    """The provider's lifetime earnings on chain, once they reach ``expected`` (or time out)."""
    deadline = time.monotonic() + REDEEM_TIMEOUT
    while (earned := net.ledger.market.record(provider).earned) < expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    return earned


def vouchers_taken(net: Network, node: Node) -> int:
    """Vouchers the node accepted so far (it must be up: the test has not killed it yet)."""
    try:
        return int(net.http.get(f"{node.url}/v1/stats").json()["vouchers"])
    except httpx.HTTPError as exc:
        log = (node.directory / ".idlegrid" / f"node-{node.index}.log").read_text()
        raise AssertionError(f"{node.url} is down before the kill; its log:\n{log}") from exc


def paid_only_for_what_was_received(net: Network, client: Client) -> None:
    """Every voucher covers exactly receipts the client accepted: nothing it did not get."""
    domain = net.ledger.market.domain()
    for ch in client.channels():
        if ch.voucher is None:
            assert ch.amount == 0
            continue
        voucher, signature = ch.voucher
        assert recover_voucher_signer(domain, voucher, signature) == client.account.address
        covered = [ch.accepted[seq] for seq in range(1, voucher.jobs + 1)]
        assert voucher.amount == ch.amount == sum(r.amount for r in covered)
        assert voucher.units == sum(r.units for r in covered)
        assert all(r.provider == ch.terms.provider for r in covered)
        assert voucher.amount <= sum(r.amount for r in ch.accepted.values())


def test_batch_survives_a_provider_killed_mid_batch(
    make_network: Callable[..., Network], digits: Digits
) -> None:
    # Prepare
    net = make_network()
    victim = net.nodes[0]
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)
    killed_at: list[int] = []

    def on_progress(done: int, total: int) -> None:
        # once the victim holds a voucher, so that it has something to redeem
        if done >= KILL_AFTER and not killed_at and vouchers_taken(net, victim) > 0:
            killed_at.append(done)
            net.kill(victim)

    try:
        # Execute
        labels = client.infer(
            digits.model, digits.x_test, rows_per_shard=ROWS_PER_SHARD, on_progress=on_progress
        )
        report = client.last_report
        client.flush()  # the survivors get their last vouchers; the dead cannot
        channels = client.channels()

        # Assert: the kill landed mid-batch, the batch completed elsewhere, and it is right
        assert killed_at and killed_at[0] < report.shards == 90
        np.testing.assert_allclose(labels, digits.labels)
        assert victim.address in {address for address, _ in report.failovers}
        assert sum(report.by_provider.values()) == report.shards
        assert set(report.by_provider) == {node.address for node in net.nodes}

        # Assert: no voucher pays for a shard the client did not receive
        paid_only_for_what_was_received(net, client)

        # Assert: the survivors are paid exactly what was vouchered to them
        for node in net.nodes[1:]:
            owed = vouchered(channels, node.address)
            assert wait_earned(net, node.address, owed) == owed

        # Assert: restarted, the killed provider redeems the vouchers it holds, never more
        # than was vouchered to it (the voucher for its last jobs died on the way with it)
        net.restart(victim)
        owed = vouchered(channels, victim.address)
        assert 0 < net.ledger.market.record(victim.address).earned <= owed

        # Assert: handed the voucher it missed, it is paid exactly what the client signed for
        client.flush()
        assert wait_earned(net, victim.address, owed) == owed
    finally:
        client.close()


def test_restarted_provider_redeems_its_unredeemed_vouchers(
    make_network: Callable[..., Network], digits: Digits
) -> None:
    # Prepare: one provider that keeps its vouchers unredeemed (it would wait an hour, and
    # the batch pays it less than the token it waits for otherwise)
    net = make_network(providers=1)
    node = net.replace(net.nodes[0], [*net.nodes[0].argv, "--redeem-after", "3600"])
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)
    market = net.ledger.market

    def crash_and_restart() -> None:
        net.kill(node)  # SIGKILL: no redemption on the way out
        net.restart(node)  # the same command line

    try:
        labels = client.infer(digits.model, digits.x_test, rows_per_shard=50)
        client.flush()  # every voucher handed over, none redeemed yet
        first = vouchered(client.channels(), node.address)
        assert all(ch.voucher_delivered for ch in client.channels())
        assert market.record(node.address).earned == 0 < first

        # Execute
        crash_and_restart()

        # Assert: it redeemed everything at startup: it lost nothing
        assert market.record(node.address).earned == first
        for ch in client.channels():
            assert market.channel(ch.terms).paid == ch.amount

        # Execute: again with nothing left to redeem, then more work on the same channel
        crash_and_restart()
        again = client.infer(digits.model, digits.x_test[:20], rows_per_shard=10)
        client.flush()
        crash_and_restart()
    finally:
        client.close()

    # Assert: the node went on with the channel where it was, and lost nothing again
    np.testing.assert_array_equal(labels, digits.labels)
    np.testing.assert_array_equal(again, digits.labels[:20])
    assert client.last_report.failovers == []
    assert len(client.channels()) == 1
    paid_only_for_what_was_received(net, client)
    assert market.record(node.address).earned == vouchered(client.channels(), node.address)
