"""Background processes that outlive their starter: start, recognise and stop them.

A process is remembered as its pid plus its start time (from ``/proc``), so a
pid that the system has since given to another program is never mistaken for
ours, nor signalled. Zombies count as stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._exceptions import ConfigError

__all__ = ["ProcessRef", "spawn", "stop"]

KILL_TIMEOUT = 5.0
POLL = 0.05

# Popen objects of the processes this interpreter started: kept so that they are
# reaped (never left as zombies) and never garbage-collected while running
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessRef:
    """A process by pid and start time (clock ticks after boot; None without /proc)."""

    pid: int
    started: int | None
    role: str = ""

    def alive(self) -> bool:
        """True while this very process runs (not a zombie, not a recycled pid)."""
        stat = _stat(self.pid)
        if stat is None:
            return not Path("/proc").is_dir() and _exists(self.pid)
        state, started = stat
        if state in ("Z", "X"):
            return False
        return self.started is None or started == self.started

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "started": self.started, "role": self.role}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ProcessRef:
        pid, started, role = raw.get("pid"), raw.get("started"), raw.get("role", "")
        if not isinstance(pid, int) or pid <= 0 or not isinstance(started, int | None):
            raise ConfigError(f"malformed process record: {dict(raw)!r}")
        return cls(pid, started, str(role))


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    role: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], ProcessRef]:
    """Start ``argv`` in its own session (so it outlives us), stdout and stderr to ``log``,
    with ``env`` added to this process's environment."""
    try:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env={**os.environ, **env} if env else None,
                start_new_session=True,
            )
    except OSError as exc:
        raise ConfigError(f"cannot start {argv[0]} (log {log}): {exc.strerror or exc}") from exc
    _CHILDREN[proc.pid] = proc
    stat = _stat(proc.pid)
    return proc, ProcessRef(proc.pid, stat[1] if stat else None, role)


def stop(ref: ProcessRef, *, timeout: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; False if it was not running."""
    if not ref.alive():
        _reap(ref.pid)
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, KILL_TIMEOUT)):
        try:
            os.kill(ref.pid, sig)
        except ProcessLookupError:
            break
        if _wait_gone(ref, wait):
            break
    child = _CHILDREN.pop(ref.pid, None)
    if child is not None:
        # it may have died between _wait_gone's two looks: collect it (a Popen dropped
        # before it saw its child's exit warns "subprocess ... is still running")
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=KILL_TIMEOUT)
    return True


def _wait_gone(ref: ProcessRef, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(ref.pid)
        if not ref.alive():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child, so it does not linger as a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError):  # not our child: its parent (or init) reaps it
        os.waitpid(pid, os.WNOHANG)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) from ``/proc/<pid>/stat``; None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[19])


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
