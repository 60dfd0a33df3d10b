"""Summaries of timings, shared by the benchmarks."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["percentile"]


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100) of values sorted ascending."""
    if not ordered:
        raise ValueError("no values")
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
