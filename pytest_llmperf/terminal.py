"""The end-of-run summary: a table (one row per benchmark and backend, readable at 100
columns), the gate's verdicts with their reasons, and notes."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._load_table import format_load_table
from ._report_data import output_problems
from ._table import render
from .compare import gate_message
from .gate import Verdict, percent_change
from .quality import write_quality_summary
from .quality_gate import format_quality_gate

if TYPE_CHECKING:
    from .session import LLMPerfSession

__all__ = ["error_lines", "format_table", "write_summary"]

_COLUMNS = (
    # header, metric, statistic, scale, format
    ("TTFT ms", "ttft_s", "median", 1e3, "{:.1f}"),
    ("TPOT ms", "tpot_s", "median", 1e3, "{:.2f}"),
    ("tok/s", "decode_tps", "median", 1.0, "{:.1f}"),
    ("s/token", "sec_per_token", "median", 1.0, "{:.4f}"),
    ("tokens", "output_tokens", "median", 1.0, "{:.0f}"),
)
#: Shown only when some backend has a price (API backends).
_COST_COLUMN = ("$/1k req", "cost_usd", "median", 1e3, "{:.4f}")


def _cell(stats: dict[str, Any], metric: str, stat: str, scale: float, fmt: str) -> str:
    value = stats.get(metric, {}).get(stat)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(float(value) * scale)


def _label(result: dict[str, Any]) -> str:
    nodeid: str = result["nodeid"]
    test = nodeid.split("::", 1)[-1].split("[", 1)[0]  # the backend has its own column
    if result["name"] and result["name"] != test:
        test = f"{test}:{result['name']}"
    return test


def format_table(results: Sequence[dict[str, Any]], width: int = 100) -> list[str]:
    """Rows sorted by test then backend; long test and backend names are shortened."""
    if not results:
        return []
    gated = any(r.get("gate") for r in results)
    columns: tuple[tuple[str, str, str, float, str], ...] = _COLUMNS
    if any("cost_usd" in r["stats"] for r in results):
        columns = (*columns, _COST_COLUMN)
    rows = [
        [_label(r), r["backend_id"], str(r["runs"])]
        + [_cell(r["stats"], m, s, k, f) for _, m, s, k, f in columns]
        + ([_verdict_cell(r.get("gate"))] if gated else [])
        for r in sorted(results, key=lambda r: (r["nodeid"], r["name"], r["backend"]))
    ]
    header = ["test", "backend", "runs"] + [c[0] for c in columns] + (["verdict"] if gated else [])
    left = {0, 1, len(header) - 1} if gated else {0, 1}
    return render(header, rows, width, left)


def _verdict_cell(gate: dict[str, Any] | None) -> str:
    if not gate:
        return "-"
    metrics = [m for m in gate.get("metrics", []) if m["metric"] != "ttft_s"]
    if gate["verdict"] == Verdict.REFUSED or not metrics:
        return str(gate["verdict"])
    # The ratio is null where it is undefined (a REFUSED or empty side read back from a file).
    return f"{gate['verdict']} {percent_change(metrics[0]['ratio'], '.0f')}"


def _gate_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for r in sorted(results, key=lambda r: (r["nodeid"], r["name"])):
        gate = r.get("gate")
        if not gate or gate["verdict"] == Verdict.PASS:
            continue
        where = f"{_label(r)} [{r['backend_id']}]"
        verdict = gate["verdict"]
        if verdict in (Verdict.REGRESSION, Verdict.IMPROVEMENT):
            lines.append(f"{verdict} {where}: {gate_message(gate)}")
        elif verdict == Verdict.REFUSED:
            lines.append(f"REFUSED {where}: {gate['reason']}")
        elif verdict == Verdict.UNSTABLE:
            lines.append(
                f"UNSTABLE {where}: the samples drift monotonically within the run "
                "(Kendall trend); neither passed nor failed. Check for thermal or noisy neighbours."
            )
        else:
            need = (
                max((m["runs_to_settle"] or 0) for m in gate["metrics"]) if gate["metrics"] else 0
            )
            lines.append(
                f"INCONCLUSIVE {where} after {gate['samples']} samples: about {need} per side "
                "would likely settle it (--llm-looks / --llm-runs)"
            )
    return lines


def _detectable(results: Sequence[dict[str, Any]]) -> list[str]:
    """The smallest regression each stored-baseline comparison could honestly detect."""
    seen: dict[str, str] = {}
    for r in results:
        gate = r.get("gate") or {}
        for m in gate.get("metrics", []):
            if gate.get("mode") == "stored" and m["effective_tolerance"] > m["tolerance"]:
                seen.setdefault(
                    f"{r['backend_id']} {m['metric']}",
                    f"+{m['effective_tolerance']:.0%} ({m['note']})",
                )
    return [f"smallest detectable slowdown, {k}: {v}" for k, v in sorted(seen.items())]


def error_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """One line per benchmark whose requests failed transiently (not part of any sample)."""
    lines = []
    for r in sorted(results, key=lambda r: (r["nodeid"], r["name"], r["backend"])):
        for side, errors in (("", r.get("errors")), (" reference", r.get("reference_errors"))):
            if not errors or not errors["failed"]:
                continue
            kinds = ", ".join(f"{kind} x{n}" for kind, n in errors["by_kind"].items())
            line = (
                f"{_label(r)} [{r['backend_id']}{side}]: {errors['failed']} of "
                f"{errors['attempts']} requests failed ({kinds})"
            )
            if errors["retried"]:
                line += f"; {errors['retried']} retried sample(s) kept out of the statistics"
            lines.append(line)
    return lines


def write_summary(tr: Any, run: LLMPerfSession, *, width: int) -> None:
    """Write the llmperf sections of pytest's terminal summary."""
    latency = [r for r in run.results if not r.get("load")]
    if latency:
        tr.write_sep("-", "llmperf: latency (medians over timed runs)")
        for line in format_table(latency, width=width):
            tr.write_line(line)
    if len(latency) < len(run.results):
        tr.write_sep("-", "llmperf: load (ms; goodput under --llm-slo; achieved concurrency)")
        for line in format_load_table(run.results, width=width):
            tr.write_line(line)
    if run.results:
        for rec in run.backend_records:
            worker = "" if rec["worker"] == "main" else f" on {rec['worker']}"
            role = f" ({rec['role']})" if rec.get("role", "candidate") != "candidate" else ""
            tr.write_line(f"loaded {rec['id']}{role} in {rec['load_s']:.2f} s{worker}")
        failures = error_lines(run.results)
        if failures:
            tr.write_sep("-", "llmperf: request errors (counted, never sampled)", yellow=True)
            for line in failures:
                tr.write_line(line)
        if output := output_problems(run.results):
            title = "llmperf: empty or short generations (in the statistics)"
            tr.write_sep("-", title, yellow=True)
            for line in output:
                tr.write_line(line)
    write_quality_summary(tr, run, width=width)
    if run.quality_gate:
        counts = Counter(c["verdict"] for c in run.quality_gate)
        tr.write_sep(
            "-",
            "llmperf: quality gate " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())),
        )
        for line in format_quality_gate(run.quality_gate, run.settings.fail_on):
            tr.write_line(line, red="REGRESSION" in line.split(":", 1)[0])
    gated = [r for r in run.results if r.get("gate")]
    if gated:
        counts = Counter(r["gate"]["verdict"] for r in gated)
        tr.write_sep(
            "-", "llmperf: gate " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        )
        for line in [*_gate_lines(gated), *_detectable(gated)]:
            tr.write_line(line, red=line.startswith(Verdict.REGRESSION))
    for line in run.regressions_after_review:
        tr.write_line(f"REGRESSION (Holm step-down at session end) {line}", red=True)
    for line in run.notes:
        tr.write_line(f"llmperf: {line}")
    if run.load_errors:
        tr.write_sep("-", "llmperf: backends that could not start", red=True)
        for spec, message in run.load_errors.items():
            tr.write_line(f"{spec}: {message}")
    for path in run.written:
        tr.write_line(f"llmperf: results written to {path}")
    for line in run.errors:
        tr.write_line(f"llmperf: {line}", red=True)
