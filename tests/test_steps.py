"""Step detection: exact optimal partitioning with an L1 cost, on realistic nightly noise."""

import itertools
import math
import random
import statistics

import pytest

from pytest_llmperf.steps import _partition, detect_steps, noise_scale

NIGHTS = 30


def nightly_medians(
    seed: int,
    steps: dict[int, float] = {},  # noqa: B006 - read only
    *,
    nights: int = NIGHTS,
    cv: float = 0.05,
    samples: int = 10,
) -> list[float]:
    """Per-night medians of ``samples`` lognormal latencies (``cv`` within a night) times a
    lognormal night-wide factor (``cv`` between nights: the drift of separate runs); the level
    is multiplied by ``1 + size`` from each night in ``steps``."""
    rng = random.Random(seed)
    out = []
    level = 1.0
    for night in range(nights):
        level *= 1 + steps.get(night, 0.0)
        drift = rng.lognormvariate(0.0, cv)
        out.append(
            statistics.median(level * drift * rng.lognormvariate(0.0, cv) for _ in range(samples))
        )
    return out


def indices(values: list[float], **kwargs: object) -> list[int]:
    return [s.index for s in detect_steps(values, **kwargs)]  # type: ignore[arg-type]


def test_a_20_percent_step_at_night_17_is_marked_on_that_night_and_no_other():
    values = nightly_medians(0, {17: 0.20})
    (step,) = detect_steps(values)
    assert step.index == 17
    assert step.change == pytest.approx(0.20, abs=0.05)
    assert step.before == pytest.approx(statistics.median(values[:17]))
    assert step.after == pytest.approx(statistics.median(values[17:]))


def test_the_step_is_found_for_every_seed_and_on_the_exact_night_for_most():
    found = [indices(nightly_medians(seed, {17: 0.20})) for seed in range(40)]
    # The first night of a new level can look like the old one by chance: one night off, never
    # missed and never doubled.
    assert all(len(f) == 1 and abs(f[0] - 17) <= 1 for f in found), found
    assert sum(f == [17] for f in found) >= 32  # 91% of 1000 seeds


def test_flat_nights_have_no_step():
    assert [indices(nightly_medians(seed)) for seed in range(40)] == [[]] * 40


def test_one_wild_night_is_not_a_step():
    for factor in (0.5, 1.5, 3.0):
        for seed in range(10):
            values = nightly_medians(seed)
            values[12] *= factor
            assert indices(values) == [], (factor, seed)


def test_two_short_lived_excursions_are_not_steps():
    values = nightly_medians(3)
    values[5] *= 1.4
    values[6] *= 1.4  # two slow nights: shorter than the three a level must hold
    assert indices(values) == []


def test_two_steps_are_both_marked():
    values = nightly_medians(1, {10: 0.25, 20: -0.25})
    steps = detect_steps(values)
    assert [s.index for s in steps] == [10, 20]
    assert steps[0].change > 0.15
    assert steps[1].change < -0.15


def test_a_step_needs_min_segment_nights_to_show():
    clean = [1.0, 1.01, 0.99] * 10
    at_27 = clean[:27] + [1.3] * 3
    at_28 = clean[:28] + [1.3] * 2
    assert indices(at_27) == [27]
    assert indices(at_28) == []  # not sustained yet
    assert indices(at_28, min_segment=2) == [28]


def test_steps_smaller_than_min_change_are_merged_away():
    # Very quiet nights: a 3% step is real but below the 5% default.
    values = [1.0 + 0.001 * (i % 3) for i in range(15)] + [
        1.03 + 0.001 * (i % 3) for i in range(15)
    ]
    assert indices(values) == []
    assert indices(values, min_change=0.02) == [15]


def test_noiseless_step_and_constant_series():
    assert indices([2.0] * 30) == []
    (step,) = detect_steps([2.0] * 12 + [3.0] * 18)
    assert (step.index, step.before, step.after) == (12, 2.0, 3.0)
    assert step.change == pytest.approx(0.5)


def test_raw_scores_step_in_points():
    rng = random.Random(4)
    scores = [80 + rng.gauss(0, 2) for _ in range(15)] + [68 + rng.gauss(0, 2) for _ in range(15)]
    (step,) = detect_steps(scores, relative=False)
    assert step.index == 15
    assert step.change == pytest.approx(-12, abs=3)
    # Below 5 points it is not reported, however clear.
    small = [80.0, 80.5, 79.5] * 5 + [77.0, 77.5, 76.5] * 5
    assert detect_steps(small, relative=False) == []
    zero = [0.0] * 10 + [50.0] * 10  # scores can be zero: no logarithms
    assert [s.index for s in detect_steps(zero, relative=False)] == [10]


def test_short_series_and_bad_input():
    assert detect_steps([1.0, 2.0, 3.0, 4.0, 5.0]) == []  # fewer than two segments' worth
    with pytest.raises(ValueError, match="positive"):
        detect_steps([1.0] * 5 + [0.0] + [1.0] * 5)
    with pytest.raises(ValueError, match="min_segment"):
        detect_steps([1.0] * 10, min_segment=0)


def test_noise_scale_ignores_steps_and_outliers():
    rng = random.Random(5)
    x = [rng.gauss(0, 0.05) + (0.5 if i >= 50 else 0.0) for i in range(100)]
    x[20] += 2.0
    assert noise_scale(x) == pytest.approx(0.05, rel=0.3)


def _objective(x: list[float], breaks: tuple[int, ...], scale: float, beta: float) -> float:
    edges = [0, *breaks, len(x)]
    cost = 0.0
    for a, b in itertools.pairwise(edges):
        m = statistics.median_low(x[a:b])
        cost += sum(abs(v - m) for v in x[a:b]) / scale
    return cost + beta * len(breaks)


@pytest.mark.parametrize("seed", range(6))
def test_partition_is_the_exact_optimum(seed):
    """Against brute force over every segmentation with segments of at least 2 points."""
    rng = random.Random(seed)
    x = [rng.gauss(0, 1) + (3 if i >= 5 else 0) - (2 if i >= 9 else 0) for i in range(12)]
    scale, beta, min_segment = 1.0, 2.0 + seed / 2, 2
    best = math.inf
    for k in range(0, 6):
        for breaks in itertools.combinations(range(min_segment, len(x) - min_segment + 1), k):
            edges = [0, *breaks, len(x)]
            if all(b - a >= min_segment for a, b in itertools.pairwise(edges)):
                best = min(best, _objective(x, breaks, scale, beta))
    found = tuple(_partition(x, scale, beta, min_segment))
    assert _objective(x, found, scale, beta) == pytest.approx(best)


def test_long_histories_are_analysed():
    values = nightly_medians(6, {200: 0.2}, nights=365)
    assert indices(values) in ([200], [199], [201])
