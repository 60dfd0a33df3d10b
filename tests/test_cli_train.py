"""`idlegrid train`: bad jobs and data sets are refused before any work (no network, no
output written); the packaged digits data set; a stopped run's checkpoint and how it
resumes (``TrainCheckpoint``). The end-to-end run is in tests/network/test_training_cli.py.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml  # type: ignore[import-untyped]
from typer.testing import CliRunner

from idlegrid import InvalidInput
from idlegrid.cli import _read_resume, _TrainDisplay, _write_resume, app
from idlegrid.client import Failover, Progress, TrainCheckpoint
from idlegrid.client._train import _resume_point, load_job
from idlegrid.workloads._kind_train import train_dataset

MLP = {"family": "mlp", "inputs": 64, "hidden": [16], "classes": 10}
JOB: dict[str, Any] = {"model": MLP, "epochs": 2, "batch": 32, "checks": 8}


def dataset(rows: int = 96, inputs: int = 64) -> bytes:
    rng = np.random.default_rng(0)
    x = rng.random((rows, inputs), dtype=np.float32)
    y = rng.integers(0, 10, rows)
    return train_dataset(x[:64], y[:64], x[64:], y[64:])


def write(tmp_path: Path, job: dict[str, Any], data: bytes | None = None) -> list[str]:
    """The job and data set as files; the command's arguments for them."""
    spec, npz = tmp_path / "job.yaml", tmp_path / "data.npz"
    spec.write_text(yaml.safe_dump(job))
    npz.write_bytes(dataset() if data is None else data)
    return [str(spec), "--data", str(npz), "--output", str(tmp_path / "out")]


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, ["train", *args])


@pytest.mark.parametrize(
    ("job", "data", "message"),
    [
        ({**JOB, "model": {**MLP, "family": "rnn"}}, None, "does not match any of the expected"),
        ({**JOB, "epoch": 2}, None, "epoch: Extra inputs are not permitted"),
        ({k: v for k, v in JOB.items() if k != "epochs"}, None, "exactly one of epochs"),
        (JOB, b"x, y\n1, 2\n", "the data set is not an .npz"),
        ({**JOB, "data_hash": "ab" * 32}, None, "data hash mismatch: the job names abab"),
        ({**JOB, "model": {**MLP, "inputs": 32}}, None, "x must be [n, 32]"),
        ({**JOB, "model": {**MLP, "hidden": [4096, 4096]}}, None, "parameters, more than"),
        ({**JOB, "batch": 128}, None, "fewer than a batch"),
    ],
)
def test_a_bad_job_is_refused_before_any_work(
    tmp_path: Path, job: dict[str, Any], data: bytes | None, message: str
) -> None:
    # Prepare
    args = write(tmp_path, job, data)

    # Execute: no network file exists: the job is refused before one is read
    result = invoke(args)

    # Assert
    assert result.exit_code != 0
    assert isinstance(result.exception, InvalidInput), result.output
    assert message in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_a_refusal_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # Prepare
    args = write(tmp_path, {**JOB, "data_hash": "00" * 32})

    # Execute: as a user runs it
    proc = subprocess.run(
        [sys.executable, "-m", "idlegrid.cli", "train", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Assert
    assert proc.returncode == 2
    assert "InvalidInput: data hash mismatch" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "out").exists()


def test_spec_data_and_output_are_needed(tmp_path: Path) -> None:
    result = invoke([str(tmp_path / "job.yaml")])

    assert result.exit_code == 2
    assert "--data and --output" in result.output


def test_make_digits_writes_the_packaged_data_set_for_the_jobs_family(tmp_path: Path) -> None:
    # Prepare
    cnn = {"family": "cnn", "channels": 1, "height": 8, "width": 8, "conv": [4], "classes": 10}
    spec = tmp_path / "cnn.yaml"
    spec.write_text(yaml.safe_dump({**JOB, "model": cnn}))

    # Execute
    mlp = invoke(["--make-digits", str(tmp_path / "mlp.npz")])
    shaped = invoke([str(spec), "--make-digits", str(tmp_path / "cnn.npz")])

    # Assert: 1,400 rows to train, 397 to validate, in the shapes the models take
    assert mlp.exit_code == 0 and shaped.exit_code == 0, mlp.output + shaped.output
    with np.load(tmp_path / "mlp.npz") as npz:
        assert npz["x"].shape == (1400, 64) and npz["x_val"].shape == (397, 64)
        assert npz["x"].dtype == np.float32 and set(np.unique(npz["y"])) == set(range(10))
    with np.load(tmp_path / "cnn.npz") as npz:
        assert npz["x"].shape == (1400, 1, 8, 8) and npz["y_val"].shape == (397,)


def test_the_example_job_and_its_digits_pass_the_checks(tmp_path: Path) -> None:
    # Prepare
    example = Path(__file__).parents[1] / "examples" / "train-digits.yaml"
    made = invoke([str(example), "--make-digits", str(tmp_path / "digits.npz")])
    job = yaml.safe_load(example.read_text())
    npz = tmp_path / "digits.npz"
    bad = {**job, "data_hash": hashlib.sha256(npz.read_bytes()).hexdigest(), "batch": 2000}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))

    # Execute: checked, then stopped at the network file (not here)
    ok = invoke([str(example), "--data", str(npz), "--output", str(tmp_path / "out"),
                 "--network", str(tmp_path / "none.json")])  # fmt: skip
    refused = invoke([str(tmp_path / "bad.yaml"), "--data", str(npz), "--output", "x"])

    # Assert
    assert made.exit_code == 0
    assert load_job(example).epochs == 3
    assert not isinstance(ok.exception, InvalidInput) and ok.exit_code != 0
    assert "none.json" in str(ok.exception) or "none.json" in ok.output
    assert isinstance(refused.exception, InvalidInput)
    assert "batch" in str(refused.exception)


def state(step: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([0, step, 0.5, 1, 2], dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def test_a_stopped_runs_checkpoint_is_written_and_read_back(tmp_path: Path) -> None:
    # Prepare
    point = TrainCheckpoint(8, state(8), (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32), ("", "a", "a"))

    # Execute
    _write_resume(tmp_path / "stopped", point)
    back = _read_resume(tmp_path / "stopped")
    (tmp_path / "stopped" / "checkpoint.npy").write_bytes(state(4))

    # Assert: the same checkpoint; another state under its description is refused
    assert back == point
    with pytest.raises(InvalidInput, match="not the one its description names"):
        _read_resume(tmp_path / "stopped")
    with pytest.raises(InvalidInput, match="no stopped run's checkpoint"):
        _read_resume(tmp_path / "nothing")


def test_a_run_resumes_from_a_checkpoint_on_its_grid() -> None:
    # Prepare
    job = load_job(JOB)
    point = TrainCheckpoint(8, state(8), (b"\x01" * 32,) * 3, ("", "a", "a"))

    # Execute
    resume, restored = _resume_point(point, job, 4)
    unverified = _resume_point((8, state(8)), load_job({**JOB, "verify": "none"}), 4)

    # Assert: the state goes to the run; its hashes so far to the plan
    assert resume == (8, point.state)
    assert restored == {"leaves": list(point.leaves), "holders": ["", "a", "a"]}
    assert unverified[1]["leaves"] == [bytes(32)] * 3
    with pytest.raises(InvalidInput, match="not on this run's grid"):
        _resume_point(point, job, 3)
    with pytest.raises(InvalidInput, match="resumes from a TrainCheckpoint"):
        _resume_point((8, state(8)), job, 4)


def test_the_display_shows_progress_and_failovers(capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    metrics = {"step": 43.0, "loss": 0.51, "val_loss": 0.42, "val_accuracy": 0.883}
    provider = "0xAbC0000000000000000000000000000000000001"
    events = [
        Progress(43, 86, metrics, 1000, 12 * 10**16, provider, ""),
        Failover(43, provider, "connection refused"),
    ]

    # Execute
    with _TrainDisplay(True) as display:
        for event in events:
            display(event)
    with _TrainDisplay(False) as quiet:
        quiet(events[0])

    # Assert: a line per segment and per fail-over on stderr, nothing on stdout
    seen = capsys.readouterr()
    err = " ".join(seen.err.split())  # as one line, however the console wrapped it
    assert "step 43/86" in err and "val acc 88.3%" in err and "paid 0.1200" in err
    assert "fail-over at step 43" in err and "connection refused" in err
    assert seen.out == "" and err.count("step 43/86") == 1


def test_the_client_holds_the_initial_state_interval_0_is_replayed_from() -> None:
    # Prepare: a plan whose run has received no segment
    pytest.importorskip("torch")
    from idlegrid.client._train import _held_states
    from idlegrid.workloads._kind_train import TrainPlan, initial_state, state_hash

    base = {"model": MLP, "lr": 0.01, "total_steps": 4, "batch": 32, "seed": 3}
    plan = TrainPlan(dataset(), None, base, 2)  # type: ignore[arg-type]

    # Execute
    held = _held_states([], plan)

    # Assert: leaf 0's state, which no provider holds, is the client's own
    first = initial_state(plan.spec(0, 1))
    np.testing.assert_array_equal(held[state_hash(first)], first)
