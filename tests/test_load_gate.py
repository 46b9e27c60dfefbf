"""Gating load results: the p95 tail test (A/A and a clear shift), window throughput, the gate."""

import random

from pytest_llmperf._loadgen import LoadPoint, LoadRun, RequestRecord
from pytest_llmperf.backends import Chunk, Usage
from pytest_llmperf.baseline import StoredBenchmark
from pytest_llmperf.compare import GatePolicy, Reference
from pytest_llmperf.gate import DEFAULT_TOLERANCES, Verdict
from pytest_llmperf.harness import derive
from pytest_llmperf.load import error_limit_message, gate_load, run_samples
from pytest_llmperf.load_metrics import (
    achieved_concurrency,
    tail_decidable,
    tail_pvalues,
    window_throughput,
)

MS = 1_000_000


def lognormal(rng: random.Random, n: int, scale: float = 1.0) -> list[float]:
    return [scale * rng.lognormvariate(-3.0, 0.3) for _ in range(n)]


def test_tail_test_rarely_fires_on_identical_distributions():
    rng = random.Random(1)
    alpha, reps = 0.01, 300
    alarms = sum(
        tail_pvalues(lognormal(rng, 200), lognormal(rng, 200), 0.0)[0] < alpha for _ in range(reps)
    )
    assert alarms / reps <= 0.02  # exact test, discrete: at most about alpha


def test_tail_test_catches_a_clear_tail_shift_and_passes_within_tolerance():
    rng = random.Random(2)
    caught = 0
    for _ in range(50):
        base = lognormal(rng, 300)
        # 20% of requests now wait 3x longer: the median barely moves, the p95 does.
        current = [v * (3.0 if rng.random() < 0.2 else 1.0) for v in lognormal(rng, 300)]
        caught += tail_pvalues(current, base, 0.25)[0] < 0.001
    assert caught >= 45
    base, same = lognormal(rng, 300), lognormal(rng, 300)
    slow, impr, fine = tail_pvalues(same, base, 0.25)
    assert slow > 0.05 and impr > 0.05 and fine < 0.05


def test_tail_test_knows_when_it_cannot_decide():
    assert not tail_decidable(20, 20, 0.01)
    assert tail_decidable(300, 300, 0.0025)


def record(index: int, t0: int, ttft_ms: float, tokens: int = 4, gap_ms: float = 1.0):
    stamps = [t0 + int(ttft_ms * MS) + int(i * gap_ms * MS) for i in range(tokens)]
    items = [Chunk("w", 1) for _ in range(tokens)]
    end = stamps[-1]
    generation = derive(t0, end, [*stamps, end], [*items, Usage(None, "chunks")], 0)
    events = [(s, 1) for s in stamps]
    return RequestRecord(index, t0, t0, end, generation, token_events=events)


def synthetic_run(rng: random.Random, n: int, ttft_scale: float, spacing_ms: float) -> LoadRun:
    records = [
        record(i, int(i * spacing_ms * MS), ttft_scale * rng.lognormvariate(3.0, 0.2))
        for i in range(n)
    ]
    end = max(r.t_end for r in records)
    return LoadRun(LoadPoint(None, 1e3 / spacing_ms, n, None), records, 0, end, 0.1)


def test_windows_and_concurrency_from_known_records():
    # Two back-to-back requests of 10 ms each, then two overlapping: 40 ms busy over 30 ms.
    rs = [
        RequestRecord(0, 0, 0, 10 * MS),
        RequestRecord(1, 10 * MS, 10 * MS, 20 * MS),
        RequestRecord(2, 10 * MS, 10 * MS, 30 * MS),
    ]
    assert achieved_concurrency(rs) == 40 / 30
    rng = random.Random(3)
    run = synthetic_run(rng, 400, 1.0, 2.0)
    rps, tps, info = window_throughput(run.records)
    assert info["windows"] == 10 and len(rps) == 10
    # One request every 2 ms (TTFTs jitter by a few ms): 500 requests/s, 2000 tokens/s.
    assert all(abs(r - 500) <= 500 * 0.1 for r in rps), rps
    assert all(abs(t - 2000) <= 2000 * 0.1 for t in tps), tps


def stored(run: LoadRun, runs: int = 3) -> Reference:
    samples = {m: run_samples(run, m) for m in ("ttft_s", "throughput_rps")}
    entry = StoredBenchmark({}, [{"created": "x", "commit": None, "samples": samples}] * runs)
    return Reference("stored", "baseline", stored=entry)


POLICY = GatePolicy(dict(DEFAULT_TOLERANCES), 0.01, 1, confirm=False)


def test_gate_passes_the_same_load_and_catches_slower_ttft():
    rng = random.Random(4)
    base = synthetic_run(rng, 300, 1.0, 2.0)
    same = gate_load(synthetic_run(rng, 300, 1.0, 2.0), stored(base), POLICY)
    assert same["verdict"] != Verdict.REGRESSION
    assert {m["metric"] for m in same["metrics"]} == {"ttft_s", "throughput_rps", "ttft_p95_s"}
    slow = gate_load(synthetic_run(rng, 300, 2.0, 2.0), stored(base), POLICY)
    verdicts = {m["metric"]: m["verdict"] for m in slow["metrics"]}
    assert verdicts["ttft_s"] == verdicts["ttft_p95_s"] == Verdict.REGRESSION
    assert slow["verdict"] == Verdict.REGRESSION
    assert set(slow["p_sequential"]) == {"ttft_s", "throughput_rps", "ttft_p95_s"}


def test_gate_catches_lower_throughput_and_skips_an_undecidable_tail():
    rng = random.Random(5)
    base = synthetic_run(rng, 300, 1.0, 2.0)
    slower = gate_load(synthetic_run(rng, 300, 1.0, 4.0), stored(base), POLICY)
    verdicts = {m["metric"]: m["verdict"] for m in slower["metrics"]}
    assert verdicts["throughput_rps"] == Verdict.REGRESSION
    small = gate_load(synthetic_run(rng, 20, 1.0, 2.0), stored(base), POLICY)
    assert "ttft_p95_s" not in {m["metric"] for m in small["metrics"]}
    assert any("ttft_p95_s not gated" in w for w in small["warnings"])


def run_of(ttfts_ms: list[float], spacing_ms: float = 2.0) -> LoadRun:
    records = [record(i, int(i * spacing_ms * MS), t) for i, t in enumerate(ttfts_ms)]
    end = max(r.t_end for r in records)
    return LoadRun(LoadPoint(None, 1e3 / spacing_ms, len(records), None), records, 0, end, 0.1)


def test_an_open_loop_that_falls_behind_is_a_regression_not_unstable():
    rng = random.Random(6)
    base = run_of([rng.lognormvariate(3.0, 0.2) for _ in range(200)])
    # The server now keeps up with only part of the rate: a queue builds, so each request
    # waits ~0.5 ms longer than the one before it. The trend is the regression itself.
    growing = [rng.lognormvariate(3.0, 0.2) + 0.5 * i for i in range(200)]
    gate = gate_load(run_of(growing), stored(base), POLICY)
    verdicts = {m["metric"]: m["verdict"] for m in gate["metrics"]}
    assert verdicts["ttft_s"] == verdicts["ttft_p95_s"] == Verdict.REGRESSION
    assert gate["verdict"] == Verdict.REGRESSION
    assert "ttft_s" in gate["p_sequential"]


def test_too_many_failed_requests_is_llm_benchs_error_with_the_counts():
    ok = run_of([20.0] * 18)
    failed = [
        RequestRecord(18 + i, 0, 0, MS, error="rate_limit", message=f"429 #{i}") for i in range(3)
    ]
    assert error_limit_message(ok, 0.1) is None
    ok.records.extend(failed[:2])  # 2 of 20: allowed, as llm_bench allows 2 whatever the rate
    assert error_limit_message(ok, 0.1) is None
    ok.records.append(failed[2])
    assert error_limit_message(ok, 0.1, "the reference x: ") == (
        "the reference x: 3 of 21 requests failed (rate_limit x3), more than "
        "--llm-max-error-rate=0.1 allows; the samples left would be survivors, not the "
        "server's latency. Last error: 429 #2"
    )
    assert error_limit_message(ok, 0.15) is None  # floor(0.15 x 21) = 3 allowed
