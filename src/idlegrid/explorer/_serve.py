"""The explorer as one process: an index of the network's chain, the live feed that
keeps it synced, and the web server on loopback (or wherever ``host`` says)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import uvicorn

from .._exceptions import ConfigError, UnavailableError
from ..chain import ChainBackend, Deployment, Indexer
from ._app import create_app
from ._live import LiveFeed

__all__ = ["Explorer", "serve_explorer"]

START_TIMEOUT = 30.0


class Explorer:
    """An explorer served in a background thread (tests, ``devnet up``):

    with Explorer(backend, deployment, tmp / "index.sqlite") as ex:
        ex.url  # http://127.0.0.1:PORT
    """

    def __init__(
        self,
        backend: ChainBackend,
        deployment: Deployment,
        index_path: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        interval: float | None = 1.0,
    ) -> None:
        """``interval`` None: no polling thread; the caller polls (``feed.poll()``), as
        a test on the embedded chain must (py-evm is not to be shared between threads)."""
        self.index = Indexer(backend, deployment, index_path, block_times=True)
        self.index.sync()
        self._polling = interval is not None
        self.feed = LiveFeed(self.index, interval=interval or 1.0)
        self.app = create_app(self.index, self.feed)
        config = uvicorn.Config(
            self.app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        sockets = [s for server in self._server.servers for s in server.sockets]
        host, port = sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> Explorer:
        if self._polling:
            self.feed.start()
        self._thread = threading.Thread(target=self._server.run, name="explorer", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise UnavailableError("the explorer's server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.feed.stop()
        self.index.close()

    def __enter__(self) -> Explorer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def open_index(
    backend: ChainBackend, deployment: Deployment, path: Path, *, rebuild: bool
) -> Indexer:
    """The explorer's index at ``path``, synced. With ``rebuild``, an index of another
    chain under the same addresses (a devnet restarted in the same folder) or of an
    older schema is a stale cache: it is deleted and built again; without, ConfigError
    says to use another file."""
    try:
        index = Indexer(backend, deployment, path, block_times=True)
    except ConfigError:
        if not rebuild:
            raise
        _delete(path)
        index = Indexer(backend, deployment, path, block_times=True)
    try:
        index.sync()
    except ConfigError:
        index.close()
        if not rebuild:
            raise
        _delete(path)
        index = Indexer(backend, deployment, path, block_times=True)
        index.sync()
    return index


def _delete(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def serve_explorer(
    backend: ChainBackend,
    deployment: Deployment,
    index_path: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8700,
    interval: float = 1.0,
    ready: Callable[[str], None] | None = None,
    rebuild: bool = False,
) -> None:
    """Serve the explorer in this process until interrupted (``rebuild``: see
    :func:`open_index`)."""
    index = open_index(backend, deployment, index_path, rebuild=rebuild)
    try:
        feed = LiveFeed(index, interval=interval)
        feed.start()
        app = create_app(index, feed)
        if ready is not None:
            ready(f"http://{host}:{port}")
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        index.close()
