"""The kinds of job this installation supports, by name.

``onnx`` and ``embed`` are registered when the package is imported; a new kind
registers itself with :func:`register` (in its own module, or in a test).
"""

from __future__ import annotations

from typing import Any

from .._exceptions import InvalidInput
from ._base import Workload

__all__ = ["get_workload", "register", "unregister", "workloads"]

_KINDS: dict[str, Workload[Any, Any]] = {}


def register(workload: Workload[Any, Any], *, replace: bool = False) -> Workload[Any, Any]:
    """Make ``workload`` known under its name; ValueError if the name is taken."""
    name = workload.name
    if not name or not name.replace("-", "").replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"a workload name is lower-case letters, digits, - and _: {name!r}")
    if name in _KINDS and not replace:
        raise ValueError(f"a workload named {name!r} is registered already")
    _KINDS[name] = workload
    return workload


def unregister(name: str) -> None:
    """Forget a kind (tests that register their own)."""
    _KINDS.pop(name, None)


def get_workload(name: str) -> Workload[Any, Any]:
    """The kind called ``name``; InvalidInput if this installation has none."""
    try:
        return _KINDS[name]
    except (KeyError, TypeError):
        raise InvalidInput(
            f"no workload of kind {name!r} here; known kinds: {sorted(_KINDS)}"
        ) from None


def workloads() -> list[Workload[Any, Any]]:
    """Every registered kind, by name."""
    return [_KINDS[name] for name in sorted(_KINDS)]
