"""Order statistics and ratios, the only numbers the benchmarks report."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["percentile", "ratio", "summary"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float], digits: int = 4) -> dict[str, float | int | None]:
    """n, median, p95, min and max of ``values`` (rounded)."""

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, digits)

    return {
        "n": len(values),
        "median": r(statistics.median(values)) if values else None,
        "p95": r(percentile(values, 95)),
        "min": r(min(values)) if values else None,
        "max": r(max(values)) if values else None,
    }


def ratio(ours: float | None, baseline: float | None) -> float | None:
    """ours / baseline, rounded; None when either is missing or the baseline is zero."""
    if ours is None or baseline is None or baseline == 0:
        return None
    return round(ours / baseline, 3)
