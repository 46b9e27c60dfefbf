"""``llm_load`` end to end through pytest: results entries, the load table, baselines, skips."""

import json

import pytest
from load_server import NONCE, directive, serve

from pytest_llmperf.load import LOAD_METRICS
from pytest_llmperf.stats import summarize

LOAD_TEST = """
import json

SLOW = json.dumps({{"ttft": 0.3, "tokens": 4}}, sort_keys=True)
FAST = json.dumps({{"ttft": 0.05, "tokens": 4}}, sort_keys=True)
LIMITED = json.dumps({{"status": 429}}, sort_keys=True)

def test_serving(llm_load):
    results = llm_load({prompts}, concurrency={concurrency}, requests=20, warmup=0)
    # A sweep (a list) gives a list; one point gives one result.
    assert (len(results) if isinstance(results, list) else None) == {points}
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
    result, doc = run(pytester, server, prompts, "2", None, "--llm-max-error-rate=0.25")
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
    saved, _ = run(pytester, server, prompts, "[2]", 1, "--llm-save-baseline")
    saved.assert_outcomes(passed=1)
    [path] = (pytester.path / "baselines").glob("*.json")
    [entry] = json.loads(path.read_text())["benchmarks"].values()
    assert len(entry["runs"][0]["samples"]["throughput_rps"]) >= 3
    # The baseline's key holds no workload keywords at their defaults: saved before they
    # existed or after, it compares.
    assert "ignore_eos" not in entry["params"] and "prefix_cache" not in entry["params"]
    result, doc = run(pytester, server, prompts, "2", None)
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


# --- one point, one result; .stats ----------------------------------------------------------

ONE_POINT = f"""
import json
from pytest_llmperf.bench import METRICS
from pytest_llmperf.load import LoadResult
from pytest_llmperf.stats import summarize

# Four different TTFTs, so the p95 is not any one request's.
PROMPTS = [{[directive(ttft=t, tokens=3) for t in (0.001, 0.004, 0.008, 0.02)]!r}]

def test_points(llm_load):
    closed = llm_load(PROMPTS[0], concurrency=4, requests=24, max_tokens=10)
    assert isinstance(closed, LoadResult)
    assert closed.stats["ttft_s"].p95 == summarize(closed.samples("ttft_s")).p95
    assert closed.stats["ttft_s"] == summarize(closed.samples("ttft_s"))
    assert closed.stats["ttft_s"].n == 24 and closed.stats["output_tokens"].median == 3
    assert set(closed.stats) >= set(METRICS)
    opened = llm_load(PROMPTS[0], rate=200, requests=8, warmup=0)
    assert isinstance(opened, LoadResult)
    assert opened.stats["e2e_s"] == summarize(opened.samples("e2e_s"))
    for listed in (
        llm_load(PROMPTS[0], concurrency=[2], requests=4, warmup=0),
        llm_load(PROMPTS[0], rate=[200], requests=4, warmup=0),
    ):
        assert isinstance(listed, list) and len(listed) == 1
        assert isinstance(listed[0], LoadResult)
"""


def test_one_point_returns_one_result_with_stats_and_a_list_of_one_a_list(pytester, server):
    pytester.makepyfile(ONE_POINT)
    result = pytester.runpytest(
        f"--llm=openai:m@{server.url}?timeout=20&deadline=30", "--llm-json=out.json"
    )
    result.assert_outcomes(passed=1)
    entries = json.loads((pytester.path / "out.json").read_text())["results"]
    names = [e["name"] for e in entries]
    assert names == ["load[c=4]", "load2[rate=200]", "load3[c=2]", "load4[rate=200]"]
    # The JSON's stats are the same summaries, under the keys they always had.
    first = entries[0]
    assert first["stats"]["ttft_s"] == summarize(first["samples"]["ttft_s"]).to_json()
    assert first["stats"]["ttft_s"]["n"] == 24
    assert set(first["stats"]) == set(LOAD_METRICS)


# --- generation options, workload keywords, empty and short generations ----------------------

#: openai with two declared generation options, recording each Request the load generator
#: sends (written when its streams close, outside anything timed).
SPY = """
import json
from pathlib import Path

import pytest
from pytest_llmperf.backends.openai import OpenAIBackend


class _Recording:
    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def stream(self, request):
        self.seen.append(
            {"prompt": request.prompt, "ignore_eos": request.ignore_eos,
             "prefix_cache": request.prefix_cache, "max_tokens": request.max_tokens}
        )
        return self.inner.stream(request)

    async def aclose(self):
        with Path("requests.jsonl").open("a") as f:
            f.writelines(json.dumps(r) + "\\n" for r in self.seen)
        await self.inner.aclose()


class SpyBackend(OpenAIBackend):
    kind = "spy"

    def generation_options(self):
        return ("stop", "top_p")

    def open_async(self, limit):
        return _Recording(super().open_async(limit))


@pytest.hookimpl
def pytest_llmperf_register_backends(register):
    register(SpyBackend)
"""


@pytest.fixture
def spy(pytester):
    pytester.makeconftest(SPY)
    return pytester


def spy_run(pytester, server, body, *args, query=""):
    """Run ``body`` in a test on the spy; what the server and the backend saw of this run."""
    server.bodies.clear()
    (pytester.path / "requests.jsonl").unlink(missing_ok=True)
    pytester.makepyfile(f"import json\n\ndef test_x(llm_load):\n    {body}\n")
    result = pytester.runpytest(
        f"--llm=spy:m@{server.url}?timeout=20&deadline=30{query}", "--llm-json=out.json", *args
    )
    log = pytester.path / "requests.jsonl"
    sent = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    out = pytester.path / "out.json"
    entries = json.loads(out.read_text())["results"] if out.exists() else []
    return result, sent, entries


def test_a_misspelt_keyword_fails_the_test_in_one_line_before_any_request(spy, server):
    # No valid name is close to "procesess": the message names the valid ones, no guess.
    result, sent, entries = spy_run(
        spy, server, "llm_load('hi', concurrency=2, requests=4, procesess=2)"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*InvalidRequest: unknown generation option 'procesess' for spy; "
            "valid options: stop, top_p"
        ]
    )
    out = result.stdout.str()
    assert "did you mean" not in out and "Traceback" not in out
    assert server.bodies == [] and sent == [] and entries == []
    # A typo of one of llm_load's own keywords is named as such.
    result, sent, _ = spy_run(spy, server, "llm_load('hi', concurrency=2, max_token=5)")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*unknown generation option 'max_token' (did you mean 'max_tokens'?) for spy*"]
    )
    assert server.bodies == [] and sent == []


def test_a_bad_prefix_cache_names_the_valid_ones_before_any_request(spy, server):
    result, sent, _ = spy_run(spy, server, "llm_load('hi', concurrency=2, prefix_cache='Bust')")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*prefix_cache='Bust'; valid: allow, bust*"])
    assert server.bodies == [] and sent == []


A = directive(tokens=2)
B = directive(tokens=3)


def contents(server):
    return [body["messages"][-1]["content"] for body in server.bodies]


def test_prefix_cache_bust_puts_a_fresh_nonce_before_every_request_sent(spy, server):
    call = f"llm_load([{A!r}, {B!r}], concurrency=2, requests=6, warmup=2, prefix_cache='bust')"
    result, sent, [entry] = spy_run(spy, server, call)
    result.assert_outcomes(passed=1)
    seen = contents(server)
    assert len(seen) == len(sent) == 8  # 2 warm-up requests, then 6
    nonces = [NONCE.match(text) for text in seen]
    assert all(nonces), seen
    assert len({m.group(0) for m in nonces}) == 8  # all distinct, warm-up included
    assert {text[len(m.group(0)) :] for text, m in zip(seen, nonces, strict=True)} == {A, B}
    assert {(r["prefix_cache"], r["ignore_eos"]) for r in sent} == {("bust", False)}
    assert sorted(r["prompt"] for r in sent) == sorted(seen)
    # Only what differs from the defaults enters the baseline's key.
    assert entry["params"]["prefix_cache"] == "bust" and "ignore_eos" not in entry["params"]


def test_by_default_prompts_go_unchanged_and_params_name_no_workload_keyword(spy, server):
    result, sent, [entry] = spy_run(
        spy, server, f"llm_load([{A!r}, {B!r}], concurrency=2, requests=4)"
    )
    result.assert_outcomes(passed=1)
    assert sorted(contents(server)) == sorted([A, B] * 3)  # 2 warm-up requests, then 4
    assert {(r["prefix_cache"], r["ignore_eos"]) for r in sent} == {("allow", False)}
    assert "prefix_cache" not in entry["params"] and "ignore_eos" not in entry["params"]


def test_the_spec_sets_the_workload_keywords_defaults(spy, server):
    call = f"llm_load({A!r}, concurrency=1, requests=2, warmup=0, max_tokens=2)"
    result, sent, [entry] = spy_run(spy, server, call, query="&ignore_eos=true&prefix_cache=bust")
    result.assert_outcomes(passed=1)
    assert {(r["prefix_cache"], r["ignore_eos"]) for r in sent} == {("bust", True)}
    assert all(NONCE.match(text) for text in contents(server))
    assert entry["params"]["ignore_eos"] is True and entry["params"]["prefix_cache"] == "bust"
    # A keyword given in the call wins over the spec.
    call = call.replace("max_tokens=2", "max_tokens=2, ignore_eos=False, prefix_cache='allow'")
    result, sent, [entry] = spy_run(spy, server, call, query="&ignore_eos=true&prefix_cache=bust")
    result.assert_outcomes(passed=1)
    assert {(r["prefix_cache"], r["ignore_eos"]) for r in sent} == {("allow", False)}
    assert contents(server) == [A, A]
    assert "ignore_eos" not in entry["params"] and "prefix_cache" not in entry["params"]


FULL, SHORT, EMPTY = directive(tokens=8), directive(tokens=3), directive(tokens=0)


def test_empty_and_short_generations_are_counted_and_shown(spy, server):
    # Requests cycle through the prompts: 2 full, 2 short and 2 empty (short too) of 6.
    call = (
        f"llm_load([{FULL!r}, {SHORT!r}, {EMPTY!r}], concurrency=1, requests=6, warmup=0, "
        "max_tokens=8, ignore_eos=True)"
    )
    result, sent, [entry] = spy_run(spy, server, call)
    result.assert_outcomes(passed=1)
    load = entry["load"]
    assert (load["succeeded"], load["empty"], load["short"]) == (6, 2, 4)
    assert entry["params"]["ignore_eos"] is True
    assert {r["ignore_eos"] for r in sent} == {True}
    # Only the short count's warning is asked for: a busy machine may add the generator's own
    # (scheduling lag, CPU share), which say nothing about the server.
    [warning] = [w for w in load["warnings"] if "max_tokens" in w]
    assert warning.startswith("4 of 6 generations came back with fewer than max_tokens=8")
    [header] = [line for line in result.stdout.lines if line.startswith("test ")]
    assert header.split()[-3:] == ["empty", "short", "verdict"]
    result.stdout.fnmatch_lines(["*test_x:load?c=1?*6/6*  2      4  -"])
    # Without ignore_eos a shorter answer is the model's own: only the empty ones count.
    result, _, [entry] = spy_run(spy, server, call.replace("ignore_eos=True", "ignore_eos=False"))
    result.assert_outcomes(passed=1)
    assert (entry["load"]["empty"], entry["load"]["short"]) == (2, None)
    assert [w for w in entry["load"]["warnings"] if "max_tokens" in w] == []
    [header] = [line for line in result.stdout.lines if line.startswith("test ")]
    assert header.split()[-2:] == ["empty", "verdict"]


def test_nothing_empty_adds_no_column(spy, server):
    result, _, [entry] = spy_run(spy, server, f"llm_load({FULL!r}, concurrency=1, requests=3)")
    result.assert_outcomes(passed=1)
    assert (entry["load"]["empty"], entry["load"]["short"]) == (0, None)
    [header] = [line for line in result.stdout.lines if line.startswith("test ")]
    assert "empty" not in header and "short" not in header


def test_a_point_where_every_generation_is_empty_fails_the_test_saying_why(spy, server):
    call = f"llm_load({EMPTY!r}, concurrency=2, requests=4, warmup=0)"
    result, _, [entry] = spy_run(spy, server, call)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*GenerationError: load[[]c=2[]]: every generation came back empty: the model "
            "stopped at once; try ignore_eos=True or a chat template (4 of 4 successful "
            "requests had no text or no tokens)"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert entry["load"]["empty"] == entry["load"]["succeeded"] == 4
