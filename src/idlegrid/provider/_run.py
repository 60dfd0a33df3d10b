"""Build and serve a provider node: `idlegrid node start`."""

from __future__ import annotations

import logging
from collections.abc import Callable

import uvicorn

from ..chain import Ledger
from ..protocol import Account
from ..store import FileBlobStore
from ._app import create_app
from ._config import NodeConfig
from ._executor import ExecutorLimits, ProcessExecutor
from ._hardware import probe_hardware
from ._journal import Journal
from ._node import TASKS, ProviderNode

__all__ = ["build_node", "serve_node"]

log = logging.getLogger("idlegrid.provider")


def build_node(account: Account, ledger: Ledger, config: NodeConfig) -> ProviderNode:
    """A node with its blob store, journal and worker pool under ``config.data_dir``."""
    data = config.data_dir
    data.mkdir(parents=True, exist_ok=True)
    executor = ProcessExecutor(
        ExecutorLimits(
            workers=config.workers,
            queue=config.queue,
            wall_time_s=config.job_timeout_s,
            memory_mb=config.memory_mb,
        ),
        allowed_tasks=TASKS,
    )
    return ProviderNode(
        account,
        ledger,
        config,
        executor=executor,
        store=FileBlobStore(data / "blobs", max_blob_bytes=config.max_blob_bytes),
        journal=Journal(data / "journal.sqlite"),
        hardware=probe_hardware(),
    )


def serve_node(
    node: ProviderNode, *, say: Callable[[str], None] = print, redeem_interval: float = 1.0
) -> None:
    """Register (or update) on chain, redeem what a previous run left, then serve until SIGTERM."""
    for line in node.register():
        say(line)
    leftovers = node.redeem_due(force=True)
    if leftovers:
        say(f"redeemed {len(leftovers)} voucher(s) left from a previous run")
    c = node.config
    app = create_app(node, redeem_interval=redeem_interval)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=c.host,
            port=c.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    )
    say(f"provider {node.address} serving {c.url}/v1 (docs: {c.url}/v1/docs)")
    server.run()
