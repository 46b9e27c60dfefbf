"""Serving load benchmarks: one :class:`LoadResult` per sweep point, gated like ``llm_bench``.

``llm_load(prompts, concurrency=[1, 4, 16])`` or ``llm_load(prompts, rate=[2, 8])`` drives the
backend's async path (:class:`~pytest_llmperf.backends.AsyncCapable`; openai on the
SDK's async HTTP client, bedrock in a bounded thread pool) with the generator in
:mod:`._loadgen`, and summarises each point with :mod:`.load_metrics`. A results entry has the
shape of an ``llm_bench`` one (name, nodeid, backend, params, stats, samples, gate ...) plus a
``load`` section: throughput, output tokens/s, goodput under ``--llm-slo``, achieved
concurrency, errors by kind, the generator's own scheduling lag and the wait for a
concurrency slot.

More failed requests than ``--llm-max-error-rate`` allows (the rule of ``llm_bench``: that share
of the requests, at least 2) end the sweep with a :class:`~pytest_llmperf.errors.GenerationError`
naming the counts (:func:`error_limit_message`): the survivors' latencies are not the server's.

The gate (one look: a load run is not extended) compares three things with a stored baseline or
a ``--llm-compare-to`` reference run right after the candidate, at the same point:

- ``ttft_s``: per-request TTFTs, the shifted Mann-Whitney test of :mod:`.gate` (tolerance 10%);
- ``throughput_rps``: per-window request throughputs of the steady state (see
  :mod:`.load_metrics`), the same test, higher is better (tolerance 10%);
- ``ttft_p95_s``: Mood's quantile test at the 95th percentile on shifted samples, with Fisher's
  exact test (tolerance 25%); gated only when the sample sizes could reach significance at all.

Each p-value enters the session-end Holm review with every other comparison. With a stored
baseline the tolerance widens by the between-run drift of the stored runs, as for ``llm_bench``.
Unlike ``llm_bench``, a monotone trend within the run does not make a metric UNSTABLE: under
load it is the effect being measured (an open loop the server cannot keep up with builds a
queue, so each TTFT is longer than the last), and the comparison with the baseline decides.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._loadgen import LoadRun
from .bench import _MIN_ERRORS_ALLOWED, _generation_json
from .compare import GatePolicy, Reference, outcome
from .gate import (
    MetricVerdict,
    Verdict,
    check_inputs,
    drift_allowance,
    judge_metric,
    undecidable,
)
from .harness import Generation, metric_values
from .load_metrics import (
    achieved_concurrency,
    goodput,
    lag_summary,
    slot_wait_summary,
    tail_decidable,
    tail_pvalues,
    tail_ratio_ci,
    window_throughput,
)
from .stats import percentile, summarize

__all__ = [
    "LOAD_METRICS",
    "LoadResult",
    "error_limit_message",
    "gate_load",
    "judge_tail",
    "relative_label",
    "run_samples",
]

#: Metrics in a load result's ``stats`` and ``samples``.
LOAD_METRICS = (
    "ttft_s",
    "e2e_s",
    "tpot_s",
    "itl_s",
    "output_tokens",
    "prompt_tokens",
    "decode_tps",
    "sec_per_token",
    "server_latency_s",
    "throughput_rps",
    "output_tps",
    "sched_lag_s",
)
#: A median scheduling lag above this means the client, not the server, set the pace.
LAG_WARN_S = 0.001
#: Client CPU over wall time above this: the generator saturates its core.
CPU_WARN_SHARE = 0.9
#: A load run's drift within the run is its effect, not noise: no samples are held to the
#: no-trend rule of :func:`~pytest_llmperf.gate.judge_metric` (its ``trend_of``).
_NO_TREND_RULE: tuple[float, ...] = ()


@dataclass
class LoadResult:
    """One sweep point of one ``llm_load`` call."""

    name: str
    nodeid: str
    backend: str
    backend_id: str
    params: dict[str, Any]
    run: LoadRun
    slo: dict[str, float]
    warmup: int = 0
    gate: dict[str, Any] | None = None
    reference_run: LoadRun | None = None
    warnings: list[str] = field(default_factory=list)
    #: Why the point cannot stand as a measurement (too many failed requests, here or in the
    #: reference run); ``llm_load`` then errors the test.
    failure: str | None = None

    @property
    def generations(self) -> list[Generation]:
        return [r.generation for r in self.run.records if r.generation is not None]

    @property
    def errors(self) -> Counter[str]:
        return Counter(r.error for r in self.run.records if r.error is not None)

    def samples(self, metric: str) -> list[float]:
        return run_samples(self.run, metric)

    @property
    def summary(self) -> dict[str, Any]:
        """The ``load`` section of the results entry."""
        records = self.run.records
        ok = self.generations
        span = _span_s(self.run)
        tokens = sum(g.output_tokens for g in ok)
        good = goodput(records, self.slo)
        good["rps"] = good["good"] / span if span else None
        _, _, windows = window_throughput(records)
        point = self.run.point
        return {
            "mode": point.mode,
            "concurrency": point.concurrency,
            "rate": point.rate,
            "requests": len(records),
            "succeeded": len(ok),
            "failed": len(records) - len(ok),
            "span_s": span,
            "throughput_rps": len(ok) / span if span else None,
            "output_tps": tokens / span if span else None,
            "goodput": good,
            "slo": dict(self.slo),
            "achieved_concurrency": achieved_concurrency(records),
            "errors": dict(sorted(self.errors.items())),
            "error_rate": (len(records) - len(ok)) / len(records) if records else None,
            "scheduling_lag_s": lag_summary(records),
            "slot_wait_s": slot_wait_summary(records),
            "generator_cpu_share": self.run.cpu_share,
            "generator_spin_s": self.run.spin_s,
            "windows": windows,
            "warnings": list(self.warnings),
        }

    def bottleneck_warnings(self) -> list[str]:
        lag = lag_summary(self.run.records)
        found = []
        median_lag = lag["median"]
        if median_lag is not None and median_lag > LAG_WARN_S:
            found.append(
                f"the load generator sent requests {median_lag * 1e3:.2f} ms late (median; p99 "
                f"{(lag['p99'] or 0) * 1e3:.1f} ms): it, not the server, may limit this load"
            )
        if self.run.cpu_share > CPU_WARN_SHARE:
            found.append(
                f"the load generator used {self.run.cpu_share:.0%} of a CPU core: it, not the "
                "server, may limit this load (lower the rate or concurrency, or run the test "
                "on a machine with faster cores)"
            )
        return found

    def to_json(self) -> dict[str, Any]:
        stats = {m: summarize(self.samples(m)) for m in LOAD_METRICS}
        errors = self.errors
        examples = {
            r.error: r.message for r in self.run.records if r.error is not None and r.message
        }
        reference = self.reference_run
        return {
            "name": self.name,
            "nodeid": self.nodeid,
            "backend": self.backend,
            "backend_id": self.backend_id,
            "params": self.params,
            "runs": len(self.generations),
            "warmup": self.warmup,
            "stats": {m: s.to_json() for m, s in stats.items()},
            "missing": {
                m: len(self.generations) - stats[m].n
                for m in LOAD_METRICS
                if m not in ("itl_s", "throughput_rps", "output_tps", "sched_lag_s")
            },
            "samples": {m: self.samples(m) for m in LOAD_METRICS},
            "generations": [_generation_json(g) for g in self.generations],
            "gate": self.gate,
            "reference_generations": []
            if reference is None
            else [_generation_json(r.generation) for r in reference.records if r.generation],
            "price": None,
            "costs_usd": [],
            "errors": {
                "attempts": len(self.run.records),
                "failed": sum(errors.values()),
                "by_kind": dict(sorted(errors.items())),
                "examples": dict(sorted(examples.items())),
                "retried": 0,
            },
            "retried_generations": [],
            "reference_errors": None,
            "load": self.summary,
        }


def _span_s(run: LoadRun) -> float:
    records = run.records
    if not records:
        return 0.0
    return (max(r.t_end for r in records) - min(r.t0 for r in records)) / 1e9


def run_samples(run: LoadRun, metric: str) -> list[float]:
    """Samples of one metric: per request, pooled ITL gaps, per window, or per request lag."""
    generations = [r.generation for r in run.records if r.generation is not None]
    if metric == "itl_s":
        return [gap for g in generations for gap in g.itl_s]
    if metric in ("throughput_rps", "output_tps"):
        rps, tps, _ = window_throughput(run.records)
        return rps if metric == "throughput_rps" else tps
    if metric == "sched_lag_s":
        return [r.lag_ns / 1e9 for r in run.records]
    return metric_values(generations, metric)


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


def relative_label(reference_id: str) -> str:
    """What a load point is compared with under ``--llm-compare-to``: the reference runs the
    same point after the candidate, not interleaved with it as in ``llm_bench``."""
    return f"{reference_id} (same job, same point run right after the candidate)"


def error_limit_message(run: LoadRun, max_rate: float, whose: str = "") -> str | None:
    """Why a run failed too often to be measured (``llm_bench``'s rule: more failures than
    ``max_rate`` of the requests, and more than 2), or None."""
    records = run.records
    failed = Counter(r.error for r in records if r.error is not None)
    count = sum(failed.values())
    if count <= max(_MIN_ERRORS_ALLOWED, math.floor(max_rate * len(records))):
        return None
    kinds = ", ".join(f"{kind} x{n}" for kind, n in sorted(failed.items()))
    last = next((r.message for r in reversed(records) if r.error is not None and r.message), "")
    return (
        f"{whose}{count} of {len(records)} requests failed ({kinds}), more than "
        f"--llm-max-error-rate={max_rate:g} allows; the samples left would be survivors, not "
        f"the server's latency. Last error: {last}"
    )


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
