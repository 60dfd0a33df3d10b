"""The provider node: runs allowed jobs for paying clients.

``build_node`` makes a node from a key, a ledger and a ``NodeConfig``; ``serve_node``
registers it on chain and serves its HTTP API (``create_app``) until it is stopped.
Workers never import this package: their tasks live in ``idlegrid.workloads`` and run
under ``idlegrid.executor``, so the weight of web3 and the HTTP server stays here.
"""

from ._app import create_app
from ._config import NodeConfig
from ._node import ProviderNode
from ._run import build_node, serve_node

__all__ = ["NodeConfig", "ProviderNode", "build_node", "create_app", "serve_node"]
