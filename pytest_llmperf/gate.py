"""The regression gate: from two samples of a metric to a verdict a person can act on.

Per metric, the question is one-sided and carries the tolerance inside it: "is the current run
slower than the baseline by more than ``tol``?" (:func:`~pytest_llmperf.stats.slowdown_pvalue`,
a Mann-Whitney U test on shifted samples). Its mirror asks "faster by more than ``tol``?", and a
third "not slower by more than ``tol``?" lets sequential sampling stop early with a PASS.
See README ("The regression gate") and ``../shared/notes/gating.md`` for why.

The entry points (:func:`judge_metric`, :func:`review`; ``load.judge_tail`` through
:func:`check_inputs` and :func:`undecidable`) validate what they are given once: a NaN, an
infinity or a negative sample is a ValueError naming the metric. Valid data that no test can
decide gets a defined verdict with the reason in ``note`` rather than an exception:

>>> judge_metric("tpot_s", [], [0.01, 0.02], tolerance=0.05, alpha=0.01).note
'too few samples: 0 current, 2 baseline'
>>> v = judge_metric("throughput_rps", [1.0, 2.0, 3.0], [0.0] * 3, tolerance=0.1, alpha=0.01)
>>> (v.verdict, v.note)
('REFUSED', 'baseline has no positive samples: a change relative to it is undefined')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import median
from typing import Any

from . import stats
from ._stable import clean_p
from ._stable import median as safe_median
from ._verdict import (
    SEVERITY,
    MetricVerdict,
    Verdict,
    check_inputs,
    percent_change,
    undecidable,
)
from .numeric import check_samples

__all__ = [
    "DEFAULT_TOLERANCES",
    "DIRECTIONS",
    "FEW_RUNS_DRIFT_ALLOWANCE",
    "MAX_DRIFT_ALLOWANCE",
    "SEVERITY",
    "MetricVerdict",
    "Verdict",
    "check_inputs",
    "drift_allowance",
    "judge_metric",
    "parse_tolerances",
    "percent_change",
    "review",
    "undecidable",
    "worst",
]


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
#: Largest drift allowance (1000%, where tolerances stop too): stored runs that disagree more
#: (a run median of 0 beside positive ones is infinitely far on the log scale) could not show
#: any change anyway, and the cap keeps the widened tolerance a finite number.
MAX_DRIFT_ALLOWANCE = 10.0


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
    scale (``s`` = stdev of the logs of the run medians); with fewer runs, a fixed 30%. At most
    :data:`MAX_DRIFT_ALLOWANCE`. ValueError for a negative or non-finite median.

    >>> drift_allowance([0.0, 1.0, 1.1])
    (10.0, 'between-run spread inf% over 3 stored runs; capped at 1000%')
    """
    medians = check_samples(run_medians, what="stored run medians")
    k = len(medians)
    if k < 3:
        return FEW_RUNS_DRIFT_ALLOWANCE, f"{k} stored run(s) < 3: conservative 30% drift allowance"
    spread = stats.log_spread(medians)
    exponent = _DRIFT_Z * spread * math.sqrt(1 + 1 / k)
    how = f"between-run spread {spread:.1%} over {k} stored runs"
    if exponent >= math.log1p(MAX_DRIFT_ALLOWANCE):  # math.exp would overflow on the way
        return MAX_DRIFT_ALLOWANCE, f"{how}; capped at {MAX_DRIFT_ALLOWANCE:.0%}"
    return math.expm1(exponent), how


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

    Inputs are checked by :func:`check_inputs`; :func:`undecidable` data get its verdict.
    """
    higher = DIRECTIONS[metric]
    current, baseline, effective = check_inputs(
        metric, current, baseline, tolerance=tolerance, alpha=alpha, drift=drift
    )
    if pairs is not None:
        pairs = (
            check_samples(pairs[0], what=f"{metric}: candidate of pair"),
            check_samples(pairs[1], what=f"{metric}: reference of pair"),
        )
        if len(pairs[0]) != len(pairs[1]):
            raise ValueError(f"{metric}: {len(pairs[0])} candidate vs {len(pairs[1])} reference")
    level = safe_median(baseline) if baseline else math.nan
    no_test = undecidable(
        metric,
        current,
        baseline,
        level="median",
        baseline_level=level,
        tolerance=tolerance,
        effective=effective,
    )
    if no_test is not None:
        return no_test
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
    note = ""
    if verdict == Verdict.INCONCLUSIVE and min(*current, *baseline) == max(*current, *baseline):
        note = f"no spread: every sample on both sides is {current[0]:g}"
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
        note=note,
    )


def _beyond_any_trend(
    current: Sequence[float], baseline: Sequence[float], tolerance: float, higher: bool
) -> bool:
    """Every current sample is beyond the tolerance on the same side of the baseline median:
    then a trend within the run cannot explain the difference, and it is decided as usual.
    Multiplied out rather than divided (the median is > 0, a current sample may be 0)."""
    centre = safe_median(baseline)
    bound = 1 + tolerance
    lowest, highest = min(current), max(current)
    if higher:  # slower means below centre / bound; faster, above centre * bound
        return centre > bound * highest or centre * bound < lowest
    return lowest > bound * centre or highest * bound < centre


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

    A p-value that is not a number in [0, 1] (NaN, or null read back from a file) counts as 1,
    no evidence, and its row says so in ``note``.
    """
    rows = [
        {"result": index, "metric": metric, "p": p}
        for index, result in enumerate(results)
        if (gate := result.get("gate")) and "p_sequential" in gate
        for metric, p in gate["p_sequential"].items()
    ]
    if not rows:
        return rows  # and scipy (slow to import) stays unloaded
    for row in rows:
        raw, row["p"] = row["p"], clean_p(row["p"])
        if not (isinstance(raw, int | float) and raw == row["p"]):
            row["note"] = f"p-value {raw!r} is not a number in [0, 1]: counted as 1 (no evidence)"
    pvalues = [row["p"] for row in rows]
    for row, p_holm, p_by in zip(
        rows, stats.holm(pvalues), stats.benjamini_yekutieli(pvalues), strict=True
    ):
        row["p_holm"] = p_holm
        row["p_by"] = p_by
        row["holm_rejects"] = p_holm < alpha
        row["by_flags"] = p_by < alpha
    return rows
