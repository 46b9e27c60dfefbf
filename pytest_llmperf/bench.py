"""Benchmarks: warm-up generations, then timed runs summarised per metric.

A request that fails transiently (429, 5xx, timeout, lost connection, cut stream) is counted in
:class:`RequestErrors` and never becomes a sample: each attempt is timed on its own, and the
attempt that succeeds after a failure (a retry) is kept apart from first tries, since a server
that just throttled or failed is not in the state the other samples saw.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .backends import Prompt
from .errors import GenerationError, TransientError
from .harness import SCALAR_METRICS, Generation, LLMHandle, metric_values, output_counts
from .limits import check_bench_arguments
from .options import workload_params
from .prefix_cache import check_mode
from .prices import Price
from .stats import Summary, summarize

__all__ = [
    "DEFAULT_MAX_ERROR_RATE",
    "EMPTY_HINT",
    "METRICS",
    "BenchResult",
    "RequestErrors",
    "Workload",
    "empty_message",
]

DEFAULT_MAX_ERROR_RATE = 0.1
#: Failures tolerated whatever the rate, so one 429 early on does not end a benchmark.
_MIN_ERRORS_ALLOWED = 2
#: Backoff after a failure without a Retry-After hint: base * 2**(consecutive - 1), capped.
_BACKOFF_BASE_S = 0.25
_BACKOFF_CAP_S = 8.0
_RETRY_AFTER_CAP_S = 30.0


@dataclass
class RequestErrors:
    """Transient failures of one backend in one benchmark, and the retries that followed."""

    max_rate: float = DEFAULT_MAX_ERROR_RATE
    attempts: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    #: The last message seen per kind, for the summary.
    examples: dict[str, str] = field(default_factory=dict)
    #: Successful attempts that followed a failure: reported, never mixed into the samples.
    retried: list[Generation] = field(default_factory=list)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @property
    def failed(self) -> int:
        return sum(self.counts.values())

    def record(self, exc: TransientError, consecutive: int) -> None:
        self.counts[exc.kind] += 1
        self.examples[exc.kind] = str(exc)
        allowed = max(_MIN_ERRORS_ALLOWED, math.floor(self.max_rate * self.attempts))
        if self.failed > allowed:
            raise GenerationError(
                f"{self.failed} of {self.attempts} requests failed ({self.describe()}), more "
                f"than --llm-max-error-rate={self.max_rate:g} allows; the samples left would "
                f"be survivors, not the server's latency. Last error: {exc}"
            ) from exc
        hint = exc.retry_after
        # A server's hint is data from the network: clamped, and a NaN (which would make
        # sleep() raise) is no hint at all.
        if hint is not None and not math.isnan(hint):
            delay = min(max(hint, 0.0), _RETRY_AFTER_CAP_S)
        else:
            # The exponent is capped too: 2**10000 does not fit in a float.
            delay = min(_BACKOFF_BASE_S * 2 ** min(consecutive - 1, 16), _BACKOFF_CAP_S)
        self.sleep(delay)

    def describe(self) -> str:
        return ", ".join(f"{kind} x{n}" for kind, n in sorted(self.counts.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "failed": self.failed,
            "by_kind": dict(sorted(self.counts.items())),
            "examples": dict(sorted(self.examples.items())),
            "retried": len(self.retried),
        }


#: Every metric in ``BenchResult.stats``: the per-generation scalars plus pooled ITL gaps.
METRICS = (*SCALAR_METRICS, "itl_s")


@dataclass
class BenchResult:
    """The outcome of one ``llm_bench`` call: raw generations and per-metric summaries."""

    name: str
    nodeid: str
    backend: str
    backend_id: str
    params: dict[str, Any]
    runs: int
    warmup: int
    generations: list[Generation]
    #: The regression gate's outcome (JSON-safe), when this benchmark was compared.
    gate: dict[str, Any] | None = None
    #: Relative mode: the reference backend's generations, interleaved with these.
    reference: list[Generation] = field(default_factory=list)
    #: Transient request failures (not samples) and the retried attempts after them.
    errors: RequestErrors = field(default_factory=RequestErrors)
    reference_errors: RequestErrors | None = None
    #: The matching entry of the price table (API backends only).
    price: Price | None = None
    stats: dict[str, Summary] = field(init=False)
    #: Generations in which a metric was undefined (e.g. TPOT with one output token).
    missing: dict[str, int] = field(init=False)
    #: Timed generations with no text or no output tokens: the model stopped at once.
    empty: int = field(init=False)
    #: Under ``ignore_eos``, timed generations with fewer than ``max_tokens`` output tokens
    #: (a backend or server that did not honour it).
    short: int = field(init=False)

    def __post_init__(self) -> None:
        self.empty, short = output_counts(
            self.generations, self.params.get("ignore_eos", False), self.params.get("max_tokens")
        )
        self.short = short or 0
        self.stats, self.missing = {}, {}
        for metric in METRICS:
            values = self.samples(metric)
            self.stats[metric] = summarize(values)
            if metric != "itl_s":
                self.missing[metric] = len(self.generations) - len(values)
        if self.price is not None:
            self.stats["cost_usd"] = summarize(self.costs())

    def costs(self) -> list[float]:
        """USD per request, where the price and the prompt's token count are known."""
        if self.price is None:
            return []
        costs = (self.price.cost(g.prompt_tokens, g.output_tokens) for g in self.generations)
        return [c for c in costs if c is not None]

    def samples(self, metric: str) -> list[float]:
        """Raw samples of one metric; ``itl_s`` pools every gap of every run."""
        if metric == "itl_s":
            return [gap for g in self.generations for gap in g.itl_s]
        return metric_values(self.generations, metric)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nodeid": self.nodeid,
            "backend": self.backend,
            "backend_id": self.backend_id,
            "params": self.params,
            "runs": self.runs,
            "warmup": self.warmup,
            "stats": {m: s.to_json() for m, s in self.stats.items()},
            "missing": self.missing,
            "empty": self.empty,
            "short": self.short,
            "ignore_eos": bool(self.params.get("ignore_eos", False)),
            "prefix_cache": self.params.get("prefix_cache", "allow"),
            "samples": {m: self.samples(m) for m in METRICS},
            "generations": [_generation_json(g) for g in self.generations],
            "gate": self.gate,
            "reference_generations": [_generation_json(g) for g in self.reference],
            "price": None
            if self.price is None
            else {
                "key": self.price.key,
                "input_per_1m": self.price.input,
                "output_per_1m": self.price.output,
                "source": self.price.source,
            },
            "costs_usd": self.costs(),
            "errors": self.errors.to_json(),
            "retried_generations": [_generation_json(g) for g in self.errors.retried],
            "reference_errors": self.reference_errors and self.reference_errors.to_json(),
        }


#: Why a benchmark or load point whose every generation is empty cannot stand, and what to try
#: (``llm_bench`` and ``llm_load`` say the same).
EMPTY_HINT = (
    "every generation came back empty: the model stopped at once; try ignore_eos=True or a "
    "chat template"
)


def empty_message(what: str) -> str:
    """Why a benchmark where every generation came back empty measured nothing."""
    return (
        f"{what}: {EMPTY_HINT} (?chat_template=..., on llamacpp and hf), or a plain-text "
        "prompt (api=completions on openai): a base model given a chat prompt often ends at "
        "once, and there was no latency to measure"
    )


def _generation_json(g: Generation) -> dict[str, Any]:
    return {k: v for k, v in g.to_json().items() if k != "itl_s"}


@dataclass(frozen=True)
class Workload:
    """What one benchmark generates, identically on every run and on every backend."""

    prompt: Prompt
    max_tokens: int
    temperature: float = 0.0
    seed: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Exactly ``max_tokens`` output tokens per generation (see ``Request.ignore_eos``).
    ignore_eos: bool = False
    #: ``bust``: a unique nonce starts every prompt (see :mod:`.prefix_cache`).
    prefix_cache: str = "allow"

    def __post_init__(self) -> None:
        check_mode(self.prefix_cache)
        # Checked before anything runs: max_tokens=10**12 or temperature=inf would otherwise
        # reach the backend (an allocation per token, a sampler that means nothing).
        check_bench_arguments(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            seed=self.seed,
            options=self.options,
        )

    def run(self, handle: LLMHandle, errors: RequestErrors | None = None) -> Generation:
        """One first-try generation. With ``errors``, transient failures are counted there
        (raising once they exceed its budget) and the run goes on until a first try succeeds."""
        if errors is None:
            return self._once(handle)
        consecutive = 0
        while True:
            errors.attempts += 1
            try:
                generation = self._once(handle)
            except TransientError as exc:
                consecutive += 1
                errors.record(exc, consecutive)
                continue
            if consecutive == 0:
                return generation
            errors.retried.append(generation)
            consecutive = 0

    def _once(self, handle: LLMHandle) -> Generation:
        return handle.generate(
            self.prompt,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            seed=self.seed,
            ignore_eos=self.ignore_eos,
            prefix_cache=self.prefix_cache,
            **self.options,
        )

    def params(self) -> dict[str, Any]:
        """JSON-safe parameters; a stored baseline only compares with equal parameters."""
        prompt = self.prompt
        params = {
            "prompt": prompt if isinstance(prompt, str) else [dict(m) for m in prompt],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "options": dict(self.options),
        }
        params.update(workload_params(self.ignore_eos, self.prefix_cache))
        # Exactly what a stored baseline will read back (tuples become lists), so comparing
        # the two is meaningful.
        normal: dict[str, Any] = json.loads(json.dumps(params, default=repr))
        return normal
