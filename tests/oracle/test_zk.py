"""The oracle's zero-knowledge mode with real ezkl proofs and the ezkl-generated Halo2
verifier (compiled with npm's solc) on the embedded EVM and on anvil: the vault gets a
proven answer; a forged proof, a proof for another model, another output or another
input are refused on chain."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from idlegrid import ContractReverted
from idlegrid.bench._oracle import risk_model
from idlegrid.chain import (
    TOKEN,
    ModelRegistryClient,
    OracleClient,
    compile_file,
    deploy_contract,
    from_fixed,
    to_fixed,
)
from idlegrid.chain._clients import ContractClient
from idlegrid.oracle import ZkArtifacts, deploy_zk_verifier, zk_prove, zk_setup
from idlegrid.protocol import Account
from idlegrid.workloads import OnnxRunner

from ..conftest import Env

pytest.importorskip("ezkl")

MAX = 2**256 - 1
VAULT = Path(__file__).parents[2] / "examples" / "oracle" / "RiskVault.vy"
ROW = np.array([0.3, -1.2, 0.8, 0.05, 1.5, -0.4, 0.9, -2.0])


@dataclass(frozen=True)
class Circuit:
    model: bytes
    digest: bytes
    artifacts: ZkArtifacts


@pytest.fixture(scope="module")
def circuits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Circuit, Circuit]:
    """Two models of the same shape, each set up once (keys, SRS, verifier)."""
    out = []
    for seed in (7, 8):
        model = risk_model(seed)
        artifacts = zk_setup(model, tmp_path_factory.mktemp(f"zk-{seed}"))
        out.append(Circuit(model, hashlib.sha256(model).digest(), artifacts))
    return out[0], out[1]


def test_circuits_of_one_size_are_set_up_with_one_srs(circuits: tuple[Circuit, Circuit]) -> None:
    a, b = (c.artifacts for c in circuits)
    assert a.logrows == b.logrows
    assert (a.directory / "kzg.srs").read_bytes() == (b.directory / "kzg.srs").read_bytes()
    assert (a.directory / "vk.key").read_bytes() != (b.directory / "vk.key").read_bytes()


Prove = Callable[[Circuit, np.ndarray], tuple[list[int], bytes]]


@pytest.fixture(scope="module")
def prove() -> Prove:
    """``zk_prove`` of a circuit on an input, each pair proven once for the module: every
    test asks about the same row, and a proof takes seconds."""
    proofs: dict[tuple[bytes, bytes], tuple[list[int], bytes]] = {}

    def proven(c: Circuit, x: np.ndarray) -> tuple[list[int], bytes]:
        key = (c.digest, np.ascontiguousarray(x, dtype=np.float64).tobytes())
        if key not in proofs:
            outputs, proof, _ = zk_prove(c.artifacts, x)
            proofs[key] = (list(outputs), bytes(proof))
        return proofs[key]

    return proven


class _Vault(ContractClient):
    _name = "RiskVault"


@dataclass
class World:
    env: Env
    oracle: OracleClient
    vault: _Vault
    owner: Account
    prover: Account


@pytest.fixture
def world(env: Env, circuits: tuple[Circuit, Circuit]) -> Iterator[World]:
    oracle = env.ledger.client("oracle", OracleClient)
    models = env.ledger.client("models", ModelRegistryClient)
    owner, prover = env.users[0], env.users[1]
    for c in circuits:
        models.register(c.digest, sender=owner)
        adapter = deploy_zk_verifier(env.backend, c.artifacts, c.digest, sender=owner)
        models.link_verifier(c.digest, adapter, sender=owner)
    env.token.approve(env.registry.address, MAX, sender=prover)
    env.registry.register("http://p", 1, b"\x01" * 32, 200 * TOKEN, sender=prover)
    artifact = compile_file(VAULT)
    address = deploy_contract(
        env.backend, "RiskVault", [oracle.address, env.token.address, circuits[0].digest, 1],
        sender=owner, artifact=artifact,
    )  # fmt: skip
    vault = _Vault(env.backend, address, abi=artifact.abi)
    env.token.transfer(vault.address, 10 * TOKEN, sender=owner)
    yield World(env, oracle, vault, owner, prover)
    env.conservation(vault.address)


def _ask(w: World) -> object:
    asked = w.vault._send("rebalance", to_fixed(ROW), TOKEN, sender=w.owner)
    (req,) = w.oracle.requests(asked.block, asked.block)
    return req


def _output_18(outputs: list[int], artifacts: ZkArtifacts) -> list[int]:
    return [q * (10**18 >> artifacts.output_scale) for q in outputs]


def test_a_proven_answer_reaches_the_vault_and_pays_the_prover(
    world: World, circuits: tuple[Circuit, Circuit], prove: Prove
) -> None:
    # Prepare
    w, c = world, circuits[0]
    req = _ask(w)
    outputs, proof = prove(c, from_fixed(req.input))  # type: ignore[attr-defined]

    # Execute
    done = w.oracle.fulfill_proof(req, _output_18(outputs, c.artifacts), proof, sender=w.prover)  # type: ignore[arg-type]

    # Assert: the vault holds the proven output, within ezkl's quantisation of onnxruntime's
    risk = w.vault._call("risk")
    floats = np.asarray(OnnxRunner(cache_size=1).run_first(c.model, ROW.astype(np.float32)[None]))
    expected = min(max(float(floats.reshape(-1)[0]), 0.0), 1.0)
    assert abs(risk / 1e18 - expected) < 2e-3
    (event,) = w.oracle._events("Fulfilled", done)
    assert event["callback_ok"] and event["paid"] == [w.prover.address]
    assert w.oracle.owed(w.prover.address) == TOKEN


def test_forged_and_misdirected_proofs_are_refused_on_chain(
    world: World, circuits: tuple[Circuit, Circuit], prove: Prove
) -> None:
    # Prepare: a true proof for the request, and one for the other model
    w, c, other = world, circuits[0], circuits[1]
    req = _ask(w)
    x = from_fixed(req.input)  # type: ignore[attr-defined]
    outputs, proof = prove(c, x)
    theirs, their_proof = prove(other, x)
    answer = _output_18(outputs, c.artifacts)
    forged = bytearray(proof)
    forged[100] ^= 1

    # Execute / Assert: each is refused, the request stays open for the true one
    for output, p in (
        (answer, bytes(forged)),  # a bit flipped
        (_output_18(theirs, other.artifacts), their_proof),  # another model's proof
        ([answer[0] + (10**18 >> c.artifacts.output_scale), answer[1]], proof),  # another output
        ([answer[0] + 1, answer[1]], proof),  # not a value the circuit can give
    ):
        with pytest.raises(ContractReverted, match="proof does not verify"):
            w.oracle.fulfill_proof(req, output, p, sender=w.prover)  # type: ignore[arg-type]
    stranger = w.env.users[5]
    with pytest.raises(ContractReverted, match="only an active provider"):
        w.oracle.fulfill_proof(req, answer, proof, sender=stranger)  # type: ignore[arg-type]
    assert w.oracle.is_open(req.request_id)  # type: ignore[attr-defined]
    w.oracle.fulfill_proof(req, answer, proof, sender=w.prover)  # type: ignore[arg-type]
    assert not w.oracle.is_open(req.request_id)  # type: ignore[attr-defined]
