"""The embedded EVM over HTTP JSON-RPC on loopback, so that any EVM tool can use it.

web3.py, foundry's ``cast`` and wallets talk to :class:`RpcServer` as to anvil:
single requests and batches, JSON-RPC 2.0 error objects (-32700 parse error,
-32600 invalid request, -32601 unknown method, -32602 bad params, 3 for a
revert). It listens on 127.0.0.1 only: the development keys it serves are public.
Run it as a process with ``python -m idlegrid.chain._rpcserver``.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any

from .._exceptions import ConfigError
from ._backend import EmbeddedBackend
from ._rpcmethods import TesterRpc
from ._rpcwire import INVALID_PARAMS, RpcFault

__all__ = ["RpcServer", "handle_payload", "serve"]

HOST = "127.0.0.1"
MAX_BODY = 32 * 1024 * 1024
MAX_BATCH = 1000
IDLE_TIMEOUT = 60.0  # seconds a kept-alive connection may sit idle
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603

log = logging.getLogger(__name__)


def handle_payload(rpc: TesterRpc, body: bytes) -> Any:
    """The JSON reply to one HTTP body (a request or a batch); None if all were notifications."""
    try:
        payload = json.loads(body)
    except ValueError:  # bad JSON or bad UTF-8
        return _error(None, PARSE_ERROR, "Parse error")
    if not isinstance(payload, list):
        return _handle_one(rpc, payload)
    if not payload or len(payload) > MAX_BATCH:
        message = f"Invalid request: a batch holds 1 to {MAX_BATCH} calls"
        return _error(None, INVALID_REQUEST, message)
    replies = [reply for reply in (_handle_one(rpc, item) for item in payload) if reply is not None]
    return replies or None


def _handle_one(rpc: TesterRpc, request: Any) -> dict[str, Any] | None:
    if not isinstance(request, dict):
        return _error(None, INVALID_REQUEST, "Invalid request")
    rid = request.get("id")
    if isinstance(rid, bool) or not isinstance(rid, str | int | float | None):
        return _error(None, INVALID_REQUEST, "Invalid request: id must be a string, number or null")
    method = request.get("method")
    params = request.get("params")
    params = [] if params is None else params
    if not isinstance(method, str):
        reply = _error(rid, INVALID_REQUEST, "Invalid request: method must be a string")
    elif not isinstance(params, list):
        reply = _error(rid, INVALID_PARAMS, "invalid params: params must be an array")
    else:
        try:
            reply = {"jsonrpc": "2.0", "id": rid, "result": rpc.call(method, params)}
        except RpcFault as fault:
            reply = {"jsonrpc": "2.0", "id": rid, "error": fault.as_error()}
        except Exception as exc:  # a bug here must not take the server down
            log.exception("internal error in %s", method)
            reply = _error(rid, INTERNAL_ERROR, f"Internal error: {exc}")
    return None if "id" not in request else reply  # no id: a notification, never answered


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
    disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart
    timeout = IDLE_TIMEOUT
    server: _HTTPServer

    def do_POST(self) -> None:  # the name http.server looks up
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self._reply(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
            return
        if int(length) > MAX_BODY:
            self.close_connection = True
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "request too large"})
            return
        reply = handle_payload(self.server.rpc, self.rfile.read(int(length)))
        if reply is None:
            self.send_response(HTTPStatus.NO_CONTENT)
            self.end_headers()
        else:
            self._reply(HTTPStatus.OK, reply)

    def do_GET(self) -> None:
        self._reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "JSON-RPC: POST only"})

    def _reply(self, status: HTTPStatus, payload: Any) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "POST")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a development chain logs nothing per request."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, rpc: TesterRpc) -> None:
        self.rpc = rpc
        super().__init__((HOST, port), _Handler)


class RpcServer:
    """An embedded chain served on ``http://127.0.0.1:<port>`` from a background thread.

    ``port=0`` picks a free port (read :attr:`port`). Pass ``backend`` to serve a
    chain you built; do not use that backend directly while it is served.
    """

    def __init__(
        self, *, port: int = 0, accounts: int = 10, backend: EmbeddedBackend | None = None
    ) -> None:
        self.backend = backend or EmbeddedBackend(accounts=accounts)
        self.rpc = TesterRpc(self.backend.tester)
        try:
            self._httpd = _HTTPServer(port, self.rpc)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}") from exc
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> RpcServer:
        """Start answering requests (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"idlegrid-rpc-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serving(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5.0)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> RpcServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def serve(
    port: int, accounts: int = 10, *, ready: Callable[[RpcServer], None] | None = None
) -> None:
    """Serve a fresh embedded chain on ``port`` until SIGTERM or SIGINT, then stop cleanly.

    Call from the main thread (it installs the signal handlers); ``ready`` is
    called once the port is open.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with RpcServer(port=port, accounts=accounts) as server:
            if ready is not None:
                ready(server)
            while server.serving() and not stop.wait(timeout=1.0):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
