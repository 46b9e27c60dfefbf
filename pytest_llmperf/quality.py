"""The ``llm_judge`` fixture and ``@pytest.mark.llm_quality``: response quality beside latency.

Registered as a plugin by plugin.py, like fixtures.py; plugin.py's hooks call the functions
here. Verdicts travel from xdist workers to the controller on test reports
(``report.llmperf_quality``, JSON-safe), as latency results do.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from ._table import render
from .backends import Prompt
from .errors import JudgeError, LLMPerfError
from .judge import JUDGE_PROMPT_VERSION, Judge, Verdict
from .session import LLMPerfSession, get_session
from .spec import parse_spec

__all__ = [
    "MARKER",
    "QUALITY_KEY",
    "JudgeCall",
    "annotate_report",
    "check_quality",
    "collect",
    "format_quality_table",
    "llm_judge",
    "min_score",
    "rejudger",
    "report_status",
    "write_quality_summary",
]

MARKER = (
    "llm_quality(min_score=70): after the test, fail it when the mean judge score (0-100) of "
    "the verdicts it recorded through llm_judge is below min_score"
)

#: JSON-safe verdicts recorded by one test item through ``llm_judge``.
QUALITY_KEY = pytest.StashKey[list[dict[str, Any]]]()
_SKIP_KEY = pytest.StashKey[str]()
#: Per process: the judge, or why there is none (loaded once, on first use).
_JUDGE_KEY = pytest.StashKey[Judge | str]()


def min_score(item: pytest.Item) -> float | None:
    """The test's ``llm_quality(min_score=...)``; ``None`` without the marker."""
    marker = item.get_closest_marker("llm_quality")
    if marker is None:
        return None
    value = marker.kwargs.get("min_score")
    if marker.args or set(marker.kwargs) != {"min_score"}:
        pytest.fail("@pytest.mark.llm_quality takes one argument: min_score=0..100", pytrace=False)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        pytest.fail(f"llm_quality(min_score=...) must be 0..100, got {value!r}", pytrace=False)
    return float(value)


class JudgeCall:
    """Callable behind ``llm_judge``: ``llm_judge(prompt, response, rubric=..., reference=...)``
    grades ``response`` and records the :class:`~pytest_llmperf.judge.Verdict` for the report."""

    def __init__(self, judge: Judge, item: pytest.Item) -> None:
        self.judge = judge
        self._item = item
        self._min_score = min_score(item)

    def __call__(
        self,
        prompt: Prompt,
        response: str,
        *,
        rubric: str | None = None,
        reference: str | None = None,
    ) -> Verdict:
        verdict = self.judge.grade(prompt, response, rubric=rubric, reference=reference)
        # The backend under test, when the test has one: its quality sits next to its latency.
        handle = getattr(self._item, "funcargs", {}).get("llm_backend")
        recorded = self._item.stash.setdefault(QUALITY_KEY, [])
        entry = {
            "nodeid": self._item.nodeid,
            # Which llm_judge call of the test: with the nodeid, the verdict's stable id for
            # pairing with a stored quality baseline.
            "call": len(recorded),
            "backend": getattr(handle, "spec", None),
            "backend_id": getattr(handle, "id", None),
            **verdict.to_json(),
            "min_score": self._min_score,
            # What was judged: stored with a quality baseline, so it can be re-judged.
            "prompt": prompt,
            "response": response,
            "rubric": rubric,
            "reference": reference,
        }
        recorded.append(entry)
        return verdict


def rejudger(config: pytest.Config) -> Callable[[Mapping[str, Any]], float] | str:
    """``--llm-rejudge-baseline``: a function grading a stored verdict's response again with
    this session's judge (its score), or why there is no judge."""
    judge = _judge_for(config)
    if isinstance(judge, str):
        return judge

    def grade(stored: Mapping[str, Any]) -> float:
        return judge.grade(
            stored["prompt"],
            stored["response"],
            rubric=stored.get("rubric"),
            reference=stored.get("reference"),
        ).score

    return grade


def _cache_dir(config: pytest.Config) -> Path:
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
    if cache is not None:
        return Path(cache.mkdir("llmperf-judge"))
    return config.rootpath / ".llmperf" / "judge-cache"


def _judge_for(config: pytest.Config) -> Judge | str:
    found = config.stash.get(_JUDGE_KEY, None)
    if found is not None:
        return found
    run = get_session(config)
    s = run.settings
    if s.judge is None:
        found = "judging is off (--llm-judge / ini llm_judge is 'none')"
    else:
        try:
            handle = run.handle(s.judge, judge=True)
        except LLMPerfError as exc:
            hint = "; choose one with --llm-judge=SPEC" if s.judge.source == "default" else ""
            found = f"{s.judge.short_id} could not start: {exc}{hint}"
        else:
            cache = _cache_dir(config) if s.judge_cache else None
            found = Judge(handle, repeats=s.judge_repeats, cache_dir=cache)
    config.stash[_JUDGE_KEY] = found
    return found


@pytest.fixture
def llm_judge(request: pytest.FixtureRequest) -> JudgeCall:
    """Grade answers with the session's LLM judge (``--llm-judge``); skips the test, with the
    reason, where no judge can start."""
    judge = _judge_for(request.config)
    if isinstance(judge, str):
        request.node.stash[_SKIP_KEY] = judge
        pytest.skip(f"no judge: {judge}")
    return JudgeCall(judge, request.node)


def check_quality(item: pytest.Item) -> None:
    """After a test body that passed: fail it if its verdicts' mean is below ``min_score``."""
    threshold = min_score(item)
    if threshold is None:
        return
    entries = item.stash.get(QUALITY_KEY, [])
    if not entries:
        pytest.fail(
            "@pytest.mark.llm_quality: no verdict was recorded through llm_judge", pytrace=False
        )
    mean = statistics.fmean(e["score"] for e in entries)
    if mean < threshold:
        worst = min(entries, key=lambda e: e["score"])
        reason = " ".join(worst["reason"].split())
        reason = reason if len(reason) <= 80 else reason[:79] + "…"
        pytest.fail(
            f"quality {mean:.1f} < min_score {threshold:g} (judge {worst['judge']}, "
            f"{len(entries)} verdict(s)); lowest {worst['score']:.0f}: {reason}",
            pytrace=False,
        )


def annotate_report(item: pytest.Item, call: pytest.CallInfo[None], report: Any) -> None:
    """JSON-safe attributes, so they cross from xdist workers to the controller."""
    if report.when == "setup" and report.skipped and _SKIP_KEY in item.stash:
        report.llmperf_judge_skip = item.stash[_SKIP_KEY]
    if report.when != "call":
        return
    entries = item.stash.get(QUALITY_KEY, None)
    if entries:
        report.llmperf_quality = entries
    if call.excinfo is not None and isinstance(call.excinfo.value, JudgeError):
        report.llmperf_judge_error = True


def report_status(report: Any) -> tuple[str, str, str] | None:
    """A judge that gave no verdict is an error of the run, not a failure of the answer."""
    if report.failed and getattr(report, "llmperf_judge_error", False):
        return "error", "E", "ERROR"
    return None


def collect(run: LLMPerfSession, report: Any) -> None:
    """Controller only: gather a report's verdicts and judge skips."""
    run.quality.extend(getattr(report, "llmperf_quality", None) or ())
    reason = getattr(report, "llmperf_judge_skip", None)
    if reason:
        run.judge_skips[reason] = run.judge_skips.get(reason, 0) + 1


def _test_label(entry: dict[str, Any]) -> str:
    test: str = entry["nodeid"].split("::", 1)[-1]
    suffix = f"[{entry['backend_id']}]"
    return test[: -len(suffix)] if entry["backend_id"] and test.endswith(suffix) else test


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_quality_table(
    quality: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]], width: int = 100
) -> list[str]:
    """One row per test and backend (mean score, n verdicts, min, max) with the seconds per
    token its latency results measured; per-backend totals when several tests were judged."""
    spt: dict[tuple[str | None, str | None], list[float]] = {}
    for r in results:
        median = r["stats"].get("sec_per_token", {}).get("median")
        if median is not None:
            spt.setdefault((r["nodeid"], r["backend"]), []).append(median)
            spt.setdefault((None, r["backend"]), []).append(median)
    groups: dict[tuple[str, str, str | None], list[dict[str, Any]]] = {}
    for e in quality:
        groups.setdefault((_test_label(e), e["backend_id"] or "-", e["nodeid"]), []).append(e)
    if len({label for label, _, _ in groups}) > 1:
        for e in quality:
            groups.setdefault(("(all tests)", e["backend_id"] or "-", None), []).append(e)
    repeated = any(e["spread"]["sd"] is not None for e in quality)
    header = ["test", "backend", "n", "quality %", "min", "max", "s/token"]
    header += ["judge sd"] if repeated else []
    rows = []
    for (label, backend_id, nodeid), entries in groups.items():
        scores = [e["score"] for e in entries]
        times = spt.get((nodeid, entries[0]["backend"]))
        row = [label, backend_id, str(len(entries)), f"{statistics.fmean(scores):.1f}"]
        row += [f"{min(scores):.0f}", f"{max(scores):.0f}"]
        row += [_fmt(statistics.fmean(times) if times else None, ".4f")]
        if repeated:
            sds = [e["spread"]["sd"] for e in entries if e["spread"]["sd"] is not None]
            row.append(_fmt(statistics.fmean(sds) if sds else None, ".1f"))
        rows.append(row)
    rows.sort(key=lambda r: (r[0] == "(all tests)", r[0], r[1]))
    return render(header, rows, width)


def write_quality_summary(tr: Any, run: LLMPerfSession, *, width: int) -> None:
    """The quality section of pytest's terminal summary, and the judge-skip count."""
    if run.quality:
        judges = ", ".join(sorted({parse_spec(e["judge"]).short_id for e in run.quality}))
        tr.write_sep(
            "-", f"llmperf: quality 0-100 (judge {judges}, prompt v{JUDGE_PROMPT_VERSION})"
        )
        for line in format_quality_table(run.quality, run.results, width=width):
            tr.write_line(line)
        cached = sum(1 for e in run.quality if e["cached"])
        if cached:
            tr.write_line(f"{cached} of {len(run.quality)} verdict(s) came from the judge cache")
    for reason, n in sorted(run.judge_skips.items()):
        tr.write_line(f"llmperf: {n} test(s) skipped: no judge ({reason})", yellow=True)
