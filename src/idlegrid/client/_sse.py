"""Server-sent events, parsed in bounded memory (a run's progress stream).

The format (WHATWG HTML, "server-sent events"): events are separated by a blank
line; ``event:`` names one, ``data:`` lines carry its data (joined with newlines),
lines starting with ``:`` are comments (the node's keep-alives). A peer that sends
an event larger than the limit, or never ends one, is cut off with ``PeerError``
instead of growing the buffer.
"""

from __future__ import annotations

import json
from typing import Any

from .._exceptions import PeerError

__all__ = ["MAX_EVENT_BYTES", "EventParser"]

#: the largest event accepted (a segment's result with its inline checkpoint)
MAX_EVENT_BYTES = 64 * 2**20


class EventParser:
    """Feed bytes as they come; take back the complete events, their data parsed as JSON."""

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._max = MAX_EVENT_BYTES if max_event_bytes is None else max_event_bytes
        self._buf = bytearray()
        self._scanned = 0  # bytes of the buffer already searched for a blank line

    def feed(self, chunk: bytes) -> list[tuple[str, Any]]:
        """The events ``chunk`` completes, as ``(event name, JSON data)`` in order."""
        buf = self._buf
        buf.extend(chunk)
        events: list[tuple[str, Any]] = []
        start = 0
        search = max(0, self._scanned - 1)  # a blank line may straddle two chunks
        while (cut := buf.find(b"\n\n", search)) >= 0:
            events.extend(_parse(bytes(buf[start:cut])))
            start = search = cut + 2
        del buf[:start]
        self._scanned = len(buf)
        if len(buf) > self._max:
            raise PeerError(f"a server-sent event larger than {self._max} bytes")
        return events


def _parse(block: bytes) -> list[tuple[str, Any]]:
    event, data = "message", []
    for raw in block.split(b"\n"):
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if not data:
        return []
    try:
        return [(event, json.loads("\n".join(data)))]
    except ValueError as exc:
        raise PeerError(f"a server-sent event's data is not JSON: {exc}") from exc
