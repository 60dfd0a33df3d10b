"""`idlegrid model register` and `idlegrid model show` against a devnet (anvil), run as a
user runs them: a model's lineage goes on chain once and reads back with its ancestors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from idlegrid import BlobCorrupt, InvalidInput
from idlegrid.chain import ModelRegistryClient
from idlegrid.client import Client, ModelStore

from .conftest import Digits, Network


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "idlegrid.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    proc.stderr = " ".join(proc.stderr.split())  # the console wraps long lines
    return proc


def test_a_model_and_its_fine_tune_are_registered_and_shown(
    network: Network, tmp_path: Path
) -> None:
    # Prepare: two model files; the second is fine-tuned from the first
    base, tuned = tmp_path / "base.onnx", tmp_path / "tuned.onnx"
    base.write_bytes(b"base model bytes " + tmp_path.name.encode())
    tuned.write_bytes(b"tuned model bytes " + tmp_path.name.encode())
    where = ["--network", str(network.info.path)]
    base_hash = hashlib.sha256(base.read_bytes()).hexdigest()
    spec = "ab" * 32

    # Execute
    first = _cli("model", "register", str(base), *where, "--spec-hash", spec, "--json")
    second = _cli(
        "model", "register", str(tuned), *where, "--parent", base_hash, "--account", "2",
        "--json",
    )  # fmt: skip
    again = _cli("model", "register", str(base), *where, "--spec-hash", "cd" * 32)
    shown = _cli("model", "show", json.loads(second.stdout)["model"], *where, "--json")

    # Assert: both on chain, the first record stands, the lineage reads back
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert again.returncode != 0 and "already registered" in again.stderr
    lineage = json.loads(shown.stdout)["lineage"]
    assert [r["model"] for r in lineage] == [json.loads(second.stdout)["model"], base_hash]
    assert lineage[0]["parent"] == base_hash and lineage[1]["spec_hash"] == spec
    assert lineage[0]["registrant"] == network.account(2).address
    models = network.ledger.client("models", ModelRegistryClient)
    assert models.registered(bytes.fromhex(base_hash))


def test_bad_model_commands_say_what_is_wrong(network: Network, tmp_path: Path) -> None:
    where = ["--network", str(network.info.path)]

    missing = _cli("model", "register", str(tmp_path / "nope.onnx"), *where)
    bad_hash = _cli("model", "show", "not-a-hash", *where)
    unknown = _cli("model", "show", "ef" * 32, *where)

    assert missing.returncode != 0 and "cannot read" in missing.stderr
    assert bad_hash.returncode != 0 and "must be a sha256" in bad_hash.stderr
    assert unknown.returncode != 0 and "is not registered" in unknown.stderr


def test_a_trained_model_shows_its_training_run_and_verification(
    network: Network, tmp_path: Path
) -> None:
    # Prepare: a run committed, its seed drawn, verified (one of 5 checked intervals
    # failed), and the model it trained registered from it
    models = network.ledger.client("models", ModelRegistryClient)
    client, trainer = network.account(0), network.account(1)  # 1: a provider, no tx
    run = hashlib.sha256(b"run " + tmp_path.name.encode()).digest()
    model = hashlib.sha256(b"trained " + tmp_path.name.encode()).digest()
    spec, data, root = (hashlib.sha256(w.encode()).digest() for w in ("spec", "data", "root"))
    committed = models.commit_training(
        run, spec_hash=spec, data_hash=data, checkpoints_root=root, intervals=40, sender=client
    )
    seed = models.wait_seed(run, sender=client, timeout_s=60)
    models.record_verification(run, passed=False, checked=5, failed=1, sender=client)
    models.register_trained(model, run=run, trainer=trainer.address, sender=client)
    where = ["--network", str(network.info.path)]

    # Execute
    shown = _cli("model", "show", model.hex(), *where, "--json")
    text = _cli("model", "show", model.hex(), *where)

    # Assert: the commitment and the outcome, in JSON and in words
    assert shown.returncode == 0 and text.returncode == 0, shown.stderr + text.stderr
    [record] = json.loads(shown.stdout)["lineage"]
    assert record["run"] == run.hex() and record["checkpoints_root"] == root.hex()
    assert record["trainer"] == trainer.address
    assert record["training"] == {
        "committer": client.address,
        "block": committed.block,
        "intervals": 40,
        "seed": seed.hex(),
        "outcome": "failed",
        "checked": 5,
        "failed": 1,
    }
    assert f"training run {run.hex()}" in text.stdout
    assert "verification: failed (5 intervals checked, 1 failed" in " ".join(text.stdout.split())


def test_a_registered_model_runs_by_its_hash_from_the_model_store(
    network: Network, digits: Digits, tmp_path: Path
) -> None:
    # Prepare: the digits model registered with the CLI, which keeps it in the store
    model, store = tmp_path / "digits.onnx", tmp_path / "store"
    model.write_bytes(digits.model)
    where = ["--network", str(network.info.path)]
    registered = _cli("model", "register", str(model), *where, "--store", str(store))
    assert registered.returncode == 0 or "already registered" in registered.stderr
    x = digits.x_test[:20]
    np.save(tmp_path / "x.npy", x)

    # Execute: by hash through the SDK, and through the CLI
    with Client.from_devnet(network.info.path, 0) as client:
        labels = client.infer(f"sha256:{digits.digest}", x, store=ModelStore(store))
    ran = _cli(
        "infer", "--model", digits.digest, "--input", str(tmp_path / "x.npy"),
        "--output", str(tmp_path / "y.npy"), "--store", str(store), *where,
    )  # fmt: skip

    # Assert: onnxruntime's labels, from the stored model
    np.testing.assert_array_equal(labels, digits.labels[:20])
    assert ran.returncode == 0, ran.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), digits.labels[:20])
    assert (store / digits.digest).read_bytes() == digits.model


def test_a_model_by_hash_is_refused_unless_registered_stored_and_intact(
    network: Network, tmp_path: Path
) -> None:
    # Prepare: a model in the store the chain does not know; a registered one the store
    # lacks; a registered one whose stored file was changed on disk
    store = ModelStore(tmp_path / "store")
    models = network.ledger.client("models", ModelRegistryClient)
    owner = network.account(0)
    unknown = store.put(b"never registered " + tmp_path.name.encode())
    absent = hashlib.sha256(b"registered, not stored " + tmp_path.name.encode()).digest()
    models.register(absent, sender=owner)
    tampered = store.put(b"registered, then tampered " + tmp_path.name.encode())
    models.register(bytes.fromhex(tampered), sender=owner)
    store.path(tampered).write_bytes(b"something else")
    x = np.zeros((2, 64), dtype=np.float32)

    # Execute / Assert: each refused before any job, with a reason
    with Client.from_devnet(network.info.path, 0) as client:
        with pytest.raises(InvalidInput, match="not registered on chain"):
            client.infer(unknown, x, store=store)
        with pytest.raises(InvalidInput, match="not in the model store"):
            client.infer(absent.hex(), x, store=store)
        with pytest.raises(BlobCorrupt):
            client.infer("sha256:" + tampered, x, store=store)
    assert not store.path(tampered).exists()  # the bad copy is gone
    assert unknown in store and client.last_report.shards == 0
