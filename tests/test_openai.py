"""The openai backend against a real OpenAI-compatible server: llama_cpp.server on loopback."""

import json
from pathlib import Path

import pytest
from llama_server import free_port, serve
from tiny_gguf import write_tiny_gguf

from pytest_llmperf.backends import Request
from pytest_llmperf.backends.openai import OpenAIBackend
from pytest_llmperf.errors import BackendUnavailable, InvalidRequest
from pytest_llmperf.harness import measure
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
