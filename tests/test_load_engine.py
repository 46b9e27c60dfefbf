"""The load generator against a real loopback HTTP server with controlled delays: exact counts.

Delays are chosen far apart (50 ms vs 300 ms against a 200 ms objective) so that every count
below is exact on a busy machine; nothing asserts a wall-clock duration.
"""

from collections import Counter
from itertools import pairwise

import pytest
from load_server import directive, serve
from scipy import stats as sps

from pytest_llmperf._loadgen import LoadPoint, poisson_offsets, run_load
from pytest_llmperf.backends import Request
from pytest_llmperf.backends.openai import OpenAIBackend
from pytest_llmperf.errors import GenerationError
from pytest_llmperf.load_metrics import (
    achieved_concurrency,
    goodput,
    steady_window,
    window_throughput,
)
from pytest_llmperf.options import resolve_options
from pytest_llmperf.spec import parse_spec
from pytest_llmperf.stats import summarize


@pytest.fixture
def server():
    with serve() as state:
        yield state


def backend(url: str) -> OpenAIBackend:
    spec = parse_spec(f"openai:m@{url}?timeout=20&deadline=30")
    b = OpenAIBackend(spec, resolve_options(spec, OpenAIBackend.options))
    b.check()
    b.load()
    return b


def requests(*replies: dict) -> list[Request]:
    return [Request(directive(**r), max_tokens=64) for r in replies]


def test_goodput_and_ttft_percentiles_are_exact(server):
    b = backend(server.url)
    # The server holds each first token for exactly these times; the SLO sits far between
    # them, so a busy machine delaying a fast request by a few hundred ms changes nothing.
    slow, fast = {"ttft": 0.6, "tokens": 4}, {"ttft": 0.02, "tokens": 4}
    run = run_load(b.open_async, requests(*[slow] * 5, *[fast] * 15), LoadPoint(4, None, 20, None))
    assert len(run.records) == 20 and all(r.error is None for r in run.records)
    assert goodput(run.records, {"ttft_s": 0.4}) == {"good": 15, "total": 20, "share": 0.75}
    values = sorted(r.generation.ttft_s for r in run.records)
    ttft = summarize(values)
    # 15 of 20 values fast, 5 held 600 ms+: the median is a fast one, p90 and above slow ones.
    assert values[-5] >= 0.6
    assert ttft.median == (values[9] + values[10]) / 2 < values[-5]
    assert values[-5] <= ttft.p90 <= ttft.p95 <= ttft.p99 <= values[-1]
    assert goodput(run.records, {"ttft_s": 0.4, "e2e_s": 10.0})["share"] == 0.75
    assert goodput(run.records, {"ttft_s": 10.0})["share"] == 1.0
    b.close()


def test_rate_limited_requests_are_counted_by_kind_never_sampled(server):
    b = backend(server.url)
    prompts = requests({"status": 429}, {"tokens": 3}, {"tokens": 3}, {"tokens": 3})
    run = run_load(b.open_async, prompts, LoadPoint(2, None, 20, None))
    assert Counter(r.error for r in run.records) == {"rate_limit": 5, None: 15}
    assert Counter(server.statuses) == {429: 5, 200: 15}
    sampled = [r.generation for r in run.records if r.generation is not None]
    assert len(sampled) == 15 and all(g.output_tokens == 3 for g in sampled)
    # A failed request met no objective: it stays in goodput's denominator.
    assert goodput(run.records, {"ttft_s": 10.0}) == {"good": 15, "total": 20, "share": 0.75}
    b.close()


def test_multi_token_chunks_count_tokens_and_spread_itl(server):
    b = backend(server.url)
    run = run_load(
        b.open_async,
        requests({"tokens": 8, "per_chunk": 2, "gap": 0.02}),
        LoadPoint(1, None, 3, None),
    )
    for record in run.records:
        g = record.generation
        assert g.output_tokens == 8 and g.chunks == 4
        assert [k for _, k in record.token_events] == [2, 2, 2, 2]
        stamps = [stamp for stamp, _ in record.token_events]
        # Each of the 3 gaps between chunks is spread over its chunk's 2 tokens ...
        assert g.itl_s == [(b - a) / 2 / 1e9 for a, b in pairwise(stamps) for _ in range(2)]
        assert sum(g.itl_s) == pytest.approx((stamps[-1] - stamps[0]) / 1e9, rel=1e-9)
        # ... and TTFT, up to the first chunk, is not one of them.
        assert g.ttft_s == (stamps[0] - record.t0) / 1e9
    b.close()


def test_chunks_without_a_running_count_are_rescaled_to_the_reported_tokens(server):
    # 2 tokens per chunk but only the final usage says so: each chunk first counts as one.
    b = backend(server.url)
    run = run_load(
        b.open_async,
        requests({"tokens": 8, "per_chunk": 2, "gap": 0.005, "running": False}),
        LoadPoint(2, None, 12, None),
    )
    for record in run.records:
        assert record.generation.output_tokens == 8 and record.generation.chunks == 4
        assert [k for _, k in record.token_events] == [2, 2, 2, 2]
    _, tps, info = window_throughput(run.records)
    start, end, _ = steady_window(run.records)
    chunks = sum(start <= t <= end for r in run.records for t, _ in r.token_events)
    # Every chunk that arrived in the steady state brings its 2 tokens to the windows.
    assert sum(tps) * info["window_s"] == pytest.approx(2 * chunks)
    b.close()


def test_a_concurrency_slot_wait_is_recorded_apart_from_the_generators_lag(server):
    point = LoadPoint(1, 1000.0, 4, None, seed=0)
    # All four arrive within a few ms, long before the first 100 ms request ends.
    assert poisson_offsets(1000.0, 0, 4, None)[-1] < 50_000_000
    b = backend(server.url)
    run = run_load(b.open_async, requests({"ttft": 0.1, "tokens": 1}), point)
    first, *queued = run.records
    # A free slot is no wait: the delay before the first request ran is the event loop's.
    assert first.slot_ns is None
    assert first.lag_ns == first.t0 - first.scheduled_ns
    for before, record in zip(run.records, queued, strict=False):
        # The slot frees only when the request before it ended: that wait is the server's.
        assert record.slot_ns >= before.t_end > record.scheduled_ns
        assert record.slot_wait_ns == record.slot_ns - record.scheduled_ns > 0
        assert record.lag_ns == record.t0 - record.slot_ns
    b.close()


def test_closed_loop_holds_its_concurrency(server):
    b = backend(server.url)
    run = run_load(b.open_async, requests({"ttft": 0.1}), LoadPoint(4, None, 16, None))
    assert server.peak_in_flight == 4
    assert 3.0 < achieved_concurrency(run.records) <= 4.0
    assert [r.index for r in run.records] == list(range(16))
    rps, tps, info = window_throughput(run.records)
    assert info["windows"] == 3 and len(rps) == len(tps) == 3
    b.close()


def test_poisson_schedule_is_exponential_and_seeded():
    offsets = poisson_offsets(50.0, seed=7, count=2000, horizon_s=None)
    assert offsets == poisson_offsets(50.0, seed=7, count=2000, horizon_s=None)
    assert offsets != poisson_offsets(50.0, seed=8, count=2000, horizon_s=None)
    gaps = [(b - a) / 1e9 for a, b in zip([0, *offsets], offsets, strict=False)]
    assert sps.kstest(gaps, "expon", args=(0, 1 / 50)).pvalue > 0.01
    assert abs(sum(gaps) / len(gaps) - 0.02) < 0.002
    # A horizon bounds the count: every arrival falls before it.
    bounded = poisson_offsets(50.0, seed=7, count=None, horizon_s=2.0)
    assert bounded == [o for o in offsets if o <= 2e9]


def test_open_loop_sends_on_the_poisson_schedule(server):
    b = backend(server.url)
    point = LoadPoint(None, 80.0, 120, None, seed=3)
    run = run_load(b.open_async, requests({"tokens": 2}), point)
    expected = poisson_offsets(80.0, 3, 120, None)
    assert [r.scheduled_ns - run.start_ns for r in run.records] == expected
    sends = sorted(server.arrivals_ns)
    gaps = [(y - x) / 1e9 for x, y in pairwise(sends)]
    # What the server saw is still a Poisson process of the asked rate (client jitter is small).
    assert sps.kstest(gaps, "expon", args=(0, 1 / 80)).pvalue > 0.001
    b.close()


def test_duration_bounds_an_open_loop(server):
    b = backend(server.url)
    run = run_load(b.open_async, requests({"tokens": 1}), LoadPoint(None, 40.0, None, 0.5, seed=5))
    assert len(run.records) == len(poisson_offsets(40.0, 5, None, 0.5))
    assert len(server.statuses) == len(run.records)
    b.close()


def test_warmup_requests_are_sent_but_not_recorded(server):
    b = backend(server.url)
    run = run_load(b.open_async, requests({"tokens": 1}), LoadPoint(2, None, 6, None), warmup=3)
    assert len(run.records) == 6 and len(server.statuses) == 9
    b.close()


def test_a_non_transient_error_stops_the_run(server):
    b = backend(server.url)
    with pytest.raises(GenerationError, match="HTTP 400"):
        run_load(b.open_async, requests({"status": 400}), LoadPoint(2, None, 50, None))
    assert len(server.statuses) < 50
    b.close()
