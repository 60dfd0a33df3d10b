"""The dispute path of the oracle's outliers, from a provider's side.

When a delivery names an answer an outlier (``Outlier``: outside the tolerance of the
quorum's result, signed by its provider), the node that delivered it opens a dispute on
it (``Disputes.open_answer``, with the dispute contract's bond) and draws its committee
once the seed block is mined. The referees then re-run the model on the request's input
and vote (``provider/_referee.py``): a wrong answer is slashed, and the challenger gets
its bond back and half of the slash; a right one gets the challenger's bond. The node
that delivered agreed with the majority, so it stakes its bond on that.
"""

from __future__ import annotations

import logging
from typing import Any

from .._exceptions import ContractReverted, IdlegridError
from ..chain import DisputeClient, OracleRequest, TokenClient
from ..protocol import Account

__all__ = ["OutlierChallenger"]

log = logging.getLogger("idlegrid.oracle")

#: disputes awaiting their draw, at most (the oldest are dropped: anyone may draw them)
MAX_DRAWING = 256


class OutlierChallenger:
    """Opens disputes on outlier answers for ``account`` and draws their committees."""

    def __init__(self, disputes: DisputeClient, token: TokenClient, account: Account) -> None:
        self.disputes = disputes
        self.token = token
        self.account = account
        #: dispute id -> its seed block, until its committee is drawn
        self.drawing: dict[bytes, int] = {}
        self.opened: list[bytes] = []
        self._last_head = -1
        self._dev: bool | None = None

    def _dev_chain(self) -> bool:
        if self._dev is None:
            self._dev = bool(self.disputes.backend.dev_accounts())
        return self._dev

    def challenge(self, req: OracleRequest, outlier: dict[str, Any]) -> bytes | None:
        """Dispute ``outlier`` (an ``Outlier`` event's args) of ``req``; the dispute's
        id, or None when it cannot (no bond here, already disputed, window over)."""
        provider = str(outlier["provider"])
        if provider == self.account.address:
            return None
        try:
            bond = self.disputes.bond()
            if self.token.balance_of(self.account.address) < bond:
                log.warning("oracle request %d: no %d for the bond to dispute %s",
                            req.request_id, bond, provider)  # fmt: skip
                return None
            self.token.approve(self.disputes.address, bond, sender=self.account)
            dispute, opened = self.disputes.open_answer(
                req.request_id, provider, req.model, req.input_hash,
                [int(v) for v in outlier["output"]], int(outlier["named_at"]),
                sender=self.account,
            )  # fmt: skip
        except IdlegridError as exc:
            log.warning("oracle request %d: outlier %s not disputed: %s",
                        req.request_id, provider, exc)  # fmt: skip
            return None
        log.info("oracle request %d: disputed %s's answer (%s)",
                 req.request_id, provider, dispute.hex()[:12])  # fmt: skip
        self.opened.append(dispute)
        self.drawing[dispute] = opened.block + 1
        while len(self.drawing) > MAX_DRAWING:
            del self.drawing[next(iter(self.drawing))]
        return dispute

    def step(self) -> None:
        """Draw the committee of every dispute whose seed block is mined (and one past
        it: some nodes estimate gas at the latest block). On a development chain that
        mines only on transactions, an empty block is mined when the chain stood still
        since the last step."""
        if not self.drawing:
            return
        backend = self.disputes.backend
        head = backend.block_number()
        if head <= max(self.drawing.values()) and head == self._last_head and self._dev_chain():
            # a development chain that mines only on transactions stays still: mine one
            backend.advance_time(0)
            head = backend.block_number()
        self._last_head = head
        for dispute, seed in list(self.drawing.items()):
            if head <= seed:
                continue
            try:
                self.disputes.draw(dispute, sender=self.account)
            except ContractReverted as exc:
                if "seed block not mined" in str(exc):
                    continue
                log.info("dispute %s: not drawn here: %s", dispute.hex()[:12], exc)
            del self.drawing[dispute]
