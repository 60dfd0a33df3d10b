"""The worker process: runs allowed tasks one at a time, for as long as its parent lives.

A worker is started by :class:`~idlegrid.provider.ProcessExecutor` with one end of a
socket pair. It applies its memory limit, says READY, then loops: read a RUN frame,
call the task, write OK or ERROR. Task functions are imported on first use and kept,
so whatever a task module caches (ONNX sessions by model hash, say) lives on between
jobs. The worker exits when the parent closes its end or dies, even in the middle of a
job: a thread waits for the socket to hang up and ends the process.

This module is imported by every worker at start, so it imports only the standard
library and idlegrid's light modules.
"""

from __future__ import annotations

import importlib
import os
import resource
import select
import signal
import socket
import threading
from collections.abc import Callable, Collection

from ._wire import HEADER, Kind, RemoteError

__all__ = ["worker_main"]

Task = Callable[[bytes], object]


def worker_main(sock: socket.socket, allowed: Collection[str], memory_bytes: int | None) -> None:
    """Serve RUN frames from ``sock`` until it is closed (the process's entry point)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the node; the node stops us
    if memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    watch = threading.Thread(target=_exit_with_parent, args=(sock.fileno(),), daemon=True)
    watch.start()
    _send(sock, Kind.READY, 0, str(os.getpid()).encode())
    tasks: dict[str, Task] = {}
    while (frame := _recv_frame(sock)) is not None:
        job_id, task, payload = frame
        kind, body = _run(tasks, allowed, task, payload)
        del frame, payload  # a large payload is not kept while the worker waits
        _send(sock, kind, job_id, body)
        del body


def _run(
    tasks: dict[str, Task], allowed: Collection[str], task: str, payload: bytes
) -> tuple[Kind, bytes | bytearray | memoryview]:
    try:
        if task not in allowed:  # the parent checks first; this is the last line
            raise PermissionError(f"task {task!r} is not allowed")
        fn = tasks.get(task) or tasks.setdefault(task, _resolve(task))
        result = fn(payload)
        if not isinstance(result, bytes | bytearray | memoryview):
            raise TypeError(f"task returned {type(result).__name__}, not bytes")
    except Exception as exc:  # whatever a task raises goes back to the caller
        return Kind.ERROR, RemoteError.capture(exc).encode()
    return Kind.OK, result


def _resolve(task: str) -> Task:
    module, _, name = task.partition(":")
    obj: object = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{task} is not callable")
    fn: Task = obj
    return fn


def _exit_with_parent(fd: int) -> None:
    """Block until the parent's end of the socket hangs up, then end this process."""
    poller = select.poll()
    # hang-ups only (POLLHUP is always reported): data waiting to be read must not wake us
    poller.register(fd, getattr(select, "POLLRDHUP", 0))
    while not poller.poll():
        pass
    os._exit(0)


def _recv_frame(sock: socket.socket) -> tuple[int, str, bytes] | None:
    """The next RUN frame as (job id, task, payload); None when the parent hung up."""
    head = _recv_exact(sock, HEADER.size)
    if head is None:
        return None
    kind, meta, job_id, length = HEADER.unpack(head)
    if kind != Kind.RUN or meta > length:
        raise ValueError(f"bad frame from the executor: kind {kind}, meta {meta}")
    task = _recv_exact(sock, meta)
    payload = _recv_exact(sock, length - meta)
    if task is None or payload is None:
        return None
    return job_id, task.decode(), payload


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks: list[bytes] = [b""]
    while n:
        chunk = sock.recv(n, socket.MSG_WAITALL)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return chunks[1] if len(chunks) == 2 else b"".join(chunks)


def _send(
    sock: socket.socket, kind: Kind, job_id: int, body: bytes | bytearray | memoryview
) -> None:
    size = memoryview(body).nbytes
    head = HEADER.pack(kind, 0, job_id, size)
    if size <= 65536:
        sock.sendall(head + bytes(body))
    else:  # no copy of a large result
        sock.sendall(head)
        sock.sendall(body)
