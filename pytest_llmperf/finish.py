"""End of a run, on the controller: multiplicity review, baseline saving, the JSON file."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .baseline import bench_id
from .compare import gate_message
from .environment import describe_environment
from .gate import Verdict, review
from .judge import JUDGE_PROMPT_VERSION
from .results import build_document, write_json_atomic

if TYPE_CHECKING:
    from .session import LLMPerfSession

__all__ = ["finish_run"]


def finish_run(run: LLMPerfSession, session: pytest.Session) -> None:
    _review(run, session)
    if run.settings.save_baseline:
        try:
            run.notes += run.save_baselines()
        except OSError as exc:
            run.errors.append(f"could not save baselines: {exc}")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    _write_json(run, session)


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
    if run.regressions_after_review and run.settings.fail_on == "latency":
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _write_json(run: LLMPerfSession, session: pytest.Session) -> None:
    path = run.settings.json_path
    if path is None:
        return
    s = run.settings
    document = build_document(
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
        },
        environment=describe_environment(),
        backends=run.backend_records,
        backend_errors=run.load_errors,
        results=run.results,
        quality=run.quality,
    )
    try:
        write_json_atomic(path, document)
    except OSError as exc:
        run.errors.append(f"could not write {path}: {exc}")
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    else:
        run.json_written = path
