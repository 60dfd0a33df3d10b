"""A federation on one machine: a devnet chain and N edge node processes on loopback,
each holding one partition of a data set (the tests and ``idlegrid bench fl``)."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import ConfigError
from .._process import ProcessRef, spawn, stop
from ..chain import free_port
from ..devnet import DEVNET_FILE, DevnetInfo, devnet_down, devnet_up, load_devnet, wait_for_node
from ._egress import CAPTURE_ENV

__all__ = ["EdgeProcess", "Federation", "start_federation"]

#: seconds an edge node may take to start (imports torch, registers on chain)
EDGE_START_TIMEOUT = 120.0


@dataclass
class EdgeProcess:
    index: int  # its dev account
    address: str
    url: str
    data: Path  # its data directory (one NAME.npz)
    capture: Path | None  # every byte it sent, when captured
    argv: list[str]
    ref: ProcessRef | None = None


@dataclass
class Federation:
    directory: Path
    info: DevnetInfo
    edges: list[EdgeProcess]
    sponsor: int  # the dev account that coordinates and pays
    _stopped: list[int] = field(default_factory=list)

    @property
    def network(self) -> Path:
        return self.directory / DEVNET_FILE

    def ledger(self) -> Any:
        return self.info.ledger()

    def kill(self, edge: EdgeProcess, *, timeout: float = 15.0) -> None:
        """SIGKILL an edge node (it dies mid-whatever it was doing); return once it is gone."""
        import os
        import signal
        import time

        if edge.ref is None or not edge.ref.alive():
            return
        os.kill(edge.ref.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while edge.ref.alive() and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        for edge in self.edges:
            if edge.ref is not None:
                with contextlib.suppress(Exception):
                    stop(edge.ref, timeout=10.0)
        devnet_down(self.directory)


def start_federation(
    directory: Path,
    partitions: list[tuple[np.ndarray, np.ndarray]],
    *,
    dataset: str = "digits",
    backend: str = "anvil",
    capture: bool = False,
    workers: int = 1,
    poisoners: int = 0,
) -> Federation:
    """A devnet with ``len(partitions)`` edge nodes (dev accounts 1..N), node i holding
    ``partitions[i-1]`` as ``DATASET.npz``; the sponsor is account N + 1. The first
    ``poisoners`` nodes send their updates reversed (the testing aid ``sign-flip``)."""
    directory = directory.resolve()
    n = len(partitions)
    devnet_up(directory, providers=0, accounts=n + 3, backend=backend, nodes=False)
    info = load_devnet(directory)
    edges: list[EdgeProcess] = []
    fed = Federation(directory, info, edges, sponsor=n + 1)
    try:
        procs = []
        for i, (x, y) in enumerate(partitions, start=1):
            home = directory / "edges" / f"edge-{i}"
            data = home / "data"
            data.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(data / f"{dataset}.npz", x=x, y=y)
            port = free_port()
            argv = [
                sys.executable, "-m", "idlegrid.cli", "edge", "start",
                "--data", str(data),
                "--network", str(directory / DEVNET_FILE),
                "--account", str(i),
                "--port", str(port),
                "--data-dir", str(home / "node"),
                "--workers", str(workers),
                "--redeem-after", "5",
            ]  # fmt: skip
            if i <= poisoners:
                argv += ["--cheat-rate", "1", "--cheat-mode", "sign-flip"]
            cap = home / "egress.bin" if capture else None
            proc, ref = spawn(
                argv,
                log=home / "edge.log",
                role=f"edge-{i}",
                cwd=home,
                env={CAPTURE_ENV: str(cap)} if cap else None,
            )
            edge = EdgeProcess(
                i, info.accounts[i].address, f"http://127.0.0.1:{port}", data, cap, argv, ref
            )
            edges.append(edge)
            procs.append(proc)
        for edge, proc in zip(edges, procs, strict=True):
            try:
                wait_for_node(edge.url, proc, timeout=EDGE_START_TIMEOUT)
            except ConfigError as exc:
                log = (edge.data.parent / "edge.log").read_text()[-2000:]
                raise ConfigError(f"{exc}\n{log}") from exc
    except BaseException:
        fed.close()
        raise
    return fed
