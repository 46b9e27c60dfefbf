"""The openai backend against a real OpenAI-compatible server: llama_cpp.server on loopback;
and what it sends for ``ignore_eos`` to a scripted one that plays llama-cpp-python's server."""

import asyncio
import json
from pathlib import Path

import pytest
from llama_server import free_port, serve
from scripted_openai import Reply, ScriptedServer
from tiny_gguf import write_tiny_gguf

from pytest_llmperf.backends import Chunk, Request
from pytest_llmperf.backends.openai import OpenAIBackend
from pytest_llmperf.errors import BackendUnavailable, InvalidRequest
from pytest_llmperf.harness import measure
from pytest_llmperf.models import embedded_available, embedded_model_path
from pytest_llmperf.options import resolve_options
from pytest_llmperf.spec import parse_spec


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory):
    model = write_tiny_gguf(tmp_path_factory.mktemp("srv") / "tiny.gguf")
    with serve(model, "tiny") as url:
        yield url


def backend(spec_text: str) -> OpenAIBackend:
    spec = parse_spec(spec_text)
    b = OpenAIBackend(spec, resolve_options(spec, OpenAIBackend.options))
    b.check()
    b.load()
    return b


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_streams_real_tokens_and_counts_them_itself(server_url, api):
    b = backend(f"openai:tiny@{server_url}?api={api}")
    try:
        g = measure(b.stream(Request("Hello there", max_tokens=8)))
    finally:
        b.close()
    # llama.cpp's server ignores include_usage: one content delta is one token.
    assert (g.output_tokens, g.token_source) == (8, "chunks")
    assert g.ttft_s is not None
    assert g.e2e_s > g.ttft_s > 0
    assert len(g.itl_s) == 7
    assert g.text


def test_chat_messages_and_string_prompts_reach_the_server(server_url):
    b = backend(f"openai:tiny@{server_url}")
    try:
        g = measure(b.stream(Request([{"role": "user", "content": "Hi"}], max_tokens=3)))
        with pytest.raises(InvalidRequest, match="max_tokens must be >= 1"):
            list(b.stream(Request("Hi", max_tokens=0)))
    finally:
        b.close()
    assert g.output_tokens == 3


def test_completions_api_refuses_chat_messages(server_url):
    b = backend(f"openai:tiny@{server_url}?api=completions")
    try:
        with pytest.raises(InvalidRequest, match="string prompt"):
            list(b.stream(Request([{"role": "user", "content": "Hi"}], max_tokens=3)))
    finally:
        b.close()


def test_an_unreachable_server_is_a_clear_error():
    with pytest.raises(BackendUnavailable, match=r"cannot reach http://127.0.0.1:\d+/v1"):
        backend(f"openai:tiny@http://127.0.0.1:{free_port()}/v1?timeout=5")


def test_the_openai_api_without_a_key_stops_the_run(pytester, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pytester.makepyfile("def test_x(llm_backend):\n    raise AssertionError('ran')\n")
    result = pytester.runpytest("--llm=openai:gpt-4o-mini")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "OPENAI_API_KEY is not set" in result.stderr.str()


def test_side_by_side_with_llamacpp_in_one_table(pytester, server_url, tmp_path):
    model = write_tiny_gguf(tmp_path / "same.gguf")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm_perf(runs=3, warmup=0, max_tokens=6)
        def test_bench(llm_bench):
            llm_bench("Hello there")
        """
    )
    result = pytester.runpytest(
        f"--llm=openai:tiny@{server_url}",
        f"--llm=llamacpp:{model}?n_threads=1",
        "--llm-json=o.json",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["test_bench*llamacpp:same.gguf*3*", "test_bench*openai:tiny*3*"])
    doc = json.loads(Path(pytester.path, "o.json").read_text())
    libraries = {b["library"] for b in doc["backends"]}
    assert libraries == {"openai", "llama-cpp-python"}
    sources = {r["backend_id"]: r["generations"][0]["token_source"] for r in doc["results"]}
    assert sources == {"openai:tiny": "chunks", "llamacpp:same.gguf?n_threads=1": "engine"}


# --- ignore_eos on llama-cpp-python's own server ---------------------------------------------
# It ignores ignore_eos, and its min_tokens masks only EOS while any end-of-generation token
# ends the stream: the backend finds the model's end tokens at load (/extras/tokenize) and
# biases them all away instead.


@pytest.fixture(scope="module")
def embedded_url():
    if not embedded_available():
        pytest.skip("the embedded model's package is not installed")
    # The server's own chat format: the embedded GGUF has no template, so llama-2's, in which
    # the base model ends at once (the new user's report). Under chat_format="gemma" it rarely
    # ends early, so there would be nothing to show.
    with serve(embedded_model_path(), "gemma3", n_ctx=2048, n_threads=2) as url:
        yield url


def test_ignore_eos_holds_the_embedded_model_to_max_tokens_on_the_chat_api(embedded_url):
    b = backend(f"openai:gemma3@{embedded_url}")
    chat = [
        {"role": "system", "content": "You answer in full sentences."},
        {"role": "user", "content": "Tell me about Paris."},
    ]
    try:
        assert b.end_tokens == (1, 106, 212)  # <eos>, <end_of_turn>, </s>
        # Each prompt fresh: the server's prefix cache changes what a repeated prompt yields.
        free = measure(b.stream(Request("Hello there", max_tokens=16)))
        only_eos = measure(
            b.stream(Request("Hi", max_tokens=16, options={"extra_body": {"min_tokens": 16}}))
        )
        fixed = measure(b.stream(Request("Hello there", max_tokens=16, ignore_eos=True)))
        messages = measure(b.stream(Request(chat, max_tokens=16, ignore_eos=True)))
    finally:
        b.close()
    assert (free.output_tokens, free.text) == (0, "")  # the base model ends at once
    assert only_eos.output_tokens < 16  # min_tokens alone: it ends on </s> instead of EOS
    assert fixed.output_tokens == 16 and fixed.text
    assert messages.output_tokens == 16 and messages.text


def test_ignore_eos_holds_the_embedded_model_to_max_tokens_on_the_completions_api(embedded_url):
    b = backend(f"openai:gemma3@{embedded_url}?api=completions")
    try:
        free = measure(b.stream(Request("<s>[INST] Hi [/INST]", max_tokens=16)))
        fixed = measure(b.stream(Request("<s>[INST] Hi [/INST]", max_tokens=16, ignore_eos=True)))
    finally:
        b.close()
    assert free.output_tokens < 16
    assert fixed.output_tokens == 16


@pytest.fixture
def scripted():
    with ScriptedServer() as s:
        yield s


def _sent(server: ScriptedServer, request: Request) -> dict:
    b = backend(f"openai:m@{server.url}")
    try:
        measure(b.stream(request))
    finally:
        b.close()
    return server.requests[-1]["body"]


def test_llama_cpp_python_gets_its_end_tokens_biased_away_and_no_min_tokens(scripted):
    scripted.owned_by = "me"
    scripted.vocabulary = {"<eos>": 1, "<end_of_turn>": 106, "</s>": 212}
    body = _sent(scripted, Request("hi", 4, ignore_eos=True, options={"logit_bias": {"5": 2}}))
    never = -1e9
    assert body["logit_bias"] == {"5": 2, "1": never, "106": never, "212": never}
    # With logit_bias, that server's min_tokens would switch off both (see _openai_request).
    assert "min_tokens" not in body and body["ignore_eos"] is True
    asked = len(scripted.tokenize_calls)
    assert asked > 3 and {c["model"] for c in scripted.tokenize_calls} == {"m"}
    plain = _sent(scripted, Request("hi", 4))
    assert "logit_bias" not in plain and "ignore_eos" not in plain
    assert len(scripted.tokenize_calls) == 2 * asked  # at each load, never per request


@pytest.mark.parametrize(("owned_by", "vocabulary"), [(None, {"</s>": 2}), ("me", None)])
def test_other_servers_and_a_failed_look_up_get_min_tokens(scripted, owned_by, vocabulary):
    scripted.owned_by, scripted.vocabulary = owned_by, vocabulary
    body = _sent(scripted, Request("hi", 4, ignore_eos=True))
    assert (body["ignore_eos"], body["min_tokens"]) == (True, 4) and "logit_bias" not in body
    assert len(scripted.tokenize_calls) == (0 if owned_by is None else 1)


def test_the_load_path_sends_the_same_body_as_the_blocking_path(scripted):
    scripted.script = [Reply(tokens=3)]
    request = Request(
        "hi", 3, seed=7, ignore_eos=True, prefix_cache="bust", options={"extra_body": {"top_k": 2}}
    )
    b = backend(f"openai:m@{scripted.url}")

    async def consume() -> list[object]:
        streamer = b.open_async(1)
        try:
            return [item async for item in streamer.stream(request)]
        finally:
            await streamer.aclose()

    try:
        measure(b.stream(request))
        items = asyncio.run(consume())
    finally:
        b.close()
    blocking, concurrent = (r["body"] for r in scripted.requests)
    assert concurrent == blocking
    assert (blocking["min_tokens"], blocking["cache_prompt"], blocking["top_k"]) == (3, False, 2)
    assert sum(i.tokens for i in items if isinstance(i, Chunk)) == 3
