"""Pure summary statistics over samples. No I/O, no state.

>>> s = summarize([1.0, 2.0, 3.0, 4.0])
>>> (s.n, s.median, s.min, s.max, round(s.p90, 2))
(4, 2.5, 1.0, 4.0, 3.7)
>>> summarize([]).n
0
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["Summary", "percentile", "summarize"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method) of pre-sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Summary:
    """n, centre, spread and tail of one metric. Empty metrics have n=0 and NaN fields."""

    n: int
    median: float
    mean: float
    stdev: float
    min: float
    max: float
    p90: float
    p95: float
    p99: float

    def to_json(self) -> dict[str, float | int | None]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }


def summarize(values: Sequence[float]) -> Summary:
    data = sorted(values)
    if not data:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan, nan, nan)
    return Summary(
        n=len(data),
        median=percentile(data, 50),
        mean=statistics.fmean(data),
        stdev=statistics.stdev(data) if len(data) > 1 else 0.0,
        min=data[0],
        max=data[-1],
        p90=percentile(data, 90),
        p95=percentile(data, 95),
        p99=percentile(data, 99),
    )
