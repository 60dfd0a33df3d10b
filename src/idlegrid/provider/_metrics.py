"""A node's metrics for Prometheus (``GET /metrics``), with ``prometheus-client``.

Two kinds of figure:

* counted as jobs finish (``NodeMetrics.job``): jobs by kind and outcome, their
  latency (a histogram by kind), units billed and tokens earned by kind;
* read from the node's state at scrape time (``_State``, a custom collector): jobs
  running and queued in the executor, workers and their restarts, channels, tokens of
  vouchers not yet redeemed (the journal's), blob store bytes.

Labels stay low-cardinality: a job's kind and outcome, never a job id, a channel or a
client. Each node has its own registry (several nodes may share a process in tests), and
a scrape renders it in a thread, off the event loop (the journal's read is SQLite).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ._node import ProviderNode

__all__ = ["CONTENT_TYPE_LATEST", "NodeMetrics"]

#: seconds: from a 5 ms inference to a long training segment
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: the outcomes a job is counted under
OUTCOMES = ("ok", "failed", "not_run")
_TOKEN = 10**18


class NodeMetrics:
    """The metrics of one provider node."""

    def __init__(self, node: ProviderNode) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._jobs = Counter(
            "idlegrid_jobs",
            "Jobs this node took, by kind and outcome (ok; failed in the worker, billed; "
            "not_run: refused by the executor, nothing billed)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "idlegrid_job_seconds",
            "Seconds from a job's acceptance to its receipt, by kind",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._units = Counter(
            "idlegrid_units", "Compute units billed, by kind", ["kind"], registry=self.registry
        )
        self._earned = Counter(
            "idlegrid_earned_tokens",
            "Tokens billed for jobs (IDLE; usage royalties, which go to models, excluded)",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(_State(node))

    def job(self, kind: str, outcome: str, seconds: float, units: int, earned_wei: int) -> None:
        """Count one finished job (``outcome`` one of :data:`OUTCOMES`)."""
        self._jobs.labels(kind=kind, outcome=outcome).inc()
        if outcome == "not_run":
            return
        self._latency.labels(kind=kind).observe(seconds)
        self._units.labels(kind=kind).inc(units)
        self._earned.labels(kind=kind).inc(earned_wei / _TOKEN)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (blocking: reads the journal)."""
        return bytes(generate_latest(self.registry))


class _State(Collector):
    """Figures read from the node when scraped."""

    def __init__(self, node: ProviderNode) -> None:
        self.node = node

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected fresh at each scrape

    def collect(self) -> Iterator[Metric]:
        node = self.node
        s = node.executor.stats()
        yield GaugeMetricFamily("idlegrid_jobs_running", "Jobs in a worker now", value=s.running)
        yield GaugeMetricFamily(
            "idlegrid_jobs_queued", "Jobs waiting for a worker (queue depth)", value=s.queued
        )
        yield GaugeMetricFamily("idlegrid_workers", "Workers ready or busy", value=s.workers)
        yield CounterMetricFamily(
            "idlegrid_worker_restarts",
            "Workers started to replace one that died or was killed",
            value=s.restarts,
        )
        yield GaugeMetricFamily(
            "idlegrid_channels", "Payment channels this node has a book of", value=node.channels
        )
        pending = sum(v.pending for v in node.journal.unredeemed())
        yield GaugeMetricFamily(
            "idlegrid_vouchers_unredeemed_tokens",
            "Tokens of the latest vouchers not yet redeemed on chain (IDLE)",
            value=pending / _TOKEN,
        )
        yield GaugeMetricFamily(
            "idlegrid_blob_store_bytes", "Bytes in the node's blob store", value=node.store.usage()
        )
