"""One client's conversation with one provider: signed HTTP, channel, receipts, vouchers.

Everything a provider sends back is checked before it is paid for: the
response signature, the receipt signature, the result hash, the bill (units
recomputed from the model, times the agreed price; for a metered job, between
the static floor and the job's ``max_units``), and the output's dtype and shape
against what the model declares (the client's own parse). Only then is the
result accepted and a new cumulative voucher signed.

What each answer means to the client:

* 200, everything checks out: accept the receipt, sign the voucher.
* 422 with a valid *failed* result (a signed receipt for the worker time the job
  used): accept it too, since the client's own job used that time. A timeout or
  a crash may be retried once elsewhere (:class:`JobTimedOut`); any other error is
  about the model or the input, and ends the batch (:class:`ModelRejected`).
* 413: the payload is over the provider's limit; nothing was recorded for that
  sequence number, so the caller sends less under the same number.
* 429: too many of this client's jobs are running there; wait and resend.
* a signed 400: this provider refuses the job (:class:`ProviderRefused`): others may not.
* anything else, or something that does not check out: the provider is at
  fault (:class:`ProviderFailed`): fail over, never pay.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._exceptions import (
    BadSignature,
    IdlegridError,
    InvalidInput,
    JobTimedOut,
    PeerError,
    ProviderFailed,
    ProviderRefused,
    error_for_status,
)
from ..chain import ChannelTerms
from ..protocol import (
    Account,
    ChannelClose,
    ChannelModel,
    Domain,
    JobRequest,
    JobResult,
    Receipt,
    ReceiptPrefix,
    Signature,
    Voucher,
    VoucherModel,
    VoucherSubmission,
    address_bytes,
    array_from_npy,
    receipt_digest,
    recover_digest,
    sign_request,
    sign_voucher,
    verify_response,
)
from ..verify import record_receipt
from ..workloads import Plan, get_workload
from ._model import ModelRejected, OutputSpec
from ._selection import Candidate, Limits
from ._sse import EventParser
from ._transport import Transport

__all__ = [
    "ClientChannel",
    "JobRejected",
    "JobTimedOut",
    "ProviderFailed",
    "ProviderRefused",
    "ProviderSession",
    "Reserve",
]

#: room in a request for everything but the input array (JSON, voucher, headers)
REQUEST_OVERHEAD = 64 * 1024
#: an input array up to this size travels inline (base64 in the job); larger ones as a blob
INLINE_INPUT_BYTES = 2 * 2**20
#: room for a .npy header (numpy writes 128 bytes, more for a shape of many dims)
NPY_HEADER = 512
#: how often a job answered 429 (the client has too many jobs there) is sent again
BUSY_RETRIES = 20

_BYTES = re.compile(r"(\d+) bytes")

#: ``reserve(amount)``: a channel to the provider with ``amount`` committed on it
Reserve = Callable[[int], Awaitable["ClientChannel"]]


#: a job that is wrong for the model (kept under its old name)
JobRejected = ModelRejected


def _http(status: int) -> str:
    """A status and the error a node answers it for: ``HTTP 503 UnavailableError``."""
    error = error_for_status(status)
    return f"HTTP {status} {error.__name__}" if error else f"HTTP {status}"


class _TooLarge(IdlegridError):
    """A provider answered 413; ``held`` is the (channel, seq) to send less under."""

    def __init__(
        self, message: str, limit: int | None, held: tuple[ClientChannel, int] | None = None
    ) -> None:
        self.limit = limit
        self.held = held
        super().__init__(message)


@dataclass
class ClientChannel:
    """The client's side of one channel: receipts accepted and the voucher that covers them."""

    terms: ChannelTerms
    deposit: int = 0  # including top-ups, as far as we know
    expiry: int = 0
    next_seq: int = 1
    committed: int = 0  # amount of jobs accepted or in flight
    #: accepted receipts by seq, and the prefix 1..n the voucher covers
    prefix: ReceiptPrefix[Receipt] = field(default_factory=ReceiptPrefix, repr=False)
    voucher: tuple[Voucher, Signature] | None = None
    voucher_delivered: bool = True
    retired: bool = False
    #: closed on chain: the deposit not paid out went back to the client
    closed: bool = False
    #: set (and replaced) whenever the accepted prefix grows or the channel retires
    _moved: asyncio.Event | None = field(default=None, repr=False)
    #: (model, royalty) of the accepted jobs that owe their model's lineage one, by seq
    royalty_of: dict[int, tuple[bytes, int]] = field(default_factory=dict, repr=False)

    def royalties_upto(self, jobs: int) -> tuple[tuple[bytes, int], ...]:
        """The royalty lines of a voucher for jobs 1..``jobs``."""
        owed: dict[bytes, int] = {}
        for seq, (model, amount) in self.royalty_of.items():
            if seq <= jobs:
                owed[model] = owed.get(model, 0) + amount
        return tuple(sorted(owed.items()))

    @property
    def accepted(self) -> dict[int, Receipt]:
        """The receipts accepted on this channel, by seq."""
        return dict(self.prefix.items())

    @property
    def amount(self) -> int:
        """Amount of the receipts 1..n the voucher covers."""
        return self.prefix.amount

    @property
    def units(self) -> int:
        """Units of the receipts 1..n the voucher covers."""
        return self.prefix.units

    def take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    async def window(self, credit_jobs: int) -> None:
        """Wait until one more job fits in the provider's credit.

        A provider runs a job only while fewer than ``credit_jobs`` of the jobs it
        delivered are beyond the latest voucher it holds, and a voucher covers only
        the accepted prefix 1..n. So a job is sent only while the jobs sent beyond
        that prefix are fewer than ``credit_jobs``: one slow job then holds the
        others back here, instead of running the channel into a refusal.
        """
        while not self.retired and self.next_seq - 1 - self.prefix.count >= credit_jobs:
            if self._moved is None:
                self._moved = asyncio.Event()
            await self._moved.wait()

    def retire(self) -> None:
        """Use this channel no more (a job on it failed); wake whoever waits on it."""
        self.retired = True
        self._wake()

    def _wake(self) -> None:
        if self._moved is not None:
            self._moved.set()
            self._moved = None

    def accept(
        self,
        seq: int,
        receipt: Receipt,
        account: Account,
        market: Domain,
        royalty: tuple[bytes, int] | None = None,
    ) -> bool:
        """Record an accepted receipt (``royalty``: the part of its amount owed to a
        model's lineage); sign a new voucher if the covered prefix grew."""
        grew = self.prefix.add(
            seq,
            receipt,
            leaf=receipt.leaf(),
            units=receipt.units,
            amount=receipt.amount,
            royalty=royalty,
        )
        if royalty is not None and royalty[1]:
            self.royalty_of[seq] = royalty
        if grew:
            p = self.prefix.point()
            v = Voucher(self.terms.id, p.amount, p.jobs, p.units, p.root, p.royalties)
            self.voucher = (v, sign_voucher(account, market, v))
            self.voucher_delivered = False
            self._wake()
        return grew

    def voucher_model(self) -> VoucherModel | None:
        if self.voucher is None:
            return None
        return VoucherModel.of(*self.voucher)

    def terms_model(self) -> ChannelModel:
        return channel_model(self.terms)

    def terms_json(self) -> dict[str, Any]:
        return self.terms_model().model_dump()


def channel_model(t: ChannelTerms) -> ChannelModel:
    """A channel's terms as they travel."""
    return ChannelModel(
        client=t.client, provider=t.provider, deposit=t.deposit, expiry=t.expiry, salt=t.salt
    )


@dataclass(frozen=True)
class Bill:
    """What a job may be billed: exactly ``floor`` units, or (metered) up to ``max_units``."""

    floor: int
    max_units: int
    metered: bool

    def check(self, units: int, *, failed: bool) -> str | None:
        if failed:
            return None if 1 <= units <= self.max_units else f"{units} units for a failed job"
        if self.metered:
            if not self.floor <= units <= self.max_units:
                return f"{units} units, outside {self.floor}..{self.max_units}"
            return None
        return None if units == self.floor else f"{units} units, expected {self.floor}"


class ProviderSession:
    """Signed requests to one provider through a shared transport (in production the
    client's keep-alive :class:`~idlegrid.client._http.HttpPool`)."""

    def __init__(
        self,
        account: Account,
        candidate: Candidate,
        node: Domain,
        market: Domain,
        transport: Transport,
        *,
        timeout_s: float = 30.0,
        royalty_rates: Callable[[bytes], Awaitable[int]] | None = None,
    ) -> None:
        self.account = account
        self.candidate = candidate
        #: a model's royalty per unit (the RewardPool's); None: jobs pay no royalties
        self.royalty_rates = royalty_rates
        self.node = node
        self.market = market
        self.transport = transport
        self.timeout_s = timeout_s
        self.base = candidate.endpoint.rstrip("/")
        self._provider_raw = address_bytes(candidate.address)
        #: blobs this provider was seen to hold; forgotten when one of its jobs fails
        self._blobs: set[str] = set()
        #: the request size it refused with 413 (less than it advertises, say)
        self._max_request = candidate.limits.max_request_bytes

    @property
    def address(self) -> str:
        return self.candidate.address

    @property
    def limits(self) -> Limits:
        return self.candidate.limits

    # -- signed HTTP --------------------------------------------------------------------
    async def call(
        self,
        method: str,
        path: str,
        body: bytes,
        content_type: str = "application/json",
        *,
        timeout_s: float | None = None,
    ) -> tuple[int, bytes]:
        signed = sign_request(self.account, self.node, self.address, method, path, body)
        headers = {**signed.headers, "content-type": content_type}
        # a large body takes its time on the wire: a second per 10 MB on top of the timeout
        timeout = (timeout_s or self.timeout_s) + len(body) / 10e6
        try:
            resp = await self.transport.request(
                method, self.base + path, content=body, headers=headers, timeout=timeout
            )
        except TimeoutError as exc:
            raise ProviderFailed(f"{self.address} timed out on {path}") from exc
        except (OSError, ValueError) as exc:
            raise ProviderFailed(f"{self.address} unreachable: {type(exc).__name__}") from exc
        data = resp.content
        try:
            verify_response(
                self.node,
                self.address,
                self.account.address,
                signed.digest,
                resp.status_code,
                data,
                resp.headers,
            )
        except BadSignature as exc:
            status = resp.status_code
            if status < 400:
                raise ProviderFailed(
                    f"{self.address} sent an unsigned or forged response: {exc}"
                ) from exc
            # a node answers unsigned when it refuses a request before checking its
            # signature (too large, malformed, too slow): say what it said, trust nothing
            reason = self.reason(data)
            if status == 413:
                raise self._too_large(reason, len(body)) from exc
            raise ProviderFailed(
                f"{self.address} refused the request ({_http(status)}, unsigned): {reason}"
            ) from exc
        if resp.status_code == 413:
            raise self._too_large(self.reason(data), len(body))
        return resp.status_code, data

    def _too_large(self, reason: str, sent: int) -> _TooLarge:
        match = _BYTES.search(reason)
        limit = int(match.group(1)) if match else None
        if limit is not None and limit < sent:
            self._max_request = min(self._max_request, limit)
        else:
            self._max_request = min(self._max_request, max(1, sent - 1))
        shown = f" (its limit: {limit} bytes)" if limit is not None else ""
        return _TooLarge(f"{self.address}: payload too large, {sent} bytes{shown}: {reason}", limit)

    @staticmethod
    def reason(data: bytes) -> str:
        try:
            err = json.loads(data)
            return f"{err.get('error')}: {err.get('reason')}"
        except (ValueError, AttributeError):
            return data[:200].decode(errors="replace")

    # -- blobs ----------------------------------------------------------------------------
    async def has_blob(self, digest: str) -> bool:
        try:
            resp = await self.transport.request(
                "HEAD", f"{self.base}/v1/blobs/{digest}", timeout=self.timeout_s
            )
        except (OSError, ValueError) as exc:
            raise ProviderFailed(f"{self.address} unreachable: {type(exc).__name__}") from exc
        return resp.status_code == 200

    async def put_blob(self, data: bytes, *, digest: str | None = None) -> str:
        """Upload ``data`` unless the provider holds it already; its sha256 hex digest."""
        digest = digest or hashlib.sha256(data).hexdigest()
        if digest in self._blobs or await self.has_blob(digest):
            self._blobs.add(digest)
            return digest
        if len(data) > min(self._max_request, self.limits.max_blob_bytes):
            raise _TooLarge(f"{self.address}: a blob of {len(data)} bytes is over its limit", None)
        status, body = await self.call(
            "PUT", f"/v1/blobs/{digest}", data, "application/octet-stream"
        )
        if status != 201:
            raise ProviderFailed(f"{self.address} refused blob upload: {self.reason(body)}")
        self._blobs.add(digest)
        return digest

    async def put_model(self, data: bytes, digest: str) -> None:
        """Upload a model; a provider whose limits it passes is refused for this batch."""
        try:
            await self.put_blob(data, digest=digest)
        except _TooLarge as exc:
            raise ProviderRefused(str(exc)) from exc

    async def get_blob(self, digest: str) -> bytes:
        status, body = await self.call("GET", f"/v1/blobs/{digest}", b"")
        if status != 200:
            raise ProviderFailed(f"{self.address}: {self.reason(body)}")
        if hashlib.sha256(body).hexdigest() != digest:
            raise ProviderFailed(f"{self.address} served a blob whose hash does not match")
        return body

    # -- jobs -----------------------------------------------------------------------------
    def rows_per_job(self, in_row_bytes: int, out_row_bytes: int) -> int:
        """The most rows one job may carry within this provider's limits."""
        limits = self.limits
        cap_in = min(self._room(), limits.max_blob_bytes) - NPY_HEADER
        cap_out = min(limits.max_output_bytes, limits.max_blob_bytes) - NPY_HEADER
        return max(1, min(cap_in // max(1, in_row_bytes), cap_out // max(1, out_row_bytes)))

    def _room(self) -> int:
        """Bytes of a request left for the input array."""
        return max(self._max_request // 2, self._max_request - REQUEST_OVERHEAD)

    def inline_room(self) -> int:
        """Bytes an input may have to travel inside a job request (else it is a blob)."""
        return min(INLINE_INPUT_BYTES, self._room() * 3 // 4)

    async def put_shared(self, data: bytes, digest: str) -> None:
        """Upload what every job of a batch names (a model): ``put_model``."""
        await self.put_model(data, digest)

    async def run(self, reserve: Reserve, plan: Plan[Any], part: Any) -> np.ndarray:
        """Run one part of a batch as one job or, past this provider's limits, as several
        (split by its workload); return the output once every check passed."""
        workload = plan.workload
        n = workload.rows(part)
        per = plan.per_job or self.rows_per_job(plan.in_row_bytes, plan.out_row_bytes)
        parts: list[np.ndarray] = []
        held: tuple[ClientChannel, int] | None = None
        start = 0
        try:
            while start < n:
                piece = part[start : start + per]  # a kind's inputs slice by rows
                rows = workload.rows(piece)
                floor = plan.units(piece)
                most = max(floor, plan.max_units(piece, self.limits))
                bill = Bill(floor, most, plan.metered is not None)
                try:
                    fields = await self._fields(plan, piece, held)
                    out = await self.job(
                        reserve, workload.name, fields, bill, plan.expect, rows, held
                    )
                except _TooLarge as exc:
                    held = exc.held
                    if rows == 1:
                        raise ProviderRefused(f"{exc} (one row is too large for it)") from exc
                    fit = self.rows_per_job(plan.in_row_bytes, plan.out_row_bytes)
                    per = max(1, min(rows // 2, fit))
                    continue
                parts.append(out)
                held = None
                start += rows
        except BaseException:
            if held is not None:  # a sequence number that will never be delivered
                held[0].retire()
            raise
        return workload.join(parts)

    async def _fields(
        self, plan: Plan[Any], piece: Any, held: tuple[ClientChannel, int] | None
    ) -> dict[str, Any]:
        try:
            return await plan.fields(piece, self)
        except _TooLarge as exc:  # an input blob over its limit
            exc.held = held
            raise

    async def job(
        self,
        reserve: Reserve,
        kind: str,
        work: dict[str, Any],
        bill: Bill,
        expect: OutputSpec,
        out_rows: int,
        held: tuple[ClientChannel, int] | None = None,
    ) -> np.ndarray:
        price = self.candidate.unit_price
        model = get_workload(kind).royalty_model_of(work)
        rate = await self.royalty_rates(model) if model and self.royalty_rates else 0
        reserved = bill.max_units * (price + rate)
        channel = await reserve(reserved)
        if held is not None and held[0] is not channel:
            held[0].retire()  # the held number's channel was replaced meanwhile
            held = None
        if held is None:
            await channel.window(self.candidate.credit_jobs)
            if channel.retired:  # a job on it failed while this one waited for credit
                channel.committed -= reserved
                raise ProviderFailed(f"{self.address}: the channel was given up after a failed job")
            seq = channel.take_seq()
        else:
            seq = held[1]
        job_id = os.urandom(32)
        voucher = channel.voucher_model()
        request = JobRequest.model_validate(
            {
                "job_id": "0x" + job_id.hex(),
                "kind": kind,
                **work,
                "channel": channel.terms_model(),
                "seq": seq,
                "unit_price": price,
                "max_units": bill.max_units,
                "voucher": voucher,
                "royalty_rate": rate or None,
            }
        )
        body = request.model_dump_json(exclude_none=True).encode()
        digests = get_workload(kind).digests(request.spec_fields())
        # ``reserved`` is in channel.committed until the bill is known; a failure releases it
        try:
            status, data = await self._send_job(body)
        except _TooLarge as exc:
            channel.committed -= reserved  # nothing recorded for seq: send less under it
            exc.held = (channel, seq)
            raise
        except ProviderFailed:
            channel.committed -= reserved
            channel.retire()
            self._blobs.clear()
            raise
        if voucher is not None and status in (200, 402, 422):
            channel.voucher_delivered = True
        if status not in (200, 422):
            channel.committed -= reserved
            channel.retire()
            self._blobs.clear()  # a 404 may mean the provider lost the model
            reason = self.reason(data)
            if status == 400:
                raise ProviderRefused(f"{self.address} refused the job: {reason}")
            raise ProviderFailed(f"{self.address} failed the job ({_http(status)}): {reason}")
        try:
            result = JobResult.model_validate_json(data)
            if status == 200:
                output, receipt, raw = await self.check_ok(
                    result, job_id, seq, channel, bill, digests, rate
                )
                wrong = expect.check(output, out_rows)
                if wrong is not None:
                    raise PeerError(wrong)
            else:
                receipt, error = self._check_failed(result, job_id, seq, channel, bill, digests)
        except (IdlegridError, ValueError) as exc:
            channel.committed -= reserved
            channel.retire()
            raise ProviderFailed(
                f"{self.address} sent a result that does not check out: {exc}"
            ) from exc
        channel.committed -= reserved - receipt.amount
        owed = (model, receipt.units * rate) if model and rate and status == 200 else None
        channel.accept(seq, receipt, self.account, self.market, owed)
        if status == 200:
            # evidence, if verifying
            record_receipt(request, receipt, result.receipt_signature, raw)
            return output
        if error.startswith(("JobTimeout", "JobCrashed")):
            raise JobTimedOut(f"{self.address} ran the job past its limits and billed it: {error}")
        raise ModelRejected(f"the job failed on the model (on {self.address}, billed): {error}")

    async def _send_job(self, body: bytes) -> tuple[int, bytes]:
        """POST a job; while the provider answers 429 (this client has too many jobs
        there; nothing is recorded), wait a little and send it again."""
        for attempt in range(BUSY_RETRIES + 1):
            # a job may run for the provider's whole time limit: wait for that at least
            wait = max(self.timeout_s, self.limits.job_timeout_s + 5.0)
            status, data = await self.call("POST", "/v1/jobs", body, timeout_s=wait)
            if status != 429:
                return status, data
            await asyncio.sleep(min(1.0, 0.02 * 2**attempt))
        raise ProviderFailed(f"{self.address} stayed busy: {self.reason(data)}")

    def _receipt(
        self,
        r: JobResult,
        job_id: bytes,
        seq: int,
        channel: ClientChannel,
        result_hash: bytes,
        digests: tuple[bytes, bytes],
        royalty_rate: int = 0,
    ) -> Receipt:
        if r.job_id != "0x" + job_id.hex() or r.seq != seq:
            raise PeerError("result is for another job")
        if "0x" + result_hash.hex() != r.result_hash:
            raise PeerError("result hash does not match the output")
        spec_hash, input_hash = digests
        if r.spec_hash != "0x" + spec_hash.hex() or r.input_hash != "0x" + input_hash.hex():
            raise PeerError("the receipt names another spec or other inputs than the job's")
        if r.amount != r.units * (self.candidate.unit_price + royalty_rate):
            raise PeerError(
                f"amount {r.amount} is not {r.units} units at the agreed price"
                + (f" and royalty ({royalty_rate} per unit)" if royalty_rate else "")
            )
        receipt = Receipt(
            channel.terms.id, job_id, self.address, spec_hash, input_hash, result_hash, r.units,
            r.amount,
        )  # fmt: skip
        signature = bytes.fromhex(r.receipt_signature[2:])
        if (
            recover_digest(receipt_digest(self.node, receipt.leaf()), signature)
            != self._provider_raw
        ):
            raise PeerError("receipt not signed by the provider")
        return receipt

    async def check_ok(
        self,
        r: JobResult,
        job_id: bytes,
        seq: int,
        channel: ClientChannel,
        bill: Bill,
        digests: tuple[bytes, bytes],
        royalty_rate: int = 0,
    ) -> tuple[np.ndarray, Receipt, bytes]:
        """The output, the receipt and the output's ``.npy`` bytes (their sha256 is the
        receipt's result hash) of a result, once everything in it checks out."""
        if r.status != "ok":
            raise PeerError("HTTP 200 for a failed job")
        wrong = bill.check(r.units, failed=False)
        if wrong is not None:
            raise PeerError(f"bill of {wrong}")
        inline = r.output_npy
        blob = r.output_blob
        if (inline is None) == (blob is None):
            raise PeerError("a result needs exactly one of output_npy and output_blob")
        cap = self.limits.max_output_bytes + NPY_HEADER
        if inline is not None:
            if len(inline) > cap * 4 // 3 + 4:
                raise PeerError(f"inline output larger than {cap} bytes")
            try:
                raw = base64.b64decode(inline, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise PeerError("output is not valid base64") from exc
        else:
            assert blob is not None
            if "0x" + blob != r.result_hash:
                raise PeerError("output blob is not the result hash")
            raw = await self.get_blob(blob)
        if len(raw) > cap:
            raise PeerError(f"output of {len(raw)} bytes is over {cap}")
        receipt = self._receipt(
            r, job_id, seq, channel, hashlib.sha256(raw).digest(), digests, royalty_rate
        )
        try:
            output = array_from_npy(raw, max_bytes=cap)
        except InvalidInput as exc:
            raise PeerError(f"output: {exc}") from exc
        if output.dtype.kind in "fc" and not np.all(np.isfinite(output)):
            raise PeerError("output holds NaN or infinite values")
        return output, receipt, raw

    def _check_failed(
        self,
        r: JobResult,
        job_id: bytes,
        seq: int,
        channel: ClientChannel,
        bill: Bill,
        digests: tuple[bytes, bytes],
    ) -> tuple[Receipt, str]:
        """The receipt of a billed failure, and its error, once it checks out."""
        error = r.error
        if r.status != "failed" or not error:
            raise PeerError("HTTP 422 without a failed result")
        if r.output_npy is not None or r.output_blob is not None:
            raise PeerError("a failed result carries an output")
        wrong = bill.check(r.units, failed=True)
        if wrong is not None:
            raise PeerError(f"bill of {wrong}")
        digest = hashlib.sha256(error.encode()).digest()
        return self._receipt(r, job_id, seq, channel, digest, digests), error[:500]

    async def accept_segment(
        self,
        channel: ClientChannel,
        result: JobResult,
        units: int,
        expect: OutputSpec,
        rows: int,
        digests: tuple[bytes, bytes],
    ) -> tuple[np.ndarray, Receipt]:
        """Check a segment's result that the node sent on its own (a node-driven run's
        progress event) exactly as a job's result is checked, and book it under the
        channel's next sequence number; the caller then sends the voucher. ``digests``:
        the spec and input hashes of the segment the client expects (its receipt must
        name them)."""
        seq = channel.next_seq
        if result.seq != seq:
            raise PeerError(f"segment result for seq {result.seq}, expected {seq}")
        job_id = bytes.fromhex(result.job_id[2:])
        bill = Bill(units, units, False)
        output, receipt, _ = await self.check_ok(result, job_id, seq, channel, bill, digests)
        wrong = expect.check(output, rows)
        if wrong is not None:
            raise PeerError(wrong)
        channel.take_seq()
        channel.accept(seq, receipt, self.account, self.market)
        channel.committed += receipt.amount  # spent, as a job's bill is
        return output, receipt

    # -- server-sent events ----------------------------------------------------------------
    async def events(self, path: str, *, idle_s: float) -> AsyncIterator[tuple[str, Any]]:
        """A signed GET of server-sent events: ``(event, data)`` as they come, each
        within ``idle_s`` seconds (the node sends keep-alives more often)."""
        signed = sign_request(self.account, self.node, self.address, "GET", path, b"")
        headers = {**signed.headers, "accept": "text/event-stream"}
        try:
            stream = await self.transport.stream(
                "GET", self.base + path, headers=headers, timeout=self.timeout_s,
                idle_timeout=idle_s,
            )  # fmt: skip
        except TimeoutError as exc:
            raise ProviderFailed(f"{self.address} timed out on {path}") from exc
        except (OSError, ValueError) as exc:
            raise ProviderFailed(f"{self.address} unreachable: {type(exc).__name__}") from exc
        try:
            parser = EventParser()
            if stream.status_code != 200:
                body = b""
                async for chunk in stream.chunks:
                    body += chunk
                    if len(body) > 4096:
                        break
                raise ProviderFailed(
                    f"{self.address} answered {_http(stream.status_code)}: {self.reason(body)}"
                )
            async for chunk in stream.chunks:
                for event in parser.feed(chunk):
                    yield event
        except TimeoutError as exc:
            raise ProviderFailed(f"{self.address}: nothing on {path} for {idle_s:g} s") from exc
        except OSError as exc:
            raise ProviderFailed(f"{self.address}: {path} broke: {type(exc).__name__}") from exc
        finally:
            await stream.aclose()

    # -- vouchers and closing --------------------------------------------------------------
    async def send_voucher(self, channel: ClientChannel) -> None:
        """Hand over the latest voucher if the provider has not seen it."""
        voucher = channel.voucher_model()
        if voucher is None or channel.voucher_delivered:
            return
        body = VoucherSubmission(channel=channel.terms_model(), voucher=voucher)
        status, data = await self.call("POST", "/v1/vouchers", body.model_dump_json().encode())
        if status != 200:
            raise ProviderFailed(f"{self.address} refused a voucher: {self.reason(data)}")
        channel.voucher_delivered = True

    async def close_channel(self, terms: ChannelTerms, voucher: VoucherModel | None) -> None:
        """Ask the provider to redeem its latest voucher and close the channel now, so
        that the rest of the deposit goes back to the client (the provider's early close)."""
        body = ChannelClose(channel=channel_model(terms), voucher=voucher).model_dump_json()
        status, data = await self.call("POST", "/v1/channels/close", body.encode())
        if status != 200:
            raise ProviderFailed(f"{self.address} did not close the channel: {self.reason(data)}")
