"""The callable behind the ``llm_load`` fixture: arguments, sweep, gate, warnings, failure."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any, overload

import pytest

from ._load_args import (
    default_requests,
    is_sweep,
    load_params,
    point_label,
    prompt_list,
    sweep_values,
    workload_keywords,
)
from ._loadgen import LoadPoint, LoadRun, run_load
from .backends import AsyncCapable, Prompt, Request
from .baseline import bench_id
from .compare import GatePolicy, Reference, gate_message
from .errors import GenerationError, LLMPerfWarning
from .gate import Verdict
from .harness import LLMHandle
from .limits import check_load_arguments
from .load import LoadResult, empty_message, error_limit_message, gate_load, relative_label
from .session import get_session
from .suite import LOAD_POINTS_ATTR

__all__ = [
    "ASSUMED_POINTS",
    "COMPARISONS_PER_POINT",
    "DEFAULT_LOAD_MAX_TOKENS",
    "Load",
    "declared_load_skip",
    "no_server_reason",
    "planned_load_comparisons",
    "prompt_list",
]

DEFAULT_LOAD_MAX_TOKENS = 64
#: Warm-up requests (sent at once, before measuring) open this many connections at most.
_MAX_WARMUP = 16
#: Gated comparisons per sweep point: p50 TTFT, window throughput and p95 TTFT.
COMPARISONS_PER_POINT = 3
#: Sweep points assumed for a Python test, whose arguments are only seen when it runs: a
#: typical sweep such as ``concurrency=[1, 4, 16]``. A YAML load case states its own count.
#: A test that turns out to sweep more raises the session's count when it calls (see
#: :meth:`Load._claim`).
ASSUMED_POINTS = 3


def no_server_reason(backend: object) -> str | None:
    """Why ``llm_load`` cannot run on this backend (the skip reason), or None if it can."""
    if isinstance(backend, AsyncCapable):
        return None
    kind = getattr(backend, "kind", type(backend).__name__)
    return (
        f"llm_load needs a backend that talks to a server (openai, bedrock); "
        f"{kind} runs in this process, so there is no serving load to test"
    )


def _planned_backend(item: pytest.Item) -> object | None:
    """The (not yet loaded) backend an item's ``llm_backend`` parameter names, if any."""
    callspec = getattr(item, "callspec", None)
    spec = None if callspec is None else callspec.params.get("llm_backend")
    planned = None if spec is None else get_session(item.config).planned.get(spec.text)
    return None if planned is None else planned.backend


def declared_load_skip(item: pytest.Item) -> str | None:
    """Why a test whose load is declared at collection (a YAML load case) cannot run on its
    backend, or None. Decided before any model loads; a Python test skips when it calls."""
    if getattr(getattr(item, "obj", None), LOAD_POINTS_ATTR, None) is None:
        return None
    backend = _planned_backend(item)
    return None if backend is None else no_server_reason(backend)


def planned_load_comparisons(item: pytest.Item) -> int:
    """The gated comparisons an item's ``llm_load`` calls will make, for the session's alpha
    split: 3 per sweep point; the points are a YAML case's own, else :data:`ASSUMED_POINTS`.
    0 where the backend serves no load (the test will skip)."""
    if "llm_load" not in getattr(item, "fixturenames", ()):
        return 0
    backend = _planned_backend(item)
    if backend is not None and no_server_reason(backend) is not None:
        return 0
    points = getattr(getattr(item, "obj", None), LOAD_POINTS_ATTR, ASSUMED_POINTS)
    return COMPARISONS_PER_POINT * int(points)


class Load:
    """``llm_load(prompts, *, concurrency=1, rate=None, requests=None, duration=None,
    max_tokens=64, name=None, warmup=None, seed=0, temperature=0.0, ignore_eos=None,
    prefix_cache=None, **options)``.

    ``concurrency`` (closed loop) or ``rate`` (open loop, Poisson arrivals, requests/s) may be a
    list: one result per value, in order. With both, ``rate`` sweeps and ``concurrency`` caps
    requests in flight. ``requests`` defaults to ``max(32, 4 x concurrency)`` (closed) or 32
    (open) unless ``duration`` bounds the point instead. ``warmup`` requests (default: the
    point's concurrency, at most 16) are sent together first and not measured.
    ``ignore_eos`` and ``prefix_cache`` default to the spec's (``?ignore_eos=true``,
    ``?prefix_cache=bust``); under ``"bust"`` every request sent, warm-up included, starts with
    its own nonce. Returns one :class:`~pytest_llmperf.load.LoadResult` for one point (a number
    or nothing in ``concurrency`` and ``rate``), a list of them for a sweep (a list, even of
    one value).
    """

    def __init__(
        self, handle: LLMHandle, item: pytest.Item, record: Callable[[LoadResult], None]
    ) -> None:
        self.handle = handle
        self._item = item
        self._record = record
        self._session = get_session(item.config)
        self._calls = 0
        #: Comparisons the session's alpha split already counts for this test, and those its
        #: calls have asked for so far.
        self._budget = planned_load_comparisons(item)
        self._claimed = 0

    # A sweep (a list in concurrency or rate) gives a list; one point gives one result, so
    # ``llm_load(p, concurrency=4).stats["ttft_s"].p95`` type-checks as it runs.
    @overload
    def __call__(
        self,
        prompts: Prompt | Sequence[Prompt],
        *,
        concurrency: Sequence[int],
        rate: float | None = None,
        requests: int | None = None,
        duration: float | None = None,
        max_tokens: int = DEFAULT_LOAD_MAX_TOKENS,
        name: str | None = None,
        warmup: int | None = None,
        seed: int = 0,
        temperature: float = 0.0,
        ignore_eos: bool | None = None,
        prefix_cache: str | None = None,
        **options: Any,
    ) -> list[LoadResult]: ...

    @overload
    def __call__(
        self,
        prompts: Prompt | Sequence[Prompt],
        *,
        concurrency: int | None = None,
        rate: Sequence[float],
        requests: int | None = None,
        duration: float | None = None,
        max_tokens: int = DEFAULT_LOAD_MAX_TOKENS,
        name: str | None = None,
        warmup: int | None = None,
        seed: int = 0,
        temperature: float = 0.0,
        ignore_eos: bool | None = None,
        prefix_cache: str | None = None,
        **options: Any,
    ) -> list[LoadResult]: ...

    @overload
    def __call__(
        self,
        prompts: Prompt | Sequence[Prompt],
        *,
        concurrency: int | None = None,
        rate: float | None = None,
        requests: int | None = None,
        duration: float | None = None,
        max_tokens: int = DEFAULT_LOAD_MAX_TOKENS,
        name: str | None = None,
        warmup: int | None = None,
        seed: int = 0,
        temperature: float = 0.0,
        ignore_eos: bool | None = None,
        prefix_cache: str | None = None,
        **options: Any,
    ) -> LoadResult: ...

    def __call__(
        self,
        prompts: Prompt | Sequence[Prompt],
        *,
        concurrency: int | Sequence[int] | None = None,
        rate: float | Sequence[float] | None = None,
        requests: int | None = None,
        duration: float | None = None,
        max_tokens: int = DEFAULT_LOAD_MAX_TOKENS,
        name: str | None = None,
        warmup: int | None = None,
        seed: int = 0,
        temperature: float = 0.0,
        ignore_eos: bool | None = None,
        prefix_cache: str | None = None,
        **options: Any,
    ) -> LoadResult | list[LoadResult]:
        reason = no_server_reason(self.handle.backend)
        if reason is not None:
            pytest.skip(reason)
        # First of all: a misspelt keyword (``procesess=2``) lands in ``options``, and a server
        # would ignore it; the test fails with one line naming the valid ones, nothing sent.
        self.handle.check_options(options)
        self._calls += 1
        prompt_items = prompt_list(prompts)
        # The same bounds as a YAML load: case, before any request (a ValueError fails the test).
        check_load_arguments(
            concurrency=concurrency,
            rate=rate,
            requests=requests,
            duration=duration,
            max_tokens=max_tokens,
            warmup=warmup,
            seed=seed,
            temperature=temperature,
            options=options,
        )
        eos, cache = workload_keywords(self.handle.workload_defaults, ignore_eos, prefix_cache)
        rates = sweep_values(rate, "rate", float)
        concurrencies = sweep_values(concurrency, "concurrency", int)
        if rate is None and concurrency is None:
            concurrencies = [1]
        if len(rates) > 1 and len(concurrencies) > 1:
            raise ValueError("sweep concurrency or rate, not both (give one of them as a list)")
        points = [
            LoadPoint(c, r, default_requests(c, r, requests, duration), duration, seed)
            for r in rates
            for c in concurrencies
        ]
        # The prompts as written: under prefix_cache="bust" the load generator puts a fresh
        # nonce in front of each request as it sends it (see _loadgen).
        request_list = [
            Request(p, max_tokens, temperature, None, dict(options), eos, cache)
            for p in prompt_items
        ]
        base = name if name is not None else ("load" if self._calls == 1 else f"load{self._calls}")
        self._claim(len(points))
        results: list[LoadResult] = []
        for point in points:
            result = self._point(base, point, request_list, warmup, prompt_items)
            results.append(result)
            if result.failure is not None:
                # As llm_bench: the rest of the sweep would measure survivors too.
                self._warn(results, stacklevel=3)
                raise GenerationError(f"{result.name}: {result.failure}")
        self._finish(results)
        return results if is_sweep(concurrency) or is_sweep(rate) else results[0]

    def _claim(self, points: int) -> None:
        """Count this call's comparisons; beyond what collection planned for the test (a
        Python test is assumed to sweep :data:`ASSUMED_POINTS`), the session's count grows
        before anything is judged, so every later comparison is held to the stricter level.
        Tests that were judged earlier keep the level they had."""
        self._claimed += COMPARISONS_PER_POINT * points
        extra = self._claimed - self._budget
        if extra > 0:
            self._session.planned_comparisons += extra
            self._budget = self._claimed

    def _point(
        self,
        base: str,
        point: LoadPoint,
        requests: list[Request],
        warmup: int | None,
        prompts: list[Prompt],
    ) -> LoadResult:
        settings = self._session.settings
        name = f"{base}[{point_label(point)}]"
        n_warm = min(point.limit, _MAX_WARMUP) if warmup is None else int(warmup)
        # Every request of a call shares its sampling and workload keywords; the first says them.
        shape = requests[0]
        params = load_params(
            point,
            prompts,
            shape.max_tokens,
            shape.temperature,
            shape.options,
            n_warm,
            ignore_eos=shape.ignore_eos,
            prefix_cache=shape.prefix_cache,
        )
        reference = self._session.reference_for(
            self.handle, bench_id(self._item.nodeid, name), params
        )
        if reference is not None and reference.handle is not None:
            reference = _relative(reference, reference.handle)
        run = self._measure(self.handle, requests, point, n_warm)
        result = LoadResult(
            name,
            self._item.nodeid,
            self.handle.spec,
            self.handle.id,
            params,
            run,
            dict(settings.slo),
            warmup=n_warm,
            ignore_eos=shape.ignore_eos,
            max_tokens=shape.max_tokens,
        )
        result.failure = error_limit_message(run, settings.max_error_rate) or empty_message(
            run, shape.ignore_eos
        )
        other = None if reference is None or reference.refused else reference.handle
        if other is not None and result.failure is None:
            result.reference_run = self._measure(other, requests, point, n_warm)
            whose = f"the reference {other.id}: "
            result.failure = error_limit_message(
                result.reference_run, settings.max_error_rate, whose
            ) or empty_message(result.reference_run, shape.ignore_eos, whose)
        if reference is not None and (reference.refused or result.failure) is not None:
            result.gate = {
                "verdict": Verdict.REFUSED,
                "mode": reference.mode,
                "against": reference.label,
                "reason": reference.refused or result.failure,
                "warnings": list(reference.warnings),
            }
        elif reference is not None:
            planned = max(1, self._session.planned_comparisons)
            policy = GatePolicy(
                dict(settings.tolerances), settings.alpha / planned, planned, settings.confirm
            )
            result.gate = gate_load(run, reference, policy, result.reference_run)
        short = result.short_warning(_eos_note(self.handle))
        result.warnings = [*result.bottleneck_warnings(), *filter(None, [short])]
        self._record(result)
        return result

    def _measure(
        self, handle: LLMHandle, requests: list[Request], point: LoadPoint, warmup: int
    ) -> LoadRun:
        backend = handle.backend
        assert isinstance(backend, AsyncCapable)
        return run_load(backend.open_async, requests, point, warmup=warmup)

    def _warn(self, results: list[LoadResult], stacklevel: int) -> None:
        """Each result's warnings, attributed (``stacklevel``) to the test's call."""
        for result in results:
            where = f"{self.handle.id} {result.name}"
            for warning in result.warnings:
                warnings.warn(LLMPerfWarning(f"{where}: {warning}"), stacklevel=stacklevel)
            gate = result.gate
            if gate is None:
                continue
            for warning in gate["warnings"]:
                warnings.warn(LLMPerfWarning(f"{where}: {warning}"), stacklevel=stacklevel)
            if gate["verdict"] == Verdict.REFUSED and result.failure is None:
                refused = LLMPerfWarning(f"{where}: not compared: {gate['reason']}")
                warnings.warn(refused, stacklevel=stacklevel)

    def _finish(self, results: list[LoadResult]) -> None:
        self._warn(results, stacklevel=4)
        failures = [
            f"{result.name}: {gate_message(result.gate)}"
            for result in results
            if result.gate is not None and result.gate["verdict"] == Verdict.REGRESSION
        ]
        if failures and self._session.settings.fail_on_latency:
            pytest.fail("; ".join(failures), pytrace=False)


def _relative(reference: Reference, other: LLMHandle) -> Reference:
    """The ``--llm-compare-to`` reference as a load compares with it: labelled for what happens
    (the reference runs each point after the candidate), and refused, decided before the
    candidate runs, when the reference backend cannot serve a load at all."""
    refused = reference.refused or no_server_reason(other.backend)
    if refused is not None and reference.refused is None:
        refused = f"the --llm-compare-to reference {other.id} cannot be load-tested: {refused}"
    return dataclasses.replace(reference, label=relative_label(other.id), refused=refused)


def _eos_note(handle: LLMHandle) -> str | None:
    """Why the backend cannot honour ``ignore_eos`` (its optional ``ignore_eos_note``), if so."""
    method = getattr(handle.backend, "ignore_eos_note", None)
    note: str | None = None if method is None else method()
    return note
