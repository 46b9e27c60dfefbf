"""``llmperf merge``: results from several machines or CI matrix jobs as one document.

The merged document has the same schema (``schema_version`` 1) plus a ``sources`` list, one
entry per input run: ``{file, created, command, plugin, settings, environment, machine}``. Every
result, backend record, quality verdict and quality-gate entry gets ``source``, the index of the
run it came from. Top-level ``environment`` and ``settings`` are the first source's (so readers
that know nothing of merging still find them), ``created`` is the latest source's (when the
results were complete) and ``command`` is the merge's own.

A merged document can be merged again: its sources are carried over, not nested. Refused, with
the reason: inputs of different ``schema_version``, and a benchmark + backend that appears in
two inputs from the same machine (the same results twice, or a run split in a way that cannot
be told apart); the same for a judged test's llm_judge call and for a backend's quality-gate
verdict. From different machines both are kept, that backend's id and spec suffixed with the
machine (``llamacpp:gemma@ci-a``, ``llamacpp:gemma@ci-b``) in its results, judge verdicts,
quality-gate verdict and backend record, so every reader keeps them apart, whichever it keys by.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib.metadata import version
from typing import Any

from .baseline import bench_id
from .errors import ResultsFileError
from .history import check_document
from .results import SCHEMA_VERSION

__all__ = ["machine_label", "merge_documents"]

_LISTS = ("results", "backends", "quality", "quality_gate")


def machine_label(environment: Any) -> str:
    """The host name a run recorded (pytest-benchmark's ``machine_info.node``), else its CPU."""
    env: dict[str, Any] = environment if isinstance(environment, dict) else {}
    info = env.get("machine_info")
    info = info if isinstance(info, dict) else {}
    return str(info.get("node") or env.get("cpu_model") or "unknown machine")


def _machine_key(environment: Any) -> tuple[str, str, str]:
    env = environment if isinstance(environment, dict) else {}
    return (machine_label(env), str(env.get("cpu_model")), str(env.get("gpus")))


def _flatten(label: str, document: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(source record, its part of the document)`` per run in ``document``."""
    if "sources" not in document:
        record = {
            "file": label,
            "created": document["created"],
            "command": document.get("command", []),
            "plugin": document.get("plugin", {}),
            "settings": document.get("settings", {}),
            "environment": document.get("environment", {}),
        }
        whole: dict[str, Any] = {key: list(document.get(key, [])) for key in _LISTS}
        whole["backend_errors"] = dict(document.get("backend_errors", {}))
        return [(record, whole)]
    out: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for index, source in enumerate(document["sources"]):
        record = {**source, "file": f"{label}:{source.get('file', index)}"}
        part: dict[str, Any] = {
            key: [item for item in document.get(key, []) if item.get("source") == index]
            for key in _LISTS
        }
        # Errors are not per source in a merged document: keep them with its first source.
        part["backend_errors"] = dict(document.get("backend_errors", {})) if index == 0 else {}
        out.append((record, part))
    return out


def merge_documents(inputs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """Merge ``(label, document)`` pairs (label: usually the file name) into one document.

    Raises :class:`ResultsFileError` naming the input and the reason when they cannot be merged.
    """
    if len(inputs) < 2:
        raise ResultsFileError("merge needs at least two result files")
    for label, doc in inputs:
        if not isinstance(doc, dict) or "schema_version" not in doc:
            raise ResultsFileError(f"{label}: {check_document(doc)}")
    versions = {label: doc["schema_version"] for label, doc in inputs}
    if len(set(map(repr, versions.values()))) > 1:
        listed = ", ".join(f"{label} has {v!r}" for label, v in versions.items())
        raise ResultsFileError(f"cannot merge files of different schema_version: {listed}")
    for label, doc in inputs:
        problem = check_document(doc)
        if problem:
            raise ResultsFileError(f"{label}: {problem}")
    parts = [pair for label, doc in inputs for pair in _flatten(label, copy.deepcopy(doc))]
    for record, _ in parts:
        record["machine"] = machine_label(record["environment"])
    _separate(parts)
    merged: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "plugin": {"name": "pytest-llmperf", "version": version("pytest-llmperf")},
        "created": max((r["created"] for r, _ in parts), key=_when),
        "merged": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv),
        "settings": parts[0][0].get("settings", {}),
        "environment": parts[0][0]["environment"],
        "sources": [record for record, _ in parts],
        "backend_errors": {},
    }
    for key in _LISTS:
        merged[key] = [
            {**item, "source": index} for index, (_, part) in enumerate(parts) for item in part[key]
        ]
    for record, part in parts:
        for spec, message in part["backend_errors"].items():
            previous = merged["backend_errors"].get(spec)
            text = f"{message} (on {record['machine']})"
            merged["backend_errors"][spec] = f"{previous}; {text}" if previous else text
    return merged


def _when(created: str) -> datetime:
    when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _keys(part: dict[str, Any]) -> set[tuple[str, str | None]]:
    """What the part measured or judged, as ``(what, backend id)``: a benchmark, a judge
    verdict (test + llm_judge call), a backend's quality-gate verdict."""
    keys = {(bench_id(r["nodeid"], r.get("name") or ""), r["backend_id"]) for r in part["results"]}
    keys |= {
        (f"{q['nodeid']} (llm_judge call {q.get('call', 0)})", q["backend_id"])
        for q in part["quality"]
    }
    keys |= {("the quality gate", g["backend_id"]) for g in part["quality_gate"]}
    return keys


def _separate(parts: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Refuse a benchmark + backend (or a judged call, or a quality-gate verdict) twice from
    one machine; from several, suffix that backend's id and spec with the machine."""
    seen: dict[tuple[str, str | None], list[int]] = {}
    for index, (_, part) in enumerate(parts):
        for key in _keys(part):
            seen.setdefault(key, []).append(index)
    clashing: dict[str, set[int]] = {}
    for (what, backend_id), where in sorted(seen.items(), key=lambda kv: str(kv[0])):
        if len(where) < 2:
            continue
        machines = [_machine_key(parts[i][0]["environment"]) for i in where]
        for i, a in enumerate(where):
            for j in range(i + 1, len(where)):
                b = where[j]
                if machines[i] == machines[j]:
                    raise ResultsFileError(
                        f"cannot merge: {what} [{backend_id or 'no backend'}] is in both "
                        f"{parts[a][0]['file']} and {parts[b][0]['file']}, which ran on the same "
                        f"machine ({parts[a][0]['machine']}); merge different benchmarks or "
                        "machines, or drop one file"
                    )
        if backend_id is not None:  # a judged test without llm_backend has nothing to suffix
            clashing.setdefault(backend_id, set()).update(where)
    for backend_id, indices in clashing.items():
        names = [parts[i][0]["machine"] for i in sorted(indices)]
        for i in sorted(indices):
            machine = parts[i][0]["machine"]
            # Same host name, different hardware (a re-provisioned runner): number them.
            suffix = machine if names.count(machine) == 1 else f"{machine}#{i}"
            _rename(parts[i][1], backend_id, suffix)


def _rename(part: dict[str, Any], old: str, suffix: str) -> None:
    """Give backend ``old`` (its id and its spec) the machine ``suffix`` throughout ``part``:
    readers key some tables by id and others by spec, and must keep machines apart in both."""
    for item in part["results"] + part["quality"] + part["quality_gate"]:
        if item.get("backend_id") == old:
            item["backend_id"] = f"{old}@{suffix}"
            if isinstance(item.get("backend"), str):
                item["backend"] = f"{item['backend']}@{suffix}"
    for record in part["backends"]:
        if record.get("id") == old:
            record["id"] = f"{old}@{suffix}"
            if isinstance(record.get("spec"), str):
                record["spec"] = f"{record['spec']}@{suffix}"
