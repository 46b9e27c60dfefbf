"""The spec grammar and typed backend options."""

import doctest

import pytest

from pytest_llmperf import limits as limits_module
from pytest_llmperf import spec as spec_module
from pytest_llmperf import stats as stats_module
from pytest_llmperf.errors import SpecError
from pytest_llmperf.options import Option, resolve_options
from pytest_llmperf.spec import parse_spec


def test_docstring_examples_hold():
    for module in (spec_module, stats_module, limits_module):
        failed, attempted = doctest.testmod(module)
        assert attempted > 0
        assert failed == 0


def test_full_spec():
    s = parse_spec("openai:gpt-4o-mini@https://api.example.test/v1?api=completions&x=a%26b")
    assert s.kind == "openai"
    assert s.model == "gpt-4o-mini"
    assert s.base_url == "https://api.example.test/v1"
    assert s.options == (("api", "completions"), ("x", "a&b"))
    assert parse_spec(s.text) == s


def test_kind_splits_on_first_colon_only():
    s = parse_spec(r"llamacpp:C:\models\tiny.gguf?n_ctx=64")
    assert s.model == r"C:\models\tiny.gguf"
    assert s.short_id == "llamacpp:tiny.gguf?n_ctx=64"


def test_at_sign_without_url_stays_in_model_path():
    assert parse_spec("llamacpp:/data/run@2/m.gguf").model == "/data/run@2/m.gguf"


def test_kind_is_case_insensitive_and_short_id_drops_directories():
    s = parse_spec("LlamaCpp:/very/long/path/to/model.Q4.gguf")
    assert s.kind == "llamacpp"
    assert s.short_id == "llamacpp:model.Q4.gguf"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gemma3-270m", "expected KIND:MODEL"),
        ("llamacpp:", "the model is empty"),
        ("llamacpp:   ?n_ctx=5", "the model is empty"),
        ("9x:model", "not a valid backend kind"),
        ("openai:m@ftp://host/v1", "must start with http:// or https://"),
        ("llamacpp:m.gguf?n_ctx=1&n_ctx=2", "given twice"),
        ("llamacpp:m.gguf?novalue", "key=value"),
    ],
)
def test_malformed_specs_are_rejected_with_the_source(text, message):
    with pytest.raises(SpecError, match=message) as info:
        parse_spec(text, source="ini option 'llm'")
    assert str(info.value).startswith(f"ini option 'llm'={text!r}")


OPTIONS = (
    Option("n_ctx", int, 2048, "context", minimum=16),
    Option("chat", bool, False, "chat template"),
    Option("mode", str, "a", "mode", choices=("a", "b")),
    Option("top_p", float, 0.95, "top-p", minimum=0.0),
)


def test_options_are_typed_and_defaulted():
    s = parse_spec("llamacpp:m.gguf?n_ctx=64&chat=yes&top_p=0.5")
    assert resolve_options(s, OPTIONS) == {
        "n_ctx": 64,
        "chat": True,
        "mode": "a",
        "top_p": 0.5,
        # the workload options every spec takes
        "ignore_eos": False,
        "prefix_cache": "allow",
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "n_threads=2",
            r"unknown option 'n_threads' for llamacpp; valid: chat, ignore_eos, mode, n_ctx, "
            "prefix_cache, top_p",
        ),
        ("n_ctx=big", r"bad value 'big' for option 'n_ctx': expected int"),
        ("n_ctx=8", r"must be >= 16"),
        ("chat=maybe", r"bad value 'maybe' for option 'chat'"),
        ("mode=c", r"expected one of a, b"),
    ],
)
def test_bad_options_name_the_valid_choices(query, message):
    with pytest.raises(SpecError, match=message):
        resolve_options(parse_spec(f"llamacpp:m.gguf?{query}"), OPTIONS)
