"""Run the embedded EVM as a JSON-RPC node: ``python -m idlegrid.chain._rpcserver``.

    python -m idlegrid.chain._rpcserver --port 8545 --accounts 10

Prints one line once it listens, then nothing; SIGTERM or Ctrl-C stops it
cleanly (exit status 0). The accounts are anvil's development accounts, each
funded with 1,000,000 ether. The server itself is :class:`RpcServer`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._exceptions import IdlegridError
from ._rpchttp import RpcServer, serve

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m idlegrid.chain._rpcserver",
        description="Serve the embedded EVM (eth-tester on py-evm) over JSON-RPC on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=8545, help="TCP port (0: any free port)")
    parser.add_argument("--accounts", type=int, default=10, help="funded development accounts")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535 or args.accounts < 1:
        parser.error("--port must be 0..65535 and --accounts at least 1")

    def ready(server: RpcServer) -> None:
        print(
            f"idlegrid embedded chain on {server.url} "
            f"(chain id {server.rpc.chain_id}, {args.accounts} accounts)",
            flush=True,
        )

    try:
        serve(args.port, args.accounts, ready=ready)
    except IdlegridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
