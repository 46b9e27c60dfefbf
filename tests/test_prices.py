"""Cost per request: the built-in price table, overrides from ini, and where no price applies."""

import json
from pathlib import Path

import pytest
from scripted_openai import Reply, ScriptedServer

from pytest_llmperf.errors import SpecError
from pytest_llmperf.prices import Price, load_prices
from pytest_llmperf.spec import parse_spec


def test_the_builtin_table_prices_the_openai_api():
    price = load_prices().lookup(parse_spec("openai:gpt-4o-mini"))
    assert price is not None
    assert (price.input, price.output, price.key) == (0.15, 0.60, "openai:gpt-4o-mini")
    # 1000 prompt tokens and 500 output tokens: 0.00015 + 0.0003 USD.
    assert price.cost(1000, 500) == pytest.approx(0.00045)


def test_a_dated_model_matches_the_most_specific_wildcard():
    price = load_prices().lookup(parse_spec("openai:gpt-4o-mini-2024-07-18"))
    assert price is not None
    assert price.key == "openai:gpt-4o-mini-2024-*"


def test_a_self_hosted_server_is_not_priced_like_the_api():
    table = load_prices()
    assert table.lookup(parse_spec("openai:gpt-4o-mini@http://127.0.0.1:8000/v1")) is None
    assert table.lookup(parse_spec("llamacpp:gemma3-270m")) is None


def test_an_unknown_prompt_size_gives_no_cost_rather_than_a_guess():
    assert Price(1.0, 2.0, "k", "s").cost(None, 100) is None


def test_an_override_file_wins_and_adds(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"prices": {"openai:gpt-4o-mini": {"input": 1, "output": 2}}}))
    price = load_prices(path).lookup(parse_spec("openai:gpt-4o-mini"))
    assert price is not None
    assert (price.input, price.output, price.source) == (1.0, 2.0, str(path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"x": 1}', "expected a JSON object with a 'prices' object"),
        ('{"prices": {"openai:a": {"input": -1, "output": 2}}}', "both >= 0"),
        ('{"prices": {"openai:a": {"input": 1}}}', "must be"),
    ],
)
def test_a_malformed_override_is_refused_with_the_reason(tmp_path, text, message):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        load_prices(path)


def test_a_missing_override_file_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--llm-prices=nope.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "price file" in result.stderr.str()
    assert "nope.json" in result.stderr.str()


def test_cost_per_request_reaches_the_table_and_the_json(pytester):
    with ScriptedServer() as server:
        server.script = [Reply(tokens=3, usage=True)]
        # 3 prompt + 3 output tokens at 1000 / 2000 USD per 1M: 0.009 USD, 9 USD per 1k.
        Path(pytester.path, "prices.json").write_text(
            json.dumps({"prices": {"openai:m@http://127.0.0.1:*": {"input": 1000, "output": 2000}}})
        )
        pytester.makeini("[pytest]\nllm_prices = prices.json\n")
        pytester.makepyfile(
            """
            import pytest

            @pytest.mark.llm_perf(runs=3, warmup=0, max_tokens=3)
            def test_bench(llm_bench):
                llm_bench("hello")
            """
        )
        result = pytester.runpytest(f"--llm=openai:m@{server.url}", "--llm-json=r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*$/1k req*", "test_bench*openai:m*9.0000*"])
    (res,) = json.loads(Path(pytester.path, "r.json").read_text())["results"]
    assert res["costs_usd"] == pytest.approx([0.009] * 3)
    assert res["price"]["key"] == "openai:m@http://127.0.0.1:*"
