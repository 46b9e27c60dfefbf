"""Quality against the baseline: per-prompt paired judge scores, current minus baseline.

Pure functions, no I/O. The question is non-inferiority with a margin ``m`` (points on the
0-100 scale): with ``d_i = current_i - baseline_i`` over the prompts judged on both sides,

- non-inferior (PASS) when ``H0: mean(d) <= -m`` is rejected for ``H1: mean(d) > -m``;
- REGRESSION when ``H0: mean(d) >= -m`` is rejected for ``H1: mean(d) < -m``, or when the upper
  end of the 90% bootstrap CI of ``mean(d)`` lies below ``-m``;
- INCONCLUSIVE with fewer than :data:`MIN_PAIRS` pairs, or when neither is shown;
- REFUSED when the stored scores came from another judge or judge prompt version (scores of
  different judges are not on one scale), unless the baseline's responses were re-judged.

Both tests run on ``d_i + m``: an exact sign-flip permutation test of the mean for up to
:data:`EXACT_MAX_PAIRS` pairs (judge ratings are coarse, so ties are the rule and an exact test
is honest about them), the Wilcoxon signed-rank test (``zero_method="pratt"``) beyond.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .numeric import check_finite, check_samples

__all__ = [
    "DEFAULT_MARGIN",
    "EXACT_MAX_PAIRS",
    "INCONCLUSIVE",
    "MIN_PAIRS",
    "PASS",
    "REFUSED",
    "REGRESSION",
    "QualityComparison",
    "Rejudge",
    "compare_backend",
    "compare_scores",
    "format_quality_gate",
    "mean_diff_ci",
    "pair_id",
    "shifted_pvalue",
    "sign_flip_pvalue",
]

#: Points (0-100 scale) the mean score may drop before it counts as a regression.
DEFAULT_MARGIN = 5.0
#: Fewer pairs than this are never decided either way.
MIN_PAIRS = 5
#: Up to this many pairs the sign-flip test enumerates all 2**n sign assignments.
EXACT_MAX_PAIRS = 16

PASS = "PASS"
REGRESSION = "REGRESSION"
INCONCLUSIVE = "INCONCLUSIVE"
REFUSED = "REFUSED"


def pair_id(nodeid: str, call: int) -> str:
    """The stable id of a verdict: the test, and which ``llm_judge`` call within it."""
    return f"{nodeid}#{call}"


def sign_flip_pvalue(values: Sequence[float], alternative: Literal["greater", "less"]) -> float:
    """Exact one-sided sign-flip permutation p-value of ``mean(values)`` against 0.

    The share of the 2**n sign assignments whose mean is at least (``greater``) or at most
    (``less``) the observed one; the observed assignment counts, so p >= 2**-n.

    >>> sign_flip_pvalue([1.0, 2.0, 3.0], "greater")  # only +,+,+ reaches a mean of 2
    0.125
    """
    import numpy as np

    n = len(values)
    if n == 0:
        return 1.0
    x = np.abs(np.asarray(values, dtype=float))
    signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    sums = signs @ x
    observed = float(np.sum(values))
    eps = 1e-9 * max(1.0, float(np.sum(x)))  # float sums of the same terms in another order
    hits = sums >= observed - eps if alternative == "greater" else sums <= observed + eps
    count: int = int(np.count_nonzero(hits))
    return count / (1 << n)


def shifted_pvalue(
    diffs: Sequence[float], shift: float, alternative: Literal["greater", "less"]
) -> tuple[float, str]:
    """(p, method) for ``mean(diffs + shift)`` above / below 0: exact sign flips for up to
    :data:`EXACT_MAX_PAIRS` values, else Wilcoxon signed-rank with Pratt's zero handling."""
    shifted = [d + shift for d in diffs]
    if not shifted:
        return 1.0, "none"
    if len(shifted) <= EXACT_MAX_PAIRS:
        return sign_flip_pvalue(shifted, alternative), "exact sign-flip"
    if all(v == 0 for v in shifted):
        return 1.0, "wilcoxon-pratt"
    from scipy.stats import wilcoxon

    p = float(wilcoxon(shifted, alternative=alternative, zero_method="pratt").pvalue)
    return p, "wilcoxon-pratt"


def mean_diff_ci(
    diffs: Sequence[float], *, confidence: float = 0.90, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Seeded percentile-bootstrap CI of the mean of ``diffs`` (NaNs when empty)."""
    import numpy as np

    if not diffs:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    d = np.asarray(diffs, dtype=float)
    means = rng.choice(d, size=(n_resamples, d.size)).mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (float(low), float(high))


@dataclass
class QualityComparison:
    """The quality gate's verdict for one backend (JSON-safe through :meth:`to_json`)."""

    backend: str
    backend_id: str
    verdict: str
    n_pairs: int
    margin: float
    alpha: float
    mean_diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_noninferior: float | None = None
    p_regression: float | None = None
    method: str = ""
    judge: str = ""
    baseline_judge: str = ""
    prompt_version: str = ""
    baseline_prompt_version: str = ""
    rejudged: bool = False
    reason: str = ""
    pairs: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: ``fake:m: REGRESSION, 5 pairs, mean diff -55.6 (90% CI ...), p=0.031``."""
        head = f"{self.verdict} {self.backend_id}"
        if self.verdict == REFUSED:
            return f"{head}: not compared: {self.reason}"
        if self.mean_diff is None:
            return f"{head}: {self.n_pairs} pair(s); {self.reason}"
        p = self.p_regression if self.verdict == REGRESSION else self.p_noninferior
        line = (
            f"{head}: {self.n_pairs} pairs, mean diff {self.mean_diff:+.1f} points "
            f"(90% CI {self.ci_low:+.1f}..{self.ci_high:+.1f}), p={p:.2g} ({self.method}); "
            f"margin {self.margin:g}, alpha {self.alpha:g}"
        )
        if self.rejudged:
            line += f"; baseline re-judged by {self.judge}"
        return line + (f"; {self.reason}" if self.reason else "")


def compare_scores(
    current: Sequence[float], baseline: Sequence[float], *, margin: float, alpha: float
) -> dict[str, Any]:
    """Verdict and statistics for aligned per-prompt scores (same order on both sides).

    Scores must be finite and non-negative (ValueError naming the side and the score), the
    margin finite and >= 0, alpha in (0, 1].
    """
    if len(current) != len(baseline):
        raise ValueError("current and baseline scores must be paired (same length)")
    current = check_samples(current, what="quality scores (current)")
    baseline = check_samples(baseline, what="quality scores (baseline)")
    margin = check_finite(margin, what="quality margin", low=0.0)
    check_finite(alpha, what="quality alpha", low=0.0, low_open=True, high=1.0)
    diffs = [c - b for c, b in zip(current, baseline, strict=True)]
    n = len(diffs)
    if n == 0:
        return {"verdict": INCONCLUSIVE, "n_pairs": 0, "reason": "no prompt judged on both sides"}
    mean = math.fsum(diffs) / n
    low, high = mean_diff_ci(diffs)
    p_fine, method = shifted_pvalue(diffs, margin, "greater")
    p_worse, _ = shifted_pvalue(diffs, margin, "less")
    reason = ""
    if n < MIN_PAIRS:
        verdict = INCONCLUSIVE
        reason = f"fewer than {MIN_PAIRS} pairs: judge more prompts to decide"
    elif p_worse < alpha or high < -margin:
        verdict = REGRESSION
    elif p_fine < alpha:
        verdict = PASS
    else:
        verdict = INCONCLUSIVE
        reason = "neither non-inferiority nor a regression beyond the margin is shown"
    return {
        "verdict": verdict,
        "n_pairs": n,
        "mean_diff": mean,
        "ci_low": low,
        "ci_high": high,
        "p_noninferior": p_fine,
        "p_regression": p_worse,
        "method": method,
        "reason": reason,
    }


#: ``rejudge(stored_verdict) -> score``: grades a stored response with the current judge.
Rejudge = Callable[[Mapping[str, Any]], float]


def compare_backend(
    backend: str,
    backend_id: str,
    current: Sequence[Mapping[str, Any]],
    stored: Mapping[str, Any],
    *,
    margin: float,
    alpha: float,
    rejudge: Rejudge | str | None = None,
) -> QualityComparison:
    """Pair this session's verdicts for one backend with its stored quality baseline.

    ``current``: the session's quality entries (``nodeid``, ``call``, ``score``, ``judge``,
    ``prompt_version``). ``stored``: the baseline file's ``quality`` section. ``rejudge``: a
    callable re-grading a stored verdict with the current judge (``--llm-rejudge-baseline``),
    or a string saying why that is impossible.
    """
    judge = str(current[0]["judge"]) if current else ""
    version = str(current[0]["prompt_version"]) if current else ""
    out = QualityComparison(
        backend=backend,
        backend_id=backend_id,
        verdict=INCONCLUSIVE,
        n_pairs=0,
        margin=margin,
        alpha=alpha,
        judge=judge,
        baseline_judge=str(stored.get("judge", "")),
        prompt_version=version,
        baseline_prompt_version=str(stored.get("prompt_version", "")),
        rejudged=rejudge is not None,
    )
    if isinstance(rejudge, str):
        out.verdict, out.rejudged = REFUSED, False
        out.reason = f"--llm-rejudge-baseline cannot re-judge the baseline: {rejudge}"
        return out
    if rejudge is None:
        changed = [
            f"{what}: {old!r} -> {new!r}"
            for what, old, new in (
                ("judge", out.baseline_judge, judge),
                ("judge prompt version", out.baseline_prompt_version, version),
            )
            if old != new
        ]
        if changed:
            out.verdict = REFUSED
            out.reason = (
                f"the quality baseline was judged differently ({'; '.join(changed)}); scores of "
                "different judges are not comparable. Re-judge it in this job with "
                "--llm-rejudge-baseline, or save a new baseline"
            )
            return out
    verdicts: Mapping[str, Any] = stored.get("verdicts", {})
    pairs: list[dict[str, Any]] = []
    current_scores: list[float] = []
    baseline_scores: list[float] = []
    for entry in sorted(current, key=lambda e: (e["nodeid"], e["call"])):
        pid = pair_id(entry["nodeid"], entry["call"])
        base = verdicts.get(pid)
        if base is None:
            continue
        stored_score = rejudge(base) if rejudge is not None else base.get("score")
        base_score = _score(stored_score, f"baseline score of {pid}")
        current_scores.append(_score(entry["score"], f"score of {pid}"))
        baseline_scores.append(base_score)
        pairs.append({"id": pid, "current": current_scores[-1], "baseline": base_score})
    result = compare_scores(current_scores, baseline_scores, margin=margin, alpha=alpha)
    for key, value in result.items():
        setattr(out, key, value)
    out.pairs = pairs
    unpaired = len(current) - len(pairs)
    if unpaired:
        extra = f"{unpaired} verdict(s) with no stored counterpart left out"
        out.reason = f"{out.reason}; {extra}" if out.reason else extra
    return out


def _score(value: object, what: str) -> float:
    """A judge score on the 0-100 scale, or ValueError naming the verdict it belongs to."""
    return check_finite(value, what=what, low=0.0, high=100.0)


def format_quality_gate(comparisons: Sequence[Mapping[str, Any]], fail_on: str) -> list[str]:
    """The summary lines: one per backend, then what a regression does to the run."""
    lines = [QualityComparison(**c).describe() for c in comparisons]
    if any(c["verdict"] == REGRESSION for c in comparisons):
        if fail_on in ("both", "quality"):
            lines.append(f"quality REGRESSION: the run fails (--llm-fail-on={fail_on})")
        else:
            lines.append(f"quality REGRESSION reported only (--llm-fail-on={fail_on})")
    return lines
