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
    #: run models whose FLOP count is not exact (control flow, data-dependent sizes),
    #: billed by the CPU time they use; without it such models are refused (400)
    metered: bool = False
    #: compute units billed per CPU-second of a metered or failed job (1 unit = 1 FLOP)
    units_per_cpu_s: int = 10**10
    #: bytes a job's output may have; a larger one fails in the worker (billed)
    max_output_bytes: int = 64 * 2**20
    #: outputs larger than this travel as blobs (owned by the job's client), not inline
    max_inline_output_bytes: int = 4 * 2**20
    #: jobs one client may have running or queued at once; one more is answered 429
    max_jobs_per_client: int = 8
    #: address-space limit per worker process, MiB (None: unlimited)
    memory_mb: int | None = 4096
    max_blob_bytes: int = 256 * 2**20
    #: bytes of blobs a key without an open channel on this node may store here
    upload_allowance_bytes: int = 64 * 2**20
    #: bytes of blobs a client with an open channel on this node may store here
    client_upload_bytes: int = 4 * 2**30
    #: bytes the blob store may hold in all; past it, the least recently used go first
    max_store_bytes: int = 32 * 2**30
    max_request_bytes: int = 16 * 2**20
    #: jobs delivered on a channel beyond its latest voucher before the node asks for one
    credit_jobs: int = 64
    #: redeem a channel's voucher once this much is pending ...
    redeem_min_amount: int = TOKEN
    #: ... or once the oldest unredeemed voucher is this old (seconds)
    redeem_max_age_s: float = 30.0
    #: refuse jobs on channels that expire sooner than this (seconds)
    channel_min_ttl_s: int = 30
    #: a channel that seems short of deposit may make the node re-read it from chain a few
    #: times at once, then once per this many seconds; a channel found not open on chain is
    #: remembered as such for this long
    channel_refresh_s: float = 2.0
    #: tokens (wei) a client may owe, beyond its vouchers, across all its channels (None: no
    #: limit but credit_jobs, which also counts across a client's channels)
    max_unpaid_per_client: int | None = None
    #: models larger than this are refused before they are parsed
    max_model_bytes: int = 64 * 2**20
    #: how many models' FLOP counts the node remembers
    model_cache: int = 1024
    #: open HTTP connections; beyond this a new one is answered 503 and closed
    max_connections: int = 256
    #: seconds a connection may take to send a request's headers (answered 408, closed)
    header_timeout_s: float = 10.0
    #: a request's header block larger than this is answered 431 and closed
    max_header_bytes: int = 64 * 2**10
    #: a request body must arrive within body_timeout_s plus its size at min_body_rate
    #: (bytes per second), or the node answers 408 and closes the connection
    body_timeout_s: float = 30.0
    min_body_rate: int = 64 * 2**10
    #: seconds an idle keep-alive connection stays open
    keep_alive_s: int = 5
    #: workloads this node serves
    workloads: tuple[str, ...] = ("onnx",)
    #: onnxruntime threads per job (intra-op); honest results agree whatever the count
    threads: int = 1
    #: TESTING AID (``_cheat.py``): answer this fraction of successful jobs wrongly ...
    cheat_rate: float = 0.0
    #: ... this way (random, noise, skip, stale) ...
    cheat_mode: str = "random"
    #: ... after this many honest jobs (the on-off attack), choosing with this seed
    cheat_after: int = 0
    cheat_seed: int | None = None

    def __post_init__(self) -> None:
        if self.workers < 1 or self.queue < 0:
            raise InvalidInput("workers must be >= 1 and queue >= 0")
        if self.job_timeout_s <= 0:
            raise InvalidInput("job_timeout_s must be positive")
        if self.credit_jobs < 1:
            raise InvalidInput("credit_jobs must be >= 1")
        if min(self.units_per_cpu_s, self.max_output_bytes, self.max_jobs_per_client) < 1:
            raise InvalidInput(
                "units_per_cpu_s, max_output_bytes and max_jobs_per_client must be >= 1"
            )
        if not 0 <= self.max_inline_output_bytes <= self.max_output_bytes:
            raise InvalidInput("max_inline_output_bytes must be between 0 and max_output_bytes")
        if self.max_connections < 1 or self.model_cache < 1:
            raise InvalidInput("max_connections and model_cache must be >= 1")
        if min(self.header_timeout_s, self.body_timeout_s, self.keep_alive_s) <= 0:
            raise InvalidInput("header_timeout_s, body_timeout_s and keep_alive_s must be > 0")
        if self.threads < 1:
            raise InvalidInput("threads must be >= 1")
        if self.cheat_rate:
            from ._cheat import Cheat

            try:
                Cheat(self.cheat_rate, self.cheat_mode, after=self.cheat_after)
            except ValueError as exc:
                raise InvalidInput(str(exc)) from exc
        from ..workloads import get_workload

        for w in self.workloads:
            get_workload(w)  # InvalidInput naming the known kinds

    @property
    def url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
