import json
import math
import random
import statistics

import pytest

from pytest_llmperf import stats
from pytest_llmperf.baseline import (
    SCHEMA_VERSION,
    STORED_METRICS,
    StoredBenchmark,
    baseline_path,
    bench_id,
    load_baseline,
    save_baseline,
)
from pytest_llmperf.bench import Workload
from pytest_llmperf.compare import GatePolicy, Reference, sequential
from pytest_llmperf.errors import BaselineError
from pytest_llmperf.gate import (
    Verdict,
    drift_allowance,
    gated_metrics,
    judge_metric,
    parse_tolerances,
    review,
    worst,
)
from pytest_llmperf.harness import Generation

ALPHA = 0.01
ALL_VERDICTS = ("PASS", "IMPROVEMENT", "INCONCLUSIVE", "UNSTABLE", "REFUSED", "REGRESSION")


def lognormal(seed, n=20, mu=-4.0, cv=0.05):
    rng = random.Random(seed)
    return [rng.lognormvariate(mu, cv) for _ in range(n)]


def scaled(samples, factor):
    return [s * factor for s in samples]


def judge(current, baseline, metric="tpot_s", tolerance=0.05, **kwargs):
    return judge_metric(metric, current, baseline, tolerance=tolerance, alpha=ALPHA, **kwargs)


def test_parse_tolerances_accepts_percent_and_fraction_with_whitespace():
    parsed = parse_tolerances(" ttft_s = 15 % ,tpot_s=0.05, e2e_s=0 ")
    assert parsed == pytest.approx({"ttft_s": 0.15, "tpot_s": 0.05, "e2e_s": 0.0})


@pytest.mark.parametrize("text", ["", "  ", " , ,"])
def test_parse_tolerances_of_nothing_is_empty(text):
    assert parse_tolerances(text) == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("latency_s=5%", r"tpot_s, e2e_s, ttft_s.*'latency_s=5%'"),
        ("tpot_s 5%", r"METRIC=PCT.*tpot_s, e2e_s.*'tpot_s 5%'"),
        ("tpot_s=fast", r"'fast' for tpot_s is not a number"),
        ("ttft_s=-5%", r"tolerance '-5%' for ttft_s must be between 0% and 1000%"),
        ("ttft_s=nan", r"tolerance 'nan' for ttft_s must be between"),
    ],
)
def test_parse_tolerances_rejects_bad_items_naming_the_problem(text, expected):
    with pytest.raises(ValueError, match=expected):
        parse_tolerances(text)


@pytest.mark.parametrize("medians", [[], [0.02], [0.01, 0.05]])
def test_drift_allowance_with_under_three_runs_is_conservative(medians):
    allowance, how = drift_allowance(medians)
    assert allowance == 0.30
    assert "conservative" in how


@pytest.mark.parametrize(
    "medians", [[0.02, 0.02, 0.02], [0.015, 0.017, 0.020], [0.0151, 0.0163, 0.0170, 0.0200]]
)
def test_drift_allowance_is_the_99pct_quantile_of_log_spread(medians):
    k = len(medians)
    s = statistics.stdev([math.log(m) for m in medians])
    allowance, how = drift_allowance(medians)
    assert allowance == pytest.approx(math.exp(2.326 * s * math.sqrt(1 + 1 / k)) - 1)
    assert f"{k} stored runs" in how


def test_aa_comparison_passes_at_final_look():
    verdict = judge(lognormal(101), lognormal(1))
    assert verdict.verdict == Verdict.PASS
    assert verdict.runs_to_settle is None


@pytest.mark.parametrize("seed", range(8))
def test_aa_comparison_is_never_a_regression_or_improvement(seed):
    verdict = judge(lognormal(seed + 100), lognormal(seed)).verdict
    assert verdict not in (Verdict.REGRESSION, Verdict.IMPROVEMENT)


def test_slowdown_well_beyond_tolerance_is_a_regression():
    baseline = lognormal(1)
    verdict = judge(scaled(baseline, 1.5), baseline)
    assert verdict.verdict == Verdict.REGRESSION
    assert verdict.ratio == pytest.approx(1.5)
    assert 1.0 < verdict.ci_low <= verdict.ratio <= verdict.ci_high
    assert (verdict.n_current, verdict.n_baseline) == (20, 20)


def test_slowdown_within_tolerance_is_not_a_regression():
    baseline = lognormal(2)
    assert judge(scaled(baseline, 1.03), baseline).verdict != Verdict.REGRESSION


@pytest.mark.parametrize(
    ("metric", "mu", "factor", "expected"),
    [
        ("tpot_s", -4.0, 0.6, Verdict.IMPROVEMENT),
        ("decode_tps", 3.0, 0.6, Verdict.REGRESSION),
        ("decode_tps", 3.0, 1.5, Verdict.IMPROVEMENT),
    ],
)
def test_verdict_direction_follows_whether_higher_is_better(metric, mu, factor, expected):
    baseline = lognormal(3, mu=mu)
    assert judge(scaled(baseline, factor), baseline, metric=metric).verdict == expected


def test_drift_allowance_widens_the_tolerance():
    baseline = lognormal(1)
    current = scaled(baseline, 1.2)
    assert judge(current, baseline).verdict == Verdict.REGRESSION
    widened = judge(current, baseline, drift=0.30)
    assert widened.verdict != Verdict.REGRESSION
    assert (widened.tolerance, widened.effective_tolerance) == (0.05, 0.30)
    assert judge(current, baseline, drift=0.01).effective_tolerance == 0.05


def test_a_trend_across_the_tolerance_boundary_is_unstable():
    baseline = lognormal(1)
    trending = [0.016 * (1 + 0.03 * i) for i in range(20)]  # from faster to much slower
    assert judge(trending, baseline).verdict == Verdict.UNSTABLE


@pytest.mark.parametrize("final", [True, False])
def test_three_samples_per_side_are_inconclusive_with_a_sample_estimate(final):
    verdict = judge(lognormal(2, n=3), lognormal(1, n=3), final=final)
    assert verdict.verdict == Verdict.INCONCLUSIVE
    assert isinstance(verdict.runs_to_settle, int)
    assert verdict.runs_to_settle > 3


def test_borderline_evidence_of_no_slowdown_passes_only_at_the_final_look():
    current, baseline = lognormal(108), lognormal(8)
    assert ALPHA < judge(current, baseline).p_no_slowdown < 0.05
    assert judge(current, baseline).verdict == Verdict.PASS
    assert judge(current, baseline, final=False).verdict == Verdict.INCONCLUSIVE


def test_describe_regression_with_drift_names_change_ci_label_and_widened_tolerance():
    baseline = lognormal(1)
    verdict = judge(scaled(baseline, 1.6), baseline, drift=0.30)
    assert verdict.verdict == Verdict.REGRESSION
    text = verdict.describe(0.0004, "Holm")
    assert text.startswith("TPOT regressed +60.0% (")
    plain = f"p={verdict.p_slowdown:.2g}, 0.0004 Holm"
    for part in ("90% CI +", plain, "tolerance 30%", "widened from 5% for drift"):
        assert part in text


def test_describe_without_drift_does_not_mention_widening():
    baseline = lognormal(1)
    text = judge(scaled(baseline, 0.6), baseline).describe(0.001, "p")
    assert text.startswith("TPOT improved -40.0%")
    assert "tolerance 5%" in text
    assert "widened" not in text


def test_worst_regression_beats_every_other_verdict_and_nothing_is_pass():
    shuffled = list(ALL_VERDICTS)
    random.Random(0).shuffle(shuffled)
    assert worst(shuffled) == Verdict.REGRESSION
    assert worst([]) == Verdict.PASS


@pytest.mark.parametrize("other", ALL_VERDICTS)
def test_worst_pass_is_least_severe(other):
    assert worst([Verdict.PASS, other]) == other
    assert worst([other, Verdict.PASS]) == other


def test_gated_metrics_use_tpot_only_when_median_output_exceeds_one_token():
    for tokens in ([32, 32, 31], [1, 2, 2]):
        assert gated_metrics(tokens) == ("tpot_s", "ttft_s")
    for tokens in ([1, 1, 1], [1, 1, 5], []):
        assert gated_metrics(tokens) == ("e2e_s", "ttft_s")


def test_review_adjusts_every_gated_p_value_and_skips_ungated_results():
    results = [
        {"nodeid": "a", "name": "", "gate": {"p_sequential": {"tpot_s": 0.001, "ttft_s": 0.2}}},
        {"nodeid": "b", "name": ""},
        {"nodeid": "c", "name": "", "gate": None},
        {"nodeid": "d", "name": "", "gate": {"verdict": Verdict.REFUSED}},
        {"nodeid": "e", "name": "", "gate": {"p_sequential": {"e2e_s": 0.003, "ttft_s": 0.03}}},
    ]
    rows = review(results, ALPHA)
    pvalues = [0.001, 0.2, 0.003, 0.03]
    expected_rows = [(0, "tpot_s"), (0, "ttft_s"), (4, "e2e_s"), (4, "ttft_s")]
    assert [(r["result"], r["metric"]) for r in rows] == expected_rows
    assert [r["p"] for r in rows] == pvalues
    p_holm = [r["p_holm"] for r in rows]
    assert p_holm == stats.holm(pvalues)
    assert p_holm == pytest.approx([0.004, 0.2, 0.009, 0.06])
    assert [r["holm_rejects"] for r in rows] == [True, False, True, False]
    harmonic = 1 + 1 / 2 + 1 / 3 + 1 / 4
    expected_by = [4 * harmonic * p / rank for p, rank in zip(pvalues, (1, 4, 2, 3), strict=True)]
    assert [r["p_by"] for r in rows] == pytest.approx(expected_by)
    assert [r["by_flags"] for r in rows] == [p < ALPHA for p in expected_by]
    assert [r["by_flags"] for r in rows] == [True, False, False, False]
    assert review(results[1:4], ALPHA) == []


NODE = "tests/x.py::test_a[fake:m]"
KEY = {"strict": {"cpu_model": "AMD EPYC", "library": "fake 1.0"}, "soft": {"host": "ci-1"}}
PARAMS = {"prompt": "hi", "max_tokens": 8, "temperature": 0.0, "seed": None, "options": {}}


def result(value, nodeid=NODE, params=PARAMS):
    samples = {"tpot_s": [value, value * 1.1, value * 1.2], "ttft_s": [value * 5, value * 6]}
    samples |= {"e2e_s": [value * 40], "output_tokens": [8, 8, 8], "itl_s": [value]}
    return {"nodeid": nodeid, "name": "", "params": params, "samples": samples}


def save(path, results, key=KEY, keep=3, commit="abc1234"):
    existing = load_baseline(path)
    return save_baseline(
        existing, path, backend="fake:m", key=key, results=results, commit=commit, keep=keep
    )


@pytest.fixture
def path(tmp_path):
    return tmp_path / "fake-m.json"


def test_bench_id_appends_the_name_only_when_there_is_one():
    assert bench_id(NODE, "") == NODE
    assert bench_id(NODE, "long") == f"{NODE}::long"


def test_baseline_path_differs_for_specs_sharing_a_short_id(tmp_path):
    first = baseline_path(tmp_path, "fake:m?delay=0.1", "fake:m")
    second = baseline_path(tmp_path, "fake:m?delay=0.2", "fake:m")
    assert first != second
    assert first == baseline_path(tmp_path, "fake:m?delay=0.1", "fake:m")
    assert first.parent == second.parent == tmp_path


def test_baseline_path_names_are_filesystem_safe(tmp_path):
    name = baseline_path(tmp_path, "llamacpp:org/model:Q4?n_ctx=512", "llamacpp:org/model?x").name
    assert name.endswith(".json")
    assert not set("/:?\\ ") & set(name)


def test_load_baseline_of_missing_file_is_none(path):
    assert load_baseline(path) is None


def test_load_baseline_of_invalid_json_names_the_file_and_never_overwrites(path):
    path.write_text("{not json")
    with pytest.raises(BaselineError, match="never overwritten") as info:
        load_baseline(path)
    assert str(path) in str(info.value)


def valid_document():
    run = {"created": "2026-11-01T00:00:00+00:00", "commit": None, "samples": {"tpot_s": [0.02]}}
    benchmarks = {NODE: {"params": PARAMS, "runs": [run]}}
    return {"schema_version": 1, "backend": "fake:m", "key": KEY, "benchmarks": benchmarks}


@pytest.mark.parametrize(
    "breaks",
    [
        lambda d: d.pop("benchmarks"),
        lambda d: d.pop("key"),
        lambda d: d["benchmarks"][NODE]["runs"][0]["samples"].update(tpot_s=["fast"]),
        lambda d: d["benchmarks"][NODE]["runs"][0]["samples"].update(tpot_s=0.02),
        lambda d: d["benchmarks"][NODE]["runs"][0].pop("samples"),
        lambda d: d.update(benchmarks=[]),
    ],
)
def test_load_baseline_of_wrong_structure_is_an_error(path, breaks):
    document = valid_document()
    breaks(document)
    path.write_text(json.dumps(document))
    with pytest.raises(BaselineError, match="expected structure"):
        load_baseline(path)


def test_load_baseline_from_a_newer_schema_is_an_error(path):
    path.write_text(json.dumps({**valid_document(), "schema_version": 99}))
    with pytest.raises(BaselineError, match="newer"):
        load_baseline(path)


def test_saved_baseline_round_trips_and_pools_runs(path):
    assert save(path, [result(0.02)]) == []
    assert save(path, [result(0.03)]) == []
    loaded = load_baseline(path)
    assert (loaded.path, loaded.backend) == (path, "fake:m")
    assert (loaded.strict, loaded.soft) == (KEY["strict"], KEY["soft"])
    entry = loaded.benchmarks[NODE]
    assert entry.params == PARAMS
    assert [run["commit"] for run in entry.runs] == ["abc1234", "abc1234"]
    assert entry.pooled("tpot_s") == pytest.approx([0.02, 0.022, 0.024, 0.03, 0.033, 0.036])
    assert entry.run_medians("tpot_s") == pytest.approx([0.022, 0.033])
    assert set(entry.newest["samples"]) <= set(STORED_METRICS)
    assert "itl_s" not in entry.newest["samples"]


def test_save_baseline_keeps_only_the_newest_runs(path):
    for value in (1.0, 2.0, 3.0, 4.0):
        save(path, [result(value)], keep=3)
    runs = load_baseline(path).benchmarks[NODE].runs
    assert [run["samples"]["e2e_s"] for run in runs] == [[80.0], [120.0], [160.0]]


def test_save_baseline_starts_afresh_when_params_change(path):
    save(path, [result(1.0)])
    save(path, [result(2.0)])
    changed = {**PARAMS, "max_tokens": 16}
    save(path, [result(3.0, params=changed)])
    entry = load_baseline(path).benchmarks[NODE]
    assert entry.params == changed
    assert [run["samples"]["e2e_s"] for run in entry.runs] == [[120.0]]


def test_save_baseline_pools_runs_whose_options_hold_a_tuple(path):
    params = Workload("p", 8, options={"stop": ("\n",)}).params()
    save(path, [result(1.0, params=params)])
    save(path, [result(2.0, params=params)])
    entry = load_baseline(path).benchmarks[NODE]
    assert len(entry.runs) == 2
    assert entry.params == params


def test_save_baseline_under_another_strict_key_replaces_everything(path):
    save(path, [result(1.0), result(1.0, nodeid="tests/x.py::test_b")])
    other = {"strict": {**KEY["strict"], "cpu_model": "Intel Xeon"}, "soft": KEY["soft"]}
    notes = save(path, [result(2.0)], key=other)
    assert len(notes) == 1
    assert "cpu_model: 'AMD EPYC' -> 'Intel Xeon'" in notes[0]
    assert "library" not in notes[0]
    loaded = load_baseline(path)
    assert loaded.strict == other["strict"]
    assert list(loaded.benchmarks) == [NODE]
    assert len(loaded.benchmarks[NODE].runs) == 1


def test_save_baseline_keeps_other_benchmarks_when_only_soft_key_differs(path):
    other_node = "tests/x.py::test_b"
    save(path, [result(1.0), result(1.0, nodeid=other_node)])
    moved = {"strict": KEY["strict"], "soft": {"host": "ci-2"}}
    assert save(path, [result(2.0)], key=moved) == []
    loaded = load_baseline(path)
    assert loaded.soft == {"host": "ci-2"}
    assert len(loaded.benchmarks[NODE].runs) == 2
    assert [run["samples"]["e2e_s"] for run in loaded.benchmarks[other_node].runs] == [[40.0]]


def test_save_baseline_writes_valid_json_without_leftover_temp_files(path):
    save(path, [result(1.0)])
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["schema_version"] == SCHEMA_VERSION == 1
    assert document["key"] == KEY
    assert list(path.parent.iterdir()) == [path]


def test_stored_runs_are_compared_position_by_position():
    entry = StoredBenchmark(
        params={},
        runs=[{"samples": {"tpot_s": [1.0, 2.0, 3.0, 4.0]}}, {"samples": {"tpot_s": [5.0, 6.0]}}],
    )
    assert entry.pooled("tpot_s", first=2) == [1.0, 2.0, 5.0, 6.0]
    assert entry.run_medians("tpot_s", first=3) == [2.0, 5.5]
    assert entry.pooled("tpot_s") == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_paired_judgement_sees_through_drift_shared_by_both_sides():
    drift = [1 + 0.03 * i for i in range(20)]
    rng = random.Random(9)
    ref = [0.02 * d * rng.lognormvariate(0, 0.02) for d in drift]
    cur = [0.02 * d * 1.15 * rng.lognormvariate(0, 0.02) for d in drift]
    unpaired = judge(cur, ref)
    ratios = [c / r for c, r in zip(cur, ref, strict=True)]
    paired = judge(cur, ref, pairs=(cur, ref), trend_of=ratios)
    assert unpaired.verdict == Verdict.UNSTABLE  # the raw samples trend
    assert paired.verdict == Verdict.REGRESSION


def test_a_trend_does_not_hide_a_slowdown_beyond_every_sample():
    baseline = lognormal(1)
    current = [b * 3 * (1 + 0.02 * i) for i, b in enumerate(sorted(baseline))]  # trending, 3x
    assert stats.is_unstable(current)
    assert judge(current, baseline).verdict == Verdict.REGRESSION


def _generation(tpot: float, ttft: float) -> Generation:
    return Generation(
        text="x",
        prompt_tokens=4,
        output_tokens=8,
        token_source="engine",
        ttft_s=ttft,
        e2e_s=ttft + 7 * tpot,
        itl_s=[tpot] * 7,
        tpot_s=tpot,
        decode_tps=1 / tpot,
        prefill_tps=4 / ttft,
        sec_per_token=(ttft + 7 * tpot) / 8,
        cpu_s=0.0,
        peak_rss_mb=None,
        chunks=8,
    )


@pytest.mark.parametrize(("factor", "expected"), [(1.0, "PASS"), (1.5, "REGRESSION")])
def test_sequential_looks_stop_at_the_first_clear_look(factor, expected):
    rng = random.Random(3)
    draws: list[int] = []

    def extend(count: int, start: int) -> tuple[list[Generation], list[Generation]]:
        draws.append(count)

        def side(f: float) -> list[Generation]:
            return [
                _generation(
                    0.02 * f * rng.lognormvariate(0, 0.03), 0.1 * rng.lognormvariate(0, 0.03)
                )
                for _ in range(count)
            ]

        return side(factor), side(1.0)

    policy = GatePolicy({"tpot_s": 0.05, "ttft_s": 0.10}, 0.05 / 2, 2, confirm=False)
    reference = Reference(mode="relative", label="same job")
    mine, theirs, verdicts = sequential(reference, (10, 20, 40), policy, extend)
    assert draws == [10]  # clear at the first look: nothing more was sampled
    assert len(mine) == len(theirs) == 10
    assert worst([v.verdict for v in verdicts]) == expected


def test_sequential_looks_go_on_while_unclear():
    rng = random.Random(5)
    draws: list[int] = []

    def extend(count: int, start: int) -> tuple[list[Generation], list[Generation]]:
        draws.append(count)
        # 5% slower with 5% noise against a 5% tolerance: neither clearly fine nor clearly slow.
        mine = [_generation(0.021 * rng.lognormvariate(0, 0.05), 0.1) for _ in range(count)]
        theirs = [_generation(0.02 * rng.lognormvariate(0, 0.05), 0.1) for _ in range(count)]
        return mine, theirs

    policy = GatePolicy({"tpot_s": 0.05, "ttft_s": 0.10}, 0.05 / 2, 2, confirm=False)
    mine, _, _ = sequential(Reference(mode="relative", label="x"), (10, 20, 40), policy, extend)
    assert draws == [10, 10, 20]
    assert len(mine) == 40
