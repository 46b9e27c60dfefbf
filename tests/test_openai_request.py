"""What the openai backend puts in a request: fixed output length and cache fields for compatible
servers only, ``extra_body`` merged without overriding, every keyword checked before sending.
A scripted loopback server records the bodies; llama.cpp's own server shows the base model's
empty answers being caught. Bedrock's keyword check and its fixed-length note too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scripted_openai import Reply, ScriptedServer

from pytest_llmperf.backends import Request
from pytest_llmperf.backends._openai_request import request_body
from pytest_llmperf.backends.bedrock import BedrockBackend
from pytest_llmperf.backends.openai import OpenAIBackend
from pytest_llmperf.errors import InvalidRequest
from pytest_llmperf.harness import measure
from pytest_llmperf.options import resolve_options
from pytest_llmperf.spec import parse_spec

pytest.importorskip("openai")


def make(text: str) -> OpenAIBackend:
    spec = parse_spec(text)
    return OpenAIBackend(spec, resolve_options(spec, OpenAIBackend.options))


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


def loaded(url: str, query: str = "") -> OpenAIBackend:
    b = make(f"openai:m@{url}{query}")
    b.check()
    b.load()
    return b


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_a_compatible_server_is_asked_for_a_fixed_length_and_no_prompt_cache(api):
    b = make(f"openai:m@http://127.0.0.1:9/v1?api={api}")
    _, body = request_body(b, Request("hi", 16, ignore_eos=True, prefix_cache="bust"))
    assert body["ignore_eos"] is True and body["min_tokens"] == 16
    assert body["cache_prompt"] is False
    _, plain = request_body(b, Request("hi", 16))
    assert not {"ignore_eos", "min_tokens", "cache_prompt"} & set(plain)


def test_the_openai_api_gets_no_field_it_would_refuse_and_says_it_cannot_fix_the_length():
    b = make("openai:gpt-4o-mini")
    _, body = request_body(b, Request("hi", 16, ignore_eos=True, prefix_cache="bust"))
    assert not {"ignore_eos", "min_tokens", "cache_prompt"} & set(body)
    assert "OpenAI API has no request field that forces the output length" in (
        b.ignore_eos_note() or ""
    )
    assert make("openai:m@http://127.0.0.1:9/v1").ignore_eos_note() is None


def test_extra_body_fields_are_merged_last_and_may_not_replace_the_requests_own():
    b = make("openai:m@http://127.0.0.1:9/v1")
    extra = {"top_k": 5, "repetition_penalty": 1.1}
    _, body = request_body(b, Request("hi", 4, options={"top_p": 0.9, "extra_body": extra}))
    assert body["top_k"] == 5 and body["repetition_penalty"] == 1.1 and body["top_p"] == 0.9
    assert "extra_body" not in body
    with pytest.raises(InvalidRequest, match="extra_body may not set 'model'"):
        request_body(b, Request("hi", 4, options={"extra_body": {"model": "other"}}))
    with pytest.raises(InvalidRequest, match="extra_body may not set 'min_tokens'"):
        request_body(
            b, Request("hi", 4, ignore_eos=True, options={"extra_body": {"min_tokens": 1}})
        )
    with pytest.raises(InvalidRequest, match="extra_body must be a mapping"):
        request_body(b, Request("hi", 4, options={"extra_body": ["top_k"]}))


def test_the_schema_comes_from_the_sdk_less_what_the_backend_sets():
    chat = make("openai:m").generation_options()
    assert {"top_p", "response_format", "stop", "logit_bias", "extra_body"} <= chat
    assert not {"model", "messages", "stream", "max_tokens", "temperature", "n"} & chat
    legacy = make("openai:m?api=completions").generation_options()
    assert {"suffix", "top_p", "extra_body"} <= legacy and "response_format" not in legacy


def test_a_typo_fails_before_any_request_naming_the_closest_match(server):
    b = loaded(server.url)
    try:
        with pytest.raises(InvalidRequest) as caught:
            measure(b.stream(Request("hi", 4, options={"temprature": 0.7})))
    finally:
        b.close()
    message = str(caught.value)
    assert "'temprature' (did you mean 'temperature'?)" in message
    assert "extra_body={...}" in message
    assert server.requests == []  # GET /models only: nothing was posted


def test_the_fields_reach_the_server_on_the_blocking_path(server):
    server.script = [Reply(tokens=6)]
    b = loaded(server.url)
    try:
        g = measure(
            b.stream(
                Request(
                    "hi",
                    6,
                    ignore_eos=True,
                    prefix_cache="bust",
                    options={"extra_body": {"top_k": 3}},
                )
            )
        )
    finally:
        b.close()
    [sent] = server.requests
    body = sent["body"]
    assert (body["ignore_eos"], body["min_tokens"], body["cache_prompt"], body["top_k"]) == (
        True,
        6,
        False,
        3,
    )
    assert g.output_tokens == 6


def test_bedrock_checks_its_fields_and_says_it_cannot_fix_the_length():
    spec = parse_spec("bedrock:anthropic.claude-3-haiku-20240307-v1:0")
    b = BedrockBackend(spec, resolve_options(spec, BedrockBackend.options))
    with pytest.raises(InvalidRequest, match=r"'guardrailconfig' .*did you mean 'guardrailConfig'"):
        next(iter(b._stream_with(None, Request("hi", 4, options={"guardrailconfig": {}}))))
    assert "toolConfig" in b.generation_options()
    assert "no field that forces the output length" in (b.ignore_eos_note() or "")


@pytest.fixture(scope="module")
def eos_first_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's own server on a tiny model whose greedy choice is always end-of-sequence."""
    pytest.importorskip("llama_cpp.server")
    from llama_server import serve
    from tiny_gguf import write_tiny_gguf

    model = write_tiny_gguf(tmp_path_factory.mktemp("m") / "eos.gguf", eos_first=True)
    with serve(model, "tiny") as url:
        yield url


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_ignore_eos_makes_llama_cpp_server_generate_exactly_max_tokens(eos_first_server, api):
    spec = f"openai:tiny@{eos_first_server}?api={api}"
    b = make(spec)
    b.check()
    b.load()
    try:
        free = measure(b.stream(Request("[1] hello", 12)))
        fixed = [measure(b.stream(Request(f"[{i}] hello", 12, ignore_eos=True))) for i in (2, 3)]
    finally:
        b.close()
    assert free.output_tokens == 0 and free.text == ""  # the model ends at once by itself
    assert [g.output_tokens for g in fixed] == [12, 12]
