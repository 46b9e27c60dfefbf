"""Field checks of a results document's entries (schema: :mod:`.results`) for ``llmperf``.

Each ``check_*`` returns what is wrong with one entry as a phrase ("has no backend string",
"has stats.ttft_s.median 'fast', not a number or null"), or ``None``. They check the types of
what the readers (show, compare, merge, the reports) index or compute with, so a malformed
file is refused or skipped with its reason, never a traceback halfway through a report. Fields
a reader only displays, or reads with a default, may be missing.

Numbers are checked as well as typed, through :mod:`.numeric` like every number that reaches
the statistics: samples finite and non-negative, every other number finite, counts whole and
at most :data:`~pytest_llmperf.numeric.MAX_COUNT`, judge scores on their 0-100 scale. A
document built in memory (``merge_documents``' inputs) or parsed by a lenient reader can hold
a NaN or a ``10**400``; refused here, it never becomes a NaN verdict, an OverflowError
halfway through a table, or a merged file the JSON writer refuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from .numeric import MAX_COUNT, check_finite

__all__ = [
    "check_backend",
    "check_environment",
    "check_quality",
    "check_quality_gate",
    "check_result",
    "check_source",
    "parse_time",
]

#: Gate metric fields that are numbers or null where present.
_METRIC_NUMBERS = (
    "ci_low",
    "ci_high",
    "p_slowdown",
    "p_improvement",
    "p_no_slowdown",
    "tolerance",
    "effective_tolerance",
)
_METRIC_COUNTS = ("n_current", "n_baseline", "runs_to_settle")
_QUALITY_GATE_NUMBERS = ("mean_diff", "ci_low", "ci_high", "p_noninferior", "p_regression")
#: The judge's scale: scores, their spread's ends and paired scores are 0-100.
_SCORE = (0.0, 100.0)


def parse_time(text: Any) -> datetime | None:
    """An ISO-8601 time (UTC when it names no zone), or ``None`` if ``text`` is not one."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    """A count: a non-negative int no larger than a count this plugin could have written."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _out_of_range(
    where: str, value: Any, low: float | None = None, high: float | None = None
) -> str | None:
    """Why the number ``value`` cannot be used (not finite, too large for a float, out of
    ``[low, high]``), or ``None``."""
    try:
        check_finite(value, what=where, low=low, high=high)
    except ValueError as exc:
        return f"has {exc}"
    return None


def _numbers(where: str, values: Any) -> str | None:
    """``values`` must be a list of samples (finite, non-negative numbers) or nulls (a sample
    the writer could not represent)."""
    if not isinstance(values, list):
        return f"has {where} {_short(values)}, not a list"
    for index, value in enumerate(values):
        if value is None:
            continue
        if not _number(value):
            return f"has {where}[{index}] {_short(value)}, not a number or null"
        problem = _out_of_range(f"{where}[{index}]", value, low=0.0)
        if problem:
            return problem
    return None


_TYPE_NAMES: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}


def _optional(entry: Mapping[str, Any], where: str, types: dict[str, type]) -> str | None:
    """Each key of ``types`` present in ``entry`` must be null or of its type."""
    for key, kind in types.items():
        value = entry.get(key)
        if value is not None and not isinstance(value, kind):
            return f"has {where}{key} {_short(value)}, not {_TYPE_NAMES[kind]} or null"
    return None


def _numbers_or_null(
    entry: Mapping[str, Any],
    where: str,
    keys: Iterable[str],
    low: float | None = None,
    high: float | None = None,
) -> str | None:
    for key in keys:
        value = entry.get(key)
        if value is None:
            continue
        if not _number(value):
            return f"has {where}{key} {_short(value)}, not a number or null"
        problem = _out_of_range(f"{where}{key}", value, low, high)
        if problem:
            return problem
    return None


def _counts_or_null(entry: Mapping[str, Any], where: str, keys: Iterable[str]) -> str | None:
    for key in keys:
        value = entry.get(key)
        if value is not None and not _whole(value):
            return f"has {where}{key} {_short(value)}, not a whole number or null"
    return None


def _first(*problems: str | None) -> str | None:
    return next((p for p in problems if p), None)


def _check_table(result: Mapping[str, Any], key: str) -> str | None:
    """``stats`` (metric -> {field: number or null}) or ``samples`` (metric -> [numbers])."""
    table = result.get(key)
    if not isinstance(table, dict):
        return f"has no '{key}' object"
    for metric, value in table.items():
        if key == "samples":
            problem = _numbers(f"samples.{metric}", value)
        elif not isinstance(value, dict):
            problem = f"has stats.{metric} {_short(value)}, not an object"
        else:
            problem = _first(
                _counts_or_null(value, f"stats.{metric}.", ("n",)),
                _numbers_or_null(value, f"stats.{metric}.", (k for k in value if k != "n")),
            )
        if problem:
            return problem
    return None


def _check_gate(gate: Any) -> str | None:
    if gate is None:
        return None
    if not isinstance(gate, dict):
        return f"has gate {_short(gate)}, not an object or null"
    if not isinstance(gate.get("verdict"), str):
        return "has a gate without a verdict string"
    problem = _optional(
        gate,
        "gate.",
        {"looks": list, "p_sequential": dict, "p_holm_rejected": dict, "warnings": list},
    )
    if problem:
        return problem
    problem = _first(
        _counts_or_null(gate, "gate.", ("samples", "comparisons")),
        _counts(gate.get("looks") or [], "gate.looks"),
        *(
            _numbers_or_null(gate.get(key) or {}, f"gate.{key}.", gate.get(key) or {})
            for key in ("p_sequential", "p_holm", "p_by", "p_holm_rejected")
            if isinstance(gate.get(key) or {}, dict)
        ),
    )
    if problem:
        return problem
    metrics = gate.get("metrics", [])
    if not isinstance(metrics, list):
        return f"has gate.metrics {_short(metrics)}, not a list"
    for index, metric in enumerate(metrics):
        where = f"gate.metrics[{index}]"
        if not isinstance(metric, dict):
            return f"has {where} {_short(metric)}, not an object"
        for key in ("metric", "verdict"):
            if not isinstance(metric.get(key), str):
                return f"has {where} without a {key} string"
        if "ratio" not in metric:
            return f"has {where} without a ratio"
        # null: a verdict with no ratio (a REFUSED baseline of 0, too few samples), which the
        # writer stores as null rather than NaN.
        problem = _first(
            _numbers_or_null(metric, f"{where}.", ("ratio",), low=0.0),
            _numbers_or_null(metric, f"{where}.", _METRIC_NUMBERS),
            _counts_or_null(metric, f"{where}.", _METRIC_COUNTS),
        )
        if problem:
            return problem
    stored = gate.get("baseline_samples")
    if stored is not None:
        if not isinstance(stored, dict):
            return f"has gate.baseline_samples {_short(stored)}, not an object or null"
        for metric, values in stored.items():
            problem = _numbers(f"gate.baseline_samples.{metric}", values)
            if problem:
                return problem
    return None


def _counts(values: Any, where: str) -> str | None:
    if not isinstance(values, list):
        return f"has {where} {_short(values)}, not a list"
    for index, value in enumerate(values):
        if not _whole(value):
            return f"has {where}[{index}] {_short(value)}, not a whole number"
    return None


def _check_errors(key: str, errors: Any) -> str | None:
    if errors is None:
        return None
    if not isinstance(errors, dict):
        return f"has {key} {_short(errors)}, not an object or null"
    for field in ("failed", "attempts", "retried"):
        if field in errors and not _whole(errors[field]):
            return f"has {key}.{field} {_short(errors[field])}, not a whole number"
    by_kind = errors.get("by_kind", {})
    if not isinstance(by_kind, dict) or not all(_whole(n) for n in by_kind.values()):
        return f"has {key}.by_kind {_short(by_kind)}, not counts by kind"
    if errors.get("failed") and not {"attempts", "retried"} <= errors.keys():
        return f"has {key} without attempts and retried counts"
    return None


def _objects(entry: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    for key in keys:
        items = entry.get(key, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return f"has {key} {_short(items)}, not a list of objects"
    return None


def check_result(result: Mapping[str, Any]) -> str | None:
    """A latency or load result (``results[i]``)."""
    for key in ("nodeid", "name", "backend", "backend_id"):
        if not isinstance(result.get(key), str):
            return f"has no {key} string"
    if not _whole(result.get("runs")):
        return f"has runs {_short(result.get('runs'))}, not a whole number"
    return _first(
        _check_table(result, "stats"),
        _check_table(result, "samples"),
        _check_gate(result.get("gate")),
        _optional(result, "", {"params": dict, "load": dict, "missing": dict}),
        _objects(result, ("generations", "reference_generations")),
        _check_errors("errors", result.get("errors")),
        _check_errors("reference_errors", result.get("reference_errors")),
        _check_output_counts(result),
    )


def _check_output_counts(result: Mapping[str, Any]) -> str | None:
    """``empty`` and ``short``, on a result or its load section (absent from older files;
    a load's ``short`` is null when ``ignore_eos`` was off)."""
    load = result.get("load")
    for where, counts in (("", result), ("load.", load if isinstance(load, dict) else {})):
        for key in ("empty", "short"):
            value = counts.get(key)
            if value is not None and not _whole(value):
                return f"has {where}{key} {_short(value)}, not a whole number or null"
    return None


def check_quality(entry: Mapping[str, Any]) -> str | None:
    """A judge verdict (``quality[i]``)."""
    if not isinstance(entry.get("nodeid"), str):
        return "has no nodeid string"
    for key in ("backend", "backend_id"):
        if key not in entry or not isinstance(entry[key], str | None):
            return f"has no {key} (a string, or null for a test without llm_backend)"
    if not _number(entry.get("score")):
        return f"has score {_short(entry.get('score'))}, not a number"
    spread = entry.get("spread")
    if spread is not None and not isinstance(spread, dict):
        return f"has spread {_short(spread)}, not an object or null"
    scores = entry.get("scores")
    return _first(
        _out_of_range("score", entry["score"], *_SCORE),
        _numbers_or_null(spread or {}, "spread.", ("sd",), low=0.0),
        _numbers_or_null(spread or {}, "spread.", ("min", "max"), *_SCORE),
        _numbers_or_null(entry, "", ("min_score",)),
        None if _whole(entry.get("call", 0)) else f"has call {_short(entry['call'])}, not a count",
        _optional(entry, "", {"judge": str, "scores": list}),
        _numbers("scores", scores) if isinstance(scores, list) else None,
    )


def check_quality_gate(entry: Mapping[str, Any]) -> str | None:
    """A quality-gate verdict for one backend (``quality_gate[i]``)."""
    for key in ("backend", "backend_id", "verdict"):
        if not isinstance(entry.get(key), str):
            return f"has no {key} string"
    if not _whole(entry.get("n_pairs")):
        return f"has n_pairs {_short(entry.get('n_pairs'))}, not a whole number"
    for key in ("margin", "alpha"):
        if not _number(entry.get(key)):
            return f"has {key} {_short(entry.get(key))}, not a number"
        problem = _out_of_range(key, entry[key])
        if problem:
            return problem
    problem = _numbers_or_null(entry, "", _QUALITY_GATE_NUMBERS)
    if problem:
        return problem
    pairs = entry.get("pairs")
    if pairs is None:
        return None
    if not isinstance(pairs, list):
        return f"has pairs {_short(pairs)}, not a list or null"
    for index, pair in enumerate(pairs):
        if not isinstance(pair, dict) or "id" not in pair:
            return f"has pairs[{index}] {_short(pair)}, not an object with an id"
        problem = _numbers_or_null(pair, f"pairs[{index}].", ("current", "baseline"), *_SCORE)
        if problem:
            return problem
    return None


def check_backend(record: Mapping[str, Any]) -> str | None:
    """A backend record (``backends[i]``)."""
    if not isinstance(record.get("id"), str):
        return "has no id string"
    problem = _optional(record, "", {"spec": str, "key": dict, "model_file": dict, "role": str})
    if problem:
        return problem
    key = record.get("key") or {}
    return _first(
        _optional(key, "key.", {"strict": dict, "soft": dict}),
        _numbers_or_null(record, "", ("load_s",), low=0.0),
    )


def check_environment(environment: Mapping[str, Any]) -> str | None:
    """The ``environment`` of a run (top level, or a merged document's source)."""
    return _optional(
        environment,
        "",
        {"machine_info": dict, "commit_info": dict, "gpus": list, "libraries": dict},
    )


def check_source(source: Mapping[str, Any]) -> str | None:
    """One input run of a merged document (``sources[i]``)."""
    if parse_time(source.get("created")) is None:
        return f"has 'created' {_short(source.get('created'))}, not an ISO-8601 time"
    environment = source.get("environment")
    if not isinstance(environment, dict):
        return f"has environment {_short(environment)}, not an object"
    problem = check_environment(environment)
    if problem:
        return f"{problem} in its environment"
    return _optional(source, "", {"settings": dict, "command": list, "plugin": dict})
