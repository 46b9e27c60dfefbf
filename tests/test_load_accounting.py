"""What a load run counts, on hand-made records and clocks: tokens per window, the generator's
lag and CPU share, the steady state. Exact values, no wall-clock timing."""

import asyncio

from pytest_llmperf._load_table import format_load_table
from pytest_llmperf._loadgen import (
    LoadPoint,
    LoadRun,
    RequestRecord,
    Spin,
    _sleep_until,
    generator_cpu_share,
    token_events,
)
from pytest_llmperf.backends import Chunk, Usage
from pytest_llmperf.bench import METRICS
from pytest_llmperf.harness import derive
from pytest_llmperf.load import EMPTY_HINT, LoadResult, empty_message
from pytest_llmperf.load_metrics import steady_window
from pytest_llmperf.stats import summarize

MS = 1_000_000
US = 1_000


def test_a_final_usage_total_is_spread_over_the_chunks_that_counted_one_each():
    stamps = [10, 20, 30, 40, 50]
    # Bedrock: one token per text delta until the metadata event says 12.
    items = [Chunk("ab", 1), Chunk("cd", 1), Chunk("ef", 1), Chunk("gh", 1), Usage(3, "usage", 12)]
    assert token_events(stamps, items, 12) == [(10, 3), (20, 3), (30, 3), (40, 3)]
    # Uneven: whole tokens, the exact total, in proportion to what each chunk counted.
    events = token_events(
        stamps[:4], [Chunk("a", 1), Chunk("b", 2), Chunk("c", 1), Usage(None, "usage", 9)], 9
    )
    assert events == [(10, 2), (20, 5), (30, 2)]
    # Fewer tokens than chunks (a server that sent empty-ish deltas): chunks may carry none.
    four = token_events(stamps, items, 2)
    assert sum(k for _, k in four) == 2 and all(k > 0 for _, k in four)
    # A running count already agrees with the total: nothing changes.
    assert token_events(stamps[:2], [Chunk("a", 4), Chunk("b", 4)], 8) == [(10, 4), (20, 4)]
    # What derive reports as the request's output tokens is what the events add up to.
    generation = derive(0, 60, stamps, items, 0)
    assert sum(k for _, k in token_events(stamps, items, generation.output_tokens)) == 12


def record(index: int, scheduled: int, slot: int | None, t0: int, ttft_ms: float = 20.0):
    first = t0 + int(ttft_ms * MS)
    end = first + MS
    items = [Chunk("a", 1), Chunk("b", 1), Usage(None, "chunks")]
    generation = derive(t0, end, [first, end, end], items, 0)
    events = [(first, 1), (end, 1)]
    return RequestRecord(index, scheduled, t0, end, generation, token_events=events, slot_ns=slot)


def result(records: list[RequestRecord], cpu_share: float = 0.1) -> LoadResult:
    end = max(r.t_end for r in records)
    run = LoadRun(LoadPoint(1, 1000.0, len(records), None), records, 0, end, cpu_share)
    return LoadResult("load[rate=1000,c=1]", "t.py::t", "openai:m", "openai:m", {}, run, {})


def test_waiting_for_a_concurrency_slot_is_not_blamed_on_the_generator():
    # Open loop, 1 slot: every request is due at once-per-ms but waits ~21 ms for the one
    # before it to end; once it has the slot, the generator sends it 30 us later.
    records = []
    slot = 0
    for i in range(20):
        r = record(i, i * MS, slot, slot + 30 * US)
        records.append(r)
        slot = r.t_end
    load = result(records)
    assert load.bottleneck_warnings() == []
    summary = load.summary
    assert summary["scheduling_lag_s"]["median"] == 30e-6
    assert summary["slot_wait_s"]["max"] == (records[-1].slot_ns - records[-1].scheduled_ns) / 1e9
    assert summary["slot_wait_s"]["median"] > 0.1
    # A generator that is itself late (2 ms after the slot freed) is still reported.
    late = [record(i, i * 30 * MS, i * 30 * MS + 5 * MS, i * 30 * MS + 7 * MS) for i in range(20)]
    [warning] = result(late).bottleneck_warnings()
    assert "sent requests 2.00 ms late (median" in warning


def test_the_pre_arrival_spin_is_measured_and_left_out_of_the_cpu_share():
    now = [0]
    cpu_now = [0]

    def clock() -> int:
        now[0] += 100 * US  # each look at the clock: 100 us of wall time ...
        return now[0]

    def cpu() -> int:
        cpu_now[0] += 100 * US  # ... all of it on the CPU (a spin)
        return cpu_now[0]

    spin = Spin()
    # Due 0.9 ms from now: inside the spin margin, so only yields until due.
    asyncio.run(_sleep_until(900 * US, spin, clock, cpu))
    # Clock reads at 0.1 (first look), 0.2 (spin start), 0.3 .. 0.9 (loop), 1.0 (spin end):
    assert spin.wall_ns == 800 * US
    assert spin.cpu_ns == 100 * US  # two cpu() reads, one step apart
    # Already due: no spin at all.
    before = Spin()
    asyncio.run(_sleep_until(0, before, clock, cpu))
    assert before == Spin()
    # 1 s run, 0.95 s CPU of which 0.9 s in spins of 0.9 s wall: 0.05 s over 0.1 s.
    share = generator_cpu_share(950 * MS, 1000 * MS, Spin(wall_ns=900 * MS, cpu_ns=900 * MS))
    assert share == 0.5
    records = [record(i, i * 30 * MS, None, i * 30 * MS) for i in range(5)]
    assert result(records, share).bottleneck_warnings() == []
    [warning] = result(records, 0.95).bottleneck_warnings()
    assert "used 95% of a CPU core" in warning and "xdist" not in warning


def test_the_steady_state_starts_at_the_first_successful_completion():
    failed_at_once = RequestRecord(0, 0, 0, MS, error="rate_limit")
    ok = [record(i + 1, i * 10 * MS, None, i * 10 * MS) for i in range(6)]
    start, end, how = steady_window([failed_at_once, *ok])
    assert start == ok[0].t_end and end == ok[-1].t0
    assert how.startswith("steady state")


def answered(index: int, texts: list[str], t0: int = 0) -> RequestRecord:
    """A request whose chunks (one token each) carried ``texts``; none: an empty answer."""
    stamps = [t0 + (i + 1) * MS for i in range(len(texts))] + [t0 + 9 * MS]
    items = [*(Chunk(t, 1) for t in texts), Usage(3, "usage", len(texts))]
    end = t0 + 10 * MS
    return RequestRecord(index, t0, t0, end, derive(t0, end, stamps, items, 0))


def test_empty_and_short_generations_are_counted_and_an_all_empty_run_is_refused():
    records = [answered(0, ["a", "b"]), answered(1, ["a"]), answered(2, []), answered(3, [])]
    run = LoadRun(LoadPoint(1, None, 4, None), records, 0, 10 * MS, 0.1)
    eos = LoadResult(
        "load[c=1]", "t.py::t", "o:m", "o:m", {}, run, {}, ignore_eos=True, max_tokens=2
    )
    assert (eos.summary["empty"], eos.summary["short"]) == (2, 3)
    assert eos.short_warning("no such field") == (
        "3 of 4 generations came back with fewer than max_tokens=2 output tokens under "
        "ignore_eos (no such field)"
    )
    plain = LoadResult("load[c=1]", "t.py::t", "o:m", "o:m", {}, run, {}, max_tokens=2)
    assert (plain.summary["empty"], plain.summary["short"]) == (2, None)
    assert plain.short_warning() is None
    # Not every generation is empty: the point stands.
    assert empty_message(run, ignore_eos=False) is None
    nothing = LoadRun(LoadPoint(1, None, 2, None), [answered(0, []), answered(1, [])], 0, 1, 0.1)
    assert empty_message(nothing, ignore_eos=False) == (
        f"{EMPTY_HINT} (2 of 2 successful requests had no text or no tokens)"
    )
    assert "did not help" in (empty_message(nothing, ignore_eos=True) or "")
    # Failed requests are not generations: none at all is the error limit's business.
    failed = LoadRun(LoadPoint(1, None, 1, None), [RequestRecord(0, 0, 0, 1, error="x")], 0, 1, 0.1)
    assert empty_message(failed, ignore_eos=False) is None


def test_stats_are_bench_summaries_of_the_samples():
    records = [answered(i, ["a"] * (i + 2), t0=i * 20 * MS) for i in range(5)]
    load = result(records)
    assert set(load.stats) >= set(METRICS)
    for metric in ("ttft_s", "e2e_s", "output_tokens", "itl_s", "throughput_rps"):
        assert load.stats[metric] == summarize(load.samples(metric)), metric
    assert load.stats["output_tokens"].median == 4
    assert load.to_json()["stats"]["ttft_s"] == load.stats["ttft_s"].to_json()


def test_the_load_table_shows_empty_and_short_columns_only_when_there_are_some():
    records = [answered(0, ["a", "b"]), answered(1, [])]
    run = LoadRun(LoadPoint(1, None, 2, None), records, 0, 10 * MS, 0.1)
    plain = LoadResult("load[c=1]", "t.py::t", "o:m", "o:m", {}, run, {}).to_json()
    clean = LoadResult(
        "load[c=1]", "t.py::u", "o:m", "o:m", {}, result([record(0, 0, None, 0)]).run, {}
    )
    [head, _, row, other] = format_load_table([plain, clean.to_json()])
    assert head.split()[-2:] == ["empty", "verdict"]
    assert row.split()[-2:] == ["1", "-"] and other.split()[-2:] == ["0", "-"]
    # A file written before the counts existed has no such keys: no columns.
    old = clean.to_json()
    del old["load"]["empty"], old["load"]["short"]
    [head, _, _] = format_load_table([old])
    assert "empty" not in head and "short" not in head
