"""Executors: one suite run against every implementation, then process specifics.

``make_executor`` is the factory fixture: each test that takes it runs once per
implementation (the process executor over forkserver and over spawn; a Ray
executor joins the params when it exists). Task functions live in ``_tasks``.
Each test runs its own event loop with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from idlegrid import BlobNotFound, ConfigError, InvalidInput, UsageError
from idlegrid._process import ProcessRef
from idlegrid.executor import (
    Executor,
    ExecutorBusy,
    ExecutorClosed,
    ExecutorLimits,
    JobCrashed,
    JobFailed,
    JobTimeout,
    Outcome,
    OutputTooLarge,
    ProcessExecutor,
)

from . import _tasks as t

T = TypeVar("T")

ECHO = t.name(t.echo)
SPAN = t.name(t.span)
COUNT = t.name(t.count_calls)
SLEEP = t.name(t.sleep_forever)
LOADED = t.name(t.loaded)
TASKS = [
    t.name(fn)
    for fn in (
        t.echo,
        t.span,
        t.count_calls,
        t.sleep_forever,
        t.exit_hard,
        t.segfault,
        t.raise_value_error,
        t.raise_invalid_input,
        t.raise_blob_not_found,
        t.raise_unloaded_error,
        t.return_text,
        t.allocate_mib,
        t.make_bytes,
        t.heavy_modules,
        t.where,
        t.leave_a_file,
        t.burn,
    )
]
ROOT = Path(__file__).resolve().parents[2]


class ExecutorFactory(Protocol):
    def __call__(self, *, allowed_tasks: Collection[str] = ..., **limits: Any) -> Executor: ...


@pytest.fixture(params=["process-forkserver", "process-spawn"])
def make_executor(request: pytest.FixtureRequest) -> ExecutorFactory:
    method = request.param.removeprefix("process-")

    def process(*, allowed_tasks: Collection[str] = TASKS, **limits: Any) -> Executor:
        return ProcessExecutor(
            ExecutorLimits(**limits), allowed_tasks=allowed_tasks, start_method=method
        )

    return process


def run(body: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(body())


def stray_processes() -> set[str]:
    """Descendants of this process, zombies included, but for multiprocessing's helpers.

    The helpers are the forkserver and the resource tracker: children of this
    process that multiprocessing starts once and keeps. Workers forked by the
    forkserver are its children, so they count.
    """
    me = os.getpid()
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        pid = int(entry.name)
        parents[pid] = int(stat[stat.rfind(")") + 2 :].split()[1])
        commands[pid] = command

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == me:
                return True
        return False

    helpers = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")
    return {
        f"{pid} {commands[pid] or '<zombie>'}"
        for pid in parents
        if descends(pid) and not (parents[pid] == me and any(h in commands[pid] for h in helpers))
    }


@pytest.fixture(autouse=True)
def no_stray_processes() -> Iterator[None]:
    """Every test leaves behind no process it started: no worker, no zombie."""
    before = stray_processes()
    yield
    assert stray_processes() - before == set()


def pids_in(folder: Path, n: int, *, within: float = 60.0) -> set[int]:
    """The pids that ``sleep_forever`` jobs wrote into ``folder``, once there are ``n``."""
    deadline = time.monotonic() + within
    while len(found := {int(p.name) for p in folder.iterdir()}) < n:
        assert time.monotonic() < deadline, f"only {len(found)} of {n} jobs started"
        time.sleep(0.01)
    return found


# -- results -------------------------------------------------------------------------
def test_submit_returns_the_task_result(make_executor: ExecutorFactory) -> None:
    async def body() -> None:
        async with make_executor() as ex:
            assert await ex.submit(ECHO, b"hello") == b"hello"
            assert await ex.submit(ECHO, b"") == b""
            assert await ex.submit(ECHO, bytes(range(256))) == bytes(range(256))
            assert ex.stats().completed == 3

    run(body)


def test_large_payload_and_result_cross_intact(make_executor: ExecutorFactory) -> None:
    async def body() -> None:
        async with make_executor() as ex:
            big = os.urandom(8 * 2**20)
            assert await ex.submit(ECHO, big) == big
            out = await ex.submit(t.name(t.make_bytes), b"%d" % (16 * 2**20 + 3))
            assert out == t.make_bytes(b"%d" % (16 * 2**20 + 3))

    run(body)


def test_a_worker_keeps_its_state_between_jobs(make_executor: ExecutorFactory) -> None:
    async def body() -> list[dict[str, int]]:
        async with make_executor(workers=1) as ex:
            return [json.loads(await ex.submit(COUNT, b"")) for _ in range(3)]

    replies = run(body)
    assert [r["calls"] for r in replies] == [1, 2, 3]
    assert len({r["pid"] for r in replies}) == 1


def test_workers_do_not_import_heavy_libraries(make_executor: ExecutorFactory) -> None:
    async def body() -> list[str]:
        async with make_executor(workers=1) as ex:
            loaded: list[str] = json.loads(await ex.submit(t.name(t.heavy_modules), b""))
            return loaded

    assert run(body) == []


def test_concurrency_never_exceeds_workers(make_executor: ExecutorFactory) -> None:
    async def body() -> tuple[list[dict[str, Any]], int]:
        async with make_executor(workers=2, queue=16) as ex:
            peak = 0

            async def job() -> dict[str, Any]:
                nonlocal peak
                future = asyncio.ensure_future(ex.submit(SPAN, b"0.05"))
                peak = max(peak, ex.stats().running)
                reply: dict[str, Any] = json.loads(await future)
                return reply

            spans = await asyncio.gather(*(job() for _ in range(12)))
            return spans, peak

    spans, peak = run(body)
    assert peak <= 2
    assert len({s["pid"] for s in spans}) <= 2
    # at no moment were more than two jobs running
    events = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans])
    running = 0
    for _, step in events:
        running += step
        assert running <= 2


# -- failures ------------------------------------------------------------------------
def test_runaway_job_times_out_and_the_executor_goes_on(make_executor: ExecutorFactory) -> None:
    async def body() -> None:
        async with make_executor(workers=1, wall_time_s=0.5) as ex:
            with pytest.raises(JobTimeout) as exc:
                await ex.submit(SLEEP, b"")
            assert exc.value.seconds == 0.5
            assert exc.value.task == SLEEP
            assert await ex.submit(ECHO, b"next") == b"next"
            stats = ex.stats()
            assert stats.restarts >= 1
            assert (stats.completed, stats.failed) == (1, 1)

    run(body)


def test_timeout_argument_lowers_the_limit(make_executor: ExecutorFactory) -> None:
    async def body() -> None:
        async with make_executor(workers=1, wall_time_s=30.0) as ex:
            with pytest.raises(JobTimeout) as exc:
                await ex.submit(SLEEP, b"", timeout=0.2)
            assert exc.value.seconds == 0.2
            assert await ex.submit(ECHO, b"x", timeout=100.0) == b"x"

    run(body)


@pytest.mark.parametrize("task", [t.exit_hard, t.segfault])
def test_crashing_job_raises_job_crashed_and_queued_jobs_go_on(
    make_executor: ExecutorFactory, task: Callable[[bytes], bytes]
) -> None:
    async def body() -> None:
        async with make_executor(workers=1) as ex:
            crash = asyncio.ensure_future(ex.submit(t.name(task), b""))
            queued = [asyncio.ensure_future(ex.submit(ECHO, b"%d" % i)) for i in range(3)]
            with pytest.raises(JobCrashed) as exc:
                await crash
            assert exc.value.exitcode == (1 if task is t.exit_hard else -signal.SIGSEGV)
            assert await asyncio.gather(*queued) == [b"0", b"1", b"2"]
            assert ex.stats().restarts == 1

    run(body)


def test_memory_hog_is_stopped_and_the_node_survives(make_executor: ExecutorFactory) -> None:
    async def body() -> None:
        async with make_executor(workers=1, memory_mb=512) as ex:
            with pytest.raises((JobCrashed, JobFailed)) as exc:
                await ex.submit(t.name(t.allocate_mib), b"4096")
            if isinstance(exc.value, JobFailed):
                assert exc.value.exc_type == "MemoryError"
            assert await ex.submit(t.name(t.allocate_mib), b"64") == b"%d" % (64 * 2**20)

    run(body)


def test_task_exception_comes_back_as_job_failed(make_executor: ExecutorFactory) -> None:
    async def body() -> None:
        async with make_executor() as ex:
            with pytest.raises(JobFailed) as exc:
                await ex.submit(t.name(t.raise_value_error), b"bad value")
            assert (exc.value.exc_type, exc.value.message) == ("ValueError", "bad value")
            assert "raise_value_error" in exc.value.traceback
            with pytest.raises(JobFailed) as long:
                await ex.submit(t.name(t.raise_value_error), b"x" * 100_000)
            assert 100 < len(long.value.message) <= 2000
            with pytest.raises(JobFailed) as wrong:
                await ex.submit(t.name(t.return_text), b"not bytes")
            assert wrong.value.exc_type == "TypeError"
            assert ex.stats().failed == 3
            assert await ex.submit(ECHO, b"ok") == b"ok"

    run(body)


def test_idlegrid_errors_keep_their_class(make_executor: ExecutorFactory) -> None:
    async def body() -> None:
        async with make_executor() as ex:
            with pytest.raises(InvalidInput) as exc:
                await ex.submit(t.name(t.raise_invalid_input), b"rows must be > 0")
            assert type(exc.value) is InvalidInput
            assert str(exc.value) == "rows must be > 0"

            digest = "ab" * 32
            with pytest.raises(BlobNotFound) as missing:
                await ex.submit(t.name(t.raise_blob_not_found), digest.encode())
            assert missing.value.digest == digest
            assert str(missing.value) == str(BlobNotFound(digest))

            # a subclass the executor has not loaded arrives as its nearest loaded base
            with pytest.raises(InvalidInput) as unloaded:
                await ex.submit(t.name(t.raise_unloaded_error), b"odd")
            assert type(unloaded.value) is InvalidInput
            assert str(unloaded.value) == "odd"

    run(body)


# -- refusals ------------------------------------------------------------------------
def test_task_not_allowed_is_refused_before_anything_runs(
    make_executor: ExecutorFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"

    async def body() -> None:
        async with make_executor(allowed_tasks=[ECHO]) as ex:
            with pytest.raises(InvalidInput, match="not allowed"):
                await ex.submit(t.name(t.touch), str(marker).encode())
            with pytest.raises(InvalidInput):
                await ex.submit("os:system", b"true")
            stats = ex.stats()
            assert (stats.completed, stats.failed, stats.running, stats.queued) == (0, 0, 0, 0)

    run(body)
    assert not marker.exists()


@pytest.mark.parametrize(
    "allowed",
    [[], "tests.executor._tasks:echo", ["echo"], ["os.system"], ["a:b; rm -rf /"], [b"a:b"]],
)
def test_malformed_allow_list_is_a_config_error(
    make_executor: ExecutorFactory, allowed: Any
) -> None:
    with pytest.raises(ConfigError):
        make_executor(allowed_tasks=allowed)


@pytest.mark.parametrize(
    "limits",
    [
        {"workers": 0},
        {"queue": -1},
        {"wall_time_s": 0},
        {"wall_time_s": float("inf")},
        {"memory_mb": 0},
    ],
)
def test_bad_limits_are_a_config_error(limits: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ExecutorLimits(**limits)


def test_bad_arguments_are_invalid_input(make_executor: ExecutorFactory) -> None:
    async def body() -> None:
        async with make_executor() as ex:
            with pytest.raises(InvalidInput):
                await ex.submit(ECHO, "text")  # type: ignore[arg-type]
            with pytest.raises(InvalidInput):
                await ex.submit(ECHO, b"", timeout=0)

    run(body)


def test_full_queue_raises_executor_busy(make_executor: ExecutorFactory, tmp_path: Path) -> None:
    async def body() -> None:
        async with make_executor(workers=1, queue=2) as ex:
            running = asyncio.ensure_future(ex.submit(SLEEP, str(tmp_path).encode()))
            queued = [asyncio.ensure_future(ex.submit(ECHO, b"q")) for _ in range(2)]
            await asyncio.sleep(0)
            with pytest.raises(ExecutorBusy):
                await ex.submit(ECHO, b"one too many")
            assert (ex.stats().running, ex.stats().queued) == (1, 2)
            await asyncio.to_thread(pids_in, tmp_path, 1)
        for job in (running, *queued):
            with pytest.raises(ExecutorClosed):
                await job

    run(body)


def test_cancelled_jobs_leave_the_queue_and_keep_the_worker(make_executor: ExecutorFactory) -> None:
    async def body() -> None:
        async with make_executor(workers=1, queue=4) as ex:
            first = json.loads(await ex.submit(COUNT, b""))
            slow = asyncio.ensure_future(ex.submit(SPAN, b"0.2"))
            waiting = asyncio.ensure_future(ex.submit(ECHO, b"never"))
            await asyncio.sleep(0)  # both submitted: one running, one queued
            assert (ex.stats().running, ex.stats().queued) == (1, 1)
            waiting.cancel()
            slow.cancel()
            await asyncio.sleep(0)
            assert ex.stats().queued == 0
            again = json.loads(await ex.submit(COUNT, b""))
            assert again["pid"] == first["pid"]  # the running job finished; no restart
            assert ex.stats().restarts == 0

    run(body)


# -- closing -------------------------------------------------------------------------
def test_close_fails_pending_jobs_and_leaves_no_process(
    make_executor: ExecutorFactory, tmp_path: Path
) -> None:
    async def body() -> set[int]:
        ex = make_executor(workers=2, queue=8)
        await ex.start()
        jobs = [asyncio.ensure_future(ex.submit(SLEEP, str(tmp_path).encode())) for _ in range(5)]
        pids = await asyncio.to_thread(pids_in, tmp_path, 2)
        await ex.close()
        for job in jobs:
            with pytest.raises(ExecutorClosed):
                await job
        with pytest.raises(ExecutorClosed):
            await ex.submit(ECHO, b"late")
        await ex.close()  # again: nothing happens
        assert ex.stats().workers == 0
        return pids

    pids = run(body)
    assert len(pids) == 2
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)  # not even as zombies


def test_close_while_workers_start(make_executor: ExecutorFactory) -> None:
    async def body() -> None:
        ex = make_executor(workers=2)
        job = asyncio.ensure_future(ex.submit(ECHO, b"early"))
        await asyncio.sleep(0)
        await ex.close()
        with pytest.raises(ExecutorClosed):
            await job

    run(body)


def test_closing_an_unused_executor_is_fine(make_executor: ExecutorFactory) -> None:
    async def body() -> None:
        ex = make_executor()
        await ex.close()
        with pytest.raises(ExecutorClosed):
            await ex.submit(ECHO, b"")

    run(body)


# -- outcomes: what a job used -------------------------------------------------------------
def test_run_reports_the_cpu_time_of_a_job(make_executor: ExecutorFactory) -> None:
    async def body() -> Outcome:
        async with make_executor() as ex:
            return await ex.run(t.name(t.burn), b"200000")

    outcome = run(body)
    assert outcome.ok and outcome.output is not None and outcome.error is None
    assert outcome.cpu_s is not None and outcome.cpu_s > 0
    assert outcome.seconds == outcome.cpu_s and outcome.wall_s > 0


def test_a_failed_job_is_an_outcome_with_its_error_and_cpu_time(
    make_executor: ExecutorFactory,
) -> None:
    async def body() -> Outcome:
        async with make_executor() as ex:
            return await ex.run(t.name(t.raise_invalid_input), b"bad rows")

    outcome = run(body)
    assert not outcome.ok and outcome.output is None
    assert isinstance(outcome.error, InvalidInput) and "bad rows" in str(outcome.error)
    assert outcome.cpu_s is not None
    with pytest.raises(InvalidInput, match="bad rows"):
        outcome.result()


def test_a_timed_out_job_reports_the_wall_time_it_held_the_worker(
    make_executor: ExecutorFactory,
) -> None:
    async def body() -> Outcome:
        async with make_executor() as ex:
            return await ex.run(SLEEP, b"", timeout=0.2)

    outcome = run(body)
    assert isinstance(outcome.error, JobTimeout)
    assert outcome.cpu_s is None  # the worker was killed: it never said
    assert outcome.seconds == outcome.wall_s >= 0.2 * 0.9  # the timer may fire a tick early


def test_an_output_over_the_limit_fails_in_the_worker(make_executor: ExecutorFactory) -> None:
    async def body() -> tuple[bytes, Outcome]:
        async with make_executor(max_output_bytes=4096) as ex:
            fits = await ex.submit(t.name(t.make_bytes), b"4096")
            over = await ex.run(t.name(t.make_bytes), b"4097")
            assert await ex.submit(ECHO, b"next") == b"next"  # the worker goes on
            return fits, over

    fits, over = run(body)
    assert len(fits) == 4096
    assert isinstance(over.error, OutputTooLarge)
    assert (over.error.size, over.error.limit) == (4097, 4096)


# -- fairness across owners -------------------------------------------------------------
def test_queued_jobs_are_served_fairly_across_owners(make_executor: ExecutorFactory) -> None:
    async def body() -> tuple[list[dict[str, float]], dict[str, float]]:
        async with make_executor(workers=1) as ex:
            hog = [asyncio.ensure_future(ex.submit(SPAN, b"0.1", owner="hog")) for _ in range(3)]
            await asyncio.sleep(0)  # the first runs, two wait
            other = asyncio.ensure_future(ex.submit(SPAN, b"0", owner="other"))
            return [json.loads(await j) for j in hog], json.loads(await other)

    hog, other = run(body)
    # the other owner's job waits for the hog's running job only, not for its queue
    assert hog[0]["end"] <= other["start"] < hog[1]["start"] < hog[2]["start"]


def test_an_owner_with_jobs_running_waits_behind_one_with_none(
    make_executor: ExecutorFactory,
) -> None:
    async def body() -> tuple[list[dict[str, float]], dict[str, float]]:
        async with make_executor(workers=2) as ex:
            hog = [asyncio.ensure_future(ex.submit(SPAN, b"0.2", owner="hog")) for _ in range(4)]
            await asyncio.sleep(0)  # two run, two wait
            other = asyncio.ensure_future(ex.submit(SPAN, b"0", owner="other"))
            return [json.loads(await j) for j in hog], json.loads(await other)

    hog, other = run(body)
    first_free = min(h["end"] for h in hog[:2])
    assert first_free <= other["start"] < max(h["start"] for h in hog[2:])


# -- what is logged of a job ---------------------------------------------------------------
CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)


class _Seen(logging.Handler):
    """Each record of the executor, with the caller's context variable where it was emitted."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), CALLER.get()))


def test_a_job_s_timeout_and_crash_are_logged_in_the_context_it_was_submitted_from(
    make_executor: ExecutorFactory,
) -> None:
    """Job b is dispatched when a's reply arrives and c when a new worker is ready (callbacks
    of the workers' sockets, not of b's or c's task); the first job starts the workers.
    What is logged of b's timeout and c's crash still names b and c."""
    seen = _Seen()
    logger = logging.getLogger("idlegrid.executor")
    logger.addHandler(seen)

    async def job(name: str, task: str, timeout: float | None = None) -> Outcome:
        CALLER.set(name)
        return await ex.run(task, b"0.1" if task == SPAN else b"", timeout=timeout, owner=name)

    async def body() -> list[Outcome]:
        try:
            first = asyncio.ensure_future(job("a", SPAN))  # binds the executor: no start()
            await asyncio.sleep(0)
            slow = asyncio.ensure_future(job("b", SLEEP, timeout=0.3))
            await asyncio.sleep(0)
            crash = asyncio.ensure_future(job("c", t.name(t.exit_hard)))
            return list(await asyncio.gather(first, slow, crash))
        finally:
            await ex.close()

    ex = make_executor(workers=1)
    try:
        a, b, c = run(body)
    finally:
        logger.removeHandler(seen)

    assert a.ok and isinstance(b.error, JobTimeout) and isinstance(c.error, JobCrashed)
    timeout = [who for message, who in seen.seen if "wall-time limit" in message]
    crash = [who for message, who in seen.seen if "while running" in message]
    assert (timeout, crash) == (["b"], ["c"])
    assert "a" not in {who for _, who in seen.seen}  # the workers' own tasks name no job


# -- the worker's working directory -------------------------------------------------------
def test_workers_run_in_an_empty_private_directory_removed_when_they_exit(
    make_executor: ExecutorFactory,
) -> None:
    async def body() -> tuple[dict[str, Any], str]:
        async with make_executor(workers=1) as ex:
            seen = json.loads(await ex.submit(t.name(t.where), b""))
            left = (await ex.submit(t.name(t.leave_a_file), b"x")).decode()
            return seen, left

    seen, left = run(body)
    assert seen["cwd"] != os.getcwd() and seen["files"] == [] and seen["mode"] == 0o700
    assert left == seen["cwd"]
    assert not Path(seen["cwd"]).exists()  # gone with the worker, file and all


def test_a_killed_workers_directory_is_removed_and_its_successor_gets_a_new_one(
    make_executor: ExecutorFactory,
) -> None:
    async def body() -> tuple[str, str, bool]:
        async with make_executor(workers=1) as ex:
            first = (await ex.submit(t.name(t.leave_a_file), b"x")).decode()
            with pytest.raises(JobTimeout):
                await ex.submit(SLEEP, b"", timeout=0.1)
            second = json.loads(await ex.submit(t.name(t.where), b""))
            return first, second["cwd"], Path(first).exists()

    first, second, first_exists = run(body)
    assert first != second and not first_exists


# -- process executor specifics ---------------------------------------------------------
@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_workers_exit_when_the_node_dies(method: str, tmp_path: Path) -> None:
    script = f"""
import asyncio, os, signal
from idlegrid.executor import ExecutorLimits, ProcessExecutor

async def main():
    ex = ProcessExecutor(ExecutorLimits(workers=2), allowed_tasks=[{SLEEP!r}],
                         start_method={method!r})
    jobs = [asyncio.ensure_future(ex.submit({SLEEP!r}, {str(tmp_path).encode()!r}))
            for _ in range(2)]
    while len(os.listdir({str(tmp_path)!r})) < 2:
        await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind

if __name__ == "__main__":
    asyncio.run(main())
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    node = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, timeout=60)
    assert node.returncode == -signal.SIGKILL
    pids = pids_in(tmp_path, 2)
    deadline = time.monotonic() + 60  # a hang guard: workers exit when their socket hangs up
    while any(ProcessRef(pid, None).alive() for pid in pids):
        assert time.monotonic() < deadline, "workers outlived their node"
        time.sleep(0.02)


def test_preloaded_modules_are_loaded_in_every_worker_once_forked() -> None:
    """A worker forked from a forkserver that preloaded a module has it before its first
    job; a module that is not installed is skipped; a worker of a plain forkserver has
    neither. In a process of its own: the forkserver is one per process."""
    script = f"""
import asyncio, json, sys
from idlegrid.executor import ExecutorLimits, ProcessExecutor

async def main(preload):
    names = "colorsys,wave,no_such_module_here"
    async with ProcessExecutor(ExecutorLimits(workers=2), allowed_tasks=[{LOADED!r}],
                               preload=preload) as ex:
        got = await asyncio.gather(*(ex.submit({LOADED!r}, names.encode()) for _ in range(2)))
    print(json.dumps([json.loads(g) for g in got]))

if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].split(",") if sys.argv[1] else []))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}

    def workers_loaded(preload: str) -> list[list[str]]:
        out = subprocess.run(
            [sys.executable, "-c", script, preload], env=env, cwd=ROOT, timeout=120,
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        loaded: list[list[str]] = json.loads(out.stdout)
        return loaded

    assert workers_loaded("colorsys,no_such_module_here") == [["colorsys"], ["colorsys"]]
    assert workers_loaded("") == [[], []]


def test_a_preload_that_is_not_a_module_name_is_refused() -> None:
    for bad in ("os; rm -rf /", "../x", "a:b", ""):
        with pytest.raises(ConfigError, match="preload"):
            ProcessExecutor(ExecutorLimits(), allowed_tasks=[ECHO], preload=[bad])


def test_workers_that_cannot_start_fail_jobs_instead_of_hanging() -> None:
    async def body() -> None:
        # 1 MiB of address space: a worker dies before it is ready, every time
        ex = ProcessExecutor(ExecutorLimits(workers=1, memory_mb=1), allowed_tasks=[ECHO])
        async with asyncio.timeout(30):
            job = asyncio.ensure_future(ex.submit(ECHO, b""))
            with pytest.raises(ConfigError, match="do not start"):
                await ex.start()
            with pytest.raises(JobCrashed, match="do not start"):
                await job
        await ex.close()

    run(body)


def test_an_executor_belongs_to_one_event_loop() -> None:
    ex = ProcessExecutor(ExecutorLimits(workers=1), allowed_tasks=[ECHO])

    async def first() -> bytes:
        return await ex.submit(ECHO, b"a")

    async def second() -> None:
        with pytest.raises(UsageError):
            await ex.submit(ECHO, b"b")

    async def cleanup() -> None:
        await ex.close()

    with asyncio.Runner() as runner:
        assert runner.run(first()) == b"a"
        asyncio.run(second())
        runner.run(cleanup())


def test_start_method_fork_is_refused() -> None:
    with pytest.raises(ConfigError):
        ProcessExecutor(ExecutorLimits(), allowed_tasks=[ECHO], start_method="fork")  # type: ignore[arg-type]
