"""Pure summary statistics over samples. No I/O, no state.

Every function takes any finite samples of the sign its metric has (latencies and rates are
non-negative): zeros, ties, one value, an empty side and values up to 1e308 give a defined
result, never an exception, and every p-value is in [0, 1]. Which samples are valid at all is
decided once, where they enter (:func:`pytest_llmperf.numeric.check_samples`, called by the
gate); the numerically safe pieces are in :mod:`._stable`.

>>> s = summarize([1.0, 2.0, 3.0, 4.0])
>>> (s.n, s.median, s.min, s.max, round(s.p90, 2))
(4, 2.5, 1.0, 4.0, 3.7)
>>> summarize([]).n
0
>>> summarize([1e308, 1e308]).mean  # statistics.fmean raises OverflowError here
1e+308
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from ._paired import paired_pvalues, paired_runs_to_settle
from ._stable import (
    clean_p,
    mean_stdev,
    median,
    percentile,
    ratio_interval,
    row_medians,
    settle_size,
)
from ._stable import ratio as safe_ratio
from .numeric import check_samples

__all__ = [
    "Summary",
    "benjamini_yekutieli",
    "binomial_ci",
    "holm",
    "improvement_pvalue",
    "is_unstable",
    "log_spread",
    "median_ratio_ci",
    "no_slowdown_pvalue",
    "paired_pvalues",
    "paired_runs_to_settle",
    "percentile",
    "runs_to_settle",
    "slowdown_pvalue",
    "summarize",
    "trend",
]


@dataclass(frozen=True)
class Summary:
    """n, centre, spread and tail of one metric. Empty metrics have n=0 and NaN fields; a
    non-finite sample (none gets past the boundaries) makes mean and stdev NaN."""

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
    mean, stdev = mean_stdev(data)
    return Summary(
        n=len(data),
        median=percentile(data, 50),
        mean=mean,
        stdev=stdev,
        min=data[0],
        max=data[-1],
        p90=percentile(data, 90),
        p95=percentile(data, 95),
        p99=percentile(data, 99),
    )


# scipy and numpy are imported inside the functions below: importing scipy.stats takes over a
# second, and this module is loaded with the plugin in every pytest session.


def _u_pvalue(
    current: Sequence[float],
    baseline: Sequence[float],
    tolerance: float,
    *,
    scale_up: bool,
    alternative: Literal["less", "greater"],
) -> float:
    """One-sided Mann-Whitney U p-value after scaling current by (1 + tolerance) or its inverse."""
    from scipy.stats import mannwhitneyu

    if not current or not baseline:
        return 1.0  # no data is no evidence either way
    factor = 1.0 + tolerance
    # c * factor may overflow to inf: still above every finite baseline value, as it should be.
    shifted = [c * factor if scale_up else c / factor for c in current]
    # All values tied (constant samples) leaves the test undefined (NaN): no evidence.
    return clean_p(mannwhitneyu(shifted, baseline, alternative=alternative).pvalue)


def slowdown_pvalue(
    current: Sequence[float],
    baseline: Sequence[float],
    tolerance: float,
    *,
    higher_is_better: bool = False,
) -> float:
    """p-value of "current is worse than baseline by more than tolerance" (U test, shifted).

    Testing the shifted samples puts alpha at the tolerance boundary, so a change within the
    tolerance is flagged at most alpha of the time, however many samples. Empty samples give 1.0.

    >>> slowdown_pvalue([4.0, 5.0, 6.0], [1.0, 2.0, 3.0], 0.0)  # 1 of C(6, 3) = 20 orderings
    0.05
    """
    if higher_is_better:
        return _u_pvalue(current, baseline, tolerance, scale_up=True, alternative="less")
    return _u_pvalue(current, baseline, tolerance, scale_up=False, alternative="greater")


def improvement_pvalue(
    current: Sequence[float],
    baseline: Sequence[float],
    tolerance: float,
    *,
    higher_is_better: bool = False,
) -> float:
    """p-value of "current is better than baseline by more than tolerance"."""
    if higher_is_better:
        return _u_pvalue(current, baseline, tolerance, scale_up=False, alternative="greater")
    return _u_pvalue(current, baseline, tolerance, scale_up=True, alternative="less")


def no_slowdown_pvalue(
    current: Sequence[float],
    baseline: Sequence[float],
    tolerance: float,
    *,
    higher_is_better: bool = False,
) -> float:
    """p-value of "current is NOT worse than baseline by more than tolerance" (early PASS)."""
    if higher_is_better:
        return _u_pvalue(current, baseline, tolerance, scale_up=True, alternative="greater")
    return _u_pvalue(current, baseline, tolerance, scale_up=False, alternative="less")


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error), in input order.

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    >>> holm([float("nan"), 0.01])  # NaN (no test possible) counts as no evidence
    [1.0, 0.02]
    """
    pvalues = [clean_p(p) for p in pvalues]
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        # The running maximum keeps the adjusted values in the same order as the raw ones.
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def benjamini_yekutieli(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Yekutieli adjusted p-values (false discovery rate under any dependence); a NaN
    p-value counts as 1 (scipy refuses it)."""
    from scipy.stats import false_discovery_control

    if not pvalues:
        return []
    cleaned = [clean_p(p) for p in pvalues]
    return [clean_p(p) for p in false_discovery_control(cleaned, method="by")]


def median_ratio_ci(
    current: Sequence[float],
    baseline: Sequence[float],
    *,
    confidence: float = 0.90,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(median(current) / median(baseline), low, high) by a seeded percentile bootstrap.

    Each side is resampled independently. Empty samples give NaNs. Ratios of zero medians
    follow :func:`pytest_llmperf._stable.ratio` (``0 / 0 = 1``, ``x / 0 = inf``), so
    a baseline with many zeros can make ``high`` infinite: no upper limit.

    >>> ratio, low, high = median_ratio_ci([2.0, 2.2, 2.4], [1.0, 1.1, 1.2])
    >>> (ratio, low <= ratio <= high)
    (2.0, True)
    """
    import numpy as np

    if not current or not baseline:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    cur = np.asarray(current, dtype=float)
    base = np.asarray(baseline, dtype=float)
    ratio = safe_ratio(median(current), median(baseline))
    boot_cur = row_medians(rng.choice(cur, size=(n_resamples, cur.size)))
    boot_base = row_medians(rng.choice(base, size=(n_resamples, base.size)))
    low, high = ratio_interval(boot_cur, boot_base, confidence)
    return (ratio, low, high)


def trend(samples: Sequence[float]) -> tuple[float, float]:
    """Kendall tau of samples against their index, and its two-sided p-value.

    Only the order of the samples matters, so infinite ones (a ratio beyond the float range)
    count as larger than every finite one; NaN samples leave no defined trend.

    >>> trend([1.0, 2.0])
    (0.0, 1.0)
    """
    from scipy.stats import kendalltau

    if len(samples) < 3 or any(math.isnan(s) for s in samples) or min(samples) == max(samples):
        return (0.0, 1.0)  # constant samples have no defined tau (scipy gives nan)
    result = kendalltau(range(len(samples)), samples)
    tau, p = float(result.statistic), float(result.pvalue)
    if math.isnan(tau) or math.isnan(p):
        return (0.0, 1.0)
    return (tau, p)


def is_unstable(
    samples: Sequence[float], *, p_threshold: float = 0.01, min_tau: float = 0.3
) -> bool:
    """True when the samples drift monotonically (warm-up, throttling): neither pass nor fail."""
    tau, p = trend(samples)
    return p < p_threshold and abs(tau) > min_tau


def log_spread(values: Sequence[float]) -> float:
    """Sample stdev of the natural logs of non-negative values: relative spread, e.g. of run
    medians. Equal values have none (0.0, zeros included); a zero beside a positive value is
    infinitely far from it on the log scale (``inf``). ValueError for a negative or NaN value.

    >>> round(log_spread([1.0, math.e]), 4)
    0.7071
    >>> (log_spread([0.0, 0.0]), log_spread([0.0, 1.0]))
    (0.0, inf)
    """
    values = check_samples(values, what="log_spread")
    if len(values) < 2 or min(values) == max(values):
        return 0.0
    if min(values) == 0:
        return math.inf
    return statistics.stdev([math.log(v) for v in values])


def runs_to_settle(
    current: Sequence[float],
    baseline: Sequence[float],
    tolerance: float,
    alpha: float,
    *,
    power: float = 0.8,
    higher_is_better: bool = False,
    cap: int = 10_000,
) -> int:
    """Samples per side a one-sided U test at level alpha likely needs to settle either way.

    Normal approximation on log samples; the effect is the distance of the observed median
    ratio from the tolerance boundary. Samples with a zero (a throughput window in which no
    request completed) have no log: they are measured relative to the baseline median instead,
    the log scale's first-order equivalent; with a zero baseline median no relative change is
    defined. Capped at ``cap``, never below the current sample size.

    >>> base = [0.95, 1.0, 1.05] * 3
    >>> runs_to_settle([1.1 * b for b in base], base, 0.05, 0.01)
    19
    >>> windows = [0.0, 9.0, 10.0, 11.0, 10.0, 10.5]  # requests/s; none completed in the first
    >>> runs_to_settle(windows, [10.0, 10.5, 11.0, 10.0, 10.0], 0.1, 0.01, higher_is_better=True)
    249
    """
    dof = len(current) + len(baseline) - 2
    if not current or not baseline or dof < 1:
        return cap  # no estimate of the spread
    centre = median(baseline)
    if min(*current, *baseline) > 0:
        sides = [[math.log(v) for v in side] for side in (current, baseline)]
        boundary = -math.log1p(tolerance) if higher_is_better else math.log1p(tolerance)
        effect = math.log(median(current)) - math.log(centre) - boundary
    elif centre > 0:
        sides = [[v / centre for v in side] for side in (current, baseline)]
        bound = 1 / (1 + tolerance) if higher_is_better else 1 + tolerance
        effect = median(current) / centre - bound
    else:
        return cap
    sum_sq = 0.0
    for side in sides:
        _, sd = mean_stdev(side)
        sum_sq += sd * sd * (len(side) - 1)
    sigma = math.sqrt(sum_sq / dof)
    # 0.955 is the U test's asymptotic relative efficiency against the t test.
    return settle_size(
        sigma, abs(effect), alpha, power, 2.0 / 0.955, cap, len(current), len(baseline)
    )


def binomial_ci(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a success proportion.

    >>> low, high = binomial_ci(0, 20)
    >>> (low, round(high, 4))
    (0.0, 0.1684)
    """
    from scipy.stats import binomtest

    if trials <= 0:
        return (0.0, 1.0)  # no trials: nothing is known about the proportion
    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return (float(ci.low), float(ci.high))
