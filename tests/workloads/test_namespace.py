"""``idlegrid.workloads`` exports exactly its ``__all__``."""

from __future__ import annotations

import inspect

import idlegrid.workloads


def test_public_namespace_matches_all() -> None:
    module = idlegrid.workloads
    public = {
        n
        for n, obj in vars(module).items()
        if not n.startswith("_") and not inspect.ismodule(obj) and n != "annotations"
    }
    assert public == set(module.__all__)
