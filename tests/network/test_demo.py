"""The demo path on real nodes: a client runs a batch over three providers and pays for it.

devnet up -> ``Client.from_devnet`` -> ``infer`` sharded over the providers ->
results equal local onnxruntime -> ``close`` hands over the last vouchers ->
the providers redeem them, and the chain pays each channel what its voucher says.
"""

from __future__ import annotations

import time

import numpy as np

from idlegrid.client import Client
from idlegrid.protocol import recover_voucher_signer

from .conftest import DEMO_CLIENT, Digits, Network

REDEEM_TIMEOUT = 60.0


def test_batch_over_three_providers_is_correct_and_paid_exactly(
    network: Network, digits: Digits
) -> None:
    # Prepare
    client = Client.from_devnet(network.info.path, DEMO_CLIENT)
    providers = {node.address for node in network.nodes}

    # Execute
    try:
        labels = client.infer(digits.model, digits.x_test, rows_per_shard=10)
        report = client.last_report
    finally:
        client.close()
    channels = client.channels()

    # Assert: the result is onnxruntime's, computed by more than one provider
    np.testing.assert_array_equal(labels, digits.labels)
    assert report.failovers == []
    assert sum(report.by_provider.values()) == report.shards == 45
    assert set(report.by_provider) <= providers and len(report.by_provider) >= 2

    # Assert: the client signed for exactly what it received, and handed every voucher over
    billed = digits.flops_per_row * digits.x_test.shape[0] * 10**12
    assert sum(ch.amount for ch in channels) == billed
    market = network.ledger.market
    for ch in channels:
        assert ch.voucher is not None and ch.voucher_delivered
        voucher, signature = ch.voucher
        assert recover_voucher_signer(market.domain(), voucher, signature) == client.account.address
        assert voucher.amount == sum(r.amount for r in ch.accepted.values())
        assert voucher.jobs == len(ch.accepted)
    done_by = {
        address: sum(len(ch.accepted) for ch in channels if ch.terms.provider == address)
        for address in report.by_provider
    }
    assert done_by == report.by_provider

    # Assert: the providers redeem on their own, and the chain pays each channel its voucher
    deadline = time.monotonic() + REDEEM_TIMEOUT
    while [market.channel(ch.terms).paid for ch in channels] != [ch.amount for ch in channels]:
        assert time.monotonic() < deadline, "vouchers not redeemed in time"
        time.sleep(0.25)
