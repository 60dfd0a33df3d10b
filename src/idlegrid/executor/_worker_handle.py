"""The parent's end of one worker process: start it, talk to it, end it.

A ``WorkerHandle`` is the asyncio protocol on the parent's end of the worker's
socket pair (the worker's end is served by ``_worker``). It writes RUN frames,
parses the replies, keeps the wall-time timer of the job it runs, and tells its
``Owner`` (the executor) what happened. What to make of a reply, which error to
raise and whether to kill, is the owner's decision; a job that runs out of time
always costs the worker its life, as it is still busy.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import socket
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from enum import Enum
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any, Protocol, cast

from ._wire import CPU, HEADER, Kind, RemoteError
from ._worker import worker_main

__all__ = ["Job", "Owner", "State", "WorkerHandle", "describe_exit"]

log = logging.getLogger("idlegrid.executor")

_INLINE_PAYLOAD = 65536  # payloads up to this size go out in one write with the header


class State(Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


@dataclass(eq=False, slots=True)
class Job:
    id: int
    task: str
    #: the task name as sent (utf-8)
    name: bytes
    payload: bytes
    #: wall-time limit, seconds
    timeout: float
    #: whoever the job is run for (the executor queues fairly across owners)
    owner: Hashable
    #: set to the job's outcome, or to an error if it never ran
    future: asyncio.Future[Any]
    #: the context the job was submitted from: its timer runs, and its crash is reported,
    #: there (a job dispatched when another one ends would otherwise run in that one's)
    context: contextvars.Context
    #: loop time when a worker took the job
    started: float = 0.0


class Owner(Protocol):
    def _on_ready(self, worker: WorkerHandle) -> None: ...

    def _on_reply(
        self, worker: WorkerHandle, job: Job, reply: bytes | RemoteError, cpu_s: float
    ) -> None: ...

    def _on_timeout(self, worker: WorkerHandle, job: Job) -> None: ...


class WorkerHandle(asyncio.Protocol):
    """One worker process as the parent sees it: its socket, state and current job."""

    def __init__(
        self, proc: BaseProcess, sock: socket.socket, owner: Owner, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.owner = owner
        self.loop = loop
        self.state = State.STARTING
        #: whether it ever reported ready (a worker that dies before is a failed start)
        self.ready = False
        self.job: Job | None = None
        #: resolved when its socket closes, with the job it was running then
        self.gone: asyncio.Future[Job | None] = loop.create_future()
        self.exitcode: int | None = None
        self._sock: socket.socket | None = sock
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._buf = bytearray()

    @classmethod
    def launch(
        cls,
        ctx: SpawnContext | ForkServerContext,
        *,
        allowed: Collection[str],
        memory_bytes: int | None,
        name: str,
        owner: Owner,
        loop: asyncio.AbstractEventLoop,
        workdir: str | None = None,
        max_output_bytes: int | None = None,
    ) -> WorkerHandle:
        """Start a worker process (about a millisecond; the first forkserver start, 0.1 s).

        ``workdir``: a path that does not exist yet, the worker's working directory.
        """
        mine, theirs = socket.socketpair()
        try:
            proc = ctx.Process(
                target=worker_main,
                args=(theirs, allowed, memory_bytes, workdir, max_output_bytes),
                name=name,
                daemon=True,  # also ended by multiprocessing when the node exits normally
            )
            proc.start()
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        return cls(proc, mine, owner, loop)

    async def connect(self, startup_timeout: float) -> None:
        """Watch the socket from the event loop; kill the worker if not ready in time."""
        sock, self._sock = self._sock, None
        assert sock is not None
        try:
            await self.loop.create_unix_connection(lambda: self, sock=sock)
        except Exception:
            log.exception("cannot watch worker pid %s", self.pid)
            sock.close()
            self.kill()
            self.connection_lost(None)
            return
        except BaseException:  # cancelled: whoever cancelled reaps the process
            sock.close()
            raise
        if self.state is State.STARTING:
            self._timer = self.loop.call_later(startup_timeout, self.kill)

    def run(self, job: Job) -> None:
        assert self._transport is not None and self.state is State.IDLE
        self.state = State.BUSY
        self.job = job
        job.started = self.loop.time()
        head = HEADER.pack(Kind.RUN, len(job.name), job.id, len(job.name) + len(job.payload))
        if len(job.payload) <= _INLINE_PAYLOAD:
            self._transport.write(head + job.name + job.payload)
        else:
            self._transport.writelines((head + job.name, job.payload))
        self._timer = self.loop.call_later(job.timeout, self._timed_out, context=job.context)

    def kill(self) -> None:
        """End the process now (SIGKILL) and hang up."""
        self._cancel_timer()
        self.state = State.DEAD
        if self.exitcode is None and self.proc.exitcode is None:
            self.proc.kill()
        if self._transport is not None:
            self._transport.abort()

    def stop(self) -> None:
        """Ask the process to end: hang up and send SIGTERM."""
        self._cancel_timer()
        self.job = None
        if self._transport is not None:
            self._transport.abort()
        if self.exitcode is None and self.proc.exitcode is None:
            self.proc.terminate()

    async def reap(self, grace: float = 1.0) -> int | None:
        """Wait for the process to exit, killing it after ``grace`` s; its exit code."""
        if self.exitcode is not None:
            return self.exitcode
        code = await _exit_code(self.proc, grace)
        if code is None:
            self.proc.kill()
            code = await _exit_code(self.proc, 5.0)
        if code is None:
            log.error("worker pid %s does not exit after SIGKILL", self.pid)
            return None
        self.exitcode = code
        self.proc.close()
        return code

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: check the behaviour
        if not hasattr(transport, "write"):
            raise TypeError(f"worker transport {type(transport).__name__} cannot write")
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= HEADER.size and self.state is not State.DEAD:
            kind, _, job_id, length = HEADER.unpack_from(buf)
            end = HEADER.size + length
            if len(buf) < end:
                return
            start, cpu_s = HEADER.size, -1.0  # -1: no CPU time came with the frame
            if kind in (Kind.OK, Kind.ERROR) and length >= CPU.size:
                (cpu_s,) = CPU.unpack_from(buf, start)
                start += CPU.size
            with memoryview(buf) as view:
                body = bytes(view[start:end])
            del buf[:end]
            self._on_frame(kind, job_id, body, cpu_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._cancel_timer()
        self.state = State.DEAD
        job, self.job = self.job, None
        if not self.gone.done():
            self.gone.set_result(job)

    # -- frames ----------------------------------------------------------------------
    def _on_frame(self, kind: int, job_id: int, body: bytes, cpu_s: float) -> None:
        if kind == Kind.READY and self.state is State.STARTING:
            self._cancel_timer()
            self.state = State.IDLE
            self.ready = True
            self.owner._on_ready(self)
            return
        job = self.job
        ok = job is not None and job.id == job_id and kind in (Kind.OK, Kind.ERROR)
        if job is None or not ok or not cpu_s >= 0.0:
            log.error("worker pid %s sent an unexpected frame (kind %s); killed", self.pid, kind)
            self.kill()
            return
        self._cancel_timer()
        self.job = None
        self.state = State.IDLE
        reply = body if kind == Kind.OK else RemoteError.decode(body)
        self.owner._on_reply(self, job, reply, cpu_s)

    def _timed_out(self) -> None:
        self._timer = None
        job, self.job = self.job, None
        if job is not None:
            self.owner._on_timeout(self, job)
        self.kill()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def _exit_code(proc: BaseProcess, timeout: float) -> int | None:
    """The exit code once ``proc`` has exited and been reaped; None after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = 0.001
    while (code := proc.exitcode) is None and loop.time() < deadline:
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)
    return code


def describe_exit(code: int | None) -> str:
    """How a process ended, for a message: "exited with code 1", "was killed by SIGSEGV"."""
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
