"""What a stored baseline document must hold before the gate may use it (see :mod:`.baseline`).

Structure (the keys and types the gate indexes) and values (every sample finite and >= 0, a
``created`` time on every run, at least one run per benchmark, quality scores within 0-100): a
hand-edited or damaged file is refused at session start with its reason, instead of crashing a
test halfway through its comparison.
"""

from __future__ import annotations

from typing import Any

from ._doc_check import parse_time
from .numeric import check_finite, check_samples

__all__ = ["SCHEMA_VERSION", "Unusable", "check_baseline"]

SCHEMA_VERSION = 1


class Unusable(Exception):
    """Why a baseline document cannot be used; its text completes "baseline file PATH ..."."""

    def __init__(self, what: str, detail: str | None = None) -> None:
        super().__init__(what if detail is None else f"{what} ({detail})")


def check_baseline(doc: Any) -> None:
    """Raise :class:`Unusable` if ``doc`` (parsed JSON) is not a baseline the gate can use."""
    try:
        version = doc["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise TypeError(f"schema_version must be a positive integer, not {version!r}")
        if version > SCHEMA_VERSION:
            raise Unusable(
                f"has schema_version {version!r}, newer than this pytest-llmperf understands "
                f"({SCHEMA_VERSION}); upgrade pytest-llmperf"
            )
        _items(doc["key"], "key")
        for side in ("strict", "soft"):
            _items(doc["key"][side], f"key.{side}")
        str(doc["backend"])
        for key, entry in _items(doc["benchmarks"], "benchmarks"):
            _check_benchmark(f"benchmarks[{key!r}]", entry)
        if doc.get("quality") is not None:
            _check_quality(doc["quality"])
    except Unusable:
        raise
    except ValueError as exc:  # a number no measurement can have
        raise Unusable("holds a value no run can have", str(exc)) from None
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise Unusable("does not have the expected structure", repr(exc)) from None


def _items(value: Any, where: str) -> list[tuple[str, Any]]:
    if not isinstance(value, dict):
        raise TypeError(f"{where} must be an object, not {type(value).__name__}")
    return list(value.items())


def _check_benchmark(where: str, entry: Any) -> None:
    if not isinstance(entry, dict) or not isinstance(entry["params"], dict):
        raise TypeError(f"{where} must be an object with a params object")
    runs = entry["runs"]
    if not isinstance(runs, list):
        raise TypeError(f"{where}.runs must be a list")
    if not runs:
        # The gate labels a comparison with the newest run: an empty list has none.
        raise ValueError(f"{where}.runs is empty; a stored benchmark has at least one run")
    for index, run in enumerate(runs):
        _check_run(f"{where}.runs[{index}]", run)


def _check_run(where: str, run: Any) -> None:
    if not isinstance(run, dict):
        raise TypeError(f"{where} must be an object")
    if parse_time(run.get("created")) is None:
        raise ValueError(f"{where}.created {run.get('created')!r} is not an ISO-8601 time")
    if not isinstance(run.get("commit"), str | None):
        raise TypeError(f"{where}.commit must be a string or null")
    for metric, values in _items(run["samples"], f"{where}.samples"):
        if not isinstance(values, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            raise TypeError(f"{where}.samples.{metric}: samples must be a list of numbers")
        check_samples(values, what=f"{where}.samples.{metric}", nonnegative=True)


def _check_quality(section: Any) -> None:
    if not isinstance(section["judge"], str) or not isinstance(section["prompt_version"], str):
        raise TypeError("quality judge and prompt_version must be strings")
    for key, verdict in _items(section["verdicts"], "quality.verdicts"):
        score = verdict["score"]
        if not isinstance(score, int | float) or isinstance(score, bool):
            raise TypeError("quality scores must be numbers")
        check_finite(score, what=f"quality.verdicts[{key!r}].score", low=0.0, high=100.0)
        if not isinstance(verdict["response"], str):
            raise TypeError("quality responses must be strings")
