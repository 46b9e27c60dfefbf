"""What a load run measured, as pure functions over its request records.

- **Goodput**: the share of *all* requests sent (failed ones included, since they met no
  objective) that met every ``--llm-slo`` limit; a request without text has no TTFT and misses
  a TTFT or e2e limit, while TPOT is only checked where it is defined (more than one token).
- **Achieved concurrency**: the time-average of requests in flight between the first send and
  the last end, i.e. the sum of request durations over that span (Little's law, exactly).
- **Throughput samples**: the steady-state part of the run is from the first successful
  completion (the pipeline has filled; a request that failed at once says nothing about that)
  to the last send (after which it drains); it is cut into K equal windows, K = completions in
  it // 4 clamped to 3..10, and each window gives one sample of requests/s (completions in it)
  and output tokens/s (tokens that *arrived* in it, each request's chunks rescaled to its
  reported output tokens, so they add up to the run's ``output_tps``). Window
  samples are what the gate compares; a run too short for 3 windows gives no samples, and the
  gate then says nothing about throughput rather than guess.
- **p95 TTFT gate** (:func:`tail_pvalues`): Mood's quantile test at the 95th percentile on
  shifted samples. Divide current by ``1 + tol``, pool it with the baseline, take the pooled
  95th percentile, and ask with Fisher's exact test whether current has more values above it
  than the baseline. With equal distributions the split of exceedances is hypergeometric, so the
  test is exact (conservative, being discrete) whatever the shape; a current p95 within the
  tolerance is flagged at most about alpha of the time. Its weakness is honest: with few
  requests (e.g. 20 + 20, where ~2 values exceed) no split can be significant, so
  :func:`tail_decidable` says so and the p95 is reported, not gated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ._loadgen import LoadRun, RequestRecord
from ._stable import clean_p, ratio_interval
from ._stable import ratio as safe_ratio
from .harness import metric_values, output_counts
from .stats import percentile, summarize

__all__ = [
    "achieved_concurrency",
    "goodput",
    "lag_summary",
    "meets_slo",
    "output_counts",
    "run_samples",
    "slot_wait_summary",
    "steady_window",
    "tail_decidable",
    "tail_pvalues",
    "tail_ratio_ci",
    "window_throughput",
]

_TAIL_Q = 95.0


def run_samples(run: LoadRun, metric: str) -> list[float]:
    """Samples of one metric: per request, pooled ITL gaps, per window, or per request lag."""
    generations = [r.generation for r in run.records if r.generation is not None]
    if metric == "itl_s":
        return [gap for g in generations for gap in g.itl_s]
    if metric in ("throughput_rps", "output_tps"):
        rps, tps, _ = window_throughput(run.records)
        return rps if metric == "throughput_rps" else tps
    if metric == "sched_lag_s":
        return [r.lag_ns / 1e9 for r in run.records]
    return metric_values(generations, metric)


def meets_slo(record: RequestRecord, slo: Mapping[str, float]) -> bool:
    gen = record.generation
    if gen is None:
        return False
    for metric, limit in slo.items():
        value = getattr(gen, metric)
        if value is None:
            if metric == "tpot_s":
                continue  # one output token: no decode to be slow
            return False
        if value > limit:
            return False
    return True


def goodput(records: Sequence[RequestRecord], slo: Mapping[str, float]) -> dict[str, Any]:
    """``{"good", "total", "share"}``; share is None without requests or without an SLO."""
    good = sum(1 for r in records if meets_slo(r, slo))
    share = good / len(records) if records and slo else None
    return {"good": good, "total": len(records), "share": share}


def achieved_concurrency(records: Sequence[RequestRecord]) -> float | None:
    if not records:
        return None
    first = min(r.t0 for r in records)
    last = max(r.t_end for r in records)
    if last <= first:
        return None
    return sum(r.t_end - r.t0 for r in records) / (last - first)


def steady_window(records: Sequence[RequestRecord]) -> tuple[int, int, str]:
    """(start ns, end ns, how): first successful completion to last send, or the whole run
    when the requests never overlapped enough to have a steady part. Needs a successful one."""
    ok = [r for r in records if r.generation is not None]
    start, end = min(r.t_end for r in ok), max(r.t0 for r in records)
    if end > start:
        return start, end, "steady state: first completion to last send"
    first, last = min(r.t0 for r in records), max(r.t_end for r in ok)
    return first, last, "whole run (no steady state: requests barely overlapped)"


def window_throughput(
    records: Sequence[RequestRecord],
) -> tuple[list[float], list[float], dict[str, Any]]:
    """Per-window requests/s and output tokens/s over the steady-state part (see module doc)."""
    ok = [r for r in records if r.generation is not None]
    if not ok:
        return [], [], {"windows": 0, "window_s": None, "how": "no successful request"}
    start, end, how = steady_window(records)
    ends = [r.t_end for r in ok if start <= r.t_end <= end]
    k = min(10, max(3, len(ends) // 4)) if len(ends) >= 3 else 0
    if k == 0 or end <= start:
        return [], [], {"windows": 0, "window_s": None, "how": f"{how}; < 3 completions in it"}
    width = (end - start) / k
    done = [0] * k
    tokens = [0] * k
    for stamp in ends:
        done[min(int((stamp - start) / width), k - 1)] += 1
    for r in ok:
        for stamp, n in r.token_events:
            if start <= stamp <= end:
                tokens[min(int((stamp - start) / width), k - 1)] += n
    seconds = width / 1e9
    info = {"windows": k, "window_s": seconds, "how": how}
    return [d / seconds for d in done], [t / seconds for t in tokens], info


def _seconds_summary(values_ns: Sequence[int]) -> dict[str, Any]:
    summary = summarize([v / 1e9 for v in values_ns]).to_json()
    return {k: summary[k] for k in ("n", "median", "mean", "p95", "p99", "max")}


def lag_summary(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """The generator's scheduling lag (sent minus due, or minus the moment a concurrency slot
    freed when it had to wait for one) in seconds: n, median, mean, p95, p99, max."""
    return _seconds_summary([r.lag_ns for r in records])


def slot_wait_summary(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Time due requests waited for a concurrency slot (open loop with a cap): the server's
    backlog, not the generator's lag. Same keys as :func:`lag_summary`."""
    return _seconds_summary([r.slot_wait_ns for r in records])


def _exceedance_p(current: Sequence[float], baseline: Sequence[float], alternative: str) -> float:
    from scipy.stats import fisher_exact

    threshold = percentile(sorted([*current, *baseline]), _TAIL_Q)
    a = sum(1 for c in current if c > threshold)
    b = sum(1 for x in baseline if x > threshold)
    table = [[a, len(current) - a], [b, len(baseline) - b]]
    return clean_p(fisher_exact(table, alternative=alternative).pvalue)  # may sum past 1.0


def tail_pvalues(
    current: Sequence[float], baseline: Sequence[float], tolerance: float
) -> tuple[float, float, float]:
    """(p slowdown, p improvement, p no-slowdown) of the 95th percentile, lower is better:
    "current p95 > (1 + tol) x baseline p95", "< baseline / (1 + tol)", "< (1 + tol) x"."""
    if not current or not baseline:
        return 1.0, 1.0, 1.0
    factor = 1.0 + tolerance
    shrunk = [c / factor for c in current]
    grown = [c * factor for c in current]
    return (
        _exceedance_p(shrunk, baseline, "greater"),
        _exceedance_p(grown, baseline, "less"),
        _exceedance_p(shrunk, baseline, "less"),
    )


def tail_decidable(n_current: int, n_baseline: int, alpha: float) -> bool:
    """Whether the most lopsided split of the ~5% exceedances could reach ``alpha`` at all."""
    total = n_current + n_baseline
    # Values above the pooled percentile (linear interpolation, no ties).
    m = max(1, total - 1 - math.floor((total - 1) * _TAIL_Q / 100))
    if m > n_current:
        return False
    return math.comb(n_current, m) / math.comb(total, m) < alpha


def tail_ratio_ci(
    current: Sequence[float], baseline: Sequence[float], seed: int = 0, draws: int = 2000
) -> tuple[float, float, float]:
    """The ratio of 95th percentiles and a 90% percentile-bootstrap interval (for display; the
    verdict comes from :func:`tail_pvalues`). NaNs for an empty side; zero percentiles are
    divided as in :func:`pytest_llmperf.stats.median_ratio_ci`."""
    import numpy as np

    if not current or not baseline:
        return math.nan, math.nan, math.nan
    ratio = safe_ratio(percentile(sorted(current), _TAIL_Q), percentile(sorted(baseline), _TAIL_Q))
    cur, base = np.asarray(current, dtype=float), np.asarray(baseline, dtype=float)
    rng = np.random.default_rng(seed)
    c = np.percentile(rng.choice(cur, (draws, cur.size)), _TAIL_Q, axis=1)
    b = np.percentile(rng.choice(base, (draws, base.size)), _TAIL_Q, axis=1)
    low, high = ratio_interval(c, b, 0.90)
    return ratio, low, high
