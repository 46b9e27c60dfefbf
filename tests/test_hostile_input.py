"""Hostile and degenerate input to the bounded parsers: YAML suites, regex checks, counts and
sampling parameters, ``--llm`` specs and their options, ``--llm-*`` option values, price files.

Each refusal is one clear line naming the file, option or value; nothing may raise a traceback,
hang, exhaust memory or let a NaN, an infinity or an absurd count through.
"""

import math
import re
import textwrap
from pathlib import Path

import pytest

from pytest_llmperf import suite as suite_module
from pytest_llmperf._settings_table import SETTINGS
from pytest_llmperf._suite_load import SuiteError, load_suite
from pytest_llmperf.bench import RequestErrors, Workload
from pytest_llmperf.errors import SpecError, TransientError
from pytest_llmperf.limits import check_load_arguments
from pytest_llmperf.options import Option, resolve_options
from pytest_llmperf.prices import load_prices
from pytest_llmperf.spec import parse_spec
from pytest_llmperf.suite import expect_failures


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.llmsuite.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def refusal(tmp_path: Path, text: str) -> SuiteError:
    with pytest.raises(SuiteError) as info:
        load_suite(write(tmp_path, text))
    return info.value


CASE = "cases:\n  - id: a\n    prompt: p\n"


# --- YAML: depth, aliases ---------------------------------------------------------------


def test_deep_nesting_is_refused_at_its_line_not_a_recursion_error(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    error = refusal(tmp_path, CASE + f"    options: {{x: {deep}}}\n")
    assert str(error) == "invalid YAML: nested deeper than 32 levels"
    assert error.line == 4


def test_nesting_within_the_limit_still_loads(tmp_path):
    nested = "[" * 20 + "1" + "]" * 20
    [case] = load_suite(write(tmp_path, CASE + f"    options: {{x: {nested}}}\n"))
    assert case.options["x"] == [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]


def test_a_recursive_alias_is_refused(tmp_path):
    error = refusal(tmp_path, CASE + "    options: &loop {x: *loop}\n")
    assert "alias *loop is inside its own anchor (a recursive alias)" in str(error)
    assert error.line == 4


def billion_laughs(levels: int) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]")
    return "\n".join(f"      {line}" for line in lines) + "\n"


def test_an_alias_bomb_is_refused_by_what_its_few_aliases_expand_to(tmp_path):
    # 50 aliases (under the count) expanding to a million values: the expansion budget stops
    # it. (The real bomb has 9 levels, a billion values; 6 keep the old code's run bounded.)
    error = refusal(tmp_path, CASE + "    options:\n" + billion_laughs(6))
    assert "too many aliases (at most 100 uses, expanding to at most 10000 values" in str(error)


def test_an_alias_bomb_fails_collection_with_one_line_naming_the_file(fake):
    (fake.path / "bomb.llmsuite.yaml").write_text(CASE + "    options:\n" + billion_laughs(9))
    result = fake.runpytest("--llm=fake:m", "--collect-only")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["bomb.llmsuite.yaml:*: invalid YAML: too many aliases*"])
    assert "Traceback" not in result.stdout.str()


def test_more_aliases_than_the_budget_are_refused(tmp_path):
    uses = ", ".join(["*x"] * 101)
    error = refusal(tmp_path, CASE + f"    options: {{v: &x 1, many: [{uses}]}}\n")
    assert "too many aliases" in str(error)


def test_anchors_and_merge_keys_for_shared_settings_still_work(tmp_path):
    text = """
        defaults:
          options: &common {top_k: 9, stop: ["\\n"]}
        cases:
          - id: a
            prompt: p
            options: {<<: *common, top_k: 3}
          - id: b
            prompt: q
            options: *common
    """
    a, b = load_suite(write(tmp_path, text))
    assert a.options == {"top_k": 3, "stop": ["\n"]}
    assert b.options == {"top_k": 9, "stop": ["\n"]}


# --- YAML: numbers, counts, text ----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("temperature: .inf", "'.inf' is inf: no key of a suite takes NaN or infinity"),
        ("temperature: 3", "temperature: expected a number from 0 to 2, not 3"),
        ("options: {top_p: .nan}", "'.nan' is nan: no key of a suite takes NaN"),
        ("options: {top_p: 1.5}", "options: top_p: 1.5 is out of range (must be <= 1)"),
        ("options: {stop: [1.0e+400]}", "'1.0e+400' is inf: no key"),
        (
            "budgets: {ttft_s: {p95: .inf}}",
            "'.inf' is inf: no key of a suite takes NaN or infinity",
        ),
        ("max_tokens: 1000000000", "max_tokens: 1000000000 is too large (at most 1000000)"),
        ("runs: 1000000000", "runs: 1000000000 is too large (at most 100000)"),
        ("warmup: 1000000000", "warmup: 1000000000 is too large (at most 10000)"),
        ("seed: 99999999999", "seed: 99999999999 is too large (at most 4294967295)"),
        ("max_tokens: " + "9" * 5000, "...' is too large (at most 2**53)"),
        ("seed: 18446744073709551616", "the number '18446744073709551616' is too large"),
        ('prompt: "\\udcff"', "'\\udcff' holds '\\udcff', a lone surrogate, not a character"),
    ],
)
def test_numbers_and_text_no_backend_can_take_are_refused_at_their_line(tmp_path, field, message):
    own_prompt = field.startswith("prompt:")
    text = ("cases:\n  - id: a\n" if own_prompt else CASE) + f"    {field}\n"
    error = refusal(tmp_path, text)
    assert message in str(error)
    assert error.line == (3 if own_prompt else 4)


@pytest.mark.parametrize(
    ("load", "message"),
    [
        ("{concurrency: 1000000}", "load: concurrency: 1000000 is too large (at most 10000)"),
        ("{concurrency: [1, 20000]}", "load: concurrency: 20000 is too large (at most 10000)"),
        ("{rate: 1.0e+9}", "load: rate: 1000000000.0 is too large (at most 100000)"),
        ("{requests: 1000000000}", "load: requests: 1000000000 is too large (at most 1000000)"),
        ("{duration: 1.0e+7}", "load: duration: 10000000.0 is too large (at most 86400)"),
        ("{warmup: 100000}", "load: warmup: 100000 is too large (at most 10000)"),
        ("{max_tokens: 1000000000}", "load: max_tokens: 1000000000 is too large"),
    ],
)
def test_load_counts_have_upper_bounds(tmp_path, load, message):
    error = refusal(tmp_path, CASE + f"    load: {load}\n")
    assert message in str(error)


# --- expect: regex with a time limit, JSON that is hostile -------------------------------


def test_a_catastrophic_regex_fails_the_check_naming_the_pattern_instead_of_hanging(
    tmp_path, monkeypatch
):
    # (a|a)+$ on "aaa...!" backtracks through 2**n paths: seconds at n=22, on any machine far
    # more than the tiny limit, so the search always times out, whatever the machine's speed.
    monkeypatch.setattr(suite_module, "REGEX_TIMEOUT_S", 1e-4)
    [case] = load_suite(write(tmp_path, CASE + "    expect: {regex: '(a|a)+$'}\n"))
    assert case.expect is not None
    [failure] = expect_failures(case.expect, ["a" * 22 + "!"])
    assert failure.startswith(
        "expect regex '(a|a)+$': failed in 1 of 1 generation(s) (no answer within 0.0001 s: "
        "the pattern backtracks catastrophically on this text"
    )


def test_a_regex_is_still_searched_as_before(tmp_path):
    [case] = load_suite(write(tmp_path, CASE + "    expect: {regex: '(?i)\\bRECEIPT\\b'}\n"))
    assert case.expect is not None
    assert expect_failures(case.expect, ["Keep the receipt."]) == []
    assert expect_failures(case.expect, ["no"])[0].endswith("(no match); first: 'no'")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[" * 100_000 + "]" * 100_000, "not JSON this check can read: nested too deeply"),
        ("9" * 5000, "not JSON this check can read: Exceeds the limit"),
    ],
)
def test_a_generation_that_breaks_the_json_parser_is_a_failed_check(tmp_path, text, problem):
    [case] = load_suite(write(tmp_path, CASE + "    expect: {json_schema: {type: object}}\n"))
    assert case.expect is not None
    json_failure, schema_failure = expect_failures(case.expect, [text])
    assert f"({problem}" in json_failure
    assert "(not JSON)" in schema_failure


# --- llm_bench keywords and the retry sleep ----------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 10**12}, "max_tokens: 1000000000000 is out of range (a whole number from"),
        ({"max_tokens": 0}, "max_tokens: 0 is out of range (a whole number from 1 to 1000000)"),
        ({"temperature": math.inf}, "temperature: inf is not a finite number"),
        ({"temperature": 2.5}, "temperature: 2.5 is out of range (must be <= 2)"),
        ({"seed": -1}, "seed: -1 is out of range (a whole number from 0 to 4294967295)"),
        ({"options": {"top_p": math.nan}}, "option top_p: nan is not a finite number"),
        ({"options": {"stop": [math.inf]}}, "option stop: inf is not a finite number"),
        ({"options": {"top_k": 10**30}}, "option top_k: 1e+30 is out of range (must be <="),
    ],
)
def test_llm_bench_arguments_out_of_range_are_refused_before_any_request(kwargs, message):
    arguments = {"max_tokens": 8, **kwargs}
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        Workload("p", **arguments)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": [1, 10**6]}, "concurrency: 1000000 is out of range"),
        ({"rate": math.inf}, "rate: inf is not a finite number"),
        ({"rate": [1.0, math.nan]}, "rate: nan is not a finite number"),
        ({"requests": 10**9}, "requests: 1000000000 is out of range"),
        ({"duration": math.inf}, "duration: inf is not a finite number"),
        ({"warmup": 10**6}, "warmup: 1000000 is out of range"),
        ({"max_tokens": 10**12}, "max_tokens: 1000000000000 is out of range"),
        ({"temperature": math.nan}, "temperature: nan is not a finite number"),
    ],
)
def test_llm_load_arguments_have_the_same_bounds(kwargs, message):
    # The shared check llm_load calls, so YAML load cases and Python tests agree.
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        check_load_arguments(**kwargs)
    check_load_arguments(concurrency=[1, 4, 16], rate=None, requests=64, duration=30.0)


@pytest.mark.parametrize("hint", [math.nan, -5.0, math.inf])
def test_a_retry_after_hint_that_is_not_a_number_of_seconds_never_reaches_sleep(hint):
    slept: list[float] = []
    errors = RequestErrors(attempts=100, sleep=slept.append)
    errors.record(TransientError("429", kind="rate_limit", retry_after=hint), 1)
    [delay] = slept
    assert math.isfinite(delay) and 0 <= delay <= 30


# --- specs and their options -----------------------------------------------------------


def test_a_spec_with_undecodable_bytes_is_refused_naming_the_value():
    with pytest.raises(SpecError) as info:
        parse_spec("fake:m\udcff", "--llm")
    assert str(info.value) == (
        "--llm='fake:m\\udcff': '\\udcff' at position 7 is not text (undecodable bytes, not "
        "UTF-8); give the spec as UTF-8 text"
    )


def test_undecodable_bytes_in_llm_are_a_usage_error_not_an_internal_error(fake):
    fake.makepyfile("def test_x(llm_bench):\n    llm_bench('hi', max_tokens=2, runs=1)\n")
    result = fake.runpytest("--llm=fake:m\udcff", "--llm-save-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "is not text (undecodable bytes, not UTF-8)" in result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


OPTIONS = (
    Option("timeout", float, 60.0, "seconds of silence", minimum=0.1),
    Option("deadline", float, 600.0, "seconds a request may take", minimum=0.1),
    Option("top_p", float, 0.95, "top-p sampling", minimum=0.0),
    Option("n_ctx", int, 2048, "context length", minimum=16),
)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "timeout=nan",
            "bad value 'nan' for option 'timeout': nan is not a finite number; "
            "must be >= 0.1 and <= 86400",
        ),
        ("deadline=inf", "bad value 'inf' for option 'deadline': inf is not a finite number"),
        ("deadline=1e999", "bad value '1e999' for option 'deadline': inf is not a finite"),
        ("deadline=1e300", "bad value '1e300' for option 'deadline': must be >= 0.1 and <= 86400"),
        ("top_p=2", "bad value '2' for option 'top_p': must be >= 0 and <= 1"),
        ("n_ctx=" + "9" * 40, "option 'n_ctx': must be >= 16 and <= 2147483647"),
    ],
)
def test_float_and_int_spec_options_must_be_finite_and_in_range(query, message):
    with pytest.raises(SpecError) as info:
        resolve_options(parse_spec(f"openai:m?{query}"), OPTIONS)
    assert message in str(info.value)


# --- --llm-* option values ------------------------------------------------------------


def parse_setting(name: str, text: str) -> object:
    [setting] = [s for s in SETTINGS if s.name == name]
    return setting.parse(text)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("llm_alpha", "1e-17", "expected a number from 1e-06 to 0.5"),
        ("llm_alpha", "inf", "expected a number from 1e-06 to 0.5"),
        ("llm_runs", "1000000000", "expected a whole number >= 1 and <= 100000"),
        ("llm_looks", "10,1000000000", "expected sample counts <= 100000"),
        ("llm_warmup", "1000000000", "expected a whole number >= 0 and <= 10000"),
        ("llm_baseline_keep", "1000000000", "expected a whole number >= 1 and <= 1000"),
        ("llm_judge_repeats", "1000000", "expected a whole number >= 1 and <= 100"),
        ("llm_slo", "ttft_s=inf", "ttft_s: expected a number of seconds > 0 and <= 86400"),
        ("llm_slo", "ttft_s=1e300", "ttft_s: expected a number of seconds > 0 and <= 86400"),
    ],
)
def test_numeric_settings_out_of_range_are_refused_with_the_range(name, text, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_setting(name, text)


def test_sensible_settings_still_parse():
    assert parse_setting("llm_alpha", "1e-6") == 1e-6
    assert parse_setting("llm_alpha", "0.5") == 0.5
    assert parse_setting("llm_runs", "100000") == 100_000
    assert parse_setting("llm_max_error_rate", "0") == 0.0
    assert parse_setting("llm_slo", "ttft_s=0.5") == {"ttft_s": 0.5}


def test_a_tiny_alpha_is_a_usage_error_naming_the_option(fake):
    fake.makepyfile("def test_x(llm_bench):\n    pass\n")
    result = fake.runpytest("--llm=fake:m", "--llm-alpha=1e-17")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "--llm-alpha: invalid value '1e-17': expected a number from 1e-06 to 0.5"
        in result.stderr.str()
    )


# --- price files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"prices": {"openai:a": {"input": Infinity, "output": 2}}}', "not valid JSON"),
        ('{"prices": {"openai:a": {"input": 1e400, "output": 2}}}', "not valid JSON"),
        ('{"prices": {"openai:a": {"input": NaN, "output": 2}}}', "not valid JSON"),
        ('{"prices": {"openai:a": {"input": true, "output": 2}}}', "both >= 0 and finite"),
        ('{"prices": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper than 64 levels"),
    ],
)
def test_a_price_file_with_numbers_no_cost_can_use_is_refused(tmp_path, text, message):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        load_prices(path)
