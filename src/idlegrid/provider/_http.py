"""The node's HTTP server protocol: uvicorn's, with the guards a public server needs.

uvicorn bounds an idle keep-alive connection, and answers 503 past
``limit_concurrency``, but it waits forever for a request's headers and accepts
every connection. :func:`guarded_protocol` adds, per connection:

* a header timeout: the headers of each request must arrive within
  ``header_timeout_s`` of its first byte (or of the connection); else 408, closed;
* a header size limit: a header block over ``max_header_bytes`` gets 431, closed;
* a connection limit: a connection beyond ``max_connections`` gets 503, closed.

The body has its own deadline, enforced where it is read (``_app._read_body``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["guarded_protocol"]


def _canned(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )


_TIMEOUT = _canned(b"408 Request Timeout", b"request headers too slow")
_TOO_LARGE = _canned(b"431 Request Header Fields Too Large", b"request headers too large")
_BUSY = _canned(b"503 Service Unavailable", b"too many connections")


def guarded_protocol(
    *,
    header_timeout_s: float,
    max_header_bytes: int,
    max_connections: int,
    egress: Any = None,
) -> type[asyncio.Protocol]:
    """An HTTP protocol class for ``uvicorn.Config(http=...)`` with these limits; with
    ``egress`` (an edge node's ``idlegrid.edge.Egress``) every byte written to a
    connection passes through it."""

    class GuardedProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0
        _in_headers = True

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            busy = len(self.connections) >= max_connections
            if egress is not None:
                from ..edge._egress import EgressTransport

                transport = EgressTransport(transport, egress)  # type: ignore[assignment]
            super().connection_made(transport)
            if busy:
                self._refuse(_BUSY)
                return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            if self._header_timer is None and cycle is not None and cycle.response_complete:
                self._arm()  # a new request on a kept-alive connection: a deadline for it too
            super().data_received(data)
            if self._in_headers and not self.transport.is_closing():
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes:
                    self._refuse(_TOO_LARGE)

        def on_headers_complete(self) -> None:
            self._disarm()
            self._in_headers = False
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            self._in_headers = True
            self._header_bytes = 0
            super().on_response_complete()

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._refuse, _TIMEOUT)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _refuse(self, answer: bytes) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

    return GuardedProtocol
