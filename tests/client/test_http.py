"""The lean HTTP/1.1 pool the client talks to providers through, against a scripted server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from idlegrid.client._http import HttpPool, HttpProtocolError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return head, await reader.readexactly(length)


async def _serve(handler: Handler, scenario: Callable[[str], Awaitable[None]]) -> None:
    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up
        finally:
            writer.close()  # also when the test ends and the handler is cancelled

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await scenario(f"http://127.0.0.1:{port}")
    finally:
        server.close()
        await server.wait_closed()


def test_keeps_the_connection_alive_and_sends_one_request_per_write() -> None:
    # Prepare
    connections: list[int] = []
    heads: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:
            try:
                head, body = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            heads.append(head)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nX-Echo: yes\r\n\r\n" % len(body)
            )
            writer.write(body)
        writer.close()

    async def scenario(base: str) -> None:
        pool = HttpPool()
        first = await pool.request("POST", base + "/v1/jobs?x=1", content=b"abc", timeout=5)
        second = await pool.request("POST", base + "/v1/jobs", content=b"de", timeout=5,
                                    headers={"x-idlegrid-nonce": "7"})  # fmt: skip
        await pool.aclose()
        # Assert
        assert (first.status_code, first.content, first.headers["x-echo"]) == (200, b"abc", "yes")
        assert second.content == b"de"

    # Execute
    asyncio.run(_serve(handler, scenario))

    # Assert
    assert len(connections) == 1
    assert heads[0].startswith("POST /v1/jobs?x=1 HTTP/1.1\r\nhost: 127.0.0.1:")
    assert "content-length: 3" in heads[0] and "x-idlegrid-nonce: 7" in heads[1]


def test_reads_chunked_and_head_responses() -> None:
    # Prepare
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n")  # HEAD: no body follows
        await _read_request(reader)
        writer.write(
            b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    results = []

    async def scenario(base: str) -> None:
        pool = HttpPool()
        results.append(await pool.request("HEAD", base + "/v1/blobs/ab", timeout=5))
        results.append(await pool.request("GET", base + "/v1/blobs/ab", timeout=5))
        await pool.aclose()

    # Execute
    asyncio.run(_serve(handler, scenario))

    # Assert
    assert (results[0].status_code, results[0].content) == (200, b"")
    assert (results[1].status_code, results[1].content) == (201, b"abcde")


def test_retries_once_when_the_server_closed_an_idle_connection() -> None:
    # Prepare: the server answers one request per connection, then hangs up without a word
    served: list[str] = []
    hung_up = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await _read_request(reader)
        served.append(head.split()[1])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        hung_up.set()

    async def scenario(base: str) -> None:
        pool = HttpPool()
        await pool.request("GET", base + "/a", timeout=5)
        await hung_up.wait()  # the server has hung up on the idle connection
        again = await pool.request("GET", base + "/b", timeout=5)
        await pool.aclose()
        assert again.content == b"ok"

    # Execute
    asyncio.run(_serve(handler, scenario))

    # Assert
    assert served == ["/a", "/b"]


def test_errors_are_os_errors() -> None:
    # Prepare
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await _read_request(reader)
        if "/slow" in head:
            await asyncio.sleep(5)  # cancelled when the test ends
        writer.write(b"SPDY/9 what\r\n\r\n")
        await writer.drain()

    async def scenario(base: str) -> None:
        pool = HttpPool()
        with pytest.raises(TimeoutError, match=r"no answer within 0\.2 s"):
            await pool.request("GET", base + "/slow", timeout=0.2)
        with pytest.raises(HttpProtocolError, match="status line"):
            await pool.request("GET", base + "/odd", timeout=5)
        with pytest.raises(ValueError, match="line break"):
            await pool.request("GET", base + "/", headers={"x-a": "1\r\nx-b: 2"}, timeout=5)
        with pytest.raises(ValueError, match="not an http"):
            await pool.request("GET", "ftp://example.org/", timeout=5)
        await pool.aclose()
        with pytest.raises(ConnectionError, match="closed"):
            await pool.request("GET", base + "/", timeout=5)

    # Execute, Assert
    asyncio.run(_serve(handler, scenario))


def test_connection_refused_is_a_connection_error() -> None:
    # Prepare
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        pool = HttpPool()
        # Execute, Assert
        with pytest.raises(ConnectionError):
            await pool.request("GET", f"http://127.0.0.1:{port}/", timeout=5)

    asyncio.run(scenario())


def test_a_body_cut_short_times_out_and_its_connection_is_not_reused() -> None:
    # Prepare
    connections: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        head, _ = await _read_request(reader)
        if "/stall" in head:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
            await writer.drain()
            await asyncio.sleep(5)  # cancelled when the test ends
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async def scenario(base: str) -> None:
        pool = HttpPool()
        # Execute
        with pytest.raises(TimeoutError, match=r"no answer within 0\.2 s"):
            await pool.request("GET", base + "/stall", timeout=0.2)
        after = await pool.request("GET", base + "/", timeout=5)
        await pool.aclose()
        # Assert
        assert after.content == b"ok"

    asyncio.run(_serve(handler, scenario))

    # Assert
    assert len(connections) == 2
