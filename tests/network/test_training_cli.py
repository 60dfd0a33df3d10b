"""`idlegrid train` on real nodes (anvil, node processes serving ``--train``): a tiny job
trained, verified by proof-of-learning and written out; a run stopped after its first
segment (Ctrl-C) keeps its checkpoint and resumes with ``--resume`` to the weights of
an uninterrupted run, verified across both parts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml  # type: ignore[import-untyped]

pytest.importorskip("torch")

from typer.testing import CliRunner

from idlegrid import cli
from idlegrid.client import Progress

from .conftest import DEMO_CLIENT, Network, start_network
from .test_training import DATA

JOB = {
    "model": {"family": "mlp", "inputs": 64, "hidden": [16], "classes": 10},
    "lr": 0.01,
    "epochs": 2,
    "batch": 32,
    "seed": 7,
    "checks": 8,
}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    network = start_network(tmp_path_factory.mktemp("training-cli"), node_flags=["--train"])
    try:
        yield network
    finally:
        network.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("job")
    spec, data = directory / "job.yaml", directory / "digits.npz"
    spec.write_text(yaml.safe_dump(JOB))
    data.write_bytes(DATA)
    return spec, data


def train(net: Network, inputs: tuple[Path, Path], output: Path, *more: str) -> Any:
    spec, data = inputs
    args = ["train", str(spec), "--data", str(data), "--output", str(output), "--json"]
    args += ["--network", str(net.info.path), "--account", str(DEMO_CLIENT), *more]
    return CliRunner().invoke(cli.app, args)


@pytest.fixture(scope="module")
def trained(
    net: Network, inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Any]:
    """The job trained by the command, uninterrupted: its output directory and result."""
    output = tmp_path_factory.mktemp("trained") / "model"
    return output, train(net, inputs, output)


def test_the_command_trains_verifies_and_writes_the_model(trained: tuple[Path, Any]) -> None:
    # Execute (the fixture)
    output, result = trained

    # Assert: the files, the model named by its ONNX file's hash, verified
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    files = {k: Path(v) for k, v in facts["files"].items()}
    assert set(files) == {"weights", "onnx", "metrics", "lineage", "checkpoint"}
    assert all(p.is_file() and p.parent == output for p in files.values())
    assert hashlib.sha256(files["onnx"].read_bytes()).hexdigest() == facts["model"]
    assert facts["steps"] == 2 * (1400 // 32)
    verification = facts["verification"]
    assert verification["ok"] is True and verification["checked"] == 8
    assert verification["failed"] == [] and facts["disputes"] == []
    assert facts["lineage"][0]["model"] == facts["model"]
    assert 0 < facts["final"]["val_accuracy"] <= 1 and "loss" in facts["final"]
    assert json.loads(files["lineage"].read_text())["model"] == facts["model"]
    assert not (output / cli.RESUME_FILE).exists()


def test_a_stopped_run_resumes_to_the_weights_of_an_uninterrupted_one(
    net: Network,
    inputs: tuple[Path, Path],
    trained: tuple[Path, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: Ctrl-C once the first segment is in
    show = cli._TrainDisplay.__call__

    def interrupt(self: cli._TrainDisplay, event: Any) -> None:
        show(self, event)
        if isinstance(event, Progress):
            raise KeyboardInterrupt

    whole, uninterrupted = trained
    monkeypatch.setattr(cli._TrainDisplay, "__call__", interrupt)

    # Execute
    stopped = train(net, inputs, tmp_path / "run")
    monkeypatch.setattr(cli._TrainDisplay, "__call__", show)
    resumed = train(net, inputs, tmp_path / "run", "--resume", str(tmp_path / "run"))

    # Assert: stopped with its checkpoint kept, then finished where an uninterrupted run
    # finishes, verified over both parts
    assert stopped.exit_code == 130, stopped.output
    assert resumed.exit_code == 0 and uninterrupted.exit_code == 0, resumed.output
    facts = json.loads(resumed.stdout)
    assert facts["steps"] == 2 * (1400 // 32)
    assert facts["verification"]["ok"] is True
    assert facts["model"] == json.loads(uninterrupted.stdout)["model"]
    np.testing.assert_array_equal(
        np.load(tmp_path / "run" / "checkpoint.npy"), np.load(whole / "checkpoint.npy")
    )
    assert not (tmp_path / "run" / cli.RESUME_FILE).exists()
