"""The regression gate: from two samples of a metric to a verdict a person can act on.

Per metric, the question is one-sided and carries the tolerance inside it: "is the current run
slower than the baseline by more than ``tol``?" (:func:`~pytest_llmperf.stats.slowdown_pvalue`,
a Mann-Whitney U test on shifted samples). Its mirror asks "faster by more than ``tol``?", and a
third "not slower by more than ``tol``?" lets sequential sampling stop early with a PASS.
See README ("The regression gate") and ``../shared/notes/gating.md`` for why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

from . import stats

__all__ = [
    "DEFAULT_TOLERANCES",
    "DIRECTIONS",
    "FEW_RUNS_DRIFT_ALLOWANCE",
    "SEVERITY",
    "MetricVerdict",
    "Verdict",
    "drift_allowance",
    "judge_metric",
    "parse_tolerances",
    "review",
    "worst",
]


class Verdict:
    PASS = "PASS"
    REGRESSION = "REGRESSION"
    IMPROVEMENT = "IMPROVEMENT"
    INCONCLUSIVE = "INCONCLUSIVE"
    UNSTABLE = "UNSTABLE"
    REFUSED = "REFUSED"


#: Worst first: the verdict of a benchmark is the worst of its metrics'; reports list them
#: in this order too.
SEVERITY = (
    Verdict.REGRESSION,
    Verdict.REFUSED,
    Verdict.UNSTABLE,
    Verdict.INCONCLUSIVE,
    Verdict.IMPROVEMENT,
    Verdict.PASS,
)

#: Gated metrics and whether higher is better.
DIRECTIONS: Mapping[str, bool] = {
    "tpot_s": False,
    "e2e_s": False,
    "ttft_s": False,
    "sec_per_token": False,
    "decode_tps": True,
    "prefill_tps": True,
    # llm_load only (see load.py): throughput per time window, and TTFT's 95th percentile.
    "throughput_rps": True,
    "output_tps": True,
    "ttft_p95_s": False,
}
#: TTFT gets a wider default tolerance: it is the noisier metric (prefill, scheduling).
DEFAULT_TOLERANCES: Mapping[str, float] = {
    "tpot_s": 0.05,
    "e2e_s": 0.05,
    "ttft_s": 0.10,
    "sec_per_token": 0.05,
    "decode_tps": 0.05,
    "prefill_tps": 0.10,
    # Windows of a load run and a tail percentile are noisier than per-request medians.
    "throughput_rps": 0.10,
    "output_tps": 0.10,
    "ttft_p95_s": 0.25,
}
#: With fewer than 3 stored runs the between-run drift cannot be estimated; separate runs on
#: shared 2-core machines were seen to drift up to 33% (max/min of run medians), so assume 30%.
FEW_RUNS_DRIFT_ALLOWANCE = 0.30
#: Quantile of the between-run drift a single run may show before it counts as a change.
_DRIFT_Z = 2.326  # one-sided 99%


def parse_tolerances(text: str) -> dict[str, float]:
    """``"ttft_s=15%,tpot_s=0.05"`` -> ``{"ttft_s": 0.15, "tpot_s": 0.05}``.

    >>> parse_tolerances("ttft_s=15%, tpot_s=0.05")
    {'ttft_s': 0.15, 'tpot_s': 0.05}
    """
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        metric, sep, value = item.partition("=")
        metric, value = metric.strip(), value.strip()
        if not sep or metric not in DIRECTIONS:
            raise ValueError(
                f"expected METRIC=PCT[,...] with METRIC one of {', '.join(DIRECTIONS)}; "
                f"got {item!r}"
            )
        try:
            tol = float(value[:-1]) / 100 if value.endswith("%") else float(value)
        except ValueError:
            raise ValueError(f"tolerance {value!r} for {metric} is not a number") from None
        if not 0 <= tol < 10:
            raise ValueError(f"tolerance {value!r} for {metric} must be between 0% and 1000%")
        out[metric] = tol
    return out


def drift_allowance(run_medians: Sequence[float]) -> tuple[float, str]:
    """How far one run's median may wander from a pooled baseline with no change at all.

    Returns the allowance as a fraction and how it was obtained. With K >= 3 stored runs it is
    the one-sided 99% quantile of the between-run spread, ``2.33 * s * sqrt(1 + 1/K)`` on the log
    scale (``s`` = stdev of the logs of the run medians); with fewer runs, a fixed 30%.
    """
    k = len(run_medians)
    if k < 3:
        return FEW_RUNS_DRIFT_ALLOWANCE, f"{k} stored run(s) < 3: conservative 30% drift allowance"
    spread = stats.log_spread(run_medians)
    allowance = math.exp(_DRIFT_Z * spread * math.sqrt(1 + 1 / k)) - 1
    return allowance, f"between-run spread {spread:.1%} over {k} stored runs"


@dataclass(frozen=True)
class MetricVerdict:
    """The comparison of one metric; ratios are current / baseline medians."""

    metric: str
    verdict: str
    ratio: float
    ci_low: float
    ci_high: float
    p_slowdown: float
    p_improvement: float
    p_no_slowdown: float
    tolerance: float
    effective_tolerance: float
    n_current: int
    n_baseline: int
    runs_to_settle: int | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, p_adjusted: float, how: str) -> str:
        """``TPOT regressed +18.0% (90% CI +12%..+25%, p=1e-05, 0.0004 Holm; tolerance 5%)``:
        the plain one-sided p-value, then the adjusted one and how it was adjusted."""
        name = self.metric.removesuffix("_s").upper() if self.metric.endswith("_s") else self.metric
        what = {Verdict.REGRESSION: "regressed", Verdict.IMPROVEMENT: "improved"}
        change = (self.ratio - 1) * 100
        ci = f"90% CI {(self.ci_low - 1) * 100:+.0f}%..{(self.ci_high - 1) * 100:+.0f}%"
        tol = f"tolerance {self.effective_tolerance:.0%}"
        if self.effective_tolerance > self.tolerance:
            tol += f" widened from {self.tolerance:.0%} for drift"
        plain = self.p_improvement if self.verdict == Verdict.IMPROVEMENT else self.p_slowdown
        return (
            f"{name} {what.get(self.verdict, 'changed')} {change:+.1f}% "
            f"({ci}, p={plain:.2g}, {p_adjusted:.2g} {how}; {tol})"
        )


def judge_metric(
    metric: str,
    current: Sequence[float],
    baseline: Sequence[float],
    *,
    tolerance: float,
    alpha: float,
    drift: float = 0.0,
    final: bool = True,
    trend_of: Sequence[float] | None = None,
    pairs: tuple[Sequence[float], Sequence[float]] | None = None,
) -> MetricVerdict:
    """Verdict for one metric at one look.

    ``alpha`` is the level this single comparison is held to (already divided for the session's
    comparisons and the sequential looks). ``drift`` widens the tolerance for a stored baseline.
    At a non-final look only clear outcomes are returned; anything else is INCONCLUSIVE so the
    caller samples more. ``trend_of`` is what must not drift monotonically (default: the
    current samples; in relative mode the per-pair ratios, since drift shared by both sides
    cancels there). ``pairs`` (relative mode: aligned candidate and reference samples) switches
    the three tests to their paired, signed-rank form.
    """
    higher = DIRECTIONS[metric]
    effective = max(tolerance, drift)
    if pairs is not None:
        p_slow, p_impr, p_fine = stats.paired_pvalues(*pairs, effective, higher_is_better=higher)
    else:
        p_slow = stats.slowdown_pvalue(current, baseline, effective, higher_is_better=higher)
        p_impr = stats.improvement_pvalue(current, baseline, effective, higher_is_better=higher)
        p_fine = stats.no_slowdown_pvalue(current, baseline, effective, higher_is_better=higher)
    ratio, low, high = stats.median_ratio_ci(current, baseline)
    unstable = stats.is_unstable(current if trend_of is None else trend_of)
    if unstable and not _beyond_any_trend(current, baseline, effective, higher):
        verdict = Verdict.UNSTABLE
    elif p_slow < alpha:
        verdict = Verdict.REGRESSION
    elif p_impr < alpha:
        verdict = Verdict.IMPROVEMENT
    elif p_fine < alpha or (final and p_fine < 0.05):
        verdict = Verdict.PASS
    else:
        verdict = Verdict.INCONCLUSIVE
    settle = None
    if verdict == Verdict.INCONCLUSIVE and pairs is not None:
        settle = stats.paired_runs_to_settle(*pairs, effective, alpha, higher_is_better=higher)
    elif verdict == Verdict.INCONCLUSIVE:
        settle = stats.runs_to_settle(current, baseline, effective, alpha, higher_is_better=higher)
    return MetricVerdict(
        metric=metric,
        verdict=verdict,
        ratio=ratio,
        ci_low=low,
        ci_high=high,
        p_slowdown=p_slow,
        p_improvement=p_impr,
        p_no_slowdown=p_fine,
        tolerance=tolerance,
        effective_tolerance=effective,
        n_current=len(current),
        n_baseline=len(baseline),
        runs_to_settle=settle,
    )


def _beyond_any_trend(
    current: Sequence[float], baseline: Sequence[float], tolerance: float, higher: bool
) -> bool:
    """Every current sample is beyond the tolerance on the same side of the baseline median:
    then a trend within the run cannot explain the difference, and it is decided as usual."""
    centre = median(baseline)
    slower = [c / centre if not higher else centre / c for c in current]
    bound = 1 + tolerance
    return min(slower) > bound or max(slower) < 1 / bound


def worst(verdicts: Sequence[str]) -> str:
    return min(verdicts, key=SEVERITY.index) if verdicts else Verdict.PASS


def gated_metrics(output_tokens: Sequence[float]) -> tuple[str, str]:
    """The primary metric (median TPOT when generations have > 1 token, else e2e) and TTFT."""
    primary = "tpot_s" if output_tokens and median(output_tokens) > 1 else "e2e_s"
    return primary, "ttft_s"


def review(results: Sequence[Mapping[str, Any]], alpha: float) -> list[dict[str, Any]]:
    """Session-end multiplicity review of every gated comparison.

    Each test already decided at ``alpha / planned comparisons`` (Holm's first, strictest step).
    Holm's step-down over the actual p-values may reject more; Benjamini-Yekutieli marks the
    comparisons worth a look without failing anything. Returns one row per comparison.
    """
    rows = [
        {"result": index, "metric": metric, "p": p}
        for index, result in enumerate(results)
        if (gate := result.get("gate")) and "p_sequential" in gate
        for metric, p in gate["p_sequential"].items()
    ]
    if not rows:
        return rows  # and scipy (slow to import) stays unloaded
    pvalues = [row["p"] for row in rows]
    for row, p_holm, p_by in zip(
        rows, stats.holm(pvalues), stats.benjamini_yekutieli(pvalues), strict=True
    ):
        row["p_holm"] = p_holm
        row["p_by"] = p_by
        row["holm_rejects"] = p_holm < alpha
        row["by_flags"] = p_by < alpha
    return rows
