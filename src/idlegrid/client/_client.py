"""`idlegrid.Client`: run inference on the network from plain Python (no asyncio needed).

The client keeps an asyncio loop in a background thread (like hivemind's DHT)
and exposes blocking methods. It discovers providers from the chain, opens
and tops up payment channels as needed, splits batches across providers with
fail-over, checks every result and bill, and signs a cumulative voucher after
each accepted result.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .._exceptions import (
    BlobCorrupt,
    BlobNotFound,
    ConfigError,
    IdlegridError,
    InvalidInput,
    ProviderRefused,
    UnavailableError,
)
from ..chain import (
    ChannelTerms,
    Indexer,
    Ledger,
    ModelRegistryClient,
    RoyaltyRates,
    RpcBackend,
)
from ..protocol import Account, node_domain
from ..verify import (
    AdaptiveAudit,
    Attempt,
    Evidence,
    LocalRunner,
    Policy,
    Verifier,
    capture_receipts,
    required_rate,
)
from ..verify._policy import Verify
from ..workloads import LongWorkload, Workload, get_workload
from ._channels import Channels, ClosedChannel
from ._discovery import discover, open_index
from ._dispatch import NoProviders, Shard, dispatch
from ._disputes import DisputeReport
from ._disputes import dispute as _dispute
from ._http import HttpPool
from ._long import Failover, Progress, Run, RunResult, drive, resume_point
from ._models import ModelStore, parse_model_hash
from ._runs import follow
from ._selection import Backoff, Candidate, Weights, rank
from ._session import ClientChannel, ProviderFailed, ProviderSession, Reserve
from ._train import TrainedModel
from ._transport import Transport

__all__ = ["BatchReport", "Client", "ClosedChannel"]

log = logging.getLogger("idlegrid.client")
T = TypeVar("T")
_NO_CHECKS = Policy()


@dataclass
class BatchReport:
    """What happened in the last batch: who did which shards, and fail-overs."""

    shards: int = 0
    by_provider: dict[str, int] = field(default_factory=dict)
    failovers: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    #: shards checked under the batch's policy, and jobs run again to check them
    audited: int = 0
    reruns: int = 0
    #: providers caught returning a wrong result in this batch (their evidence is in
    #: ``Client.evidence``)
    caught: list[str] = field(default_factory=list)


class Client:
    """A developer's handle on the network.

    >>> client = Client.from_devnet()              # ./devnet.json, account 0
    >>> y = client.infer("model.onnx", x)          # np.ndarray in, np.ndarray out
    >>> client.close()                              # hand over final vouchers

    ``progress=True`` shows a progress bar on stderr during a batch; ``inflight``
    is how many jobs each provider has in flight; ``timeout_s`` bounds each call.
    ``transport`` is how the client reaches nodes (by default a keep-alive
    :class:`~idlegrid.client.HttpPool`); the client closes it when it closes.
    """

    def __init__(
        self,
        account: Account,
        ledger: Ledger,
        *,
        weights: Weights | None = None,
        timeout_s: float = 30.0,
        max_providers: int = 8,
        inflight: int = 2,
        index_path: Path | None = None,
        progress: bool = False,
        transport: Transport | None = None,
    ) -> None:
        self.account = account
        self.ledger = ledger
        self.weights = weights or Weights()
        self.timeout_s = timeout_s
        self.max_providers = max_providers
        self.inflight = inflight
        self.progress = progress
        self.backoff = Backoff()
        self.last_report = BatchReport()
        #: every provider's audit record, kept across batches (``idlegrid.verify``)
        self.audit = AdaptiveAudit()
        #: what each caught provider did, for a dispute (newest last)
        self.evidence: list[Evidence] = []
        self._local = LocalRunner()
        self._index_path = index_path
        self._index: Indexer | None = None
        self._node = node_domain(ledger.backend.chain_id, ledger.market.address)
        self._market = ledger.market.domain()
        self._channels = Channels(account, ledger)
        self._sessions: dict[str, ProviderSession] = {}
        #: models' royalty rates (what their jobs pay their lineages per unit)
        self._royalty_rates = RoyaltyRates(ledger)
        self._candidates: dict[str, list[Candidate]] = {}
        self._discovered_at: dict[str, float] = {}
        self._hosts: dict[str, _Host] = {}
        self._transport = transport if transport is not None else HttpPool(max_connections=64)
        self._loop = _new_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="idlegrid-client"
        )
        self._thread.start()
        self._closed = False

    # -- construction ------------------------------------------------------------
    @classmethod
    def from_devnet(cls, path: str | Path = "devnet.json", account: int = 0, **kw: Any) -> Client:
        """Connect with the accounts and contracts of a devnet.json."""
        from ..devnet import load_devnet

        info = load_devnet(path)
        if not 0 <= account < len(info.accounts):
            raise ConfigError(f"devnet has {len(info.accounts)} accounts; no account {account}")
        return cls(info.accounts[account], info.ledger(), **kw)

    @classmethod
    def from_network(cls, rpc_url: str, deployment: Any, account: Account, **kw: Any) -> Client:
        return cls(account, Ledger(RpcBackend(rpc_url), deployment), **kw)

    # -- loop plumbing -------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("Client methods are blocking; do not call them from its own loop")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    def close(self, *, close_channels: bool = True) -> None:
        """Hand over final vouchers, close this client's channels (so that no deposit
        stays locked: see :meth:`close_channels`), close connections and stop the loop.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if close_channels:
                self._run(self._close_channels(all_open=False))
            else:
                self._run(self._flush())
        finally:
            self._run(self._transport.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():  # else it still runs: closing would raise
                self._loop.close()  # its selector and self-pipe, which would leak otherwise
            if self._index is not None:
                self._index.close()
            self._local.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API ---------------------------------------------------------------
    def providers(self, workload: str = "onnx") -> list[Candidate]:
        """Reachable providers, best first."""
        return rank(self._run(self._discover(workload, force=True)), self.weights)

    def publish(self, data: bytes, workload: str = "onnx") -> dict[str, str]:
        """Upload ``data`` (a model, say) to every provider serving ``workload``, so that
        jobs and oracle requests naming its sha256 find it there; by provider address,
        ``"ok"`` or why it failed (one provider's failure does not stop the others)."""

        async def all_of() -> dict[str, str]:
            found = await self._discover(workload, force=True)

            async def one(c: Candidate) -> tuple[str, str]:
                try:
                    await self._session(c).put_blob(data)
                except IdlegridError as exc:
                    return c.address, f"{type(exc).__name__}: {exc}"
                return c.address, "ok"

            return dict(await asyncio.gather(*(one(c) for c in found)))

        return self._run(all_of())

    def infer(
        self,
        model: str | Path | bytes,
        inputs: np.ndarray,
        *,
        rows_per_shard: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        max_units: int | None = None,
        budget_s: float | None = None,
        verify: Verify = "none",
        k: int = 3,
        local: bool = False,
        store: ModelStore | None = None,
        require_registered: bool = True,
    ) -> np.ndarray:
        """Run an ONNX model over ``inputs`` (rows) on the network; return its first output.

        ``model`` is a path to an .onnx file, its bytes, or a model's sha256 (64 hex
        characters, ``sha256:`` prefixed or not) read from the local model ``store``
        (default :meth:`ModelStore.default`; ``idlegrid model register`` puts models
        there): InvalidInput when the store lacks it, BlobCorrupt when its file no longer
        hashes to its name. A model named by hash must be registered in the ledger's
        model registry unless ``require_registered=False``. Before the first job the
        model is read and run here on one and two rows (:mod:`idlegrid.client._model`):
        a job that is wrong for the model fails at once, with a message about the model.

        A model whose FLOPs cannot be counted exactly (control flow, data-dependent
        shapes) is metered: each job is billed for the provider's worker CPU time, at
        most ``max_units`` per job; by default the budget is ``budget_s`` seconds of
        the provider's CPU (``idlegrid.workloads._kind_onnx.METERED_BUDGET_S``, at most
        its job time limit).

        ``verify`` checks results beyond their signatures and bills (see :meth:`run`).
        """
        if isinstance(model, str) and (digest := parse_model_hash(model)) is not None:
            model = self._stored_model(digest, store or ModelStore.default(), require_registered)
        return self.run(
            "onnx",
            inputs,
            rows_per_shard=rows_per_shard,
            on_progress=on_progress,
            verify=verify,
            k=k,
            local=local,
            model=model,
            max_units=max_units,
            budget_s=budget_s,
        )

    def _stored_model(self, digest: str, store: ModelStore, require_registered: bool) -> bytes:
        """The bytes of model ``digest`` from ``store``, checked against the registry."""
        if require_registered:
            try:
                models = self.ledger.client("models", ModelRegistryClient)
            except ConfigError:  # a deployment without a model registry
                models = None
            if models is not None and not models.registered(bytes.fromhex(digest)):
                raise InvalidInput(
                    f"model {digest} is not registered on chain "
                    "(register it, or pass require_registered=False)"
                )
        try:
            return store.get(digest)
        except BlobCorrupt:
            raise
        except BlobNotFound as exc:
            raise InvalidInput(
                f"model {digest} is not in the model store {store.root}: "
                "`idlegrid model register FILE` puts it there, or pass the file"
            ) from exc

    def embed(
        self,
        texts: list[str],
        *,
        texts_per_shard: int = 32,
        on_progress: Callable[[int, int], None] | None = None,
        verify: Verify = "none",
        k: int = 3,
        local: bool = False,
    ) -> np.ndarray:
        """Sentence embeddings (all-MiniLM-L6-v2, 384 floats, L2-normalised) for ``texts``.

        The bill is checked with the documented FLOPs formula, which needs only
        the tokenizer here (``pip install 'idlegrid[embed]'``).
        """
        return self.run(
            "embed",
            texts,
            on_progress=on_progress,
            verify=verify,
            k=k,
            local=local,
            per_job=texts_per_shard,
        )

    def run(
        self,
        kind: str,
        inputs: Any,
        *,
        rows_per_shard: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        verify: Verify = "none",
        k: int = 3,
        local: bool = False,
        **options: Any,
    ) -> np.ndarray:
        """Run a batch of any kind of job (``idlegrid workloads`` lists them) on the
        network: split into jobs across providers, every result checked before it is
        paid, the outputs joined in order. ``options`` are the kind's own (``model``
        for ``onnx``, say).

        ``verify`` says how results are checked (:mod:`idlegrid.verify`): ``"none"``
        (signature, hash, bill and shape only), ``"audit"`` (a sample of each
        provider's jobs, at its adaptive rate, run again on another provider, or here
        with ``local=True``) or ``"quorum"`` (every job on ``k`` providers, the
        majority kept). A provider caught returning a result that is not close enough
        to the agreed one leaves the batch, its shards are redone, and its evidence is
        added to :attr:`evidence`; the output returned is a verified one."""
        if self._closed:
            raise InvalidInput("client is closed")
        workload = get_workload(kind)
        policy = Policy(verify, k, local)
        with self._progress_bar(kind, on_progress) as report:
            return self._run(
                self._submit(workload, inputs, rows_per_shard, report, options, policy)
            )

    def start(
        self, kind: str, *, resume_from: Any = None, node_driven: bool = False, **options: Any
    ) -> Run:
        """Start a long-running job of a long kind (``sgd``, say) and return at once: a
        :class:`~idlegrid.client.Run` to follow (``events()``), wait for (``result()``) or
        stop (``cancel()``). It runs as segments, each a job checked and vouchered before
        the next; when its provider dies it goes on elsewhere from the last checkpoint.
        ``resume_from`` is ``(step, checkpoint)`` of an earlier run (``Run.checkpoint``).
        With ``node_driven`` the provider runs the segments itself (``POST /v1/runs``) and
        the client follows its events, checking and vouchering each segment."""
        if self._closed:
            raise InvalidInput("client is closed")
        workload = get_workload(kind)
        if not isinstance(workload, LongWorkload):
            raise InvalidInput(f"{kind} is not a long-running kind: use Client.run")
        resume = resume_point(resume_from)
        plan = self._run(workload.start(self._host(workload), **options))
        run = Run(plan)
        runner = follow if node_driven else drive
        run._future = asyncio.run_coroutine_threadsafe(runner(self, run, resume), self._loop)
        return run

    def run_long(
        self,
        kind: str,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        resume_from: Any = None,
        **options: Any,
    ) -> RunResult:
        """:meth:`start` a long job and wait for it, calling ``on_progress`` per segment."""
        run = self.start(kind, resume_from=resume_from, **options)
        for event in run.events():
            if on_progress is not None and isinstance(event, Progress):
                on_progress(event)
        return run.result()

    def train(
        self,
        job: Any,
        data: Any,
        *,
        on_event: Callable[[Progress | Failover], None] | None = None,
        resume_from: Any = None,
        register: bool = True,
        store: ModelStore | None = None,
    ) -> TrainedModel:
        """Train a network on the network and return the :class:`TrainedModel`
        (weights, ONNX, per-epoch metrics, lineage; ``.infer(x)`` runs it here).

        ``job`` is a :class:`TrainJob`, a mapping of its fields or a YAML file; ``data``
        the data set (an ``.npz`` path or bytes with ``x``, ``y``, ``x_val``, ``y_val``,
        or those four arrays). Providers are paid per segment and failed over from the
        last segment received; under the job's ``verify: pol`` (the default) the run is
        checked by proof-of-learning, disputed when it fails, and its outcome and the
        model recorded in the ModelRegistry. ``on_event`` sees each segment's
        :class:`Progress` (step, loss, validation metrics, paid) and each fail-over.
        See ``client/_train.py``."""
        from ._train import load_dataset, load_job, train

        if self._closed:
            raise InvalidInput("client is closed")
        return train(
            self,
            load_job(job),
            load_dataset(data),
            on_event=on_event,
            resume_from=resume_from,
            register=register,
            store=store,
        )

    def federate(
        self,
        spec: Any,
        validation: tuple[np.ndarray, np.ndarray],
        *,
        nodes: Sequence[str] | None = None,
        register: bool = True,
        output: Path | None = None,
        on_round: Callable[[Any], None] | None = None,
        initial: np.ndarray | None = None,
        rewards: int = 0,
        contributions: bool = True,
    ) -> Any:
        """Coordinate a federated run over the edge nodes that hold ``spec.dataset``
        (``idlegrid.fl``): this client samples them each round, pays their training
        through its channels, aggregates (the spec's strategy, secure aggregation, DP),
        evaluates on ``validation`` (x, y: the sponsor's own) and registers each round's
        model with its participants. ``spec`` is a :class:`~idlegrid.fl.FederatedSpec`,
        a mapping or a YAML file; ``on_round`` sees each :class:`~idlegrid.fl.RoundReport`.
        With ``rewards`` (wei), this client funds the run's ``RewardPool`` with it and
        posts it split by the participants' contributions: once, at the run's end, by
        their contributions netted over the rounds (``payout: run``, a clear run's
        default), or each round's part as the round ends (``payout: round``, a secure
        run's); they claim after the pool's challenge window. ``contributions=False``
        skips the per-round contribution estimate (no rewards then). Returns the
        :class:`~idlegrid.fl.FederatedResult`."""
        from ..fl import Coordinator, load_spec

        if self._closed:
            raise InvalidInput("client is closed")
        coordinator = Coordinator(
            self,
            spec if not isinstance(spec, (str, Path, dict)) else load_spec(spec),
            validation,
            nodes=nodes,
            register=register,
            output=output,
            on_round=on_round,
            initial=initial,
            rewards=rewards,
            contributions=contributions,
        )
        return self._run(coordinator.run())

    @contextlib.contextmanager
    def _progress_bar(
        self, what: str, on_progress: Callable[[int, int], None] | None
    ) -> Iterator[Callable[[int, int], None] | None]:
        """``on_progress``, or with ``progress=True`` a rich progress bar on stderr."""
        if on_progress is not None or not self.progress:
            yield on_progress
            return
        from rich.console import Console
        from rich.progress import Progress

        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(what, total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)

    def flush(self) -> None:
        """Hand every provider the voucher for everything it delivered."""
        self._run(self._flush())

    def dispute(
        self,
        evidence: Evidence,
        *,
        blobs: Mapping[str, bytes] | None = None,
        timeout_s: float = 600.0,
    ) -> DisputeReport:
        """Take a caught provider (``evidence``, from :attr:`evidence`) to the dispute
        contract: the committee re-executes the job and votes; a provider found wrong is
        slashed, this client refunded the job and paid as challenger (its bond back),
        while a false challenge loses the bond. ``blobs`` are the bytes of the blobs the
        job names (its model, by sha256), which the committee needs to re-execute it.
        Blocks until the dispute is resolved (``timeout_s`` of this machine's time; the
        contract's own deadlines are in chain time). See ``client/_disputes.py``."""
        if self._closed:
            raise InvalidInput("client is closed")
        work = _dispute(self, evidence, dict(blobs or {}), timeout_s=timeout_s)
        return self._run(work)

    def challenge_posting(
        self, run: bytes, round: int, inputs: bytes, *, timeout_s: float = 600.0
    ) -> DisputeReport:
        """Challenge a federated round's reward posting within its window, with the
        round's published ``inputs`` (the ``round-NNNN-inputs.npz`` its coordinator
        wrote; they must be the ones the posting names): the committee recomputes the
        contributions and votes; a posting found wrong is void (its total back in the
        run's budget, for the coordinator to post again) and this client's bond comes
        back; a posting that stands takes the bond. Blocks until the ruling."""
        from ._disputes import challenge_posting

        if self._closed:
            raise InvalidInput("client is closed")
        return self._run(challenge_posting(self, run, round, inputs, timeout_s=timeout_s))

    # -- internals ------------------------------------------------------------------
    async def _discover(self, workload: str, *, force: bool = False) -> list[Candidate]:
        """Candidates for ``workload``, re-discovered every 30 s (or when forced)."""
        cached = self._candidates.get(workload)
        if force or cached is None or time.time() - self._discovered_at.get(workload, 0) > 30:
            if self._index is None:
                self._index = await asyncio.to_thread(open_index, self.ledger, self._index_path)
            cached = await discover(
                self.ledger,
                self._index,
                self._transport,
                workload=workload,
                exclude=self.account.address,
            )
            self._candidates[workload] = cached
            self._discovered_at[workload] = time.time()
        audit = self.audit  # this client's own record of each (it changes between batches)
        return [
            replace(
                c,
                audits_passed=audit.consistent(c.address),
                audits_failed=audit.failures(c.address),
            )
            for c in cached
        ]

    def _session(self, c: Candidate) -> ProviderSession:
        session = self._sessions.get(c.address)
        if session is not None and session.candidate != c:
            same = replace(c, audits_passed=0, audits_failed=0)
            if replace(session.candidate, audits_passed=0, audits_failed=0) == same:
                session.candidate = c  # only this client's audit record moved: keep it
        if session is None or session.candidate != c:
            session = ProviderSession(
                self.account,
                c,
                self._node,
                self._market,
                self._transport,
                timeout_s=self.timeout_s,
                royalty_rates=self._royalty_rates.get,
            )
            self._sessions[c.address] = session
        return session

    def _host(self, workload: Workload[Any, Any]) -> _Host:
        host = self._hosts.get(workload.name)
        if host is None:
            host = self._hosts[workload.name] = _Host(self, workload.name)
        return host

    async def _submit(
        self,
        workload: Workload[Any, Any],
        inputs: Any,
        rows_per_shard: int | None,
        on_progress: Callable[[int, int], None] | None,
        options: dict[str, Any],
        policy: Policy = _NO_CHECKS,
    ) -> np.ndarray:
        """One batch of ``workload``: planned by it, split into shards across the
        eligible providers, each shard's jobs checked before they are paid, joined."""
        plan = await workload.plan(inputs, self._host(workload), **options)
        inputs = plan.inputs
        started = time.perf_counter()
        kind = workload.name

        async def eligible() -> list[Candidate]:
            found = await self._discover(kind)
            return rank([c for c in found if plan.eligible(c.limits)], self.weights)

        candidates = await eligible()
        if not candidates:
            if plan.metered is not None and await self._discover(kind):
                raise NoProviders(
                    f"the model must be metered ({plan.metered}) and no provider runs metered jobs"
                )
            raise NoProviders(f"no active, reachable provider serves {kind} jobs")
        n = workload.rows(inputs)
        chosen = candidates[: self.max_providers]
        per = rows_per_shard or plan.per_job
        if per is None:
            in_row, out_row = plan.in_row_bytes, plan.out_row_bytes
            fits = min(self._session(c).rows_per_job(in_row, out_row) for c in chosen)
            per = max(1, min(fits, -(-n // (4 * len(chosen)))))
        parts = workload.split(inputs, per)
        floors = [plan.units(part) for part in parts]
        shards = [Shard(i, np.arange(0)) for i in range(len(parts))]
        report = BatchReport(shards=len(shards))
        metered = plan.metered is not None

        def shard_cost(c: Candidate) -> int:
            return max(plan.max_units(parts[0], c.limits), max(floors)) * c.unit_price

        verifier = Verifier(policy, workload, self.audit)

        async def sessions() -> list[ProviderSession]:
            caught = verifier.caught
            return [self._session(c) for c in await eligible() if c.address not in caught]

        async def prepare(session: ProviderSession) -> None:
            # a fair share of the batch plus headroom: fail-overs shift work around (a
            # metered batch: room for the jobs in flight; bills come in under budget)
            cost = shard_cost(session.candidate)
            share = 0 if metered else sum(floors) * session.candidate.unit_price // len(chosen)
            await self._channels.acquire(
                session, share * 3 // 2 + 2 * self.inflight * cost, reserve=False
            )
            await plan.upload(session)

        async def run(session: ProviderSession, shard: Shard) -> np.ndarray:
            if policy.verify == "none":
                return await session.run(self._reserve(session), plan, parts[shard.index])
            return await checked.run(session, shard.index)

        checked = _Checked(self, plan, parts, verifier, prepare, sessions, shard_cost)
        go = functools.partial(
            dispatch,
            sessions=sessions,
            run=run,
            prepare=prepare,
            backoff=self.backoff,
            inflight=self.inflight,
            max_providers=self.max_providers,
            on_done=self._on_done(report, len(shards), on_progress),
            on_failover=self._on_failover(report),
        )
        try:
            outputs = await go(shards)
            # a caught provider's shards that were not checked are redone by the others
            while redo := checked.unchecked():
                outputs.update(await go([shards[i] for i in redo]))
        finally:
            report.audited, report.reruns = verifier.audited, verifier.reruns
            report.caught = sorted(verifier.caught)
            self.evidence.extend(verifier.caught.values())
        report.seconds = time.perf_counter() - started
        self.last_report = report
        return workload.join([outputs[i] for i in range(len(shards))])

    def _reserve(self, session: ProviderSession) -> Reserve:
        async def reserve(amount: int) -> ClientChannel:
            return await self._channels.acquire(session, amount)

        return reserve

    def _on_done(
        self, report: BatchReport, total: int, on_progress: Callable[[int, int], None] | None
    ) -> Callable[[Shard, str], None]:
        def on_done(shard: Shard, address: str) -> None:
            report.by_provider[address] = report.by_provider.get(address, 0) + 1
            if on_progress is not None:
                on_progress(sum(report.by_provider.values()), total)

        return on_done

    def _on_failover(self, report: BatchReport) -> Callable[[str, str], None]:
        def on_failover(address: str, reason: str) -> None:
            report.failovers.append((address, reason))
            log.warning("provider %s failed, its shards go elsewhere: %s", address, reason)

        return on_failover

    async def _flush(self) -> None:
        """Hand each provider its latest voucher; a provider that moved (restarted on
        another endpoint) is looked up on chain again once."""
        rediscovered = False
        for channel in self._channels.all():
            if channel.voucher_delivered:
                continue
            address = channel.terms.provider
            session = self._sessions.get(address)
            if session is None:
                continue
            try:
                await session.send_voucher(channel)
                continue
            except ProviderFailed as exc:
                error: IdlegridError = exc
            except IdlegridError as exc:
                log.warning("could not hand the last voucher to %s: %s", address, exc)
                continue
            if not rediscovered:
                rediscovered = True
                for workload in list(self._candidates) or ["onnx"]:
                    with contextlib.suppress(IdlegridError):
                        await self._discover(workload, force=True)
            fresh = [c for cs in self._candidates.values() for c in cs if c.address == address]
            if fresh and fresh[0].endpoint != session.candidate.endpoint:
                try:
                    await self._session(fresh[0]).send_voucher(channel)
                    continue
                except IdlegridError as exc:
                    error = exc
            log.warning("could not hand the last voucher to %s: %s", address, error)

    def channels(self) -> list[ClientChannel]:
        """Every channel this client opened, oldest first (a snapshot)."""
        return self._channels.all()

    def close_channels(self, *, all_open: bool = True) -> list[ClosedChannel]:
        """Close channels so that what their deposits did not pay goes back to the
        client's market balance.

        Each channel this client opened is closed by its provider (its early close:
        the client hands over its latest voucher with a signed request, the provider
        redeems it and closes the channel on chain). A channel past its expiry and
        the market's close window is closed by the client itself. With ``all_open``
        the client's other open channels on chain (from earlier sessions) are closed
        too. A closed channel takes no more jobs; the next batch opens a new one.
        """
        return self._run(self._close_channels(all_open=all_open))

    async def _close_channels(self, *, all_open: bool) -> list[ClosedChannel]:
        await self._flush()
        others: list[ChannelTerms] = []
        if all_open:
            if self._index is None:
                self._index = await asyncio.to_thread(open_index, self.ledger, self._index_path)
            await asyncio.to_thread(self._index.sync)
            mine = {ch.terms.id for ch in self._channels.all()}
            for indexed in self._index.channels(client=self.account.address, status="open"):
                if indexed.id not in mine:
                    others.append(indexed.terms)
        return await self._channels.close(others, sessions_for=self._sessions_for)

    async def _sessions_for(self, provider: str) -> list[ProviderSession]:
        """Sessions to try for ``provider``: the one in use, then where the chain says
        it is now (it may have moved)."""
        out = []
        session = self._sessions.get(provider)
        if session is not None:
            out.append(session)
        with contextlib.suppress(IdlegridError):
            if self._index is None:
                self._index = await asyncio.to_thread(open_index, self.ledger, self._index_path)
            await asyncio.to_thread(self._index.sync)
            found = self._index.provider(provider)
            if found is not None and (session is None or found.endpoint != session.base):
                c = Candidate(found.address, found.endpoint, found.price, latency_ms=0.0)
                if session is not None:
                    c = replace(session.candidate, endpoint=found.endpoint)
                out.append(
                    ProviderSession(
                        self.account, c, self._node, self._market, self._transport,
                        timeout_s=self.timeout_s,
                    )
                )  # fmt: skip
        return out


class _Host:
    """What the client lends a workload while it plans a batch (``ClientHost``): a
    cache kept between batches, and blobs fetched from providers of its kind."""

    def __init__(self, client: Client, kind: str) -> None:
        self.memo: dict[Any, Any] = {}
        self._client = client
        self._kind = kind

    async def fetch_blob(self, digest: str) -> bytes:
        for c in await self._client._discover(self._kind):
            session = self._client._session(c)
            try:
                if await session.has_blob(digest):
                    return await session.get_blob(digest)
            except ProviderFailed:
                continue
        raise InvalidInput(f"no provider has a blob with sha256 {digest}; pass the file instead")


class _Checked:
    """A batch's shards run under a verification policy (``idlegrid.verify``)."""

    def __init__(
        self,
        client: Client,
        plan: Any,
        parts: list[Any],
        verifier: Verifier,
        prepare: Callable[[ProviderSession], Awaitable[None]],
        sessions: Callable[[], Awaitable[list[ProviderSession]]],
        shard_cost: Callable[[Candidate], int],
    ) -> None:
        self.client, self.plan, self.parts, self.verifier = client, plan, parts, verifier
        self._prepare, self._sessions, self._shard_cost = prepare, sessions, shard_cost
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._rates: dict[str, float | None] = {}
        #: who returned each shard's output, by shard index
        self.done_by: dict[int, str] = {}

    def unchecked(self) -> list[int]:
        """Shards done by a provider caught since, whose output nobody checked."""
        caught, checked = self.verifier.caught, self.verifier.checked
        return sorted(i for i, who in self.done_by.items() if who in caught and i not in checked)

    async def run(self, session: ProviderSession, index: int) -> np.ndarray:
        address = session.address
        if address in self.verifier.caught:
            raise ProviderRefused(f"{address} was caught returning a wrong result")
        at_least = await self._rate(session) if self.verifier.policy.verify == "audit" else 0.0
        part = self.parts[index]
        first = await self._attempt(session, part)
        output = await self.verifier.settle(
            first,
            index,
            part,
            functools.partial(self._elsewhere, part),
            functools.partial(self.client._local.run, self.plan, part),
            at_least=at_least,
        )
        self.done_by[index] = address  # unchecked and caught since: redone (unchecked)
        return output

    async def _attempt(self, session: ProviderSession, part: Any) -> Attempt:
        reserve = self.client._reserve(session)
        output, receipts = await capture_receipts(
            functools.partial(session.run, reserve, self.plan, part)
        )
        return Attempt(session.address, output, receipts)

    async def _elsewhere(self, part: Any, exclude: set[str]) -> Attempt | None:
        """The shard run on a provider chosen at random among those not excluded."""
        pool = [s for s in await self._sessions() if s.address not in exclude]
        while pool:
            session = pool.pop(secrets.randbelow(len(pool)))
            try:
                await self._ready_on(session)
                return await self._attempt(session, part)
            except (ProviderFailed, UnavailableError) as exc:
                log.warning("cannot check a shard on %s: %s", session.address, exc)
        return None

    async def _ready_on(self, session: ProviderSession) -> None:
        """The batch's channel and upload on ``session``, once."""
        ready = self._ready.get(session.address)
        if ready is None or (ready.done() and ready.exception() is not None):
            ready = self._ready[session.address] = asyncio.ensure_future(self._prepare(session))
        await ready

    async def _rate(self, session: ProviderSession) -> float:
        """The audit rate the provider's stake requires (``trust.required_rate``):
        ProviderRefused when its stake cannot make cheating unprofitable."""
        address = session.address
        if address not in self._rates:
            info = await asyncio.to_thread(self.client.ledger.registry.provider, address)
            payment = self._shard_cost(session.candidate)
            self._rates[address] = required_rate(info.stake, payment, floor=self.client.audit.floor)
        rate = self._rates[address]
        if rate is None:
            raise ProviderRefused(
                f"{address}'s stake is too small to make cheating unprofitable on these jobs"
            )
        return rate


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (it comes with uvicorn[standard]): about half the CPU
    per request of the default loop; else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
