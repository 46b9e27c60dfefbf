"""From a run history to what the nightly report shows: per benchmark + backend + metric, the
per-night medians, their steps, and the regressions of the last nights with their commits.

Pure: reads :class:`~pytest_llmperf.history.HistoryRun` documents, draws nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .baseline import bench_id
from .gate import Verdict
from .history import HistoryRun
from .stats import percentile
from .steps import MIN_CHANGE, MIN_SEGMENT, Step, detect_steps

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "TITLES",
    "Finding",
    "Group",
    "Series",
    "analyse",
    "findings",
]

#: Metrics followed over nights, in display order; "quality" (the judge's 0-100 score) last.
#: ``throughput_rps`` and ``output_tps`` are llm_load's.
METRICS = (
    "tpot_s",
    "ttft_s",
    "e2e_s",
    "decode_tps",
    "sec_per_token",
    "throughput_rps",
    "output_tps",
    "quality",
)
HIGHER_IS_BETTER = {"decode_tps": True, "throughput_rps": True, "output_tps": True, "quality": True}
TITLES = {
    "tpot_s": "TPOT",
    "ttft_s": "TTFT",
    "e2e_s": "end-to-end",
    "decode_tps": "decode tok/s",
    "sec_per_token": "seconds per token",
    "throughput_rps": "throughput",
    "output_tps": "output tok/s",
    "quality": "quality %",
}


@dataclass
class Series:
    """One metric of one benchmark + backend: ``values[i]`` is the median on night ``nights[i]``
    (an index into the runs); ``steps`` index into ``values``."""

    metric: str
    nights: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    #: Nights whose gate said REGRESSION for this metric.
    gate_regressions: list[int] = field(default_factory=list)
    note: str = ""

    def worse(self, step: Step) -> bool:
        return (step.change < 0) if HIGHER_IS_BETTER.get(self.metric) else (step.change > 0)


@dataclass
class Group:
    """A benchmark + backend: one chart, a panel per metric."""

    bench: str
    backend_id: str
    series: dict[str, Series] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.bench} [{self.backend_id}]"


@dataclass(frozen=True)
class Finding:
    """A row of the regressions and steps tables."""

    night: int
    created: str
    commit: str
    bench: str
    backend_id: str
    metric: str
    kind: str  # "gate", "quality gate", "step"
    detail: str
    worse: bool


def _median(values: Sequence[float]) -> float:
    # Not statistics.median: the mean of two middle values near 1e308 overflows to inf.
    return percentile(sorted(values), 50)


def _median_of(result: dict[str, Any], metric: str) -> float | None:
    stat = result.get("stats", {}).get(metric)
    value = stat.get("median") if isinstance(stat, dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool):
        samples = [v for v in result.get("samples", {}).get(metric) or [] if v is not None]
        value = _median(samples) if samples else None
    return float(value) if value is not None and math.isfinite(value) else None


def _collect(runs: Sequence[HistoryRun]) -> dict[tuple[str, str], Group]:
    groups: dict[tuple[str, str], Group] = {}
    by_nodeid: dict[tuple[str, str], set[str]] = {}

    def series(bench: str, backend_id: str, metric: str) -> Series:
        group = groups.setdefault((bench, backend_id), Group(bench, backend_id))
        return group.series.setdefault(metric, Series(metric))

    for night, run in enumerate(runs):
        per_night: dict[tuple[str, str, str], list[float]] = {}
        for result in run.document.get("results", []):
            bench = bench_id(result["nodeid"], result.get("name") or "")
            by_nodeid.setdefault((result["nodeid"], result["backend_id"]), set()).add(bench)
            for metric in METRICS[:-1]:
                value = _median_of(result, metric)
                if value is not None:
                    per_night.setdefault((bench, result["backend_id"], metric), []).append(value)
            gate = result.get("gate") or {}
            if gate.get("verdict") == Verdict.REGRESSION:
                for m in gate.get("metrics", []):
                    if m.get("verdict") == Verdict.REGRESSION and m.get("metric") in METRICS:
                        s = series(bench, result["backend_id"], m["metric"])
                        s.gate_regressions.append(night)
        for entry in run.document.get("quality", []):
            score = entry.get("score")
            if isinstance(score, int | float) and not isinstance(score, bool):
                key = (str(entry.get("nodeid")), str(entry.get("backend_id") or "-"))
                benches = by_nodeid.get(key, set())
                # A judged test that also benchmarked gets its score on the same chart.
                bench = next(iter(benches)) if len(benches) == 1 else key[0]
                per_night.setdefault((bench, key[1], "quality"), []).append(float(score))
        for (bench, backend_id, metric), values in per_night.items():
            s = series(bench, backend_id, metric)
            s.nights.append(night)
            s.values.append(_median(values))
    return groups


def analyse(
    runs: Sequence[HistoryRun],
    *,
    min_change: float = MIN_CHANGE,
    min_segment: int = MIN_SEGMENT,
) -> list[Group]:
    """Every benchmark + backend with its series and their steps, sorted by name."""
    groups = _collect(runs)
    for group in groups.values():
        for s in group.series.values():
            relative = s.metric != "quality"
            if not s.values:
                continue
            if relative and min(s.values) <= 0:
                s.note = "a median of zero or less: not analysed for steps"
                continue
            s.steps = detect_steps(
                s.values, relative=relative, min_change=min_change, min_segment=min_segment
            )
    for group in groups.values():
        group.series = {m: group.series[m] for m in METRICS if m in group.series}
    return [groups[key] for key in sorted(groups)]


def _change(metric: str, step: Step) -> str:
    if metric == "quality":
        return f"{step.change:+.1f} points ({step.before:.1f} -> {step.after:.1f})"
    scale, unit = (1e3, " ms") if metric.endswith("_s") else (1.0, "")
    return (
        f"{step.change:+.1%} (median {step.before * scale:.4g}{unit} -> "
        f"{step.after * scale:.4g}{unit})"
    )


def _gate_detail(result: dict[str, Any], metric: str) -> str:
    for m in (result.get("gate") or {}).get("metrics", []):
        if m.get("metric") == metric and isinstance(m.get("ratio"), int | float):
            tol = m.get("effective_tolerance")
            p = m.get("p_slowdown")
            extra = f", tolerance {tol:.0%}" if isinstance(tol, int | float) else ""
            extra += f", p={p:.2g}" if isinstance(p, int | float) else ""
            return f"gate REGRESSION {m['ratio'] - 1:+.1%}{extra}"
    return "gate REGRESSION"


def findings(
    runs: Sequence[HistoryRun], groups: Sequence[Group]
) -> tuple[list[Finding], list[Finding]]:
    """(every gate and quality-gate regression, every step), newest first."""

    def make(
        night: int, bench: str, backend: str, metric: str, kind: str, detail: str, worse: bool
    ) -> Finding:
        run = runs[night]
        return Finding(
            night,
            run.created.strftime("%Y-%m-%d %H:%M"),
            run.commit,
            bench,
            backend,
            metric,
            kind,
            detail,
            worse,
        )

    gates: list[Finding] = []
    for night, run in enumerate(runs):
        for result in run.document.get("results", []):
            gate = result.get("gate") or {}
            if gate.get("verdict") != Verdict.REGRESSION:
                continue
            bench = bench_id(result["nodeid"], result.get("name") or "")
            metrics = [
                m.get("metric")
                for m in gate.get("metrics", [])
                if m.get("verdict") == Verdict.REGRESSION
            ] or ["-"]
            for metric in metrics:
                detail = _gate_detail(result, str(metric))
                gates.append(
                    make(night, bench, result["backend_id"], str(metric), "gate", detail, True)
                )
        for entry in run.document.get("quality_gate", []):
            if entry.get("verdict") == "REGRESSION":
                diff = entry.get("mean_diff")
                detail = "quality gate REGRESSION"
                if isinstance(diff, int | float):
                    detail += f" {diff:+.1f} points"
                gates.append(
                    make(
                        night,
                        "(judged tests)",
                        str(entry.get("backend_id") or "-"),
                        "quality",
                        "quality gate",
                        detail,
                        True,
                    )
                )
    steps: list[Finding] = []
    for group in groups:
        for s in group.series.values():
            for step in s.steps:
                night = s.nights[step.index]
                steps.append(
                    make(
                        night,
                        group.bench,
                        group.backend_id,
                        s.metric,
                        "step",
                        f"step {_change(s.metric, step)}",
                        s.worse(step),
                    )
                )
    key = lambda f: (-f.night, f.bench, f.backend_id, f.metric)  # noqa: E731
    return sorted(gates, key=key), sorted(steps, key=key)
