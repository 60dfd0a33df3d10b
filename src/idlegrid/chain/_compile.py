"""Compile the Vyper contracts, caching the output by a hash of the sources.

Sources live in ``contracts/`` at the repository root (an editable install) or
inside the installed package (a wheel). A file named in CamelCase is a contract
(``JobMarket.vy`` compiles to the artifact ``JobMarket``); a lowercase one is a
module that contracts import (``ownable.vy``, ``eip712.vy``). Compiling all of
them takes a few seconds; the cache makes every later start instant and is
invalidated by any change to any source or to the compiler version.
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

__all__ = [
    "Artifact",
    "cache_dir",
    "compile_all",
    "compile_file",
    "contract_sources",
    "contracts_dir",
]


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


def contract_sources(root: Path) -> dict[str, Path]:
    """Contract name -> source file, for every contract (not module) under ``root``."""
    return {p.stem: p for p in sorted(root.rglob("*.vy")) if p.stem[:1].isupper()}


def _compile_one(path: Path, name: str, search: list[Path]) -> Artifact:
    import vyper
    from vyper.compiler.input_bundle import FilesystemInputBundle
    from vyper.exceptions import VyperException

    try:
        result = vyper.compile_code(
            path.read_text(),
            contract_path=path.relative_to(search[0]),
            resolved_path=path,
            input_bundle=FilesystemInputBundle(search),
            output_formats=["abi", "bytecode"],
        )
    except VyperException as exc:
        raise ConfigError(f"vyper failed to compile {path}: {exc}") from exc
    return Artifact(name, result["abi"], bytes.fromhex(result["bytecode"][2:]))


def _compile(root: Path) -> dict[str, Artifact]:
    return {name: _compile_one(path, name, [root]) for name, path in contract_sources(root).items()}


@cache
def compile_file(path: Path) -> Artifact:
    """One contract outside ``contracts/`` (a test's, a plugin's), named after its file.

    It may import the idlegrid modules (``import ownable``) as well as files
    next to it. Not cached on disk: compiled once per process.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"no Vyper source at {path}")
    return _compile_one(path, path.stem, [path.parent, contracts_dir()])


@cache
def compile_all() -> dict[str, Artifact]:
    """Every contract under :func:`contracts_dir`, compiled or read from the cache."""
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
