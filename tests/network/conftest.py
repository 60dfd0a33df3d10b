"""Fixtures for multi-process tests: real provider nodes on loopback, on an anvil devnet.

``network`` is one devnet for the whole session (anvil, 3 provider node processes,
8 funded accounts). Tests that kill or restart providers take their own from
``make_network``. Every devnet started here is brought down at teardown, whatever
the outcome, and the teardown checks that no process it started is left: not the
chain, not a node, not a node's worker processes.

Accounts: 0 is the faucet, 1..3 the providers; tests pay from the others
(``DEMO_CLIENT``, ``JOB_CLIENT``, ``STRANGER``, ``FUZZ_CLIENT``), each for one purpose.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest

from idlegrid import _process
from idlegrid._process import ProcessRef, spawn, stop
from idlegrid.chain import TOKEN, ChannelTerms, Ledger, find_anvil
from idlegrid.client._session import ClientChannel
from idlegrid.devnet import (
    DEVNET_FILE,
    DevnetInfo,
    devnet_down,
    devnet_up,
    load_devnet,
    node_argv,
    wait_for_node,
)
from idlegrid.protocol import (
    Account,
    Domain,
    JobRequest,
    JobResult,
    Receipt,
    SignedRequest,
    array_from_npy,
    node_domain,
    npy_bytes,
    receipt_digest,
    recover_digest,
    sign_request,
    verify_response,
)
from idlegrid.protocol import address_bytes as raw_address
from idlegrid.workloads import get_workload

ANVIL_MISSING = "anvil is not installed: run `npm install` in the idlegrid checkout"
PROVIDERS = 3
ACCOUNTS = 8
DEMO_CLIENT = 4  # pays through idlegrid.Client in the demo test
JOB_CLIENT = 5  # holds one channel per node for the known-good jobs
STRANGER = 6  # signs what it is not allowed to sign
FUZZ_CLIENT = 7  # holds the channels that property tests send garbage on
# A job's answer may wait behind others' (a node's per-job limit is 30 s of wall time, and
# a loaded two-core machine runs two at a time), so the read limit is a hang guard only.
HTTP_TIMEOUT = httpx.Timeout(120.0, connect=5.0)
GONE_TIMEOUT = 15.0

Serves = Callable[["Node"], None]


@dataclass(frozen=True)
class Node:
    """One provider node of a devnet, as started by ``devnet_up``."""

    index: int  # its dev account, and its role "provider-<index>"
    address: str
    url: str
    argv: list[str]  # the command line it was started with
    directory: Path  # where the devnet lives (the node's working directory)


@dataclass
class Network:
    """A running devnet: its chain, its nodes, and the processes tests started for it."""

    directory: Path
    info: DevnetInfo
    nodes: list[Node]
    ledger: Ledger
    domain: Domain  # of node messages: chain id and market
    http: httpx.Client
    restarted: list[ProcessRef] = field(default_factory=list)
    watched: set[int] = field(default_factory=set)  # pids that must be gone at teardown

    def account(self, index: int) -> Account:
        return self.info.accounts[index]

    def process(self, node: Node) -> ProcessRef:
        """The node's process now: the one devnet_up started, or the latest restart."""
        for ref in reversed(self.restarted):
            if ref.role == f"provider-{node.index}":
                return ref
        record = json.loads((self.directory / DEVNET_FILE).read_text())
        for raw in record["processes"]:
            if raw["role"] == f"provider-{node.index}":
                return ProcessRef.from_dict(raw)
        raise LookupError(f"no process for provider {node.index}")

    def watch(self, ref: ProcessRef) -> None:
        """Remember a process and its children now, to check at teardown that all are gone."""
        self.watched.add(ref.pid)
        self.watched.update(_children(ref.pid))

    def kill(self, node: Node) -> None:
        """SIGKILL a node (no shutdown, no redemption); return once it is gone."""
        ref = self.process(node)
        self.watch(ref)
        os.kill(ref.pid, signal.SIGKILL)
        wait_gone([ref])

    def restart(self, node: Node) -> ProcessRef:
        """Start a node again with its own command line; return once it answers."""
        log = node.directory / ".idlegrid" / f"node-{node.index}.log"
        proc, ref = spawn(node.argv, log=log, role=f"provider-{node.index}", cwd=node.directory)
        self.restarted.append(ref)
        wait_for_node(node.url, proc)
        return ref

    def replace(self, node: Node, argv: list[str]) -> Node:
        """Kill a node and start it again with another command line (same port and data)."""
        self.kill(node)
        replaced = Node(node.index, node.address, node.url, argv, node.directory)
        self.restart(replaced)
        return replaced

    def close(self) -> None:
        """Stop what tests restarted, then the devnet; assert that no process is left."""
        refs = [*self.restarted, *_devnet_refs(self.directory)]
        for ref in refs:
            if ref.alive():
                self.watch(ref)
        # idlegrid._process.stop may forget a child that exits between its last poll and
        # its alive() check, before reading its exit status: hold our children and reap them
        ours = [_process._CHILDREN[r.pid] for r in refs if r.pid in _process._CHILDREN]
        try:
            for ref in reversed(self.restarted):  # providers redeem as they stop
                stop(ref, timeout=10.0)
            if (self.directory / DEVNET_FILE).exists():
                devnet_down(self.directory)
        finally:
            self.http.close()
            for child in ours:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=GONE_TIMEOUT)
        left = [pid for pid in self.watched if not _gone(pid, GONE_TIMEOUT)]
        assert not left, f"processes left running after teardown: {left}"


def _devnet_refs(directory: Path) -> list[ProcessRef]:
    file = directory / DEVNET_FILE
    if not file.exists():
        return []
    return [ProcessRef.from_dict(r) for r in json.loads(file.read_text())["processes"]]


def _children(pid: int) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def wait_gone(refs: list[ProcessRef], timeout: float = GONE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while any(ref.alive() for ref in refs):
        assert time.monotonic() < deadline, f"still running: {[r.pid for r in refs]}"
        time.sleep(0.05)


def start_network(
    directory: Path, *, providers: int = PROVIDERS, node_flags: Sequence[str] = ()
) -> Network:
    """Start an anvil devnet with provider nodes in ``directory``, each with ``node_flags``
    added to its command line; fail if anvil is missing."""
    if find_anvil() is None:
        pytest.fail(ANVIL_MISSING)
    directory = directory.resolve()
    devnet_up(  # all or none
        directory, providers=providers, accounts=ACCOUNTS, backend="anvil", node_flags=node_flags
    )
    info = load_devnet(directory)
    record = json.loads((directory / DEVNET_FILE).read_text())
    nodes = []
    for i, provider in enumerate(record["providers"], start=1):
        port = int(provider["endpoint"].rsplit(":", 1)[1])
        data_dir = directory / ".idlegrid" / f"node-{i}"
        argv = [*node_argv(directory / DEVNET_FILE, i, port, data_dir), *node_flags]
        nodes.append(Node(i, provider["address"], provider["endpoint"], argv, directory))
    ledger = info.ledger()
    domain = node_domain(info.chain_id, info.deployment.market)
    net = Network(directory, info, nodes, ledger, domain, httpx.Client(timeout=HTTP_TIMEOUT))
    for ref in _devnet_refs(directory):
        net.watch(ref)
    return net


@pytest.fixture(scope="session")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """One devnet for every test that leaves its nodes running."""
    net = start_network(tmp_path_factory.mktemp("devnet"))
    try:
        yield net
    finally:
        net.close()


@pytest.fixture
def make_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Network]]:
    """A devnet of a test's own (to kill or restart nodes in), stopped after the test."""
    with contextlib.ExitStack() as started:  # closes every one, even if one close fails

        def make(*, providers: int = PROVIDERS) -> Network:
            net = start_network(tmp_path_factory.mktemp("devnet"), providers=providers)
            started.callback(net.close)
            return net

        yield make


# -- the workload ---------------------------------------------------------------------
@dataclass(frozen=True)
class Digits:
    """The digits classifier as ONNX, its test split, and local onnxruntime's labels."""

    model: bytes
    x_test: np.ndarray
    labels: np.ndarray  # onnxruntime on this machine, the reference
    flops_per_row: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.model).hexdigest()


@pytest.fixture(scope="session")
def digits() -> Digits:
    import onnxruntime as ort

    from idlegrid.workloads import count_flops, train_digits_model

    model, _, x_test, _, _ = train_digits_model()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    labels = session.run(["label"], {"input": x_test})[0]
    return Digits(model, x_test, np.asarray(labels), count_flops(model))


# -- raw signed requests ---------------------------------------------------------------
@dataclass
class Sent:
    """A request as sent, and the node's answer."""

    signed: SignedRequest | None
    response: httpx.Response

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def error(self) -> str:
        """The error class the node named (``{"error": ..., "reason": ...}``)."""
        return str(self.response.json().get("error", ""))

    @property
    def reason(self) -> str:
        return str(self.response.json().get("reason", ""))


def send(
    net: Network,
    node: Node,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    account: Account | None,
    content_type: str = "application/json",
    signed_body: bytes | None = None,
    signed_path: str | None = None,
    recipient: str | None = None,
    domain: Domain | None = None,
    now: float | None = None,
    ttl_s: int = 60,
    headers: dict[str, str] | None = None,
) -> Sent:
    """Send ``body`` to ``node``, signed by ``account`` (unsigned if None).

    The ``signed_*``, ``recipient``, ``domain`` and ``now`` overrides sign
    something other than what is sent, to forge the ways a signature goes wrong.
    """
    signed = None
    all_headers = {"content-type": content_type}
    if account is not None:
        signed = sign_request(
            account,
            domain or net.domain,
            recipient or node.address,
            method,
            signed_path if signed_path is not None else path,
            signed_body if signed_body is not None else body,
            ttl_s=ttl_s,
            now=now,
        )
        all_headers.update(signed.headers)
    all_headers.update(headers or {})
    response = net.http.request(method, node.url + path, content=body, headers=all_headers)
    return Sent(signed, response)


def put_blob(net: Network, node: Node, data: bytes, *, account: Account) -> str:
    digest = hashlib.sha256(data).hexdigest()
    sent = send(
        net,
        node,
        "PUT",
        f"/v1/blobs/{digest}",
        data,
        account=account,
        content_type="application/octet-stream",
    )
    assert sent.status == 201, sent.response.text
    return digest


# -- known-good jobs ----------------------------------------------------------------------
class JobChannel:
    """A client's payment channel to one node, for sending jobs by hand.

    It keeps the client's books with the SDK's :class:`ClientChannel`: every job
    accepted through :meth:`run` extends the cumulative voucher that the next
    request carries. :meth:`request` builds a job without spending its sequence
    number, so a test can break it and send it instead.
    """

    def __init__(
        self,
        net: Network,
        node: Node,
        client: Account,
        digits: Digits,
        *,
        deposit: int,
        ttl_s: int = 3600,
    ) -> None:
        self.net, self.node, self.client, self.digits = net, node, client, digits
        market = net.ledger.market
        net.ledger.token.approve(market.address, deposit, sender=client)
        expiry = net.ledger.backend.next_timestamp() + ttl_s
        terms, _ = market.open_channel(node.address, deposit, expiry, sender=client)
        self.channel = ClientChannel(terms, deposit=deposit, expiry=expiry)
        self.price = int(net.http.get(f"{node.url}/v1/info").json()["unit_price"])
        self.rows = digits.x_test[:2]

    @property
    def terms(self) -> ChannelTerms:
        return self.channel.terms

    def amount(self, rows: int) -> int:
        """What a job of ``rows`` rows costs."""
        return self.digits.flops_per_row * rows * self.price

    def request(self, **overrides: Any) -> dict[str, Any]:
        """A valid job request for the next sequence number; ``overrides`` replace fields."""
        voucher = self.channel.voucher_model()
        units = self.digits.flops_per_row * self.rows.shape[0]
        body: dict[str, Any] = {
            "job_id": "0x" + os.urandom(32).hex(),
            "kind": "onnx",
            "model": self.digits.digest,
            "input_npy": _b64(npy_bytes(self.rows)),
            "channel": self.channel.terms_json(),
            "seq": self.channel.next_seq,
            "unit_price": self.price,
            "max_units": units,
            "voucher": voucher.model_dump() if voucher is not None else None,
        }
        body.update(overrides)
        return body

    def submit(self, body: dict[str, Any], *, account: Account | None = None) -> Sent:
        """POST a job request, signed by the channel's client unless ``account`` is given."""
        return send(
            self.net,
            self.node,
            "POST",
            "/v1/jobs",
            json.dumps(body).encode(),
            account=account or self.client,
        )

    def run(self, body: dict[str, Any] | None = None) -> np.ndarray:
        """Run a good job (``body`` from :meth:`request`); assert it is served, signed,
        billed right and correct."""
        body = body or self.request()
        sent = self.submit(body)
        assert sent.status == 200, f"HTTP {sent.status}: {sent.response.text}"
        assert sent.signed is not None
        verify_response(
            self.net.domain,
            self.node.address,
            self.client.address,
            sent.signed.digest,
            sent.status,
            sent.response.content,
            sent.response.headers,
        )
        result = JobResult.model_validate_json(sent.response.content)
        output = self.accept(body, result)
        expected = self.digits.labels[: self.rows.shape[0]]
        np.testing.assert_array_equal(output, expected)
        return output

    def accept(self, body: dict[str, Any], result: JobResult) -> np.ndarray:
        """Check a result's receipt and bill, take its sequence number, sign the voucher."""
        seq = self.channel.take_seq()
        assert result.seq == seq == body["seq"] and result.job_id == body["job_id"]
        units = self.digits.flops_per_row * self.rows.shape[0]
        assert (result.units, result.amount) == (units, self.amount(self.rows.shape[0]))
        assert result.status == "ok" and result.output_npy is not None
        raw = base64.b64decode(result.output_npy)
        result_hash = hashlib.sha256(raw).digest()
        assert "0x" + result_hash.hex() == result.result_hash
        spec_hash, input_hash = job_digests(body)
        receipt = Receipt(
            self.terms.id,
            bytes.fromhex(body["job_id"][2:]),
            self.node.address,
            spec_hash,
            input_hash,
            result_hash,
            result.units,
            result.amount,
        )
        signer = recover_digest(
            receipt_digest(self.net.domain, receipt.leaf()),
            bytes.fromhex(result.receipt_signature[2:]),
        )
        assert signer == raw_address(self.node.address)
        self.channel.accept(seq, receipt, self.client, self.net.ledger.market.domain())
        return array_from_npy(raw)


def job_digests(body: dict[str, Any]) -> tuple[bytes, bytes]:
    """The spec and input hashes a job's receipt must name (``Workload.digests``)."""
    req = JobRequest.model_validate(body)
    return get_workload(req.kind).digests(req.spec_fields())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="session")
def job_channels(network: Network, digits: Digits) -> dict[int, JobChannel]:
    """One channel per node from JOB_CLIENT, with the digits model uploaded to every node."""
    client = network.account(JOB_CLIENT)
    channels = {}
    for node in network.nodes:
        put_blob(network, node, digits.model, account=client)
        channels[node.index] = JobChannel(network, node, client, digits, deposit=10 * TOKEN)
    return channels


@pytest.fixture(scope="session")
def serves(job_channels: dict[int, JobChannel]) -> Serves:
    """``serves(node)`` asserts that the node still runs a good job correctly."""

    def check(node: Node) -> None:
        job_channels[node.index].run()

    return check
