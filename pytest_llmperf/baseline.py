"""Stored baselines: one human-diffable JSON file per backend, pooling the last K runs.

File layout (``schema_version`` 1)::

    {"schema_version": 1, "backend": SPEC, "updated": ISO-8601,
     "key": {"strict": {...}, "soft": {...}},
     "benchmarks": {BENCH_ID: {"params": {...},
                               "runs": [{"created", "commit", "samples": {metric: [...]}}]}},
     "quality": {"judge": SPEC, "prompt_version": "1", "created", "commit",
                 "verdicts": {NODEID#CALL: {"nodeid", "call", "score", "scores", "ratings",
                                            "prompt", "response", "rubric", "reference"}}}}

``quality`` (optional, so files without it load as before) holds each judged answer of the
last saving run, keyed by test and ``llm_judge`` call: the quality gate pairs this session's
verdicts with them (see :mod:`.quality_gate`), and ``--llm-rejudge-baseline`` grades the stored
responses again.

The strict key (CPU model, accelerators, backend library and version, model file hash, backend
options, plugin major version, xdist worker count) must match to compare; the soft key (host
name, kernel, Python) only warns. A file that cannot be read is an error naming it, and it is
never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Any

from .errors import BaselineError
from .harness import SCALAR_METRICS
from .redact import redact
from .results import write_json_atomic

__all__ = [
    "STORED_METRICS",
    "BaselineError",
    "BaselineFile",
    "StoredBenchmark",
    "baseline_path",
    "bench_id",
    "describe_differences",
    "load_baseline",
    "save_baseline",
]

SCHEMA_VERSION = 1
#: Samples a baseline keeps: the timing metrics and output length (not machine bookkeeping).
STORED_METRICS = (
    *(m for m in SCALAR_METRICS if m not in ("prompt_tokens", "cpu_s", "peak_rss_mb")),
    # llm_load's per-window throughputs (absent from llm_bench results).
    "throughput_rps",
    "output_tps",
)


@dataclass
class StoredBenchmark:
    params: dict[str, Any]
    runs: list[dict[str, Any]]

    # ``first`` keeps only each run's first samples: a process measured for longer drifts
    # (clocks, heat), so look n is compared with the same positions of the stored runs.
    def pooled(self, metric: str, first: int | None = None) -> list[float]:
        return [float(v) for run in self.runs for v in run["samples"].get(metric, [])[:first]]

    def run_medians(self, metric: str, first: int | None = None) -> list[float]:
        return [
            median(values)
            for run in self.runs
            if (values := run["samples"].get(metric, [])[:first])
        ]

    @property
    def newest(self) -> dict[str, Any]:
        return self.runs[-1]


@dataclass
class BaselineFile:
    path: Path
    backend: str
    strict: dict[str, Any]
    soft: dict[str, Any]
    benchmarks: dict[str, StoredBenchmark] = field(default_factory=dict)
    #: The stored ``quality`` section, ``None`` when the file has none.
    quality: dict[str, Any] | None = None


def baseline_path(directory: Path, spec_text: str, short_id: str) -> Path:
    """A readable file name that stays unique for specs with the same short id."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", short_id).strip("-")[:60]
    digest = hashlib.sha256(spec_text.encode()).hexdigest()[:8]
    return directory / f"{slug}-{digest}.json"


def bench_id(nodeid: str, name: str) -> str:
    return f"{nodeid}::{name}" if name else nodeid


def load_baseline(path: Path) -> BaselineFile | None:
    """The stored baseline at ``path``, ``None`` if there is none; :class:`BaselineError` if it
    exists but cannot be trusted."""
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(
            f"baseline file {path} is unreadable or corrupt ({exc}); fix or delete it "
            "(it is never overwritten automatically)"
        ) from exc
    try:
        version = doc["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise TypeError(f"schema_version must be a positive integer, not {version!r}")
        if version > SCHEMA_VERSION:
            raise BaselineError(
                f"baseline file {path} has schema_version {version!r}, newer than this "
                f"pytest-llmperf understands ({SCHEMA_VERSION}); upgrade pytest-llmperf"
            )
        benchmarks = {
            key: StoredBenchmark(dict(entry["params"]), list(entry["runs"]))
            for key, entry in doc["benchmarks"].items()
        }
        for entry in benchmarks.values():
            for run in entry.runs:
                for values in run["samples"].values():
                    if not all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
                    ):
                        raise TypeError("samples must be numbers")
        return BaselineFile(
            path,
            str(doc["backend"]),
            dict(doc["key"]["strict"]),
            dict(doc["key"]["soft"]),
            benchmarks,
            _load_quality(doc.get("quality")),
        )
    except BaselineError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BaselineError(
            f"baseline file {path} does not have the expected structure ({exc!r}); fix or "
            "delete it (it is never overwritten automatically)"
        ) from exc


def _load_quality(section: Any) -> dict[str, Any] | None:
    if section is None:
        return None
    judge, version, verdicts = section["judge"], section["prompt_version"], section["verdicts"]
    if not isinstance(judge, str) or not isinstance(version, str):
        raise TypeError("quality judge and prompt_version must be strings")
    for verdict in verdicts.values():
        score = verdict["score"]
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise TypeError("quality scores must be numbers")
        if not isinstance(verdict["response"], str):
            raise TypeError("quality responses must be strings")
    return dict(section)


def _quality_section(
    existing: dict[str, Any] | None, quality: list[dict[str, Any]], created: str, commit: str | None
) -> tuple[dict[str, Any] | None, list[str]]:
    """The stored verdicts updated with this run's: per id when the judge is the same, all
    anew when it changed (scores of two judges must not be mixed)."""
    if not quality:
        return existing, []
    judge, version = quality[0]["judge"], quality[0]["prompt_version"]
    notes: list[str] = []
    verdicts: dict[str, Any] = {}
    if existing is not None:
        if (existing["judge"], existing["prompt_version"]) == (judge, version):
            verdicts = dict(existing["verdicts"])
        else:
            notes.append(
                f"replaced the quality baseline judged by {existing['judge']} (prompt v"
                f"{existing['prompt_version']}) with verdicts of {judge} (prompt v{version})"
            )
    for entry in quality:
        verdicts[f"{entry['nodeid']}#{entry['call']}"] = {
            k: entry.get(k)
            for k in (
                "nodeid",
                "call",
                "score",
                "scores",
                "ratings",
                "prompt",
                "response",
                "rubric",
                "reference",
            )
        }
    section = {
        "judge": judge,
        "prompt_version": version,
        "created": created,
        "commit": commit,
        "verdicts": dict(sorted(verdicts.items())),
    }
    return section, notes


def describe_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``["cpu_model: 'AMD EPYC' -> 'Intel Xeon'", ...]`` for every key that differs."""
    return [
        f"{key}: {stored.get(key)!r} -> {current.get(key)!r}"
        for key in sorted(set(stored) | set(current))
        if stored.get(key) != current.get(key)
    ]


def save_baseline(
    existing: BaselineFile | None,
    path: Path,
    *,
    backend: str,
    key: dict[str, Any],
    results: list[dict[str, Any]],
    commit: str | None,
    keep: int,
    quality: list[dict[str, Any]] | None = None,
) -> list[str]:
    """Add this run's samples to the stored baseline (atomically); returns notes for the user.

    A benchmark whose parameters changed, or a file whose strict key no longer matches,
    starts afresh: runs measured under other conditions must not be pooled with these.
    """
    notes: list[str] = []
    benchmarks: dict[str, StoredBenchmark] = {}
    if existing is not None:
        differences = describe_differences(existing.strict, key["strict"])
        if differences:
            notes.append(
                f"{path.name}: replaced runs stored under another setup ({'; '.join(differences)})"
            )
        else:
            benchmarks = dict(existing.benchmarks)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for result in results:
        bid = bench_id(result["nodeid"], result["name"])
        run = {
            "created": created,
            "commit": commit,
            "samples": {m: result["samples"][m] for m in STORED_METRICS if m in result["samples"]},
        }
        entry = benchmarks.get(bid)
        if entry is None or entry.params != result["params"]:
            entry = StoredBenchmark(result["params"], [])
        benchmarks[bid] = StoredBenchmark(entry.params, [*entry.runs, run][-keep:])
    quality_section, quality_notes = _quality_section(
        existing.quality if existing is not None else None, quality or [], created, commit
    )
    notes += [f"{path.name}: {note}" for note in quality_notes]
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "backend": backend,
        "updated": created,
        "key": key,
        "benchmarks": {
            bid: {"params": entry.params, "runs": entry.runs}
            for bid, entry in sorted(benchmarks.items())
        },
    }
    if quality_section is not None:
        doc["quality"] = quality_section
    # Baselines are committed to repositories: no key may ride along in a spec's URL, a test id
    # or a judged answer.
    write_json_atomic(path, redact(doc))
    return notes
