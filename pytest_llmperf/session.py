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
from .errors import BackendUnavailable, LLMPerfError, SpecError
from .harness import LLMHandle
from .models import file_sha256
from .options import resolve_options
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
    json_written: Path | None = None
    json_error: str | None = None
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
        for spec in self.settings.specs:
            try:
                cls = self.registry.get(spec)
                backend = cls(spec, resolve_options(spec, cls.options))
                if spec.source != "default":
                    backend.check()
            except SpecError as exc:
                raise pytest.UsageError(str(exc)) from None
            except BackendUnavailable as exc:
                raise pytest.UsageError(f"{spec.source}={spec.raw!r}: {exc}") from None
            self.planned[spec.text] = _Planned(spec, backend)

    def handle(self, spec: LLMSpec) -> LLMHandle:
        """The loaded backend for ``spec``: loaded on first use, once per process."""
        key = spec.text
        if key in self.handles:
            return self.handles[key]
        if key in self.load_errors:
            raise BackendUnavailable(
                f"{spec.short_id} could not start earlier in this run: {self.load_errors[key]}"
            )
        backend = self.planned[key].backend
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
        self.backend_records.append(self._record(handle))
        return handle

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
        return record

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
