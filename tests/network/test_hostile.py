"""Hostile jobs against real node processes: reading the node's disk, free compute, huge outputs.

One devnet of this module's own, with two provider nodes: node 1 as a node starts by
default, and node 2 restarted with ``--metered`` (it runs models with control flow,
billed by CPU time, at ``RATE`` units per CPU-second so that tests pay little),
``--max-jobs-per-client CAP``. Each test pays from its own channel. A failed job is
answered 422 with a signed, billed result; the tests check its receipt as a client
would and take it into the channel, so that the next voucher covers it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import ModelProto, TensorProto, helper, numpy_helper

from idlegrid._process import stop
from idlegrid.chain import TOKEN
from idlegrid.protocol import (
    JobResult,
    Receipt,
    array_from_npy,
    npy_bytes,
    receipt_digest,
    recover_digest,
    verify_response,
)
from idlegrid.protocol import address_bytes as raw_address
from idlegrid.workloads import count_flops

from ..workloads.test_external import by_constant_attribute, by_initializer, by_loop_body
from .conftest import (
    Digits,
    JobChannel,
    Network,
    Node,
    Sent,
    job_digests,
    put_blob,
    send,
    start_network,
)

RATE = 10**6  # node 2's units per CPU-second
CAP = 4  # node 2's jobs per client, running or queued
SECRET = b"TOPSECRET-0123456789abcdef"  # as the workload tests' leaking models expect
F = TensorProto.FLOAT
LONG_TRIPS = 1_500_000  # a Loop of this many trips runs for a CPU-second or more (4.7 s seen)
STATS_TIMEOUT = 60.0


@dataclass(frozen=True)
class Hostile:
    net: Network
    default: Node  # as started by default
    metered: Node  # --metered, RATE, CAP


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    net = start_network(tmp_path_factory.mktemp("devnet"), providers=2)
    try:
        second = net.nodes[1]
        flags = ["--metered", "--units-per-cpu-s", str(RATE)]
        flags += ["--max-jobs-per-client", str(CAP)]
        ref = net.process(second)
        net.watch(ref)
        stop(ref)  # gracefully: the test is about jobs, not about a node's death
        metered = replace(second, argv=[*second.argv, *flags])
        net.restart(metered)
        yield Hostile(net, net.nodes[0], metered)
    finally:
        net.close()


def channel(
    h: Hostile, node: Node, account: int, digits: Digits, *, deposit: int = 1000 * TOKEN
) -> JobChannel:
    """A channel of ``account`` to ``node``, with the digits model uploaded there."""
    jc = JobChannel(h.net, node, h.net.account(account), digits, deposit=deposit)
    put_blob(h.net, node, digits.model, account=jc.client)
    return jc


def upload(jc: JobChannel, model: bytes | ModelProto) -> str:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return put_blob(jc.net, jc.node, data, account=jc.client)


def job(jc: JobChannel, model: str, x: np.ndarray, max_units: int, **kw: Any) -> dict[str, Any]:
    """A request for ``model`` on rows ``x``."""
    b64 = base64.b64encode(npy_bytes(x)).decode()
    return jc.request(model=model, input_npy=b64, max_units=max_units, **kw)


def settle(jc: JobChannel, body: dict[str, Any], sent: Sent) -> JobResult:
    """Check a 200 or 422 answer as a client would; take its receipt into the channel."""
    assert sent.status in (200, 422), f"HTTP {sent.status}: {sent.response.text}"
    assert sent.signed is not None
    verify_response(
        jc.net.domain,
        jc.node.address,
        jc.client.address,
        sent.signed.digest,
        sent.status,
        sent.response.content,
        sent.response.headers,
    )
    result = JobResult.model_validate_json(sent.response.content)
    assert (result.status == "ok") == (sent.status == 200)
    assert result.seq == body["seq"] and result.job_id == body["job_id"]
    assert 1 <= result.units <= body["max_units"] and result.amount == result.units * jc.price
    if result.status == "ok":
        raw = output_bytes(jc, result)
        digest = hashlib.sha256(raw).digest()
    else:
        assert result.error and result.output_npy is None and result.output_blob is None
        digest = hashlib.sha256(result.error.encode()).digest()
    assert "0x" + digest.hex() == result.result_hash
    receipt = Receipt(
        jc.terms.id,
        bytes.fromhex(body["job_id"][2:]),
        jc.node.address,
        *job_digests(body),
        digest,
        result.units,
        result.amount,
    )
    signer = recover_digest(
        receipt_digest(jc.net.domain, receipt.leaf()), bytes.fromhex(result.receipt_signature[2:])
    )
    assert signer == raw_address(jc.node.address)
    while jc.channel.next_seq <= body["seq"]:
        jc.channel.take_seq()
    jc.channel.accept(body["seq"], receipt, jc.client, jc.net.ledger.market.domain())
    return result


def output_bytes(jc: JobChannel, result: JobResult) -> bytes:
    if result.output_npy is not None:
        return base64.b64decode(result.output_npy)
    assert result.output_blob is not None
    got = send(jc.net, jc.node, "GET", f"/v1/blobs/{result.output_blob}", account=jc.client)
    assert got.status == 200, got.response.text
    return got.response.content


def hand_over_voucher(jc: JobChannel) -> bool:
    voucher = jc.channel.voucher_model()
    assert voucher is not None
    body = {"channel": jc.channel.terms_json(), "voucher": voucher.model_dump()}
    sent = send(
        jc.net, jc.node, "POST", "/v1/vouchers", json.dumps(body).encode(), account=jc.client
    )
    assert sent.status == 200, sent.response.text
    return bool(sent.response.json()["accepted"])


# -- models ---------------------------------------------------------------------------------
def loop_model(trips: int) -> bytes:
    """x [N, 64] → y [N, 64]: ``trips`` MatMuls by the identity, in a Loop."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["acc_in", "w"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", F, ["N", 64]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", F, ["N", 64]),
        ],
        [numpy_helper.from_array(np.eye(64, dtype=np.float32), "w")],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body, name="spin")],
        "g",
        [helper.make_tensor_value_info("x", F, ["N", 64])],
        [helper.make_tensor_value_info("y", F, ["N", 64])],
        [numpy_helper.from_array(np.array(trips, np.int64), "trips")],
    )
    return _serialize(graph)


def expand_model(width: int) -> bytes:
    """x [N, 1] → y [N, width]: a few bytes of model, ``width`` floats of output per row."""
    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", F, ["N", 1])],
        [helper.make_tensor_value_info("y", F, ["N", width])],
        [numpy_helper.from_array(np.array([1, width], np.int64), "shape")],
    )
    return _serialize(graph)


def _serialize(graph: Any) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


def rows64(n: int = 2) -> np.ndarray:
    return np.full((n, 64), 0.5, np.float32)


def peak_rss(pid: int) -> int:
    """The most resident memory the process has had, bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise LookupError("no VmHWM")


# -- 1. a model that reads the node's disk ---------------------------------------------------
@pytest.mark.parametrize(
    "attack", [by_initializer, by_loop_body, by_constant_attribute], ids=lambda a: a.__name__
)
def test_a_model_that_reads_the_nodes_files_is_refused(
    hostile: Hostile, digits: Digits, attack: Any
) -> None:
    # Prepare: a secret beside devnet.json, in the node's working directory
    node = hostile.default
    (node.directory / "secret.txt").write_bytes(SECRET)
    keys = json.loads((node.directory / "devnet.json").read_text())
    jc = channel(hostile, node, 3, digits, deposit=10 * TOKEN)
    model = upload(jc, attack())

    # Execute: as a job, on the node that meters too
    sent = jc.submit(job(jc, model, np.zeros((1, 1), np.float32), 10**6))
    other = channel(hostile, hostile.metered, 3, digits, deposit=10 * TOKEN)
    upload(other, attack())
    sent_metered = other.submit(job(other, model, np.zeros((1, 1), np.float32), 10**6))

    # Assert: refused before anything ran, and nothing of the node's files came back
    for answer in (sent, sent_metered):
        assert answer.status == 400, answer.response.text
        assert "external data" in answer.reason
        text = answer.response.content
        assert SECRET[:4] not in text and b"TOPS" not in text
        assert not any(a["private_key"][2:10].encode() in text for a in keys["accounts"])
    jc.run()  # the node serves the channel as before


# -- 2. free compute ---------------------------------------------------------------------------
def test_a_loop_on_a_node_that_does_not_meter_is_refused_naming_it(
    hostile: Hostile, digits: Digits
) -> None:
    jc = channel(hostile, hostile.default, 3, digits, deposit=10 * TOKEN)
    model = upload(jc, loop_model(1000))

    sent = jc.submit(job(jc, model, rows64(), 10**9))

    assert sent.status == 400 and sent.error == "InvalidInput"
    assert "Loop" in sent.reason and "'spin'" in sent.reason


def test_a_metered_job_is_billed_by_its_cpu_time_within_max_units(
    hostile: Hostile, digits: Digits
) -> None:
    # Prepare: the same Loop, ten times longer in the second model; the short one run
    # first on every worker, unbilled here, so that neither measured job carries a
    # worker's one-off start (onnxruntime's import, over a CPU-second: on a cold worker
    # the short job was once billed more than the long one)
    jc = channel(hostile, hostile.metered, 4, digits)
    short, long = upload(jc, loop_model(50_000)), upload(jc, loop_model(500_000))
    floor = count_flops(loop_model(50_000)) * 2
    max_units = 100 * RATE  # a budget of 100 CPU-seconds (the node's job timeout is less)
    for _ in range(3):  # the node's workers, and one more
        body = job(jc, short, rows64(), max_units)
        assert settle(jc, body, jc.submit(body)).status == "ok"

    # Execute
    body = job(jc, short, rows64(), max_units)
    a = settle(jc, body, jc.submit(body))
    body = job(jc, long, rows64(), max_units)
    b = settle(jc, body, jc.submit(body))

    # Assert: billed far above the static floor, more for more work, within max_units
    assert a.metered and b.metered and a.status == b.status == "ok"
    assert floor * 10 < a.units < b.units <= max_units
    np.testing.assert_allclose(array_from_npy(output_bytes(jc, a)), rows64())
    assert hand_over_voucher(jc)  # the node takes the voucher that covers both


def test_a_job_that_runs_past_its_budget_is_stopped_and_billed(
    hostile: Hostile, digits: Digits
) -> None:
    # Prepare: a Loop of a minute or so, and max_units that buy a fifth of a CPU-second
    jc = channel(hostile, hostile.metered, 5, digits)
    model = upload(jc, loop_model(60_000_000))
    max_units = RATE // 5

    # Execute
    body = job(jc, model, rows64(), max_units)
    sent = jc.submit(body)
    result = settle(jc, body, sent)

    # Assert: 422, a signed failed result billed at most max_units, which a voucher covers
    assert sent.status == 422 and result.status == "failed"
    assert result.error is not None and result.error.startswith("JobTimeout")
    assert result.units <= max_units
    assert hand_over_voucher(jc)
    jc.run()  # and the channel goes on


def test_one_clients_long_jobs_do_not_make_anothers_wait_behind_all_of_them(
    hostile: Hostile, digits: Digits
) -> None:
    # Prepare: an attacker with a Loop that runs a CPU-second or more, a victim with digits
    node = hostile.metered
    wait_for_stats(hostile, node, running=0, queued=0)  # no earlier test's jobs left
    attacker = channel(hostile, node, 6, digits)
    victim = channel(hostile, node, 7, digits)
    model = upload(attacker, loop_model(LONG_TRIPS))
    victim.run()  # the victim's model is counted and its worker path warm
    bodies = [
        job(attacker, model, rows64(), 100 * RATE, seq=attacker.channel.next_seq + i)
        for i in range(CAP)
    ]
    done: list[str] = []
    answers: dict[int, Sent] = {}

    def attack(i: int) -> None:
        answers[i] = attacker.submit(bodies[i])
        done.append(f"attacker-{i}")

    # Execute: four long jobs (two run, two wait), then the victim's tiny one
    threads = [threading.Thread(target=attack, args=(i,)) for i in range(CAP)]
    for thread in threads:
        thread.start()
    wait_for_stats(hostile, node, running=2, queued=CAP - 2)
    victim.run()
    done.append("victim")
    for thread in threads:
        thread.join()

    # Assert: the victim waited for a worker, not for the attacker's queue
    assert done.index("victim") <= 2, done
    for i in range(CAP):
        assert settle(attacker, bodies[i], answers[i]).status == "ok"


def test_a_client_over_its_job_cap_is_answered_429_and_may_send_the_job_again(
    hostile: Hostile, digits: Digits
) -> None:
    # Prepare: CAP long jobs of one client in flight
    node = hostile.metered
    wait_for_stats(hostile, node, running=0, queued=0)  # no earlier test's jobs left
    attacker = channel(hostile, node, 6, digits)
    model = upload(attacker, loop_model(LONG_TRIPS))
    bodies = [
        job(attacker, model, rows64(), 100 * RATE, seq=attacker.channel.next_seq + i)
        for i in range(CAP + 1)
    ]
    answers: dict[int, Sent] = {}

    def attack(i: int) -> None:
        answers[i] = attacker.submit(bodies[i])

    threads = [threading.Thread(target=attack, args=(i,)) for i in range(CAP)]
    for thread in threads:
        thread.start()
    wait_for_stats(hostile, node, running=2, queued=CAP - 2)

    # Execute: one more
    over = attacker.submit(bodies[CAP])
    for thread in threads:
        thread.join()
    again = attacker.submit(bodies[CAP])  # the same job, once the others are done

    # Assert
    assert over.status == 429 and over.error == "ClientBusy", over.response.text
    for i in range(CAP):
        settle(attacker, bodies[i], answers[i])
    assert settle(attacker, bodies[CAP], again).status == "ok"


def wait_for_stats(h: Hostile, node: Node, *, running: int, queued: int) -> None:
    deadline = time.monotonic() + STATS_TIMEOUT
    while True:
        stats = h.net.http.get(f"{node.url}/v1/stats").json()["executor"]
        if stats["running"] == running and stats["queued"] == queued:
            return
        assert time.monotonic() < deadline, f"executor never reached {running}/{queued}: {stats}"
        time.sleep(0.01)


# -- 3. outputs ----------------------------------------------------------------------------------
def test_an_output_over_the_cap_is_refused_in_the_worker_and_billed(
    hostile: Hostile, digits: Digits
) -> None:
    # Prepare: 104 bytes of model that writes 256 MiB for one row
    node = hostile.default
    jc = channel(hostile, node, 3, digits)
    width = 64 * 2**20
    size = width * 4  # float32
    model = expand_model(width)
    digest = upload(jc, model)
    jc.run()  # warm: the node's memory below is what the attack adds
    pid = hostile.net.process(node).pid
    before = peak_rss(pid)

    # Execute
    body = job(jc, digest, np.ones((1, 1), np.float32), count_flops(model))
    sent = jc.submit(body)
    result = settle(jc, body, sent)

    # Assert: a billed failure, and the node never held the output
    assert sent.status == 422 and result.error is not None
    assert result.error.startswith("OutputTooLarge")
    assert peak_rss(pid) - before < size // 4  # generous: the node holds none of it
    info = hostile.net.http.get(f"{node.url}/v1/info").json()["limits"]
    assert info["max_output_bytes"] < size and info["max_inline_output_bytes"] > 0
    jc.run()


def test_a_large_output_comes_back_as_a_blob_whose_hash_checks(
    hostile: Hostile, digits: Digits
) -> None:
    # Prepare: an output of 8 MiB, over the inline cap and under the output cap
    jc = channel(hostile, hostile.default, 4, digits)
    width = 2 * 2**20
    digest = upload(jc, expand_model(width))
    x = np.array([[1.5]], np.float32)

    # Execute
    body = job(jc, digest, x, count_flops(expand_model(width)))
    result = settle(jc, body, jc.submit(body))  # downloads the blob and checks its hash

    # Assert
    assert result.status == "ok" and result.output_npy is None and result.output_blob is not None
    output = array_from_npy(output_bytes(jc, result), max_bytes=16 * 2**20)
    assert output.shape == (1, width) and np.all(output == 1.5)
