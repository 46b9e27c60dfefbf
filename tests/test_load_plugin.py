"""``llm_load`` end to end through pytest: results entries, the load table, baselines, skips."""

import json

import pytest
from load_server import directive, serve

LOAD_TEST = """
import json

SLOW = json.dumps({{"ttft": 0.3, "tokens": 4}}, sort_keys=True)
FAST = json.dumps({{"ttft": 0.05, "tokens": 4}}, sort_keys=True)
LIMITED = json.dumps({{"status": 429}}, sort_keys=True)

def test_serving(llm_load):
    results = llm_load({prompts}, concurrency={concurrency}, requests=20, warmup=0)
    assert len(results) == {points}
"""


@pytest.fixture
def server():
    with serve() as state:
        yield state


def run(pytester, server, prompts, concurrency, points, *args):
    pytester.makepyfile(LOAD_TEST.format(prompts=prompts, concurrency=concurrency, points=points))
    result = pytester.runpytest(
        f"--llm=openai:m@{server.url}?timeout=20&deadline=30", "--llm-json=out.json", *args
    )
    doc = json.loads((pytester.path / "out.json").read_text())
    return result, doc


def test_a_sweep_gives_one_results_entry_per_point(pytester, server):
    prompts = "[SLOW] * 5 + [FAST] * 15"
    result, doc = run(pytester, server, prompts, "[1, 4]", 2, "--llm-slo=ttft_s=0.2")
    result.assert_outcomes(passed=1)
    first, second = doc["results"]
    assert (first["name"], second["name"]) == ("load[c=1]", "load[c=4]")
    assert first["params"]["concurrency"] == 1 and second["params"]["mode"] == "closed"
    for entry in (first, second):
        load = entry["load"]
        assert load["goodput"] == {
            "good": 15,
            "total": 20,
            "share": 0.75,
            "rps": pytest.approx(15 / load["span_s"]),
        }
        assert load["slo"] == {"ttft_s": 0.2} and load["errors"] == {}
        assert entry["stats"]["ttft_s"]["n"] == 20 and len(entry["samples"]["ttft_s"]) == 20
        assert set(entry["stats"]["ttft_s"]) >= {"median", "p90", "p95", "p99"}
        assert entry["gate"] is None
    assert first["load"]["achieved_concurrency"] <= 1.0 < second["load"]["achieved_concurrency"]
    result.stdout.fnmatch_lines(["*llmperf: load*", "*test_serving:load?c=4?*20/20*75%*"])


def test_errors_are_counted_not_sampled_in_the_results(pytester, server):
    prompts = "[LIMITED, FAST, FAST, FAST]"
    result, doc = run(pytester, server, prompts, "2", 1, "--llm-max-error-rate=0.25")
    result.assert_outcomes(passed=1)
    [entry] = doc["results"]
    assert entry["load"]["errors"] == {"rate_limit": 5}
    assert entry["errors"]["by_kind"] == {"rate_limit": 5} and entry["runs"] == 15
    assert entry["stats"]["ttft_s"]["n"] == 15
    assert "--llm-max-error-rate" not in result.stdout.str()


def test_more_failures_than_the_limit_error_the_test_like_llm_bench(pytester, server):
    prompts = "[LIMITED, FAST, FAST, FAST]"
    result, doc = run(pytester, server, prompts, "[2, 4]", 2)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*load[[]c=2[]]: 5 of 20 requests failed (rate_limit x5), more than "
            "--llm-max-error-rate=0.1 allows; the samples left would be survivors, not the "
            "server's latency. Last error: *HTTP 429*"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    # The point that failed is in the results, with its counts; the sweep stopped there.
    [entry] = doc["results"]
    assert entry["name"] == "load[c=2]" and entry["errors"]["by_kind"] == {"rate_limit": 5}
    assert len(server.statuses) == 20


def test_saved_then_compared_load_is_gated(pytester, server):
    prompts = "[FAST]"
    saved, _ = run(pytester, server, prompts, "2", 1, "--llm-save-baseline")
    saved.assert_outcomes(passed=1)
    [path] = (pytester.path / "baselines").glob("*.json")
    [entry] = json.loads(path.read_text())["benchmarks"].values()
    assert len(entry["runs"][0]["samples"]["throughput_rps"]) >= 3
    result, doc = run(pytester, server, prompts, "2", 1)
    result.assert_outcomes(passed=1)
    gate = doc["results"][0]["gate"]
    assert gate["mode"] == "stored"
    assert {m["metric"] for m in gate["metrics"]} == {"ttft_s", "throughput_rps"}
    assert gate["verdict"] != "REGRESSION"
    assert any("ttft_p95_s not gated" in w for w in gate["warnings"])


def test_a_backend_without_a_server_skips(fake):
    fake.makepyfile("def test_x(llm_load):\n    llm_load('hi', concurrency=2)\n")
    result = fake.runpytest("--llm=fake:m", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*llm_load needs a backend that talks to a server*fake*"])


def test_bad_arguments_are_clear(pytester, server):
    pytester.makepyfile(
        "def test_x(llm_load):\n    llm_load('hi', concurrency=[1, 2], rate=[1, 2])\n"
    )
    result = pytester.runpytest(f"--llm=openai:m@{server.url}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*sweep concurrency or rate, not both*"])


def test_directive_round_trips():
    assert json.loads(directive(ttft=0.3, tokens=4)) == {"ttft": 0.3, "tokens": 4}


SWEEP = f"""
def test_sweep(llm_load):
    llm_load({directive(ttft=0.005, tokens=2)!r}, concurrency=[1, 2, 3, 4, 5, 6], requests=20,
             warmup=0)
"""


def test_a_sweep_longer_than_assumed_raises_the_sessions_comparison_count(pytester, server):
    pytester.makepyfile(SWEEP)
    args = (f"--llm=openai:m@{server.url}?timeout=20&deadline=30", "--llm-json=out.json")
    pytester.runpytest(*args, "--llm-save-baseline").assert_outcomes(passed=1)
    pytester.runpytest(*args).assert_outcomes(passed=1)
    entries = json.loads((pytester.path / "out.json").read_text())["results"]
    assert len(entries) == 6 and all(e["gate"]["mode"] == "stored" for e in entries)
    # Collection assumed 3 points (9 comparisons); the call asked for 6 x 3 before judging,
    # so every point is held to alpha / 18.
    assert {e["gate"]["comparisons"] for e in entries} == {18}


def test_a_compare_to_reference_that_serves_no_load_is_refused_before_the_candidate(fake, server):
    fake.makepyfile(f"""
def test_serving(llm_load):
    llm_load({directive(tokens=2)!r}, concurrency=2, requests=8, warmup=0)
""")
    result = fake.runpytest(
        f"--llm=openai:m@{server.url}?timeout=20&deadline=30",
        "--llm-compare-to=fake:m",
        "--llm-json=out.json",
    )
    result.assert_outcomes(passed=1)
    [entry] = json.loads((fake.path / "out.json").read_text())["results"]
    gate = entry["gate"]
    assert gate["verdict"] == "REFUSED"
    assert gate["reason"] == (
        "the --llm-compare-to reference fake:m cannot be load-tested: llm_load needs a backend "
        "that talks to a server (openai, bedrock); fake runs in this process, so there is no "
        "serving load to test"
    )
    assert entry["load"]["succeeded"] == 8
    result.stdout.fnmatch_lines(["*not compared: the --llm-compare-to reference fake:m*"])


def test_a_compare_to_reference_is_labelled_as_run_after_the_candidate(pytester, server):
    pytester.makepyfile(f"""
def test_serving(llm_load):
    llm_load({directive(tokens=2)!r}, concurrency=2, requests=8, warmup=0)
""")
    other = f"openai:m@{server.url}?timeout=21&deadline=30"
    result = pytester.runpytest(
        f"--llm=openai:m@{server.url}?timeout=20&deadline=30",
        f"--llm-compare-to={other}",
        "--llm-json=out.json",
    )
    result.assert_outcomes(passed=1)
    [entry] = json.loads((pytester.path / "out.json").read_text())["results"]
    gate = entry["gate"]
    assert gate["mode"] == "relative"
    assert gate["against"].endswith("(same job, same point run right after the candidate)")
    assert {m["note"] for m in gate["metrics"]} == {"same job, run right after the candidate"}
    assert len(server.statuses) == 16  # 8 for the candidate, then 8 for the reference
