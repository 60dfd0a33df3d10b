"""Build and install ``_stackcache.c`` for the test run (CPython gh-142183).

CPython 3.11 and 3.12 map and unmap a 16 KiB frame-stack chunk whenever a call
loop sits at a chunk's edge; py-evm's interpreter under pytest does, millions of
times a contract test. ``_stackcache.c`` keeps freed chunks for reuse. This
module compiles it with the interpreter's own C compiler into pytest's cache
directory (once per source and interpreter), loads it and installs it. Without a
compiler the suite runs as before, only slower; the report header says which.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

SOURCE = Path(__file__).with_name("_stackcache.c")
COMPILE_TIMEOUT_S = 120.0

_library: ctypes.PyDLL | None = None


def wanted() -> bool:
    """Whether this interpreter has the bug: a GIL build of CPython before 3.13."""
    return (
        sys.implementation.name == "cpython"
        and sys.version_info < (3, 13)
        and not sysconfig.get_config_var("Py_GIL_DISABLED")
    )


def _build(directory: Path) -> Path:
    source = SOURCE.read_bytes()
    tag = hashlib.sha256(source + sys.version.encode()).hexdigest()[:16]
    target = directory / f"_stackcache-{tag}.so"
    if target.exists():
        return target
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    flags = ["-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}"]
    if sys.platform == "darwin":
        flags += ["-undefined", "dynamic_lookup"]
    partial = directory / f"{target.name}.{os.getpid()}.tmp"
    subprocess.run(
        [*compiler, *flags, str(SOURCE), "-o", str(partial)],
        check=True,
        capture_output=True,
        timeout=COMPILE_TIMEOUT_S,
    )
    partial.replace(target)
    return target


def install(directory: Path) -> str:
    """Build, load and install the cache; returns a line for pytest's header."""
    global _library
    if not wanted():
        return "not needed on this interpreter"
    if _library is not None:
        return "on"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        library = ctypes.PyDLL(str(_build(directory)))
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        reason = detail.decode(errors="replace").strip().splitlines()[-1:] or [str(exc)]
        return f"off, not built ({reason[0]}); the suite runs slower"
    library.stackcache_install.restype = ctypes.c_int
    library.stackcache_reused.restype = ctypes.c_ulonglong
    library.stackcache_install()
    _library = library
    return "on"


def reused() -> int | None:
    """Chunks served from the cache so far; None when it is not installed."""
    if _library is None:
        return None
    return int(_library.stackcache_reused())
