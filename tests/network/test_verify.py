"""Verification on real node processes: a cheating node (each mode of the testing aid)
is caught by ``audit`` and by ``quorum``, its shards are redone and its evidence kept,
while honest nodes run with 1, 2 and 4 onnxruntime threads are never accused.

One devnet for the module: nodes 1 and 2 are honest with 2 and 4 threads, node 3 is
restarted as each kind of cheater in turn (and honest, with 1 thread, for the last test).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import numpy as np
import pytest

from idlegrid.bench import softmax_model
from idlegrid.client import Client
from idlegrid.protocol import address_bytes as raw_address
from idlegrid.protocol import array_from_npy, npy_bytes, receipt_digest, recover_digest
from idlegrid.workloads import CPU, OnnxRunner

from .conftest import DEMO_CLIENT, Network, start_network

ROWS, FEATURES, PER_SHARD = 48, 64, 4


MODEL = softmax_model()  # a float output: the noise lie must hide under the tolerance
X = np.random.default_rng(6).random((ROWS, FEATURES), dtype=np.float32)
TRUTH = OnnxRunner(providers=[CPU], threads=1).run_first(MODEL, X)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    network = start_network(tmp_path_factory.mktemp("verify"))
    try:
        for node, threads in zip(network.nodes[:2], ("2", "4"), strict=True):
            network.replace(node, [*node.argv, "--threads", threads])
        yield network
    finally:
        network.close()


def _as(net: Network, mode: str | None) -> str:
    """Restart node 3 as a cheater on every job (``mode``), or honest; its address."""
    node = net.nodes[2]
    argv = [*node.argv, "--threads", "1"]
    if mode is not None:
        argv += ["--cheat-rate", "1", "--cheat-mode", mode, "--cheat-seed", "1"]
    net.replace(node, argv)
    return node.address


def _batch(net: Network, **verify: object) -> tuple[np.ndarray, Client]:
    client = Client.from_devnet(net.info.path, DEMO_CLIENT)
    try:
        out = client.infer(MODEL, X, rows_per_shard=PER_SHARD, **verify)  # type: ignore[arg-type]
    except BaseException:
        client.close()
        raise
    return out, client


@pytest.mark.parametrize(
    ("mode", "verify"),
    [
        ("random", {"verify": "audit"}),
        ("noise", {"verify": "audit"}),
        ("skip", {"verify": "quorum", "k": 3}),
        ("stale", {"verify": "audit", "local": True}),
    ],
)
def test_a_cheater_is_caught_and_the_result_is_right(
    net: Network, mode: str, verify: dict[str, object]
) -> None:
    # Prepare
    cheater = _as(net, mode)

    # Execute
    out, client = _batch(net, **verify)
    try:
        report, evidence = client.last_report, client.evidence

        # Assert: the right result, the cheater caught and nobody else
        assert client.audit.floor > 0
        assert [e.provider for e in evidence] == [cheater] and report.caught == [cheater]
        assert np.allclose(out, TRUTH, rtol=1e-4, atol=1e-5)

        # Assert: the evidence is a lie the cheater signed for, on the job's inputs
        proof = evidence[0]
        assert proof.kind == "onnx" and proof.receipts
        assert not np.allclose(proof.output, proof.reference, rtol=1e-4, atol=1e-5)
        signed = proof.receipts[-1]
        sent = base64.b64decode(signed.request.input_npy)
        assert np.array_equal(array_from_npy(sent), proof.inputs)
        assert signed.receipt.input_hash == hashlib.sha256(sent).digest()
        assert signed.receipt.result_hash == hashlib.sha256(npy_bytes(proof.output)).digest()
        signer = recover_digest(
            receipt_digest(client._node, signed.receipt.leaf()),
            bytes.fromhex(signed.signature[2:]),
        )
        assert signer == raw_address(cheater)

        # Assert: the testing aid counts its lies where a benchmark can read them
        stats = net.http.get(f"{net.nodes[2].url}/v1/stats").json()
        assert stats["cheat"]["mode"] == mode and stats["cheat"]["lies"] >= 1
        honest = net.http.get(f"{net.nodes[0].url}/v1/stats").json()
        assert "cheat" not in honest
    finally:
        client.close()


def test_honest_nodes_with_1_2_4_threads_are_never_accused(net: Network) -> None:
    # Prepare: node 3 honest again (1 thread); nodes 1 and 2 run 2 and 4 threads
    _as(net, None)

    # Execute: every shard checked by a quorum of all three
    out, client = _batch(net, verify="quorum", k=3)
    try:
        report = client.last_report

        # Assert
        assert report.caught == [] and client.evidence == []
        assert report.audited == report.shards
        assert np.allclose(out, TRUTH, rtol=1e-4, atol=1e-5)
    finally:
        client.close()
