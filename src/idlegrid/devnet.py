"""A local development network: a chain, the idlegrid contracts, funded accounts, providers.

    record = devnet_up(Path("."), providers=2)   # chain in the background, contracts deployed
    net = load_devnet(Path("."))                 # later, from any process
    net.ledger().token.balance_of(net.accounts[1].address)
    devnet_down(Path("."))

:func:`devnet_up` writes ``devnet.json``, everything a client needs: the RPC URL,
chain id, contract addresses and the funded development accounts with their
(public, well-known) keys. Its process bookkeeping lives in
``.idlegrid/devnet.pid.json`` and the chain's output in ``.idlegrid/chain.log``.
The chain is anvil when it is installed (``npm install``), else the embedded EVM
served over JSON-RPC (``python -m idlegrid.chain._rpcserver``); either outlives
the process that started it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_utils import keccak

from ._devnet_file import DEVNET_FILE, devnet_file
from ._exceptions import ChainUnavailable, ConfigError, IdlegridError
from ._process import ProcessRef, spawn, stop
from .chain import (
    CONTRACTS,
    TOKEN,
    ContractSpec,
    Deployment,
    Ledger,
    RpcBackend,
    find_anvil,
    free_port,
    load_deployment,
    wait_for_rpc,
)
from .protocol import Account, checksum

__all__ = ["DEVNET_FILE", "DevnetInfo", "devnet_down", "devnet_up", "load_devnet"]

STATE_DIR = ".idlegrid"
PID_FILE = "devnet.pid.json"
CHAIN_LOG = "chain.log"
LOCK_FILE = "devnet.lock"
FORMAT = 1

BACKENDS = ("auto", "anvil", "embedded")
MINT_PER_ACCOUNT = 10_000 * TOKEN
PROVIDER_PRICE = 10**12  # token wei per compute unit (1 unit = 1 FLOP)
PROVIDER_PORT_BASE = 8600  # registered endpoints of providers started without a node
NODE_START_TIMEOUT = 120.0
NODE_REDEEM_AFTER_S = 2.0  # dev nodes redeem vouchers quickly, so earnings show at once
ETHER_PER_ACCOUNT = 1_000_000  # what both chains give each development account
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
RPC_TIMEOUT = 10.0
PORT_TRIES = 3

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DevnetInfo:
    """A running devnet, as read from its ``devnet.json``."""

    rpc_url: str
    chain_id: int
    deployment: Deployment
    accounts: list[Account]
    providers: list[str]
    backend: str
    path: Path
    contracts: tuple[ContractSpec, ...] = CONTRACTS

    @property
    def faucet(self) -> Account:
        """The token owner: account 0, the only one that may mint."""
        return self.accounts[0]

    def connect(self, *, rpc_timeout: float = RPC_TIMEOUT) -> RpcBackend:
        """A chain backend for this devnet's RPC endpoint."""
        count = len(self.accounts)
        return RpcBackend(self.rpc_url, dev_account_count=count, rpc_timeout=rpc_timeout)

    def ledger(self, *, rpc_timeout: float = RPC_TIMEOUT) -> Ledger:
        """Typed clients of the deployed contracts."""
        connection = self.connect(rpc_timeout=rpc_timeout)
        return Ledger(connection, self.deployment, contracts=self.contracts)


def devnet_up(
    directory: Path,
    *,
    providers: int = 0,
    accounts: int = 10,
    backend: str = "auto",
    port: int | None = None,
    progress: Progress | None = None,
    nodes: bool = True,
    contracts: Sequence[ContractSpec] = CONTRACTS,
    explorer: bool = False,
    node_flags: Sequence[str] = (),
) -> dict[str, Any]:
    """Start a chain in the background, deploy and fund the ledger, write ``devnet.json``.

    ``backend``: "anvil", "embedded", or "auto" (anvil if installed). Accounts
    1..``providers`` are registered as providers with the minimum stake and, with
    ``nodes``, each runs a provider node process (``idlegrid node start``) on a
    free loopback port, with ``node_flags`` added to its command line (``["--train"]``,
    say). The contracts deployed are those of ``contracts``, in its order. With
    ``explorer``, an explorer process (``idlegrid explorer``) serves the network on a
    free loopback port, its address in ``explorer_url`` (the
    command line's ``devnet up`` starts one; the API leaves it to the caller, as tests
    and benchmarks seldom look). Each step is reported to ``progress``. Returns what was
    written to devnet.json. Raises ConfigError if a devnet already runs in
    ``directory``; on any failure stops what it started.
    """
    _check_args(providers=providers, accounts=accounts, backend=backend, port=port)
    say = progress or _quiet
    directory = Path(directory).resolve()
    _make_state_dir(directory)
    with _locked(directory):
        running = [ref for ref in _process_refs(directory) if ref.alive()]
        if running:
            raise ConfigError(
                f"a devnet is already running in {directory} "
                f"(pid {', '.join(str(r.pid) for r in running)}); run `idlegrid devnet down` first"
            )
        _remove_files(directory)  # left by a devnet whose processes are gone
        kind = _pick_backend(backend)
        url, ref = _start_chain(directory, kind, port=port, accounts=accounts, say=say)
        try:
            record = _provision(
                url, kind, ref, providers=providers, accounts=accounts, contracts=contracts, say=say
            )
            _write_json(directory / DEVNET_FILE, record)
            if nodes and providers:
                _start_nodes(directory, record, flags=node_flags, say=say)
                _write_json(directory / DEVNET_FILE, record)
            if explorer:
                _start_explorer(directory, record, say=say)
                _write_json(directory / DEVNET_FILE, record)
        except BaseException:
            for started in reversed(_process_refs(directory) or [ref]):
                stop(started, timeout=STOP_TIMEOUT)
            _remove_files(directory)
            raise
    say(f"wrote {directory / DEVNET_FILE}")
    return record


def devnet_down(directory: Path) -> list[int]:
    """Stop every process devnet_up started in ``directory`` and remove its files.

    Returns the pids that were running and are now stopped (processes already
    gone are skipped). Raises ConfigError if there is no devnet there.
    """
    directory = Path(directory).resolve()
    if not (directory / DEVNET_FILE).exists() and not (directory / STATE_DIR / PID_FILE).exists():
        raise ConfigError(f"no devnet in {directory}: no {DEVNET_FILE} or {STATE_DIR}/{PID_FILE}")
    _make_state_dir(directory)
    with _locked(directory):
        refs = _process_refs(directory)
        # providers first (they redeem their vouchers as they stop), the chain last
        stopped = [ref.pid for ref in reversed(refs) if stop(ref, timeout=STOP_TIMEOUT)]
        _remove_files(directory)
    return stopped


def load_devnet(path: Path | str, *, contracts: Sequence[ContractSpec] = CONTRACTS) -> DevnetInfo:
    """Read ``devnet.json`` (the file or its directory); ConfigError if absent or malformed.

    Every contract of ``contracts`` must have an address in the file.
    """
    file = devnet_file(path)
    raw = _read_json(file, missing=f"no devnet at {file}: start one with `idlegrid devnet up`")
    try:
        return _parse(raw, file, contracts)
    except ConfigError:
        raise
    except (IdlegridError, KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(f"{file} is not a valid devnet file: {detail}") from exc


# -- starting the chain -------------------------------------------------------------------
def _check_args(*, providers: int, accounts: int, backend: str, port: int | None) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if not 1 <= accounts <= 1000:
        raise ConfigError(f"accounts must be 1..1000, not {accounts}")
    if not 0 <= providers < accounts:
        raise ConfigError(
            f"providers must be 0..{accounts - 1} (accounts 1..N are providers; 0 is the faucet)"
        )
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"port must be 1..65535, not {port}")


def _pick_backend(backend: str) -> str:
    if backend == "embedded" or (backend == "auto" and find_anvil() is None):
        return "embedded"
    if find_anvil() is None:
        raise ConfigError("anvil is not installed: run `npm install` in the idlegrid checkout")
    return "anvil"


def _chain_argv(kind: str, port: int, accounts: int) -> list[str]:
    common = ["--port", str(port), "--accounts", str(accounts)]
    if kind == "embedded":
        return [sys.executable, "-m", "idlegrid.chain._rpcserver", *common]
    return [str(find_anvil()), "--host", "127.0.0.1", *common,
            "--balance", str(ETHER_PER_ACCOUNT), "--silent"]  # fmt: skip


def _start_chain(
    directory: Path, kind: str, *, port: int | None, accounts: int, say: Progress
) -> tuple[str, ProcessRef]:
    """Start the chain and wait until it answers; the pid file is written at once."""
    if port is not None and not _port_free(port):
        raise ConfigError(f"port {port} on 127.0.0.1 is in use")
    log = directory / STATE_DIR / CHAIN_LOG
    pid_file = directory / STATE_DIR / PID_FILE
    for _ in range(1 if port is not None else PORT_TRIES):
        chosen = port or free_port()
        url = f"http://127.0.0.1:{chosen}"
        say(f"starting {kind} chain on {url} (log: {log})")
        proc, ref = spawn(_chain_argv(kind, chosen, accounts), log=log, role="chain", cwd=directory)
        try:
            _write_json(pid_file, {"processes": [ref.as_dict()]})
            wait_for_rpc(url, timeout=START_TIMEOUT, proc=proc)
        except ChainUnavailable:
            pass
        except BaseException:
            stop(ref, timeout=STOP_TIMEOUT)
            pid_file.unlink(missing_ok=True)
            raise
        if proc.poll() is None and ref.alive():
            return url, ref
        exited = proc.poll() is not None  # most likely the free port was taken meanwhile
        stop(ref, timeout=STOP_TIMEOUT)
        if not exited:
            break  # running but silent: another port will not help
    pid_file.unlink(missing_ok=True)
    raise ChainUnavailable(f"the {kind} chain did not start; its log ends:\n{_tail(log)}")


def _provision(
    url: str,
    kind: str,
    ref: ProcessRef,
    *,
    providers: int,
    accounts: int,
    contracts: Sequence[ContractSpec],
    say: Progress,
) -> dict[str, Any]:
    """Deploy the ledger, fund every account, register providers; the devnet.json record."""
    chain = RpcBackend(url, dev_account_count=accounts, rpc_timeout=RPC_TIMEOUT)
    dev = chain.dev_accounts()
    owner = dev[0]
    say(f"deploying {', '.join(spec.name for spec in contracts)} from {owner.address}")
    ledger = Ledger.deploy(chain, owner, contracts=contracts)
    symbol = ledger.token.symbol()
    say(f"minting {MINT_PER_ACCOUNT // TOKEN:,} {symbol} to each of {accounts} accounts")
    for account in dev:
        ledger.token.mint(account.address, MINT_PER_ACCOUNT, sender=owner)
    stake = ledger.registry.min_stake()
    registered = []
    for i, provider in enumerate(dev[1 : providers + 1], start=1):
        endpoint = f"http://127.0.0.1:{PROVIDER_PORT_BASE + i}"
        capabilities = bytes(keccak(text=json.dumps({"devnet": True, "provider": i})))
        say(f"registering provider {i} {provider.address} at {endpoint}")
        ledger.token.approve(ledger.registry.address, stake, sender=provider)
        ledger.registry.register(endpoint, PROVIDER_PRICE, capabilities, stake, sender=provider)
        registered.append(
            {
                "address": provider.address,
                "endpoint": endpoint,
                "price": str(PROVIDER_PRICE),
                "stake": str(stake),
                "capabilities": "0x" + capabilities.hex(),
            }
        )
    deployment = ledger.deployment
    return {
        "format": FORMAT,
        "rpc_url": url,
        "chain_id": deployment.chain_id,
        "backend": kind,
        "contracts": deployment.as_dict(),
        "start_block": deployment.start_block,
        "token": {"symbol": symbol, "decimals": 18, "minted_per_account": str(MINT_PER_ACCOUNT)},
        "accounts": [{"address": a.address, "private_key": a.key_hex} for a in dev],
        "faucet": owner.address,
        "providers": registered,
        "processes": [ref.as_dict()],
        "log": str(Path(STATE_DIR) / CHAIN_LOG),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def node_argv(network: Path, account: int, port: int, data_dir: Path) -> list[str]:
    """The command line of a provider node for dev account ``account``."""
    return [
        sys.executable, "-m", "idlegrid.cli", "node", "start",
        "--network", str(network),
        "--account", str(account),
        "--port", str(port),
        "--data-dir", str(data_dir),
        "--price", str(PROVIDER_PRICE),
        "--redeem-after", str(NODE_REDEEM_AFTER_S),
        "--oracle",  # ready to answer the oracle's requests (docs/oracle.md)
    ]  # fmt: skip


def wait_for_node(
    url: str,
    proc: Any,
    *,
    timeout: float = NODE_START_TIMEOUT,
    path: str = "/v1/health",
    what: str = "provider node",
) -> None:
    """Poll ``url`` + ``path`` until the process answers 200; ConfigError if it exits or
    times out (``what`` names it in the message)."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    # one client for the whole wait: ``httpx.get`` builds a client (and its TLS context)
    # per call, 30 ms of CPU, ten times a second while a node starts
    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ConfigError(f"{what} at {url} exited with code {proc.returncode}")
            try:
                if http.get(f"{url}{path}").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise ConfigError(f"{what} at {url} did not answer within {timeout:.0f}s")


def _start_nodes(
    directory: Path, record: dict[str, Any], *, flags: Sequence[str], say: Progress
) -> None:
    """Start one provider node per registered provider; they update their endpoints."""
    network = directory / DEVNET_FILE
    started = []
    for i, provider in enumerate(record["providers"], start=1):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = directory / STATE_DIR / f"node-{i}.log"
        say(f"starting provider node {i} ({provider['address']}) on {url} (log: {log})")
        argv = [*node_argv(network, i, port, directory / STATE_DIR / f"node-{i}"), *flags]
        proc, ref = spawn(argv, log=log, role=f"provider-{i}", cwd=directory)
        record["processes"].append(ref.as_dict())
        _write_json(directory / STATE_DIR / PID_FILE, {"processes": record["processes"]})
        provider["endpoint"] = url
        started.append((url, proc, log))
    for url, proc, log in started:
        try:
            wait_for_node(url, proc)
        except ConfigError as exc:
            raise ConfigError(f"{exc}; its log ends:\n{_tail(log)}") from exc
    say(f"{len(started)} provider node(s) serving")


def explorer_argv(network: Path, port: int) -> list[str]:
    """The command line of the devnet's explorer (its index: the default, a cache in
    the devnet's state folder, rebuilt for a new chain)."""
    return [
        sys.executable, "-m", "idlegrid.cli", "explorer",
        "--network", str(network),
        "--port", str(port),
    ]  # fmt: skip


def _start_explorer(directory: Path, record: dict[str, Any], *, say: Progress) -> None:
    """Start the explorer on a free port and wait until it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = directory / STATE_DIR / "explorer.log"
    say(f"starting the explorer on {url} (log: {log})")
    argv = explorer_argv(directory / DEVNET_FILE, port)
    proc, ref = spawn(argv, log=log, role="explorer", cwd=directory)
    record["processes"].append(ref.as_dict())
    _write_json(directory / STATE_DIR / PID_FILE, {"processes": record["processes"]})
    try:
        wait_for_node(url, proc, path="/api/status", what="the explorer")
    except ConfigError as exc:
        raise ConfigError(f"{exc}; its log ends:\n{_tail(log)}") from exc
    record["explorer_url"] = url
    say(f"explorer serving on {url}")


# -- files ------------------------------------------------------------------------------------
def _parse(raw: Any, file: Path, contracts: Sequence[ContractSpec]) -> DevnetInfo:
    if not isinstance(raw, dict):
        raise ConfigError(f"{file} is not a valid devnet file: expected a JSON object")
    url = raw["rpc_url"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{file}: rpc_url must be an http(s) URL, not {url!r}")
    chain_id = raw["chain_id"]
    if not isinstance(chain_id, int) or isinstance(chain_id, bool) or chain_id <= 0:
        raise ConfigError(f"{file}: chain_id must be a positive integer, not {chain_id!r}")
    deployment = load_deployment(
        chain_id, raw["contracts"], int(raw.get("start_block", 0)), contracts=contracts
    )
    accounts = []
    for entry in raw["accounts"]:
        account = Account.from_key(entry["private_key"])
        if account.address != checksum(entry["address"]):
            raise ConfigError(f"{file}: the key given for {entry['address']} is another account's")
        accounts.append(account)
    if not accounts:
        raise ConfigError(f"{file}: no accounts")
    providers = [checksum(p["address"]) for p in raw.get("providers", [])]
    backend = str(raw.get("backend", ""))
    return DevnetInfo(
        url, chain_id, deployment, accounts, providers, backend, file, tuple(contracts)
    )


def _process_refs(directory: Path) -> list[ProcessRef]:
    """The processes recorded for ``directory``: the pid file, else devnet.json."""
    for file in (directory / STATE_DIR / PID_FILE, directory / DEVNET_FILE):
        if file.exists():
            raw = _read_json(file, missing=f"{file} vanished")
            records = raw.get("processes", []) if isinstance(raw, dict) else None
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise ConfigError(f"{file} is malformed: delete it if no devnet is running")
            return [ProcessRef.from_dict(r) for r in records]
    return []


def _remove_files(directory: Path) -> None:
    (directory / DEVNET_FILE).unlink(missing_ok=True)
    (directory / STATE_DIR / PID_FILE).unlink(missing_ok=True)


def _read_json(file: Path, *, missing: str) -> Any:
    try:
        return json.loads(file.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(missing) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{file} is not valid JSON: {exc}") from exc


def _write_json(file: Path, payload: Any) -> None:
    """Write then rename, so that a reader never sees half a file."""
    try:
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(payload, out, indent=2)
            out.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, file)
    except OSError as exc:
        raise ConfigError(f"cannot write {file}: {exc.strerror or exc}") from exc


def _make_state_dir(directory: Path) -> None:
    try:
        (directory / STATE_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {directory / STATE_DIR}: {exc.strerror or exc}") from exc


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold ``.idlegrid/devnet.lock``, so that two devnet commands never race in one directory."""
    with (directory / STATE_DIR / LOCK_FILE).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ConfigError(f"another devnet command is running in {directory}") from exc
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"
    except OSError:
        return "(no log)"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _quiet(message: str) -> None:
    """The default progress callback: say nothing."""
