"""The demo path on real nodes: a client runs a batch over three providers and pays for it.

devnet up -> ``Client.from_devnet`` -> ``infer`` sharded over the providers ->
results equal local onnxruntime -> ``close`` hands over the last vouchers ->
the providers redeem them, and the chain pays each channel what its voucher says.
"""

from __future__ import annotations

import time
from typing import Any

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


Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(network: Network, node: Any) -> Metrics:
    """A node's ``GET /metrics``, parsed by prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    resp = network.http.get(f"{node.url}/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(resp.text)
        for sample in family.samples
    }


def test_every_node_serves_prometheus_metrics_of_its_jobs(network: Network, digits: Digits) -> None:
    """Scraped before and after a batch: each node counts exactly the jobs it ran, their
    latency and units, holds the model's bytes, and labels nothing by job or channel."""
    before = {node.address: _scrape(network, node) for node in network.nodes}
    client = Client.from_devnet(network.info.path, DEMO_CLIENT)
    try:
        client.infer(digits.model, digits.x_test[:60], rows_per_shard=10)
        ran = client.last_report.by_provider
    finally:
        client.close()

    ok = (("kind", "onnx"), ("outcome", "ok"))
    for node in network.nodes:
        after, was = _scrape(network, node), before[node.address]

        def grew(
            name: str, labels: tuple[tuple[str, str], ...], a: Metrics = after, b: Metrics = was
        ) -> float:
            return a.get((name, labels), 0.0) - b.get((name, labels), 0.0)

        jobs = ran.get(node.address, 0)
        assert grew("idlegrid_jobs_total", ok) == jobs
        assert grew("idlegrid_job_seconds_count", (("kind", "onnx"),)) == jobs
        assert grew("idlegrid_units_total", (("kind", "onnx"),)) == jobs * 10 * digits.flops_per_row
        assert after[("idlegrid_jobs_running", ())] == 0
        if jobs:
            assert after[("idlegrid_blob_store_bytes", ())] >= len(digits.model)
        names = {k for _, labels in after for k, _ in labels}
        assert names <= {"kind", "outcome", "le"}, names
