"""The two demos the CLI runs: ``idlegrid demo`` (a whole network on one machine: devnet,
providers, a client, a fail-over, settlement) and ``idlegrid demo --ledger`` (the
contracts alone, on the embedded chain)."""

from ._ledger import run_ledger_demo
from ._network import run_demo

__all__ = ["run_demo", "run_ledger_demo"]
