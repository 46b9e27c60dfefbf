"""The run history (``--llm-history=DIR``): one results document per run, never rewritten.

Writing: each run gets a new file named ``<created UTC>_<commit>_<random>.json``. The document
is written and fsynced under a hidden temporary name first, then hard-linked to its final name,
which fails if that name exists (a link never replaces a file). So a reader sees either no file
or the whole one, and two runs that finish at once never clobber each other: a name collision
just draws another random suffix. On file systems without hard links the final name is claimed
with ``O_CREAT | O_EXCL`` and the full file renamed over that empty claim; readers then report an
empty file as one still being written.

Reading: :func:`read_document` checks one file and raises :class:`ResultsFileError` with a
one-line reason; :func:`load_history` reads a directory and returns the readable runs, oldest
first, and one line per file it skipped (corrupt, truncated, another schema): skipped files are
never silently included and never crash the reader.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._doc_check import (
    check_backend,
    check_environment,
    check_quality,
    check_quality_gate,
    check_result,
    check_source,
    parse_time,
)
from .errors import ResultsFileError
from .numeric import json_dumps, json_loads
from .results import SCHEMA_VERSION, STALE_TEMP_S, finite_document, remove_stale_temps

__all__ = [
    "History",
    "HistoryRun",
    "append_run",
    "check_document",
    "load_history",
    "read_document",
    "read_json",
    "run_commits",
]

_ATTEMPTS = 20
_TEMP_PREFIX = ".llmperf-"
_COMMIT = re.compile(r"[0-9a-f]{7,40}")


def append_run(directory: Path, document: dict[str, Any]) -> Path:
    """Add ``document`` to the history in ``directory`` as a new file and return its path.

    A NaN or infinity is written as null and listed under ``"nonfinite"`` (see
    :func:`.results.finite_document`); temporary files that killed writers left here are
    removed once they are :data:`.results.STALE_TEMP_S` old. There is no lock on a history
    (each run writes its own file), so age is what tells a dead writer's file from one still
    being written.
    """
    # Serialise first: an unserialisable value fails before anything touches the disk.
    text = json_dumps(finite_document(document)) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(directory, prefix=_TEMP_PREFIX, suffix=".tmp", older_than=STALE_TEMP_S)
    fd, tmp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        # backslashreplace: a lone surrogate becomes its JSON escape, as in write_text_atomic.
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the history from a CI's other users
        stem = _stem(document)
        for _ in range(_ATTEMPTS):
            path = directory / f"{stem}_{secrets.token_hex(4)}.json"
            try:
                _publish(tmp, path)
            except FileExistsError:
                continue
            _fsync_directory(directory)
            return path
        raise FileExistsError(f"{_ATTEMPTS} names starting {stem}_ in {directory} were all taken")
    finally:
        tmp.unlink(missing_ok=True)


def _stem(document: dict[str, Any]) -> str:
    created = _created(document) or datetime.now(timezone.utc)
    commits = run_commits(document)
    commit = commits[0][:12] if len(commits) == 1 else ("mixed" if commits else "nocommit")
    return f"{created.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}_{commit}"


def _publish(tmp: Path, path: Path) -> None:
    """Give the complete file ``tmp`` the name ``path`` unless ``path`` exists."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except (NotImplementedError, PermissionError, OSError):
        pass  # no hard links here (some network and FAT file systems): claim the name instead
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    os.replace(tmp, path)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open directories; its rename is durable enough
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json(path: Path) -> Any:
    """The JSON value in ``path``; :class:`ResultsFileError` naming the file if there is none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ResultsFileError(f"{path} is a directory, not a results file") from None
    except OSError as exc:
        raise ResultsFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise ResultsFileError(
            f"{path} is empty (a run still writing it, or a write that was cut short)"
        )
    try:
        return json_loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ResultsFileError(f"{path} is not UTF-8 text, so not a results file") from None
    except json.JSONDecodeError as exc:
        raise ResultsFileError(
            f"{path} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
            "truncated or corrupt"
        ) from None
    except ValueError as exc:  # NaN, a number out of range, nesting too deep
        raise ResultsFileError(f"{path} cannot be a results file: {exc}") from None


def read_document(path: Path) -> dict[str, Any]:
    """The results document in ``path``, checked; :class:`ResultsFileError` if it is unusable."""
    document = read_json(path)
    problem = check_document(document)
    if problem:
        raise ResultsFileError(f"{path}: {problem}")
    assert isinstance(document, dict)
    return document


def check_document(document: Any) -> str | None:
    """What makes ``document`` unusable as a results document, or ``None`` if it is fine."""
    if not isinstance(document, dict):
        return f"not a pytest-llmperf results document (a JSON {type(document).__name__})"
    if "schema_version" not in document:
        hint = ""
        if "benchmarks" in document:
            hint = " (a baseline file or pytest-benchmark JSON? use the --llm-json output)"
        return f"not a pytest-llmperf results document: no schema_version{hint}"
    version = document["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        return f"schema_version {version!r} is not an integer"
    if version > SCHEMA_VERSION:
        return (
            f"schema_version {version} is newer than this pytest-llmperf understands "
            f"({SCHEMA_VERSION}); upgrade pytest-llmperf"
        )
    if version != SCHEMA_VERSION:
        return f"schema_version {version} is not supported (expected {SCHEMA_VERSION})"
    if _created(document) is None:
        return f"'created' is not an ISO-8601 time: {document.get('created')!r}"
    for key in ("results", "backends", "quality", "quality_gate"):
        items = document.get(key, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return f"'{key}' is not a list of objects"
        for index, item in enumerate(items):
            problem = _ENTRY_CHECKS[key](item)
            if problem:
                return f"{key}[{index}] {problem}"
    for key in ("environment", "settings"):
        if not isinstance(document.get(key, {}), dict):
            return f"'{key}' is not an object"
    problem = check_environment(document.get("environment", {}))
    if problem:
        return f"'environment' {problem}"
    for key, kind in (("command", list), ("plugin", dict), ("backend_errors", dict)):
        if not isinstance(document.get(key, kind()), kind):
            return f"'{key}' is not {'a list' if kind is list else 'an object'}"
    if not all(isinstance(m, str) for m in document.get("backend_errors", {}).values()):
        return "'backend_errors' is not an object of messages"
    if "sources" in document:  # written by llmperf merge
        return _check_sources(document)
    return None


def _check_sources(document: dict[str, Any]) -> str | None:
    sources = document["sources"]
    if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources):
        return "'sources' is not a list of objects"
    for index, source in enumerate(sources):
        problem = check_source(source)
        if problem:
            return f"sources[{index}] {problem}"
    for key in ("results", "backends", "quality", "quality_gate"):
        for index, item in enumerate(document.get(key, [])):
            source = item.get("source")
            if not (isinstance(source, int) and 0 <= source < len(sources)):
                return f"{key}[{index}] has no valid 'source' index ({source!r})"
    return None


_ENTRY_CHECKS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "results": check_result,
    "backends": check_backend,
    "quality": check_quality,
    "quality_gate": check_quality_gate,
}


def _created(document: dict[str, Any]) -> datetime | None:
    return parse_time(document.get("created"))


def run_commits(document: dict[str, Any]) -> list[str]:
    """The git commit(s) a run measured (pytest-benchmark's ``commit_info``), in order.

    A merged document lists each source's; runs outside a git checkout have none.
    """
    environments = [s.get("environment") for s in document.get("sources") or []]
    if not environments:
        environments = [document.get("environment")]
    found: list[str] = []
    for env in environments:
        info = env.get("commit_info") if isinstance(env, dict) else None
        commit = str(info.get("id") or "") if isinstance(info, dict) else ""
        if _COMMIT.fullmatch(commit) and commit not in found:
            found.append(commit)
    return found


@dataclass(frozen=True)
class HistoryRun:
    """One readable run of the history."""

    path: Path
    document: dict[str, Any]
    created: datetime
    commits: tuple[str, ...]

    @property
    def commit(self) -> str:
        """Short commit for display: ``abc1234def``, ``abc1234+def5678`` or ``-``."""
        return "+".join(c[:10] for c in self.commits) or "-"


@dataclass
class History:
    runs: list[HistoryRun] = field(default_factory=list)
    #: One line per file that was skipped, naming it and why.
    problems: list[str] = field(default_factory=list)


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def load_history(directory: Path) -> History:
    """Every ``*.json`` in ``directory``, oldest first; unusable files go to ``problems``.

    Raises :class:`ResultsFileError` if ``directory`` is missing or not a directory.
    """
    if not directory.exists():
        raise ResultsFileError(f"history directory {directory} does not exist")
    if not directory.is_dir():
        raise ResultsFileError(f"{directory} is not a directory (expected an --llm-history DIR)")
    history = History()
    order: dict[Path, tuple[datetime, int, str]] = {}
    # Hidden names are temporary files of runs still writing (see append_run).
    for path in sorted(p for p in directory.glob("*.json") if not p.name.startswith(".")):
        try:
            document = read_document(path)
        except ResultsFileError as exc:
            history.problems.append(f"skipped {exc}")
            continue
        created = _created(document)
        assert created is not None  # checked by read_document
        history.runs.append(HistoryRun(path, document, created, tuple(run_commits(document))))
        # "created" has whole seconds: runs within one second go by when their file was written.
        order[path] = (created, _mtime_ns(path), path.name)
    history.runs.sort(key=lambda run: order[run.path])
    return history
