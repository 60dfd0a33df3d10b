"""The local development network: devnet_up / devnet_down / load_devnet.

Every devnet started here is stopped at teardown, whatever the test's outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from web3 import Web3

from idlegrid import ConfigError
from idlegrid.chain import TOKEN, Indexer, dev_accounts, find_anvil
from idlegrid.devnet import DEVNET_FILE, devnet_down, devnet_up, load_devnet

from .chain.beacon import BeaconClient, signals, with_beacon, write_source

PID_FILE = Path(".idlegrid") / "devnet.pid.json"
BALANCE_OF_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "balanceOf",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    }
]


@pytest.fixture
def devnet_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for one devnet, brought down at teardown if a test left it up."""
    yield tmp_path
    if (tmp_path / DEVNET_FILE).exists() or (tmp_path / PID_FILE).exists():
        devnet_down(tmp_path)


def is_running(pid: int) -> bool:
    """The pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def test_embedded_devnet_up_and_down(devnet_dir: Path) -> None:
    # Prepare
    steps: list[str] = []

    # Execute
    record = devnet_up(
        devnet_dir, providers=2, accounts=4, backend="embedded", progress=steps.append
    )
    written = json.loads((devnet_dir / DEVNET_FILE).read_text())
    info = load_devnet(devnet_dir)
    w3 = Web3(Web3.HTTPProvider(info.rpc_url, request_kwargs={"timeout": 10}))
    token = w3.eth.contract(
        address=Web3.to_checksum_address(info.deployment.token), abi=BALANCE_OF_ABI
    )
    registry = info.ledger().registry

    # Assert: the file, the chain, the contracts, the providers
    assert written == record
    assert {"rpc_url", "chain_id", "contracts", "accounts"} <= set(written)
    assert set(written["contracts"]) == {
        "token", "registry", "market", "disputes", "models", "oracle", "rewards",
    }  # fmt: skip
    assert written["backend"] == "embedded"
    assert len(written["accounts"]) == 4 and steps
    assert w3.eth.chain_id == info.chain_id == written["chain_id"]
    for name in ("token", "registry", "market", "disputes", "models", "oracle", "rewards"):
        assert len(w3.eth.get_code(Web3.to_checksum_address(written["contracts"][name]))) > 0
    for account in info.accounts:
        assert token.functions.balanceOf(account.address).call() == 10_000 * TOKEN - (
            registry.min_stake() if account.address in info.providers else 0
        )
    assert registry.active_count() == 2
    assert registry.active_providers() == [a.address for a in info.accounts[1:3]]
    assert info.providers == [a.address for a in info.accounts[1:3]]

    # a second devnet in the same directory is refused while this one runs
    with pytest.raises(ConfigError, match="already running"):
        devnet_up(devnet_dir, backend="embedded")

    # Execute: down
    pids = devnet_down(devnet_dir)

    # Assert: stopped, files gone; a second down has nothing to stop
    # providers are stopped first (they redeem as they go), the chain last
    assert pids == [p["pid"] for p in reversed(record["processes"])]
    assert [p["role"] for p in record["processes"]] == ["chain", "provider-1", "provider-2"]
    assert not any(is_running(pid) for pid in pids)
    assert not (devnet_dir / DEVNET_FILE).exists()
    assert not (devnet_dir / PID_FILE).exists()
    with pytest.raises(ConfigError, match="no devnet"):
        devnet_down(devnet_dir)


def test_devnet_serves_the_explorer_and_stops_it(devnet_dir: Path) -> None:
    # Execute: the command line's `devnet up` starts one (explorer=True)
    record = devnet_up(devnet_dir, accounts=3, backend="embedded", explorer=True)
    url = record["explorer_url"]
    status = httpx.get(f"{url}/api/status", timeout=10).json()
    page = httpx.get(f"{url}/", timeout=10)
    pids = devnet_down(devnet_dir)

    # Assert: the address in devnet.json answers with the chain's blocks; down stops it
    assert url.startswith("http://127.0.0.1:")
    assert status["block"] is not None and status["error"] is None
    assert page.status_code == 200 and "The network at a glance" in page.text
    assert [p["role"] for p in record["processes"]] == ["chain", "explorer"]
    assert not any(is_running(pid) for pid in pids)

    # Execute: a new chain in the same folder (same addresses, another history)
    again = devnet_up(devnet_dir, accounts=3, backend="embedded", explorer=True)
    second = httpx.get(f"{again['explorer_url']}/api/status", timeout=10).json()
    devnet_down(devnet_dir)

    # Assert: the explorer's cached index of the old chain was rebuilt, not an error
    assert second["block"] is not None and second["error"] is None


def test_anvil_devnet_outlives_the_process_that_started_it(devnet_dir: Path) -> None:
    if find_anvil() is None:
        pytest.fail("anvil is not installed: run `npm install` in the repository root")
    # Prepare: devnet_up in a short-lived process, as the CLI runs it
    script = (
        "import sys; from pathlib import Path; from idlegrid.devnet import devnet_up; "
        "devnet_up(Path(sys.argv[1]), providers=1, accounts=3, backend='anvil')"
    )

    # Execute
    done = subprocess.run(
        [sys.executable, "-c", script, str(devnet_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    info = load_devnet(devnet_dir / DEVNET_FILE)
    ledger = info.ledger()

    # Assert
    assert done.returncode == 0, done.stderr
    assert info.backend == "anvil"
    assert ledger.backend.chain_id == info.chain_id == 31337
    assert ledger.token.balance_of(info.accounts[2].address) == 10_000 * TOKEN
    assert ledger.registry.is_active(info.accounts[1].address)
    assert info.faucet.address == ledger.token.owner()

    pids = devnet_down(devnet_dir)

    # the provider node process, then the chain; both outlived their starter
    assert len(pids) == 2 and not any(is_running(pid) for pid in pids)
    assert not (devnet_dir / DEVNET_FILE).exists()


def test_devnet_deploys_saves_and_loads_every_registered_contract(
    devnet_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Prepare: the ledger's registry plus a contract the chain layer does not know
    contracts = with_beacon(write_source(tmp_path_factory.mktemp("beacon")))

    # Execute: deploy and save, load, use, index
    record = devnet_up(devnet_dir, accounts=2, backend="embedded", contracts=contracts)
    info = load_devnet(devnet_dir, contracts=contracts)
    beacon = info.ledger().client("beacon", BeaconClient)
    beacon.signal(5, sender=info.accounts[1])
    path = devnet_dir / "index.db"
    with Indexer(info.connect(), info.deployment, path, contracts=contracts) as index:
        index.sync()

    # Assert: saved under its key, loaded, wired, its events indexed; the file still
    # loads with the ledger's own registry (keys it does not know are kept)
    assert set(record["contracts"]) == {
        "token",
        "registry",
        "market",
        "disputes",
        "models",
        "oracle",
        "rewards",
        "beacon",
    }
    assert info.deployment.address("beacon") == record["contracts"]["beacon"]
    assert beacon.token() == info.deployment.token
    assert beacon.market() == info.deployment.market
    assert signals(path) == [(info.accounts[1].address, 5)]
    assert load_devnet(devnet_dir).deployment == info.deployment


def test_devnet_file_of_an_older_version_still_loads(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Prepare: a devnet.json as the first versions wrote it (no start_block)
    accounts = dev_accounts(2)
    old: dict[str, Any] = {
        "format": 1,
        "rpc_url": "http://127.0.0.1:8545",
        "chain_id": 31337,
        "backend": "anvil",
        "contracts": {
            "token": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
            "registry": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
            "market": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
            "disputes": "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
            "models": "0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9",
        },
        "accounts": [{"address": a.address, "private_key": a.key_hex} for a in accounts],
        "faucet": accounts[0].address,
        "providers": [],
        "processes": [],
    }
    (tmp_path / DEVNET_FILE).write_text(json.dumps(old))
    contracts = with_beacon(write_source(tmp_path_factory.mktemp("beacon")))

    # Execute
    info = load_devnet(tmp_path)

    # Assert: every address, checksummed; a registry with more contracts names the missing one
    assert info.deployment.token == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert info.deployment.as_dict()["market"] == old["contracts"]["market"]
    assert info.deployment.start_block == 0
    assert [a.address for a in info.accounts] == [a.address for a in accounts]
    assert "oracle" not in info.deployment.contracts  # it came later: not needed to load
    with pytest.raises(ConfigError, match="no address for contract 'beacon'"):
        load_devnet(tmp_path, contracts=contracts)


def test_devnet_down_cleans_up_after_processes_that_are_gone(devnet_dir: Path) -> None:
    # Prepare: bookkeeping for a process that has exited
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    (devnet_dir / PID_FILE).parent.mkdir()
    (devnet_dir / PID_FILE).write_text(json.dumps({"processes": [{"pid": gone.pid, "started": 1}]}))
    (devnet_dir / DEVNET_FILE).write_text("{}")

    stopped = devnet_down(devnet_dir)

    assert stopped == []
    assert not (devnet_dir / DEVNET_FILE).exists()
    assert not (devnet_dir / PID_FILE).exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no devnet at"),
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"rpc_url": "http://127.0.0.1:1"}', "missing key 'chain_id'"),
        (
            '{"rpc_url": "http://127.0.0.1:1", "chain_id": 1, "accounts": [],'
            ' "contracts": {"token": "0x1", "registry": "0x2", "market": "0x3",'
            ' "disputes": "0x4", "models": "0x5"}}',
            "not an Ethereum address",
        ),
    ],
)
def test_load_devnet_explains_a_missing_or_broken_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / DEVNET_FILE).write_text(content)

    with pytest.raises(ConfigError, match=message):
        load_devnet(tmp_path)


@pytest.mark.parametrize(
    "options",
    [{"backend": "ganache"}, {"accounts": 0}, {"providers": 3, "accounts": 3}, {"port": 70000}],
)
def test_devnet_up_rejects_bad_options_before_starting_anything(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError):
        devnet_up(tmp_path, **options)

    assert not (tmp_path / DEVNET_FILE).exists()
