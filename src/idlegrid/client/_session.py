"""One client's conversation with one provider: signed HTTP, channel, receipts, vouchers.

Everything a provider sends back is checked before it is paid for: the
response signature, the receipt signature, the result hash, the bill (units
recomputed from the model, times the agreed price) and the output's shape.
Only then is the result accepted and a new cumulative voucher signed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._exceptions import (
    BadSignature,
    IdlegridError,
    InvalidInput,
    PeerError,
    UnavailableError,
)
from ..chain import ChannelTerms
from ..protocol import (
    Account,
    Domain,
    JobResult,
    MerkleAccumulator,
    Receipt,
    Signature,
    Voucher,
    VoucherModel,
    address_bytes,
    array_from_npy,
    npy_bytes,
    receipt_digest,
    recover_digest,
    sign_request,
    sign_voucher,
    verify_response,
)
from ._http import HttpPool
from ._selection import Candidate

__all__ = ["ClientChannel", "JobRejected", "ProviderFailed", "ProviderSession"]


class ProviderFailed(UnavailableError):
    """A provider died, timed out, or sent something that does not check out; try another."""


class JobRejected(InvalidInput):
    """A provider refused the job for a reason that another provider would share (bad input)."""


@dataclass
class ClientChannel:
    """The client's side of one channel: receipts accepted and the voucher that covers them."""

    terms: ChannelTerms
    deposit: int = 0  # including top-ups, as far as we know
    expiry: int = 0
    next_seq: int = 1
    committed: int = 0  # amount of jobs accepted or in flight
    accepted: dict[int, Receipt] = field(default_factory=dict)
    acc: MerkleAccumulator = field(default_factory=MerkleAccumulator)
    amount: int = 0
    units: int = 0
    voucher: tuple[Voucher, Signature] | None = None
    voucher_delivered: bool = True
    retired: bool = False
    #: set (and replaced) whenever the accepted prefix grows or the channel retires
    _moved: asyncio.Event | None = field(default=None, repr=False)

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
        while not self.retired and self.next_seq - 1 - self.acc.count >= credit_jobs:
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

    def accept(self, seq: int, receipt: Receipt, account: Account, market: Domain) -> bool:
        """Record an accepted receipt; sign a new voucher if the covered prefix grew."""
        self.accepted[seq] = receipt
        grew = False
        while (nxt := self.acc.count + 1) in self.accepted:
            r = self.accepted[nxt]
            self.acc.append(r.leaf())
            self.amount += r.amount
            self.units += r.units
            grew = True
        if grew:
            v = Voucher(self.terms.id, self.amount, self.acc.count, self.units, self.acc.root())
            self.voucher = (v, sign_voucher(account, market, v))
            self.voucher_delivered = False
            self._wake()
        return grew

    def voucher_model(self) -> VoucherModel | None:
        if self.voucher is None:
            return None
        return VoucherModel.of(*self.voucher)

    def terms_json(self) -> dict[str, Any]:
        t = self.terms
        return {
            "client": t.client,
            "provider": t.provider,
            "deposit": t.deposit,
            "expiry": t.expiry,
            "salt": t.salt,
        }


class ProviderSession:
    """Signed requests to one provider over a shared HTTP connection pool."""

    def __init__(
        self,
        account: Account,
        candidate: Candidate,
        node: Domain,
        market: Domain,
        http: HttpPool,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self.account = account
        self.candidate = candidate
        self.node = node
        self.market = market
        self.http = http
        self.timeout_s = timeout_s
        self.base = candidate.endpoint.rstrip("/")
        self._provider_raw = address_bytes(candidate.address)
        #: blobs this provider was seen to hold; forgotten when one of its jobs fails
        self._blobs: set[str] = set()

    @property
    def address(self) -> str:
        return self.candidate.address

    async def _call(
        self, method: str, path: str, body: bytes, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        signed = sign_request(self.account, self.node, self.address, method, path, body)
        headers = {**signed.headers, "content-type": content_type}
        try:
            resp = await self.http.request(
                method, self.base + path, content=body, headers=headers, timeout=self.timeout_s
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
            raise ProviderFailed(
                f"{self.address} sent an unsigned or forged response: {exc}"
            ) from exc
        return resp.status_code, data

    @staticmethod
    def _reason(data: bytes) -> str:
        try:
            err = json.loads(data)
            return f"{err.get('error')}: {err.get('reason')}"
        except (ValueError, AttributeError):
            return data[:200].decode(errors="replace")

    async def has_blob(self, digest: str) -> bool:
        try:
            resp = await self.http.request(
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
        status, body = await self._call(
            "PUT", f"/v1/blobs/{digest}", data, "application/octet-stream"
        )
        if status != 201:
            raise ProviderFailed(f"{self.address} refused blob upload: {self._reason(body)}")
        self._blobs.add(digest)
        return digest

    async def get_blob(self, digest: str) -> bytes:
        status, body = await self._call("GET", f"/v1/blobs/{digest}", b"")
        if status != 200:
            raise ProviderFailed(f"{self.address}: {self._reason(body)}")
        if hashlib.sha256(body).hexdigest() != digest:
            raise ProviderFailed(f"{self.address} served a blob whose hash does not match")
        return body

    async def run_onnx(
        self,
        channel: ClientChannel,
        model: str,
        inputs: np.ndarray,
        *,
        flops_per_row: int,
        out_rows: int,
    ) -> np.ndarray:
        """Run one ONNX shard; return its output after every check passed."""
        units = flops_per_row * inputs.shape[0]
        work = {"model": model, "input_npy": base64.b64encode(npy_bytes(inputs)).decode()}
        return await self._job(channel, "onnx", work, units, out_rows)

    async def run_embed(
        self, channel: ClientChannel, texts: list[str], *, units: int
    ) -> np.ndarray:
        """Embed one shard of texts; ``units`` is what the client computed for them."""
        return await self._job(channel, "embed", {"texts": texts}, units, len(texts))

    async def _job(
        self, channel: ClientChannel, kind: str, work: dict[str, Any], units: int, out_rows: int
    ) -> np.ndarray:
        amount = units * self.candidate.unit_price
        await channel.window(self.candidate.credit_jobs)
        if channel.retired:  # a job on it failed while this one waited for credit
            channel.committed -= amount
            raise ProviderFailed(f"{self.address}: the channel was given up after a failed job")
        seq = channel.take_seq()
        job_id = os.urandom(32)
        voucher = channel.voucher_model()
        request = {
            "job_id": "0x" + job_id.hex(),
            "kind": kind,
            **work,
            "channel": channel.terms_json(),
            "seq": seq,
            "unit_price": self.candidate.unit_price,
            "max_units": units,
            "voucher": voucher.model_dump() if voucher is not None else None,
        }
        # the caller reserved ``amount`` in channel.committed; a failure releases it
        try:
            status, data = await self._call("POST", "/v1/jobs", json.dumps(request).encode())
        except ProviderFailed:
            channel.committed -= amount
            channel.retire()
            self._blobs.clear()
            raise
        if voucher is not None and status in (200, 402):
            channel.voucher_delivered = True
        if status != 200:
            channel.committed -= amount
            channel.retire()
            self._blobs.clear()  # a 404 may mean the provider lost the model
            reason = self._reason(data)
            if status == 400 and not reason.startswith("PaymentRequired"):
                raise JobRejected(f"{self.address} rejected the job: {reason}")
            raise ProviderFailed(f"{self.address} failed the job (HTTP {status}): {reason}")
        try:
            result = JobResult.model_validate_json(data)
            output, receipt = self._check(result, job_id, seq, channel, units, amount)
        except (IdlegridError, ValueError) as exc:
            channel.committed -= amount
            channel.retire()
            raise ProviderFailed(
                f"{self.address} sent a result that does not check out: {exc}"
            ) from exc
        if output.shape[0] != out_rows:
            channel.committed -= amount
            channel.retire()
            raise ProviderFailed(
                f"{self.address} returned {output.shape[0]} rows for {out_rows} inputs"
            )
        channel.accept(seq, receipt, self.account, self.market)
        return output

    def _check(
        self, r: JobResult, job_id: bytes, seq: int, channel: ClientChannel, units: int, amount: int
    ) -> tuple[np.ndarray, Receipt]:
        """The output and the receipt of a result, once everything in it checks out."""
        if r.job_id != "0x" + job_id.hex() or r.seq != seq:
            raise PeerError("result is for another job")
        if r.units != units or r.amount != amount:
            raise PeerError(f"bill of {r.units} units / {r.amount} differs from {units} / {amount}")
        raw = base64.b64decode(r.output_npy)
        result_hash = hashlib.sha256(raw).digest()
        if "0x" + result_hash.hex() != r.result_hash:
            raise PeerError("result hash does not match the output")
        receipt = Receipt(channel.terms.id, job_id, self.address, units, amount, result_hash)
        signature = bytes.fromhex(r.receipt_signature[2:])
        if (
            recover_digest(receipt_digest(self.node, receipt.leaf()), signature)
            != self._provider_raw
        ):
            raise PeerError("receipt not signed by the provider")
        output = array_from_npy(raw)
        if output.dtype.kind == "f" and not np.all(np.isfinite(output)):
            raise PeerError("output holds NaN or infinite values")
        return output, receipt

    async def send_voucher(self, channel: ClientChannel) -> None:
        """Hand over the latest voucher if the provider has not seen it."""
        voucher = channel.voucher_model()
        if voucher is None or channel.voucher_delivered:
            return
        body = json.dumps({"channel": channel.terms_json(), "voucher": voucher.model_dump()})
        status, data = await self._call("POST", "/v1/vouchers", body.encode())
        if status != 200:
            raise ProviderFailed(f"{self.address} refused a voucher: {self._reason(data)}")
        channel.voucher_delivered = True
