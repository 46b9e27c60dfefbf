import math
import random
import statistics

import numpy as np
import pytest
from scipy import stats as sps

from pytest_llmperf.stats import (
    benjamini_yekutieli,
    binomial_ci,
    holm,
    improvement_pvalue,
    is_unstable,
    log_spread,
    median_ratio_ci,
    no_slowdown_pvalue,
    paired_pvalues,
    paired_runs_to_settle,
    percentile,
    runs_to_settle,
    slowdown_pvalue,
    summarize,
    trend,
)


def test_summary_matches_numpy():
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 0.3) for _ in range(101)]
    s = summarize(values)
    assert s.n == 101
    assert s.median == pytest.approx(np.median(values))
    assert s.mean == pytest.approx(np.mean(values))
    assert s.stdev == pytest.approx(np.std(values, ddof=1))
    for q, got in ((90, s.p90), (95, s.p95), (99, s.p99)):
        assert got == pytest.approx(np.percentile(values, q))
    assert (s.min, s.max) == (min(values), max(values))


def test_single_and_empty_samples():
    one = summarize([0.25])
    assert (one.n, one.median, one.stdev, one.p99) == (1, 0.25, 0.0, 0.25)
    empty = summarize([])
    assert empty.n == 0
    assert math.isnan(empty.median)
    assert empty.to_json()["median"] is None


def test_percentile_interpolates():
    assert percentile([0.0, 10.0], 25) == 2.5


# --- hypothesis tests, multiplicity, intervals, trend -----------------------------------------


def _lognormal(seed: int, n: int, cv: float = 0.05, scale: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [scale * rng.lognormvariate(0.0, cv) for _ in range(n)]


def test_slowdown_exact_u_by_hand():
    # All 3 current above all 3 baseline: 1 of C(6, 3) = 20 equally likely orderings.
    assert slowdown_pvalue([4, 5, 6], [1, 2, 3], 0.0) == pytest.approx(0.05, abs=1e-12)
    # tol 1.4: shifted [1.67, 2.08, 2.5] beat 5 of 9 baseline pairs; U null counts for
    # U = 0..9 are 1,1,2,3,3,3,3,2,1,1, so P(U >= 5) = 10/20.
    assert slowdown_pvalue([4, 5, 6], [1, 2, 3], 1.4) == pytest.approx(0.5, abs=1e-12)
    # tol 9: shifted [0.4, 0.5, 0.6] all below baseline, U = 0, P(U >= 0) = 1.
    assert slowdown_pvalue([4, 5, 6], [1, 2, 3], 9.0) == pytest.approx(1.0)


def test_slowdown_higher_is_better_mirror():
    # Throughput fell from [4, 5, 6] to [1, 2, 3]: the mirror image of the latency case.
    assert slowdown_pvalue([1, 2, 3], [4, 5, 6], 0.0, higher_is_better=True) == pytest.approx(0.05)
    assert slowdown_pvalue([1, 2, 3], [4, 5, 6], 9.0, higher_is_better=True) == pytest.approx(1.0)
    assert slowdown_pvalue([4, 5, 6], [1, 2, 3], 0.0, higher_is_better=True) == pytest.approx(1.0)
    assert improvement_pvalue([4, 5, 6], [1, 2, 3], 0.0, higher_is_better=True) == pytest.approx(
        0.05
    )
    assert improvement_pvalue([1, 2, 3], [4, 5, 6], 0.0) == pytest.approx(0.05)


@pytest.mark.parametrize("higher_is_better", [False, True])
def test_pvalues_match_scipy_on_shifted_samples(higher_is_better):
    cur, base, tol = _lognormal(1, 20, scale=1.08), _lognormal(2, 25), 0.05
    up = [c * (1 + tol) for c in cur]
    down = [c / (1 + tol) for c in cur]

    def u(x, alt):
        return sps.mannwhitneyu(x, base, alternative=alt).pvalue

    if higher_is_better:
        expected = (u(up, "less"), u(down, "greater"), u(up, "greater"))
    else:
        expected = (u(down, "greater"), u(up, "less"), u(down, "less"))
    got = tuple(
        f(cur, base, tol, higher_is_better=higher_is_better)
        for f in (slowdown_pvalue, improvement_pvalue, no_slowdown_pvalue)
    )
    assert got == pytest.approx(expected, rel=1e-12)


def test_a_a_is_not_flagged():
    cur, base = _lognormal(11, 20), _lognormal(12, 20)
    assert slowdown_pvalue(cur, base, 0.05) > 0.05
    assert improvement_pvalue(cur, base, 0.05) > 0.05
    # Same distribution, 5% tolerance, 5% CV: "no slowdown beyond 5%" is supported.
    assert no_slowdown_pvalue(cur, base, 0.05) < 0.05


def test_thirty_percent_slowdown_is_flagged():
    base = _lognormal(21, 20)
    cur = [b * 1.3 for b in _lognormal(22, 20)]
    assert slowdown_pvalue(cur, base, 0.05) < 0.001
    assert improvement_pvalue(cur, base, 0.05) > 0.5
    assert no_slowdown_pvalue(cur, base, 0.05) > 0.5
    # Same for a throughput metric that dropped by 1/1.3.
    cur_tps = [1 / c for c in cur]
    base_tps = [1 / b for b in base]
    assert slowdown_pvalue(cur_tps, base_tps, 0.05, higher_is_better=True) < 0.001
    assert improvement_pvalue(cur_tps, base_tps, 0.05, higher_is_better=True) > 0.5


def test_change_equal_to_tolerance():
    # At the boundary (true slowdown == tolerance) the shifted samples share a distribution,
    # so the p-value is about uniform on (0, 1]: nothing sharper can be asserted for one draw.
    base = _lognormal(31, 20)
    cur = [c * 1.05 for c in _lognormal(32, 20)]
    assert 0.0 < slowdown_pvalue(cur, base, 0.05) <= 1.0


def test_empty_samples_give_no_evidence():
    assert slowdown_pvalue([], [1.0, 2.0], 0.05) == 1.0
    assert no_slowdown_pvalue([1.0], [], 0.05) == 1.0


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([]) == []
    assert holm([0.6, 0.9]) == [1.0, 1.0]  # 2 * 0.6 and 2 * 0.9 are capped
    assert holm([0.04, 0.001, 0.3]) == pytest.approx([0.08, 0.003, 0.3])  # input order kept


def _holm_rejects(pvalues, alpha):
    """Holm's step-down procedure itself: reject in ascending order while p <= alpha / (m - k)."""
    m = len(pvalues)
    rejected = set()
    for k, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        if pvalues[i] > alpha / (m - k):
            break
        rejected.add(i)
    return rejected


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_step_down_procedure(seed):
    rng = random.Random(seed)
    pvalues = [rng.random() ** 3 for _ in range(12)]
    adjusted = holm(pvalues)
    for alpha in (0.001, 0.01, 0.05, 0.1, 0.2, 0.5):
        assert {i for i, p in enumerate(adjusted) if p <= alpha} == _holm_rejects(pvalues, alpha)
    assert all(a >= p for a, p in zip(adjusted, pvalues, strict=True))


def test_benjamini_yekutieli():
    # BH gives [0.03, 0.04, 0.04]; BY multiplies by 1 + 1/2 + 1/3 = 11/6.
    assert benjamini_yekutieli([0.01, 0.04, 0.03]) == pytest.approx([0.055, 0.22 / 3, 0.22 / 3])
    pvalues = [0.001, 0.2, 0.013, 0.04, 0.9, 0.0004, 0.05]
    expected = sps.false_discovery_control(pvalues, method="by")
    assert benjamini_yekutieli(pvalues) == pytest.approx(list(expected), rel=1e-12)
    assert benjamini_yekutieli([]) == []


def test_median_ratio_ci():
    cur, base = _lognormal(41, 15, scale=1.1), _lognormal(42, 21)
    result = median_ratio_ci(cur, base, seed=3)
    assert result == median_ratio_ci(cur, base, seed=3)
    assert result != median_ratio_ci(cur, base, seed=4)
    ratio, low, high = result
    assert ratio == statistics.median(cur) / statistics.median(base)
    assert low <= ratio <= high
    wide = median_ratio_ci(cur, base, confidence=0.99, seed=3)
    assert wide[1] <= low and high <= wide[2]


def test_median_ratio_ci_scaled_samples():
    base = _lognormal(51, 20)
    ratio, low, high = median_ratio_ci([b * 1.2 for b in base], base)
    # Every sample scaled by 1.2: the point estimate is 1.2 up to float rounding.
    assert ratio == pytest.approx(1.2, rel=1e-15)
    assert low <= 1.2 <= high


def test_trend():
    rising = [1.0 + 0.01 * i for i in range(20)]
    tau, p = trend(rising)
    assert tau == pytest.approx(1.0)
    assert p < 1e-6
    assert is_unstable(rising)
    assert is_unstable(rising[::-1])  # a steady speed-up is a drift too
    shuffled = _lognormal(61, 20)
    assert not is_unstable(shuffled)
    tau, p = trend(shuffled)
    assert (tau, p) == pytest.approx(tuple(sps.kendalltau(range(20), shuffled)))
    assert trend([2.0] * 10) == (0.0, 1.0)
    assert trend([1.0, 2.0]) == (0.0, 1.0)
    assert not is_unstable([2.0] * 10)


def test_log_spread():
    assert log_spread([1.0, math.e]) == pytest.approx(math.sqrt(0.5))
    assert log_spread([3.0]) == 0.0
    # Scale-free: multiplying every value leaves the relative spread unchanged.
    values = [15.1, 16.0, 17.5, 20.0]
    assert log_spread([v * 1e-3 for v in values]) == pytest.approx(log_spread(values))


def test_runs_to_settle():
    quiet, noisy = _lognormal(71, 10, cv=0.05), _lognormal(72, 10, cv=0.15)
    n_quiet = runs_to_settle([q * 1.1 for q in quiet], quiet, 0.05, 0.01)
    n_noisy = runs_to_settle([q * 1.1 for q in noisy], noisy, 0.05, 0.01)
    assert 10 <= n_quiet < n_noisy
    # Hand check: sigma 0.05, delta log(1.1 / 1.05), z 2.326 + 0.842 -> about 25 (notes).
    z = sps.norm.ppf(0.99) + sps.norm.ppf(0.8)
    sigma = float(np.std(np.log(quiet), ddof=1))  # both sides share it: pooled = each
    expected = math.ceil(2 * (z * sigma / math.log(1.1 / 1.05)) ** 2 / 0.955)
    assert n_quiet == expected
    # Medians ratio at the tolerance boundary: nothing can settle it.
    assert runs_to_settle(quiet, quiet, 0.0, 0.01) == 10_000
    assert runs_to_settle([q * 1.05 for q in quiet], quiet, 0.05, 0.01, cap=500) == 500
    hib = [q / 1.05 for q in quiet]
    assert runs_to_settle(hib, quiet, 0.05, 0.01, higher_is_better=True, cap=500) == 500
    # A clear change needs few samples, but never fewer than already taken.
    big = _lognormal(73, 200)
    assert runs_to_settle([b * 2 for b in big], big, 0.05, 0.01) == 200


def test_binomial_ci():
    low, high = binomial_ci(0, 20)
    assert low == 0.0
    assert high == pytest.approx(1 - 0.025 ** (1 / 20), abs=1e-4)
    low, high = binomial_ci(7, 20, 0.90)
    assert low == pytest.approx(sps.beta.ppf(0.05, 7, 14), abs=1e-9)
    assert high == pytest.approx(sps.beta.ppf(0.95, 8, 13), abs=1e-9)


def test_paired_pvalues_exact_small_case():
    ref = [1.0, 1.1, 0.9, 1.2, 1.0, 0.95, 1.05, 1.1]
    slow, impr, fine = paired_pvalues([r * 1.3 for r in ref], ref, 0.05)
    assert slow == pytest.approx(1 / 2**8)  # all 8 shifted log ratios positive
    assert fine == pytest.approx(1.0)
    assert impr == pytest.approx(1.0)
    # Higher is better (throughput): the same numbers read as an improvement.
    slow_hb, impr_hb, _ = paired_pvalues([r * 1.3 for r in ref], ref, 0.05, higher_is_better=True)
    assert (slow_hb, impr_hb) == (pytest.approx(1.0), pytest.approx(1 / 2**8))


def test_paired_test_removes_shared_drift_that_blinds_the_unpaired_one():
    rng = random.Random(3)
    drift = [1 + 0.02 * i for i in range(30)]  # both sides slow down together
    ref = [d * rng.lognormvariate(0, 0.02) for d in drift]
    cur = [d * 1.12 * rng.lognormvariate(0, 0.02) for d in drift]
    paired, _, _ = paired_pvalues(cur, ref, 0.05)
    unpaired = slowdown_pvalue(cur, ref, 0.05)
    assert paired < 1e-4
    assert unpaired > 0.01


def test_paired_pvalues_match_scipy_wilcoxon():
    rng = random.Random(11)
    ref = [rng.lognormvariate(0, 0.05) for _ in range(25)]
    cur = [r * rng.lognormvariate(0.08, 0.04) for r in ref]
    diffs = [math.log(c / r) - math.log(1.05) for c, r in zip(cur, ref, strict=True)]
    expected = sps.wilcoxon(diffs, alternative="greater", zero_method="pratt").pvalue
    assert paired_pvalues(cur, ref, 0.05)[0] == pytest.approx(expected)


def test_paired_runs_to_settle_grows_with_noise_and_respects_bounds():
    rng = random.Random(5)
    ref = [rng.lognormvariate(0, 0.05) for _ in range(10)]
    quiet = [r * 1.08 * rng.lognormvariate(0, 0.01) for r in ref]
    noisy = [r * 1.08 * rng.lognormvariate(0, 0.08) for r in ref]
    assert paired_runs_to_settle(quiet, ref, 0.05, 0.01) < paired_runs_to_settle(
        noisy, ref, 0.05, 0.01
    )
    assert paired_runs_to_settle(quiet, ref, 0.05, 0.01) >= 10
    assert paired_runs_to_settle(quiet[:1], ref[:1], 0.05, 0.01) == 10_000
