"""Benchmarks: warm-up generations, then timed runs summarised per metric."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .backends import Prompt
from .harness import SCALAR_METRICS, Generation, LLMHandle, metric_values
from .stats import Summary, summarize

__all__ = ["METRICS", "BenchResult", "Workload"]

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
    stats: dict[str, Summary] = field(init=False)
    #: Generations in which a metric was undefined (e.g. TPOT with one output token).
    missing: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.stats, self.missing = {}, {}
        for metric in METRICS:
            values = self.samples(metric)
            self.stats[metric] = summarize(values)
            if metric != "itl_s":
                self.missing[metric] = len(self.generations) - len(values)

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
            "samples": {m: self.samples(m) for m in METRICS},
            "generations": [_generation_json(g) for g in self.generations],
            "gate": self.gate,
            "reference_generations": [_generation_json(g) for g in self.reference],
        }


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

    def run(self, handle: LLMHandle) -> Generation:
        return handle.generate(
            self.prompt,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            seed=self.seed,
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
        # Exactly what a stored baseline will read back (tuples become lists), so comparing
        # the two is meaningful.
        normal: dict[str, Any] = json.loads(json.dumps(params, default=repr))
        return normal
