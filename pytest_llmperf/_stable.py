"""Numerically safe building blocks of :mod:`.stats`: medians, means, ratios, quantiles and
p-values that hold for every finite input the statistics can be given.

The textbook forms fail at the edges of the float range and at zero: ``(a + b) / 2`` of two
``1e308`` is ``inf``, ``statistics.fmean`` of them raises ``OverflowError``, ``x / 0`` raises,
``NormalDist().inv_cdf(1 - 1e-17)`` raises because ``1 - 1e-17 == 1.0``, and numpy's linear
quantile turns an infinite bootstrap ratio into NaN. Each function below says what it returns
there instead, so the callers never special-case them. No pytest, no I/O.

>>> midpoint(1e308, 1e308)
1e+308
>>> mean_stdev([1e308, 1e308])
(1e+308, 0.0)
>>> (ratio(0.0, 0.0), ratio(1.0, 0.0), ratio(3.0, 2.0))
(1.0, inf, 1.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "clean_p",
    "mean_stdev",
    "median",
    "midpoint",
    "percentile",
    "ratio",
    "ratio_interval",
    "row_medians",
    "settle_size",
    "upper_z",
]

#: Smallest and largest probabilities handed to ``inv_cdf``: it refuses 0 and 1, and a level
#: like ``1 - 1e-17`` rounds to 1.0 before it gets there.
_P_LOW = 5e-324
_P_HIGH = 1.0 - 2.0**-53


def midpoint(a: float, b: float) -> float:
    """``(a + b) / 2``, without overflowing to ``inf`` when both are near the float range."""
    middle = (a + b) / 2
    if math.isinf(middle) and math.isfinite(a) and math.isfinite(b):
        return a / 2 + b / 2
    return middle


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method) of pre-sorted values; NaN for
    none. An infinite neighbour gives ``inf`` (not ``inf * 0 = nan``) only when it is used."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    a, b = sorted_values[lo], sorted_values[hi]
    if pos == lo or a == b:
        return a
    return a + (b - a) * (pos - lo)


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count); NaN for no values."""
    data = sorted(values)
    n = len(data)
    if n == 0:
        return math.nan
    return data[n // 2] if n % 2 else midpoint(data[n // 2 - 1], data[n // 2])


def mean_stdev(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value, NaNs for none or a non-finite one).

    The values are scaled by a power of two first (exact, unlike a division by the largest
    value), so sums and squares near 1e308 stay in range; the result is finite whenever it is
    representable, e.g. for values of one sign.
    """
    n = len(values)
    if n == 0 or not all(math.isfinite(v) for v in values):
        return math.nan, math.nan
    largest = max(abs(v) for v in values)
    if largest == 0:
        return 0.0, 0.0
    exponent = math.frexp(largest)[1]
    scaled = [math.ldexp(v, -exponent) for v in values]  # every |x| < 1
    centre = math.fsum(scaled) / n
    spread = 0.0
    if n > 1:
        spread = math.sqrt(math.fsum((x - centre) * (x - centre) for x in scaled) / (n - 1))
    return math.ldexp(centre, exponent), _ldexp_or_inf(spread, exponent)


def _ldexp_or_inf(x: float, exponent: int) -> float:
    try:
        return math.ldexp(x, exponent)
    except OverflowError:  # a spread beyond the float range (values of both signs near it)
        return math.inf


def ratio(a: float, b: float) -> float:
    """``a / b`` for non-negative values: ``0 / 0`` is 1 (both at the same level), ``x / 0``
    is ``inf``, and a quotient beyond the float range is ``inf``."""
    if b == 0:
        return 1.0 if a == 0 else math.inf
    return a / b


def row_medians(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Median of each row, as :func:`median` (np.median's mean of two 1e308 is ``inf``)."""
    import numpy as np

    n = matrix.shape[1]
    middle = np.partition(matrix, [(n - 1) // 2, n // 2], axis=1)
    lo, hi = middle[:, (n - 1) // 2], middle[:, n // 2]
    if n % 2:
        return hi
    with np.errstate(over="ignore"):
        out = (lo + hi) / 2
    overflowed = np.isinf(out) & np.isfinite(lo) & np.isfinite(hi)
    out[overflowed] = lo[overflowed] / 2 + hi[overflowed] / 2
    return out


def ratio_interval(
    numerators: npt.NDArray[np.float64], denominators: npt.NDArray[np.float64], confidence: float
) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrapped ratios, each as :func:`ratio`: a
    resample whose denominator is 0 makes an infinite ratio, and the bound that reaches it is
    ``inf`` (no upper limit), never NaN."""
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratios = numerators / denominators
    ratios[(numerators == 0) & (denominators == 0)] = 1.0
    ordered: list[float] = np.sort(ratios).tolist()
    tail = (1.0 - confidence) / 2.0 * 100
    return percentile(ordered, tail), percentile(ordered, 100 - tail)


def clean_p(p: Any) -> float:
    """A p-value in [0, 1]: NaN (no test possible, e.g. all ties), an infinity and a missing
    one are no evidence (1.0); float error just outside the range is clamped."""
    if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p):
        return 1.0
    return min(1.0, max(0.0, float(p)))


def upper_z(tail: float) -> float:
    """The standard normal quantile with ``tail`` above it, for any ``tail`` (clamped into the
    open interval ``inv_cdf`` accepts). Computed from the lower tail, where tiny levels such as
    1e-17 keep their precision."""
    return -NormalDist().inv_cdf(min(max(tail, _P_LOW), _P_HIGH))


def settle_size(
    sigma: float, delta: float, alpha: float, power: float, factor: float, cap: int, *sizes: int
) -> int:
    """``factor * (z * sigma / delta)**2`` samples, within [max(sizes), cap]; ``cap`` where no
    estimate exists (no effect, or a spread or effect beyond the float range)."""
    if delta == 0.0:
        return cap
    z = upper_z(alpha) - upper_z(power)
    root = z * sigma / delta
    needed = factor * root * root  # not ** 2: that raises OverflowError instead of giving inf
    if not needed < cap:  # also NaN
        return cap
    return min(cap, max(math.ceil(needed), *sizes))
