"""Find and run a local anvil node (npm package ``@foundry-rs/anvil-linux-amd64``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from .._exceptions import ChainUnavailable, ConfigError

__all__ = ["AnvilNode", "find_anvil", "free_port", "wait_for_rpc"]

ANVIL_ENV = "IDLEGRID_ANVIL"


def _candidates() -> list[Path]:
    roots = [Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[3]]
    return [root / "node_modules" / ".bin" / "anvil" for root in roots]


def find_anvil() -> Path | None:
    """``$IDLEGRID_ANVIL``, else ``node_modules/.bin/anvil`` here or above, else PATH."""
    env = os.environ.get(ANVIL_ENV)
    if env:
        return Path(env) if Path(env).is_file() else None
    for path in _candidates():
        if path.is_file():
            return path
    found = shutil.which("anvil")
    return Path(found) if found else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_rpc(
    url: str, *, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``eth_chainId`` at ``url`` until it answers; ChainUnavailable after ``timeout``."""
    deadline = time.monotonic() + timeout
    payload: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ChainUnavailable(f"node process exited with code {proc.returncode}")
        try:
            if requests.post(url, json=payload, timeout=1.0).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise ChainUnavailable(f"no JSON-RPC answer from {url} within {timeout:.0f}s")


class AnvilNode:
    """An anvil process on loopback; stops when closed (or on ``with`` exit)."""

    def __init__(
        self, *, port: int | None = None, accounts: int = 10, binary: Path | None = None
    ) -> None:
        path = binary or find_anvil()
        if path is None:
            raise ConfigError(
                "anvil is not installed: run `npm install` in the idlegrid checkout "
                f"(package @foundry-rs/anvil-linux-amd64) or set {ANVIL_ENV}"
            )
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.accounts = accounts
        self._proc = subprocess.Popen(
            [
                str(path),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--accounts",
                str(accounts),
                "--balance",
                "1000000",
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for_rpc(self.url, proc=self._proc)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)

    def __enter__(self) -> AnvilNode:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
