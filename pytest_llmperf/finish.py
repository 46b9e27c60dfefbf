"""End of a run, on the controller: multiplicity review, the quality gate, baseline saving,
the output files."""

from __future__ import annotations

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
from .numeric import json_dumps
from .quality import rejudger
from .quality_gate import REGRESSION as QUALITY_REGRESSION
from .quality_gate import Rejudge, compare_backend
from .redact import redact
from .report_html import render_html
from .report_markdown import render_markdown
from .results import build_document, finite_document, write_text_atomic

if TYPE_CHECKING:
    from .session import LLMPerfSession

__all__ = ["finish_run"]


def finish_run(run: LLMPerfSession, session: pytest.Session) -> None:
    """An interrupted session (Ctrl-C, ``pytest.exit``: exit status 2) saves no baseline, as a
    partial run must not become what later runs are compared with, skips the quality gate
    (``--llm-rejudge-baseline`` would call the judge after the user asked to stop), and marks
    every file it writes ``"interrupted": true``; its exit status stays 2."""
    interrupted = session.exitstatus == pytest.ExitCode.INTERRUPTED
    _review(run, session)
    if interrupted:
        if run.settings.save_baseline:
            run.notes.append("interrupted: no baseline saved (a partial run is no baseline)")
    else:
        _quality_gate(run, session)
        if run.settings.save_baseline:
            notes, errors = run.save_baselines()
            run.notes += notes
            run.errors += errors
            if errors:
                _fail(session, pytest.ExitCode.INTERNAL_ERROR)
    _write_outputs(run, session, interrupted=interrupted)


def _fail(session: pytest.Session, status: pytest.ExitCode) -> None:
    # An interrupted run keeps saying so: 2, whatever else went wrong after the interrupt.
    if session.exitstatus != pytest.ExitCode.INTERRUPTED:
        session.exitstatus = status


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
        _fail(session, pytest.ExitCode.TESTS_FAILED)


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


def _write_outputs(run: LLMPerfSession, session: pytest.Session, *, interrupted: bool) -> None:
    """Every file this run asked for, all from one results document with secrets removed and
    non-finite numbers as nulls (so the renderers see what the JSON holds)."""
    s = run.settings
    wanted: list[tuple[Path | None, Callable[[dict[str, Any]], str]]] = [
        (s.json_path, _json_text),
        (s.html_path, render_html),
        (s.markdown_path, render_markdown),
        (s.benchmark_json_path, lambda doc: _json_text(_marked(to_benchmark_json(doc), doc))),
    ]
    if s.history_dir is None and all(path is None for path, _ in wanted):
        return
    document = redact(_document(run))
    if interrupted:
        document["interrupted"] = True
    document = finite_document(document)
    for path, render in wanted:
        if path is None:
            continue
        try:
            write_text_atomic(path, render(document))
        except (OSError, ValueError) as exc:
            run.errors.append(f"could not write {path}: {exc}")
            _fail(session, pytest.ExitCode.INTERNAL_ERROR)
        else:
            run.written.append(path)
    if s.history_dir is not None:
        try:
            run.written.append(append_run(s.history_dir, document))
        except (OSError, ValueError) as exc:
            run.errors.append(f"could not add this run to the history in {s.history_dir}: {exc}")
            _fail(session, pytest.ExitCode.INTERNAL_ERROR)
    if interrupted and run.written:
        run.notes.append(
            f"interrupted: the {len(run.results)} result(s) written below are a partial run, "
            'marked "interrupted": true'
        )
    if "nonfinite" in document:
        where = ", ".join(f"{k}={v}" for k, v in list(document["nonfinite"].items())[:3])
        more = len(document["nonfinite"]) - 3
        run.notes.append(
            f"{len(document['nonfinite'])} value(s) were not finite numbers and are written as "
            f'null ({where}{f", {more} more" if more > 0 else ""}; see "nonfinite")'
        )


def _marked(bench: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's document with our top-level marks: its readers ignore keys they do
    not know, and a partial run must not pass for a whole one there either."""
    for key in ("interrupted", "nonfinite"):
        if key in document:
            bench[key] = document[key]
    return bench


def _json_text(document: dict[str, Any]) -> str:
    return json_dumps(finite_document(document))


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
