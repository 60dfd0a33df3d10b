"""One indexer poll for every viewer: the explorer's live feed.

A :class:`LiveFeed` syncs the index every ``interval`` seconds in one background thread
and, when the index moved, publishes one update (the new block, the new events) to
every subscriber. A subscriber is an SSE connection's bounded queue: a viewer that
reads too slowly loses its oldest updates (and is told to reload), never holds up the
poll or another viewer. A hundred viewers cost the chain what one does: one
``eth_getLogs`` range per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import IdlegridError
from ..chain import Activity, Indexer

__all__ = ["LiveFeed", "Update"]

log = logging.getLogger("idlegrid.explorer")

#: updates a slow viewer may have waiting before its oldest are dropped
QUEUE_SIZE = 64
#: most events one update carries (a burst beyond it says "reload")
MAX_EVENTS = 50


@dataclass(frozen=True)
class Update:
    """What changed in one poll: the index's new last block and the events since the
    last update (newest first, at most ``MAX_EVENTS``; ``more`` if there were more)."""

    block: int | None
    timestamp: int | None
    polled_at: float
    events: list[Activity] = field(default_factory=list)
    more: bool = False
    error: str | None = None


class LiveFeed:
    """Polls ``index`` and fans its updates out to subscribers (see the module)."""

    def __init__(
        self,
        index: Indexer,
        *,
        interval: float = 1.0,
        sync: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self._index = index
        self._interval = interval
        self._sync = sync
        self._clock = clock
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Update]]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_seq = self._newest_seq()
        self.latest = Update(index.last_block, self._block_time(index.last_block), clock())
        self.polls = 0

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start polling in a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="explorer-feed", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- subscribers --------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[Update]:
        """A queue of updates for the calling event loop's viewer; the latest state
        first, so a new viewer shows the freshness at once."""
        queue: asyncio.Queue[Update] = asyncio.Queue(QUEUE_SIZE)
        queue.put_nowait(self.latest)
        with self._lock:
            self._subscribers.add((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Update]) -> None:
        with self._lock:
            self._subscribers = {s for s in self._subscribers if s[1] is not queue}

    @property
    def viewers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    # -- polling ------------------------------------------------------------------------
    def poll(self) -> Update:
        """Sync the index once and publish what changed (also what the thread runs)."""
        error = None
        if self._sync:
            try:
                self._index.sync()
            except IdlegridError as exc:  # the chain is down: say so, keep the old view
                error = str(exc)
                log.warning("explorer: index sync failed: %s", exc)
        events = self._index.activity(after=self._last_seq, limit=MAX_EVENTS + 1)
        more = len(events) > MAX_EVENTS
        events = events[:MAX_EVENTS]
        if events:
            self._last_seq = max(self._last_seq or 0, self._newest_seq() or 0)
        block = self._index.last_block
        update = Update(block, self._block_time(block), self._clock(), events, more, error)
        self.polls += 1
        if events or block != self.latest.block or error != self.latest.error:
            self._publish(update)
        self.latest = update
        return update

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll()
            except Exception:  # never let one bad poll end the feed
                log.exception("explorer: poll failed")

    def _publish(self, update: Update) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(_offer, queue, update)
            except RuntimeError:  # its loop closed: the viewer is gone
                self.unsubscribe(queue)

    def _newest_seq(self) -> int | None:
        newest = self._index.activity(limit=1)
        return newest[0].seq if newest else None

    def _block_time(self, block: int | None) -> int | None:
        return None if block is None else self._index.block_time(block)


def _offer(queue: asyncio.Queue[Update], update: Update) -> None:
    """Put ``update``, dropping the oldest waiting one if the viewer is behind."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(update)


def as_json(update: Update) -> dict[str, Any]:
    return {
        "block": update.block,
        "timestamp": update.timestamp,
        "polled_at": update.polled_at,
        "events": [
            {
                "seq": a.seq,
                "contract": a.contract,
                "event": a.name,
                "block": a.block,
                "tx": a.tx_hash,
                "timestamp": a.timestamp,
            }
            for a in update.events
        ],
        "more": update.more,
        "error": update.error,
    }
