"""The `idlegrid` command, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _idlegrid(
    *args: str, cwd: Path | None = None, timeout: float = 300, tmpdir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The command, run to its end; ``tmpdir``: its ``TMPDIR``."""
    env = None if tmpdir is None else {**os.environ, "TMPDIR": str(tmpdir)}
    return subprocess.run(
        [sys.executable, "-m", "idlegrid.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_ledger_demo_json_adds_up() -> None:
    proc = _idlegrid("demo", "--ledger", "--json")

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["balances_conserved"] is True
    assert result["receipt_proof"] == {"python": True, "on_chain": True, "proof_length": 4}
    providers = result["providers"]
    assert [p["jobs"] for p in providers] == [12, 10]
    for p in providers:
        assert p["tokens_earned"] > 0 and p["units"] > 0 and p["stake"] == 100 * 10**18
    before = sum(b["wallet"] + b["market"] for b in result["balances_before"].values())
    after = sum(b["wallet"] + b["market"] for b in result["balances_after"].values())
    stakes = sum(p["stake"] for p in providers)
    assert before == after + stakes  # only the stakes left the three accounts


def test_ledger_demo_table() -> None:
    proc = _idlegrid("demo", "--ledger")
    assert proc.returncode == 0, proc.stderr
    assert "balances conserved: True" in proc.stdout
    assert "alice" in proc.stdout and "bob" in proc.stdout


def test_bench_settlement_json_on_anvil() -> None:
    proc = _idlegrid("bench", "settlement", "--json")

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["chain"].startswith("anvil")
    assert set(result["gas_per_job"]) == {"1", "10", "100", "1000"}
    per_job = [result["gas_per_job"][n] for n in ("1", "10", "100", "1000")]
    assert per_job == sorted(per_job, reverse=True)  # amortisation: more jobs, less gas each
    assert result["naive_gas_per_job"] > per_job[1]
    assert "method" in result


def test_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = _idlegrid("devnet", "down", "--dir", str(tmp_path))
    assert proc.returncode == 2
    assert "ConfigError" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args", [["--help"], ["bench", "--help"], ["devnet", "--help"], ["channels", "--help"]]
)
def test_help(args: list[str]) -> None:
    proc = _idlegrid(*args)
    assert proc.returncode == 0
    assert "Usage" in proc.stdout


def test_network_demo_json(tmp_path: Path) -> None:
    """The main job: 3 real provider processes, one SIGKILLed mid-batch, everyone paid;
    its devnet's directory is gone after."""
    proc = _idlegrid("demo", "--json", timeout=600, tmpdir=tmp_path)

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.glob("idlegrid-demo-*")) == []
    result = json.loads(proc.stdout)
    assert result["results_match_local"] is True
    assert result["balances_conserved"] is True
    assert result["locked_in_channels"] == 0  # the clients closed their channels
    assert result["channels_closed"]["open_left"] == []
    providers = result["providers"]
    assert len(providers) == 3
    for p in providers:
        assert {"address", "jobs", "units", "tokens_earned"} <= set(p)
        assert p["jobs"] > 0 and p["tokens_earned"] > 0
    killed = next(p for p in providers if p["killed_mid_batch"])
    failovers = result["batch"]["failovers"]
    assert failovers and failovers[0]["provider"] == killed["address"]
    assert sum(result["batch"]["by_provider"].values()) == result["batch"]["shards"]
    # the restarted provider redeemed every voucher it was given before it died
    assert all(v == 0 for v in result["unredeemed_after_restart"].values())
    spend = result["provider_spends_earnings"]
    assert spend["paid_to_others"] > 0
    # it spent at least what it paid, at most its deposits (if a refund is still on its
    # way); its market balance alone may even grow: deposits beyond it come from the
    # wallet, and what they did not pay comes back to the market balance
    spent = spend["holdings_before"] - spend["holdings_after"]
    assert spend["paid_to_others"] <= spent <= spend["channel_deposits"]


@pytest.mark.parametrize("command", ["challenge", "post"])
def test_posting_commands_refuse_inputs_that_are_not_a_round_s(
    tmp_path: Path, command: str
) -> None:
    """A missing file and a stranger's bytes are refused before any chain call, in one
    line, with the reason."""
    bad = tmp_path / "round-0001-inputs.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    network = tmp_path / "devnet.json"
    network.write_text("{}")  # never read: the inputs are refused first

    missing = _idlegrid("posting", command, str(tmp_path / "nope.npz"), "--network", str(network))
    garbage = _idlegrid("posting", command, str(bad), "--network", str(network))

    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert garbage.returncode == 2 and "InvalidInput" in garbage.stderr
    assert "round inputs" in garbage.stderr
    assert "Traceback" not in missing.stderr + garbage.stderr


def test_the_explorer_refuses_a_missing_network_file_and_a_bad_interval(tmp_path: Path) -> None:
    # Prepare: a network file that is there (never read: the interval is refused first)
    network = tmp_path / "devnet.json"
    network.write_text("{}")

    # Execute
    missing = _idlegrid("explorer", "--network", str(tmp_path / "nope.json"), cwd=tmp_path)
    bad = _idlegrid("explorer", "--network", str(network), "--interval", "0")

    # Assert: the reason, before any server starts (the usage box may wrap the line)
    assert missing.returncode == 2 and "no devnet at" in " ".join(missing.stderr.split())
    assert bad.returncode == 2 and "interval" in bad.stderr
    assert "Traceback" not in missing.stderr + bad.stderr


def test_a_missing_network_file_is_refused_with_its_path(tmp_path: Path) -> None:
    # Execute: the default (./devnet.json) and a named file, neither there
    default = _idlegrid("channels", "list", cwd=tmp_path)
    named = _idlegrid("channels", "list", "--network", str(tmp_path / "nope"))

    # Assert: one line that says why
    for result in (default, named):
        assert result.returncode == 2 and "ConfigError: no devnet at" in result.stderr
        assert "Traceback" not in result.stderr
    assert "devnet.json" in default.stderr and "nope" in named.stderr


@pytest.mark.parametrize(
    "command",
    [["channels", "list"], ["rewards"], ["model", "show", "00" * 32], ["node", "start"],
     ["fl", "start", "spec.json"], ["oracle", "ask", "00" * 32, "--input", "1"]],
)  # fmt: skip
def test_every_network_command_refuses_a_missing_file_before_loading_the_chain_client(
    tmp_path: Path, command: list[str]
) -> None:
    # Execute: the command in-process, web3's import recorded, with no network file here
    script = (
        "import sys\n"
        "from idlegrid.cli import main\n"
        f"sys.argv = ['idlegrid', *{command!r}, '--network', {str(tmp_path / 'nope')!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print('web3' in sys.modules, code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )

    # Assert: refused by name, with the web3 stack never imported
    assert "ConfigError: no devnet at" in " ".join(proc.stderr.split() + proc.stdout.split())
    assert proc.stdout.split()[-2:] == ["False", "2"], proc.stdout + proc.stderr


def test_fl_start_refuses_a_named_node_that_is_not_an_address_before_the_chain(
    tmp_path: Path,
) -> None:
    import numpy as np

    # Prepare: a valid spec and validation set; a network file that is never read
    spec = tmp_path / "fl.yaml"
    spec.write_text(
        "model: {family: mlp, inputs: 64, hidden: [8], classes: 10}\n"
        "dataset: digits\nrounds: 1\nclients_per_round: 2\n"
    )
    np.savez(tmp_path / "val.npz", x=np.zeros((4, 64), np.float32), y=np.zeros(4, np.int64))
    network = tmp_path / "devnet.json"
    network.write_text("{}")

    # Execute
    bad = _idlegrid("fl", "start", str(spec), "--validation", str(tmp_path / "val.npz"),
                    "--output", str(tmp_path / "run"), "--network", str(network),
                    "--node", "0x" + "11" * 20, "--node", "hospital-2")  # fmt: skip

    # Assert: the bad address by name, in one line; nothing written
    assert bad.returncode == 2 and "not an Ethereum address: 'hospital-2'" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "run").exists()
