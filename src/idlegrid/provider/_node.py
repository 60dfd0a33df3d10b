"""The provider node's core: accept signed jobs, run them, take vouchers, redeem.

Framework-free: the HTTP layer (``_app.py``) verifies signatures and hands
this class plain values. Chain calls are blocking web3 calls and run in a
thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import pickle
import time
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from .._exceptions import BadSignature, ContractReverted, IdlegridError, InvalidInput
from ..chain import ChannelTerms, Ledger, TxResult
from ..protocol import (
    Account,
    Domain,
    JobRequest,
    JobResult,
    NodeInfo,
    Receipt,
    Voucher,
    VoucherModel,
    array_from_npy,
    checksum,
    node_domain,
    receipt_digest,
    recover_voucher_signer,
    sign_digest,
)
from ..store import BlobStore
from ._book import ChannelBook, PaymentRequired
from ._config import NodeConfig
from ._executor import Executor
from ._hardware import Hardware, capabilities_hash
from ._journal import Journal

__all__ = ["ProviderNode", "Unauthorized"]

log = logging.getLogger("idlegrid.provider")

ONNX_TASK = "idlegrid.provider._tasks:run_onnx"
EMBED_TASK = "idlegrid.provider._tasks:run_embed"
TASKS = (ONNX_TASK, EMBED_TASK)


class Unauthorized(BadSignature):
    """The request is correctly signed, but its signer may not do this (HTTP 403)."""


@dataclass
class _Stats:
    jobs_ok: int = 0
    jobs_failed: int = 0
    vouchers: int = 0
    redemptions: int = 0
    redeemed: int = 0
    started: float = field(default_factory=time.time)


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
        self.journal = journal
        self.hardware = hardware
        self.domain: Domain = node_domain(ledger.backend.chain_id, ledger.market.address)
        self.market_domain: Domain = ledger.market.domain()
        self.stats = _Stats()
        self._books: dict[bytes, ChannelBook] = {}
        self._flops: dict[str, int] = {}
        self._chain_lock = asyncio.Lock()
        self._load_journal()

    # -- identity ----------------------------------------------------------------
    @property
    def address(self) -> str:
        return self.account.address

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
            },
            version=__version__,
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
        """Check, run and journal one job; return its result and signed receipt."""
        terms = self._terms(req.channel)
        if terms.client != sender:
            raise Unauthorized("the request is not signed by the channel's client")
        if req.kind not in self.config.workloads:
            raise InvalidInput(f"this node does not serve {req.kind!r} jobs")
        if req.unit_price != self.config.unit_price:
            raise InvalidInput(
                f"price mismatch: this node charges {self.config.unit_price} per unit"
            )
        book = await self._book(terms)
        if req.voucher is not None:
            self._take_voucher(book, req.voucher)

        task, payload, rows, units = self._prepare(req)
        flops = units // rows
        amount = units * self.config.unit_price
        if units > req.max_units:
            raise InvalidInput(f"job needs {units} units, more than max_units {req.max_units}")
        await self._reserve(book, amount)
        job_id = bytes.fromhex(req.job_id[2:])
        try:
            self.journal.begin_job(job_id, terms, req.seq, req.kind)
            try:
                output = await self.executor.submit(
                    task, payload, timeout=self.config.job_timeout_s
                )
            except IdlegridError as exc:
                self.journal.fail_job(job_id, f"{type(exc).__name__}: {exc}")
                self.stats.jobs_failed += 1
                raise
            result_hash = hashlib.sha256(output).digest()
            receipt = Receipt(terms.id, job_id, self.address, units, amount, result_hash)
            leaf = receipt.leaf()
            self.journal.finish_job(
                job_id, units=units, amount=amount, result_hash=result_hash, leaf=leaf
            )
            book.deliver(req.seq, leaf, units, amount)
        finally:
            book.release(amount)
        self.stats.jobs_ok += 1
        signature = sign_digest(self.account.key, receipt_digest(self.domain, leaf))

        return JobResult(
            job_id=req.job_id,
            seq=req.seq,
            output_npy=base64.b64encode(output).decode(),
            units=units,
            amount=amount,
            result_hash="0x" + result_hash.hex(),
            receipt_signature="0x" + signature.hex(),
            rows=rows,
            flops_per_row=flops,
        )

    def _prepare(self, req: JobRequest) -> tuple[str, bytes, int, int]:
        """(task, payload, rows, compute units) for a job, validated before it runs."""
        if req.kind == "onnx":
            if req.model is None:
                raise InvalidInput("an onnx job needs `model` (the sha256 of an uploaded model)")
            if (req.input_npy is None) == (req.input_blob is None):
                raise InvalidInput("an onnx job needs exactly one of input_npy and input_blob")
            raw = (
                self.store.get(req.input_blob)
                if req.input_blob is not None
                else req.input_npy or ""
            )
            array = array_from_npy(raw, max_bytes=self.config.max_blob_bytes)
            if array.ndim < 1 or array.shape[0] < 1:
                raise InvalidInput("input must have at least one row")
            flops = self._model_flops(req.model)
            path = self.store.path(req.model)
            payload = pickle.dumps(
                {"model": req.model, "path": str(path) if path else None, "input": array},
                protocol=5,
            )
            rows = int(array.shape[0])
            return ONNX_TASK, payload, rows, flops * rows
        if not req.texts:
            raise InvalidInput("an embed job needs a non-empty `texts` list")
        from ..workloads import embed_flops

        units = embed_flops(req.texts)
        return EMBED_TASK, pickle.dumps({"texts": req.texts}), len(req.texts), units

    def _model_flops(self, model: str) -> int:
        flops = self._flops.get(model)
        if flops is None:
            from ..workloads import count_flops

            flops = count_flops(self.store.get(model))
            self._flops[model] = flops
        return flops

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
        book = self._books.get(terms.id)
        if book is None:
            book = self._books[terms.id] = ChannelBook(terms)
        if not book.chain_open:
            await self._refresh(book)
        return book

    async def _refresh(self, book: ChannelBook) -> None:
        async with self._chain_lock:
            state = await asyncio.to_thread(self.ledger.market.channel, book.terms)
        book.deposit, book.expiry, book.chain_open = state.deposit, state.expiry, state.open

    async def _reserve(self, book: ChannelBook, amount: int) -> None:
        c = self.config
        try:
            book.reserve(
                amount, credit_jobs=c.credit_jobs, now=time.time(), min_ttl=c.channel_min_ttl_s
            )
        except PaymentRequired:
            # the client may have topped up or extended since we last looked: look again, at
            # most once per channel_refresh_s for a channel that keeps falling short; a job
            # refused meanwhile waits for a look under way (it holds the chain lock)
            if time.time() - book.checked_at >= c.channel_refresh_s:
                book.checked_at = time.time()
                await self._refresh(book)
            else:
                async with self._chain_lock:
                    pass
            book.reserve(
                amount, credit_jobs=c.credit_jobs, now=time.time(), min_ttl=c.channel_min_ttl_s
            )

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
        if not book.check_voucher(voucher):
            return False
        self.journal.record_voucher(book.terms, voucher, signature)
        book.accept_voucher(voucher)
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

    def _load_journal(self) -> None:
        """Rebuild channel books from the journal (after a restart).

        Every channel, redeemed or not: its clients go on where they were, with
        vouchers covering jobs done before the restart, and its deposit stays spent.
        """
        for terms in self.journal.channels():
            channel = terms.id
            book = self._books.setdefault(channel, ChannelBook(terms))
            for seq, leaf, units, amount in self.journal.receipts(channel):
                book.deliver(seq, leaf, units, amount)
            latest = self.journal.latest_voucher(channel)
            if latest is not None:
                book.accept_voucher(latest.voucher)

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
                if exc.reason in ("market: voucher already redeemed", "market: stale voucher"):
                    # redeemed before a crash we did not journal: nothing is lost
                    self.journal.mark_redeemed(terms.id, voucher, "")
                    continue
                log.warning("cannot redeem channel %s: %s", terms.id.hex()[:12], exc.reason)
                if exc.reason == "market: channel closed":
                    self.journal.mark_redeemed(terms.id, voucher, "closed")
                continue
            self.journal.mark_redeemed(terms.id, voucher, tx.tx_hash)
            self.stats.redemptions += 1
            results.append(tx)
        return results

    async def redeem_loop(self, interval: float = 1.0) -> None:
        """Redeem vouchers when they are due, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                async with self._chain_lock:
                    await asyncio.to_thread(self.redeem_due)
            except IdlegridError as exc:
                log.warning("redemption failed, will retry: %s", exc)
