import math
import random

import numpy as np
import pytest

from pytest_llmperf.stats import percentile, summarize


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
