"""YAML suites (``*.llmsuite.yaml``): collection, checks, errors, packaged suites, parity."""

import json
import textwrap
from pathlib import Path

import pytest

from pytest_llmperf._suite_load import SuiteError, load_suite
from pytest_llmperf.suite import expect_failures, packaged_suites, schema_problem

REPO = Path(__file__).resolve().parents[1]

# A backend whose every generation is a fixed text, one word per chunk: ECHO_<MODEL> names it,
# so the model under test and the judge (both "echo") can answer differently.
ECHO_BACKEND = """

class EchoBackend(FakeBackend):
    kind = "echo"

    def stream(self, request):
        yield Usage(prompt_tokens=3, token_source="chunks")
        for word in os.environ["ECHO_" + self.spec.model.upper()].split(" "):
            yield Chunk(word + " ")


def pytest_llmperf_register_backends(register):
    register(FakeBackend)
    register(EchoBackend)
"""

QUICK = ("--llm-runs=2", "--llm-warmup=0")


@pytest.fixture
def echo(fake: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    fake.makeconftest((fake.path / "conftest.py").read_text() + ECHO_BACKEND)
    monkeypatch.setenv("ECHO_ANSWER", '{"name": "Ada", "age": 36}')
    return fake


def suite(pytester: pytest.Pytester, text: str, name: str = "cases.llmsuite.yaml") -> Path:
    path = pytester.path / name
    path.write_text(textwrap.dedent(text))
    return path


def results(pytester: pytest.Pytester) -> list[dict]:
    return json.loads((pytester.path / "out.json").read_text())["results"]


TWO_CASES = """
    defaults:
      max_tokens: 4
    cases:
      - id: first
        prompt: hello there
      - id: second.one
        messages:
          - {role: system, content: be brief}
          - {role: user, content: hi}
"""


def test_only_files_named_llmsuite_yaml_or_yml_are_collected(fake):
    suite(fake, TWO_CASES)
    suite(fake, TWO_CASES.replace("first", "third"), "more.llmsuite.yml")
    suite(fake, TWO_CASES, "plain.yaml")  # a valid suite, but not named as one
    suite(fake, "not: [a, suite", "config.yml")
    result = fake.runpytest("--llm=fake:m", "--co", "-q")
    assert result.ret == 0
    collected = [line for line in result.stdout.lines if "::" in line]
    assert sorted(collected) == [
        "cases.llmsuite.yaml::first[fake:m]",
        "cases.llmsuite.yaml::second.one[fake:m]",
        "more.llmsuite.yml::second.one[fake:m]",
        "more.llmsuite.yml::third[fake:m]",
    ]


def test_one_item_per_case_and_backend_located_at_the_case(fake):
    suite(fake, TWO_CASES)
    items, _ = fake.inline_genitems("--llm=fake:a", "--llm=fake:b")
    assert sorted(item.name for item in items) == [
        "first[fake:a]",
        "first[fake:b]",
        "second.one[fake:a]",
        "second.one[fake:b]",
    ]
    # -v lines and failure headers point at the case in the YAML file (0-based line).
    locations = {item.name: item.location[:2] for item in items}
    assert locations["first[fake:a]"] == ("cases.llmsuite.yaml", 4)
    assert locations["second.one[fake:b]"] == ("cases.llmsuite.yaml", 6)


def test_cases_run_llm_bench_with_their_parameters_and_file_defaults(fake):
    suite(
        fake,
        """
        defaults:
          max_tokens: 3
          runs: 2
          warmup: 0
          options: {stop: ["\\n"], top_k: 5}
          expect: {contains: TOK, ignore_case: true}
        cases:
          - id: inherits
            prompt: hello there
          - id: overrides
            prompt: hello again
            max_tokens: 5
            runs: 3
            temperature: 0.5
            seed: 7
            options: {top_k: 9}
            expect: {regex: '^(tok )+$'}
        """,
    )
    result = fake.runpytest("--llm=fake:m", "--llm-json=out.json")
    result.assert_outcomes(passed=2)
    by_name = {r["nodeid"].split("::")[1]: r for r in results(fake)}
    inherits, overrides = by_name["inherits[fake:m]"], by_name["overrides[fake:m]"]
    assert (inherits["runs"], inherits["warmup"]) == (2, 0)
    assert inherits["params"] == {
        "prompt": "hello there",
        "max_tokens": 3,
        "temperature": 0.0,
        "seed": None,
        "options": {"stop": ["\n"], "top_k": 5},
    }
    assert overrides["runs"] == 3
    assert overrides["params"]["max_tokens"] == 5
    assert (overrides["params"]["temperature"], overrides["params"]["seed"]) == (0.5, 7)
    assert overrides["params"]["options"] == {"stop": ["\n"], "top_k": 9}
    assert [g["output_tokens"] for g in overrides["generations"]] == [5, 5, 5]


def checks(tmp_path: Path, expect: str, texts: list[str]) -> list[str]:
    path = tmp_path / "x.llmsuite.yaml"
    path.write_text(f"cases:\n  - id: c\n    prompt: p\n    expect: {expect}\n")
    [case] = load_suite(path)
    assert case.expect is not None
    return expect_failures(case.expect, texts)


@pytest.mark.parametrize(
    ("expect", "texts", "message"),
    [
        ("{contains: Paris}", ["It is Paris."], None),
        (
            "{contains: [Paris, France]}",
            ["It is Paris.", "Paris!"],
            "expect contains 'France': failed in 2 of 2 generation(s) (absent); first: "
            "'It is Paris.'",
        ),
        ("{contains: paris, ignore_case: true}", ["PARIS"], None),
        ("{contains: paris}", ["PARIS"], "expect contains 'paris': failed in 1 of 1"),
        ("{not_contains: [Lyon, Nice]}", ["Paris"], None),
        (
            "{not_contains: Lyon}",
            ["Paris", "Lyon", "Lyon"],
            "expect not_contains 'Lyon': failed in 2 of 3 generation(s) (present); first: 'Lyon'",
        ),
        ("{regex: 'Answer: *42\\b'}", ["so... Answer: 42"], None),
        ("{regex: '^\\d+$'}", ["forty-two"], "expect regex '^\\\\d+$': failed in 1 of 1 "),
        ("{max_chars: 5}", ["12345"], None),
        ("{max_chars: 5}", ["123456"], "expect max_chars 5: failed in 1 of 1 generation(s) (6"),
        ("{json: true}", ['{"a": [1, 2]}'], None),
        ("{json: true}", ['```json\n{"a": 1}\n```'], None),
        ("{json: true}", ["{'a': 1}"], "expect json: failed in 1 of 1 generation(s) (not JSON: "),
    ],
)
def test_each_expect_check_passes_or_fails_with_a_clear_message(tmp_path, expect, texts, message):
    failures = checks(tmp_path, expect, texts)
    if message is None:
        assert failures == []
    else:
        [failure] = failures
        assert failure.startswith(message)


def test_a_long_generation_is_quoted_shortened(tmp_path):
    [failure] = checks(tmp_path, "{contains: zebra}", ["word " * 100])
    assert failure.endswith("...'")
    assert len(failure) < 300


SCHEMA = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
    },
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"name": "Ada", "age": 36}, None),
        ({"name": "Ada", "age": 36.0, "tags": ["a", "b"]}, None),
        ([1], "$: expected object, got [1]"),
        ({"name": "Ada"}, "$: missing required property 'age'"),
        ({"name": "Ada", "age": "36"}, '$.age: expected integer, got "36"'),
        ({"name": "Ada", "age": True}, "$.age: expected integer, got true"),
        ({"name": "Ada", "age": 3, "tags": ["c"]}, '$.tags[0]: "c" is not one of ["a", "b"]'),
        ({"name": "Ada", "age": 3, "x": 1}, "$: unexpected properties ['x']"),
    ],
)
def test_json_schema_subset(value, problem):
    assert schema_problem(value, SCHEMA) == problem


def test_json_schema_checks_run_on_the_generated_text(echo):
    suite(
        echo,
        """
        defaults: {max_tokens: 16}
        cases:
          - id: person
            prompt: describe someone as JSON
            expect:
              json_schema:
                type: object
                required: [name, age]
                properties: {age: {type: integer}}
          - id: adult
            prompt: describe someone as JSON
            expect:
              json_schema:
                properties: {age: {enum: [18]}}
        """,
    )
    result = echo.runpytest("--llm=echo:answer", *QUICK)
    result.assert_outcomes(passed=1, failed=1)
    assert (
        "expect json_schema: failed in 2 of 2 generation(s) ($.age: 36 is not one of [18]); "
        """first: '{"name": "Ada", "age": 36} '"""
    ) in result.stdout.str()


def test_budgets_bound_statistics_and_name_metric_statistic_value_and_budget(fake):
    suite(
        fake,
        """
        defaults: {max_tokens: 4}
        cases:
          - id: within
            prompt: hi
            budgets: {output_tokens: {max: 4, median: 4}}
          - id: over
            prompt: hi
            budgets:
              output_tokens: {p95: 3}
              ttft_s: {p95: 0}
          - id: floor
            prompt: hi
            budgets: {decode_tps: {median: 1.0e+15}}
          - id: unmeasured
            prompt: hi
            budgets: {server_latency_s: {max: 10}}
        """,
    )
    result = fake.runpytest("--llm=fake:m", *QUICK)
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        [
            "budget output_tokens p95 = 4, over its budget of 3 (n=2)",
            "budget ttft_s p95 = *, over its budget of 0 (n=2)",
            "budget decode_tps median = *, below its floor of 1e+15 (n=2)",
            "budget server_latency_s max <= 10: no server_latency_s samples (this backend does not "
            "report it here), so the budget cannot be checked",
        ]
    )


def test_every_failed_check_of_a_case_is_reported_together(fake):
    suite(
        fake,
        """
        cases:
          - id: many
            prompt: hi
            max_tokens: 2
            expect: {contains: zebra, max_chars: 3}
            budgets: {output_tokens: {max: 1}}
        """,
    )
    result = fake.runpytest("--llm=fake:m", *QUICK)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    for part in ("expect contains 'zebra'", "expect max_chars 3", "budget output_tokens max = 2"):
        assert part in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "cases:\n  - id: a\n    prompt: [hi\n",
            "x.llmsuite.yaml:4: invalid YAML: expected ',' or ?]?, but got '<stream end>' "
            "(while parsing a flow sequence at line 3)",
        ),
        (
            "cases:\n  - id: a\n    promt: hi\n",
            "x.llmsuite.yaml:3: case 'a': unknown key 'promt' (valid: backends, budgets, "
            "description, expect, id, ignore_eos, load, max_tokens, messages, min_quality, "
            "options, prefix_cache, prompt, *)",
        ),
        ("cases:\n  - id: a\n", "x.llmsuite.yaml:2: case 'a': give exactly one of 'prompt' or*"),
        (
            "cases:\n  - id: a\n    prompt: p\n    messages: [{role: user, content: x}]\n",
            "x.llmsuite.yaml:2: case 'a': give exactly one of 'prompt' or 'messages'",
        ),
        (
            "cases:\n  - id: a\n    prompt: p\n    max_tokens: lots\n",
            "x.llmsuite.yaml:4: case 'a': max_tokens: expected a whole number >= 1, not 'lots'",
        ),
        (
            "cases:\n  - id: a\n    prompt: [p]\n",
            "x.llmsuite.yaml:3: case 'a': prompt: expected a non-empty string, not a list",
        ),
        ("cases:\n  - prompt: p\n", "x.llmsuite.yaml:2: case #1: missing 'id'"),
        (
            "cases:\n  - {id: a, prompt: p}\n  - {id: a, prompt: q}\n",
            "x.llmsuite.yaml:3: duplicate case id 'a' (line 2)",
        ),
        ("cases:\n  - {id: a b, prompt: p}\n", "*case 'a b': id may hold letters, digits*"),
        (
            "cases:\n  - {id: a, prompt: p, prompt: q}\n",
            "x.llmsuite.yaml:2: duplicate key 'prompt'",
        ),
        ("case: []\n", "x.llmsuite.yaml:1: unknown key 'case' (valid: cases, defaults, descr*"),
        ("", "x.llmsuite.yaml: empty suite file: expected a mapping with a 'cases' list"),
        (
            "defaults:\n  id: x\ncases: [{id: a, prompt: p}]\n",
            "x.llmsuite.yaml:2: defaults: unknown key 'id' (valid: backends, budgets, *)",
        ),
        (
            "cases:\n  - id: a\n    prompt: p\n    expect: {regex: '(unclosed'}\n",
            "x.llmsuite.yaml:4: case 'a': expect: regex '(unclosed': missing ) at position 9",
        ),
        (
            "cases:\n  - id: a\n    prompt: p\n    expect:\n      json_schema: {minimum: 3}\n",
            "x.llmsuite.yaml:5: case 'a': expect: json_schema: unknown key 'minimum' (valid: *",
        ),
        (
            "cases:\n  - id: a\n    prompt: p\n    budgets: {ttft_s: {p97: 1}}\n",
            "x.llmsuite.yaml:4: case 'a': budgets: ttft_s: unknown key 'p97' (valid: max, mean, "
            "median, min, p90, p95, p99)",
        ),
        (
            "cases:\n  - id: a\n    messages: [{role: robot, content: x}]\n",
            "x.llmsuite.yaml:3: case 'a': messages: a message needs role (system, user, "
            "assistant) and content (a string)",
        ),
    ],
)
def test_a_bad_file_fails_collection_with_file_line_and_problem(fake, text, message):
    suite(fake, text, "x.llmsuite.yaml")
    result = fake.runpytest("--llm=fake:m")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting x.llmsuite.yaml*", message])
    assert "Traceback" not in result.stdout.str()
    assert "_suite_load.py" not in result.stdout.str()


def test_a_suite_error_carries_its_line_for_the_collector(tmp_path):
    path = tmp_path / "x.llmsuite.yaml"
    path.write_text("cases:\n  - id: a\n    prompt: p\n    seed: -1\n")
    with pytest.raises(SuiteError, match="seed: expected a whole number >= 0") as info:
        load_suite(path)
    assert info.value.line == 4


def test_backends_and_tolerance_keys_become_the_plugins_marks(fake):
    suite(
        fake,
        """
        cases:
          - id: llamacpp_only
            prompt: hi
            backends: llamacpp
          - id: loose
            prompt: hi
            tolerance: {tpot_s: 40%}
        """,
    )
    items, _ = fake.inline_genitems("--llm=fake:m")
    marks = {item.name: item.get_closest_marker for item in items}
    assert marks["llamacpp_only[fake:m]"]("llm_backends").args == ("llamacpp",)
    assert marks["loose[fake:m]"]("llm_perf").kwargs == {"tolerance": {"tpot_s": 0.4}}
    result = fake.runpytest("--llm=fake:m", "-rs", *QUICK)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*llm_backends(llamacpp): not fake*"])


def test_llm_suite_runs_the_packaged_suite_alone_without_path_arguments(fake):
    fake.makepyfile(test_other="def test_other():\n    raise AssertionError('not collected')\n")
    result = fake.runpytest("--llm=fake:m", "--llm-suite=latency", "-v", *QUICK)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "pytest_llmperf/suites/latency.llmsuite.yaml::short_prompt?fake:m? PASSED*",
            "pytest_llmperf/suites/latency.llmsuite.yaml::prefill_heavy?fake:m? PASSED*",
            "pytest_llmperf/suites/latency.llmsuite.yaml::decode_heavy?fake:m? PASSED*",
        ]
    )


def test_llm_suite_adds_to_path_arguments_and_repeats_or_takes_a_list(fake):
    fake.makepyfile(test_other="def test_other():\n    pass\n")
    result = fake.runpytest(
        "test_other.py",
        "--llm=fake:m",
        "--llm-suite=latency",
        "--llm-suite=instructions,latency",
        "--co",
        "-q",
    )
    ids = [line for line in result.stdout.lines if "::" in line]
    assert "test_other.py::test_other" in ids
    assert sum("suites/latency.llmsuite.yaml::" in i for i in ids) == 3
    assert sum("suites/instructions.llmsuite.yaml::" in i for i in ids) == 10


def test_llm_suite_ini_key(fake):
    fake.makeini("[pytest]\nllm_suite = latency\n")
    result = fake.runpytest("--llm=fake:m", "--co", "-q")
    assert sum("suites/latency.llmsuite.yaml::" in line for line in result.stdout.lines) == 3


@pytest.mark.parametrize(
    ("ini", "args", "source"),
    [("", ["--llm-suite=latency,speed"], "--llm-suite"), ("llm_suite = x", [], "ini option")],
)
def test_an_unknown_suite_name_is_a_usage_error_listing_the_shipped_ones(fake, ini, args, source):
    fake.makeini(f"[pytest]\n{ini}\n")
    result = fake.runpytest("--llm=fake:m", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"*{source}*: invalid value *: expected shipped suite names: finance-qa, instructions, "
            "latency, reasoning"
        ]
    )


def test_yaml_cases_and_python_tests_give_the_same_results(fake):
    fake.makepyfile(test_py="def test_py(llm_bench):\n    llm_bench('hello there', max_tokens=4)\n")
    suite(fake, "cases:\n  - {id: yml, prompt: hello there, max_tokens: 4}\n")
    result = fake.runpytest("--llm=fake:m", "--llm-json=out.json", *QUICK)
    result.assert_outcomes(passed=2)
    yml, py = sorted(results(fake), key=lambda r: r["nodeid"])
    assert (py["nodeid"], yml["nodeid"]) == (
        "test_py.py::test_py[fake:m]",
        "cases.llmsuite.yaml::yml[fake:m]",
    )

    def shape(value):
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shape(v) for v in value[:1]]
        return type(value).__name__

    assert shape(yml) == shape(py)
    assert yml["params"] == py["params"]


def test_baselines_are_saved_and_compared_for_yaml_cases(fake):
    suite(fake, "cases:\n  - {id: yml, prompt: hello there, max_tokens: 4, warmup: 0}\n")
    saved = fake.runpytest("--llm=fake:m", "--llm-save-baseline", "--llm-runs=5")
    saved.assert_outcomes(passed=1)
    [path] = (fake.path / "baselines").glob("*.json")
    assert list(json.loads(path.read_text())["benchmarks"]) == ["cases.llmsuite.yaml::yml[fake:m]"]
    # Report only: microsecond latencies on a busy machine may well "regress"; what is tested
    # is that the YAML case was compared with its stored baseline, not the verdict.
    compared = fake.runpytest(
        "--llm=fake:m", "--llm-json=out.json", "--llm-runs=5", "--llm-fail-on=none"
    )
    compared.assert_outcomes(passed=1)
    [result] = results(fake)
    assert result["gate"] is not None
    assert result["gate"]["mode"] == "stored"


JUDGED = """
    defaults: {max_tokens: 8}
    cases:
      - id: graded
        prompt: describe someone
        reference: Ada, 36
        min_quality: {min_quality}
      - id: rubric_only
        prompt: describe someone
        rubric: be exact
"""


def test_without_a_judge_min_quality_skips_and_a_rubric_alone_passes(echo):
    suite(echo, JUDGED.replace("{min_quality}", "70"))
    result = echo.runpytest("--llm=echo:answer", "--llm-judge=none", "-rs", *QUICK)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED ?1? cases.llmsuite.yaml:4: no judge: judging is off*"])


@pytest.mark.parametrize(("min_quality", "passed"), [(70, 2), (80, 1)])
def test_the_judge_grades_the_first_generation_against_min_quality(
    echo, monkeypatch, min_quality, passed
):
    monkeypatch.setenv("ECHO_JUDGE", '{"rating": 8, "reason": "right name and age"}')
    suite(echo, JUDGED.replace("{min_quality}", str(min_quality)))
    result = echo.runpytest(
        "--llm=echo:answer", "--llm-judge=echo:judge", "--llm-judge-no-cache", *QUICK
    )
    result.assert_outcomes(passed=passed, failed=2 - passed)
    if passed == 1:
        result.stdout.fnmatch_lines(["*quality 77.8 < min_score 80*"])


def test_a_failed_check_is_the_result_even_when_the_judge_fails_too(echo, monkeypatch):
    monkeypatch.setenv("ECHO_JUDGE", "no verdict here")
    suite(
        echo,
        "cases:\n  - {id: c, prompt: p, max_tokens: 8, expect: {contains: zebra}, "
        "min_quality: 50}\n",
    )
    result = echo.runpytest(
        "--llm=echo:answer", "--llm-judge=echo:judge", "--llm-judge-no-cache", *QUICK
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["expect contains 'zebra': failed in 2 of 2*", "judge: no grade (*"]
    )


@pytest.mark.parametrize("name", sorted(packaged_suites()))
def test_the_repo_suites_are_copies_of_the_packaged_ones(name):
    packaged = packaged_suites()[name]
    assert (REPO / "suites" / packaged.name).read_bytes() == packaged.read_bytes()
    assert len(load_suite(packaged)) >= 3


def test_the_shipped_suites_are_the_documented_four():
    assert sorted(packaged_suites()) == ["finance-qa", "instructions", "latency", "reasoning"]
    shipped = {p.name for p in (REPO / "suites").glob("*.llmsuite.y*ml")}
    # serving-load is an example for a user's own server, not a shipped suite (needs --llm).
    assert shipped - {"serving-load.llmsuite.yaml"} == {p.name for p in packaged_suites().values()}


def test_packaged_latency_suite_passes_on_the_embedded_model(pytester):
    pytest.importorskip("llama_cpp")
    result = pytester.runpytest(
        "--llm-suite=latency", "--llm-json=out.json", "-p", "no:cacheprovider", *QUICK
    )
    result.assert_outcomes(passed=3)
    rows = {r["nodeid"].split("::")[1]: r for r in results(pytester)}
    assert sorted(rows) == [
        "decode_heavy[llamacpp:gemma3-270m]",
        "prefill_heavy[llamacpp:gemma3-270m]",
        "short_prompt[llamacpp:gemma3-270m]",
    ]
    assert rows["prefill_heavy[llamacpp:gemma3-270m]"]["stats"]["prompt_tokens"]["median"] >= 400
    assert all(r["stats"]["output_tokens"]["min"] >= 1 for r in rows.values())
