"""Finding providers: the chain's registry (through the local index) plus each node's /v1/info.

A node's /v1/info is read as the :class:`~idlegrid.protocol.NodeInfo` the node builds it
from (an answer that does not parse leaves the node out), through the client's transport.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from .._exceptions import ConfigError
from ..chain import Indexer, Ledger
from ..chain._compile import cache_dir
from ..protocol import NodeInfo
from ._selection import Candidate, Limits
from ._transport import Transport

__all__ = ["discover", "open_index", "read_limits"]

log = logging.getLogger("idlegrid.client")


def open_index(ledger: Ledger, path: Path | None = None) -> Indexer:
    """The client's event index for this deployment (a cache: rebuilt if the chain was reset)."""
    d = ledger.deployment
    if path is None:
        # two devnets share a chain id and (deterministic) addresses, and may run at
        # once: the deployment block's hash tells their chains apart, so that they never
        # share (and rebuild under each other) one index file
        block = ledger.backend.w3.eth.get_block(d.start_block)
        tag = bytes(block["hash"]).hex()[:16]
        path = cache_dir() / "index" / f"{d.chain_id}-{d.market.lower()}-{tag}.sqlite"
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


async def _get(transport: Transport, url: str, timeout: float) -> bytes:
    """The body of a 200 answer to ``GET url``; ValueError for any other status."""
    resp = await transport.request("GET", url, timeout=timeout)
    if resp.status_code != 200:
        raise ValueError(f"GET {url}: HTTP {resp.status_code}")
    return resp.content


async def _probe(
    transport: Transport, endpoint: str, address: str, ledger: Ledger, timeout: float
) -> tuple[float, tuple[str, ...], int, Limits] | None:
    base = endpoint.rstrip("/")
    try:
        info = NodeInfo.model_validate_json(await _get(transport, f"{base}/v1/info", timeout))
        if (
            info.address.lower() != address.lower()
            or info.chain_id != ledger.backend.chain_id
            or info.market.lower() != ledger.market.address.lower()
        ):
            log.info("provider %s at %s answers for another identity or chain", address, base)
            return None
        advertised = info.limits
        raw_credit = advertised.get("credit_jobs")
        credit = 64 if raw_credit is None else int(raw_credit)
        if credit < 1:
            raise ValueError(f"credit_jobs {credit} is not positive")
        limits = read_limits(advertised)
        samples = []
        for _ in range(3):
            t0 = time.perf_counter()
            await _get(transport, f"{base}/v1/health", timeout)
            samples.append((time.perf_counter() - t0) * 1000)
    except (OSError, ValidationError, ValueError) as exc:
        log.info("provider %s at %s unreachable: %s", address, base, exc)
        return None
    return statistics.median(samples), tuple(info.workloads), credit, limits


def read_limits(advertised: Mapping[str, object]) -> Limits:
    """A node's advertised limits; one it does not advertise keeps its default.
    ValueError if one is not a positive number."""
    d = Limits()
    return Limits(
        max_request_bytes=int(_positive(advertised, "max_request_bytes", d.max_request_bytes)),
        max_blob_bytes=int(_positive(advertised, "max_blob_bytes", d.max_blob_bytes)),
        max_output_bytes=int(_positive(advertised, "max_output_bytes", d.max_output_bytes)),
        max_inline_output_bytes=int(
            _positive(advertised, "max_inline_output_bytes", d.max_inline_output_bytes)
        ),
        units_per_cpu_s=int(_positive(advertised, "units_per_cpu_s", d.units_per_cpu_s)),
        job_timeout_s=_positive(advertised, "job_timeout_s", d.job_timeout_s),
        metered=bool(advertised.get("metered") or False),
        max_jobs_per_client=int(
            _positive(advertised, "max_jobs_per_client", d.max_jobs_per_client)
        ),
    )


def _positive(advertised: Mapping[str, object], name: str, default: float) -> float:
    raw = advertised.get(name)
    if raw is None:
        return default
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        raise ValueError(f"limit {name}={raw!r} is not a number")
    if not 0 < raw < float("inf"):
        raise ValueError(f"limit {name}={raw!r} is not positive")
    return raw


async def discover(
    ledger: Ledger,
    index: Indexer,
    transport: Transport,
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
        *(_probe(transport, p.endpoint, p.address, ledger, timeout) for p in providers)
    )
    # one read for all: what each earned from distinct clients, disputes and slashes
    standing = index.reputations()
    out = []
    for p, probe in zip(providers, probes, strict=True):
        if probe is None or workload not in probe[1]:
            continue
        known = standing.get(p.address)
        out.append(
            Candidate(
                address=p.address,
                endpoint=p.endpoint,
                unit_price=p.price,
                latency_ms=probe[0],
                reputation=0 if known is None else known.points,
                slashed=p.slashed_total,
                workloads=probe[1],
                credit_jobs=probe[2],
                limits=probe[3],
            )
        )
    return out
