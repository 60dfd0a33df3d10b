"""A provider node's configuration: prices, stake, limits, redemption policy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._exceptions import InvalidInput
from ..chain import TOKEN

__all__ = ["NodeConfig"]


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node operator may tune; the defaults suit a desktop machine."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8700
    #: the URL registered on chain; default http://host:port
    public_url: str | None = None
    #: tokens (wei) per compute unit; 1 unit = 1 FLOP
    unit_price: int = 10**12
    stake: int = 100 * TOKEN
    #: concurrent jobs (worker processes)
    workers: int = 2
    #: jobs waiting for a worker before the node answers 503
    queue: int = 64
    job_timeout_s: float = 30.0
    #: address-space limit per worker process, MiB (None: unlimited)
    memory_mb: int | None = 4096
    max_blob_bytes: int = 256 * 2**20
    max_request_bytes: int = 16 * 2**20
    #: jobs delivered on a channel beyond its latest voucher before the node asks for one
    credit_jobs: int = 64
    #: redeem a channel's voucher once this much is pending ...
    redeem_min_amount: int = TOKEN
    #: ... or once the oldest unredeemed voucher is this old (seconds)
    redeem_max_age_s: float = 30.0
    #: refuse jobs on channels that expire sooner than this (seconds)
    channel_min_ttl_s: int = 30
    #: how often to re-read a channel from chain when it seems short of deposit
    channel_refresh_s: float = 2.0
    #: workloads this node serves
    workloads: tuple[str, ...] = ("onnx",)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.queue < 0:
            raise InvalidInput("workers must be >= 1 and queue >= 0")
        if self.job_timeout_s <= 0:
            raise InvalidInput("job_timeout_s must be positive")
        if self.credit_jobs < 1:
            raise InvalidInput("credit_jobs must be >= 1")
        for w in self.workloads:
            if w not in ("onnx", "embed"):
                raise InvalidInput(f"unknown workload {w!r} (onnx, embed)")

    @property
    def url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
