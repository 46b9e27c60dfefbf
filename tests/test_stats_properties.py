"""Property-based tests of the statistics and the gate: for any finite non-negative samples
(zeros, ties, one value, empty sides, subnormals, values up to 1e308) nothing raises, every
verdict is one of the set, every p-value is in [0, 1], and every verdict round-trips through
the strict JSON writer and reader.

Runs are bounded and derandomized (the same examples on every machine, no example database
written into the work tree), so the file takes seconds, not minutes, on a busy 2-core box.
"""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_llmperf import stats
from pytest_llmperf.gate import (
    DIRECTIONS,
    MAX_DRIFT_ALLOWANCE,
    SEVERITY,
    MetricVerdict,
    drift_allowance,
    judge_metric,
    review,
)
from pytest_llmperf.load import judge_tail
from pytest_llmperf.numeric import json_dumps, json_loads, json_safe
from pytest_llmperf.quality_gate import compare_scores
from pytest_llmperf.steps import detect_steps

BOUNDED = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Values a latency or rate sample can take, with the edges drawn often: zero, the smallest
#: subnormal, ordinary sizes, and the top of the float range.
VALUE = st.one_of(
    st.sampled_from([0.0, 5e-324, 1e-300, 1.0, 1e308, 1.7976931348623157e308]),
    st.floats(min_value=0.0, max_value=1e308),
    st.floats(min_value=1e-3, max_value=10.0),
)
SAMPLES = st.lists(VALUE, max_size=10)
#: Ties are the rule for coarse clocks and judge ratings: few distinct values, repeated.
TIED = st.lists(st.sampled_from([0.0, 0.5, 1.0, 1e308]), max_size=10)
SIDE = st.one_of(SAMPLES, TIED)
#: Pairs stay shorter: with ties scipy's signed-rank test enumerates all 2**n sign flips.
PAIRS = st.lists(st.tuples(VALUE, VALUE), max_size=7)
TOLERANCE = st.one_of(st.sampled_from([0.0, 0.05, 9.99]), st.floats(0.0, 10.0))
ALPHA = st.one_of(st.sampled_from([5e-324, 1e-17, 0.01, 1.0]), st.floats(1e-300, 1.0))
VERDICTS = set(SEVERITY)


def in_unit(*ps: float) -> bool:
    return all(0.0 <= p <= 1.0 for p in ps)


def round_trips(verdict: MetricVerdict) -> None:
    document = verdict.to_json()
    text = json_dumps(document)
    assert json_loads(text) == json.loads(text) == json_safe(document)[0]
    restored = MetricVerdict(**json.loads(text))
    assert isinstance(restored.describe(0.5, "Holm"), str)


def check_verdict(v: MetricVerdict, n_current: int, n_baseline: int) -> None:
    assert v.verdict in VERDICTS
    assert in_unit(v.p_slowdown, v.p_improvement, v.p_no_slowdown)
    assert (v.n_current, v.n_baseline) == (n_current, n_baseline)
    if math.isnan(v.ratio):  # only where no ratio exists, and then the note says why
        assert v.note and v.verdict in ("INCONCLUSIVE", "REFUSED")
    else:
        assert v.ratio >= 0.0
    assert v.runs_to_settle is None or 1 <= v.runs_to_settle <= 10_000
    round_trips(v)


# --- stats ------------------------------------------------------------------------------------


@BOUNDED
@given(SIDE)
def test_summarize_is_finite_and_ordered(values):
    s = stats.summarize(values)
    assert s.n == len(values)
    if not values:
        return
    fields = (s.median, s.mean, s.stdev, s.min, s.p90, s.p95, s.p99, s.max)
    assert all(math.isfinite(x) for x in fields)
    assert s.min <= s.median <= s.p90 <= s.p95 <= s.p99 <= s.max
    # The mean is computed from scaled values: within rounding of the range.
    assert s.min * (1 - 1e-12) <= s.mean <= s.max * (1 + 1e-12)
    assert s.stdev >= 0.0


@BOUNDED
@given(SIDE, SIDE, TOLERANCE, st.booleans())
def test_unpaired_pvalues_are_probabilities(current, baseline, tolerance, higher):
    for test in (stats.slowdown_pvalue, stats.improvement_pvalue, stats.no_slowdown_pvalue):
        assert in_unit(test(current, baseline, tolerance, higher_is_better=higher))


@BOUNDED
@given(PAIRS, TOLERANCE, st.booleans(), ALPHA)
def test_paired_pvalues_are_probabilities_and_the_estimate_is_bounded(pairs, tol, higher, alpha):
    current, reference = [c for c, _ in pairs], [r for _, r in pairs]
    assert in_unit(*stats.paired_pvalues(current, reference, tol, higher_is_better=higher))
    n = stats.paired_runs_to_settle(current, reference, tol, alpha, higher_is_better=higher)
    assert isinstance(n, int) and 1 <= n <= 10_000


@BOUNDED
@given(SIDE, SIDE, TOLERANCE, ALPHA, st.booleans())
def test_runs_to_settle_is_a_bounded_count(current, baseline, tolerance, alpha, higher):
    n = stats.runs_to_settle(current, baseline, tolerance, alpha, higher_is_better=higher, cap=500)
    assert isinstance(n, int)
    assert n == 500 or max(len(current), len(baseline)) <= n < 500


@BOUNDED
@given(SIDE, SIDE)
def test_median_ratio_ci_is_nan_only_for_an_empty_side(current, baseline):
    ratio, low, high = stats.median_ratio_ci(current, baseline, n_resamples=200)
    if not current or not baseline:
        assert all(math.isnan(x) for x in (ratio, low, high))
        return
    assert not any(math.isnan(x) for x in (ratio, low, high))
    assert 0.0 <= low <= high


@BOUNDED
@given(st.lists(st.one_of(st.floats(allow_nan=True), st.none()), max_size=12))
def test_multiplicity_corrections_give_probabilities_for_any_p_values(pvalues):
    rows = review([{"gate": {"p_sequential": {str(i): p}}} for i, p in enumerate(pvalues)], 0.05)
    assert len(rows) == len(pvalues)
    assert all(in_unit(row["p"], row["p_holm"], row["p_by"]) for row in rows)
    numbers = [p for p in pvalues if p is not None]
    assert in_unit(*stats.holm(numbers), *stats.benjamini_yekutieli(numbers))


@BOUNDED
@given(SIDE)
def test_trend_and_spread_are_defined(values):
    tau, p = stats.trend(values)
    assert -1.0 <= tau <= 1.0 and in_unit(p)
    assert stats.log_spread(values) >= 0.0
    allowance, how = drift_allowance(values)
    assert 0.0 <= allowance <= MAX_DRIFT_ALLOWANCE and how


# --- the gate ---------------------------------------------------------------------------------


@BOUNDED
@given(
    st.sampled_from(sorted(DIRECTIONS)),
    SIDE,
    SIDE,
    TOLERANCE,
    ALPHA,
    st.one_of(st.just(0.0), st.floats(0.0, 100.0)),
    st.booleans(),
    st.sampled_from(["current", "none", "other"]),
)
def test_judge_metric_always_gives_a_verdict(metric, cur, base, tol, alpha, drift, final, trend):
    trend_of = {"current": None, "none": (), "other": base}[trend]
    v = judge_metric(
        metric,
        cur,
        base,
        tolerance=tol,
        alpha=alpha,
        drift=drift,
        final=final,
        trend_of=trend_of,
    )
    check_verdict(v, len(cur), len(base))


@BOUNDED
@given(st.sampled_from(sorted(DIRECTIONS)), PAIRS, ALPHA)
def test_judge_metric_on_pairs_always_gives_a_verdict(metric, pairs, alpha):
    current, reference = [c for c, _ in pairs], [r for _, r in pairs]
    ratios = [stats.median_ratio_ci([c], [r], n_resamples=1)[0] for c, r in pairs]
    v = judge_metric(
        metric,
        current,
        reference,
        tolerance=0.05,
        alpha=alpha,
        trend_of=ratios,
        pairs=(current, reference),
    )
    check_verdict(v, len(current), len(reference))


@BOUNDED
@given(SIDE, SIDE, TOLERANCE, ALPHA)
def test_judge_tail_always_gives_a_verdict(current, baseline, tolerance, alpha):
    v = judge_tail(current, baseline, tolerance=tolerance, alpha=alpha, drift=0.0, note="Mood")
    check_verdict(v, len(current), len(baseline))
    assert v.note.startswith("Mood")


@BOUNDED
@given(
    st.lists(st.tuples(st.floats(0.0, 100.0), st.floats(0.0, 100.0)), max_size=12),
    st.floats(0.0, 50.0),
    ALPHA,
)
def test_quality_comparison_always_gives_a_verdict(pairs, margin, alpha):
    out = compare_scores([c for c, _ in pairs], [b for _, b in pairs], margin=margin, alpha=alpha)
    assert out["verdict"] in {"PASS", "REGRESSION", "INCONCLUSIVE"}
    assert in_unit(*(out[k] for k in ("p_noninferior", "p_regression") if k in out))
    json_loads(json_dumps(out))


# --- nightly steps ----------------------------------------------------------------------------


@BOUNDED
@given(st.lists(st.floats(min_value=5e-324, max_value=1e308), max_size=24))
def test_detect_steps_on_any_positive_series(values):
    steps = detect_steps(values)
    assert [s.index for s in steps] == sorted({s.index for s in steps})
    assert all(0 < s.index < len(values) for s in steps)


@BOUNDED
@given(st.lists(st.floats(min_value=0.0, max_value=100.0), max_size=24))
def test_detect_steps_on_any_score_series(values):
    for step in detect_steps(values, relative=False):
        assert 0 < step.index < len(values)
        assert step.change == pytest.approx(step.after - step.before)
