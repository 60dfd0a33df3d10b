"""Run allowed tasks by name in worker processes, with limits, under asyncio.

``Executor`` is what the node talks to: ``run`` a task by name with a payload and
get its ``Outcome`` (the result or the error, and the CPU and wall time the job
used), or ``submit`` it and get the bytes back; ``close``, read ``stats``. A task is
a function ``f(payload: bytes) -> bytes`` named ``"package.module:function"``; only
names in the allow-list given at construction run, so a request can never name
arbitrary code. Every implementation passes the suite in
``tests/executor/test_executor.py``.

Each job has an owner (the node passes the client's address). Queued jobs are
served fairly across owners: a free worker takes the next job of the owner with the
fewest jobs running, the one served longest ago among equals, so one owner's long
jobs cannot make another's wait behind all of them.

``ProcessExecutor`` keeps a fixed set of long-lived worker processes (``_worker``),
so what a task module caches between jobs (an ONNX session per model hash)
survives. Each worker has an address-space limit (``RLIMIT_AS``), an output limit
and an empty working directory of its own, removed when it exits; a job has a
wall-time limit, past which its worker is killed. A worker that dies, for whatever
reason, is replaced and the queued jobs go on; the node never goes down with it.

How the parent waits without blocking the event loop: each worker is one end of a
socket pair whose other end is an asyncio transport (``_worker_handle``), read by
the loop itself. A job is one write; the reply arrives in ``data_received``, which
resolves the caller's future and hands the worker its next job in the same
callback. There is no thread per worker and no ``call_soon_threadsafe`` hop, which
would add a thread switch and a wake-up of the loop to every job. One supervisor
task per worker slot starts a worker, waits for it to die, reaps it, starts the next.
A job's timer runs, and its worker's death is reported, in the context (``contextvars``)
the job was submitted from, so that what is logged of it names the caller's job.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import multiprocessing
import os
import re
import secrets
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from itertools import count
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import Literal, Self

from .._exceptions import (
    ConfigError,
    ExecutorBusy,
    ExecutorClosed,
    InvalidInput,
    JobCrashed,
    JobTimeout,
    UsageError,
)
from ._wire import RemoteError
from ._worker_handle import Job, State, WorkerHandle, describe_exit

__all__ = [
    "Executor",
    "ExecutorLimits",
    "ExecutorStats",
    "Outcome",
    "ProcessExecutor",
    "check_task_names",
]

log = logging.getLogger("idlegrid.executor")

#: seconds a new worker may take to report ready before it is killed
STARTUP_TIMEOUT = 60.0
#: seconds workers get to exit on close before they are killed
CLOSE_GRACE = 2.0
#: workers in a row that die before they are ready, after which queued jobs fail
MAX_START_FAILURES = 3

_TASK_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclass(frozen=True)
class ExecutorLimits:
    """How many jobs run and wait at once, and how much time and memory each may use."""

    #: jobs running at once (worker processes)
    workers: int = 2
    #: jobs waiting beyond ``workers``; one more is refused with ExecutorBusy
    queue: int = 64
    #: seconds one job may run; past it the worker is killed and replaced
    wall_time_s: float = 30.0
    #: address-space limit of each worker, MiB (None: unlimited; needed for CUDA)
    memory_mb: int | None = 2048
    #: bytes a job's result may have; a larger one fails with OutputTooLarge (None: no limit)
    max_output_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.workers < 1 or self.queue < 0:
            raise ConfigError(f"need workers >= 1 and queue >= 0, got {self.workers}, {self.queue}")
        if not 0 < self.wall_time_s < float("inf"):
            raise ConfigError(f"wall_time_s must be positive and finite, got {self.wall_time_s}")
        if self.memory_mb is not None and self.memory_mb < 1:
            raise ConfigError(f"memory_mb must be positive or None, got {self.memory_mb}")
        if self.max_output_bytes is not None and self.max_output_bytes < 1:
            raise ConfigError(
                f"max_output_bytes must be positive or None, got {self.max_output_bytes}"
            )


@dataclass(frozen=True)
class ExecutorStats:
    """Counters of an executor; ``completed`` and ``failed`` count jobs that ran."""

    running: int
    queued: int
    completed: int
    failed: int
    #: workers started to replace one that died or was killed
    restarts: int
    #: workers ready or busy now
    workers: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a job a worker took: its result or its error, and what it used."""

    #: the task's result; None when the job failed
    output: bytes | None
    #: why the job failed (JobTimeout, JobCrashed, JobFailed, OutputTooLarge, or the
    #: idlegrid error the task raised); None when it succeeded
    error: Exception | None
    #: CPU seconds the worker reported for the job; None when it never reported (killed)
    cpu_s: float | None
    #: seconds a worker was held by the job
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def seconds(self) -> float:
        """The time to bill: the worker's CPU time where it reported one, else wall time."""
        return self.wall_s if self.cpu_s is None else self.cpu_s

    def result(self) -> bytes:
        """The output, or the job's error raised."""
        if self.error is not None:
            raise self.error
        assert self.output is not None
        return self.output


class Executor(ABC):
    """Runs allowed tasks, by name, away from the node's event loop."""

    @abstractmethod
    async def run(
        self,
        task: str,
        payload: bytes,
        *,
        timeout: float | None = None,
        owner: Hashable = None,
    ) -> Outcome:
        """Run ``task`` on ``payload`` for ``owner``; what became of it once a worker took it.

        ``timeout`` lowers the wall-time limit of this job (never raises it). Raises,
        for a job that no worker ran: InvalidInput (task not allowed, bad arguments),
        ExecutorBusy, ExecutorClosed, JobCrashed (workers do not start). A job that ran
        and failed is an ``Outcome`` with its error.
        """

    async def submit(
        self,
        task: str,
        payload: bytes,
        *,
        timeout: float | None = None,
        owner: Hashable = None,
    ) -> bytes:
        """Run ``task`` on ``payload`` and return its result.

        Raises as ``run`` does, and for a job that failed: JobTimeout, JobCrashed,
        JobFailed, OutputTooLarge, or the idlegrid error the task itself raised.
        """
        outcome = await self.run(task, payload, timeout=timeout, owner=owner)
        return outcome.result()

    @abstractmethod
    async def close(self) -> None:
        """Stop every worker; jobs not finished fail with ExecutorClosed. Idempotent."""

    @abstractmethod
    def stats(self) -> ExecutorStats:
        """The executor's counters now."""

    @abstractmethod
    async def start(self) -> None:
        """Get workers ready before the first job; ``submit`` starts them too if need be."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def check_task_names(allowed: Collection[str]) -> frozenset[str]:
    """The allow-list as a set, each name checked to be ``package.module:function``."""
    if isinstance(allowed, str | bytes):
        raise ConfigError("allowed_tasks must be a collection of task names, not one string")
    names = frozenset(allowed)
    bad = sorted(repr(n) for n in names if not isinstance(n, str) or not _TASK_NAME.fullmatch(n))
    if bad or not names:
        raise ConfigError(f"allowed_tasks must be 'package.module:function' names, got {bad}")
    return names


class ProcessExecutor(Executor):
    """An executor over a fixed set of long-lived worker processes on this machine.

    Workers start on ``start()`` or the first ``submit``, from the event loop running
    then; the executor belongs to that loop. ``start_method`` is a multiprocessing
    start method: "forkserver" (fast restarts) or "spawn"; "fork" is refused, as
    forking a process with an event loop and threads is unsafe. Either way, as
    multiprocessing does, the parent's ``__main__`` module is run once in the
    forkserver or in each spawned worker; workers import ``idlegrid.executor``.
    ``preload`` names modules the forkserver imports before the first worker forks
    from it, so that no worker imports them again (a module that is not installed is
    skipped, as multiprocessing does); the forkserver is one per process, so the first
    executor to start a worker sets them.
    """

    def __init__(
        self,
        limits: ExecutorLimits,
        *,
        allowed_tasks: Collection[str],
        start_method: Literal["forkserver", "spawn"] = "forkserver",
        preload: Collection[str] = (),
    ) -> None:
        if start_method not in ("forkserver", "spawn"):
            raise ConfigError(f"start_method must be 'forkserver' or 'spawn', not {start_method!r}")
        for module in preload:
            if not _MODULE.fullmatch(module):
                raise ConfigError(f"preload: {module!r} is not a module name")
        self.limits = limits
        self._allowed = check_task_names(allowed_tasks)
        self._names = {name: name.encode() for name in self._allowed}
        self._ctx: SpawnContext | ForkServerContext = (
            multiprocessing.get_context("spawn")
            if start_method == "spawn"
            else multiprocessing.get_context("forkserver")
        )
        if preload and isinstance(self._ctx, ForkServerContext):
            # ``__main__`` first, as multiprocessing's own default
            self._ctx.set_forkserver_preload(["__main__", *preload])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: list[WorkerHandle | None] = [None] * limits.workers
        self._supervisors: list[asyncio.Task[None]] = []
        #: queued jobs by owner, each owner's in order
        self._pending: dict[Hashable, deque[Job]] = {}
        self._queued = 0
        #: when each owner with jobs running or queued was last served (a dispatch count)
        self._served: dict[Hashable, int] = {}
        self._ticks = count()
        self._workdirs: set[str] = set()
        self._ids = count(1)
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self._completed = self._failed = self._restarts = 0
        self._start_failures = 0
        self._start_error = "no worker has failed yet"

    # -- Executor ------------------------------------------------------------------
    async def start(self) -> None:
        loop = self._bind()
        deadline = loop.time() + STARTUP_TIMEOUT
        while not all(w is not None and w.ready and w.state is not State.DEAD for w in self._slots):
            if self._closed:
                raise ExecutorClosed("executor closed while starting")
            if self._start_failures >= MAX_START_FAILURES or loop.time() > deadline:
                raise ConfigError(f"worker processes do not start: {self._start_error}")
            await asyncio.sleep(0.005)

    async def run(
        self,
        task: str,
        payload: bytes,
        *,
        timeout: float | None = None,
        owner: Hashable = None,
    ) -> Outcome:
        if self._closed:
            raise ExecutorClosed("executor is closed")
        name = self._names.get(task)
        if name is None:
            raise InvalidInput(f"task {task!r} is not allowed on this node")
        if not isinstance(payload, bytes):
            raise InvalidInput(f"payload must be bytes, not {type(payload).__name__}")
        wall = self.limits.wall_time_s
        if timeout is not None:
            if not timeout > 0:
                raise InvalidInput(f"timeout must be positive, got {timeout}")
            wall = min(wall, timeout)
        loop = self._bind()
        job = Job(
            next(self._ids),
            task,
            name,
            payload,
            wall,
            owner,
            loop.create_future(),
            contextvars.copy_context(),  # what is logged of the job names the caller's
        )
        idle = next((w for w in self._slots if w is not None and w.state is State.IDLE), None)
        if idle is not None:
            self._start(idle, job)
        elif self._queued < self.limits.queue + self._not_busy():
            self._pending.setdefault(owner, deque()).append(job)
            self._queued += 1
        else:
            raise ExecutorBusy(
                f"all {self.limits.workers} workers busy and {self._queued} jobs queued"
            )
        try:
            outcome: Outcome = await job.future
        except asyncio.CancelledError:
            # a queued job is dropped; a running one finishes and its result is dropped
            self._unqueue(job)
            raise
        return outcome

    async def close(self) -> None:
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            raise UsageError("close the executor from the event loop that first used it")
        if self._closing is None:
            self._closed = True
            if self._loop is None:
                return
            self._closing = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closing)

    def stats(self) -> ExecutorStats:
        states = [w.state for w in self._slots if w is not None]
        return ExecutorStats(
            running=states.count(State.BUSY),
            queued=self._queued,
            completed=self._completed,
            failed=self._failed,
            restarts=self._restarts,
            workers=states.count(State.BUSY) + states.count(State.IDLE),
        )

    # -- what workers report (the Owner protocol of _worker_handle) ----------------
    def _on_ready(self, worker: WorkerHandle) -> None:
        self._start_failures = 0
        self._dispatch(worker)

    def _on_reply(
        self, worker: WorkerHandle, job: Job, reply: bytes | RemoteError, cpu_s: float
    ) -> None:
        wall_s = worker.loop.time() - job.started
        if isinstance(reply, bytes):
            self._finish(job, Outcome(reply, None, cpu_s, wall_s))
        elif reply.out_of_memory:
            what = f"{job.task} ran out of memory ({self.limits.memory_mb} MiB per worker)"
            self._finish(job, Outcome(None, JobCrashed(what, task=job.task), cpu_s, wall_s))
            worker.kill()  # its heap may be in pieces: start afresh
            return
        else:
            self._finish(job, Outcome(None, reply.to_exception(job.task), cpu_s, wall_s))
        self._dispatch(worker)

    def _on_timeout(self, worker: WorkerHandle, job: Job) -> None:
        what = f"{job.task} ran past its wall-time limit of {job.timeout:g} s"
        log.warning("%s; worker pid %s killed", what, worker.pid)
        error = JobTimeout(what, task=job.task, seconds=job.timeout)
        self._finish(job, Outcome(None, error, None, worker.loop.time() - job.started))

    def _start(self, worker: WorkerHandle, job: Job) -> None:
        self._served[job.owner] = next(self._ticks)
        worker.run(job)

    def _dispatch(self, worker: WorkerHandle) -> None:
        """Give an idle worker the next queued job that still has a caller.

        The job is the oldest of the owner with the fewest jobs running now, and among
        those, of the owner served longest ago.
        """
        while self._pending:
            if len(self._pending) == 1:
                owner = next(iter(self._pending))
            else:
                running = Counter(w.job.owner for w in self._slots if w is not None and w.job)
                owner = min(self._pending, key=lambda o: (running[o], self._served.get(o, -1)))
            jobs = self._pending[owner]
            job = jobs.popleft()
            self._queued -= 1
            if not jobs:
                del self._pending[owner]
            if not job.future.done():
                self._start(worker, job)
                return

    def _unqueue(self, job: Job) -> None:
        jobs = self._pending.get(job.owner)
        if jobs is not None and job in jobs:
            jobs.remove(job)
            self._queued -= 1
            if not jobs:
                del self._pending[job.owner]

    def _finish(self, job: Job, outcome: Outcome) -> None:
        if job.owner not in self._pending and not any(
            w is not None and w.job is not None and w.job.owner == job.owner for w in self._slots
        ):
            self._served.pop(job.owner, None)  # nothing of it left: forget it
        if outcome.error is not None:
            self._failed += 1
        else:
            self._completed += 1
        if not job.future.done():  # if it is, the caller went away
            job.future.set_result(outcome)

    # -- workers' lives ------------------------------------------------------------
    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            # in a context of their own, not in that of the job that happens to start them
            self._supervisors = [
                loop.create_task(
                    self._supervise(slot),
                    name=f"idlegrid-worker-{slot}",
                    context=contextvars.Context(),
                )
                for slot in range(self.limits.workers)
            ]
        elif self._loop is not loop:
            raise UsageError("this executor belongs to the event loop that first used it")
        return loop

    def _not_busy(self) -> int:
        return sum(1 for w in self._slots if w is None or w.state is not State.BUSY)

    async def _supervise(self, slot: int) -> None:
        """Keep a live worker in ``slot``: start one, wait for it to die, reap it, repeat."""
        assert self._loop is not None
        memory = None if self.limits.memory_mb is None else self.limits.memory_mb * 2**20
        for started in count():
            if self._closed:
                return
            if started:
                self._restarts += 1
            workdir = _workdir()
            try:
                worker = WorkerHandle.launch(
                    self._ctx,
                    allowed=self._allowed,
                    memory_bytes=memory,
                    name=f"idlegrid-worker-{slot}",
                    owner=self,
                    loop=self._loop,
                    workdir=workdir,
                    max_output_bytes=self.limits.max_output_bytes,
                )
            except Exception as exc:  # out of processes or file descriptors: try again later
                log.exception("cannot start a worker")
                await self._start_failed(f"cannot start a worker: {exc!r}")
                continue
            self._workdirs.add(workdir)
            self._slots[slot] = worker  # from here on, close() reaps it
            await worker.connect(STARTUP_TIMEOUT)
            job = await worker.gone
            code = await worker.reap()
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
            self._workdirs.discard(workdir)
            if job is not None:
                what = f"worker pid {worker.pid} {describe_exit(code)} while running {job.task}"
                job.context.run(log.warning, "%s", what)
                crashed = JobCrashed(what, task=job.task, exitcode=code)
                self._finish(job, Outcome(None, crashed, None, self._loop.time() - job.started))
            if not worker.ready:
                await self._start_failed(f"a worker {describe_exit(code)} before it was ready")

    async def _start_failed(self, reason: str) -> None:
        """Back off before the next start; after several failures, fail the queued jobs."""
        self._start_failures += 1
        self._start_error = reason
        log.warning("%s (%d in a row)", reason, self._start_failures)
        if self._start_failures >= MAX_START_FAILURES:
            for jobs in self._pending.values():
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(JobCrashed(f"workers do not start: {reason}"))
            self._pending.clear()
            self._queued = 0
        await asyncio.sleep(min(5.0, 0.05 * 2**self._start_failures))

    async def _shutdown(self) -> None:
        for jobs in self._pending.values():
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(ExecutorClosed("executor closed before the job ran"))
        self._pending.clear()
        self._queued = 0
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        workers = [w for w in self._slots if w is not None]
        for worker in workers:
            if worker.job is not None and not worker.job.future.done():
                worker.job.future.set_exception(ExecutorClosed("executor closed while the job ran"))
            worker.stop()
        await asyncio.gather(*(w.reap(CLOSE_GRACE) for w in workers))
        for workdir in self._workdirs:
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
        self._workdirs.clear()


def _workdir() -> str:
    """A fresh path for a worker's working directory (the worker creates it, mode 0700)."""
    name = f"idlegrid-worker-{os.getpid()}-{secrets.token_hex(8)}"
    return os.path.join(tempfile.gettempdir(), name)
