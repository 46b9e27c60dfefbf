"""Sampling a benchmark and gating it: sequential looks, interleaved A/B, confirmation re-run.

A benchmark is compared against a :class:`Reference`: either samples stored by an earlier run
(``stored``; the tolerance is widened by the between-run drift those runs show) or a reference
backend run in the same job, interleaved A B B A ... with the candidate (``relative``; drift
hits both sides alike, so the configured tolerance applies as is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._stable import ratio as safe_ratio
from .baseline import StoredBenchmark
from .bench import BenchResult, RequestErrors, Workload
from .gate import MetricVerdict, Verdict, drift_allowance, gated_metrics, judge_metric, worst
from .harness import Generation, LLMHandle, metric_values
from .prices import Price
from .progress import Progress, Ticker

__all__ = ["GatePolicy", "Reference", "gate_message", "outcome", "run_benchmark", "sequential"]


@dataclass
class Reference:
    """What a benchmark is compared with."""

    mode: str  # "stored" | "relative"
    label: str  # "baseline of 2026-11-20 (commit abc1234)", "llamacpp:old.gguf (same job)"
    stored: StoredBenchmark | None = None
    handle: LLMHandle | None = None
    refused: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GatePolicy:
    tolerances: dict[str, float]
    #: Level for one comparison: the session's alpha over its planned comparisons.
    alpha_one: float
    #: Comparisons the session planned (for the adjusted p-value in messages).
    comparisons: int
    confirm: bool


@dataclass
class _Sides:
    """The candidate and (in relative mode) the reference, each with its own error count."""

    handle: LLMHandle
    errors: RequestErrors
    other: LLMHandle | None
    other_errors: RequestErrors
    tick: Ticker


def _interleaved(
    workload: Workload, sides: _Sides, count: int, start: int
) -> tuple[list[Generation], list[Generation]]:
    """``count`` candidate runs, each paired with a reference run in alternating order."""
    mine: list[Generation] = []
    theirs: list[Generation] = []
    other = sides.other
    for i in range(start, start + count):
        sides.tick.sample(i + 1, start + count)
        if other is not None and i % 2 == 1:
            theirs.append(workload.run(other, sides.other_errors))
        mine.append(workload.run(sides.handle, sides.errors))
        if other is not None and i % 2 == 0:
            theirs.append(workload.run(other, sides.other_errors))
    return mine, theirs


def _judge(
    reference: Reference,
    mine: list[Generation],
    theirs: list[Generation],
    policy: GatePolicy,
    looks: int,
    final: bool,
) -> list[MetricVerdict]:
    primary, ttft = gated_metrics(metric_values(mine, "output_tokens"))
    verdicts = []
    for metric in (primary, ttft):
        current = metric_values(mine, metric)
        trend_of: list[float] | None = None
        pairs: tuple[list[float], list[float]] | None = None
        if reference.stored is not None:
            base = reference.stored.pooled(metric, first=len(mine))
            drift, how = drift_allowance(reference.stored.run_medians(metric, first=len(mine)))
        else:
            base, drift, how = metric_values(theirs, metric), 0.0, "interleaved pairs, same job"
            aligned = [
                (a, b)
                for g, h in zip(mine, theirs, strict=True)
                if (a := getattr(g, metric)) is not None and (b := getattr(h, metric))
            ]
            pairs = ([a for a, _ in aligned], [b for _, b in aligned])
            # Only the order matters to the trend: a quotient past the float range is inf.
            trend_of = [safe_ratio(a, b) for a, b in aligned]
        if len(current) < 3 or len(base) < 3:
            continue  # e.g. TTFT never defined: nothing to compare
        v = judge_metric(
            metric,
            current,
            base,
            tolerance=policy.tolerances[metric],
            alpha=policy.alpha_one / looks,
            drift=drift,
            final=final,
            trend_of=trend_of,
            pairs=pairs,
        )
        verdicts.append(_with_note(v, how))
    return verdicts


def _with_note(v: MetricVerdict, note: str) -> MetricVerdict:
    """``note`` (what was compared) before the verdict's own reason ("no spread: ..."), if any."""
    return MetricVerdict(**{**v.to_json(), "note": "; ".join(filter(None, (note, v.note)))})


def sequential(
    reference: Reference,
    looks: tuple[int, ...],
    policy: GatePolicy,
    extend: Callable[[int, int], tuple[list[Generation], list[Generation]]],
) -> tuple[list[Generation], list[Generation], list[MetricVerdict]]:
    """Sample up to each look in turn (``extend(count, start)`` draws more) and stop as soon as
    the verdict is clear: any REGRESSION, or every metric PASS / IMPROVEMENT.

    Each look tests at ``alpha_one / len(looks)`` (Bonferroni over the looks), so stopping at
    the first clear look keeps the comparison's error rate at ``alpha_one``.
    """
    mine: list[Generation] = []
    theirs: list[Generation] = []
    verdicts: list[MetricVerdict] = []
    for index, target in enumerate(looks):
        new_mine, new_theirs = extend(target - len(mine), len(mine))
        mine += new_mine
        theirs += new_theirs
        final = index == len(looks) - 1
        verdicts = _judge(reference, mine, theirs, policy, len(looks), final)
        clear = {Verdict.REGRESSION, Verdict.PASS, Verdict.IMPROVEMENT}
        if any(v.verdict == Verdict.REGRESSION for v in verdicts) or all(
            v.verdict in clear for v in verdicts
        ):
            break
    return mine, theirs, verdicts


def outcome(
    reference: Reference,
    verdicts: list[MetricVerdict],
    looks: tuple[int, ...],
    policy: GatePolicy,
    samples: int,
) -> dict[str, Any]:
    verdict = worst([v.verdict for v in verdicts]) if verdicts else Verdict.INCONCLUSIVE
    gate: dict[str, Any] = {
        "verdict": verdict,
        "mode": reference.mode,
        "against": reference.label,
        "samples": samples,
        "looks": list(looks),
        "comparisons": policy.comparisons,
        # Bonferroni over the looks makes each sequential test one p-value the session can
        # Holm-adjust with the others at the end.
        # An UNSTABLE metric is declared undecidable, so it does not enter the review either;
        # nor does a REFUSED one (no test ran: a baseline median of 0).
        "p_sequential": {
            v.metric: min(1.0, v.p_slowdown * len(looks))
            for v in verdicts
            if v.verdict not in (Verdict.UNSTABLE, Verdict.REFUSED)
        },
        "metrics": [v.to_json() for v in verdicts],
        "warnings": list(reference.warnings),
        "confirmation": None,
    }
    if verdict == Verdict.REFUSED:
        # Every reader of a REFUSED gate shows its reason: here the metrics' own.
        gate["reason"] = "; ".join(
            f"{v.metric}: {v.note}" for v in verdicts if v.verdict == Verdict.REFUSED
        )
    if reference.stored is not None:
        # What the metrics were compared with (the same first samples of each stored run), so
        # reports can plot both distributions; relative mode has reference_generations instead.
        metrics = sorted({m for run in reference.stored.runs for m in run["samples"]})
        gate["baseline_samples"] = {m: reference.stored.pooled(m, first=samples) for m in metrics}
    return gate


def run_benchmark(
    workload: Workload,
    handle: LLMHandle,
    *,
    name: str,
    nodeid: str,
    warmup: int,
    looks: tuple[int, ...],
    reference: Reference | None,
    policy: GatePolicy,
    max_error_rate: float,
    price: Price | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Warm up, sample (in looks when comparing) and attach the gate's outcome."""
    other = reference.handle if reference is not None else None
    tick = Ticker(progress, nodeid, name, looks[-1])
    sides = _Sides(
        handle, RequestErrors(max_error_rate), other, RequestErrors(max_error_rate), tick
    )
    for n in range(warmup):
        tick.warmup(n + 1, warmup)
        workload.run(handle, sides.errors)
        if other is not None:
            workload.run(other, sides.other_errors)
    gate: dict[str, Any] | None = None
    if reference is None or reference.refused is not None:
        sides.other = None
        mine, theirs = _interleaved(workload, sides, looks[0], 0)
        if reference is not None:
            gate = {
                "verdict": Verdict.REFUSED,
                "mode": reference.mode,
                "against": reference.label,
                "reason": reference.refused,
                "warnings": list(reference.warnings),
            }
    else:

        def extend(count: int, start: int) -> tuple[list[Generation], list[Generation]]:
            return _interleaved(workload, sides, count, start)

        mine, theirs, verdicts = sequential(reference, looks, policy, extend)
        gate = outcome(reference, verdicts, looks, policy, len(mine))
        if gate["verdict"] == Verdict.REGRESSION and policy.confirm:
            # A false alarm repeats with probability ~alpha, so a confirmed one is trustworthy.
            first = gate
            tick.rerun()
            mine, theirs, verdicts = sequential(reference, looks, policy, extend)
            gate = outcome(reference, verdicts, looks, policy, len(mine))
            gate["confirmation"] = {"first_verdict": first["verdict"], "first": first["metrics"]}
    return BenchResult(
        name=name,
        nodeid=nodeid,
        backend=handle.spec,
        backend_id=handle.id,
        params=workload.params(),
        runs=len(mine),
        warmup=warmup,
        generations=mine,
        gate=gate,
        reference=theirs,
        errors=sides.errors,
        reference_errors=sides.other_errors if sides.other is not None else None,
        price=price,
    )


def gate_message(gate: dict[str, Any]) -> str:
    """One actionable line per regressed (or improved) metric, e.g.
    ``TPOT regressed +18.0% (90% CI +12%..+25%, p=3.3e-05, 0.0004 adjusted for 6
    comparisons x 3 looks; tolerance 5%) vs baseline of 2026-11-20, commit abc1234; 3 run(s)
    pooled``.

    The p-value is Bonferroni over the sequential looks and the session's planned comparisons
    (Holm's first step) or, after the session-end review, Holm's own adjusted p-value.
    """
    holm = gate.get("p_holm_rejected", {})
    parts = []
    for data in gate["metrics"]:
        verdict = MetricVerdict(**data)
        if verdict.metric in holm:
            parts.append(verdict.describe(holm[verdict.metric], "Holm"))
        elif verdict.verdict == gate["verdict"]:
            regressed = verdict.verdict == Verdict.REGRESSION
            raw = verdict.p_slowdown if regressed else verdict.p_improvement
            looks, comparisons = len(gate["looks"]), gate["comparisons"]
            how = f"adjusted for {comparisons} comparisons x {looks} looks"
            parts.append(verdict.describe(min(1.0, raw * looks * comparisons), how))
    text = "; ".join(parts) + f" vs {gate['against']}"
    if gate.get("confirmation"):
        text += " (confirmed by a re-run)"
    return text
