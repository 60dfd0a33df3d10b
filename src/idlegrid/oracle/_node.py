"""An oracle relay for a provider node (``idlegrid node start --oracle``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .._exceptions import IdlegridError
from ._relay import OracleRelay

__all__ = ["attach_oracle", "relay_loop"]

log = logging.getLogger("idlegrid.oracle")


def attach_oracle(node: Any, *, grace_s: float = 5.0, dispute_outliers: bool = True) -> OracleRelay:
    """Give ``node`` (a ProviderNode) a relay answering the oracle's quorum requests
    with the models in its blob store, from the chain's current block on; with
    ``dispute_outliers``, the outliers its deliveries name are disputed (its bond)."""
    from ..chain import FIXED_ONE, DisputeClient, OracleClient
    from ._challenge import OutlierChallenger
    from ._http import HttpSend

    oracle = node.ledger.client("oracle", OracleClient)  # ConfigError on a ledger without
    challenger = None
    if dispute_outliers:
        disputes = node.ledger.client("disputes", DisputeClient)
        challenger = OutlierChallenger(disputes, node.ledger.token, node.account)

    def models(digest: bytes) -> bytes:
        return bytes(node.store.get(digest.hex()))

    relay = OracleRelay(
        oracle,
        node.account,
        models,
        HttpSend(node.account, node.domain, node.ledger.registry),
        grace_s=grace_s,
        from_block=oracle.backend.block_number(),
        challenger=challenger,
    )
    if getattr(node, "cheat", None) is not None:  # TESTING AID: a lying oracle provider
        relay.tamper = lambda out: [v + FIXED_ONE for v in out]  # every output off by 1.0
    node.oracle = relay
    return relay


async def relay_loop(relay: OracleRelay, poll_s: float = 1.0) -> None:
    """Step the relay every ``poll_s`` seconds, off the event loop, until cancelled."""
    while True:
        try:
            await asyncio.to_thread(relay.step)
        except IdlegridError as exc:  # a chain hiccup: try again next time
            log.warning("oracle relay: %s", exc)
        await asyncio.sleep(poll_s)
