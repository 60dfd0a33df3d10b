"""The edge node's one way out: every byte it sends passes :meth:`Egress.send`.

An edge node holds data that must never leave it. Rather than trust every code path
to behave, the node sends nothing except through one object: the HTTP server's
transports are wrapped (:class:`EgressTransport`: every response byte), and so is
the chain client (:func:`guard_web3`: every JSON-RPC request). ``Egress`` counts what
leaves by destination and, for an audit (``IDLEGRID_EGRESS_CAPTURE=FILE``), appends
every byte to a file, which the byte-capture test scans for rows of the local data.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CAPTURE_ENV", "Egress", "EgressTransport", "guard_web3", "read_capture"]

#: the environment variable naming a file to which every byte that leaves is appended
CAPTURE_ENV = "IDLEGRID_EGRESS_CAPTURE"


class Egress:
    """The choke point. ``send`` is called with what is about to leave and to whom,
    and returns it unchanged (the caller sends exactly what it returns)."""

    def __init__(self, capture: Path | None = None) -> None:
        self.bytes_by_destination: Counter[str] = Counter()
        self._capture = capture
        self._lock = threading.Lock()
        self._sinks: list[Callable[[str, bytes], None]] = []

    @classmethod
    def from_env(cls) -> Egress:
        path = os.environ.get(CAPTURE_ENV)
        return cls(Path(path) if path else None)

    def watch(self, sink: Callable[[str, bytes], None]) -> None:
        """Call ``sink(destination, data)`` for everything that leaves from now on."""
        self._sinks.append(sink)

    def send(self, destination: str, data: bytes) -> bytes:
        data = bytes(data)
        with self._lock:
            self.bytes_by_destination[destination] += len(data)
            if self._capture is not None:
                label = destination.encode()[:255]
                with open(self._capture, "ab") as f:
                    f.write(struct.pack(">BI", len(label), len(data)) + label + data)
        for sink in self._sinks:
            sink(destination, data)
        return data

    @property
    def total(self) -> int:
        return sum(self.bytes_by_destination.values())


def read_capture(path: Path) -> list[tuple[str, bytes]]:
    """The records of a capture file, in order: ``(destination, data)``."""
    raw, out, i = path.read_bytes(), [], 0
    while i < len(raw):
        n, size = struct.unpack_from(">BI", raw, i)
        i += 5
        label = raw[i : i + n].decode()
        i += n
        out.append((label, raw[i : i + size]))
        i += size
    return out


class EgressTransport:
    """An asyncio transport whose writes go through the egress (the HTTP server's
    responses); everything else is the wrapped transport's."""

    def __init__(self, inner: Any, egress: Egress) -> None:
        self._inner = inner
        self._egress = egress
        peer = inner.get_extra_info("peername")
        self._peer = f"http:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "http"

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(self._egress.send(self._peer, bytes(data)))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def guard_web3(w3: Any, egress: Egress, destination: str = "rpc") -> None:
    """Route a web3 HTTP provider's requests through the egress (they are encoded by
    ``encode_rpc_request`` / ``encode_batch_rpc_request`` and posted as returned)."""
    provider = w3.provider
    encode, encode_batch = provider.encode_rpc_request, provider.encode_batch_rpc_request

    def one(method: Any, params: Any) -> bytes:
        return egress.send(destination, encode(method, params))

    def batch(requests: Any) -> bytes:
        return egress.send(destination, encode_batch(requests))

    provider.encode_rpc_request = one
    provider.encode_batch_rpc_request = batch
