"""The gate of one ``llm_load`` sweep point (see :mod:`.load` for what it compares and why).

Apart from :mod:`.load` (the result and its JSON) to keep both readable; ``load`` re-exports
:func:`gate_load` and :func:`judge_tail`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ._loadgen import LoadRun
from .compare import GatePolicy, Reference, outcome
from .gate import (
    MetricVerdict,
    Verdict,
    check_inputs,
    drift_allowance,
    judge_metric,
    undecidable,
)
from .load_metrics import run_samples, tail_decidable, tail_pvalues, tail_ratio_ci
from .stats import percentile

__all__ = ["gate_load", "judge_tail"]

#: A load run's drift within the run is its effect, not noise: no samples are held to the
#: no-trend rule of :func:`~pytest_llmperf.gate.judge_metric` (its ``trend_of``).
_NO_TREND_RULE: tuple[float, ...] = ()


def _note(v: MetricVerdict, note: str) -> MetricVerdict:
    """``note`` (how the baseline was obtained) before the verdict's own reason, if any."""
    return MetricVerdict(**{**v.to_json(), "note": "; ".join(filter(None, (note, v.note)))})


def _baseline(
    reference: Reference, metric: str, reference_run: LoadRun | None
) -> tuple[list[float], list[float], str]:
    """Baseline samples, the per-run values whose spread estimates drift, and how."""
    if reference.stored is not None:
        source = "ttft_s" if metric == "ttft_p95_s" else metric
        runs = [[float(v) for v in run["samples"].get(source, [])] for run in reference.stored.runs]
        if metric == "ttft_p95_s":
            per_run = [percentile(sorted(v), 95) for v in runs if v]
        else:
            per_run = [sorted(v)[len(v) // 2] for v in runs if v]
        return [v for values in runs for v in values], per_run, "stored"
    assert reference_run is not None
    source = "ttft_s" if metric == "ttft_p95_s" else metric
    return run_samples(reference_run, source), [], "same job, run right after the candidate"


def gate_load(
    run: LoadRun, reference: Reference, policy: GatePolicy, reference_run: LoadRun | None = None
) -> dict[str, Any]:
    """The gate's outcome for one sweep point (JSON-safe, the shape of ``compare.outcome``)."""
    verdicts: list[MetricVerdict] = []
    notes: list[str] = []
    for metric in ("ttft_s", "throughput_rps"):
        current = run_samples(run, metric)
        base, per_run, how = _baseline(reference, metric, reference_run)
        if len(current) < 3 or len(base) < 3:
            notes.append(f"{metric} not gated: {len(current)} vs {len(base)} samples (< 3)")
            continue
        drift, why = drift_allowance(per_run) if how == "stored" else (0.0, how)
        v = judge_metric(
            metric,
            current,
            base,
            tolerance=policy.tolerances[metric],
            alpha=policy.alpha_one,
            drift=drift,
            final=True,
            trend_of=_NO_TREND_RULE,
        )
        verdicts.append(_note(v, why))
    tail = _judge_tail(run, reference, policy, reference_run)
    if isinstance(tail, str):
        notes.append(tail)
    else:
        verdicts.append(tail)
    gate = outcome(reference, verdicts, (len(run.records),), policy, len(run.records))
    gate["warnings"] = [*gate["warnings"], *notes]
    return gate


def _judge_tail(
    run: LoadRun, reference: Reference, policy: GatePolicy, reference_run: LoadRun | None
) -> MetricVerdict | str:
    current = run_samples(run, "ttft_s")
    base, per_run, how = _baseline(reference, "ttft_p95_s", reference_run)
    if not tail_decidable(len(current), len(base), policy.alpha_one):
        return (
            f"ttft_p95_s not gated: {len(current)} vs {len(base)} requests cannot show a p95 "
            f"change at alpha={policy.alpha_one:.2g} (Mood's quantile test); send more requests"
        )
    drift, why = drift_allowance(per_run) if how == "stored" else (0.0, how)
    return judge_tail(
        current,
        base,
        tolerance=policy.tolerances["ttft_p95_s"],
        alpha=policy.alpha_one,
        drift=drift,
        note=f"Mood's quantile test at p95 (Fisher exact); {why}",
    )


def judge_tail(
    current: Sequence[float],
    baseline: Sequence[float],
    *,
    tolerance: float,
    alpha: float,
    drift: float,
    note: str,
) -> MetricVerdict:
    """The ``ttft_p95_s`` verdict: Mood's quantile test at the 95th percentile on shifted
    samples (:func:`~pytest_llmperf.load_metrics.tail_pvalues`); the load gate and
    ``llmperf compare`` both decide with this. Inputs are checked as by ``judge_metric``; an
    empty side or a baseline p95 of 0 gets :func:`~pytest_llmperf.gate.undecidable`'s verdict,
    its reason after ``note``."""
    current, baseline, effective = check_inputs(
        "ttft_p95_s", current, baseline, tolerance=tolerance, alpha=alpha, drift=drift
    )
    no_test = undecidable(
        "ttft_p95_s",
        current,
        baseline,
        level="p95",
        baseline_level=percentile(sorted(baseline), 95) if baseline else math.nan,
        tolerance=tolerance,
        effective=effective,
    )
    if no_test is not None:
        return _note(no_test, note)
    p_slow, p_impr, p_fine = tail_pvalues(current, baseline, effective)
    ratio, low, high = tail_ratio_ci(current, baseline)
    if p_slow < alpha:
        verdict = Verdict.REGRESSION
    elif p_impr < alpha:
        verdict = Verdict.IMPROVEMENT
    elif p_fine < 0.05:
        verdict = Verdict.PASS
    else:
        verdict = Verdict.INCONCLUSIVE
    return MetricVerdict(
        metric="ttft_p95_s",
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
        note=note,
    )
