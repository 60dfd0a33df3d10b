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
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from .._exceptions import ConfigError, IdlegridError, InvalidInput
from ..chain import Indexer, Ledger, RpcBackend
from ..protocol import Account, node_domain
from ._discovery import discover, open_index
from ._dispatch import Shard, dispatch, make_shards
from ._http import HttpPool
from ._selection import Backoff, Candidate, Weights, rank
from ._session import ClientChannel, ProviderFailed, ProviderSession

__all__ = ["BatchReport", "Client"]

log = logging.getLogger("idlegrid.client")
T = TypeVar("T")

CHANNEL_TTL_S = 3600


@dataclass
class BatchReport:
    """What happened in the last batch: who did which shards, and fail-overs."""

    shards: int = 0
    by_provider: dict[str, int] = field(default_factory=dict)
    failovers: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


class Client:
    """A developer's handle on the network.

    >>> client = Client.from_devnet()              # ./devnet.json, account 0
    >>> y = client.infer("model.onnx", x)          # np.ndarray in, np.ndarray out
    >>> client.close()                              # hand over final vouchers

    ``progress=True`` shows a progress bar on stderr during a batch; ``inflight``
    is how many jobs each provider has in flight; ``timeout_s`` bounds each call.
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
        self._index_path = index_path
        self._index: Indexer | None = None
        self._node = node_domain(ledger.backend.chain_id, ledger.market.address)
        self._market = ledger.market.domain()
        self._channels: dict[str, ClientChannel] = {}
        self._all_channels: list[ClientChannel] = []
        self._sessions: dict[str, ProviderSession] = {}
        self._candidates: dict[str, list[Candidate]] = {}
        self._discovered_at: dict[str, float] = {}
        self._models: dict[str, tuple[bytes, int]] = {}
        self._chain_lock: asyncio.Lock | None = None
        self._pool: HttpPool | None = None
        self._loop = _new_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="idlegrid-client"
        )
        self._thread.start()
        self._http = self._run(self._make_http())
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

    async def _make_http(self) -> httpx.AsyncClient:
        self._chain_lock = asyncio.Lock()
        # jobs and blobs go through the lean pool; httpx serves discovery
        self._pool = HttpPool(max_connections=64)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(self.timeout_s))

    def close(self) -> None:
        """Hand over final vouchers, close connections and stop the loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self._flush())
        finally:
            self._run(self._http.aclose())
            if self._pool is not None:
                self._run(self._pool.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():  # else it still runs: closing would raise
                self._loop.close()  # its selector and self-pipe, which would leak otherwise
            if self._index is not None:
                self._index.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API ---------------------------------------------------------------
    def providers(self, workload: str = "onnx") -> list[Candidate]:
        """Reachable providers, best first."""
        return rank(self._run(self._discover(workload, force=True)), self.weights)

    def infer(
        self,
        model: str | Path | bytes,
        inputs: np.ndarray,
        *,
        rows_per_shard: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Run an ONNX model over ``inputs`` (rows) on the network; return its first output.

        ``model`` is a path to an .onnx file, its bytes, or the sha256 of a model
        already uploaded to the network.
        """
        if self._closed:
            raise InvalidInput("client is closed")
        array = np.asarray(inputs)
        if array.ndim < 1 or array.shape[0] == 0:
            raise InvalidInput("inputs must have at least one row")
        with self._progress_bar("inference", on_progress) as report:
            return self._run(self._infer(model, array, rows_per_shard, report))

    def embed(
        self,
        texts: list[str],
        *,
        texts_per_shard: int = 32,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Sentence embeddings (all-MiniLM-L6-v2, 384 floats, L2-normalised) for ``texts``.

        The bill is checked with the documented FLOPs formula, which needs only
        the tokenizer here (``pip install 'idlegrid[embed]'``).
        """
        if self._closed:
            raise InvalidInput("client is closed")
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidInput("texts must be a non-empty list of strings")
        with self._progress_bar("embedding", on_progress) as report:
            return self._run(self._embed(list(texts), texts_per_shard, report))

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
                self._http,
                workload=workload,
                exclude=self.account.address,
            )
            self._candidates[workload] = cached
            self._discovered_at[workload] = time.time()
        return cached

    def _session(self, c: Candidate) -> ProviderSession:
        session = self._sessions.get(c.address)
        if session is None or session.candidate != c:
            assert self._pool is not None
            session = ProviderSession(
                self.account, c, self._node, self._market, self._pool, timeout_s=self.timeout_s
            )
            self._sessions[c.address] = session
        return session

    async def _load_model(self, model: str | Path | bytes) -> tuple[str, bytes, int]:
        from ..workloads import count_flops

        if isinstance(model, bytes):
            data = model
        elif (
            isinstance(model, str)
            and len(model) == 64
            and all(ch in "0123456789abcdef" for ch in model)
        ):
            if model in self._models:
                return model, *self._models[model]
            data = await self._fetch_model(model)
        else:
            path = Path(model)
            if not path.is_file():
                raise InvalidInput(f"model file not found: {path}")
            data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self._models:
            self._models[digest] = (data, count_flops(data))
        return digest, *self._models[digest]

    async def _fetch_model(self, digest: str) -> bytes:
        for c in await self._discover("onnx"):
            session = self._session(c)
            try:
                if await session.has_blob(digest):
                    return await session.get_blob(digest)
            except ProviderFailed:
                continue
        raise InvalidInput(f"no provider has a model with sha256 {digest}; pass the file instead")

    async def _channel(
        self, session: ProviderSession, amount: int, *, reserve: bool = True
    ) -> ClientChannel:
        """A channel to ``session``'s provider with ``amount`` reserved on it (``committed``).

        Opens one, or tops it up (doubling), when the deposit cannot cover it.
        """
        assert self._chain_lock is not None
        async with self._chain_lock:
            ch = self._channels.get(session.address)
            market = self.ledger.market
            if ch is not None and not ch.retired:
                if ch.committed + amount <= ch.deposit and ch.expiry > time.time() + 120:
                    ch.committed += amount if reserve else 0
                    return ch
                state = await asyncio.to_thread(market.channel, ch.terms)
                if state.open and state.expiry > time.time() + 120:
                    ch.deposit, ch.expiry = state.deposit, state.expiry
                    if ch.committed + amount > state.deposit:
                        add = max(ch.committed + amount - state.deposit, state.deposit)
                        await asyncio.to_thread(self._allow, add)
                        await asyncio.to_thread(
                            market.top_up, ch.terms, add, state.expiry, sender=self.account
                        )
                        ch.deposit += add
                    ch.committed += amount if reserve else 0
                    return ch
            if ch is not None and not ch.voucher_delivered:
                with contextlib.suppress(ProviderFailed):
                    await session.send_voucher(ch)
            deposit = max(amount, 1)
            await asyncio.to_thread(self._allow, deposit)
            expiry = int(await asyncio.to_thread(self.ledger.backend.timestamp)) + CHANNEL_TTL_S
            terms, _ = await asyncio.to_thread(
                market.open_channel, session.address, deposit, expiry, sender=self.account
            )
            ch = ClientChannel(terms, deposit=deposit, expiry=expiry)
            ch.committed += amount if reserve else 0
            self._channels[session.address] = ch
            self._all_channels.append(ch)
            return ch

    def _allow(self, amount: int) -> None:
        """Let the market pull what the market balance lacks for ``amount`` (blocking)."""
        market, token = self.ledger.market, self.ledger.token
        shortfall = amount - market.balance_of(self.account.address)
        if shortfall > 0 and token.allowance(self.account.address, market.address) < shortfall:
            token.approve(market.address, shortfall, sender=self.account)

    async def _infer(
        self,
        model: str | Path | bytes,
        inputs: np.ndarray,
        rows_per_shard: int | None,
        on_progress: Callable[[int, int], None] | None,
    ) -> np.ndarray:
        digest, data, flops = await self._load_model(model)
        started = time.perf_counter()
        candidates = rank(await self._discover("onnx"), self.weights)
        if not candidates:
            from ._dispatch import NoProviders

            raise NoProviders("no active, reachable provider serves onnx jobs")
        n = inputs.shape[0]
        per = rows_per_shard or max(1, -(-n // (4 * min(len(candidates), self.max_providers))))
        shards = make_shards(inputs, per)
        report = BatchReport(shards=len(shards))
        price = max(c.unit_price for c in candidates)
        batch_cost = flops * n * price

        async def sessions() -> list[ProviderSession]:
            return [self._session(c) for c in rank(await self._discover("onnx"), self.weights)]

        async def prepare(session: ProviderSession) -> None:
            await session.put_blob(data, digest=digest)
            # a fair share of the batch plus headroom: fail-overs shift work around
            share = batch_cost // max(1, min(len(candidates), self.max_providers))
            shard_cost = flops * per * session.candidate.unit_price
            await self._channel(session, share * 3 // 2 + 2 * shard_cost, reserve=False)

        async def run(session: ProviderSession, shard: Shard) -> np.ndarray:
            cost = flops * shard.rows.shape[0] * session.candidate.unit_price
            channel = await self._channel(session, cost)
            return await session.run_onnx(
                channel, digest, shard.rows, flops_per_row=flops, out_rows=shard.rows.shape[0]
            )

        outputs = await dispatch(
            shards,
            sessions,
            run,
            prepare=prepare,
            backoff=self.backoff,
            inflight=self.inflight,
            max_providers=self.max_providers,
            on_done=self._on_done(report, len(shards), on_progress),
            on_failover=self._on_failover(report),
        )
        report.seconds = time.perf_counter() - started
        self.last_report = report
        return np.concatenate([outputs[i] for i in range(len(shards))], axis=0)

    async def _embed(
        self, texts: list[str], per: int, on_progress: Callable[[int, int], None] | None
    ) -> np.ndarray:
        from ..workloads import embed_flops

        started = time.perf_counter()
        groups = [texts[i : i + per] for i in range(0, len(texts), per)]
        units = [embed_flops(g) for g in groups]
        shards = [Shard(i, np.arange(len(g))) for i, g in enumerate(groups)]
        report = BatchReport(shards=len(shards))
        candidates = rank(await self._discover("embed"), self.weights)
        price = max((c.unit_price for c in candidates), default=0)

        async def sessions() -> list[ProviderSession]:
            return [self._session(c) for c in rank(await self._discover("embed"), self.weights)]

        async def prepare(session: ProviderSession) -> None:
            share = sum(units) * price // max(1, min(len(candidates), self.max_providers))
            await self._channel(session, share * 3 // 2 + max(units) * price * 2, reserve=False)

        async def run(session: ProviderSession, shard: Shard) -> np.ndarray:
            cost = units[shard.index] * session.candidate.unit_price
            channel = await self._channel(session, cost)
            return await session.run_embed(channel, groups[shard.index], units=units[shard.index])

        outputs = await dispatch(
            shards,
            sessions,
            run,
            prepare=prepare,
            backoff=self.backoff,
            inflight=self.inflight,
            max_providers=self.max_providers,
            on_done=self._on_done(report, len(shards), on_progress),
            on_failover=self._on_failover(report),
        )
        report.seconds = time.perf_counter() - started
        self.last_report = report
        return np.concatenate([outputs[i] for i in range(len(shards))], axis=0)

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
        for channel in list(self._all_channels):
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
        return list(self._all_channels)


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (it comes with uvicorn[standard]): about half the CPU
    per request of the default loop; else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
