"""The provider node: runs allowed jobs for paying clients.

``build_node`` makes a node from a key, a ledger and a ``NodeConfig``; ``serve_node``
registers it on chain and serves its HTTP API (``create_app``) until it is stopped.
``configure_logging`` sets up its logs (text or JSON lines; a job's records name it and
its channel). Workers never import this package: their tasks live in
``idlegrid.workloads`` and run under ``idlegrid.executor``, so the weight of web3 and the
HTTP server stays here.
"""

from ._app import create_app
from ._config import NodeConfig
from ._logs import LOG_FORMAT_ENV, configure_logging, log_format
from ._node import ProviderNode
from ._run import build_node, serve_node

__all__ = [
    "LOG_FORMAT_ENV",
    "NodeConfig",
    "ProviderNode",
    "build_node",
    "configure_logging",
    "create_app",
    "log_format",
    "serve_node",
]
