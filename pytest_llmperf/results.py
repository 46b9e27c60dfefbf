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
                       pairs[{id, current, baseline}]}]}
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "build_document", "write_json_atomic", "write_text_atomic"]

SCHEMA_VERSION = 1


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


def write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` so readers see the old file or the whole new one.

    Serialising happens before the temporary file exists (``allow_nan=False`` rejects a stray
    NaN rather than writing invalid JSON), and the rename is atomic on POSIX and Windows.
    """
    write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False, ensure_ascii=False))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (plus a final newline) so readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; a report is meant to be read (served, uploaded) like
        # any file this user creates.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask
