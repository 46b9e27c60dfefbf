"""What the gate returns: :class:`Verdict` names, :class:`MetricVerdict`, and the two checks
every judge (``gate.judge_metric``, ``load.judge_tail``) makes before any test runs:
:func:`check_inputs` (invalid numbers are one ValueError naming the metric) and
:func:`undecidable` (valid data no test can decide gets a defined verdict, its reason in
``note``). Re-exported by :mod:`.gate`. No pytest, no I/O.

>>> v = undecidable("tpot_s", [0.1], [0.0, 0.0], level="median", baseline_level=0.0,
...                 tolerance=0.05, effective=0.05)
>>> (v.verdict, v.describe(1.0, "Holm"))
('REFUSED', 'TPOT changed n/a (90% CI n/a..n/a, p=1, 1 Holm; tolerance 5%)')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .numeric import check_finite, check_samples

__all__ = [
    "SEVERITY",
    "MetricVerdict",
    "Verdict",
    "check_inputs",
    "percent_change",
    "undecidable",
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


@dataclass(frozen=True)
class MetricVerdict:
    """The comparison of one metric; ratios are current / baseline medians.

    ``ratio`` and the CI are NaN where no ratio exists (an empty side, a baseline median of 0:
    see ``note``) and ``ci_high`` is ``inf`` where the bootstrap's baseline medians reach 0;
    results files store both as null. p-values are always in [0, 1].
    """

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
        change = percent_change(self.ratio, ".1f")
        ci = f"90% CI {percent_change(self.ci_low, '.0f')}..{percent_change(self.ci_high, '.0f')}"
        tol = f"tolerance {_number(self.effective_tolerance, '.0%')}"
        widened = _finite(self.effective_tolerance) and _finite(self.tolerance)
        if widened and self.effective_tolerance > self.tolerance:
            tol += f" widened from {self.tolerance:.0%} for drift"
        plain = self.p_improvement if self.verdict == Verdict.IMPROVEMENT else self.p_slowdown
        return (
            f"{name} {what.get(self.verdict, 'changed')} {change} "
            f"({ci}, p={_number(plain, '.2g')}, {_number(p_adjusted, '.2g')} {how}; {tol})"
        )


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _number(x: object, spec: str) -> str:
    """``x`` formatted, or ``n/a``: a verdict read back from a file has null where the number
    was undefined (NaN) or unbounded (inf)."""
    return format(x, spec) if _finite(x) else "n/a"


def percent_change(ratio: object, spec: str = ".1f") -> str:
    """``ratio`` as a signed change, ``+18.0%``; ``n/a`` where it is undefined (NaN, or null in
    a file) and ``+inf%`` where unbounded. For every reader that shows a verdict's numbers.

    >>> (percent_change(1.18), percent_change(None), percent_change(float("inf"), ".0f"))
    ('+18.0%', 'n/a', '+inf%')
    """
    if not _finite(ratio):
        return "+inf%" if ratio == math.inf else "n/a"
    assert isinstance(ratio, int | float)
    return f"{(ratio - 1) * 100:+{spec}}%"


def check_inputs(
    metric: str,
    current: Sequence[float],
    baseline: Sequence[float],
    *,
    tolerance: float,
    alpha: float,
    drift: float,
) -> tuple[list[float], list[float], float]:
    """Both sides as lists of floats and the effective tolerance, or a ValueError naming the
    metric and the first bad value: samples finite and non-negative (every gated metric is a
    latency or a rate), tolerance and drift finite and >= 0, alpha in (0, 1]."""
    cur = check_samples(current, what=f"{metric}: current sample(s)")
    base = check_samples(baseline, what=f"{metric}: baseline sample(s)")
    tol = check_finite(tolerance, what=f"{metric}: tolerance", low=0.0)
    widened = check_finite(drift, what=f"{metric}: drift allowance", low=0.0)
    check_finite(alpha, what=f"{metric}: alpha", low=0.0, low_open=True, high=1.0)
    return cur, base, max(tol, widened)


def undecidable(
    metric: str,
    current: Sequence[float],
    baseline: Sequence[float],
    *,
    level: str,
    baseline_level: float,
    tolerance: float,
    effective: float,
) -> MetricVerdict | None:
    """The verdict for valid data that no test can decide, or None: an empty side is
    INCONCLUSIVE; a baseline ``level`` (its median, its p95) of 0 is REFUSED, since the
    relative change from it that the tolerance speaks of is undefined. No p-value (each 1.0)."""
    if not current or not baseline:
        verdict = Verdict.INCONCLUSIVE
        note = f"too few samples: {len(current)} current, {len(baseline)} baseline"
    elif baseline_level == 0:
        verdict = Verdict.REFUSED
        what = "has no positive samples" if max(baseline) == 0 else f"{level} is 0"
        note = f"baseline {what}: a change relative to it is undefined"
    else:
        return None
    return MetricVerdict(
        metric=metric,
        verdict=verdict,
        ratio=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        p_slowdown=1.0,
        p_improvement=1.0,
        p_no_slowdown=1.0,
        tolerance=tolerance,
        effective_tolerance=effective,
        n_current=len(current),
        n_baseline=len(baseline),
        note=note,
    )
