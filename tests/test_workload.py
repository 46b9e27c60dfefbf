"""What a benchmark generates, as the test asks for it (with the fake backend): a fixed output
length (``ignore_eos``), prefix-cache busting, checked keywords, empty and short generations
made visible, chat prompts on a model without a template skipped with the reason."""

import json

import pytest

from pytest_llmperf.bench import Workload
from pytest_llmperf.prefix_cache import Nonces, with_nonce


def prompts_seen(pytester: pytest.Pytester) -> list[list]:
    lines = (pytester.path / "prompts.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def logged(fake, monkeypatch):
    monkeypatch.setenv("FAKE_PROMPT_LOG", str(fake.path / "prompts.jsonl"))
    return fake


def results(pytester: pytest.Pytester) -> list[dict]:
    return json.loads((pytester.path / "out.json").read_text())["results"]


@pytest.mark.parametrize(
    ("where", "marker", "keyword", "spec"),
    [
        ("keyword", "", "ignore_eos=True", ""),
        ("marker", "ignore_eos=True", "", ""),
        ("spec", "", "", "&ignore_eos=true"),
    ],
)
def test_ignore_eos_reaches_the_backend_and_fixes_the_length(logged, where, marker, keyword, spec):
    logged.makepyfile(
        f"""
        import pytest

        @pytest.mark.llm_perf(runs=3, warmup=1, {marker})
        def test_x(llm_bench):
            r = llm_bench("hello", max_tokens=8, {keyword})
            assert r.stats["output_tokens"].min == 8 and r.short == 0
        """
    )
    result = logged.runpytest(
        f"--llm=fake:m?stop_after=3{spec}", "--llm-json=out.json", "-W", "error"
    )
    result.assert_outcomes(passed=1)
    assert all(ignore for _, ignore, _ in prompts_seen(logged))
    [entry] = results(logged)
    assert entry["ignore_eos"] is True and entry["params"]["ignore_eos"] is True
    assert entry["short"] == 0 and entry["empty"] == 0


def test_without_ignore_eos_the_model_stops_where_it_likes_and_params_stay_as_before(logged):
    logged.makepyfile(
        """
        def test_x(llm_bench):
            r = llm_bench("hello", max_tokens=8, runs=2, warmup=0)
            assert r.stats["output_tokens"].max == 3
        """
    )
    logged.runpytest("--llm=fake:m?stop_after=3", "--llm-json=out.json").assert_outcomes(passed=1)
    [entry] = results(logged)
    # Baselines stored before these keywords existed compare with the same parameters.
    assert "ignore_eos" not in entry["params"] and "prefix_cache" not in entry["params"]
    assert entry["ignore_eos"] is False and entry["prefix_cache"] == "allow"
    assert entry["short"] == 0  # short is only counted under ignore_eos


def test_short_generations_under_ignore_eos_are_counted_warned_and_shown(logged):
    logged.makepyfile(
        """
        def test_x(llm_bench):
            llm_bench("hello", max_tokens=8, runs=3, warmup=0, ignore_eos=True)
        """
    )
    result = logged.runpytest(
        "--llm=fake:m?stop_after=3&honour_ignore_eos=false",
        "--llm-json=out.json",
        "--llm-markdown=out.md",
        "--llm-html=out.html",
    )
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "ignore_eos is not enforced: the fake server has no such field" in out
    assert "3 of 3 generations stopped before max_tokens=8 although ignore_eos was asked" in out
    assert "empty or short generations" in out
    assert "test_x [fake:m?stop_after=3&honour_ignore_eos=false]: 3 short of max_tokens of 3" in out
    [entry] = results(logged)
    assert entry["short"] == 3 and entry["empty"] == 0
    assert r"3 short of max\_tokens of 3 generations" in (logged.path / "out.md").read_text()
    assert 'id="output-problems"' in (logged.path / "out.html").read_text()


def test_a_benchmark_whose_every_generation_is_empty_fails_saying_why(logged):
    logged.makepyfile(
        """
        def test_x(llm_bench):
            llm_bench("The capital of France is", max_tokens=16, runs=2, warmup=0)
        """
    )
    result = logged.runpytest("--llm=fake:m?empty=true", "--llm-json=out.json")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "every generation came back empty" in out
    assert "try ignore_eos=True" in out and "chat template" in out
    assert "Traceback" not in out
    [entry] = results(logged)  # the measurement is still written, with its count
    assert entry["empty"] == 2


def test_prefix_cache_bust_gives_every_request_its_own_nonce_at_the_start(logged):
    logged.makepyfile(
        """
        def test_x(llm_bench):
            llm_bench("hello", max_tokens=2, runs=4, warmup=1, prefix_cache="bust")
            llm_bench([{"role": "user", "content": "hi"}], max_tokens=2, runs=2, warmup=0,
                      prefix_cache="bust", name="chat")
            llm_bench("plain", max_tokens=2, runs=2, warmup=0, name="plain")
        """
    )
    logged.runpytest("--llm=fake:m", "--llm-json=out.json").assert_outcomes(passed=1)
    seen = prompts_seen(logged)
    busted = [p for p, _, cache in seen if cache == "bust"]
    strings = [p for p in busted if isinstance(p, str)]
    assert len(strings) == 5 and all(p.endswith("] hello") and p.startswith("[") for p in strings)
    assert len({p.split()[0] for p in busted if isinstance(p, str)}) == 5  # all distinct
    chats = [p for p in busted if not isinstance(p, str)]
    assert len(chats) == 2 and all(c[0]["content"].endswith("] hi") for c in chats)
    assert [p for p, _, cache in seen if cache == "allow"] == ["plain", "plain"]
    entries = {e["name"]: e for e in results(logged)}
    assert entries[""]["params"]["prefix_cache"] == "bust"
    assert entries[""]["params"]["prompt"] == "hello"  # the workload, not one nonce
    assert entries["plain"]["prefix_cache"] == "allow"


def test_a_bad_prefix_cache_value_names_the_valid_ones():
    with pytest.raises(ValueError, match="prefix_cache='off'; valid: allow, bust"):
        Workload("hi", 4, prefix_cache="off")


def test_nonces_have_one_shape_and_never_repeat():
    nonces = Nonces()
    drawn = [nonces.next() for _ in range(2000)]
    assert len(set(drawn)) == len(drawn)
    assert {len(n) for n in drawn} == {12}
    assert with_nonce([{"role": "system", "content": "be brief"}], "[1]") == [
        {"role": "system", "content": "[1] be brief"}
    ]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            'llm_bench("hi", max_tokens=4, temprature=0.7)',
            "'temprature' (did you mean 'temperature'?)",
        ),
        ('llm_bench("hi", max_tokens=4, top_kk=3)', "'top_kk' (did you mean 'top_k'?)"),
        ('llm_bench("hi", max_tokens=4, frobnicate=1)', "'frobnicate' for fake; valid options: "),
    ],
)
def test_an_unknown_keyword_fails_before_any_request_naming_the_closest_match(
    logged, call, expected
):
    logged.makepyfile(f"def test_x(llm_bench):\n    {call}\n")
    result = logged.runpytest("--llm=fake:m")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert expected in out
    assert "min_new_tokens, stop, top_k, top_p" in out
    assert "Traceback" not in out
    assert not (logged.path / "prompts.jsonl").exists()  # nothing was sent


def test_a_chat_prompt_on_a_model_without_a_template_skips_with_the_reason(logged):
    logged.makepyfile(
        """
        import pytest

        def test_bench(llm_bench):
            llm_bench([{"role": "user", "content": "hi"}], max_tokens=2, runs=2, warmup=0)

        def test_direct(llm_backend):
            with pytest.raises(Exception, match="no chat template"):
                llm_backend.generate([{"role": "user", "content": "hi"}], max_tokens=2)
        """
    )
    result = logged.runpytest("--llm=fake:m?chat_template=false", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*fake:m?chat_template=false: fake: no chat template*"])


SUITE = """
description: t
{models}
defaults:
  max_tokens: 6
  runs: 2
  warmup: 0
cases:
  - id: fixed
    prompt: hello
    ignore_eos: true
  - id: busted
    prompt: hello
    prefix_cache: bust
  - id: chat
    messages:
      - role: user
        content: hi
"""


def test_yaml_cases_take_ignore_eos_and_prefix_cache(logged):
    (logged.path / "t.llmsuite.yaml").write_text(SUITE.format(models=""))
    result = logged.runpytest("--llm=fake:m?stop_after=2", "--llm-json=out.json")
    result.assert_outcomes(passed=3)
    entries = {e["nodeid"].split("::")[1].split("[")[0]: e for e in results(logged)}
    assert entries["fixed"]["stats"]["output_tokens"]["min"] == 6
    assert entries["busted"]["params"]["prefix_cache"] == "bust"
    assert entries["busted"]["stats"]["output_tokens"]["max"] == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ignore_eos: yes please", "ignore_eos: expected true or false, not a string"),
        ("prefix_cache: off", "prefix_cache: expected one of allow, bust, not False"),
        ("models: chat", "expected one of any, instruction-tuned, not 'chat'"),
    ],
)
def test_bad_yaml_values_for_the_new_keys_name_the_line_and_the_valid_ones(fake, text, message):
    suite = SUITE.format(models="")
    if text.startswith("models"):
        suite = SUITE.format(models=text)
    else:
        suite = suite.replace("  warmup: 0\n", f"  warmup: 0\n  {text}\n")
    (fake.path / "t.llmsuite.yaml").write_text(suite)
    result = fake.runpytest("--llm=fake:m", "--co")
    assert result.ret != 0
    out = result.stdout.str()
    assert message in out and "t.llmsuite.yaml:" in out
    assert "Traceback" not in out


def test_instruction_tuned_suites_skip_on_the_embedded_base_model_before_loading_it(fake):
    (fake.path / "t.llmsuite.yaml").write_text(SUITE.format(models="models: instruction-tuned"))
    result = fake.runpytest("--llm=fake:m", "--llm=hf:gemma3-270m", "-rs", "-k", "gemma3")
    out = result.stdout.str()
    result.assert_outcomes(skipped=3)
    assert "grades answers to instructions (llm_instruction_tuned; in a suite, models:" in out
    assert "hf:gemma3-270m is a base model" in out
    # on any other model the same suite runs
    fake.runpytest("--llm=fake:m", "-k", "fake").assert_outcomes(passed=3)
