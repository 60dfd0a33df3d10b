"""`idlegrid model register` and `idlegrid model show` against a devnet (anvil), run as a
user runs them: a model's lineage goes on chain once and reads back with its ancestors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from idlegrid.chain import ModelRegistryClient

from .conftest import Network


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
