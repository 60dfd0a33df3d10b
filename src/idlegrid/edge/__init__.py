"""Edge nodes: a provider node that holds private data and never ships it.

``idlegrid edge start --data DIR`` runs one. It serves ``fl`` jobs (a federated
round's local training and secure-aggregation stages, paid like any other job) on
the data sets found in ``DIR``, and runs registered models on that data locally
(``idlegrid edge infer``). Everything it sends passes one choke point
(:class:`Egress`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..chain import Ledger
from ..protocol import Account
from ..provider import NodeConfig
from ..provider._node import ProviderNode
from ._data import EdgeDataset, scan_datasets
from ._egress import CAPTURE_ENV, Egress, EgressTransport, guard_web3, read_capture
from ._infer import UsageReceipt, infer_local
from ._state import EdgeState

__all__ = [
    "CAPTURE_ENV",
    "EdgeDataset",
    "EdgeState",
    "Egress",
    "EgressTransport",
    "UsageReceipt",
    "build_edge_node",
    "guard_web3",
    "infer_local",
    "read_capture",
    "scan_datasets",
    "serve_edge_node",
]


def build_edge_node(
    account: Account, ledger: Ledger, config: NodeConfig, data: Path, *, egress: Egress
) -> ProviderNode:
    """A provider node serving ``fl`` jobs on the data sets under ``data``, its chain
    requests routed through ``egress``."""
    from ..provider import build_node

    w3 = getattr(ledger.backend, "_w3", None)
    if w3 is not None and hasattr(w3.provider, "encode_rpc_request"):
        guard_web3(w3, egress)
    node = build_node(account, ledger, config)
    node.edge = EdgeState(data, account.key, egress)
    return node


def serve_edge_node(
    node: ProviderNode, *, say: Callable[[str], None] = print, own_logging: bool = False
) -> None:
    """Register (or update) on chain and serve until SIGTERM, every byte out through
    the node's egress (``own_logging``: as ``serve_node``'s)."""
    from ..provider import serve_node

    edge: EdgeState = node.edge
    held = ", ".join(f"{n} ({d.rows} rows)" for n, d in edge.datasets.items()) or "none"
    say(f"edge data sets: {held}")
    serve_node(node, say=say, egress=edge.egress, own_logging=own_logging)
