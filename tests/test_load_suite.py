"""``load:`` cases in YAML suites: parity with ``llm_load``, skips, errors, the alpha split."""

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from load_server import directive, serve

from pytest_llmperf._load_call import ASSUMED_POINTS, planned_load_comparisons
from pytest_llmperf._suite_load import load_suite
from pytest_llmperf.session import get_session

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "suites" / "serving-load.llmsuite.yaml"
FAST = directive(ttft=0.01, tokens=4)
SLOW = directive(ttft=0.05, tokens=4)
NO_SERVER = (
    "llm_load needs a backend that talks to a server (openai, bedrock); fake runs in this "
    "process, so there is no serving load to test"
)


@pytest.fixture
def server():
    with serve() as state:
        yield state


def suite(pytester: pytest.Pytester, text: str, name: str = "cases.llmsuite.yaml") -> Path:
    path = pytester.path / name
    path.write_text(textwrap.dedent(text))
    return path


def openai(server) -> str:
    return f"--llm=openai:m@{server.url}?timeout=20&deadline=30"


def results(pytester: pytest.Pytester) -> list[dict]:
    return json.loads((pytester.path / "out.json").read_text())["results"]


def shape(value):
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


def test_a_load_case_gives_the_results_of_the_same_python_llm_load_call(pytester, server):
    pytester.makepyfile(
        test_py=f"""
        def test_py(llm_load):
            llm_load([{FAST!r}, {SLOW!r}], concurrency=[1, 2], requests=12, warmup=0,
                     max_tokens=8, seed=3)
        """
    )
    suite(
        pytester,
        f"""
        defaults: {{max_tokens: 8}}
        cases:
          - id: yml
            load:
              prompts: [{json.dumps(FAST)}, {json.dumps(SLOW)}]
              concurrency: [1, 2]
              requests: 12
              warmup: 0
              seed: 3
        """,
    )
    result = pytester.runpytest(openai(server), "--llm-json=out.json", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["cases.llmsuite.yaml::yml?openai:m*? PASSED*"])
    entries = results(pytester)
    yml = [e for e in entries if e["nodeid"].startswith("cases.llmsuite.yaml::yml[")]
    py = [e for e in entries if e["nodeid"].startswith("test_py.py::test_py[")]
    assert [e["name"] for e in yml] == [e["name"] for e in py] == ["load[c=1]", "load[c=2]"]
    for y, p in zip(yml, py, strict=True):
        assert y["params"] == p["params"]
        assert shape(y) == shape(p)
        assert y["load"]["requests"] == 12 and y["load"]["errors"] == {}
    assert yml[0]["params"]["max_tokens"] == 8 and yml[0]["params"]["seed"] == 3
    assert yml[0]["params"]["prompts"] == [FAST, SLOW]  # requests cycle in this order


def test_a_rate_sweep_capped_by_a_concurrency_reuses_the_case_prompt(pytester, server):
    suite(
        pytester,
        f"""
        cases:
          - id: open
            prompt: {json.dumps(FAST)}
            max_tokens: 2
            temperature: 0.5
            load: {{rate: [20, 40], concurrency: 2, requests: 8}}
        """,
    )
    result = pytester.runpytest(openai(server), "--llm-json=out.json")
    result.assert_outcomes(passed=1)
    first, second = results(pytester)
    assert (first["name"], second["name"]) == ("load[rate=20,c=2]", "load[rate=40,c=2]")
    assert first["params"]["mode"] == "open" and first["params"]["rate"] == 20
    assert first["params"]["prompts"] == [FAST] and first["params"]["max_tokens"] == 2
    assert first["params"]["temperature"] == 0.5
    assert first["params"]["warmup"] == 2  # llm_load's default: the point's limit, at most 16
    assert first["load"]["requests"] == second["load"]["requests"] == 8


def test_load_cases_are_saved_then_gated_with_three_comparisons_per_point(pytester, server):
    suite(
        pytester,
        f"""
        cases:
          - id: gated
            prompt: {json.dumps(FAST)}
            load: {{concurrency: [1, 2], requests: 20, warmup: 0}}
        """,
    )
    saved = pytester.runpytest(openai(server), "--llm-save-baseline")
    saved.assert_outcomes(passed=1)
    [path] = (pytester.path / "baselines").glob("*.json")
    stored = sorted(json.loads(path.read_text())["benchmarks"])
    assert [key.rsplit("::", 1)[1] for key in stored] == ["load[c=1]", "load[c=2]"]
    assert all(key.startswith("cases.llmsuite.yaml::gated[openai:m") for key in stored)
    result = pytester.runpytest(openai(server), "--llm-json=out.json")
    result.assert_outcomes(passed=1)
    for entry in results(pytester):
        gate = entry["gate"]
        assert gate["mode"] == "stored"
        assert {m["metric"] for m in gate["metrics"]} == {"ttft_s", "throughput_rps"}
        # Two sweep points x (p50 TTFT, throughput, p95 TTFT): the in-test alpha split.
        assert gate["comparisons"] == 6


def test_a_backend_without_a_server_skips_the_case_before_loading_it(fake):
    fake.makepyfile(test_py="def test_py(llm_load):\n    llm_load('hi', concurrency=2)\n")
    suite(fake, "cases:\n  - id: yml\n    prompt: hi\n    load: {concurrency: 2}\n")
    # The Python test skips when it calls llm_load, after its backend loaded, so it has its
    # own (loadable) backend; the YAML case is skipped at collection: a backend that cannot
    # even load is never touched.
    result = fake.runpytest("--llm=fake:m", "-rs", "test_py.py")
    result.assert_outcomes(skipped=1)
    python_reason = [line for line in result.stdout.lines if "SKIPPED" in line]
    result = fake.runpytest("--llm=fake:m?fail_load=true", "-rs", "cases.llmsuite.yaml")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"SKIPPED ?1? cases.llmsuite.yaml:2: {NO_SERVER}"])
    assert python_reason[0].endswith(NO_SERVER)
    assert "is corrupt" not in result.stdout.str()


def test_the_example_suite_skips_on_the_default_embedded_backend(pytester, monkeypatch):
    monkeypatch.delenv("LLMPERF_LLM", raising=False)
    shutil.copy(EXAMPLE, pytester.path / EXAMPLE.name)
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    cases = load_suite(EXAMPLE)
    result.assert_outcomes(skipped=len(cases))
    result.stdout.fnmatch_lines(["*llamacpp runs in this process, so there is no serving load*"])


def test_the_example_suite_runs_on_a_server(pytester, server):
    shutil.copy(EXAMPLE, pytester.path / EXAMPLE.name)
    result = pytester.runpytest(openai(server), "--llm-json=out.json", "-k", "concurrency_sweep")
    result.assert_outcomes(passed=1, deselected=1)
    entries = results(pytester)
    assert [e["name"] for e in entries] == ["load[c=1]", "load[c=4]", "load[c=16]"]
    assert all(e["load"]["succeeded"] == 64 and e["warmup"] == 4 for e in entries)
    assert len(entries[0]["params"]["prompts"]) == 3  # two texts and a chat


def test_planned_comparisons_count_three_per_load_sweep_point(pytester):
    pytester.makepyfile(
        test_py="""
        def test_bench(llm_bench): pass
        def test_load(llm_load): pass
        def test_both(llm_bench, llm_load): pass
        def test_plain(): pass
        """
    )
    suite(
        pytester,
        """
        cases:
          - {id: sweep, prompt: p, load: {concurrency: [1, 2, 4, 8]}}
          - {id: one, prompt: p, load: {rate: 2}}
          - {id: bench, prompt: p}
        """,
    )
    items, _ = pytester.inline_genitems("--llm=openai:m@http://127.0.0.1:9/v1")
    counts = {item.name.split("[")[0]: planned_load_comparisons(item) for item in items}
    assumed = 3 * ASSUMED_POINTS
    assert counts == {
        "test_bench": 0,
        "test_load": assumed,
        "test_both": assumed,
        "test_plain": 0,
        "sweep": 12,
        "one": 3,
        "bench": 0,
    }
    # Three benchmarks (test_bench, test_both, the bench case) gate two metrics each.
    assert get_session(items[0].config).planned_comparisons == 3 * 2 + sum(counts.values())


def test_no_load_comparisons_are_planned_where_the_backend_serves_none(fake):
    fake.makepyfile(test_py="def test_load(llm_load): pass\ndef test_bench(llm_bench): pass\n")
    suite(fake, "cases:\n  - {id: sweep, prompt: p, load: {concurrency: [1, 2]}}\n")
    items, _ = fake.inline_genitems("--llm=fake:m")
    assert [planned_load_comparisons(item) for item in items] == [0, 0, 0]
    assert get_session(items[0].config).planned_comparisons == 2


CASE = "cases:\n  - id: a\n    prompt: p\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            CASE + "    load:\n      concurrency: [1, 2]\n      rate: [1, 2]\n",
            "x.llmsuite.yaml:6: case 'a': load: sweep concurrency or rate, not both (give one "
            "of them as a list*",
        ),
        (
            CASE + "    load: {concurrency: -1}\n",
            "x.llmsuite.yaml:4: case 'a': load: concurrency: expected a whole number >= 1 or a "
            "list of them, not -1",
        ),
        (
            CASE + "    load:\n      concurrency: [1, -4]\n",
            "x.llmsuite.yaml:5: case 'a': load: concurrency: expected a whole number >= 1 in "
            "the list, not -4",
        ),
        (
            CASE + "    load:\n      concurrency: [2, 2]\n",
            "x.llmsuite.yaml:5: case 'a': load: concurrency: 2 is listed twice: one sweep point "
            "per value",
        ),
        (
            CASE + "    load: {concurrency: []}\n",
            "*load: concurrency: expected a whole number >= 1 or a non-empty list of them, not []",
        ),
        (
            CASE + "    load: {rate: 0}\n",
            "x.llmsuite.yaml:4: case 'a': load: rate: expected a number of requests/s > 0 or a "
            "list of them, not 0",
        ),
        (
            CASE + "    load: {rate: .inf}\n",
            "x.llmsuite.yaml:4: '.inf' is inf: no key of a suite takes NaN or infinity",
        ),
        (
            CASE + "    load:\n      duration: -5\n",
            "x.llmsuite.yaml:5: case 'a': load: duration: expected a number of seconds > 0, not -5",
        ),
        (
            CASE + "    load: {requests: 0}\n",
            "*case 'a': load: requests: expected a whole number >= 1, not 0",
        ),
        (CASE + "    load: {warmup: -1}\n", "*load: warmup: expected a whole number >= 0, not -1"),
        (CASE + "    load: {seed: x}\n", "*load: seed: expected a whole number >= 0, not 'x'"),
        (
            CASE + "    load:\n      concurency: 4\n",
            "x.llmsuite.yaml:5: case 'a': load: unknown key 'concurency' (valid: concurrency, "
            "duration, max_tokens, prompts, rate, requests, seed, warmup)",
        ),
        (CASE + "    load:\n", "x.llmsuite.yaml:4: case 'a': load must be a mapping, not null"),
        (
            CASE + "    runs: 5\n    load: {}\n",
            "x.llmsuite.yaml:4: case 'a': runs applies to llm_bench, not to a case with 'load'",
        ),
        (
            CASE + "    load: {}\n    warmup: 2\n",
            "x.llmsuite.yaml:5: case 'a': warmup applies to llm_bench, not to a case with "
            "'load' (write it under 'load' for llm_load's warmup)",
        ),
        (
            CASE + "    load: {}\n    expect: {contains: x}\n",
            "x.llmsuite.yaml:5: case 'a': expect applies to llm_bench, not to a case with 'load'",
        ),
        (
            CASE + "    load: {prompts: [q]}\n",
            "x.llmsuite.yaml:2: case 'a': give one of 'prompt', 'messages' or 'load: prompts'",
        ),
        (
            "cases:\n  - id: a\n    load: {}\n",
            "x.llmsuite.yaml:2: case 'a': give one of 'prompt', 'messages' or 'load: prompts'",
        ),
        (
            "cases:\n  - id: a\n    load:\n      prompts: [q, [{role: robot, content: x}]]\n",
            "x.llmsuite.yaml:4: case 'a': load: prompts: a message needs role*",
        ),
        (
            CASE + "    options: {rate: 3}\n    load: {}\n",
            "x.llmsuite.yaml:4: case 'a': options ['rate'] are llm_load arguments; set them "
            "under 'load'",
        ),
        (
            "defaults:\n  load:\n    rate: -1\ncases:\n  - {id: a, prompt: p}\n",
            "x.llmsuite.yaml:3: defaults: load: rate: expected a number of requests/s > 0*",
        ),
    ],
)
def test_a_bad_load_section_fails_collection_with_file_line_and_problem(fake, text, message):
    suite(fake, text, "x.llmsuite.yaml")
    result = fake.runpytest("--llm=fake:m")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting x.llmsuite.yaml*", message])
    assert "Traceback" not in result.stdout.str()


def test_defaults_load_merges_key_by_key_and_bench_only_defaults_do_not_apply(tmp_path):
    path = tmp_path / "x.llmsuite.yaml"
    path.write_text(
        textwrap.dedent(
            """
            defaults:
              runs: 5
              warmup: 2
              max_tokens: 16
              load: {requests: 40, concurrency: [1, 4]}
            cases:
              - {id: a, prompt: p, load: {concurrency: 8}}
              - {id: b, prompt: p, load: {max_tokens: 4}}
            """
        )
    )
    a, b = load_suite(path)
    assert a.load is not None and b.load is not None
    assert (a.load.concurrency, a.load.requests, a.load.points) == (8, 40, 1)
    assert (b.load.concurrency, b.load.max_tokens, b.load.points) == ((1, 4), 4, 2)
    assert (a.runs, a.warmup, a.max_tokens) == (None, None, 16)
