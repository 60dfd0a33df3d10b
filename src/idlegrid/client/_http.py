"""A lean HTTP/1.1 client for the provider API: pooled keep-alive connections.

httpx spends about a millisecond of CPU on each request (request and response
models, cookies, auth and redirect hooks, anyio, and the head and body written
in two socket writes, which wake the server twice); a signed job needs a
tenth of that for everything else. The provider API is small and fixed, so the
client talks to it through this pool instead: one write per request, the
response read with ``asyncio`` streams, connections kept alive per origin.

What it does not do, and httpx does: proxies from the environment, cookies,
redirects, compression, HTTP/2. Plain ``http`` and ``https`` (verified with the
system's CA store) are supported.

Errors are ``OSError``s: ``TimeoutError`` when the deadline passes,
``ConnectionError`` (``HttpProtocolError`` for a malformed answer) otherwise;
the session turns them into ``ProviderFailed``. It is the client's production
:class:`~idlegrid.client._transport.Transport`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .._exceptions import HttpProtocolError
from ._transport import Response, Stream, Transport

__all__ = ["HttpPool", "HttpProtocolError"]

#: largest response body read, bytes (blobs are capped lower by the nodes)
MAX_BODY = 1 << 30
#: largest response head (status line and headers), bytes; also the stream's buffer size
MAX_HEAD = 1 << 20
#: a pooled connection idle for longer is closed rather than reused (uvicorn drops idle
#: connections after 5 s; reusing one it is closing would cost a retry)
IDLE_S = 4.0

_Origin = tuple[str, str, int]


class _Stale(Exception):
    """A reused connection was closed by the server before it answered (safe to retry)."""


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def close(self) -> None:
        self.writer.close()

    def usable(self) -> bool:
        """Not hung up, reset or closing, as far as the loop has seen."""
        reader = self.reader
        return not (self.writer.is_closing() or reader.at_eof() or reader.exception())


class HttpPool(Transport):
    """Keep-alive HTTP/1.1 connections to any number of origins, for one event loop."""

    def __init__(self, *, max_connections: int = 64, idle_s: float = IDLE_S) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[_Origin, deque[_Conn]] = {}
        self._idle_s = idle_s
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        timeout: float,
    ) -> Response:
        """Send one request and read the whole response within ``timeout`` seconds."""
        if self._closed:
            raise ConnectionError("the HTTP pool is closed")
        origin, host, target = _split(url)
        data = _request_bytes(method, host, target, headers or {}, content)
        async with self._slots:
            try:
                async with asyncio.timeout(timeout):
                    conn = self._take_idle(origin)
                    if conn is not None:
                        try:
                            return await self._exchange(origin, conn, method, data)
                        except _Stale:
                            pass  # the server closed it while idle: once more, afresh
                    conn = await self._connect(origin)
                    try:
                        return await self._exchange(origin, conn, method, data)
                    except _Stale as exc:
                        raise ConnectionResetError(
                            "the server closed the connection without answering"
                        ) from exc
            except TimeoutError as exc:
                raise TimeoutError(f"{method} {url}: no answer within {timeout:g} s") from exc

    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float,
        idle_timeout: float,
    ) -> Stream:
        """Send one request on a connection of its own and return its body as it comes."""
        if self._closed:
            raise ConnectionError("the HTTP pool is closed")
        origin, host, target = _split(url)
        data = _request_bytes(method, host, target, headers or {}, b"")
        try:
            async with asyncio.timeout(timeout):
                conn = await self._connect(origin)
                try:
                    conn.writer.write(data)
                    status, headers_in = await _read_head(conn.reader)
                except BaseException:
                    conn.close()
                    raise
        except TimeoutError as exc:
            raise TimeoutError(f"{method} {url}: no answer within {timeout:g} s") from exc
        if "chunked" in headers_in.get("transfer-encoding", "").lower():
            chunks = _stream_chunked(conn.reader, idle_timeout)
        else:
            chunks = _stream_plain(conn.reader, idle_timeout)

        async def aclose() -> None:
            conn.close()

        return Stream(status, headers_in, chunks, aclose)

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when their request ends."""
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    # -- connections --------------------------------------------------------------
    def _take_idle(self, origin: _Origin) -> _Conn | None:
        conns = self._idle.get(origin)
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            if now - conn.idle_since < self._idle_s and conn.usable():
                return conn
            conn.close()
        return None

    async def _connect(self, origin: _Origin) -> _Conn:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context else None, limit=MAX_HEAD
        )
        return _Conn(reader, writer)

    async def _exchange(self, origin: _Origin, conn: _Conn, method: str, data: bytes) -> Response:
        try:
            conn.writer.write(data)
            response, keep_alive = await _read_response(conn.reader, method)
        except BaseException:
            conn.close()  # in an unknown state: never reused
            raise
        if keep_alive and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(origin, deque()).append(conn)
        else:
            conn.close()
        return response


# -- the wire ---------------------------------------------------------------------
def _split(url: str) -> tuple[_Origin, str, str]:
    """(origin, Host header, request target) of an absolute http(s) URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    if port != default:
        shown = f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (scheme, host, port), shown, target


def _request_bytes(
    method: str, host: str, target: str, headers: Mapping[str, str], content: bytes
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}"]
    if content or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(content)}")
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + content


async def _read_response(reader: asyncio.StreamReader, method: str) -> tuple[Response, bool]:
    """The next response on ``reader``, and whether the connection may be reused."""
    first = True
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if first and not exc.partial:
                raise _Stale from exc
            raise ConnectionResetError("the connection closed inside a response head") from exc
        except asyncio.LimitOverrunError as exc:
            raise HttpProtocolError(f"response head larger than {MAX_HEAD} bytes") from exc
        except ConnectionResetError as exc:
            if first:
                raise _Stale from exc
            raise
        first = False
        status, version, headers = _parse_head(head)
        if not 100 <= status < 200:
            break
    keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    try:
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError as exc:
                raise HttpProtocolError("malformed content-length") from exc
            if not 0 <= length <= MAX_BODY:
                raise HttpProtocolError(f"response body of {length} bytes is over the limit")
            body = await reader.readexactly(length)
        else:  # the body runs to the end of the connection
            body = await reader.read(MAX_BODY + 1)
            while len(body) <= MAX_BODY and (more := await reader.read(MAX_BODY + 1 - len(body))):
                body += more
            if len(body) > MAX_BODY:
                raise HttpProtocolError(f"response body over {MAX_BODY} bytes")
            keep_alive = False
    except asyncio.IncompleteReadError as exc:
        raise ConnectionResetError("the connection closed inside a response body") from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpProtocolError("malformed chunked body") from exc
    return Response(status, headers, body), keep_alive


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and headers of the next final response on ``reader`` (1xx skipped)."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("the connection closed inside a response head") from exc
        except asyncio.LimitOverrunError as exc:
            raise HttpProtocolError(f"response head larger than {MAX_HEAD} bytes") from exc
        status, _, headers = _parse_head(head)
        if not 100 <= status < 200:
            return status, headers


async def _stream_chunked(reader: asyncio.StreamReader, idle: float) -> AsyncIterator[bytes]:
    """A chunked body, a chunk at a time, each within ``idle`` seconds."""
    while True:
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\r\n"), idle)
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise HttpProtocolError("malformed chunk size") from exc
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("the connection closed inside a stream") from exc
        except asyncio.LimitOverrunError as exc:
            raise HttpProtocolError("malformed chunked body") from exc
        if size == 0:
            return
        if size > MAX_HEAD:
            raise HttpProtocolError(f"a stream's chunk of {size} bytes is over {MAX_HEAD}")
        try:
            data = await asyncio.wait_for(reader.readexactly(size + 2), idle)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("the connection closed inside a stream") from exc
        if data[-2:] != b"\r\n":
            raise HttpProtocolError("chunk not followed by CRLF")
        yield data[:-2]


async def _stream_plain(reader: asyncio.StreamReader, idle: float) -> AsyncIterator[bytes]:
    """A body that runs to the end of the connection, as it comes."""
    while data := await asyncio.wait_for(reader.read(65536), idle):
        yield data


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpProtocolError(f"malformed response header: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(code), version, headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise HttpProtocolError("malformed chunk size") from exc
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, ignored
                pass
            return b"".join(chunks)
        total += size
        if total > MAX_BODY:
            raise HttpProtocolError(f"response body over {MAX_BODY} bytes")
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise HttpProtocolError("chunk not followed by CRLF")
