"""The provider node's core: accept signed jobs, run them, take vouchers, redeem.

Framework-free: the HTTP layer (``_app.py``) verifies signatures and hands
this class plain values. Chain calls are blocking web3 calls and run in a
thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from .._exceptions import (
    BadSignature,
    ClientBusy,
    ContractReverted,
    IdlegridError,
    InvalidInput,
    Unauthorized,
)
from ..chain import ChannelState, ChannelTerms, Ledger, RoyaltyRates, TxResult
from ..executor import Executor, Outcome
from ..protocol import (
    Account,
    Domain,
    JobRequest,
    JobResult,
    NodeInfo,
    Receipt,
    Voucher,
    VoucherModel,
    checksum,
    node_domain,
    receipt_digest,
    recover_voucher_signer,
    sign_digest,
)
from ..store import BlobStore
from ..workloads import JOB_SENDER, Prepared, Workload, get_workload
from ._book import ChannelBook, ExpiringSet, PaymentRequired, TokenBucket, check_client_credit
from ._cheat import Cheat
from ._config import NodeConfig
from ._hardware import Hardware, capabilities_hash
from ._inspect import ModelFacts, ModelInspector
from ._journal import Journal
from ._logs import job_context
from ._metrics import NodeMetrics
from ._quota import BlobQuota

__all__ = ["ProviderNode", "Unauthorized", "preloads", "tasks"]

log = logging.getLogger("idlegrid.provider")


def tasks(kinds: Iterable[str]) -> tuple[str, ...]:
    """The worker tasks a node serving ``kinds`` allows (each kind's, and its warm-up,
    from the registry)."""
    names: list[str] = []
    for kind in kinds:
        workload = get_workload(kind)
        names += [workload.task] + ([workload.warm_task] if workload.warm_task else [])
    return tuple(dict.fromkeys(names))


def preloads(kinds: Iterable[str]) -> tuple[str, ...]:
    """The libraries the workers of a node serving ``kinds`` start with (each kind's
    ``Workload.preload``)."""
    return tuple(dict.fromkeys(m for kind in kinds for m in get_workload(kind).preload))


#: channels remembered as not open on chain
NOT_OPEN_CACHE = 4096
#: chain reads of channels at once (they run in threads)
CHAIN_READS = 4
#: re-reads of a channel that falls short, at once (then one per channel_refresh_s)
REFRESH_BURST = 3
#: outputs up to this size are hashed and base64-encoded on the event loop
INLINE_ENCODE_BYTES = 64 * 2**10
#: characters of a failed job's error kept in its result
MAX_ERROR_CHARS = 1000


@dataclass
class _Stats:
    jobs_ok: int = 0
    jobs_failed: int = 0
    vouchers: int = 0
    redemptions: int = 0
    redeemed: int = 0
    started: float = field(default_factory=time.time)


@dataclass(frozen=True)
class _Bill:
    """What a job that ran is billed, and its output (or error) as it travels."""

    units: int
    amount: int
    hash: bytes  # sha256 of the output .npy, or of the error
    error: str | None
    output_npy: str | None
    output_blob: str | None


def _hash_and_encode(output: bytes) -> tuple[bytes, str]:
    return hashlib.sha256(output).digest(), base64.b64encode(output).decode()


async def _digests(workload: Workload[Any, Any], req: JobRequest) -> tuple[bytes, bytes]:
    """The receipt's spec and input hashes; large inline inputs are hashed off the loop."""
    fields = req.spec_fields()
    size = sum(len(v) for v in fields.values() if isinstance(v, str))
    if size <= _INLINE_HASH_CHARS:
        return workload.digests(fields)
    return await asyncio.to_thread(workload.digests, fields)


def _log_job_done(req: JobRequest, outcome: str, bill: _Bill, seconds: float) -> None:
    """One record per job that ran: debug when it succeeded, info when it failed (billed).
    A failure is named by its error's class only: its text may quote the client's model."""
    error = bill.error.split(":", 1)[0] if bill.error is not None else None
    level = logging.DEBUG if error is None else logging.INFO
    if not log.isEnabledFor(level):  # the common case: no record, no fields built
        return
    log.log(
        level,
        "job %s%s: %d units, %d wei, %.3f s",
        outcome,
        f" ({error})" if error else "",
        bill.units,
        bill.amount,
        seconds,
        extra={
            "kind": req.kind,
            "seq": req.seq,
            "outcome": outcome,
            "units": bill.units,
            "amount": bill.amount,
            "seconds": round(seconds, 6),
            **({"error": error} if error else {}),
        },
    )


#: a redemption refused for one of these reasons has nothing left to redeem
_NOTHING_TO_REDEEM = (
    "market: voucher already redeemed",
    "market: voucher pays nothing",
    "market: stale voucher",
)

#: inline inputs up to this many characters are hashed on the event loop (a thread hop
#: costs more)
_INLINE_HASH_CHARS = 64 * 2**10


class _Host:
    """What the node lends a workload while it checks and prepares a job
    (``idlegrid.workloads.NodeHost``)."""

    def __init__(self, node: ProviderNode, *, honest: bool = False) -> None:
        self._node = node
        self._honest = honest
        self.metered = node.config.metered
        self.max_blob_bytes = node.config.max_blob_bytes
        self.max_model_bytes = node.config.max_model_bytes

    def blob_size(self, digest: str) -> int:
        return self._node.store.size(digest)

    def blob(self, digest: str) -> bytes:
        return self._node.store.get(digest)

    def blob_path(self, digest: str) -> str | None:
        path = self._node.store.path(digest)
        return str(path) if path else None

    def model_known(self, digest: str) -> bool:
        return self._node.models.known(digest) is not None

    async def model_cost(self, digest: str) -> ModelFacts:
        return await self._node._model_cost(digest)

    @property
    def edge(self) -> Any:
        """An edge node's local data and round secret (``idlegrid.edge.EdgeState``), or
        None on a plain provider (``fl`` jobs are refused there)."""
        return self._node.edge

    @property
    def fabrication(self) -> dict[str, Any] | None:
        """TESTING AID (``_cheat.py``): how this node fabricates training, or None."""
        cheat = self._node.cheat
        if self._honest or cheat is None:
            return None
        return cheat.fabrication()


class ProviderNode:
    """One provider: its key, its chain view, its store, executor and journal."""

    def __init__(
        self,
        account: Account,
        ledger: Ledger,
        config: NodeConfig,
        *,
        executor: Executor,
        store: BlobStore,
        journal: Journal,
        hardware: Hardware,
    ) -> None:
        self.account = account
        self.ledger = ledger
        self.config = config
        self.executor = executor
        self.store = store
        self.blobs = BlobQuota(
            store,
            allowance_bytes=config.upload_allowance_bytes,
            client_bytes=config.client_upload_bytes,
        )
        self.journal = journal
        self.hardware = hardware
        self.domain: Domain = node_domain(ledger.backend.chain_id, ledger.market.address)
        #: models' royalty rates (what their jobs pay their lineages per unit)
        self._royalty_rates = RoyaltyRates(ledger)
        self.market_domain: Domain = ledger.market.domain()
        self.stats = _Stats()
        #: what ``GET /metrics`` serves (Prometheus)
        self.metrics = NodeMetrics(self)
        self._books: dict[bytes, ChannelBook] = {}
        self._by_client: dict[str, list[ChannelBook]] = {}
        self._client_jobs: dict[str, int] = {}  # jobs running or queued, by client
        self._not_open = ExpiringSet(maxsize=NOT_OPEN_CACHE, ttl=config.channel_refresh_s)
        self._reads: dict[bytes, asyncio.Future[ChannelState]] = {}  # chain reads under way
        self._read_slots = asyncio.Semaphore(CHAIN_READS)
        self._refreshes: dict[bytes, TokenBucket] = {}
        self._redeem_lock = asyncio.Lock()
        self.models = ModelInspector(
            cache=config.model_cache, timeout_s=config.job_timeout_s, memory_mb=config.memory_mb
        )
        #: what the node lends workloads (NodeHost): its blobs, limits and model facts
        self.host = _Host(self)
        #: whether the workers' warm-up is over (``warm_up``; /v1/stats)
        self.warm = False
        #: blobs being stored in the background for each client (``_keep_side_outputs``)
        self._keeping: dict[str, set[asyncio.Task[None]]] = {}
        #: an edge node's local data (``idlegrid.edge``); None on a plain provider
        self.edge: Any = None
        #: the oracle relay (``idlegrid.oracle``, ``--oracle``); None when not answering
        self.oracle: Any = None
        self.cheat: Cheat | None = None
        if config.cheat_rate > 0:  # a testing aid: see _cheat.py
            self.cheat = Cheat(
                config.cheat_rate,
                config.cheat_mode,
                after=config.cheat_after,
                seed=config.cheat_seed,
            )
            log.warning(
                "THIS NODE CHEATS (a testing aid): %s output on %.0f%% of jobs after %d honest "
                "ones. Never run it on a real network.",
                config.cheat_mode,
                100 * config.cheat_rate,
                config.cheat_after,
            )
        self._load_journal()

    # -- identity ----------------------------------------------------------------
    @property
    def address(self) -> str:
        return self.account.address

    @property
    def channels(self) -> int:
        """Channels this node keeps a book for (every one was open on chain when first seen)."""
        return len(self._books)

    def open_books(self, now: float) -> list[ChannelBook]:
        """The books of the channels open on chain when last read, not expired at ``now``."""
        return [b for b in self._books.values() if b.chain_open and b.expiry > now]

    def capabilities(self) -> dict[str, Any]:
        return {
            "workloads": list(self.config.workloads),
            "hardware": self.hardware.as_dict(),
            "version": __version__,
        }

    def info(self) -> NodeInfo:
        c = self.config
        return NodeInfo(
            address=self.address,
            chain_id=self.domain.chain_id,
            market=self.ledger.market.address,
            unit_price=c.unit_price,
            workloads=list(c.workloads),
            specs={kind: get_workload(kind).schema() for kind in c.workloads},
            hardware=self.hardware.as_dict(),
            capabilities_hash="0x" + capabilities_hash(self.capabilities()).hex(),
            limits={
                "workers": c.workers,
                "queue": c.queue,
                "job_timeout_s": c.job_timeout_s,
                "memory_mb": c.memory_mb,
                "max_blob_bytes": c.max_blob_bytes,
                "max_request_bytes": c.max_request_bytes,
                "credit_jobs": c.credit_jobs,
                "max_unpaid_per_client": c.max_unpaid_per_client,
                "max_output_bytes": c.max_output_bytes,
                "max_inline_output_bytes": c.max_inline_output_bytes,
                "units_per_cpu_s": c.units_per_cpu_s,
                "metered": int(c.metered),
                "max_jobs_per_client": c.max_jobs_per_client,
                "max_model_bytes": c.max_model_bytes,
            },
            version=__version__,
            datasets=self.edge.advertised() if self.edge is not None else {},
        )

    # -- registration --------------------------------------------------------------
    def register(self) -> list[str]:
        """Register on chain with stake, or bring the registration up to date."""
        reg, token = self.ledger.registry, self.ledger.token
        c = self.config
        caps = capabilities_hash(self.capabilities())
        done: list[str] = []
        info = reg.provider(self.address)
        if not info.registered:
            token.approve(reg.address, c.stake, sender=self.account)
            reg.register(c.url, c.unit_price, caps, c.stake, sender=self.account)
            done.append(f"registered with stake {c.stake}")
            return done
        if (info.endpoint, info.price, info.capabilities) != (c.url, c.unit_price, caps):
            reg.update(c.url, c.unit_price, caps, sender=self.account)
            done.append("updated endpoint, price and capabilities")
        if info.stake < c.stake:
            token.approve(reg.address, c.stake - info.stake, sender=self.account)
            reg.add_stake(c.stake - info.stake, sender=self.account)
            done.append(f"added stake {c.stake - info.stake}")
        return done

    # -- jobs ------------------------------------------------------------------------
    async def run_job(self, sender: str, req: JobRequest) -> JobResult:
        """Check, run, bill and journal one job; return its result and signed receipt.

        A job that ran and failed in the worker comes back as a failed result, billed;
        one refused before it ran raises (ClientBusy when the client has
        ``max_jobs_per_client`` jobs here already). See ``_checked_job``.
        """
        terms = self._terms(req.channel)
        with job_context(req.job_id, terms.id), self._admit(sender):  # logs name the job
            token = JOB_SENDER.set(sender)
            try:
                return await self._checked_job(sender, req, terms)
            finally:
                JOB_SENDER.reset(token)

    @contextmanager
    def _admit(self, client: str) -> Iterator[None]:
        """Count a job of ``client`` while it is here; ClientBusy past the cap."""
        jobs = self._client_jobs.get(client, 0)
        cap = self.config.max_jobs_per_client
        if jobs >= cap:
            raise ClientBusy(
                f"this client has {jobs} jobs running or queued here, the most it may have "
                f"({cap}); send it again when one is done"
            )
        self._client_jobs[client] = jobs + 1
        try:
            yield
        finally:
            left = self._client_jobs[client] - 1
            if left:
                self._client_jobs[client] = left
            else:
                del self._client_jobs[client]

    async def _checked_job(self, sender: str, req: JobRequest, terms: ChannelTerms) -> JobResult:
        """Check, run and journal one job; return its result and signed receipt.

        Cheap checks come first (who signed, which channel, kind, price, sizes, the
        channel open on chain, credit); only then is anything parsed, off the event loop.
        """
        if terms.client != sender:
            raise Unauthorized("the request is not signed by the channel's client")
        if req.kind not in self.config.workloads:
            raise InvalidInput(
                f"this node does not serve jobs of kind {req.kind!r} "
                f"(it serves {', '.join(self.config.workloads)})"
            )
        workload = get_workload(req.kind)
        spec = workload.parse(req.spec_fields())
        if req.unit_price != self.config.unit_price:
            raise InvalidInput(
                f"price mismatch: this node charges {self.config.unit_price} per unit"
            )
        royalty = await self._royalty(workload, spec, req)
        await workload.check(spec, self.host)  # named blobs and their sizes, unread
        book = await self._book(terms)
        if req.voucher is not None:
            self._take_voucher(book, req.voucher)
        await self._reserve(book, 0, check_only=True)

        with self.store.pin(*workload.blobs(spec)):  # no eviction under a running job
            return await self._run_pinned(sender, req, terms, book, workload, spec, royalty)

    async def _royalty(
        self, workload: Workload[Any, Any], spec: Any, req: JobRequest
    ) -> tuple[bytes, int] | None:
        """(model, royalty per unit) the job pays its model's lineage, or None; the
        request must state the rate the RewardPool holds (InvalidInput if not)."""
        model = workload.royalty_model(spec)
        if model is None:
            if req.royalty_rate:
                raise InvalidInput(f"jobs of kind {req.kind!r} pay no royalty")
            return None
        asked = req.royalty_rate or 0
        rate = await self._royalty_rates.get(model)
        if rate != asked and rate == 0:  # set since it was read: read it again
            rate = await self._royalty_rates.get(model, fresh=True)
        if rate != asked:
            raise InvalidInput(
                f"royalty mismatch: model {model.hex()[:16]}… pays {rate} per unit to its "
                f"lineage (RewardPool.royalty_rate), the request says {asked}"
            )
        return (model, rate) if rate else None

    async def _run_pinned(
        self,
        sender: str,
        req: JobRequest,
        terms: ChannelTerms,
        book: ChannelBook,
        workload: Workload[Any, Any],
        spec: Any,
        royalty: tuple[bytes, int] | None = None,
    ) -> JobResult:
        accepted = time.perf_counter()
        job = await self._prepare(workload, spec)
        spec_hash, input_hash = await _digests(workload, req)
        rows, units, metered = job.rows, job.units, job.metered
        flops = units // rows
        c = self.config
        if units > req.max_units:
            raise InvalidInput(f"job needs {units} units, more than max_units {req.max_units}")
        # a metered or failed job is billed up to max_units: hold that much
        rate = royalty[1] if royalty is not None else 0
        budget = req.max_units * (c.unit_price + rate)
        await self._reserve(book, budget)
        timeout = c.job_timeout_s
        if metered:  # max_units buys this much CPU time
            timeout = min(timeout, req.max_units / c.units_per_cpu_s)
        job_id = bytes.fromhex(req.job_id[2:])
        try:
            book.begin_job(job_id, req.seq, req.kind)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "job started: %s, seq %d, at most %d units",
                    req.kind,
                    req.seq,
                    req.max_units,
                    extra={"kind": req.kind, "seq": req.seq, "max_units": req.max_units},
                )
            try:
                outcome = await self.executor.run(
                    job.task, job.payload, timeout=timeout, owner=sender
                )
            except IdlegridError as exc:  # it never ran (busy, closing): nothing is owed
                book.fail_job(job_id, f"{type(exc).__name__}: {exc}")
                self.stats.jobs_failed += 1
                self.metrics.job(req.kind, "not_run", 0.0, 0, 0)
                log.info(
                    "job not run: %s",
                    type(exc).__name__,
                    extra={"kind": req.kind, "outcome": "not_run", "error": type(exc).__name__},
                )
                raise
            if workload.side_outputs and outcome.error is None:
                outcome = await self._keep_side_outputs(workload, spec, outcome, sender)
            if self.cheat is not None and outcome.output is not None and outcome.error is None:
                lie = self.cheat.tamper(workload, outcome.output)  # signed like the truth
                outcome = dataclasses.replace(outcome, output=lie)
            bill = await self._bill(req, sender, outcome, units, metered=metered)
            owed: tuple[bytes, int] | None = None
            if royalty is not None and bill.error is None:  # a model that served pays
                owed = (royalty[0], bill.units * rate)
                bill = dataclasses.replace(bill, amount=bill.amount + owed[1])
            receipt = Receipt(
                terms.id, job_id, self.address, spec_hash, input_hash, bill.hash, bill.units,
                bill.amount,
            )  # fmt: skip
            leaf = receipt.leaf()
            book.finish_job(
                job_id,
                req.seq,
                leaf=leaf,
                units=bill.units,
                amount=bill.amount,
                result_hash=bill.hash,
                error=bill.error,
                royalty=owed,
            )
        finally:
            book.release(budget)
        if bill.error is None:
            self.stats.jobs_ok += 1
        else:
            self.stats.jobs_failed += 1
        outcome_name = "ok" if bill.error is None else "failed"
        seconds = time.perf_counter() - accepted
        self.metrics.job(
            req.kind,
            outcome_name,
            seconds,
            bill.units,
            bill.amount - (owed[1] if owed is not None else 0),
        )
        _log_job_done(req, outcome_name, bill, seconds)
        signature = sign_digest(self.account.key, receipt_digest(self.domain, leaf))
        return JobResult(
            job_id=req.job_id,
            seq=req.seq,
            status="ok" if bill.error is None else "failed",
            error=bill.error,
            output_npy=bill.output_npy,
            output_blob=bill.output_blob,
            units=bill.units,
            amount=bill.amount,
            result_hash="0x" + bill.hash.hex(),
            spec_hash="0x" + spec_hash.hex(),
            input_hash="0x" + input_hash.hex(),
            receipt_signature="0x" + signature.hex(),
            rows=rows,
            flops_per_row=flops,
            metered=metered,
        )

    async def _keep_side_outputs(
        self, workload: Workload[Any, Any], spec: Any, outcome: Outcome, client: str
    ) -> Outcome:
        """The job's output apart from the blobs its kind keeps for the client (in the
        store, owned by the client); a result without the kind's layout fails the job.

        The last blob (``train``: the state the next segment starts from) is stored before
        the result goes out; the others in the background, so that a run's next segment
        does not wait for them (``kept`` makes the client's reads wait)."""
        assert outcome.output is not None

        def split(raw: bytes) -> tuple[bytes, list[bytes]]:
            output, side = workload.split_output(spec, raw)
            if side:
                self.store.put(side[-1], owner=client)
            return output, side[:-1]

        def keep(side: list[bytes]) -> None:
            for blob in side:
                self.store.put(blob, owner=client)

        try:
            output, rest = await asyncio.to_thread(split, outcome.output)
        except IdlegridError as exc:
            return dataclasses.replace(outcome, output=None, error=exc)
        if rest:
            task = asyncio.create_task(asyncio.to_thread(keep, rest))
            pending = self._keeping.setdefault(client, set())
            pending.add(task)
            task.add_done_callback(lambda t: self._kept(client, t))
        return dataclasses.replace(outcome, output=output)

    def _kept(self, client: str, task: asyncio.Task[None]) -> None:
        pending = self._keeping.get(client)
        if pending is not None:
            pending.discard(task)
            if not pending:
                del self._keeping[client]
        if not task.cancelled() and task.exception() is not None:
            log.warning("keeping a job's blobs for %s failed: %s", client, task.exception())

    async def kept(self, client: str) -> None:
        """Wait until the blobs being kept for ``client`` in the background are stored."""
        pending = list(self._keeping.get(client, ()))
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def warm_up(self) -> None:
        """Run each served kind's warm-up task once on every worker (in the background at
        start: the first job of a kind such as ``train`` then does not pay seconds of
        imports and first-call set-up). A failure is logged; jobs run anyway."""
        warm = [w.warm_task for w in map(get_workload, self.config.workloads) if w.warm_task]
        try:
            await self._warm(warm)
        finally:
            self.warm = True

    async def _warm(self, warm: list[str]) -> None:
        for task in warm:
            runs = [
                self.executor.run(task, b"", timeout=self.config.job_timeout_s, owner="warm-up")
                for _ in range(self.config.workers)
            ]
            for outcome in await asyncio.gather(*runs, return_exceptions=True):
                error = outcome if isinstance(outcome, BaseException) else outcome.error
                if error is not None:
                    log.warning("warm-up %s failed: %s", task, error)

    async def reexecute(self, kind: str, fields: dict[str, Any], *, owner: str) -> bytes:
        """Run a job's spec again here, unbilled and untampered: a referee's check of a
        disputed result. Returns the output's ``.npy`` bytes; raises what a job would
        (InvalidInput for a spec this node refuses, a JobError when it fails here)."""
        workload = get_workload(kind)
        spec = workload.parse(fields)
        honest = _Host(self, honest=True)
        await workload.check(spec, honest)
        with self.store.pin(*workload.blobs(spec)):
            prepared = await workload.prepare(spec, honest)
            outcome = await self.executor.run(
                prepared.task, prepared.payload, timeout=self.config.job_timeout_s, owner=owner
            )
        raw = outcome.result()
        if workload.side_outputs:
            raw, _ = await asyncio.to_thread(workload.split_output, spec, raw)
        return raw

    async def _bill(
        self, req: JobRequest, client: str, outcome: Outcome, units: int, *, metered: bool
    ) -> _Bill:
        """What a job that ran is billed, and its output as it will travel.

        ``units`` is the static count. A metered job is billed its CPU time, never less
        than the static count; a failed one the time it used (CPU time where the worker
        reported it, else the wall time it held the worker); both at most ``max_units``.
        """
        c = self.config
        error = outcome.error
        if outcome.output is not None and error is None:
            if metered:
                used = math.ceil(outcome.seconds * c.units_per_cpu_s)
                units = min(req.max_units, max(units, used))
            try:
                digest, text, blob = await self._output(outcome.output, client)
            except IdlegridError as exc:  # the store would not take a large output
                error = exc
            else:
                return _Bill(units, units * c.unit_price, digest, None, text, blob)
        assert error is not None
        message = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
        used = max(1, math.ceil(outcome.seconds * c.units_per_cpu_s))
        units = min(req.max_units, used)
        digest = hashlib.sha256(message.encode()).digest()
        return _Bill(units, units * c.unit_price, digest, message, None, None)

    async def _output(self, output: bytes, client: str) -> tuple[bytes, str | None, str | None]:
        """(sha256, base64 text, blob digest) of an output: inline, or stored as a blob
        owned by ``client`` when larger than max_inline_output_bytes (hashing and
        encoding a large one in a thread)."""
        if len(output) > self.config.max_inline_output_bytes:
            blob = await asyncio.to_thread(self.store.put, output, owner=client)
            return bytes.fromhex(blob), None, blob
        if len(output) <= INLINE_ENCODE_BYTES:
            return hashlib.sha256(output).digest(), base64.b64encode(output).decode(), None
        digest, text = await asyncio.to_thread(_hash_and_encode, output)
        return digest, text, None

    async def _prepare(self, workload: Workload[Any, Any], spec: Any) -> Prepared:
        """The job ready for a worker, validated before it runs: the kind prepares it
        (parsing off the event loop, a new model's FLOPs counted in the model
        inspector's process), and the node checks what it says."""
        prepared = await workload.prepare(spec, self.host)
        if prepared.rows < 1 or prepared.units < 0:
            raise InvalidInput(f"a {workload.name} job needs at least one row")
        return prepared

    async def _model_cost(self, model: str) -> ModelFacts:
        path = self.store.path(model)
        if path is None:  # a store without files: hand the helper the bytes
            data = await asyncio.to_thread(self.store.get, model)
            return await self.models.cost(model, path=None, data=data)
        return await self.models.cost(model, path=str(path), data=None)

    # -- channels and vouchers -----------------------------------------------------------
    def _terms(self, model: Any) -> ChannelTerms:
        terms = ChannelTerms(
            checksum(model.client),
            checksum(model.provider),
            model.deposit,
            model.expiry,
            model.salt,
        )
        if terms.provider != self.address:
            raise Unauthorized("the channel pays another provider")
        return terms

    async def _book(self, terms: ChannelTerms) -> ChannelBook:
        """The channel's book; a channel seen for the first time must be open on chain.

        No book is made for a channel that is not open: such channels are remembered for
        channel_refresh_s (a bounded set), and answered 402 without reading the chain again.
        """
        book = self._books.get(terms.id)
        if book is None:
            if self._not_open.has(terms.id, time.monotonic()):
                raise PaymentRequired("channel is not open on chain (unknown or closed)")
            fresh = ChannelBook(terms, journal=self.journal)
            await self._refresh(fresh)
            book = self._books.get(terms.id)  # another request may have made it meanwhile
            if book is None:
                if not fresh.chain_open:
                    self._not_open.add(terms.id, time.monotonic())
                    raise PaymentRequired("channel is not open on chain (unknown or closed)")
                book = self._add_book(fresh)
        elif not book.chain_open:
            await self._refresh_if_allowed(book)
        return book

    def _add_book(self, book: ChannelBook) -> ChannelBook:
        self._books[book.terms.id] = book
        self._by_client.setdefault(book.terms.client, []).append(book)
        return book

    async def _refresh(self, book: ChannelBook) -> None:
        """Read the channel from chain into ``book``: one read per channel at a time (the
        requests that come meanwhile share it), a few channels at once, no lock held."""
        cid = book.terms.id
        pending = self._reads.get(cid)
        if pending is None:
            pending = asyncio.ensure_future(self._read(book.terms))
            self._reads[cid] = pending
            pending.add_done_callback(lambda _: self._reads.pop(cid, None))
        state = await asyncio.shield(pending)
        book.deposit, book.expiry, book.chain_open = state.deposit, state.expiry, state.open

    async def _read(self, terms: ChannelTerms) -> ChannelState:
        async with self._read_slots:
            return await asyncio.to_thread(self.ledger.market.channel, terms)

    async def _refresh_if_allowed(self, book: ChannelBook) -> bool:
        """Re-read a channel that falls short; False if not allowed now.

        A re-read that finds the channel changed (a top-up, an extension) is free, so a
        client that tops up is always seen at once, however often it does; re-reads that
        find nothing new are allowed a few at once, then one per channel_refresh_s (a
        token bucket per channel). Requests that come during a re-read share it.
        """
        cid = book.terms.id
        if cid in self._reads:
            await self._refresh(book)
            return True
        bucket = self._refreshes.get(cid)
        if bucket is None:
            bucket = TokenBucket(self.config.channel_refresh_s, REFRESH_BURST)
            self._refreshes[cid] = bucket
        if not bucket.take(time.monotonic()):
            return False
        seen = (book.deposit, book.expiry, book.chain_open)
        await self._refresh(book)
        if (book.deposit, book.expiry, book.chain_open) != seen:
            bucket.refund()
        return True

    async def _reserve(self, book: ChannelBook, amount: int, *, check_only: bool = False) -> None:
        """Hold ``amount`` on the channel for a job about to run (only check, with
        ``check_only``); PaymentRequired if the channel or the client cannot have it.

        When the chain's view of the channel falls short (deposit, expiry, closed), the
        client may have topped up or extended since the node last looked: look again.
        """
        c = self.config
        for attempt in range(2):
            try:
                check_client_credit(
                    self._by_client.get(book.terms.client, [book]),
                    amount,
                    credit_jobs=c.credit_jobs,
                    max_unpaid=c.max_unpaid_per_client,
                )
                book.check(
                    amount, credit_jobs=c.credit_jobs, now=time.time(), min_ttl=c.channel_min_ttl_s
                )
            except PaymentRequired as exc:
                if attempt or not exc.chain or not await self._refresh_if_allowed(book):
                    raise
                continue
            if not check_only:
                book.reserve(
                    amount, credit_jobs=c.credit_jobs, now=time.time(), min_ttl=c.channel_min_ttl_s
                )
            return

    def _take_voucher(self, book: ChannelBook, model: VoucherModel) -> bool:
        try:
            voucher, signature = model.to_voucher(book.terms.id)
            signer = recover_voucher_signer(self.market_domain, voucher, signature)
        except BadSignature as exc:  # the voucher is malformed, not the request's signature
            raise InvalidInput(f"malformed voucher signature: {exc}") from exc
        if signer != book.terms.client:
            raise Unauthorized(
                "voucher not signed by the channel's client (wrong key, chain or market)"
            )
        if not book.take_voucher(voucher, signature):
            return False
        self.stats.vouchers += 1
        return True

    async def take_voucher(self, sender: str, channel: Any, model: VoucherModel) -> bool:
        """A voucher sent on its own; True if it was newer than the one we had."""
        terms = self._terms(channel)
        if terms.client != sender:
            raise Unauthorized("the request is not signed by the channel's client")
        book = self._books.get(terms.id)
        if book is None:
            raise InvalidInput("no jobs were delivered on this channel")
        return self._take_voucher(book, model)

    async def close_channel(
        self, sender: str, channel: Any, model: VoucherModel | None
    ) -> dict[str, Any]:
        """The client is done with a channel: take its last voucher, redeem the latest
        voucher held and close the channel on chain now (the provider's early close), so
        that the rest of the deposit goes back to the client. Refused while a job runs on
        it; no job starts on it afterwards. Delivered jobs no voucher covers are given up,
        as they would be if the client went away (the node's credit bounds them)."""
        terms = self._terms(channel)
        if terms.client != sender:
            raise Unauthorized("the request is not signed by the channel's client")
        book = self._books.get(terms.id)
        if book is not None:
            if model is not None:
                self._take_voucher(book, model)
            if book.reserved:
                raise InvalidInput("a job is running on this channel: close it when it is done")
            book.chain_open = False  # no job starts on it from now on
        async with self._redeem_lock:
            tx = await asyncio.to_thread(self._close_on_chain, terms)
        return {"closed": True, "tx": tx}

    def _close_on_chain(self, terms: ChannelTerms) -> str:
        """Redeem the channel's latest unredeemed voucher, then close it; blocking."""
        for stored in self.journal.unredeemed():
            if stored.terms.id != terms.id:
                continue
            try:
                tx = self.ledger.market.redeem(
                    terms, stored.voucher, stored.signature, sender=self.account
                )
            except ContractReverted as exc:
                if exc.reason not in (
                    "market: voucher already redeemed",
                    "market: voucher pays nothing",
                    "market: stale voucher",
                    "market: channel closed",
                ):
                    raise
                self._redeemed(terms, stored.voucher, "")
            else:
                self._redeemed(terms, stored.voucher, tx.tx_hash)
                self.stats.redemptions += 1
        try:
            return self.ledger.market.close(terms, sender=self.account).tx_hash
        except ContractReverted as exc:
            if exc.reason == "market: channel closed":
                return ""
            raise

    def pays(self, client: str) -> bool:
        """Whether ``client`` has a channel with this node, open on chain and not expired."""
        now = time.time()
        return any(b.chain_open and b.expiry > now for b in self._by_client.get(client, ()))

    def _load_journal(self) -> None:
        """Rebuild channel books from the journal (after a restart).

        Every channel, redeemed or not: its clients go on where they were, with
        vouchers covering jobs done before the restart, and its deposit stays spent.
        Jobs a crash left running are marked abandoned first (see ``Journal.reconcile``).
        """
        abandoned = self.journal.reconcile()
        if abandoned:
            log.warning(
                "journal: %d job(s) left running by a previous run marked abandoned", abandoned
            )
        for terms in self.journal.channels():
            self._add_book(ChannelBook.load(self.journal, terms))

    # -- redemption --------------------------------------------------------------------
    def due(self, *, force: bool = False) -> list[tuple[ChannelTerms, Voucher, Any]]:
        now = time.time()
        c = self.config
        return [
            (s.terms, s.voucher, s.signature)
            for s in self.journal.unredeemed()
            if force or s.pending >= c.redeem_min_amount or now - s.received >= c.redeem_max_age_s
        ]

    def redeem_due(self, *, force: bool = False) -> list[TxResult]:
        """Redeem every voucher that is due (all of them with ``force``); blocking."""
        results = []
        for terms, voucher, signature in self.due(force=force):
            try:
                tx = self.ledger.market.redeem(terms, voucher, signature, sender=self.account)
            except ContractReverted as exc:
                if exc.reason in _NOTHING_TO_REDEEM:
                    # redeemed before a crash we did not journal (nothing is lost), or a
                    # voucher that adds jobs but no tokens (the market records no such
                    # redemption: it would pump a record for free)
                    self._redeemed(terms, voucher, "")
                    continue
                log.warning("cannot redeem channel %s: %s", terms.id.hex()[:12], exc.reason)
                if exc.reason == "market: channel closed":
                    self._redeemed(terms, voucher, "closed")
                continue
            self._redeemed(terms, voucher, tx.tx_hash)
            self.stats.redemptions += 1
            results.append(tx)
        return results

    def _redeemed(self, terms: ChannelTerms, voucher: Voucher, tx: str) -> None:
        book = self._books.get(terms.id)
        if book is not None:
            book.redeemed(voucher, tx)
        else:  # a channel the journal holds but no book was made for (not expected)
            self.journal.mark_redeemed(terms.id, voucher, tx)

    async def redeem_loop(self, interval: float = 1.0) -> None:
        """Redeem vouchers when they are due, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                async with self._redeem_lock:  # one redemption pass at a time; jobs never wait
                    await asyncio.to_thread(self.redeem_due)
            except IdlegridError as exc:
                log.warning("redemption failed, will retry: %s", exc)
