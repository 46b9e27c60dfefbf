"""Degenerate data at the statistics and the gate, one test per case found by probing.

Valid but degenerate samples (zeros, ties, one value, an empty side, values near 1e308) get a
defined result, the reason in the verdict's ``note``; invalid ones (NaN, inf, negative) one
ValueError naming the metric. Never an exception from inside the arithmetic.
"""

import json
import math

import pytest

from pytest_llmperf import stats
from pytest_llmperf.baseline import StoredBenchmark
from pytest_llmperf.compare import GatePolicy, Reference, outcome
from pytest_llmperf.gate import (
    DEFAULT_TOLERANCES,
    MAX_DRIFT_ALLOWANCE,
    MetricVerdict,
    Verdict,
    drift_allowance,
    judge_metric,
    review,
)
from pytest_llmperf.load import gate_load, judge_tail, run_samples
from pytest_llmperf.load_metrics import tail_ratio_ci
from pytest_llmperf.numeric import json_dumps
from pytest_llmperf.quality_gate import compare_backend, compare_scores

ALPHA = 0.01
POLICY = GatePolicy(dict(DEFAULT_TOLERANCES), ALPHA, 1, confirm=False)
BASE = [0.95, 1.0, 1.05] * 3
NO_BASELINE = "baseline has no positive samples: a change relative to it is undefined"


def judge(current, baseline, metric="tpot_s", tolerance=0.05, **kwargs):
    return judge_metric(
        metric, current, baseline, tolerance=tolerance, alpha=kwargs.pop("alpha", ALPHA), **kwargs
    )


# --- stats ------------------------------------------------------------------------------------


def test_runs_to_settle_takes_a_throughput_window_in_which_nothing_completed():
    windows = [0.0, 9.0, 10.0, 11.0, 10.0, 10.5]  # was: math domain error (log of 0)
    baseline = [10.0, 10.5, 11.0, 10.0, 10.0]
    n = stats.runs_to_settle(windows, baseline, 0.1, 0.01, higher_is_better=True)
    assert len(windows) <= n < 10_000
    # With no level to be relative to, nothing can be estimated.
    assert stats.runs_to_settle(windows, [0.0, 0.0, 1.0], 0.1, 0.01) == 10_000


def test_runs_to_settle_at_a_tiny_alpha_needs_more_samples_not_a_crash():
    # 1 - 1e-17 rounds to 1.0, which NormalDist.inv_cdf refused (StatisticsError).
    at_one_percent = stats.runs_to_settle([1.1 * b for b in BASE], BASE, 0.05, 0.01)
    tiny = stats.runs_to_settle([1.1 * b for b in BASE], BASE, 0.05, 1e-17)
    assert at_one_percent < tiny < 10_000
    ref = [1.0, 1.1, 0.9, 1.2, 1.0, 0.95]
    cur = [r * 1.08 * (1 + 0.01 * i) for i, r in enumerate(ref)]
    assert 6 <= stats.paired_runs_to_settle(cur, ref, 0.05, 1e-17) <= 10_000


def test_log_spread_of_zero_values_is_defined_and_of_negative_ones_an_error():
    assert stats.log_spread([0.0, 0.0, 0.0]) == 0.0  # equal values: no spread
    assert stats.log_spread([0.0, 1.0, 1.1]) == math.inf  # was: math domain error
    with pytest.raises(ValueError, match=r"^log_spread: sample 2 is -1, must be >= 0$"):
        stats.log_spread([1.0, -1.0])


def test_drift_allowance_of_a_zero_run_median_is_capped_not_a_crash():
    allowance, how = drift_allowance([0.0, 1.0, 1.1])  # was: math domain error
    assert allowance == MAX_DRIFT_ALLOWANCE
    assert how == "between-run spread inf% over 3 stored runs; capped at 1000%"


def test_drift_allowance_of_medians_far_apart_is_capped_not_an_overflow():
    allowance, how = drift_allowance([5e-324, 1.0, 1e308])  # was: OverflowError in math.exp
    assert allowance == MAX_DRIFT_ALLOWANCE and how.endswith("capped at 1000%")


def test_drift_allowance_refuses_a_nan_median_by_name():
    with pytest.raises(ValueError, match=r"^stored run medians: sample 3 is nan"):
        drift_allowance([1.0, 1.1, math.nan])


def test_paired_pvalues_with_a_zero_on_either_side_rank_it_as_the_largest_change():
    # The pair (0, 1) is an infinite log ratio: it ranks like any ratio beyond the others.
    ref = [1.0, 0.5, 0.5, 0.5, 0.5]
    with_zero = stats.paired_pvalues([0.0, 1.0, 1.0, 1.0, 1.0], ref, 0.05)  # was: domain error
    tiny = stats.paired_pvalues([1e-300, 1.0, 1.0, 1.0, 1.0], ref, 0.05)
    assert with_zero == tiny
    zero_ref = stats.paired_pvalues(ref, [0.0, 1.0, 1.0, 1.0, 1.0], 0.05)  # was: ZeroDivision
    assert zero_ref == stats.paired_pvalues(ref, [1e-300, 1.0, 1.0, 1.0, 1.0], 0.05)
    # Equal pairs, zeros included: a log ratio of 0, inside the tolerance every time.
    assert stats.paired_pvalues([0.0] * 4, [0.0] * 4, 0.05) == (1.0, 1.0, 1 / 2**4)
    n = stats.paired_runs_to_settle([1.0, 1.0, 2.0, 1.1], [0.0, 2.0, 3.0, 1.0], 0.1, 0.01)
    assert 4 <= n <= 10_000  # was: ZeroDivisionError


def test_summarize_values_near_the_float_range():
    s = stats.summarize([1e308, 1e308, 1e308])  # was: OverflowError in statistics.fmean
    assert (s.median, s.mean, s.stdev, s.max) == (1e308, 1e308, 0.0, 1e308)
    s = stats.summarize([0.0, 1e308])
    assert s.mean == 5e307
    assert s.stdev == pytest.approx(1e308 / math.sqrt(2))


def test_median_ratio_of_values_near_the_float_range_is_one():
    # np.median averaged the two middle 1e308s to inf: the ratio was inf / inf = nan.
    assert stats.median_ratio_ci([1e308] * 4, [1e308] * 4) == (1.0, 1.0, 1.0)


def test_median_ratio_ci_whose_resampled_baseline_medians_reach_zero_is_unbounded_above():
    ratio, low, high = stats.median_ratio_ci([1.0, 2.0, 3.0], [0.0, 0.0, 1.0, 2.0, 3.0])
    assert ratio == 2.0
    assert 0 <= low <= ratio and high == math.inf  # was: nan (numpy's quantile of inf)


def test_multiplicity_corrections_count_a_nan_p_value_as_no_evidence():
    assert stats.holm([math.nan, 0.01]) == [1.0, 0.02]
    by = stats.benjamini_yekutieli([math.nan, 0.01])  # was: ValueError from scipy
    assert by[0] == 1.0 and 0.01 < by[1] <= 1.0


def test_binomial_ci_of_no_trials_knows_nothing():
    assert stats.binomial_ci(0, 0) == (0.0, 1.0)  # was: ValueError from scipy


# --- the gate ---------------------------------------------------------------------------------


def test_an_all_zero_baseline_is_refused_with_the_reason():
    v = judge([0.01, 0.02, 0.03] * 4, [0.0] * 12)  # was: REGRESSION with ratio inf
    assert (v.verdict, v.note) == (Verdict.REFUSED, NO_BASELINE)
    assert (v.p_slowdown, v.p_improvement, v.p_no_slowdown) == (1.0, 1.0, 1.0)
    assert math.isnan(v.ratio) and v.runs_to_settle is None


def test_a_baseline_median_of_zero_is_refused_naming_the_median():
    v = judge([4.0, 5.0, 6.0, 5.0, 4.0], [0.0, 0.0, 0.0, 5.0, 5.0], metric="throughput_rps")
    assert v.verdict == Verdict.REFUSED
    assert v.note == "baseline median is 0: a change relative to it is undefined"


def test_a_trending_current_against_an_empty_baseline_is_inconclusive():
    v = judge([1.0 + 0.1 * i for i in range(20)], [])  # was: StatisticsError (median of [])
    assert (v.verdict, v.note) == (Verdict.INCONCLUSIVE, "too few samples: 20 current, 0 baseline")
    assert v.n_current == 20 and v.n_baseline == 0


def test_a_trending_throughput_that_falls_to_zero_is_a_regression():
    # Every window is beyond the tolerance below the baseline, so the trend cannot explain
    # it; the check divided by each window (ZeroDivisionError at the one with no completion).
    falling = [float(i) for i in range(19, -1, -1)]
    v = judge(falling, [100.0] * 20, metric="throughput_rps", tolerance=0.1)
    assert v.verdict == Verdict.REGRESSION
    assert v.ratio == pytest.approx(0.095)


def test_an_inconclusive_throughput_with_an_empty_window_says_how_many_samples_would_settle():
    # What crashed a load test's session: the estimate took the log of the empty window.
    windows, baseline = [0.0, 9.0, 10.0, 11.0, 10.0, 10.5], [10.0, 10.5, 11.0, 10.0, 10.0]
    v = judge(windows, baseline, metric="throughput_rps", tolerance=0.1)
    assert v.verdict == Verdict.INCONCLUSIVE
    assert v.runs_to_settle is not None and 6 <= v.runs_to_settle < 10_000


def test_a_tiny_alpha_is_judged():
    v = judge([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], alpha=1e-17)  # was: StatisticsError
    assert v.verdict == Verdict.INCONCLUSIVE
    assert v.runs_to_settle == 10_000


@pytest.mark.parametrize(
    ("current", "baseline", "message"),
    [
        ([1.0, math.nan], [1.0], r"^tpot_s: current sample\(s\): sample 2 is nan, not a finite"),
        ([1.0], [math.inf], r"^tpot_s: baseline sample\(s\): sample 1 is inf, not a finite"),
        ([1.0, 2.0, -0.5], [1.0], r"^tpot_s: current sample\(s\): sample 3 is -0.5, must be >= 0"),
        ([1.0], [10**400], r"^tpot_s: baseline sample\(s\): sample 1 is too large$"),
    ],
)
def test_invalid_samples_are_one_value_error_naming_the_metric(current, baseline, message):
    with pytest.raises(ValueError, match=message):
        judge(current * 3, baseline * 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, r"^tpot_s: alpha: 0 is out of range \(must be > 0\)$"),
        ({"alpha": math.nan}, r"^tpot_s: alpha: nan is not a finite number$"),
        ({"tolerance": -0.1}, r"^tpot_s: tolerance: -0.1 is out of range \(must be >= 0\)$"),
        ({"drift": math.inf}, r"^tpot_s: drift allowance: inf is not a finite number$"),
    ],
)
def test_invalid_levels_are_one_value_error_naming_the_metric(kwargs, message):
    with pytest.raises(ValueError, match=message):
        judge(BASE, BASE, **kwargs)


def test_a_pair_with_a_zero_side_is_judged():
    cur, ref = [0.0, 1.2, 1.3, 1.2, 1.25, 1.3], [1.0, 1.0, 1.05, 0.95, 1.0, 1.02]
    v = judge(cur, ref, pairs=(cur, ref))  # was: math domain error
    assert v.verdict in (Verdict.REGRESSION, Verdict.INCONCLUSIVE)
    assert 0.0 <= v.p_slowdown <= 1.0


def test_identical_constant_samples_say_they_have_no_spread():
    v = judge([0.5] * 5, [0.5] * 5, tolerance=0.0)
    assert v.verdict == Verdict.INCONCLUSIVE
    assert v.note == "no spread: every sample on both sides is 0.5"


def test_values_near_the_float_range_compare_as_equal():
    v = judge([1e308] * 6, [1e308] * 6)
    assert (v.verdict, v.ratio, v.ci_low, v.ci_high) == (Verdict.PASS, 1.0, 1.0, 1.0)


def test_a_refused_verdict_read_back_from_a_file_describes_itself():
    v = judge([0.01, 0.02, 0.03] * 4, [0.0] * 12)
    stored = json.loads(json_dumps(v.to_json()))
    assert stored["ratio"] is None
    line = MetricVerdict(**stored).describe(1.0, "Holm")  # was: TypeError on None - 1
    assert line == "TPOT changed n/a (90% CI n/a..n/a, p=1, 1 Holm; tolerance 5%)"


def test_review_counts_a_nan_or_missing_p_value_as_no_evidence():
    results = [
        {"gate": {"p_sequential": {"tpot_s": math.nan, "ttft_s": None}}},  # was: ValueError
        {"gate": {"p_sequential": {"tpot_s": 0.001}}},
    ]
    rows = review(results, 0.05)
    assert [row["p"] for row in rows] == [1.0, 1.0, 0.001]
    assert rows[0]["note"] == "p-value nan is not a number in [0, 1]: counted as 1 (no evidence)"
    assert "note" not in rows[2]
    assert rows[2]["holm_rejects"] and not rows[0]["holm_rejects"]
    assert all(0.0 <= row["p_holm"] <= 1.0 and 0.0 <= row["p_by"] <= 1.0 for row in rows)


def test_a_refused_metric_gives_the_gate_its_reason_and_stays_out_of_the_review():
    refused = judge([0.01, 0.02, 0.03] * 4, [0.0] * 12)
    fine = judge(BASE * 3, BASE * 3, metric="ttft_s")
    gate = outcome(Reference("stored", "baseline"), [refused, fine], (12,), POLICY, 12)
    assert gate["verdict"] == Verdict.REFUSED
    assert gate["reason"] == f"tpot_s: {NO_BASELINE}"  # every reader of REFUSED shows it
    assert set(gate["p_sequential"]) == {"ttft_s"}


# --- the load gate ----------------------------------------------------------------------------


def test_judge_tail_with_an_empty_side_is_inconclusive():
    v = judge_tail([], [1.0, 2.0], tolerance=0.25, alpha=ALPHA, drift=0.0, note="Mood")
    assert v.verdict == Verdict.INCONCLUSIVE  # was: IndexError
    assert v.note == "Mood; too few samples: 0 current, 2 baseline"
    assert all(math.isnan(x) for x in tail_ratio_ci([], [1.0]))


def test_judge_tail_against_a_zero_p95_is_refused():
    v = judge_tail([1.0] * 30, [0.0] * 30, tolerance=0.25, alpha=ALPHA, drift=0.0, note="Mood")
    assert (v.verdict, v.note) == (Verdict.REFUSED, f"Mood; {NO_BASELINE}")


def test_judge_tail_refuses_invalid_samples_by_name():
    with pytest.raises(ValueError, match=r"^ttft_p95_s: current sample\(s\): sample 1 is nan"):
        judge_tail([math.nan], [1.0], tolerance=0.25, alpha=ALPHA, drift=0.0, note="")


def test_the_load_gate_refuses_a_stored_baseline_with_no_throughput():
    import random

    from test_load_gate import synthetic_run

    run = synthetic_run(random.Random(4), 300, 1.0, 2.0)
    samples = {"ttft_s": run_samples(run, "ttft_s"), "throughput_rps": [0.0] * 10}
    entry = StoredBenchmark({}, [{"created": "x", "commit": None, "samples": samples}] * 3)
    gate = gate_load(run, Reference("stored", "baseline", stored=entry), POLICY)
    metrics = {m["metric"]: m for m in gate["metrics"]}
    assert metrics["throughput_rps"]["verdict"] == Verdict.REFUSED
    assert metrics["throughput_rps"]["note"].endswith(NO_BASELINE)
    assert gate["verdict"] == Verdict.REFUSED
    assert gate["reason"].startswith("throughput_rps: between-run spread")
    assert set(gate["p_sequential"]) == {"ttft_s", "ttft_p95_s"}
    json.loads(json_dumps(gate))  # writable as it stands


# --- the quality gate -------------------------------------------------------------------------


def quality_entries(n=5):
    return [
        {"nodeid": "t.py::test", "call": i, "score": 50.0, "judge": "j", "prompt_version": "1"}
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("score", "message"),
    [
        (math.nan, r"^baseline score of t.py::test#0: nan is not a finite number$"),
        (None, r"^baseline score of t.py::test#0: expected a number, got None$"),
        (150.0, r"^baseline score of t.py::test#0: 150 is out of range \(must be <= 100\)$"),
    ],
)
def test_a_stored_quality_score_that_is_not_on_the_scale_is_named(score, message):
    stored = {"judge": "j", "prompt_version": "1", "verdicts": {}}
    stored["verdicts"] = {f"t.py::test#{i}": {"score": score} for i in range(5)}
    with pytest.raises(ValueError, match=message):
        compare_backend("fake:m", "fake:m", quality_entries(), stored, margin=5, alpha=0.05)


def test_compare_scores_refuses_a_nan_score():
    with pytest.raises(ValueError, match=r"^quality scores \(current\): sample 5 is nan"):
        compare_scores([50.0] * 4 + [math.nan], [50.0] * 5, margin=5, alpha=0.05)
