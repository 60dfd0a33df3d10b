"""The oracle end to end: real provider processes (``node start --oracle``, as
``devnet up`` starts them) on anvil read a request, run the model in onnxruntime,
agree off chain and deliver one answer to the example vault."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest

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
from idlegrid.protocol import Account

from ..conftest import fresh_cache
from ..oracle.test_relay import B, W, _linear_model
from .conftest import Network, put_blob

pytestmark = pytest.mark.anvil

VAULT = Path(__file__).parents[2] / "examples" / "oracle" / "RiskVault.vy"
WAIT_S = 90.0


class _Vault(ContractClient):
    _name = "RiskVault"


def funded_vault(network: Network, owner: Account) -> _Vault:
    """The example model registered (once) and on every node, and a RiskVault asking
    for it, holding 10 tokens."""
    model = _linear_model()
    digest = hashlib.sha256(model).digest()
    ledger = network.ledger
    models = ledger.client("models", ModelRegistryClient)
    if not models.registered(digest):
        models.register(digest, sender=owner)
    for node in network.nodes:
        put_blob(network, node, model, account=owner)
    oracle = ledger.client("oracle", OracleClient)
    artifact = compile_file(VAULT)
    address = deploy_contract(
        ledger.backend, "RiskVault", [oracle.address, ledger.token.address, digest, 0],
        sender=owner, artifact=artifact,
    )  # fmt: skip
    vault = _Vault(ledger.backend, address, abi=artifact.abi)
    ledger.token.transfer(vault.address, 10 * TOKEN, sender=owner)
    return vault


def test_provider_nodes_answer_a_vault_s_request_by_themselves(network: Network) -> None:
    # Prepare: a registered model, uploaded to every provider; a vault with tokens
    owner = network.account(len(network.info.accounts) - 1)
    ledger = network.ledger
    vault = funded_vault(network, owner)
    oracle = ledger.client("oracle", OracleClient)
    x = [0.2, 0.1, 0.3]

    # Execute: the vault asks; nobody but the provider nodes acts
    asked = vault._send("rebalance", to_fixed(x), 3 * TOKEN, sender=owner)
    (req,) = oracle.requests(asked.block, asked.block)
    deadline = time.monotonic() + WAIT_S
    while oracle.is_open(req.request_id) and time.monotonic() < deadline:
        time.sleep(0.5)

    # Assert: one delivery, with the model's answer, the committee paid
    assert not oracle.is_open(req.request_id), "no provider delivered within the wait"
    expected = float((np.array(x, np.float32) @ W + B)[0])
    assert abs(float(from_fixed([vault._call("risk")])[0]) - expected) < 1e-6
    assert vault._call("pending") == 0 and vault._call("rebalances") >= 1
    ((_, event),) = oracle.logs("Fulfilled", asked.block, ledger.backend.block_number(),
                                request_id=req.request_id)  # fmt: skip
    assert event["callback_ok"] and sorted(event["paid"]) == sorted(oracle.committee(req))
    assert sum(oracle.owed(a) for a in event["paid"]) == 3 * TOKEN


def test_a_person_registers_a_model_and_asks_the_oracle_from_the_command_line(
    network: Network, tmp_path: Path
) -> None:
    import json
    import os
    import subprocess
    import sys

    # Prepare: a model nobody registered yet
    bias = np.array([-0.5], np.float32)
    path = tmp_path / "risk.onnx"
    path.write_bytes(_linear_model(bias))
    cli = [sys.executable, "-m", "idlegrid.cli"]
    where = ["--network", str(network.info.path)]
    env = {**os.environ, "IDLEGRID_CACHE": str(fresh_cache(tmp_path / "cache"))}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args, *where], capture_output=True, text=True, env=env, timeout=300,
            check=False,
        )  # fmt: skip

    # Execute: register and upload, then ask
    registered = run("model", "register", str(path), "--json")
    assert registered.returncode == 0, registered.stderr[-2000:]
    doc = json.loads(registered.stdout)
    asked = run("oracle", "ask", doc["model"], "--input", "0.2,0.1,0.3", "--json")

    # Assert: on every provider, and the quorum's answer is the model's
    assert set(doc["uploaded"].values()) == {"ok"} and len(doc["uploaded"]) == len(network.nodes)
    assert asked.returncode == 0, asked.stderr[-2000:]
    answer = json.loads(asked.stdout)
    expected = float((np.array([0.2, 0.1, 0.3], np.float32) @ W + bias)[0])
    assert abs(answer["output"][0] - expected) < 1e-6 and len(answer["paid"]) == 3


def test_a_zero_knowledge_answer_from_the_command_line(network: Network, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("ezkl")
    from idlegrid.bench._oracle import risk_model
    from idlegrid.workloads import OnnxRunner

    # Prepare: a model registered and uploaded, then set up for proofs (the provider
    # processes find its keys in the same cache directory)
    model = risk_model(11)
    path = tmp_path / "risk.onnx"
    path.write_bytes(model)
    cli = [sys.executable, "-m", "idlegrid.cli"]
    where = ["--network", str(network.info.path)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args, *where], capture_output=True, text=True, env=dict(os.environ),
            timeout=600, check=False,
        )  # fmt: skip

    registered = run("model", "register", str(path), "--json")
    assert registered.returncode == 0, registered.stderr[-2000:]
    digest = json.loads(registered.stdout)["model"]
    setup = run("oracle", "zk-setup", str(path), "--json")
    assert setup.returncode == 0, setup.stderr[-2000:]
    row = [0.3, -1.2, 0.8, 0.05, 1.5, -0.4, 0.9, -2.0]

    # Execute: a person asks in zero-knowledge mode
    asked = run("oracle", "ask", digest, "--input", ",".join(map(str, row)), "--mode", "1",
                "--json")  # fmt: skip

    # Assert: one provider proved it; the answer is onnxruntime's within quantisation
    assert asked.returncode == 0, asked.stderr[-2000:]
    answer = json.loads(asked.stdout)
    floats = np.asarray(OnnxRunner(cache_size=1).run_first(model, np.array([row], np.float32)))
    assert len(answer["paid"]) == 1
    assert np.abs(np.array(answer["output"]) - floats.reshape(-1)).max() < 2e-3
    assert json.loads(setup.stdout)["verifier"] == network.ledger.client(
        "oracle", OracleClient
    ).verifier(bytes.fromhex(digest))
