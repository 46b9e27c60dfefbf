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
from typing import Literal

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
    shifted = [c * factor if scale_up else c / factor for c in current]
    return float(mannwhitneyu(shifted, baseline, alternative=alternative).pvalue)


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
    """
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        # The running maximum keeps the adjusted values in the same order as the raw ones.
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def benjamini_yekutieli(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Yekutieli adjusted p-values (false discovery rate under any dependence)."""
    from scipy.stats import false_discovery_control

    if not pvalues:
        return []
    return [float(p) for p in false_discovery_control(list(pvalues), method="by")]


def median_ratio_ci(
    current: Sequence[float],
    baseline: Sequence[float],
    *,
    confidence: float = 0.90,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(median(current) / median(baseline), low, high) by a seeded percentile bootstrap.

    Each side is resampled independently. Empty samples give NaNs.

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
    ratio = float(np.median(cur) / np.median(base))
    boot_cur = np.median(rng.choice(cur, size=(n_resamples, cur.size)), axis=1)
    boot_base = np.median(rng.choice(base, size=(n_resamples, base.size)), axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot_cur / boot_base, [tail, 1.0 - tail])
    return (ratio, float(low), float(high))


def trend(samples: Sequence[float]) -> tuple[float, float]:
    """Kendall tau of samples against their index, and its two-sided p-value.

    >>> trend([1.0, 2.0])
    (0.0, 1.0)
    """
    from scipy.stats import kendalltau

    if len(samples) < 3 or min(samples) == max(samples):
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
    """Sample stdev of the natural logs of positive values: relative spread, e.g. of run medians.

    >>> round(log_spread([1.0, math.e]), 4)
    0.7071
    """
    if len(values) < 2:
        return 0.0
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
    ratio from the tolerance boundary. Capped at ``cap``, never below the current sample size.

    >>> base = [0.95, 1.0, 1.05] * 3
    >>> runs_to_settle([1.1 * b for b in base], base, 0.05, 0.01)
    19
    """
    if not current or not baseline:
        return cap
    log_cur = [math.log(c) for c in current]
    log_base = [math.log(b) for b in baseline]
    dof = len(log_cur) + len(log_base) - 2
    if dof < 1:
        return cap  # no estimate of the spread
    sum_sq = 0.0
    for side in (log_cur, log_base):
        mean = statistics.fmean(side)
        sum_sq += sum((x - mean) ** 2 for x in side)
    sigma = math.sqrt(sum_sq / dof)
    boundary = -math.log1p(tolerance) if higher_is_better else math.log1p(tolerance)
    delta = abs(math.log(statistics.median(current) / statistics.median(baseline)) - boundary)
    if delta == 0.0:
        return cap
    z = statistics.NormalDist().inv_cdf(1.0 - alpha) + statistics.NormalDist().inv_cdf(power)
    # 0.955 is the U test's asymptotic relative efficiency against the t test.
    needed = 2.0 * (z * sigma / delta) ** 2 / 0.955
    if not needed < cap:
        return cap
    return min(cap, max(math.ceil(needed), len(current), len(baseline)))


def _worse_log_ratios(
    current: Sequence[float], reference: Sequence[float], higher_is_better: bool
) -> list[float]:
    """Per-pair log(current / reference), signed so that positive means worse."""
    ratios = [math.log(c / r) for c, r in zip(current, reference, strict=True)]
    return [-x for x in ratios] if higher_is_better else ratios


def _signed_rank_pvalue(diffs: Sequence[float], alternative: Literal["greater", "less"]) -> float:
    from scipy.stats import wilcoxon

    if not diffs or all(d == 0 for d in diffs):
        return 1.0
    # "pratt" keeps zero differences in the ranking instead of silently dropping them.
    return float(wilcoxon(diffs, alternative=alternative, zero_method="pratt").pvalue)


def paired_pvalues(
    current: Sequence[float],
    reference: Sequence[float],
    tolerance: float,
    *,
    higher_is_better: bool = False,
) -> tuple[float, float, float]:
    """(slowdown, improvement, no-slowdown) p-values for interleaved pairs.

    One-sided Wilcoxon signed-rank tests on the per-pair log ratios shifted by the tolerance:
    the paired counterpart of :func:`slowdown_pvalue` and friends. Interleaved A/B pairs share
    the machine's state at the moment they ran, so pairing removes that drift from the noise.

    >>> ref = [1.0, 1.1, 0.9, 1.2, 1.0, 0.95, 1.05, 1.1]
    >>> slow, _, _ = paired_pvalues([r * 1.3 for r in ref], ref, 0.05)
    >>> round(slow, 4)  # every pair is worse than +5%: 1 / 2**8
    0.0039
    """
    worse = _worse_log_ratios(current, reference, higher_is_better)
    bound = math.log1p(tolerance)
    beyond = [w - bound for w in worse]
    return (
        _signed_rank_pvalue(beyond, "greater"),
        _signed_rank_pvalue([w + bound for w in worse], "less"),
        _signed_rank_pvalue(beyond, "less"),
    )


def paired_runs_to_settle(
    current: Sequence[float],
    reference: Sequence[float],
    tolerance: float,
    alpha: float,
    *,
    power: float = 0.8,
    higher_is_better: bool = False,
    cap: int = 10_000,
) -> int:
    """Pairs a one-sided signed-rank test at level alpha likely needs to settle either way."""
    worse = _worse_log_ratios(current, reference, higher_is_better)
    if len(worse) < 2:
        return cap
    sigma = statistics.stdev(worse)
    delta = abs(statistics.median(worse) - math.log1p(tolerance))
    if delta == 0.0:
        return cap
    z = statistics.NormalDist().inv_cdf(1.0 - alpha) + statistics.NormalDist().inv_cdf(power)
    needed = (z * sigma / delta) ** 2 / 0.955  # 0.955: signed-rank efficiency vs the t test
    if not needed < cap:
        return cap
    return min(cap, max(math.ceil(needed), len(worse)))


def binomial_ci(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a success proportion.

    >>> low, high = binomial_ci(0, 20)
    >>> (low, round(high, 4))
    (0.0, 0.1684)
    """
    from scipy.stats import binomtest

    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return (float(ci.low), float(ci.high))
