"""The ``llm_backend`` and ``llm_bench`` fixtures (registered as a plugin by plugin.py)."""

from __future__ import annotations

from typing import Any

import pytest

from .backends import Prompt
from .bench import BenchResult, run_bench
from .harness import LLMHandle
from .session import get_session

__all__ = ["RESULTS_KEY", "Bench", "llm_backend", "llm_bench"]

#: Results of the ``llm_bench`` calls made by one test item, read when its report is made.
RESULTS_KEY = pytest.StashKey[list[BenchResult]]()

_PERF_MARKER_KEYS = {"runs", "warmup", "max_tokens"}
DEFAULT_MAX_TOKENS = 64


class Bench:
    """Callable behind ``llm_bench``: ``llm_bench(prompt, max_tokens=..., runs=...)``.

    Each argument left ``None`` comes from ``@pytest.mark.llm_perf(...)``, then
    ``--llm-runs`` / ``--llm-warmup`` (or their ini keys), then the built-in defaults.
    """

    def __init__(self, handle: LLMHandle, item: pytest.Item) -> None:
        self.handle = handle
        self._item = item
        settings = get_session(item.config).settings
        marker = item.get_closest_marker("llm_perf")
        marked: dict[str, Any] = dict(marker.kwargs) if marker else {}
        unknown = set(marked) - _PERF_MARKER_KEYS
        if marker and (unknown or marker.args):
            pytest.fail(
                f"@pytest.mark.llm_perf takes keyword arguments "
                f"{', '.join(sorted(_PERF_MARKER_KEYS))}; got {marker.args or sorted(unknown)}",
                pytrace=False,
            )
        self.defaults: dict[str, Any] = {
            "runs": settings.runs,
            "warmup": settings.warmup,
            "max_tokens": DEFAULT_MAX_TOKENS,
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
        **options: Any,
    ) -> BenchResult:
        self._calls += 1
        runs = self.defaults["runs"] if runs is None else runs
        warmup = self.defaults["warmup"] if warmup is None else warmup
        if int(runs) < 1 or int(warmup) < 0:
            raise ValueError(
                f"runs must be >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})"
            )
        result = run_bench(
            self.handle,
            prompt,
            name=name if name is not None else ("" if self._calls == 1 else f"call{self._calls}"),
            nodeid=self._item.nodeid,
            runs=int(runs),
            warmup=int(warmup),
            max_tokens=self.defaults["max_tokens"] if max_tokens is None else max_tokens,
            temperature=temperature,
            seed=seed,
            options=options,
        )
        self._item.stash.setdefault(RESULTS_KEY, []).append(result)
        return result


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
