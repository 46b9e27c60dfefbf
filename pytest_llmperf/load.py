"""Serving load benchmarks: one :class:`LoadResult` per sweep point, gated like ``llm_bench``.

``llm_load(prompts, concurrency=[1, 4, 16])`` or ``llm_load(prompts, rate=[2, 8])`` drives the
backend's async path (:class:`~pytest_llmperf.backends.AsyncCapable`; openai on the
SDK's async HTTP client, bedrock in a bounded thread pool) with the generator in
:mod:`._loadgen`, and summarises each point with :mod:`.load_metrics`. A results entry has the
shape of an ``llm_bench`` one (name, nodeid, backend, params, stats, samples, gate ...) plus a
``load`` section: throughput, output tokens/s, goodput under ``--llm-slo``, achieved
concurrency, errors by kind, the generator's own scheduling lag and the wait for a
concurrency slot.

More failed requests than ``--llm-max-error-rate`` allows (the rule of ``llm_bench``: that share
of the requests, at least 2) end the sweep with a :class:`~pytest_llmperf.errors.GenerationError`
naming the counts (:func:`error_limit_message`): the survivors' latencies are not the server's.

The gate (one look: a load run is not extended) compares three things with a stored baseline or
a ``--llm-compare-to`` reference run right after the candidate, at the same point:

- ``ttft_s``: per-request TTFTs, the shifted Mann-Whitney test of :mod:`.gate` (tolerance 10%);
- ``throughput_rps``: per-window request throughputs of the steady state (see
  :mod:`.load_metrics`), the same test, higher is better (tolerance 10%);
- ``ttft_p95_s``: Mood's quantile test at the 95th percentile on shifted samples, with Fisher's
  exact test (tolerance 25%); gated only when the sample sizes could reach significance at all.

Each p-value enters the session-end Holm review with every other comparison. With a stored
baseline the tolerance widens by the between-run drift of the stored runs, as for ``llm_bench``.
Unlike ``llm_bench``, a monotone trend within the run does not make a metric UNSTABLE: under
load it is the effect being measured (an open loop the server cannot keep up with builds a
queue, so each TTFT is longer than the last), and the comparison with the baseline decides.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ._load_gate import gate_load, judge_tail
from ._loadgen import LoadRun
from .bench import _MIN_ERRORS_ALLOWED, EMPTY_HINT, METRICS, _generation_json
from .harness import Generation
from .load_metrics import (
    achieved_concurrency,
    goodput,
    lag_summary,
    output_counts,
    run_samples,
    slot_wait_summary,
    window_throughput,
)
from .stats import Summary, summarize

__all__ = [
    "EMPTY_HINT",
    "LOAD_METRICS",
    "LoadResult",
    "empty_message",
    "error_limit_message",
    "gate_load",
    "judge_tail",
    "relative_label",
    "run_samples",
]

#: Metrics in a load result's ``stats`` and ``samples``.
LOAD_METRICS = (
    "ttft_s",
    "e2e_s",
    "tpot_s",
    "itl_s",
    "output_tokens",
    "prompt_tokens",
    "decode_tps",
    "sec_per_token",
    "server_latency_s",
    "throughput_rps",
    "output_tps",
    "sched_lag_s",
)
#: A median scheduling lag above this means the client, not the server, set the pace.
LAG_WARN_S = 0.001
#: Client CPU over wall time above this: the generator saturates its core.
CPU_WARN_SHARE = 0.9


@dataclass
class LoadResult:
    """One sweep point of one ``llm_load`` call."""

    name: str
    nodeid: str
    backend: str
    backend_id: str
    params: dict[str, Any]
    run: LoadRun
    slo: dict[str, float]
    warmup: int = 0
    gate: dict[str, Any] | None = None
    reference_run: LoadRun | None = None
    warnings: list[str] = field(default_factory=list)
    #: Why the point cannot stand as a measurement (too many failed requests, or every
    #: generation empty, here or in the reference run); ``llm_load`` then errors the test.
    failure: str | None = None
    #: The call's ``ignore_eos`` and ``max_tokens``: a generation shorter than asked is then
    #: counted as ``short`` (the server did not honour it, or stopped for another reason).
    ignore_eos: bool = False
    max_tokens: int | None = None

    @property
    def generations(self) -> list[Generation]:
        return [r.generation for r in self.run.records if r.generation is not None]

    @property
    def errors(self) -> Counter[str]:
        return Counter(r.error for r in self.run.records if r.error is not None)

    def samples(self, metric: str) -> list[float]:
        return run_samples(self.run, metric)

    @cached_property
    def stats(self) -> dict[str, Summary]:
        """One :class:`~pytest_llmperf.stats.Summary` per metric: ``llm_bench``'s metrics
        (:data:`~pytest_llmperf.bench.METRICS`) over the point's successful generations, then
        the load's own (per-window throughputs, per-request scheduling lag). A point's run is
        done when its result exists, so they are computed once."""
        names = (*METRICS, *(m for m in LOAD_METRICS if m not in METRICS))
        return {m: summarize(self.samples(m)) for m in names}

    @property
    def output_counts(self) -> tuple[int, int | None]:
        """(empty, short) generations; see :func:`~pytest_llmperf.load_metrics.output_counts`."""
        return output_counts(self.generations, self.ignore_eos, self.max_tokens)

    @property
    def summary(self) -> dict[str, Any]:
        """The ``load`` section of the results entry."""
        records = self.run.records
        ok = self.generations
        span = _span_s(self.run)
        tokens = sum(g.output_tokens for g in ok)
        good = goodput(records, self.slo)
        good["rps"] = good["good"] / span if span else None
        _, _, windows = window_throughput(records)
        point = self.run.point
        empty, short = self.output_counts
        return {
            "mode": point.mode,
            "concurrency": point.concurrency,
            "rate": point.rate,
            "requests": len(records),
            "succeeded": len(ok),
            "failed": len(records) - len(ok),
            # Successful requests that brought nothing back, or (ignore_eos) less than asked:
            # their TTFT and TPOT measure a model that stopped, not one that served.
            "empty": empty,
            "short": short,
            "span_s": span,
            "throughput_rps": len(ok) / span if span else None,
            "output_tps": tokens / span if span else None,
            "goodput": good,
            "slo": dict(self.slo),
            "achieved_concurrency": achieved_concurrency(records),
            "errors": dict(sorted(self.errors.items())),
            "error_rate": (len(records) - len(ok)) / len(records) if records else None,
            "scheduling_lag_s": lag_summary(records),
            "slot_wait_s": slot_wait_summary(records),
            "generator_cpu_share": self.run.cpu_share,
            "generator_spin_s": self.run.spin_s,
            "windows": windows,
            "warnings": list(self.warnings),
        }

    def bottleneck_warnings(self) -> list[str]:
        lag = lag_summary(self.run.records)
        found = []
        median_lag = lag["median"]
        if median_lag is not None and median_lag > LAG_WARN_S:
            found.append(
                f"the load generator sent requests {median_lag * 1e3:.2f} ms late (median; p99 "
                f"{(lag['p99'] or 0) * 1e3:.1f} ms): it, not the server, may limit this load"
            )
        if self.run.cpu_share > CPU_WARN_SHARE:
            found.append(
                f"the load generator used {self.run.cpu_share:.0%} of a CPU core: it, not the "
                "server, may limit this load (lower the rate or concurrency, or run the test "
                "on a machine with faster cores)"
            )
        return found

    def short_warning(self, note: str | None = None) -> str | None:
        """Under ``ignore_eos``, that some generations still came back short (``note``: why
        the backend cannot force the length, where it says), or None."""
        _, short = self.output_counts
        if not short:
            return None
        why = f" ({note})" if note else ""
        return (
            f"{short} of {len(self.generations)} generations came back with fewer than "
            f"max_tokens={self.max_tokens} output tokens under ignore_eos{why}"
        )

    def to_json(self) -> dict[str, Any]:
        # The same keys as before .stats existed (compatible files), from the same summaries.
        stats = {m: self.stats[m] for m in LOAD_METRICS}
        errors = self.errors
        examples = {
            r.error: r.message for r in self.run.records if r.error is not None and r.message
        }
        reference = self.reference_run
        return {
            "name": self.name,
            "nodeid": self.nodeid,
            "backend": self.backend,
            "backend_id": self.backend_id,
            "params": self.params,
            "runs": len(self.generations),
            "warmup": self.warmup,
            "stats": {m: s.to_json() for m, s in stats.items()},
            "missing": {
                m: len(self.generations) - stats[m].n
                for m in LOAD_METRICS
                if m not in ("itl_s", "throughput_rps", "output_tps", "sched_lag_s")
            },
            "samples": {m: self.samples(m) for m in LOAD_METRICS},
            "generations": [_generation_json(g) for g in self.generations],
            "gate": self.gate,
            "reference_generations": []
            if reference is None
            else [_generation_json(r.generation) for r in reference.records if r.generation],
            "price": None,
            "costs_usd": [],
            "errors": {
                "attempts": len(self.run.records),
                "failed": sum(errors.values()),
                "by_kind": dict(sorted(errors.items())),
                "examples": dict(sorted(examples.items())),
                "retried": 0,
            },
            "retried_generations": [],
            "reference_errors": None,
            "load": self.summary,
        }


def _span_s(run: LoadRun) -> float:
    records = run.records
    if not records:
        return 0.0
    return (max(r.t_end for r in records) - min(r.t0 for r in records)) / 1e9


def relative_label(reference_id: str) -> str:
    """What a load point is compared with under ``--llm-compare-to``: the reference runs the
    same point after the candidate, not interleaved with it as in ``llm_bench``."""
    return f"{reference_id} (same job, same point run right after the candidate)"


def error_limit_message(run: LoadRun, max_rate: float, whose: str = "") -> str | None:
    """Why a run failed too often to be measured (``llm_bench``'s rule: more failures than
    ``max_rate`` of the requests, and more than 2), or None."""
    records = run.records
    failed = Counter(r.error for r in records if r.error is not None)
    count = sum(failed.values())
    if count <= max(_MIN_ERRORS_ALLOWED, math.floor(max_rate * len(records))):
        return None
    kinds = ", ".join(f"{kind} x{n}" for kind, n in sorted(failed.items()))
    last = next((r.message for r in reversed(records) if r.error is not None and r.message), "")
    return (
        f"{whose}{count} of {len(records)} requests failed ({kinds}), more than "
        f"--llm-max-error-rate={max_rate:g} allows; the samples left would be survivors, not "
        f"the server's latency. Last error: {last}"
    )


def empty_message(run: LoadRun, ignore_eos: bool, whose: str = "") -> str | None:
    """Why a run whose every successful generation is empty (no text or no output tokens)
    cannot be measured, or None: its latencies are those of a model that stopped at once."""
    ok = [r.generation for r in run.records if r.generation is not None]
    empty, _ = output_counts(ok, ignore_eos, None)
    if not ok or empty < len(ok):
        return None
    hint = EMPTY_HINT
    if ignore_eos:
        # Already asked for: the server does not honour it, or the prompt ends the answer.
        hint = hint.replace("try ignore_eos=True or", "ignore_eos=True did not help; try")
    return f"{whose}{hint} ({empty} of {len(ok)} successful requests had no text or no tokens)"
