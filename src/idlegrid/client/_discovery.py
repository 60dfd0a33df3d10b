"""Finding providers: the chain's registry (through the local index) plus each node's /v1/info."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from pathlib import Path

import httpx

from .._exceptions import ConfigError
from ..chain import Indexer, Ledger
from ..chain._compile import cache_dir
from ._selection import Candidate

__all__ = ["discover", "open_index"]

log = logging.getLogger("idlegrid.client")


def open_index(ledger: Ledger, path: Path | None = None) -> Indexer:
    """The client's event index for this deployment (a cache: rebuilt if the chain was reset)."""
    d = ledger.deployment
    if path is None:
        path = cache_dir() / "index" / f"{d.chain_id}-{d.market.lower()}.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        index = Indexer(ledger.backend, d, path)
        index.sync()
        return index
    except ConfigError:
        # another chain under the same addresses (a restarted devnet): start over
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        index = Indexer(ledger.backend, d, path)
        index.sync()
        return index


async def _probe(
    http: httpx.AsyncClient, endpoint: str, address: str, ledger: Ledger, timeout: float
) -> tuple[float, tuple[str, ...], int] | None:
    base = endpoint.rstrip("/")
    try:
        info = (await http.get(f"{base}/v1/info", timeout=timeout)).json()
        if (
            info.get("address", "").lower() != address.lower()
            or int(info.get("chain_id", -1)) != ledger.backend.chain_id
            or info.get("market", "").lower() != ledger.market.address.lower()
        ):
            log.info("provider %s at %s answers for another identity or chain", address, base)
            return None
        credit = int((info.get("limits") or {}).get("credit_jobs") or 64)
        if credit < 1:
            raise ValueError(f"credit_jobs {credit} is not positive")
        samples = []
        for _ in range(3):
            t0 = time.perf_counter()
            (await http.get(f"{base}/v1/health", timeout=timeout)).raise_for_status()
            samples.append((time.perf_counter() - t0) * 1000)
    except (httpx.HTTPError, ValueError, TypeError, AttributeError) as exc:
        log.info("provider %s at %s unreachable: %s", address, base, exc)
        return None
    return statistics.median(samples), tuple(info.get("workloads", ())), credit


async def discover(
    ledger: Ledger,
    index: Indexer,
    http: httpx.AsyncClient,
    *,
    workload: str = "onnx",
    timeout: float = 2.0,
    exclude: str | None = None,
) -> list[Candidate]:
    """Active, reachable providers serving ``workload``, with latency and reputation.

    ``exclude`` (the client's own address) is left out: nobody pays themselves.
    """
    await asyncio.to_thread(index.sync)
    providers = [
        p
        for p in index.providers(active_only=True)
        if exclude is None or p.address.lower() != exclude.lower()
    ]
    probes = await asyncio.gather(
        *(_probe(http, p.endpoint, p.address, ledger, timeout) for p in providers)
    )
    out = []
    for p, probe in zip(providers, probes, strict=True):
        if probe is None or workload not in probe[1]:
            continue
        contribution = index.contribution(p.address)
        out.append(
            Candidate(
                address=p.address,
                endpoint=p.endpoint,
                unit_price=p.price,
                latency_ms=probe[0],
                redemptions=contribution.redemptions,
                slashed=p.slashed_total,
                workloads=probe[1],
                credit_jobs=probe[2],
            )
        )
    return out
