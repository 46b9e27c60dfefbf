"""``--llm-benchmark-json``: the results in pytest-benchmark's JSON format.

Tools that read pytest-benchmark files (``pytest-benchmark compare``, github-action-benchmark's
``pytest`` tool) work on them unchanged. The format has one timing per benchmark, so:

- ``stats`` are the **end-to-end seconds per request** (``e2e_s``: request issued to last
  token) of the timed runs, computed by pytest-benchmark's own ``Stats`` class (``rounds`` =
  timed runs, ``iterations`` = 1, ``ops`` = requests per second);
- every LLM metric (TTFT, TPOT, decode tok/s, seconds per token, tokens, cost, quality) and
  the gate's verdict are in ``extra_info``.

One entry per benchmark and backend: ``fullname`` is the benchmark id (node id, plus the
``llm_bench`` name when a test makes several calls), ``group`` the workload without the
backend, so backends measured on the same prompt sit in one comparison table.
"""

from __future__ import annotations

import statistics
from typing import Any

from ._report_data import bench_label

__all__ = ["TIMING_METRIC", "to_benchmark_json"]

#: The metric behind ``stats``.
TIMING_METRIC = "e2e_s"
#: Metrics whose summaries go into ``extra_info`` (medians flat, the full summary nested).
_EXTRA_METRICS = (
    "ttft_s",
    "tpot_s",
    "decode_tps",
    "prefill_tps",
    "sec_per_token",
    "output_tokens",
    "prompt_tokens",
    "itl_s",
    "cost_usd",
)


def _bench_id(result: dict[str, Any]) -> str:
    return f"{result['nodeid']}::{result['name']}" if result["name"] else result["nodeid"]


def _param(nodeid: str) -> str | None:
    _, bracket, rest = nodeid.rpartition("::")[2].partition("[")
    return rest.removesuffix("]") if bracket else None


def _group(result: dict[str, Any]) -> str:
    path, _, test = result["nodeid"].rpartition("::")
    label = bench_label(test, result["name"], result["backend_id"], result["backend"])
    return f"{path}::{label}" if path else label


def _stats(samples: list[float]) -> dict[str, Any]:
    from pytest_benchmark.stats import Stats

    # Their own class, so every field is computed exactly as pytest-benchmark computes it.
    stats: Any = Stats()  # type: ignore[no-untyped-call]  # pytest-benchmark is untyped
    for value in samples:
        stats.update(value)
    out: dict[str, Any] = stats.as_dict()
    out["data"] = list(samples)
    out["iterations"] = 1
    return out


def _extra_info(result: dict[str, Any], quality: list[float]) -> dict[str, Any]:
    gate = result.get("gate") or {}
    extra: dict[str, Any] = {
        "timing_metric": TIMING_METRIC,
        "timing_unit": "seconds per request (end to end)",
        "backend": result["backend"],
        "backend_id": result["backend_id"],
        "runs": result["runs"],
        "warmup": result["warmup"],
        "max_tokens": result["params"].get("max_tokens"),
        "verdict": gate.get("verdict"),
        "against": gate.get("against"),
    }
    summaries = result.get("stats") or {}
    for metric in _EXTRA_METRICS:
        summary = summaries.get(metric)
        if summary and summary.get("n"):
            extra[f"{metric}_median"] = summary.get("median")
    extra["quality_score"] = statistics.fmean(quality) if quality else None
    extra["llm_stats"] = {m: s for m, s in summaries.items() if s and s.get("n")}
    return extra


def to_benchmark_json(document: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's ``--benchmark-json`` document for one (already redacted) run."""
    from pytest_benchmark import __version__

    env = document.get("environment") or {}
    scores: dict[tuple[str, str | None], list[float]] = {}
    for entry in document.get("quality", []):
        if isinstance(entry.get("score"), (int, float)):
            scores.setdefault((entry["nodeid"], entry["backend"]), []).append(entry["score"])
    benchmarks = []
    for result in document.get("results", []):
        samples = [float(v) for v in result["samples"].get(TIMING_METRIC, []) if v is not None]
        if not samples:
            continue  # pytest-benchmark leaves out benchmarks that produced no timing
        param = _param(result["nodeid"])
        benchmarks.append(
            {
                "group": _group(result),
                "name": result["nodeid"].rpartition("::")[2]
                + (f"::{result['name']}" if result["name"] else ""),
                "fullname": _bench_id(result),
                "params": {"backend": result["backend"]} if param is not None else None,
                "param": param,
                "extra_info": _extra_info(
                    result, scores.get((result["nodeid"], result["backend"]), [])
                ),
                "options": {
                    "timer": "perf_counter_ns",
                    "warmup": result["warmup"],
                    "min_rounds": result["runs"],
                    "disable_gc": False,
                    "max_time": None,
                    "min_time": None,
                },
                "stats": _stats(samples),
            }
        )
    return {
        "machine_info": env.get("machine_info") or {},
        "commit_info": env.get("commit_info") or {},
        "benchmarks": benchmarks,
        "datetime": document.get("created", ""),
        "version": __version__,
    }
