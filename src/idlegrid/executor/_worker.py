"""The worker process: runs allowed tasks one at a time, for as long as its parent lives.

A worker is started by :class:`~idlegrid.executor.ProcessExecutor` with one end of a
socket pair. It applies its memory limit, moves into an empty working directory of its
own (mode 0700: nothing a job resolves against the working directory finds the node's
files), says READY, then loops: read a RUN frame, call the task, write OK or ERROR with
the CPU time the job used. A result larger than the output limit is not sent: the job
fails with ``OutputTooLarge`` (tasks that can tell the size before building the result
check ``output_limit()`` first). Task functions are imported on first use and kept,
so whatever a task module caches (ONNX sessions by model hash, say) lives on between
jobs. The worker exits when the parent closes its end or dies, even in the middle of a
job: a thread waits for the socket to hang up, removes the working directory and ends
the process. (The parent removes it too, after a worker it killed.)

This module is imported by every worker at start, so it imports only the standard
library and idlegrid's light modules.
"""

from __future__ import annotations

import importlib
import os
import resource
import select
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Collection

from .._exceptions import OutputTooLarge
from ._wire import CPU, HEADER, Kind, RemoteError

__all__ = ["output_limit", "worker_main"]

Task = Callable[[bytes], object]

_output_limit: int | None = None


def output_limit() -> int | None:
    """The most bytes a task's result may have in this worker (None: no limit)."""
    return _output_limit


def worker_main(
    sock: socket.socket,
    allowed: Collection[str],
    memory_bytes: int | None,
    workdir: str | None = None,
    max_output_bytes: int | None = None,
) -> None:
    """Serve RUN frames from ``sock`` until it is closed (the process's entry point).

    ``workdir`` is a path that does not exist yet: the worker creates it (mode 0700),
    works in it, and removes it as it exits.
    """
    global _output_limit
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the node; the node stops us
    if memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if workdir is not None:
        os.mkdir(workdir, 0o700)  # fails if anything is there already: it must be ours
        os.chdir(workdir)
    _output_limit = max_output_bytes
    watch = threading.Thread(target=_exit_with_parent, args=(sock.fileno(), workdir), daemon=True)
    watch.start()
    _send(sock, Kind.READY, 0, str(os.getpid()).encode())
    tasks: dict[str, Task] = {}
    try:
        while (frame := _recv_frame(sock)) is not None:
            job_id, task, payload = frame
            kind, body = _run(tasks, allowed, task, payload)
            del frame, payload  # a large payload is not kept while the worker waits
            _send(sock, kind, job_id, body)
            del body
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(
    tasks: dict[str, Task], allowed: Collection[str], task: str, payload: bytes
) -> tuple[Kind, list[bytes | bytearray | memoryview]]:
    """Run one job: (OK, [cpu, result]) or (ERROR, [cpu, the error as JSON])."""
    start = time.process_time()
    try:
        if task not in allowed:  # the parent checks first; this is the last line
            raise PermissionError(f"task {task!r} is not allowed")
        fn = tasks.get(task) or tasks.setdefault(task, _resolve(task))
        result = fn(payload)
        if not isinstance(result, bytes | bytearray | memoryview):
            raise TypeError(f"task returned {type(result).__name__}, not bytes")
        size = memoryview(result).nbytes
        if _output_limit is not None and size > _output_limit:
            del result
            raise OutputTooLarge(
                f"the output has {size} bytes, more than the {_output_limit} a job may return",
                task=task,
                size=size,
                limit=_output_limit,
            )
    except Exception as exc:  # whatever a task raises goes back to the caller
        error = RemoteError.capture(exc).encode()
        return Kind.ERROR, [CPU.pack(time.process_time() - start), error]
    return Kind.OK, [CPU.pack(time.process_time() - start), result]


def _resolve(task: str) -> Task:
    module, _, name = task.partition(":")
    obj: object = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{task} is not callable")
    fn: Task = obj
    return fn


def _exit_with_parent(fd: int, workdir: str | None) -> None:
    """Block until the parent's end of the socket hangs up, then end this process."""
    poller = select.poll()
    # hang-ups only (POLLHUP is always reported): data waiting to be read must not wake us
    poller.register(fd, getattr(select, "POLLRDHUP", 0))
    while not poller.poll():
        pass
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
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
    sock: socket.socket,
    kind: Kind,
    job_id: int,
    body: bytes | bytearray | memoryview | list[bytes | bytearray | memoryview],
) -> None:
    """One frame; ``body`` may come in parts (sent one after the other, never joined)."""
    parts = body if isinstance(body, list) else [body]
    size = sum(memoryview(part).nbytes for part in parts)
    head = HEADER.pack(kind, 0, job_id, size)
    if size <= 65536:
        sock.sendall(b"".join([head, *parts]))
    else:  # no copy of a large result
        sock.sendall(head)
        for part in parts:
            sock.sendall(part)
