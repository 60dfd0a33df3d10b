"""The frame-stack chunk cache the suite installs (tests/_stackcache.py)."""

from __future__ import annotations

import pytest

from tests import _stackcache

DEPTH = 400  # 400 frames of >= 10 slots each span more than one 16 KiB chunk
REPEATS = 1000


def _descend(depth: int) -> int:
    return 0 if depth == 0 else 1 + _descend(depth - 1)


def test_a_call_loop_across_a_chunk_edge_reuses_the_freed_chunk() -> None:
    if not _stackcache.wanted():
        pytest.skip("CPython 3.13 and later keep a spare chunk themselves")
    before = _stackcache.reused()
    assert before is not None, "the cache was not installed; see pytest's header"
    for _ in range(REPEATS):
        assert _descend(DEPTH) == DEPTH
    reused = _stackcache.reused()
    assert reused is not None
    # every descent past the edge needs a chunk, and after the first it is the cached one
    assert reused - before >= REPEATS - 1
