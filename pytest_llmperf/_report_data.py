"""From a results document to what the HTML and Markdown reports show: one row per test and
backend with its baseline deltas, the verdicts worth reading first, and per-backend points.

Every figure here is read from the document (see :mod:`.results`); nothing is measured again.
A metric the gate did not decide still gets its delta and a 90% bootstrap CI against the same
baseline samples, but no verdict: only the gate's verdicts pass or fail a run.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from .compare import gate_message
from .gate import SEVERITY, Verdict
from .quality_gate import QualityComparison
from .stats import median_ratio_ci

__all__ = [
    "COLUMNS",
    "ORDER",
    "Cell",
    "Column",
    "Finding",
    "Point",
    "Row",
    "backend_points",
    "baseline_samples",
    "bench_label",
    "findings",
    "output_problems",
    "prompt_text",
    "quality_comparison",
    "rows",
    "verdict_counts",
]

#: Verdicts in the order a reader should see them: worst first, as the gate ranks them.
ORDER = SEVERITY


@dataclass(frozen=True)
class Column:
    header: str
    metric: str  # a key of a result's stats, or "quality"
    unit: str
    scale: float
    digits: int


COLUMNS = (
    Column("TTFT", "ttft_s", "ms", 1e3, 1),
    Column("TPOT", "tpot_s", "ms", 1e3, 2),
    Column("Decode", "decode_tps", "tok/s", 1.0, 1),
    Column("Seconds/token", "sec_per_token", "s", 1.0, 4),
    Column("Quality", "quality", "%", 1.0, 1),
    Column("Cost", "cost_usd", "$/1k req", 1e3, 4),
)


@dataclass(frozen=True)
class Cell:
    value: float | None
    text: str  # "n/a" when undefined
    delta: str = ""  # "+4.1%" against the baseline, "+2.0 pts" for quality
    ci: str = ""  # "-2%..+9%" (90%)
    verdict: str = ""  # the gate's verdict on this metric; "" when it was not gated
    note: str = ""  # what the delta was computed from


@dataclass(frozen=True)
class Row:
    test: str
    nodeid: str
    backend: str
    backend_id: str
    runs: int | None
    cells: tuple[Cell, ...]
    verdict: str  # the benchmark's gate verdict; "" when not compared
    against: str


@dataclass(frozen=True)
class Finding:
    verdict: str
    kind: str  # "latency" | "quality"
    where: str
    message: str


@dataclass(frozen=True)
class Point:
    backend_id: str
    sec_per_token: float | None
    quality: float | None
    n_quality: int


def bench_label(nodeid: str, name: str = "", backend_id: str = "", backend: str = "") -> str:
    """``test_a`` for ``tests/test_x.py::test_a[fake:m]``: the backend has its own column."""
    label = nodeid.split("::", 1)[-1]
    head, bracket, rest = label.partition("[")
    if bracket and rest.removesuffix("]") in {backend_id, backend}:
        label = head
    return f"{label}:{name}" if name and name != head else label


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f}%"


def _ci(low: float, high: float) -> str:
    return f"{(low - 1) * 100:+.0f}%..{(high - 1) * 100:+.0f}%"


def baseline_samples(result: dict[str, Any], metric: str) -> list[float]:
    """What ``metric`` was (or would have been) compared with: the stored samples, or the
    reference backend's generations in relative mode."""
    gate = result.get("gate") or {}
    stored = gate.get("baseline_samples")
    if stored is not None:
        return [v for v in map(_finite, stored.get(metric, [])) if v is not None]
    values = (_finite(g.get(metric)) for g in result.get("reference_generations", []))
    return [v for v in values if v is not None]


def _metric_cell(result: dict[str, Any], column: Column) -> Cell:
    median = _finite((result["stats"].get(column.metric) or {}).get("median"))
    if median is None:
        return Cell(None, "n/a")
    text = f"{median * column.scale:.{column.digits}f}"
    gated = {m["metric"]: m for m in (result.get("gate") or {}).get("metrics", [])}
    if column.metric in gated:
        m = gated[column.metric]
        # Any of these may be null: a value that was not finite is written so (see results).
        ratio, low, high, tolerance = (
            _finite(m.get(k)) for k in ("ratio", "ci_low", "ci_high", "effective_tolerance")
        )
        shown = "n/a" if tolerance is None else f"{tolerance:.0%}"
        note = f"gated: tolerance {shown}, n={m.get('n_current')} vs {m.get('n_baseline')}"
        return Cell(
            median,
            text,
            "n/a" if ratio is None else _pct(ratio),
            "" if low is None or high is None else _ci(low, high),
            str(m.get("verdict") or ""),
            note,
        )
    current = [v for v in map(_finite, result["samples"].get(column.metric, [])) if v is not None]
    base = baseline_samples(result, column.metric)
    if not current or not base:
        return Cell(median, text)
    ratio, low, high = median_ratio_ci(current, base)
    note = f"not gated: medians of {len(current)} vs {len(base)} samples"
    return Cell(median, text, _pct(ratio), _ci(low, high), "", note)


def _quality_cell(
    entries: Sequence[dict[str, Any]], gate: dict[str, Any] | None, nodeid: str
) -> Cell:
    scores = [s for s in (_finite(e.get("score")) for e in entries) if s is not None]
    if not scores:
        return Cell(None, "n/a")
    mean = statistics.fmean(scores)
    cell = Cell(mean, f"{mean:.1f}", note=f"mean of {len(scores)} judge verdict(s)")
    pairs = [
        p
        for p in (gate or {}).get("pairs") or []
        if str(p["id"]).rsplit("#", 1)[0] == nodeid
        and _finite(p.get("current")) is not None
        and _finite(p.get("baseline")) is not None
    ]
    if gate is None or not pairs:
        return cell
    diff = statistics.fmean(p["current"] - p["baseline"] for p in pairs)
    note = f"{len(pairs)} prompt(s) paired with the baseline; verdict per backend"
    return Cell(mean, cell.text, f"{diff:+.1f} pts", "", gate["verdict"], note)


def rows(document: dict[str, Any]) -> list[Row]:
    """One row per benchmark (and per judged test without one), sorted by test then backend."""
    quality: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in document.get("quality", []):
        quality.setdefault((entry["nodeid"], entry["backend"] or ""), []).append(entry)
    gates = {g["backend"]: g for g in document.get("quality_gate", [])}
    out: list[Row] = []
    seen: set[tuple[str, str]] = set()
    for r in document.get("results", []):
        key = (r["nodeid"], r["backend"])
        seen.add(key)
        cells = tuple(
            _quality_cell(quality.get(key, []), gates.get(r["backend"]), r["nodeid"])
            if c.metric == "quality"
            else _metric_cell(r, c)
            for c in COLUMNS
        )
        gate = r.get("gate") or {}
        label = bench_label(r["nodeid"], r["name"], r["backend_id"], r["backend"])
        out.append(
            Row(
                label,
                r["nodeid"],
                r["backend"],
                r["backend_id"],
                r["runs"],
                cells,
                gate.get("verdict", ""),
                gate.get("against", ""),
            )
        )
    for (nodeid, backend), entries in quality.items():
        if (nodeid, backend) in seen:
            continue
        backend_id = entries[0]["backend_id"] or ""
        cells = tuple(
            _quality_cell(entries, gates.get(backend), nodeid)
            if c.metric == "quality"
            else Cell(None, "n/a")
            for c in COLUMNS
        )
        label = bench_label(nodeid, "", backend_id, backend)
        out.append(Row(label, nodeid, backend, backend_id, None, cells, "", ""))
    return sorted(out, key=lambda row: (row.nodeid, row.test, row.backend))


def _latency_message(result: dict[str, Any]) -> str:
    gate = result["gate"]
    verdict = gate["verdict"]
    if verdict in (Verdict.REGRESSION, Verdict.IMPROVEMENT):
        holm = (gate.get("p_holm_rejected") or {}).values()
        if all(_complete(m) for m in gate.get("metrics", [])) and all(
            _finite(p) is not None for p in holm
        ):
            return gate_message(gate)
        return f"{verdict} vs {gate.get('against')} (some of its figures are not finite numbers)"
    if verdict == Verdict.REFUSED:
        return f"not compared: {gate.get('reason')}"
    if verdict == Verdict.UNSTABLE:
        return (
            "the samples drift monotonically within the run (Kendall trend); neither passed "
            "nor failed"
        )
    need = max([m.get("runs_to_settle") or 0 for m in gate.get("metrics", [])] or [0])
    return (
        f"after {gate.get('samples')} samples; about {need} per side would likely settle it "
        f"(vs {gate.get('against')})"
    )


def _complete(metric: dict[str, Any]) -> bool:
    """Whether every figure the gate's message prints is a number (not a null written for a
    NaN or an infinity)."""
    keys = (
        *("ratio", "ci_low", "ci_high", "tolerance", "effective_tolerance"),
        *("p_slowdown", "p_improvement"),
    )
    return all(_finite(metric.get(k)) is not None for k in keys)


def findings(document: dict[str, Any]) -> list[Finding]:
    """Every verdict other than PASS, regressions first."""
    found: list[Finding] = []
    for r in document.get("results", []):
        gate = r.get("gate")
        if not gate or gate["verdict"] == Verdict.PASS:
            continue
        label = bench_label(r["nodeid"], r["name"], r["backend_id"], r["backend"])
        where = f"{label} [{r['backend_id']}]"
        found.append(Finding(gate["verdict"], "latency", where, _latency_message(r)))
    for comparison in document.get("quality_gate", []):
        if comparison["verdict"] == Verdict.PASS:
            continue
        line = quality_comparison(comparison).describe()
        head = f"{comparison['verdict']} {comparison['backend_id']}: "
        found.append(
            Finding(
                comparison["verdict"],
                "quality",
                f"quality of {comparison['backend_id']}",
                line.removeprefix(head),
            )
        )
    rank = {v: i for i, v in enumerate(ORDER)}
    return sorted(found, key=lambda f: (rank.get(f.verdict, len(ORDER)), f.kind, f.where))


def verdict_counts(document: dict[str, Any]) -> dict[str, dict[str, int]]:
    """``{"latency": {"PASS": 3, ...}, "quality": {...}}`` in :data:`ORDER`."""
    latency = Counter(r["gate"]["verdict"] for r in document.get("results", []) if r.get("gate"))
    quality = Counter(c["verdict"] for c in document.get("quality_gate", []))
    rank = {v: i for i, v in enumerate(ORDER)}
    return {
        kind: dict(sorted(counts.items(), key=lambda kv: rank.get(kv[0], len(ORDER))))
        for kind, counts in (("latency", latency), ("quality", quality))
    }


def backend_points(document: dict[str, Any]) -> list[Point]:
    """Per backend: median seconds per token over all its generations, mean quality %."""
    times: dict[str, list[float]] = {}
    scores: dict[str, list[float]] = {}
    ids: dict[str, str] = {}
    for r in document.get("results", []):
        ids[r["backend"]] = r["backend_id"]
        values = (_finite(v) for v in r["samples"].get("sec_per_token", []))
        times.setdefault(r["backend"], []).extend(v for v in values if v is not None)
    for entry in document.get("quality", []):
        if entry["backend"] is None or (score := _finite(entry.get("score"))) is None:
            continue
        ids.setdefault(entry["backend"], entry["backend_id"])
        scores.setdefault(entry["backend"], []).append(score)
    return [
        Point(
            ids[spec],
            statistics.median(times[spec]) if times.get(spec) else None,
            statistics.fmean(scores[spec]) if scores.get(spec) else None,
            len(scores.get(spec, [])),
        )
        for spec in sorted(ids)
    ]


def quality_comparison(entry: Mapping[str, Any]) -> QualityComparison:
    """A ``quality_gate`` entry as its dataclass; keys it does not know (a merged document's
    ``source``) are left out."""
    known = {f.name for f in fields(QualityComparison)}
    return QualityComparison(**{k: v for k, v in entry.items() if k in known})


def output_problems(results: Sequence[dict[str, Any]]) -> list[str]:
    """One line per benchmark or load point whose generations came back empty, or short of
    max_tokens under ignore_eos: a row of numbers that measured less than it says."""
    lines = []
    for r in sorted(results, key=lambda r: (r["nodeid"], r["name"], r["backend"])):
        counts = r.get("load") or r
        empty, short = counts.get("empty") or 0, counts.get("short") or 0
        if not (empty or short):
            continue
        total = counts.get("succeeded") if r.get("load") else len(r.get("generations") or ())
        parts = [f"{empty} empty"] * bool(empty) + [f"{short} short of max_tokens"] * bool(short)
        label = bench_label(r["nodeid"], r["name"], r["backend_id"], r["backend"])
        lines.append(f"{label} [{r['backend_id']}]: {', '.join(parts)} of {total} generations")
    return lines


def prompt_text(prompt: Any) -> str:
    """A workload's prompt as text: chat messages one per line, ``role: content``; none: ""."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n".join(
            f"{m.get('role', '?')}: {m.get('content', '')}" if isinstance(m, dict) else str(m)
            for m in prompt
        )
    return str(prompt)
