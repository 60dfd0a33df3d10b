"""A transport that plays a provider, honest by default, with knobs to lie.

It holds a provider key and answers the client's signed requests the way a node
would, built with the real protocol functions (``sign_response``,
``receipt_digest``, ``sign_digest``), without sockets or a chain. Each knob
makes one thing in the answer wrong, so a test can check that the client
refuses to pay for it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from idlegrid.chain import ChannelTerms
from idlegrid.client import Response, Stream, Transport
from idlegrid.protocol import (
    Account,
    Domain,
    JobRequest,
    Receipt,
    ReplayGuard,
    VoucherSubmission,
    array_from_npy,
    receipt_digest,
    sign_digest,
    sign_response,
    verify_request,
)
from idlegrid.workloads import get_workload

Output = Callable[[np.ndarray], np.ndarray]


def three_columns(rows: np.ndarray) -> np.ndarray:
    """An honest output for the test model ``float32[N, 3]``: the row sums, thrice."""
    total = rows.reshape(rows.shape[0], -1).sum(axis=1, dtype=np.float32)
    return np.repeat(total[:, None], 3, axis=1)


@dataclass
class Lies:
    """What the provider gets wrong in its next answers (all off: an honest provider)."""

    #: added to the units it bills
    units: int = 0
    #: added to the amount it bills (units times the price, when honest)
    amount: int = 0
    #: the output it computes from the input rows
    output: Output = three_columns
    #: sign the receipt with this key instead of the provider's
    receipt_key: Account | None = None
    #: leave the receipt signature out of the result
    no_receipt_signature: bool = False
    #: claim (and sign) the hash of other bytes than the output it sends
    wrong_result_hash: bool = False
    #: answer with this status and an error body instead of running the job
    status: int | None = None
    #: answer unsigned ("none") or signed by another key ("forged")
    response_signature: str = "good"
    #: fail the job in the worker with this error ("JobTimeout: ...") and bill ``fail_units``
    fail: str | None = None
    fail_units: int = 1
    #: send part of the answer and stall: the transport raises TimeoutError
    stall: bool = False
    #: name (and sign) these spec and input hashes instead of the job's
    digests: tuple[bytes, bytes] | None = None
    #: a stream's status (a run's events): 200 unless set
    stream_status: int = 200


@dataclass
class FakeProvider(Transport):
    """A provider behind a transport: ``lies`` say what it gets wrong."""

    account: Account
    domain: Domain
    price: int
    flops_per_row: int
    lies: Lies = field(default_factory=Lies)
    #: the jobs it was sent (parsed as the node parses them) and their bodies, and the vouchers
    jobs: list[JobRequest] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    vouchers: list[VoucherSubmission] = field(default_factory=list)
    closed: bool = False
    #: what a stream's body sends, chunk by chunk (a run's server-sent events); a
    #: ``TimeoutError`` in the list is raised there (the node went quiet)
    stream_chunks: list[bytes | TimeoutError] = field(default_factory=list)
    _replay: ReplayGuard = field(default_factory=ReplayGuard)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        timeout: float,
    ) -> Response:
        if self.closed:
            raise ConnectionError("the transport is closed")
        path = urlsplit(url).path
        if method == "HEAD" and path.startswith("/v1/blobs/"):
            return Response(200, {}, b"")  # it holds every blob
        sender, digest = verify_request(
            self.domain, self.account.address, method, path, content, headers or {},
            replay=self._replay,
        )  # fmt: skip
        status, body = self._answer(path, content)
        if self.lies.stall:
            raise TimeoutError(f"{method} {url}: no answer within {timeout:g} s")
        return Response(status, self._sign(sender, digest, status, body), body)

    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float,
        idle_timeout: float,
    ) -> Stream:
        path = urlsplit(url).path
        verify_request(
            self.domain, self.account.address, method, path, b"", headers or {},
            replay=self._replay,
        )  # fmt: skip
        chunks = list(self.stream_chunks)

        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                if isinstance(chunk, TimeoutError):
                    raise chunk
                yield chunk

        async def aclose() -> None:
            return None

        status = self.lies.stream_status
        return Stream(status, {"content-type": "text/event-stream"}, body(), aclose)

    def segment_result(
        self,
        terms_id: bytes,
        seq: int,
        output: np.ndarray,
        units: int,
        digests: tuple[bytes, bytes],
    ) -> dict[str, Any]:
        """A segment's signed result as a node-driven run sends it (the lies apply)."""
        raw = _npy(output)
        job_id = "0x" + os.urandom(32).hex()
        units += self.lies.units
        inline = base64.b64encode(raw).decode()
        body = self._signed(terms_id, job_id, seq, "ok", units, raw, inline, digests)
        return dict(json.loads(body), rows=1)

    async def aclose(self) -> None:
        self.closed = True

    # -- what a node would answer ---------------------------------------------------------
    def _answer(self, path: str, content: bytes) -> tuple[int, bytes]:
        lies = self.lies
        if path == "/v1/vouchers":
            self.vouchers.append(VoucherSubmission.model_validate_json(content))
            return 200, b'{"ok": true}'
        if path != "/v1/jobs":
            return 404, _error("NotFound", path)
        job = JobRequest.model_validate_json(content)
        self.jobs.append(job)
        self.bodies.append(json.loads(content))
        if lies.status is not None:
            return lies.status, _error("InvalidInput", "the fake provider says no")
        rows = array_from_npy(self.bodies[-1]["input_npy"])
        if lies.fail is not None:
            error = lies.fail.encode()
            return 422, self._result(job, rows, "failed", lies.fail_units, error, None)
        raw = _npy(lies.output(rows))
        units = self.flops_per_row * rows.shape[0] + lies.units
        return 200, self._result(job, rows, "ok", units, raw, base64.b64encode(raw).decode())

    def _result(
        self,
        job: JobRequest,
        rows: np.ndarray,
        status: str,
        units: int,
        hashed: bytes,
        output_npy: str | None,
    ) -> bytes:
        digests = get_workload(job.kind).digests(job.spec_fields())
        body = self._signed(
            _channel_id(job), job.job_id, job.seq, status, units, hashed, output_npy, digests
        )
        return json.dumps(dict(json.loads(body), rows=rows.shape[0])).encode()

    def _signed(
        self,
        channel_id: bytes,
        job_id: str,
        seq: int,
        status: str,
        units: int,
        hashed: bytes,
        output_npy: str | None,
        digests: tuple[bytes, bytes],
    ) -> bytes:
        lies = self.lies
        spec_hash, input_hash = lies.digests or digests
        amount = units * self.price + lies.amount
        result_hash = hashlib.sha256(hashed + (b"!" if lies.wrong_result_hash else b"")).digest()
        receipt = Receipt(
            channel_id, bytes.fromhex(job_id[2:]), self.account.address, spec_hash, input_hash,
            result_hash, units, amount,
        )  # fmt: skip
        signer = lies.receipt_key or self.account
        signature = sign_digest(signer.key, receipt_digest(self.domain, receipt.leaf()))
        result: dict[str, Any] = {
            "job_id": job_id,
            "seq": seq,
            "status": status,
            "units": units,
            "amount": amount,
            "result_hash": "0x" + result_hash.hex(),
            "spec_hash": "0x" + spec_hash.hex(),
            "input_hash": "0x" + input_hash.hex(),
            "receipt_signature": "0x" + signature.hex(),
            "flops_per_row": self.flops_per_row,
        }
        if status == "ok":
            result["output_npy"] = output_npy
        else:
            result["error"] = hashed.decode()
        if lies.no_receipt_signature:
            del result["receipt_signature"]
        return json.dumps(result).encode()

    def _sign(self, client: str, request: bytes, status: int, body: bytes) -> dict[str, str]:
        how = self.lies.response_signature
        if how == "none":
            return {"content-type": "application/json"}
        signer = self.account if how == "good" else Account.create()
        return {
            "content-type": "application/json",
            **sign_response(signer, self.domain, client, request, status, body),
        }


def _npy(array: np.ndarray) -> bytes:
    """``.npy`` bytes of ``array`` as it is (``npy_bytes`` would make a 0-d array 1-d)."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _error(name: str, reason: str) -> bytes:
    return json.dumps({"error": name, "reason": reason}).encode()


def _channel_id(job: JobRequest) -> bytes:
    c = job.channel
    return ChannelTerms(c.client, c.provider, c.deposit, c.expiry, c.salt).id
