"""The ``llm_backend`` and ``llm_bench`` fixtures (registered as a plugin by plugin.py)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from ._load_call import Load
from .backends import Prompt
from .baseline import bench_id
from .bench import BenchResult, Workload, empty_message
from .compare import GatePolicy, gate_message, run_benchmark
from .errors import InvalidRequest, LLMPerfWarning, NoChatTemplate
from .gate import Verdict, parse_tolerances
from .harness import LLMHandle
from .limits import MAX_RUNS, MAX_WARMUP, check_count
from .load import LoadResult
from .session import get_session

__all__ = ["RESULTS_KEY", "Bench", "llm_backend", "llm_bench", "llm_load"]

#: Results of the ``llm_bench`` calls made by one test item, read when its report is made.
RESULTS_KEY = pytest.StashKey[list[BenchResult | LoadResult]]()

_PERF_MARKER_KEYS = {"runs", "warmup", "max_tokens", "tolerance", "ignore_eos", "prefix_cache"}
DEFAULT_MAX_TOKENS = 64


class Bench:
    """Callable behind ``llm_bench``: ``llm_bench(prompt, max_tokens=..., runs=...)``.

    Each argument left ``None`` comes from ``@pytest.mark.llm_perf(...)``, then
    ``--llm-runs`` / ``--llm-warmup`` (or their ini keys), then the built-in defaults. Where a
    baseline or a ``--llm-compare-to`` reference exists, the result is gated; a confirmed
    REGRESSION fails the test.
    """

    def __init__(self, handle: LLMHandle, item: pytest.Item) -> None:
        self.handle = handle
        self._item = item
        self._session = get_session(item.config)
        settings = self._session.settings
        marker = item.get_closest_marker("llm_perf")
        marked: dict[str, Any] = dict(marker.kwargs) if marker else {}
        unknown = set(marked) - _PERF_MARKER_KEYS
        if marker and (unknown or marker.args):
            pytest.fail(
                f"@pytest.mark.llm_perf takes keyword arguments "
                f"{', '.join(sorted(_PERF_MARKER_KEYS))}; got {marker.args or sorted(unknown)}",
                pytrace=False,
            )
        tolerances = dict(settings.tolerances)
        if "tolerance" in marked:
            tolerances.update(_marker_tolerances(marked.pop("tolerance")))
        self.tolerances = tolerances
        self.defaults: dict[str, Any] = {
            "runs": settings.runs,
            "warmup": settings.warmup,
            "max_tokens": DEFAULT_MAX_TOKENS,
            **handle.workload_defaults,
            **marked,
        }
        self._calls = 0

    def __call__(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        runs: int | None = None,
        warmup: int | None = None,
        name: str | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
        ignore_eos: bool | None = None,
        prefix_cache: str | None = None,
        **options: Any,
    ) -> BenchResult:
        self._calls += 1
        settings = self._session.settings
        try:
            # A typo (temprature=0.7) would otherwise reach a server that ignores it.
            self.handle.check_options(options)
        except InvalidRequest as exc:
            pytest.fail(f"llm_bench: {exc}", pytrace=False)
        runs = self.defaults["runs"] if runs is None else runs
        warmup = self.defaults["warmup"] if warmup is None else warmup
        # The bounds a YAML suite and llm_load use too (limits.py): a ValueError fails the test.
        if runs is not None:
            runs = check_count(runs, what="runs", low=1, high=MAX_RUNS)
        warmup = check_count(warmup, what="warmup", low=0, high=MAX_WARMUP)
        name = name if name is not None else ("" if self._calls == 1 else f"call{self._calls}")
        workload = Workload(
            prompt,
            self.defaults["max_tokens"] if max_tokens is None else max_tokens,
            temperature,
            seed,
            options,
            self.defaults["ignore_eos"] if ignore_eos is None else bool(ignore_eos),
            self.defaults["prefix_cache"] if prefix_cache is None else prefix_cache,
        )
        reference = self._session.reference_for(
            self.handle, bench_id(self._item.nodeid, name), workload.params()
        )
        comparing = reference is not None and reference.refused is None
        if runs is not None:
            looks: tuple[int, ...] = (int(runs),)
        elif settings.save_baseline:
            # A new baseline samples every look's worth, so any later look n can be compared
            # with the same first n positions of the stored runs.
            looks = settings.looks[-1:]
        elif comparing:
            looks = settings.looks
        else:
            looks = settings.looks[:1]
        planned = max(1, self._session.planned_comparisons)
        policy = GatePolicy(self.tolerances, settings.alpha / planned, planned, settings.confirm)
        self._note_fixed_length(workload)
        try:
            result = self._run(workload, name, warmup, looks, reference, policy)
        except NoChatTemplate as exc:
            # A chat prompt on a model without a chat template is not this test's failure:
            # the reason says how to supply one, and `pytest suites/` on a base model stays green.
            pytest.skip(f"{self.handle.id}: {exc}")
        self._item.stash.setdefault(RESULTS_KEY, []).append(result)
        self._judge(result, settings.fail_on_latency)
        return result

    def _run(
        self,
        workload: Workload,
        name: str,
        warmup: int,
        looks: tuple[int, ...],
        reference: Any,
        policy: GatePolicy,
    ) -> BenchResult:
        settings = self._session.settings
        return run_benchmark(
            workload,
            self.handle,
            name=name,
            nodeid=self._item.nodeid,
            warmup=warmup,
            looks=looks,
            reference=reference,
            policy=policy,
            max_error_rate=settings.max_error_rate,
            price=settings.prices.lookup(self.handle.backend.spec),
            progress=self._session.progress,
        )

    def _note_fixed_length(self, workload: Workload) -> None:
        """Say once per backend when it cannot force the output length it is asked for."""
        if not workload.ignore_eos:
            return
        note_of = getattr(self.handle.backend, "ignore_eos_note", None)
        note = None if note_of is None else note_of()
        if note:
            warnings.warn(
                LLMPerfWarning(
                    f"{self.handle.id}: ignore_eos is not enforced: {note}; generations that "
                    "stop before max_tokens are counted as short"
                ),
                stacklevel=3,
            )

    def _judge(self, result: BenchResult, fail_on_latency: bool) -> None:
        """Warnings, then the test's outcome: measured nothing, or a confirmed regression."""
        what = self.handle.id + (f" {result.name}" if result.name else "")
        if result.short:
            warnings.warn(
                LLMPerfWarning(
                    f"{what}: {result.short} of {len(result.generations)} generations stopped "
                    f"before max_tokens={result.params['max_tokens']} although ignore_eos was "
                    "asked (counted as short in the results)"
                ),
                stacklevel=3,
            )
        if result.generations and result.empty == len(result.generations):
            pytest.fail(empty_message(what), pytrace=False)
        gate = result.gate
        if gate is not None:
            for warning in gate["warnings"]:
                warnings.warn(LLMPerfWarning(f"{self.handle.id}: {warning}"), stacklevel=3)
            if gate["verdict"] == Verdict.REFUSED:
                warnings.warn(
                    LLMPerfWarning(f"{self.handle.id}: not compared: {gate['reason']}"),
                    stacklevel=3,
                )
            if gate["verdict"] == Verdict.REGRESSION and fail_on_latency:
                pytest.fail(gate_message(gate), pytrace=False)


def _marker_tolerances(value: Any) -> dict[str, float]:
    if isinstance(value, str):
        return parse_tolerances(value)
    if isinstance(value, dict):
        return parse_tolerances(",".join(f"{k}={v}" for k, v in value.items()))
    raise TypeError(f"llm_perf(tolerance=...) takes 'tpot_s=5%,...' or a dict, not {value!r}")


@pytest.fixture(scope="session")
def llm_backend(request: pytest.FixtureRequest) -> LLMHandle:
    """The backend under test, loaded once per session; parametrized over every ``--llm``."""
    session = get_session(request.config)
    spec = getattr(request, "param", None) or session.settings.specs[0]
    return session.handle(spec)


@pytest.fixture
def llm_bench(request: pytest.FixtureRequest, llm_backend: LLMHandle) -> Bench:
    """Benchmark a prompt on ``llm_backend``: warm-up, timed runs, per-metric summaries."""
    return Bench(llm_backend, request.node)


@pytest.fixture
def llm_load(request: pytest.FixtureRequest, llm_backend: LLMHandle) -> Load:
    """Serving load on ``llm_backend`` (openai, bedrock): closed loop at a concurrency or open
    loop at a Poisson rate, a sweep over several; one gated result per point (see ``load``)."""
    item = request.node

    def record(result: LoadResult) -> None:
        item.stash.setdefault(RESULTS_KEY, []).append(result)

    return Load(llm_backend, item, record)
