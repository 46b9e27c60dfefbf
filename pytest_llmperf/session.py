"""The per-run state: resolved settings, loaded backends and collected results.

One :class:`LLMPerfSession` lives in ``config.stash`` for the whole pytest run (controller and
each xdist worker alike). Workers load backends and run benchmarks; results travel to the
controller on test reports, backend load records on ``workeroutput``; only the controller prints
the summary and writes files.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .backends import Backend, BackendRegistry
from .baseline import (
    BaselineError,
    BaselineFile,
    baseline_path,
    describe_differences,
    load_baseline,
    save_baseline,
)
from .compare import Reference
from .environment import commit_id, comparison_key
from .errors import BackendUnavailable, LLMPerfError, SpecError
from .harness import LLMHandle
from .models import file_sha256
from .options import resolve_options
from .progress import Progress
from .settings import Settings
from .spec import LLMSpec

__all__ = ["SESSION_KEY", "LLMPerfSession", "get_session"]


@dataclass
class _Planned:
    """A spec resolved to its backend class and typed options, not yet loaded."""

    spec: LLMSpec
    backend: Backend


@dataclass
class LLMPerfSession:
    config: pytest.Config
    settings: Settings
    registry: BackendRegistry
    planned: dict[str, _Planned] = field(default_factory=dict)
    handles: dict[str, LLMHandle] = field(default_factory=dict)
    load_errors: dict[str, str] = field(default_factory=dict)
    #: Load records of every backend, from this process and (on the controller) each worker.
    backend_records: list[dict[str, Any]] = field(default_factory=list)
    #: JSON-safe results, gathered from test reports on the controller.
    results: list[dict[str, Any]] = field(default_factory=list)
    #: Stored baselines by spec text (``None``: no file yet), loaded and validated at start.
    baselines: dict[str, BaselineFile | None] = field(default_factory=dict)
    #: Comparison keys of loaded backends, by handle key.
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Gated comparisons the collected tests will make (each benchmark gates two metrics).
    planned_comparisons: int = 0
    #: Lines for the end-of-run summary (baseline saves, Holm review, ...).
    notes: list[str] = field(default_factory=list)
    #: Regressions that only Holm's step-down at the end of the session found.
    regressions_after_review: list[str] = field(default_factory=list)
    #: JSON-safe judge verdicts (see :mod:`.quality`), gathered from test reports.
    quality: list[dict[str, Any]] = field(default_factory=list)
    #: The quality gate's verdicts per backend (see :mod:`.quality_gate`), JSON-safe.
    quality_gate: list[dict[str, Any]] = field(default_factory=list)
    #: Tests skipped because no judge could start, by reason.
    judge_skips: dict[str, int] = field(default_factory=dict)
    #: Output problems (an unwritable JSON path, say), shown in red at the end.
    errors: list[str] = field(default_factory=list)
    #: Output files this run wrote (JSON, HTML, Markdown, history entry ...).
    written: list[Path] = field(default_factory=list)
    #: The sample-by-sample status display (see :mod:`.progress`), set up by plugin.py.
    progress: Progress | None = None
    _reported: set[int] = field(default_factory=set)

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    @property
    def worker_id(self) -> str:
        workerinput: Mapping[str, Any] = getattr(self.config, "workerinput", {})
        return str(workerinput.get("workerid", "main"))

    def plan(self) -> None:
        """Resolve every spec to a backend; pre-flight the ones the user asked for.

        Raises ``pytest.UsageError`` so a bad spec stops the run before any test. The built-in
        default is only checked when a test uses it: installing the plugin must not break
        unrelated test suites on machines without llama.cpp.
        """
        specs = list(self.settings.specs)
        if self.settings.compare_to is not None:
            specs.append(self.settings.compare_to)
        for spec in specs:
            try:
                cls = self.registry.get(spec)
                backend = cls(spec, resolve_options(spec, cls.options))
                if spec.source != "default":
                    backend.check()
            except SpecError as exc:
                raise pytest.UsageError(str(exc)) from None
            except BackendUnavailable as exc:
                raise pytest.UsageError(f"{spec.source}={spec.raw!r}: {exc}") from None
            self.planned.setdefault(spec.text, _Planned(spec, backend))
        judge = self.settings.judge
        if judge is not None:
            # Typed now (a typo is a usage error) but never pre-flighted: a judge that cannot
            # start skips the tests that need it, and must not stop runs that need none.
            try:
                cls = self.registry.get(judge)
                backend = cls(judge, resolve_options(judge, cls.options))
            except SpecError as exc:
                raise pytest.UsageError(str(exc)) from None
            self.planned.setdefault(judge.text, _Planned(judge, backend))
        if self.settings.compare or self.settings.save_baseline:
            self._load_baselines()

    def _load_baselines(self) -> None:
        for spec in self.settings.specs:
            path = baseline_path(self.settings.baseline_dir, spec.text, spec.short_id)
            try:
                self.baselines[spec.text] = load_baseline(path)
            except BaselineError as exc:
                raise pytest.UsageError(str(exc)) from None

    def handle(self, spec: LLMSpec, *, reference: bool = False, judge: bool = False) -> LLMHandle:
        """The loaded backend for ``spec``: loaded on first use, once per process.

        The relative-mode reference and the judge are separate instances even when their spec
        equals a candidate's (an A/A comparison must not share one engine's state).
        """
        role = "reference" if reference else "judge" if judge else "candidate"
        key = {"candidate": "", "reference": "ref ", "judge": "judge "}[role] + spec.text
        if key in self.handles:
            return self.handles[key]
        if key in self.load_errors:
            raise BackendUnavailable(
                f"{spec.short_id} could not start earlier in this run: {self.load_errors[key]}"
            )
        planned = self.planned[spec.text]
        backend = planned.backend
        if role != "candidate":
            backend = type(backend)(planned.spec, resolve_options(spec, type(backend).options))
        started = time.perf_counter()
        try:
            backend.check()
            backend.load()
        except LLMPerfError as exc:
            self.load_errors[key] = str(exc)
            exc.llm_spec = spec.short_id  # type: ignore[attr-defined]
            raise
        load_s = time.perf_counter() - started
        handle = LLMHandle(backend, load_s)
        self.handles[key] = handle
        record = self._record(handle)
        record["role"] = role
        self.backend_records.append(record)
        self.keys[key] = record["key"]
        return handle

    def reference_for(
        self, handle: LLMHandle, bench: str, params: dict[str, Any]
    ) -> Reference | None:
        """What this benchmark is compared with, if anything (see :mod:`.compare`)."""
        s = self.settings
        if s.compare_to is not None:
            other = self.handle(s.compare_to, reference=True)
            return Reference("relative", f"{other.id} (same job, interleaved)", handle=other)
        stored_file = self.baselines.get(handle.spec) if s.compare else None
        if stored_file is None:
            return None
        entry = stored_file.benchmarks.get(bench)
        if entry is None:
            return None
        newest = entry.newest
        commit = f", commit {newest['commit'][:7]}" if newest.get("commit") else ""
        label = f"baseline of {newest['created'][:10]}{commit}; {len(entry.runs)} run(s) pooled"
        ref = Reference("stored", label, stored=entry)
        key = self.keys[handle.spec]
        strict = describe_differences(stored_file.strict, key["strict"])
        soft = describe_differences(stored_file.soft, key["soft"])
        if soft:
            ref.warnings.append(f"baseline from another host or OS: {'; '.join(soft)}")
        if strict and s.across_machines:
            ref.warnings.append(
                "COMPARING ACROSS SETUPS (--llm-compare-across-machines): " + "; ".join(strict)
            )
        elif strict:
            ref.refused = (
                f"{stored_file.path.name} was stored under another setup: {'; '.join(strict)}. "
                "Save a new baseline here (--llm-save-baseline), or compare anyway with "
                "--llm-compare-across-machines"
            )
        elif entry.params != params:
            changed = describe_differences(entry.params, params)
            ref.refused = (
                "the benchmark's workload changed since its baseline "
                f"({'; '.join(c.split(':')[0] for c in changed)} differ); save a new baseline"
            )
        return ref

    @property
    def worker_count(self) -> int:
        workerinput: Mapping[str, Any] = getattr(self.config, "workerinput", {})
        return int(workerinput.get("workercount", 0))

    def _record(self, handle: LLMHandle) -> dict[str, Any]:
        record: dict[str, Any] = {
            "spec": handle.spec,
            "id": handle.id,
            "kind": handle.kind,
            "model": handle.model,
            "worker": self.worker_id,
            "load_s": handle.load_s,
            **handle.backend.info(),
        }
        path = handle.backend.model_file
        if path is not None:
            record["model_file"] = {
                "path": str(path),
                "size": path.stat().st_size,
                "sha256": self._sha256(path),
            }
        record["key"] = comparison_key(record, self.worker_count)
        return record

    def save_baselines(self) -> tuple[list[str], list[str]]:
        """Controller only: store this run's samples and judged answers (for the quality gate)
        for every backend that produced them. Returns notes, and one error line per baseline
        that could not be saved (the others are saved all the same)."""
        commit = commit_id()
        notes: list[str] = []
        errors: list[str] = []
        by_backend: dict[str, list[dict[str, Any]]] = {}
        for result in self.results:
            by_backend.setdefault(result["backend"], []).append(result)
        for spec in self.settings.specs:
            results = by_backend.get(spec.text)
            record = next(
                (
                    r
                    for r in self.backend_records
                    if r["spec"] == spec.text and r["role"] == "candidate"
                ),
                None,
            )
            quality = [e for e in self.quality if e["backend"] == spec.text]
            if (not results and not quality) or record is None:
                continue
            path = baseline_path(self.settings.baseline_dir, spec.text, spec.short_id)
            try:
                notes += save_baseline(
                    self.baselines.get(spec.text),
                    path,
                    backend=spec.text,
                    key=record["key"],
                    results=results or [],
                    commit=commit,
                    keep=self.settings.baseline_keep,
                    quality=quality,
                )
            except BaselineError as exc:
                errors.append(str(exc))
                continue
            except OSError as exc:
                errors.append(f"could not save the baseline {path}: {exc}")
                continue
            judged = f" and {len(quality)} judged answer(s)" if quality else ""
            notes.append(
                f"saved {len(results or ())} benchmark(s){judged} of {spec.short_id} to {path}"
            )
        return notes, errors

    def _sha256(self, path: Path) -> str:
        # Hashing a multi-GB model takes a while; pytest's cache remembers it per file version.
        stat = path.stat()
        cache_key = f"llmperf/sha256/{path.resolve()}"
        version = [stat.st_size, stat.st_mtime_ns]
        cache = getattr(self.config, "cache", None)  # absent under -p no:cacheprovider
        cached = cache.get(cache_key, None) if cache is not None else None
        if isinstance(cached, dict) and cached.get("version") == version:
            return str(cached["sha256"])
        digest = file_sha256(path)
        if cache is not None:
            cache.set(cache_key, {"version": version, "sha256": digest})
        return digest

    def describe_error(self, exc: LLMPerfError) -> str:
        """One line for a test report. pytest re-raises a failed session fixture's exception
        for every test that uses it: show it in full once, then point back to it."""
        spec = getattr(exc, "llm_spec", None)
        if spec is not None and id(exc) in self._reported:
            return f"{spec} could not start (reported at the first test that used it): {exc}"
        self._reported.add(id(exc))
        return f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        for handle in self.handles.values():
            handle.backend.close()
        self.handles.clear()


SESSION_KEY = pytest.StashKey[LLMPerfSession]()


def get_session(config: pytest.Config) -> LLMPerfSession:
    return config.stash[SESSION_KEY]
