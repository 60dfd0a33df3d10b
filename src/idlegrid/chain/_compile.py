"""Compile the Vyper contracts, caching the output by a hash of the sources.

Sources live in ``contracts/`` at the repository root (an editable install) or
inside the installed package (a wheel). Compiling all of them takes a few
seconds; the cache makes every later start instant and is invalidated by any
change to any source or to the compiler version.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .._exceptions import ConfigError

__all__ = ["CONTRACTS", "Artifact", "cache_dir", "compile_all", "contracts_dir"]

#: contract name -> path relative to the contracts directory
CONTRACTS = {
    "Token": "Token.vy",
    "ProviderRegistry": "ProviderRegistry.vy",
    "JobMarket": "JobMarket.vy",
    "NaivePayments": "bench/NaivePayments.vy",
}


@dataclass(frozen=True)
class Artifact:
    """A compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes


def contracts_dir() -> Path:
    """Where the Vyper sources are: the installed package, else the source tree."""
    packaged = Path(__file__).resolve().parent.parent / "contracts"
    if packaged.is_dir():
        return packaged
    repo = Path(__file__).resolve().parents[3] / "contracts"
    if repo.is_dir():
        return repo
    raise ConfigError("cannot find the idlegrid Vyper sources (contracts/)")


def cache_dir() -> Path:
    """``$IDLEGRID_CACHE`` or ``~/.cache/idlegrid``."""
    return Path(os.environ.get("IDLEGRID_CACHE", Path.home() / ".cache" / "idlegrid"))


def _source_hash(root: Path, version: str) -> str:
    h = hashlib.sha256(version.encode())
    for path in sorted(root.rglob("*.vy")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _compile(root: Path) -> dict[str, Artifact]:
    import vyper
    from vyper.compiler.input_bundle import FilesystemInputBundle
    from vyper.exceptions import VyperException

    bundle = FilesystemInputBundle([root])
    out: dict[str, Artifact] = {}
    for name, rel in CONTRACTS.items():
        path = root / rel
        try:
            result = vyper.compile_code(
                path.read_text(),
                contract_path=rel,
                resolved_path=path,
                input_bundle=bundle,
                output_formats=["abi", "bytecode"],
            )
        except VyperException as exc:
            raise ConfigError(f"vyper failed to compile {rel}: {exc}") from exc
        out[name] = Artifact(name, result["abi"], bytes.fromhex(result["bytecode"][2:]))
    return out


@cache
def compile_all() -> dict[str, Artifact]:
    """Every contract in :data:`CONTRACTS`, compiled or read from the cache."""
    import vyper

    root = contracts_dir()
    key = _source_hash(root, vyper.__version__)
    path = cache_dir() / "vyper" / f"{key}.json"
    if path.is_file():
        try:
            raw = json.loads(path.read_text())
            return {n: Artifact(n, a["abi"], bytes.fromhex(a["bytecode"])) for n, a in raw.items()}
        except (ValueError, KeyError):
            pass  # a torn or foreign cache file: compile again and overwrite it
    artifacts = _compile(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {n: {"abi": a.abi, "bytecode": a.bytecode.hex()} for n, a in artifacts.items()}
    # write then rename, so concurrent processes never read half a file
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f)
    os.replace(tmp, path)
    return artifacts
