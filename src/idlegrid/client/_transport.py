"""How the client reaches nodes: one small interface, as httpx has its transports.

A :class:`Transport` sends one request and returns the whole :class:`Response`,
or opens a :class:`Stream` whose body arrives piece by piece (a run's server-sent
events).
The client and its sessions hold a transport and nothing else of the network,
so a test can hand them a transport that plays a provider (honest or not)
without sockets. The production one is :class:`~idlegrid.client._http.HttpPool`,
a lean keep-alive HTTP/1.1 pool.

What a transport raises: ``TimeoutError`` when the deadline passes (also in the
middle of a body), another ``OSError`` (``ConnectionError``) when the peer hangs
up or answers something that is not HTTP, ``ValueError`` for a URL or header it
cannot send. The session turns each of them into ``ProviderFailed``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

__all__ = ["Response", "Stream", "Transport"]


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response: status, headers (names lower-case) and body."""

    status_code: int
    headers: dict[str, str]
    content: bytes


@dataclass(frozen=True, slots=True)
class Stream:
    """A response whose body is read as it comes: status, headers, then ``chunks``.

    Each chunk must arrive within the ``idle_timeout`` the stream was opened with
    (``TimeoutError`` otherwise); ``aclose`` drops the connection. Whoever opens a
    stream closes it.
    """

    status_code: int
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]
    aclose: Callable[[], Awaitable[None]]


class Transport(abc.ABC):
    """Sends requests to nodes; one instance serves one event loop."""

    @abc.abstractmethod
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        timeout: float,
    ) -> Response:
        """Send one request to the absolute ``url`` and read the whole response within
        ``timeout`` seconds."""

    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float,
        idle_timeout: float,
    ) -> Stream:
        """Send one request, read the response head within ``timeout`` seconds, and
        return the body as a :class:`Stream` (its connection is not reused). A transport
        that cannot stream raises ``ConnectionError`` (the session fails over)."""
        raise ConnectionError(f"{type(self).__name__} cannot stream {method} {url}")

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections; a closed transport sends nothing more."""
