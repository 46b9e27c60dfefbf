"""``--llm-markdown``: a compact summary for ``$GITHUB_STEP_SUMMARY`` or a pull-request comment.

Verdict counts, every regression with its numbers, then a small table (medians and the change
against the baseline). GitHub renders inline HTML in Markdown, so every piece of text from the
run (test ids, backend specs, messages) is escaped: ``<`` and ``&`` as entities, Markdown's
punctuation with a backslash, ``|`` so it cannot split a table cell, newlines as spaces.
"""

from __future__ import annotations

import html
import re
from typing import Any

from ._report_data import COLUMNS, Row, findings, output_problems, rows, verdict_counts
from .gate import Verdict

__all__ = ["MAX_FINDINGS", "MAX_ROWS", "escape", "render_markdown"]

#: A PR comment holds 65,536 characters: long runs are cut, and say so.
MAX_ROWS = 40
MAX_FINDINGS = 30
# What can start inline markup anywhere in a line; escaped text never begins a line, so the
# block-level markers (#, -, +, >, 1.) need no escape.
_PUNCTUATION = re.compile(r"([\\`*_\[\]|~$])")  # $: GitHub renders $...$ as math
_SHOWN = ("ttft_s", "tpot_s", "decode_tps", "sec_per_token", "quality")


def escape(text: object) -> str:
    """``text`` as literal Markdown: no markup, no HTML, safe inside a table cell."""
    flat = " ".join(str(text).split())
    return html.escape(_PUNCTUATION.sub(r"\\\1", flat), quote=False)


def _counts(document: dict[str, Any]) -> list[str]:
    lines = []
    for kind, counts in verdict_counts(document).items():
        if counts:
            shown = ", ".join(
                f"**{n} {v}**" if v == Verdict.REGRESSION else f"{n} {v}" for v, n in counts.items()
            )
            lines.append(f"- {kind} gate: {shown}")
    return lines or ["- nothing was compared with a baseline"]


def _marks(document: dict[str, Any]) -> list[str]:
    """What a reader must know before the numbers: a partial run, figures that are missing."""
    lines = []
    if document.get("interrupted"):
        lines.append("- **interrupted**: partial results, only the tests that finished")
    nonfinite = document.get("nonfinite") or {}
    if nonfinite:
        lines.append(
            f"- {len(nonfinite)} value(s) were not finite numbers: shown as n/a "
            "(`nonfinite` in the JSON says where)"
        )
    problems = output_problems(document.get("results") or [])
    if problems:
        lines.append("- empty or short generations (counted in the statistics):")
        lines += [f"  - {escape(line)}" for line in problems]
    return lines


def _cell(row: Row, metric: str) -> str:
    index = next(i for i, c in enumerate(COLUMNS) if c.metric == metric)
    cell = row.cells[index]
    if cell.value is None:
        return "n/a"
    text = escape(f"{cell.text} ({cell.delta})" if cell.delta else cell.text)
    return f"**{text}**" if cell.verdict == Verdict.REGRESSION else text


def _table(table_rows: list[Row]) -> list[str]:
    columns = [c for c in COLUMNS if c.metric in _SHOWN]
    header = ["Test", "Backend", *(f"{c.header} {c.unit}" for c in columns), "Verdict"]
    lines = [
        "| " + " | ".join(escape(h) for h in header) + " |",
        "|" + "|".join([" --- ", " --- ", *(" ---: " for _ in columns), " --- "]) + "|",
    ]
    for row in table_rows[:MAX_ROWS]:
        verdict = row.verdict or "-"
        if verdict == Verdict.REGRESSION:
            verdict = "**REGRESSION**"
        cells = [escape(row.test), escape(row.backend_id or "-")]
        cells += [_cell(row, c.metric) for c in columns]
        lines.append("| " + " | ".join([*cells, verdict]) + " |")
    if len(table_rows) > MAX_ROWS:
        lines.append(f"\n{len(table_rows) - MAX_ROWS} more row(s) in the HTML or JSON report.")
    return lines


def render_markdown(document: dict[str, Any]) -> str:
    """The summary for one (already redacted) results document."""
    env = document.get("environment") or {}
    commit = str((env.get("commit_info") or {}).get("id") or "unknown")[:12]
    out = [
        "## pytest-llmperf results",
        "",
        escape(
            f"{document.get('created', '')} · commit {commit} · {env.get('cpu_model', '?')} · "
            f"Python {env.get('python', '?')}"
        ),
        "",
        *_marks(document),
        *_counts(document),
        "",
    ]
    found = findings(document)
    regressions = [f for f in found if f.verdict == Verdict.REGRESSION]
    others = [f for f in found if f.verdict != Verdict.REGRESSION]
    for title, group in (("Regressions", regressions), ("Other verdicts", others)):
        if not group:
            continue
        out += [f"### {title}", ""]
        for f in group[:MAX_FINDINGS]:
            out.append(f"- **{f.verdict}** {escape(f.where)} ({f.kind}): {escape(f.message)}")
        if len(group) > MAX_FINDINGS:
            out.append(f"- … and {len(group) - MAX_FINDINGS} more")
        out.append("")
    errors = document.get("backend_errors") or {}
    if errors:
        out += ["### Backends that could not start", ""]
        out += [f"- {escape(spec)}: {escape(message)}" for spec, message in errors.items()]
        out.append("")
    table_rows = rows(document)
    if table_rows:
        out += ["### Summary (medians; change against the baseline)", "", *_table(table_rows)]
    return "\n".join(out).rstrip("\n")
