"""Paired (interleaved A/B) tests of :mod:`.stats`: Wilcoxon signed-rank tests on per-pair
log ratios, and how many pairs would settle a comparison. Re-exported by :mod:`.stats`.

Pairs with a zero on one side (a window with no completion, a coarse clock) have an infinite
log ratio: it still has a sign, and the signed-rank test needs nothing more.

>>> paired_pvalues([0.0, 1.0, 1.0], [1.0, 0.0, 1.0], 0.05)[0] > 0  # zeros: no crash
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from ._stable import clean_p, mean_stdev, median, settle_size

__all__ = ["paired_pvalues", "paired_runs_to_settle"]


def _log_or_minus_inf(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _worse_log_ratios(
    current: Sequence[float], reference: Sequence[float], higher_is_better: bool
) -> list[float]:
    """Per-pair log(current / reference), signed so that positive means worse. A zero on one
    side makes it infinite (a direction with no size); equal values, zeros included, give 0.
    A difference of logs, so a quotient beyond the float range cannot overflow."""
    ratios = [
        0.0 if c == r else _log_or_minus_inf(c) - _log_or_minus_inf(r)
        for c, r in zip(current, reference, strict=True)
    ]
    return [-x for x in ratios] if higher_is_better else ratios


def _signed_rank_pvalue(diffs: Sequence[float], alternative: Literal["greater", "less"]) -> float:
    from scipy.stats import wilcoxon

    if not diffs or all(d == 0 for d in diffs):
        return 1.0
    # The test uses only the signs and the ranks of |d|: an infinite difference (a zero on one
    # side) is the largest, which any finite value beyond the others says as well.
    largest = max((abs(d) for d in diffs if math.isfinite(d)), default=1.0)
    ranked = [d if math.isfinite(d) else math.copysign(2 * largest + 1, d) for d in diffs]
    # "pratt" keeps zero differences in the ranking instead of silently dropping them.
    return clean_p(wilcoxon(ranked, alternative=alternative, zero_method="pratt").pvalue)


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
    """Pairs a one-sided signed-rank test at level alpha likely needs to settle either way.
    Pairs with a zero on one side (an infinite log ratio) have no size to estimate from."""
    worse = [w for w in _worse_log_ratios(current, reference, higher_is_better) if math.isfinite(w)]
    if len(worse) < 2:
        return cap
    _, sigma = mean_stdev(worse)
    delta = abs(median(worse) - math.log1p(tolerance))
    # 0.955: the signed-rank test's efficiency against the t test.
    return settle_size(sigma, delta, alpha, power, 1.0 / 0.955, cap, len(current))
