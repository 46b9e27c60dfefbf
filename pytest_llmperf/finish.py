"""End of a run, on the controller: multiplicity review, the quality gate, baseline saving,
the output files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .baseline import bench_id
from .benchmark_json import to_benchmark_json
from .compare import gate_message
from .environment import describe_environment
from .errors import JudgeError
from .gate import Verdict, review
from .history import append_run
from .judge import JUDGE_PROMPT_VERSION
from .quality import rejudger
from .quality_gate import REGRESSION as QUALITY_REGRESSION
from .quality_gate import Rejudge, compare_backend
from .redact import redact
from .report_html import render_html
from .report_markdown import render_markdown
from .results import build_document, write_text_atomic

if TYPE_CHECKING:
    from .session import LLMPerfSession

__all__ = ["finish_run"]


def finish_run(run: LLMPerfSession, session: pytest.Session) -> None:
    _review(run, session)
    _quality_gate(run, session)
    if run.settings.save_baseline:
        try:
            run.notes += run.save_baselines()
        except OSError as exc:
            run.errors.append(f"could not save baselines: {exc}")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    _write_outputs(run, session)


def _review(run: LLMPerfSession, session: pytest.Session) -> None:
    for row in review(run.results, run.settings.alpha):
        result = run.results[row["result"]]
        gate = result["gate"]
        gate.setdefault("p_holm", {})[row["metric"]] = row["p_holm"]
        gate.setdefault("p_by", {})[row["metric"]] = row["p_by"]
        where = bench_id(result["nodeid"], result["name"])
        metric = next(m for m in gate["metrics"] if m["metric"] == row["metric"])
        if row["holm_rejects"] and metric["verdict"] != Verdict.REGRESSION:
            # Holm's later, looser steps rejected what the in-test first step could not.
            metric["verdict"] = gate["verdict"] = Verdict.REGRESSION
            gate.setdefault("p_holm_rejected", {})[row["metric"]] = row["p_holm"]
            run.regressions_after_review.append(f"{where}: {gate_message(gate)}")
        elif row["by_flags"] and not row["holm_rejects"]:
            run.notes.append(
                f"worth a look (Benjamini-Yekutieli p={row['p_by']:.2g}, not significant "
                f"family-wise): {where} {row['metric']}"
            )
    if run.regressions_after_review and run.settings.fail_on_latency:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _quality_gate(run: LLMPerfSession, session: pytest.Session) -> None:
    """Per backend: this session's verdicts against the stored quality baseline. It runs after
    every test, so a regression fails the run through the session's exit status (the tests
    themselves have passed), with a red line in the summary."""
    s = run.settings
    if not s.compare or not run.quality:
        return
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for entry in run.quality:
        if entry["backend"] is not None:  # judged without llm_backend: no baseline file
            by_backend.setdefault(entry["backend"], []).append(entry)
    todo: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = []
    for spec in s.specs:
        stored = run.baselines.get(spec.text)
        if spec.text in by_backend and stored is not None and stored.quality is not None:
            todo.append((spec.text, by_backend[spec.text], stored.quality))
    if not todo:
        return
    alpha = s.alpha / len(todo)  # Bonferroni over the backends compared
    rejudge: Rejudge | str | None = rejudger(run.config) if s.rejudge_baseline else None
    for backend, entries, section in todo:
        args = (backend, str(entries[0]["backend_id"]), entries, section)
        try:
            comparison = compare_backend(
                *args, margin=s.quality_margin, alpha=alpha, rejudge=rejudge
            )
        except JudgeError as exc:
            comparison = compare_backend(
                *args, margin=s.quality_margin, alpha=alpha, rejudge=f"the judge failed: {exc}"
            )
        run.quality_gate.append(comparison.to_json())
    regressed = [c for c in run.quality_gate if c["verdict"] == QUALITY_REGRESSION]
    if regressed and s.fail_on_quality and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _write_outputs(run: LLMPerfSession, session: pytest.Session) -> None:
    """Every file this run asked for, all from one results document with secrets removed."""
    s = run.settings
    wanted: list[tuple[Path | None, Callable[[dict[str, Any]], str]]] = [
        (s.json_path, _json_text),
        (s.html_path, render_html),
        (s.markdown_path, render_markdown),
        (s.benchmark_json_path, lambda doc: _json_text(to_benchmark_json(doc))),
    ]
    if s.history_dir is None and all(path is None for path, _ in wanted):
        return
    document = redact(_document(run))
    for path, render in wanted:
        if path is None:
            continue
        try:
            write_text_atomic(path, render(document))
        except (OSError, ValueError) as exc:
            run.errors.append(f"could not write {path}: {exc}")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        else:
            run.written.append(path)
    if s.history_dir is not None:
        try:
            run.written.append(append_run(s.history_dir, document))
        except (OSError, ValueError) as exc:  # ValueError: a NaN, which JSON cannot hold
            run.errors.append(f"could not add this run to the history in {s.history_dir}: {exc}")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def _json_text(document: dict[str, Any]) -> str:
    # allow_nan=False: a stray NaN fails loudly instead of writing invalid JSON.
    return json.dumps(document, indent=2, allow_nan=False, ensure_ascii=False)


def _document(run: LLMPerfSession) -> dict[str, Any]:
    s = run.settings
    return build_document(
        settings={
            "runs": s.runs if s.runs is not None else "auto",
            "looks": list(s.looks),
            "warmup": s.warmup,
            "alpha": s.alpha,
            "tolerances": dict(s.tolerances),
            "compare_to": s.compare_to.text if s.compare_to else None,
            "judge": s.judge.text if s.judge else None,
            "judge_repeats": s.judge_repeats,
            "judge_prompt_version": JUDGE_PROMPT_VERSION,
            "fail_on": s.fail_on,
            "quality_margin": s.quality_margin,
            "rejudge_baseline": s.rejudge_baseline,
            "slo": dict(s.slo),
        },
        environment=describe_environment(),
        backends=run.backend_records,
        backend_errors=run.load_errors,
        results=run.results,
        quality=run.quality,
        quality_gate=run.quality_gate,
    )
