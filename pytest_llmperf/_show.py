"""``llmperf show FILE``: a results document as the end-of-run terminal summary prints it."""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path
from typing import Any

from .compare import gate_message
from .gate import Verdict
from .history import run_commits
from .merge import machine_label
from .quality import format_quality_table
from .quality_gate import format_quality_gate
from .terminal import error_lines, format_table

__all__ = ["show_lines"]


def _sources(document: dict[str, Any]) -> list[str]:
    sources = document.get("sources")
    if not sources:
        env = document.get("environment", {})
        command = shlex.join(str(a) for a in document.get("command", []))
        return [
            f"machine: {machine_label(env)}, {env.get('cpu_model', '?')}",
            f"command: {command}",
        ]
    lines = [f"merged from {len(sources)} run(s):"]
    for i, s in enumerate(sources):
        lines.append(f"  [{i}] {s.get('file')}: {s.get('machine')}, created {s.get('created')}")
    return lines


def _gate_line(result: dict[str, Any]) -> str | None:
    gate = result.get("gate") or {}
    verdict = gate.get("verdict")
    if verdict in (None, Verdict.PASS):
        return None
    where = f"{result['nodeid']}{'::' + result['name'] if result.get('name') else ''}"
    where += f" [{result['backend_id']}]"
    if verdict == Verdict.REFUSED:
        return f"REFUSED {where}: {gate.get('reason', '')}"
    try:
        return f"{verdict} {where}: {gate_message(gate)}"
    except (KeyError, TypeError):  # a hand-made document with a bare verdict
        return f"{verdict} {where}"


def show_lines(document: dict[str, Any], path: Path, width: int) -> list[str]:
    commits = ", ".join(c[:12] for c in run_commits(document)) or "none recorded"
    lines = [f"{path}: created {document['created']}, commit {commits}", *_sources(document)]
    results = document.get("results", [])
    if results:
        lines += ["", *format_table(results, width=width)]
        lines += error_lines(results)
        gated = Counter((r.get("gate") or {}).get("verdict") for r in results if r.get("gate"))
        if gated:
            lines += ["", "gate: " + ", ".join(f"{n} {v}" for v, n in sorted(gated.items()))]
            lines += [line for r in results if (line := _gate_line(r))]
    else:
        lines.append("no latency results")
    # A verdict written without repeats' spread (by hand, or another version) still has a row.
    quality = [
        {**e, "spread": e.get("spread") or {"sd": None}} for e in document.get("quality", [])
    ]
    if quality:
        lines += ["", "quality 0-100:", *format_quality_table(quality, results, width=width)]
    comparisons = [
        {k: v for k, v in c.items() if k != "source"} for c in document.get("quality_gate", [])
    ]
    if comparisons:
        fail_on = str((document.get("settings") or {}).get("fail_on", "both"))
        try:
            described = format_quality_gate(comparisons, fail_on)
        except TypeError:  # written by another version: the verdicts at least
            described = [f"{c.get('verdict')} {c.get('backend_id')}" for c in comparisons]
        lines += ["", "quality gate:", *described]
    for spec, message in (document.get("backend_errors") or {}).items():
        lines.append(f"backend could not start: {spec}: {message}")
    return lines
