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
name, kernel, Python) only warns.

Reading is strict (:func:`.numeric.json_loads`: no NaN or Infinity, no number out of range, no
deep nesting) and checks every stored number the gate will use: samples finite and >= 0, a
``created`` time on every run, at least one run per benchmark, quality scores within 0-100. A
file that fails is a :class:`BaselineError` naming it, raised at session start (before any
test), and the file is never overwritten.

Saving (:func:`save_baseline`) takes the lock beside the file (``.NAME.lock``, see
:mod:`._file_lock`; removed again on release), re-reads the file under it, merges this run in,
writes atomically and releases: runs saved by other processes in the meantime are kept. Under
the lock no other save of this file can be in flight, so temporary files of earlier saves
(``.NAME.XXXXXXXX.tmp``, left by a killed run) are removed then.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Any

from ._baseline_check import SCHEMA_VERSION, Unusable, check_baseline
from ._file_lock import LockTimeout, exclusive
from .errors import BaselineError
from .harness import SCALAR_METRICS
from .numeric import check_samples, json_dumps, json_loads
from .redact import redact
from .results import remove_stale_temps, write_text_atomic

__all__ = [
    "LOCK_TIMEOUT_S",
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

#: Samples a baseline keeps: the timing metrics and output length (not machine bookkeeping).
#: Every one is >= 0 (a latency, a count, a rate; a throughput window with no completion is 0).
STORED_METRICS = (
    *(m for m in SCALAR_METRICS if m not in ("prompt_tokens", "cpu_s", "peak_rss_mb")),
    # llm_load's per-window throughputs (absent from llm_bench results).
    "throughput_rps",
    "output_tps",
)
#: How long a save waits for another process's save of the same file (each takes well under a
#: second; a lock held this long belongs to a run that hangs).
LOCK_TIMEOUT_S = 120.0
_NEVER_OVERWRITTEN = "fix or delete it (it is never overwritten automatically)"


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
    #: When the file was last saved (its ``updated``), to tell that another run saved since.
    updated: str | None = None


def baseline_path(directory: Path, spec_text: str, short_id: str) -> Path:
    """A readable file name that stays unique for specs with the same short id."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", short_id).strip("-")[:60]
    # surrogatepass: a spec read from a non-UTF-8 command line still names one file.
    digest = hashlib.sha256(spec_text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return directory / f"{slug}-{digest}.json"


def bench_id(nodeid: str, name: str) -> str:
    return f"{nodeid}::{name}" if name else nodeid


def load_baseline(path: Path) -> BaselineFile | None:
    """The stored baseline at ``path``, ``None`` if there is none; :class:`BaselineError` if it
    exists but cannot be trusted."""
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(
            f"baseline file {path} is unreadable or corrupt ({exc}); {_NEVER_OVERWRITTEN}"
        ) from exc
    try:
        return _parse(path, text)
    except Unusable as exc:
        raise BaselineError(f"baseline file {path} {exc}; {_NEVER_OVERWRITTEN}") from None


def _parse(path: Path, text: str) -> BaselineFile:
    try:
        doc = json_loads(text)
    except ValueError as exc:  # json.JSONDecodeError is one, and so is NaN or 10**400
        raise Unusable("is unreadable or corrupt", str(exc)) from None
    check_baseline(doc)
    updated = doc.get("updated")
    return BaselineFile(
        path,
        str(doc["backend"]),
        dict(doc["key"]["strict"]),
        dict(doc["key"]["soft"]),
        {
            key: StoredBenchmark(dict(entry["params"]), list(entry["runs"]))
            for key, entry in doc["benchmarks"].items()
        },
        None if doc.get("quality") is None else dict(doc["quality"]),
        updated if isinstance(updated, str) else None,
    )


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

    ``existing`` is the file as this session read it at its start: the save itself re-reads
    the file under the lock and merges into that, so runs another process saved meanwhile are
    kept (and a note says so). A benchmark whose parameters changed, or a file whose strict key
    no longer matches, starts afresh: runs measured under other conditions must not be pooled
    with these. :class:`BaselineError` (one line, the file left as it was) if the file became
    unusable, the lock cannot be had, or what would be written could not be read back.
    """
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    notes: list[str] = []
    runs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for result in results:
        bid = bench_id(result["nodeid"], result["name"])
        samples, dropped = _stored_samples(bid, result["samples"])
        notes += [f"{path.name}: {line}" for line in dropped]
        runs[bid] = (result["params"], {"created": created, "commit": commit, "samples": samples})
    try:
        with exclusive(path, timeout=LOCK_TIMEOUT_S):
            remove_stale_temps(path.parent, prefix=f".{path.name}.", suffix=".tmp", older_than=0)
            current = load_baseline(path)
            if current is not None and (existing is None or existing.updated != current.updated):
                notes.append(
                    f"{path.name}: another run saved to it while this one ran; its runs were kept"
                )
            doc, merge_notes = _merged(current, path, backend, key, runs, keep, created)
            quality_section, quality_notes = _quality_section(
                current.quality if current is not None else None, quality or [], created, commit
            )
            if quality_section is not None:
                doc["quality"] = quality_section
            # Baselines are committed to repositories: no key may ride along in a spec's URL, a
            # test id or a judged answer.
            text = json_dumps(redact(doc))
            try:
                _parse(path, text)  # never write a file that the next run would refuse
            except Unusable as exc:
                raise BaselineError(
                    f"not saving {path}: this run's baseline would not load again ({exc}); the "
                    "file was left as it was"
                ) from None
            write_text_atomic(path, text, stale_after=0)
    except LockTimeout as exc:
        raise BaselineError(f"could not save {path}: {exc}; nothing was written") from None
    return notes + merge_notes + [f"{path.name}: {note}" for note in quality_notes]


def _stored_samples(bid: str, samples: dict[str, Any]) -> tuple[dict[str, list[Any]], list[str]]:
    """The samples a baseline keeps, and a note per metric left out because one of its samples
    could not be a measurement (a NaN): a stored one would stop every later run."""
    kept: dict[str, list[Any]] = {}
    dropped: list[str] = []
    for metric in STORED_METRICS:
        if metric not in samples:
            continue
        try:
            check_samples(samples[metric], what=metric, nonnegative=True)
        except ValueError as exc:
            dropped.append(f"{bid}: {metric} not stored ({exc})")
        else:
            kept[metric] = list(samples[metric])  # as measured: counts stay integers
    return kept, dropped


def _merged(
    current: BaselineFile | None,
    path: Path,
    backend: str,
    key: dict[str, Any],
    runs: dict[str, tuple[dict[str, Any], dict[str, Any]]],
    keep: int,
    created: str,
) -> tuple[dict[str, Any], list[str]]:
    """The document: ``current``'s benchmarks with this run's appended, the last ``keep``
    pooled per benchmark."""
    notes: list[str] = []
    benchmarks: dict[str, StoredBenchmark] = {}
    if current is not None:
        differences = describe_differences(current.strict, key["strict"])
        if differences:
            notes.append(
                f"{path.name}: replaced runs stored under another setup ({'; '.join(differences)})"
            )
        else:
            benchmarks = dict(current.benchmarks)
    for bid, (params, run) in runs.items():
        entry = benchmarks.get(bid)
        if entry is None or entry.params != params:
            entry = StoredBenchmark(params, [])
        benchmarks[bid] = StoredBenchmark(entry.params, [*entry.runs, run][-keep:])
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
    return doc, notes
