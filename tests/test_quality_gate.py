"""The quality gate: judge scores against the stored baseline.

The statistics are checked against scipy on known data; end to end, the ``fake`` backend is
judged by the scripted OpenAI-compatible server (recorded verdicts over real HTTP).
"""

import json

import numpy as np
import pytest
import scipy.stats
from scripted_openai import Reply, ScriptedServer
from test_judge import _openai_stack_loaded  # noqa: F401  (module fixture: loads openai once)

from pytest_llmperf.baseline import load_baseline
from pytest_llmperf.quality_gate import (
    EXACT_MAX_PAIRS,
    compare_backend,
    compare_scores,
    mean_diff_ci,
    shifted_pvalue,
    sign_flip_pvalue,
)

# --- statistics ---------------------------------------------------------------------------


def test_sign_flip_p_on_a_hand_computed_example():
    # |1|, |1|, |2| under the 8 sign assignments sum to 4, 2, 2, 0, 0, -2, -2, -4; observed 2.
    assert sign_flip_pvalue([1.0, -1.0, 2.0], "greater") == 3 / 8
    assert sign_flip_pvalue([1.0, -1.0, 2.0], "less") == 7 / 8
    assert sign_flip_pvalue([5.0] * 5, "greater") == 1 / 32


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_sign_flip_equals_scipys_exact_permutation_test(alternative):
    rng = np.random.default_rng(1)
    # Coarse values, as judge ratings are: ties and zeros included.
    x = list(rng.integers(-3, 5, size=10).astype(float) * 11.1)
    expected = scipy.stats.permutation_test(
        (x,),
        np.mean,
        permutation_type="samples",
        alternative=alternative,
        n_resamples=np.inf,
    ).pvalue
    assert sign_flip_pvalue(x, alternative) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_beyond_the_exact_range_it_is_wilcoxon_pratt_on_the_shifted_differences(alternative):
    diffs = [0.0, -11.1, 11.1, 0.0, 22.2, -5.0, 0.0, 11.1, -22.2, 5.0] * 2  # 20 > 16 pairs
    assert len(diffs) > EXACT_MAX_PAIRS
    p, method = shifted_pvalue(diffs, 5.0, alternative)
    expected = scipy.stats.wilcoxon(
        [d + 5.0 for d in diffs], zero_method="pratt", alternative=alternative
    ).pvalue
    assert (p, method) == (pytest.approx(expected, rel=1e-12), "wilcoxon-pratt")


def test_the_bootstrap_ci_is_seeded_and_holds_the_mean():
    d = [-10.0, 0.0, 5.0, 12.0, -3.0, 7.0]
    low, high = mean_diff_ci(d)
    assert (low, high) == mean_diff_ci(d)
    assert low < np.mean(d) < high
    assert mean_diff_ci([4.0] * 5) == (4.0, 4.0)


def test_verdicts_from_paired_scores():
    same = compare_scores([77.8] * 5, [77.8] * 5, margin=5, alpha=0.05)
    assert (same["verdict"], same["p_noninferior"], same["mean_diff"]) == ("PASS", 1 / 32, 0.0)
    worse = compare_scores([22.2] * 5, [77.8] * 5, margin=5, alpha=0.05)
    assert (worse["verdict"], worse["p_regression"]) == ("REGRESSION", 1 / 32)
    assert worse["ci_high"] < -5
    few = compare_scores([77.8] * 4, [77.8] * 4, margin=5, alpha=0.05)
    assert few["verdict"] == "INCONCLUSIVE" and "fewer than 5 pairs" in few["reason"]
    noisy = compare_scores([90, 10, 80, 20, 70, 30], [50] * 6, margin=5, alpha=0.05)
    assert noisy["verdict"] == "INCONCLUSIVE"
    # Within the margin: a drop of 2 points is non-inferior with margin 5.
    small = compare_scores([75.8] * 6, [77.8] * 6, margin=5, alpha=0.05)
    assert small["verdict"] == "PASS"


def entries(score, judge="openai:j", n=5):
    return [
        {"nodeid": "t.py::test[fake:m]", "call": i, "score": score, "judge": judge}
        | {"prompt_version": "1", "backend_id": "fake:m"}
        for i in range(n)
    ]


def section(score, judge="openai:j", version="1", n=5):
    verdicts = {
        f"t.py::test[fake:m]#{i}": {"score": score, "prompt": f"q{i}", "response": f"a{i}"}
        for i in range(n)
    }
    return {"judge": judge, "prompt_version": version, "verdicts": verdicts}


def test_another_judge_or_prompt_version_is_refused_with_the_difference():
    out = compare_backend(
        "fake:m", "fake:m", entries(50), section(50, "openai:old"), margin=5, alpha=0.05
    )
    assert out.verdict == "REFUSED"
    assert "judge: 'openai:old' -> 'openai:j'" in out.reason
    out = compare_backend(
        "fake:m", "fake:m", entries(50), section(50, version="0"), margin=5, alpha=0.05
    )
    assert "judge prompt version: '0' -> '1'" in out.reason


def test_rejudging_the_baseline_replaces_its_scores_and_lifts_the_refusal():
    seen = []

    def rejudge(stored):
        seen.append(stored["response"])
        return 50.0

    out = compare_backend(
        "fake:m",
        "fake:m",
        entries(50),
        section(0, "openai:old"),
        margin=5,
        alpha=0.05,
        rejudge=rejudge,
    )
    assert (out.verdict, out.rejudged, out.mean_diff) == ("PASS", True, 0.0)
    assert seen == [f"a{i}" for i in range(5)]
    out = compare_backend(
        "fake:m", "fake:m", entries(50), section(0), margin=5, alpha=0.05, rejudge="judging is off"
    )
    assert out.verdict == "REFUSED" and "judging is off" in out.reason


def test_only_prompts_judged_on_both_sides_are_paired():
    out = compare_backend(
        "fake:m", "fake:m", entries(50, n=7), section(50, n=5), margin=5, alpha=0.05
    )
    assert out.n_pairs == 5 and "2 verdict(s) with no stored counterpart" in out.reason


# --- end to end ----------------------------------------------------------------------------

JUDGED = """
def test_answers(llm_backend, llm_judge):
    for i in range(5):
        llm_judge(f"question {i}", f"answer {i}")
"""


@pytest.fixture
def server():
    with ScriptedServer() as s:
        yield s


def rating(n: int) -> Reply:
    return Reply(text=json.dumps({"rating": n, "reason": "ok"}))


def run(pytester, server, *args, judge="judge"):
    return pytester.runpytest(
        "--llm=fake:m",
        f"--llm-judge=openai:{judge}@{server.url}",
        "--llm-judge-no-cache",
        "-p",
        "no:cacheprovider",
        *args,
    )


def gate_of(pytester):
    doc = json.loads((pytester.path / "o.json").read_text())
    [comparison] = doc["quality_gate"]
    return comparison


@pytest.fixture
def saved(fake, server):
    fake.makepyfile(JUDGED)
    server.script = [rating(8)]
    result = run(fake, server, "--llm-save-baseline")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*saved 0 benchmark(s) and 5 judged answer(s) of fake:m*"])
    [path] = (fake.path / "baselines").glob("*.json")
    stored = load_baseline(path)
    assert stored is not None and stored.quality is not None
    assert stored.quality["judge"] == f"openai:judge@{server.url}"
    [verdict] = [v for k, v in stored.quality["verdicts"].items() if k.endswith("[fake:m]#3")]
    assert (verdict["response"], verdict["ratings"]) == ("answer 3", [8])
    server.requests.clear()
    return fake


def test_same_scores_pass(saved, server):
    result = run(saved, server, "--llm-json=o.json")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*llmperf: quality gate 1 PASS*", "PASS fake:m: 5 pairs*"])
    assert gate_of(saved)["verdict"] == "PASS"


def test_worse_scores_fail_the_run_unless_fail_on_is_latency(saved, server):
    server.script = [rating(3)]
    result = run(saved, server, "--llm-json=o.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "REGRESSION fake:m: 5 pairs, mean diff -55.6 points*",
            "quality REGRESSION: the run fails (--llm-fail-on=both)",
        ]
    )
    comparison = gate_of(saved)
    assert (comparison["verdict"], comparison["n_pairs"]) == ("REGRESSION", 5)
    assert comparison["p_regression"] == 1 / 32
    result = run(saved, server, "--llm-fail-on=latency")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["quality REGRESSION reported only (--llm-fail-on=latency)"])


def test_another_judge_is_refused_and_rejudging_compares_on_one_scale(saved, server):
    result = run(saved, server, "--llm-json=o.json", judge="other")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["REFUSED fake:m: not compared: *judge: 'openai:judge@*"])
    assert gate_of(saved)["verdict"] == "REFUSED"
    server.requests.clear()
    result = run(saved, server, "--llm-json=o.json", "--llm-rejudge-baseline", judge="other")
    assert result.ret == 0
    comparison = gate_of(saved)
    assert (comparison["verdict"], comparison["rejudged"]) == ("PASS", True)
    result.stdout.fnmatch_lines(["PASS fake:m: 5 pairs*baseline re-judged by openai:other@*"])
    # 5 answers of this run, then the 5 stored ones sent again to the same judge.
    judged = [r["body"]["messages"][1]["content"] for r in server.requests]
    assert len(judged) == 10
    assert all(f"answer {i}" in judged[5 + i] for i in range(5))
