"""The client against providers that lie, refuse or fail, and models that are wrong.

One devnet of this module's own: one honest provider node process, and a lying
provider (:class:`Liar`, an HTTP server in this process that signs its answers
with a registered provider's key) whose behaviour each test sets. The client must
never pay for what it should refuse, must blame the right party, must fail fast
on a model that is wrong for the job, must size its jobs to each provider's
limits, and must give back every deposit it no longer needs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import pytest
import uvicorn
from onnx import TensorProto, helper
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from idlegrid.chain import TOKEN, free_port
from idlegrid.client import Client, ModelRejected
from idlegrid.protocol import (
    Account,
    JobRequest,
    NodeInfo,
    Receipt,
    ReplayGuard,
    array_from_npy,
    receipt_digest,
    sign_response,
    verify_request,
)
from idlegrid.protocol._fastsig import sign_digest
from idlegrid.workloads import CPU, OnnxRunner, count_flops, get_workload

from .conftest import DEMO_CLIENT, FUZZ_CLIENT, STRANGER, Digits, Network, start_network

LIAR = 2  # a funded dev account that is no node's: the lying provider registers with it
PRICE = 10**12


def _json(data: Any, status: int = 200) -> tuple[int, bytes]:
    return status, json.dumps(data).encode()


@dataclass
class Liar:
    """A provider that signs whatever it answers. ``mode``: ``honest``, ``int8`` (int8
    zeros for the output), ``scalar`` (a 0-d output), ``refuse`` (a signed 400), or
    ``down`` (its /v1/info fails, so nobody finds it). With ``max_body`` it answers
    bodies larger than that with an unsigned 413, as a node does."""

    net: Network
    account: Account
    port: int
    mode: str = "down"
    max_body: int | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)
    too_large: int = 0
    served: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> Starlette:
        replay = ReplayGuard()

        async def signed(request: Request, handle: Any) -> Response:
            body = await request.body()
            if self.max_body is not None and len(body) > self.max_body:
                self.too_large += 1
                err = {"error": "PayloadTooLarge", "reason": f"request body larger than "
                       f"{self.max_body} bytes"}  # fmt: skip
                return Response(json.dumps(err), status_code=413)
            sender, digest = verify_request(
                self.net.domain,
                self.account.address,
                request.method,
                request.url.path,
                body,
                request.headers,
                replay=replay,
            )
            status, out = handle(sender, request, body)
            headers = sign_response(self.account, self.net.domain, sender, digest, status, out)
            return Response(out, status_code=status, headers=headers)

        async def info(request: Request) -> Response:
            if self.mode == "down":
                return Response(status_code=503)
            info = NodeInfo(
                address=self.account.address,
                chain_id=self.net.info.chain_id,
                market=self.net.ledger.market.address,
                unit_price=PRICE,
                workloads=["onnx"],
                hardware={},
                capabilities_hash="0x" + "00" * 32,
                limits={"credit_jobs": 64},
                version="liar",
            )
            return Response(info.model_dump_json())

        async def health(request: Request) -> Response:
            return Response(json.dumps({"ok": True}))

        async def blob(request: Request) -> Response:
            digest = request.path_params["digest"]
            if request.method == "HEAD":
                return Response(status_code=200 if digest in self.blobs else 404)

            def handle(sender: str, request: Request, body: bytes) -> tuple[int, bytes]:
                if request.method == "PUT":
                    self.blobs[hashlib.sha256(body).hexdigest()] = body
                    return _json({"digest": digest, "size": len(body)}, 201)
                return 200, self.blobs[digest]

            return await signed(request, handle)

        async def job(request: Request) -> Response:
            return await signed(request, self._job)

        async def voucher(request: Request) -> Response:
            return await signed(request, lambda *_: _json({"accepted": True}))

        async def close(request: Request) -> Response:
            def handle(sender: str, request: Request, body: bytes) -> tuple[int, bytes]:
                from idlegrid.protocol import ChannelClose

                terms = self.net.ledger.market  # the provider may close at any time
                req = ChannelClose.model_validate_json(body)
                from idlegrid.chain import ChannelTerms

                c = req.channel
                t = ChannelTerms(c.client, c.provider, c.deposit, c.expiry, c.salt)
                terms.close(t, sender=self.account)
                return _json({"closed": True})

            return await signed(request, handle)

        return Starlette(
            routes=[
                Route("/v1/info", info),
                Route("/v1/health", health),
                Route("/v1/blobs/{digest}", blob, methods=["HEAD", "GET", "PUT"]),
                Route("/v1/jobs", job, methods=["POST"]),
                Route("/v1/vouchers", voucher, methods=["POST"]),
                Route("/v1/channels/close", close, methods=["POST"]),
            ]
        )

    def _job(self, sender: str, request: Request, body: bytes) -> tuple[int, bytes]:
        req = JobRequest.model_validate_json(body)
        if self.mode == "refuse":
            return _json({"error": "InvalidInput", "reason": "this node will not"}, 400)
        spec = req.spec_fields()  # the onnx kind's fields
        model = self.blobs[spec["model"]]
        blob = spec.get("input_blob")
        raw = self.blobs[blob] if blob else spec.get("input_npy", "")
        rows = array_from_npy(raw, max_bytes=2**30)
        output = OnnxRunner(providers=[CPU]).run_first(model, rows)
        if self.mode == "int8":
            output = np.zeros(output.shape, np.int8)
        elif self.mode == "scalar":
            output = np.asarray(output.ravel()[0])
        buf = io.BytesIO()
        np.save(buf, output, allow_pickle=False)  # as is: npy_bytes would make a 0-d array 1-d
        data = buf.getvalue()
        flops = count_flops(model)
        units = flops * rows.shape[0]
        result_hash = hashlib.sha256(data).digest()
        c = req.channel
        from idlegrid.chain import ChannelTerms

        terms = ChannelTerms(c.client, c.provider, c.deposit, c.expiry, c.salt)
        job_id = bytes.fromhex(req.job_id[2:])
        spec_hash, input_hash = get_workload(req.kind).digests(req.spec_fields())
        leaf = Receipt(
            terms.id, job_id, self.account.address, spec_hash, input_hash, result_hash, units,
            units * PRICE,
        )  # fmt: skip
        signature = sign_digest(self.account.key, receipt_digest(self.net.domain, leaf.leaf()))
        self.served += 1
        return _json(
            {
                "job_id": req.job_id,
                "seq": req.seq,
                "output_npy": base64.b64encode(data).decode(),
                "units": units,
                "amount": units * PRICE,
                "result_hash": "0x" + result_hash.hex(),
                "spec_hash": "0x" + spec_hash.hex(),
                "input_hash": "0x" + input_hash.hex(),
                "receipt_signature": "0x" + signature.hex(),
                "rows": int(rows.shape[0]),
                "flops_per_row": flops,
            }
        )


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Network, Liar]]:
    if True:
        net = start_network(tmp_path_factory.mktemp("devnet"), providers=1)
        server: uvicorn.Server | None = None
        thread: threading.Thread | None = None
        try:
            liar = Liar(net, net.account(LIAR), free_port())
            config = uvicorn.Config(liar.app(), host="127.0.0.1", port=liar.port, log_level="error")
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.05)
            reg, token = net.ledger.registry, net.ledger.token
            stake = reg.min_stake()
            token.approve(reg.address, stake, sender=liar.account)
            reg.register(liar.url, PRICE, b"\x00" * 32, stake, sender=liar.account)
            yield net, liar
        finally:
            if server is not None and thread is not None:
                server.should_exit = True
                thread.join(timeout=10)
            net.close()


def _paid_to(client: Client, provider: str) -> int:
    return sum(ch.amount for ch in client.channels() if ch.terms.provider == provider)


@pytest.mark.parametrize(("mode", "why"), [("int8", "dtype"), ("scalar", "scalar")])
def test_a_wrong_output_is_never_paid_and_its_shard_goes_elsewhere(
    hostile: tuple[Network, Liar], digits: Digits, mode: str, why: str
) -> None:
    # Prepare: the liar answers every job with a well-signed, well-billed wrong output
    net, liar = hostile
    liar.mode = mode
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)
    try:
        # Execute
        labels = client.infer(digits.model, digits.x_test[:60], rows_per_shard=10)
        report = client.last_report
    finally:
        liar.mode = "down"
        client.close()

    # Assert: right results from the honest node; the liar blamed for what it sent, unpaid
    np.testing.assert_array_equal(labels, digits.labels[:60])
    assert liar.served > 0
    reasons = [reason for address, reason in report.failovers if address == liar.account.address]
    assert reasons and why in reasons[0]
    assert _paid_to(client, liar.account.address) == 0
    assert report.by_provider == {net.nodes[0].address: 6}


def test_one_providers_signed_400_does_not_end_the_batch(
    hostile: tuple[Network, Liar], digits: Digits
) -> None:
    # Prepare
    net, liar = hostile
    liar.mode = "refuse"
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)
    try:
        # Execute
        labels = client.infer(digits.model, digits.x_test[:60], rows_per_shard=10)
        report = client.last_report
    finally:
        liar.mode = "down"
        client.close()

    # Assert: the batch completed on the other provider; refusing is not failing
    np.testing.assert_array_equal(labels, digits.labels[:60])
    assert [a for a, _ in report.failovers] == [liar.account.address]
    assert "will not" in report.failovers[0][1]
    assert client.backoff.failures(liar.account.address) == 0


def test_an_unsigned_413_is_reported_as_too_large_and_jobs_size_down(
    hostile: tuple[Network, Liar], digits: Digits
) -> None:
    # Prepare: the liar is honest but takes small requests only (less than it advertises)
    net, liar = hostile
    assert len(digits.model) < 8_000  # the model itself fits
    liar.mode, liar.max_body, liar.too_large, liar.served = "honest", 10_000, 0, 0
    client = Client.from_devnet(net.info.path, FUZZ_CLIENT)
    try:
        # Execute: 40 rows of 64 float32 a shard: 10 KB, 14 KB as base64 in a job
        labels = client.infer(digits.model, np.tile(digits.x_test[:40], (8, 1)))
        report = client.last_report
    finally:
        liar.mode, liar.max_body = "down", None
        client.close()

    # Assert: it refused, the client sent less, and the liar served the rest correctly
    np.testing.assert_array_equal(labels, np.tile(digits.labels[:40], 8))
    assert liar.too_large > 0 and liar.served > 0
    assert liar.account.address in report.by_provider
    assert not [r for _, r in report.failovers if "forged" in r]


def _model(nodes: list[onnx.NodeProto], out: onnx.ValueInfoProto, **kw: Any) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph(nodes, "m", [x], [out], **kw)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def test_a_model_without_one_row_per_input_row_is_refused_before_any_job(
    hostile: tuple[Network, Liar],
) -> None:
    # Prepare: (N, 3) -> (3N, 1), as skl2onnx exports some multi-output regressors; and a
    # model whose output is a scalar
    net, _ = hostile
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1])
    k_n = _model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1]),
        initializer=[shape],
    )
    scalar = _model(
        [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, []),
    )
    x = np.ones((20, 3), np.float32)
    client = Client.from_devnet(net.info.path, STRANGER)
    try:
        # Execute / Assert: one clear error about the model, and nothing sent or blamed
        with pytest.raises(ModelRejected, match="one row per input row"):
            client.infer(k_n, x)
        with pytest.raises(ModelRejected, match="scalar"):
            client.infer(scalar, x)
        assert client.channels() == []
        assert client.backoff.failures(net.nodes[0].address) == 0
    finally:
        client.close()


def test_a_task_error_is_billed_and_ends_the_batch_with_an_error_about_the_model(
    hostile: tuple[Network, Liar],
) -> None:
    # Prepare: a Gather whose indices are the input: rows 0..1 are fine (the local probe
    # passes), row 2 is out of range, so the job fails inside the node's worker
    net, _ = hostile
    x = helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
    table = helper.make_tensor("table", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "x"], ["y"])], "g", [x], [y], initializer=[table]
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    rows = np.array([[0], [1], [99]], np.int64)
    client = Client.from_devnet(net.info.path, STRANGER)
    try:
        # Execute
        with pytest.raises(ModelRejected, match="failed on the model") as raised:
            client.infer(bytes(proto.SerializeToString()), rows, rows_per_shard=3)

        # Assert: the provider is not blamed, and the voucher covers its failed receipt
        node = net.nodes[0].address
        assert node in str(raised.value)
        assert client.backoff.failures(node) == 0
        channels = [ch for ch in client.channels() if ch.terms.provider == node]
        assert channels and channels[-1].voucher is not None
        assert channels[-1].amount > 0
    finally:
        client.close()


def test_an_80_mb_batch_completes_through_blobs_and_matches_local(
    hostile: tuple[Network, Liar],
) -> None:
    # Prepare: 80 MB of float32 in, 80 MB out (x * 2), far over one request or output
    net, _ = hostile
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1000])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1000])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])], "double", [x], [y], initializer=[two]
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    rng = np.random.default_rng(7)
    batch = rng.standard_normal((20_000, 1000), dtype=np.float32)
    client = Client.from_devnet(net.info.path, DEMO_CLIENT, timeout_s=120)
    try:
        # Execute
        out = client.infer(bytes(proto.SerializeToString()), batch)
        report = client.last_report
    finally:
        client.close()

    # Assert
    assert batch.nbytes == 80_000_000
    np.testing.assert_array_equal(out, batch * 2)
    assert report.failovers == []


def test_closing_the_client_returns_every_deposit(
    hostile: tuple[Network, Liar], digits: Digits
) -> None:
    # Prepare
    net, _ = hostile
    market = net.ledger.market
    client = Client.from_devnet(net.info.path, FUZZ_CLIENT)
    address = client.account.address
    before = market.balance_of(address) + net.ledger.token.balance_of(address)

    # Execute
    try:
        client.infer(digits.model, digits.x_test[:50], rows_per_shard=10)
    finally:
        client.close()

    # Assert: every channel closed on chain; what the vouchers did not pay came back
    paid = sum(ch.amount for ch in client.channels())
    assert client.channels() and all(ch.closed for ch in client.channels())
    for ch in client.channels():
        state = market.channel(ch.terms)
        assert state.closed and state.paid == ch.amount
    after = market.balance_of(address) + net.ledger.token.balance_of(address)
    assert after == before - paid


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idlegrid.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_idlegrid_channels_lists_and_closes_a_clients_open_channels(
    hostile: tuple[Network, Liar],
) -> None:
    # Prepare: a channel opened and left open (as by a client that crashed)
    net, _ = hostile
    client = net.account(STRANGER)
    market = net.ledger.market
    net.ledger.token.approve(market.address, TOKEN, sender=client)
    expiry = net.ledger.backend.timestamp() + 3600
    terms, _ = market.open_channel(net.nodes[0].address, TOKEN, expiry, sender=client)
    where = ["--network", str(net.info.path), "--account", str(STRANGER)]

    # Execute
    listed = _cli("channels", "list", "--json", *where)
    closed = _cli("channels", "close", "--json", *where)
    after = _cli("channels", "list", "--json", *where)

    # Assert
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["channels"]
    assert {r["channel"] for r in rows} >= {"0x" + terms.id.hex()}
    assert closed.returncode == 0, closed.stderr
    assert all(c["closed"] for c in json.loads(closed.stdout)["channels"])
    assert json.loads(after.stdout)["channels"] == []
    assert market.channel(terms).closed


def test_a_client_closes_its_expired_channels_itself(hostile: tuple[Network, Liar]) -> None:
    # Prepare: a channel to the liar (which is down) that expires, then its window passes
    net, liar = hostile
    account = net.account(STRANGER)
    market = net.ledger.market
    net.ledger.token.approve(market.address, TOKEN, sender=account)
    expiry = net.ledger.backend.timestamp() + 60
    terms, _ = market.open_channel(liar.account.address, TOKEN, expiry, sender=account)
    net.ledger.backend.advance_time(60 + market.close_window() + 1)
    client = Client(account, net.ledger)

    # Execute
    try:
        closed = client.close_channels()
    finally:
        client.close()

    # Assert
    mine = [c for c in closed if c.channel == "0x" + terms.id.hex()]
    assert mine and mine[0].closed and mine[0].how == "client"
    assert market.channel(terms).closed
