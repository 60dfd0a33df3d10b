"""Hostile requests at the door of a node: what is checked before a job runs.

Each test runs an attack against real node processes and shows it refused or
bounded, and the node still serving: heavy parses while ``/v1/health`` answers,
bodies over the cap or too slow, half-sent requests and too many connections,
credit taken by jobs in flight or by fresh channels, made-up channels, and a
client that tops up twice in a row.

The module starts its own devnet of two nodes with tight limits:
node A (``credit_jobs`` 4, an unpaid limit per client, one chain re-read per 60 s
after a burst) and node B (price 1 wei per FLOP, 24 connections, 1 s header and
body timeouts).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np
import psutil
import pytest

from idlegrid.bench._dispatch import mlp_model
from idlegrid.bench._health import adds_model
from idlegrid.chain import TOKEN
from idlegrid.protocol import JobResult, npy_bytes
from idlegrid.workloads import count_flops

from .conftest import Digits, JobChannel, Network, Node, Sent, put_blob, send, start_network

CREDIT_CLIENT, UNPAID_CLIENT, TOPUP_CLIENT, HEAVY_CLIENT, STRANGER = 3, 4, 5, 6, 7
CREDIT_JOBS = 4
SMALL_ROWS, BIG_ROWS = 2, 100
#: node A's unpaid limit, in 2-row jobs: more than one big job, less than two
UNPAID_LIMIT_JOBS = 75
MAX_CONNECTIONS = 24


@dataclass
class Hostile:
    net: Network
    a: Node
    b: Node
    digits: Digits

    def channel(self, node: Node, client: int, *, deposit: int = TOKEN) -> JobChannel:
        return JobChannel(self.net, node, self.net.account(client), self.digits, deposit=deposit)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, digits: Digits) -> Iterator[Hostile]:
    net = start_network(tmp_path_factory.mktemp("hostile"), providers=2)
    try:
        price = 10**12  # the devnet's price, node A keeps it
        job = digits.flops_per_row * SMALL_ROWS * price
        a, b = net.nodes
        a = net.replace(
            a,
            [
                *a.argv,
                "--credit-jobs", str(CREDIT_JOBS),
                "--max-unpaid", repr(UNPAID_LIMIT_JOBS * job / TOKEN),
                "--channel-refresh", "60",
            ],
        )  # fmt: skip
        b = net.replace(
            b,
            [
                *b.argv,
                "--price", "1",
                "--max-connections", str(MAX_CONNECTIONS),
                "--header-timeout", "1",
                "--body-timeout", "1",
            ],
        )  # fmt: skip
        net.nodes[:] = [a, b]
        for node in (a, b):
            for client in (CREDIT_CLIENT, UNPAID_CLIENT, TOPUP_CLIENT, HEAVY_CLIENT):
                put_blob(net, node, digits.model, account=net.account(client))
        yield Hostile(net, a, b, digits)
    finally:
        net.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def made_up_job(h: Hostile, node: Node, signer: int, *, salt: int, model: str) -> dict[str, object]:
    """A job request of ``signer`` on channel terms that were never opened on chain."""
    client = h.net.account(signer)
    rows = h.digits.x_test[:SMALL_ROWS]
    return {
        "job_id": "0x" + os.urandom(32).hex(),
        "kind": "onnx",
        "model": model,
        "input_npy": _b64(npy_bytes(rows)),
        "channel": {
            "client": client.address,
            "provider": node.address,
            "deposit": TOKEN,
            "expiry": int(time.time()) + 3600,
            "salt": salt,
        },
        "seq": 1,
        "unit_price": 10**12,
        "max_units": h.digits.flops_per_row * SMALL_ROWS,
        "voucher": None,
    }


def _stats(net: Network, node: Node) -> dict[str, object]:
    stats: dict[str, object] = net.http.get(f"{node.url}/v1/stats").json()
    return stats


# -- the event loop stays free -----------------------------------------------------------------
def health_while(net: Network, node: Node, work: threading.Thread, busy: str) -> tuple[int, float]:
    """Ask /v1/health, then /v1/stats, until ``work`` ends: (health answers given while
    the node said it was ``busy``: "counting" a model or "running" a job; the slowest).

    An answer that /v1/stats shows was given during the work proves the event loop
    free; its latency is printed, not asserted (``idlegrid bench health`` measures it)."""
    answered, worst = 0, 0.0
    with httpx.Client(timeout=30.0) as http:
        while work.is_alive():
            start = time.perf_counter()
            response = http.get(f"{node.url}/v1/health")
            took = time.perf_counter() - start
            assert response.status_code == 200
            stats = http.get(f"{node.url}/v1/stats").json()
            doing = {
                "counting": stats["models"]["counting"],
                "running": stats["executor"]["running"],
            }
            if doing[busy] > 0:
                answered += 1
                worst = max(worst, took)
            time.sleep(0.01)
    return answered, worst


def in_background(fn: object) -> tuple[threading.Thread, list[Sent]]:
    out: list[Sent] = []
    thread = threading.Thread(target=lambda: out.append(fn()))  # type: ignore[operator]
    thread.start()
    return thread, out


def test_health_answers_while_a_big_model_is_counted(hostile: Hostile) -> None:
    # Prepare: a model that takes a second or more to count, on an open channel
    net, node = hostile.net, hostile.b
    jc = hostile.channel(node, HEAVY_CLIENT)
    heavy = put_blob(net, node, adds_model(100_000), account=jc.client)
    body = jc.request(model=heavy, input_npy=_b64(npy_bytes(np.zeros((2, 4), np.float32))))
    body["max_units"] = 1  # counted, then refused: the job never reaches a worker

    # Execute
    work, sent = in_background(lambda: jc.submit(body))
    answered, worst = health_while(net, node, work, "counting")
    work.join()

    # Assert: answers while the helper process counted, and the job refused after it
    assert sent[0].status == 400 and "max_units" in sent[0].reason, sent[0].response.text
    print(f"\n/v1/health while counting a 100k-node model: {answered} answers, max {worst:.3f}s")
    assert answered >= 3


def test_health_answers_while_a_heavy_job_runs(hostile: Hostile) -> None:
    # Prepare: an MLP over 16k rows sent inline (a 5.6 MB body to parse, a job of seconds)
    net, node = hostile.net, hostile.b
    jc = hostile.channel(node, HEAVY_CLIENT)
    model = mlp_model()
    digest = put_blob(net, node, model, account=jc.client)
    rows = np.random.default_rng(0).standard_normal((16_384, 64)).astype(np.float32)
    body = jc.request(model=digest, input_npy=_b64(npy_bytes(rows)))
    body["max_units"] = count_flops(model) * rows.shape[0]

    # Execute
    work, sent = in_background(lambda: jc.submit(body))
    answered, worst = health_while(net, node, work, "running")
    work.join()

    # Assert: answers while a worker ran the job
    assert sent[0].status == 200, sent[0].response.text
    print(f"\n/v1/health during a heavy job: {answered} answers, max {worst:.3f}s")
    assert answered >= 3


def test_big_model_on_a_channel_never_opened_is_402_unparsed(hostile: Hostile) -> None:
    # Prepare: 8 MB that are not a model (parsing them first would answer 400), and
    # channel terms that were never opened on chain
    net, node = hostile.net, hostile.a
    stranger = net.account(STRANGER)
    junk = put_blob(net, node, os.urandom(8 * 2**20), account=stranger)
    body = made_up_job(hostile, node, STRANGER, salt=12345, model=junk)

    # Execute
    sent = send(net, node, "POST", "/v1/jobs", json.dumps(body).encode(), account=stranger)

    # Assert: refused for the channel, before the model was looked at
    assert sent.status == 402, sent.response.text
    assert "not open" in sent.reason


# -- bodies and slow clients ---------------------------------------------------------------------
def test_chunked_body_over_the_cap_is_413_while_streaming(hostile: Hostile) -> None:
    # Prepare: a node's process, and a chunked body of 400 MiB without content-length
    net, node = hostile.net, hostile.b
    limit = int(net.http.get(f"{node.url}/v1/info").json()["limits"]["max_request_bytes"])
    process = psutil.Process(net.process(node).pid)
    before = process.memory_info().rss
    peak = [before]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    chunk = b"a" * 2**20
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    pending = memoryview(framed)
    host, port = node.url.removeprefix("http://").split(":")

    # Execute: send until the node answers (or 400 MiB are gone)
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nhost: node\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        sock.setblocking(False)
        answer = b""
        deadline = time.monotonic() + 60
        while sent < 400 * 2**20 and time.monotonic() < deadline:
            try:
                answer += sock.recv(65536)
                break
            except BlockingIOError:
                pass
            try:
                n = sock.send(pending)
                sent += n
                pending = pending[n:] or memoryview(framed)
            except BlockingIOError:
                time.sleep(0.005)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        with contextlib.suppress(OSError):
            answer += sock.recv(65536)
    sampling.set()
    sampler.join()

    # Assert: 413 once the cap was passed, memory bounded, the node still serving
    grew = (peak[0] - before) / 2**20
    print(
        f"\nchunked 400 MiB body: 413 after {sent / 2**20:.0f} MiB sent, node RSS +{grew:.0f} MiB"
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < limit + 64 * 2**20
    assert grew < 200
    assert net.http.get(f"{node.url}/v1/health").status_code == 200


def _connect(node: Node) -> socket.socket:
    host, port = node.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _status_line(sock: socket.socket) -> str:
    """The first line the node answers, or "" if it closed without a word."""
    data = b""
    try:
        while b"\r\n" not in data:
            got = sock.recv(4096)
            if not got:
                break
            data += got
    except ConnectionResetError:
        pass
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def _closed(sock: socket.socket) -> bool:
    """True once the node closes the connection (what it still sends is read and dropped)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_half_sent_requests_are_closed_and_extra_connections_refused(hostile: Hostile) -> None:
    # Prepare: twice as many connections as the node allows, each with half its headers
    node = hostile.b
    socks = [_connect(node) for _ in range(2 * MAX_CONNECTIONS)]
    for sock in socks:
        sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nhost: node\r\n")

    # Execute: every connection gets an answer, none is left hanging
    try:
        lines = [_status_line(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()

    # Assert: the ones past the limit were refused at once, the rest timed out
    refused = sum(line.startswith("HTTP/1.1 503") for line in lines)
    timed_out = sum(line.startswith("HTTP/1.1 408") for line in lines)
    assert refused >= MAX_CONNECTIONS // 2, lines
    assert refused + timed_out == len(socks), lines
    hostile.channel(node, HEAVY_CLIENT).run()


def test_slow_bodies_are_408_and_closed(hostile: Hostile) -> None:
    # Prepare: signed requests whose bodies stop after a few bytes
    node = hostile.b
    socks = [_connect(node) for _ in range(8)]
    for sock in socks:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nhost: node\r\ncontent-type: application/json\r\n"
            b'content-length: 1000\r\n\r\n{"job_id"'
        )

    # Execute
    try:
        lines = [_status_line(sock) for sock in socks]
        closed = [_closed(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()

    # Assert
    assert all(line.startswith("HTTP/1.1 408") for line in lines), lines
    assert all(closed)
    hostile.channel(node, HEAVY_CLIENT).run()


# -- credit and channel books ----------------------------------------------------------------
def test_credit_counts_jobs_in_flight(hostile: Hostile) -> None:
    # Prepare: a channel with no voucher yet, and twice its credit in jobs, sent at once
    node = hostile.a
    jc = hostile.channel(node, CREDIT_CLIENT)
    bodies = [jc.request(seq=seq) for seq in range(1, 2 * CREDIT_JOBS + 1)]

    # Execute
    with ThreadPoolExecutor(len(bodies)) as pool:
        sent = list(pool.map(jc.submit, bodies))

    # Assert: credit_jobs jobs ran, whatever their timing; the others were refused
    # (402 until a voucher comes; 429 if the node's cap on jobs per client came first)
    assert [s.status for s in sent].count(200) == CREDIT_JOBS, [s.response.text for s in sent]
    refused = [s for s in sent if s.status != 200]
    assert all((s.status == 402 and "voucher" in s.reason) or s.status == 429 for s in refused), [
        s.response.text for s in refused
    ]
    assert any(s.status == 402 for s in refused)


def test_a_fresh_channel_buys_no_fresh_credit(hostile: Hostile) -> None:
    # Prepare: a client that used up its credit on one channel (vouchers withheld)
    node = hostile.a
    jc = hostile.channel(node, CREDIT_CLIENT)
    first = hostile.channel(node, CREDIT_CLIENT)  # the same client's other channel
    for seq in range(1, CREDIT_JOBS + 1):
        first.submit(first.request(seq=seq))

    # Execute
    sent = jc.submit(jc.request())

    # Assert
    assert sent.status == 402, sent.response.text
    assert "per client" in sent.reason


def test_unpaid_amount_is_bounded_per_client(hostile: Hostile) -> None:
    # Prepare: one big job done and not vouched for, on one channel of the client
    net, node = hostile.net, hostile.a
    jc = hostile.channel(node, UNPAID_CLIENT)
    other = hostile.channel(node, UNPAID_CLIENT)
    limit = net.http.get(f"{node.url}/v1/info").json()["limits"]["max_unpaid_per_client"]
    jc.rows = other.rows = hostile.digits.x_test[:BIG_ROWS]
    first_body = jc.request()
    first = jc.submit(first_body)
    assert first.status == 200, first.response.text

    # Execute: a second big job, on the same channel and on a fresh one
    same = jc.submit(jc.request(seq=2))
    fresh = other.submit(other.request())

    # Assert: both refused, until the client vouches for the first
    assert limit is not None and limit < 2 * jc.amount(BIG_ROWS)
    for sent in (same, fresh):
        assert sent.status == 402, sent.response.text
        assert "per client" in sent.reason
    jc.accept(first_body, JobResult.model_validate_json(first.response.content))
    jc.run()  # its request carries the voucher for the first job


def test_made_up_channels_make_no_books(hostile: Hostile) -> None:
    # Prepare: a signer that names channels nobody opened
    net, node = hostile.net, hostile.a
    stranger = net.account(STRANGER)
    jc = hostile.channel(node, TOPUP_CLIENT)
    jc.run()
    before = _stats(net, node)["channels"]
    bodies = [
        made_up_job(hostile, node, STRANGER, salt=salt, model=hostile.digits.digest)
        for salt in [*range(1000, 1040), 1000, 1000]  # the same made-up channel thrice
    ]

    # Execute
    def attack(body: dict[str, object]) -> Sent:
        return send(net, node, "POST", "/v1/jobs", json.dumps(body).encode(), account=stranger)

    with ThreadPoolExecutor(8) as pool:
        sent = list(pool.map(attack, bodies))

    # Assert: every one refused, no book made, the node still serving
    assert all(s.status == 402 and "not open" in s.reason for s in sent)
    assert _stats(net, node)["channels"] == before
    jc.run()


def test_two_top_ups_in_a_row_are_both_seen(hostile: Hostile) -> None:
    # Prepare: a channel that covers one job; the node re-reads channels once a minute
    net, node = hostile.net, hostile.a
    market = net.ledger.market
    client = net.account(TOPUP_CLIENT)
    deposit = hostile.digits.flops_per_row * SMALL_ROWS * 10**12  # node A's price
    jc = hostile.channel(node, TOPUP_CLIENT, deposit=deposit)
    jc.run()

    # Execute / Assert: each top-up is followed by a job it pays for (more top-ups in a
    # row than the node's burst of re-reads that find nothing new)
    for _ in range(4):
        add = jc.amount(SMALL_ROWS)
        net.ledger.token.approve(market.address, add, sender=client)
        market.top_up(jc.terms, add, jc.channel.expiry, sender=client)
        jc.run()
