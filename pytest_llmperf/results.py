"""The JSON results file: its schema and an atomic writer.

Schema (``schema_version`` 1)::

    {"schema_version": 1, "plugin": {"name", "version"}, "created": ISO-8601 UTC,
     "command": [argv...],
     "settings": {"runs" (N or "auto"), "looks", "warmup", "alpha", "tolerances", "compare_to",
                  "judge" (spec or null), "judge_repeats", "judge_prompt_version",
                  "fail_on", "quality_margin", "rejudge_baseline"},
     "environment": {cpu_model, cpu_count, ram_bytes, gpus, os, python, libraries{},
                     machine_info{} (pytest-benchmark), commit_info{} (pytest-benchmark)},
     "backends": [{spec, id, kind, model, role (candidate|reference|judge), worker, load_s,
                   library, library_version, options{}, model_file{path, size, sha256},
                   key{strict{}, soft{}}}],
     "backend_errors": {spec: message},
     "results": [{name, nodeid, backend, backend_id, params{}, runs, warmup,
                  worker (the xdist worker that ran it, e.g. "gw0"; "main" without xdist),
                  stats{metric: {n, median, mean, stdev, min, max, p90, p95, p99}},
                  missing{metric: n}, samples{metric: [...]}, generations[{...}],
                  reference_generations[{...}] (relative mode),
                  gate: null | {verdict, mode (stored|relative), against, samples, looks,
                                comparisons, p_sequential{metric}, p_holm{metric},
                                p_by{metric}, metrics[{metric, verdict, ratio, ci_low,
                                ci_high, p_slowdown, p_improvement, p_no_slowdown,
                                tolerance, effective_tolerance, n_current, n_baseline,
                                runs_to_settle, note}], warnings[], confirmation,
                                reason (REFUSED),
                                baseline_samples{metric: [...]} (stored mode: the pooled
                                stored samples the metrics were compared with)}}],
     "quality": [{nodeid, backend (spec, null without llm_backend), backend_id, score (0-100,
                  mean over repeats), scores[], ratings[] (1-10), spread{sd, min, max},
                  reason, judge, prompt_version, cached, min_score (null without the marker),
                  call (index of the llm_judge call in the test), prompt, response, rubric,
                  reference}],
     "quality_gate": [{backend, backend_id, verdict (PASS|REGRESSION|INCONCLUSIVE|REFUSED),
                       n_pairs, margin, alpha, mean_diff, ci_low, ci_high (90% bootstrap),
                       p_noninferior, p_regression, method, judge, baseline_judge,
                       prompt_version, baseline_prompt_version, rejudged, reason,
                       pairs[{id, current, baseline}]}]},
     "interrupted": true (only when the session was interrupted: Ctrl-C, KeyboardInterrupt,
                   pytest.exit; the results are those of the tests that finished),
     "nonfinite": {PATH: "nan" | "inf" | "-inf"} (only when a value was not a finite number:
                  it is written as null, and PATH, e.g. "results[3].gate.metrics[0].ratio",
                  says where and what it was)}

Every writer here goes through :func:`finite_document`, so one degenerate number becomes a null
with its reason instead of losing the whole file. A writer killed mid-write (SIGKILL) leaves
its hidden temporary file (``.NAME.XXXXXXXX.tmp``); the next write of ``NAME`` removes those
older than :data:`STALE_TEMP_S`.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .numeric import json_dumps, json_safe

__all__ = [
    "SCHEMA_VERSION",
    "STALE_TEMP_S",
    "build_document",
    "finite_document",
    "remove_stale_temps",
    "write_json_atomic",
    "write_text_atomic",
]

SCHEMA_VERSION = 1
#: A temporary file of ours older than this is a killed writer's: a write takes well under a
#: second, so 15 minutes leaves room for a stalled network disk and for clocks a little apart.
STALE_TEMP_S = 15 * 60


def build_document(
    *,
    settings: dict[str, Any],
    environment: dict[str, Any],
    backends: list[dict[str, Any]],
    backend_errors: dict[str, str],
    results: list[dict[str, Any]],
    quality: list[dict[str, Any]] | None = None,
    quality_gate: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "plugin": {"name": "pytest-llmperf", "version": version("pytest-llmperf")},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "settings": settings,
        "environment": environment,
        "backends": backends,
        "backend_errors": backend_errors,
        "results": results,
        "quality": quality or [],
        "quality_gate": quality_gate or [],
    }


def finite_document(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with every NaN or infinity replaced by ``None``, and where each one was
    (and what) under ``"nonfinite"``: a degenerate metric must not make the encoder refuse,
    and so lose, the whole file."""
    safe, replaced = json_safe(document)
    if replaced:
        earlier = safe.get("nonfinite")
        safe["nonfinite"] = {**(earlier if isinstance(earlier, dict) else {}), **replaced}
    return dict(safe)


def write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` so readers see the old file or the whole new one.

    Serialising happens before the temporary file exists (a value JSON cannot hold fails
    before anything touches the disk), and the rename is atomic on POSIX and Windows.
    """
    write_text_atomic(path, json_dumps(finite_document(document)))


def write_text_atomic(path: Path, text: str, *, stale_after: float = STALE_TEMP_S) -> None:
    """Write ``text`` (plus a final newline) so readers see the old file or the whole new one.

    Temporary files of earlier writes of ``path`` older than ``stale_after`` seconds are removed
    first (a caller holding a lock on ``path`` passes 0: no other writer can be in flight).
    A lone surrogate (text decoded with ``surrogateescape``) is written as its ``\\udcXX``
    escape, which JSON reads back as the same string, rather than failing the whole file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    remove_stale_temps(path.parent, prefix=prefix, suffix=".tmp", older_than=stale_after)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; a report is meant to be read (served, uploaded) like
        # any file this user creates.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(
    directory: Path, *, prefix: str, suffix: str, older_than: float
) -> list[Path]:
    """Remove ``directory``'s temporary files named as :func:`tempfile.mkstemp` names them with
    ``prefix`` and ``suffix`` (8 random characters between) and not modified for
    ``older_than`` seconds (any age when it is 0); returns what was removed. Nothing else is
    ever touched, and a file that cannot be removed is left for the next time."""
    name = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}" + re.escape(suffix))
    now = time.time()
    removed = []
    try:
        candidates = [p for p in directory.iterdir() if name.fullmatch(p.name)]
    except OSError:
        return []
    for candidate in candidates:
        try:
            if older_than <= 0 or now - candidate.lstat().st_mtime >= older_than:
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue  # gone already (another run cleaned it), or not ours to remove
    return removed


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask
