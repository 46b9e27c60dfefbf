"""``llmperf compare A.json B.json``: the gate's statistics between two result files.

B is the candidate, A the baseline. Each benchmark + backend found in both is compared per
metric with :func:`pytest_llmperf.gate.judge_metric` (the U test on shifted samples, with the
gate's tolerances) at the level of Holm's first step, then Holm's step-down over all comparisons
(:func:`pytest_llmperf.gate.review`) may reject more, exactly as at the end of a pytest session.
Two separate runs are a stored-baseline comparison, so by default the tolerance is widened by
the gate's drift allowance (:func:`pytest_llmperf.gate.drift_allowance`); ``drift=0`` drops it
for files measured under the same conditions. Backends whose strict comparison keys differ
(another CPU, model file, engine version) are refused, as the gate refuses them.

``ttft_p95_s`` (load results) has no samples of its own: it is compared on the ``ttft_s``
samples with the load gate's tail test (:func:`~pytest_llmperf.load_metrics.tail_pvalues`),
and reported undecidable, not judged, where too few requests could never reach significance
(:func:`~pytest_llmperf.load_metrics.tail_decidable`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .baseline import bench_id, describe_differences
from .gate import (
    DEFAULT_TOLERANCES,
    MetricVerdict,
    Verdict,
    drift_allowance,
    gated_metrics,
    judge_metric,
    review,
)
from .load import judge_tail
from .load_metrics import tail_decidable
from .stats import percentile

__all__ = ["FileComparison", "Row", "compare_documents"]

_MIN_SAMPLES = 3
#: Metrics with no samples of their own: compared on another metric's samples, by a test of
#: their own (``ttft_p95_s``: the load gate's quantile test on per-request TTFTs).
_SOURCE = {"ttft_p95_s": "ttft_s"}


@dataclass
class Row:
    bench: str
    backend_id: str
    metric: str
    verdict: MetricVerdict | None
    #: The value compared: the samples' median (for ``ttft_p95_s``, their 95th percentile).
    baseline_median: float | None
    current_median: float | None
    p_holm: float | None = None
    drift_note: str = ""
    reason: str = ""  # why there is no verdict (REFUSED, too few samples)


@dataclass
class FileComparison:
    rows: list[Row] = field(default_factory=list)
    only_baseline: list[str] = field(default_factory=list)
    only_current: list[str] = field(default_factory=list)
    #: Metric comparisons made (the Holm family).
    comparisons: int = 0

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict and r.verdict.verdict == Verdict.REGRESSION]


def _index(document: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (bench_id(r["nodeid"], r.get("name") or ""), r["backend_id"]): r
        for r in document.get("results", [])
    }


def _strict_key(document: Mapping[str, Any], result: Mapping[str, Any]) -> Any:
    for record in document.get("backends", []):
        if record.get("id") == result["backend_id"] and record.get("source") == result.get(
            "source"
        ):
            return (record.get("key") or {}).get("strict")
    return None


def _samples(result: Mapping[str, Any], metric: str) -> list[float]:
    values = (result.get("samples") or {}).get(metric) or []
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def _level(metric: str, values: Sequence[float]) -> float | None:
    # stats.percentile, not statistics.median: the mean of two middle values of 1e308 is inf.
    if not values:
        return None
    return percentile(sorted(values), 95 if metric == "ttft_p95_s" else 50)


def compare_documents(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    alpha: float,
    tolerances: Mapping[str, float] | None = None,
    drift: float | None = None,
    metrics: Sequence[str] = (),
    force: bool = False,
) -> FileComparison:
    """Compare ``current`` against ``baseline``; ``drift=None`` widens as the gate does."""
    tol = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    old, new = _index(baseline), _index(current)
    out = FileComparison(
        only_baseline=[f"{b} [{k}]" for b, k in sorted(set(old) - set(new))],
        only_current=[f"{b} [{k}]" for b, k in sorted(set(new) - set(old))],
    )
    todo: list[tuple[Row, list[float], list[float], float, bool]] = []
    for key in sorted(set(old) & set(new)):
        a, b = old[key], new[key]
        # What the gate compared for this benchmark, else what it would compare.
        gated = [m.get("metric") for m in (b.get("gate") or {}).get("metrics", [])]
        wanted = list(metrics) or [m for m in gated if m in DEFAULT_TOLERANCES]
        wanted = wanted or list(gated_metrics(_samples(b, "output_tokens")))
        key_a, key_b = _strict_key(baseline, a), _strict_key(current, b)
        differences = (
            describe_differences(key_a, key_b)
            if isinstance(key_a, dict) and isinstance(key_b, dict)
            else []
        )
        for metric in wanted:
            source = _SOURCE.get(metric, metric)
            base, cur = _samples(a, source), _samples(b, source)
            row = Row(*key, metric, None, _level(metric, base), _level(metric, cur))
            out.rows.append(row)
            if differences and not force:
                row.reason = "REFUSED, measured differently: " + "; ".join(differences)
            elif min(len(base), len(cur)) < _MIN_SAMPLES:
                of = f" {source}" if source != metric else ""
                row.reason = f"too few{of} samples ({len(base)} vs {len(cur)}; need {_MIN_SAMPLES})"
            else:
                allowance = 0.0
                if drift is None:
                    level = _level(metric, base)
                    assert level is not None
                    allowance, row.drift_note = drift_allowance([level])
                elif drift > 0:
                    allowance, row.drift_note = drift, f"drift allowance {drift:.0%} (--drift)"
                todo.append((row, cur, base, allowance, bool(b.get("load"))))
    # A p95 that no split of its few exceedances could show changed is reported, not judged,
    # as in the load gate; decided at the whole family's level, the strictest it can get.
    strictest = alpha / max(1, len(todo))
    for row, cur, base, *_ in todo:
        if row.metric == "ttft_p95_s" and not tail_decidable(len(cur), len(base), strictest):
            row.reason = (
                f"not decidable: {len(base)} vs {len(cur)} requests cannot show a p95 change at "
                f"alpha={strictest:.2g} (Mood's quantile test); send more requests"
            )
    todo = [item for item in todo if not item[0].reason]
    if not todo:
        return out
    out.comparisons = len(todo)
    alpha_one = alpha / len(todo)  # Holm's first, strictest step
    for row, cur, base, allowance, is_load in todo:
        if row.metric == "ttft_p95_s":
            row.verdict = judge_tail(
                cur,
                base,
                tolerance=tol[row.metric],
                alpha=alpha_one,
                drift=allowance,
                note="Mood's quantile test at p95 (Fisher exact) on the ttft_s samples",
            )
            continue
        row.verdict = judge_metric(
            row.metric,
            cur,
            base,
            tolerance=tol[row.metric],
            alpha=alpha_one,
            drift=allowance,
            # As in the load gate: under load a drift within the run is the effect measured.
            trend_of=() if is_load else None,
        )
    # As in the gate, an UNSTABLE metric is undecidable and a REFUSED one was never tested
    # (a baseline of zeros): both stay out of the review.
    untested = (Verdict.UNSTABLE, Verdict.REFUSED)
    decided = [row for row, *_ in todo if row.verdict and row.verdict.verdict not in untested]
    pseudo = [
        {"gate": {"p_sequential": {r.metric: r.verdict.p_slowdown}}} for r in decided if r.verdict
    ]
    for row, reviewed in zip(decided, review(pseudo, alpha), strict=True):
        row.p_holm = reviewed["p_holm"]
        verdict = row.verdict
        assert verdict is not None
        if reviewed["holm_rejects"] and verdict.verdict != Verdict.REGRESSION:
            row.verdict = MetricVerdict(**{**verdict.to_json(), "verdict": Verdict.REGRESSION})
    return out
