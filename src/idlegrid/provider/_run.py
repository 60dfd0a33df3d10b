"""Build and serve a provider node: `idlegrid node start`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import uvicorn

from ..chain import Ledger
from ..executor import ExecutorLimits, ProcessExecutor
from ..protocol import Account
from ..store import FileBlobStore
from ..workloads import workloads
from ._app import create_app
from ._config import NodeConfig
from ._hardware import probe_hardware
from ._http import guarded_protocol
from ._journal import Journal
from ._node import ProviderNode, preloads, tasks

__all__ = ["build_node", "serve_node"]

log = logging.getLogger("idlegrid.provider")


def build_node(account: Account, ledger: Ledger, config: NodeConfig) -> ProviderNode:
    """A node with its blob store, journal and worker pool under ``config.data_dir``."""
    data = config.data_dir.absolute()  # workers run in a directory of their own
    data.mkdir(parents=True, exist_ok=True)
    executor = ProcessExecutor(
        ExecutorLimits(
            workers=config.workers,
            queue=config.queue,
            wall_time_s=config.job_timeout_s,
            memory_mb=config.memory_mb,
            max_output_bytes=config.max_output_bytes,
        ),
        # every registered kind's task: a referee re-executes disputed jobs of kinds the
        # node does not serve (the HTTP API refuses jobs of those kinds)
        allowed_tasks=tasks(w.name for w in workloads()),
        preload=preloads(config.workloads),
    )
    return ProviderNode(
        account,
        ledger,
        config,
        executor=executor,
        store=FileBlobStore(
            data / "blobs",
            max_blob_bytes=config.max_blob_bytes,
            max_total_bytes=config.max_store_bytes,
            evict=True,
        ),
        journal=Journal(data / "journal.sqlite"),
        hardware=probe_hardware(),
    )


def serve_node(
    node: ProviderNode,
    *,
    say: Callable[[str], None] = print,
    redeem_interval: float = 1.0,
    egress: Any = None,
    own_logging: bool = False,
) -> None:
    """Register (or update) on chain, redeem what a previous run left, then serve until SIGTERM.

    ``own_logging``: the caller configured logging (``configure_logging``), and uvicorn's
    records go to its handler, in its format, instead of uvicorn's own.
    """
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
            log_config=None if own_logging else uvicorn.config.LOGGING_CONFIG,
            access_log=False,
            timeout_graceful_shutdown=10,
            timeout_keep_alive=c.keep_alive_s,
            http=guarded_protocol(
                header_timeout_s=c.header_timeout_s,
                max_header_bytes=c.max_header_bytes,
                max_connections=c.max_connections,
                egress=egress,
            ),
        )
    )
    say(f"provider {node.address} serving {c.url}/v1 (docs: {c.url}/v1/docs)")
    server.run()
