"""The hf backend against real transformers on CPU: a tiny generated GGUF, the same model saved
as a directory, and the embedded model. Nothing here may reach the Hugging Face hub."""

import json
import re
import threading
from pathlib import Path

import pytest
import torch
import transformers
from tiny_gguf import BOS_ID, BYTE0_ID, EOS_ID, write_tiny_gguf

from pytest_llmperf.backends import Chunk, Request, Usage
from pytest_llmperf.backends._hf_streamer import TokenStreamer as _TokenStreamer
from pytest_llmperf.backends.hf import HFBackend
from pytest_llmperf.errors import (
    BackendUnavailable,
    GenerationError,
    InvalidRequest,
    NoChatTemplate,
    SpecError,
)
from pytest_llmperf.harness import LLMHandle
from pytest_llmperf.options import resolve_options
from pytest_llmperf.spec import parse_spec

PROMPT = "Hello world, this is a test prompt."
SAY_HELLO = [{"role": "user", "content": "Say hello."}]
WITH_SYSTEM = [{"role": "system", "content": "You are terse."}, *SAY_HELLO]
# Gemma 3's chat format: the system message folded into the first user turn.
GEMMA_SAY_HELLO = "<bos><start_of_turn>user\nSay hello.<end_of_turn>\n<start_of_turn>model\n"
GEMMA_WITH_SYSTEM = (
    "<bos><start_of_turn>user\nYou are terse.\n\nSay hello.<end_of_turn>\n<start_of_turn>model\n"
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def backend(spec_text: str) -> HFBackend:
    spec = parse_spec(spec_text)
    return HFBackend(spec, resolve_options(spec, HFBackend.options))


def load(spec_text: str) -> LLMHandle:
    b = backend(spec_text)
    b.check()
    b.load()
    return LLMHandle(b, load_s=0.0)


def ascii_id(char: str) -> int:
    """Token id of a printable ASCII character in tiny_gguf's vocabulary."""
    return BYTE0_ID + 256 + 1 + ord(char) - 0x21


def generation_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "llmperf-hf" and t.is_alive()]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="module")
def tiny(tiny_path: Path):
    handle = load(f"hf:{tiny_path}")
    yield handle
    handle.backend.close()


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model saved by save_pretrained in bfloat16, without a chat template."""
    path = tmp_path_factory.mktemp("saved")
    backend = tiny.backend
    model = transformers.AutoModelForCausalLM.from_config(backend._model.config)
    model.load_state_dict(backend._model.state_dict())
    model.to(torch.bfloat16).save_pretrained(path)
    tokenizer = backend._tokenizer
    template, tokenizer.chat_template = tokenizer.chat_template, None
    try:
        tokenizer.save_pretrained(path)
    finally:
        tokenizer.chat_template = template
    return path


@pytest.fixture(scope="module")
def embedded():
    """The embedded GGUF through transformers: about a minute and a half to load on two cores,
    so every test of it shares this one."""
    handle = load("hf:gemma3-270m")
    yield handle
    handle.backend.close()


def test_streams_one_chunk_per_token_and_counts_exactly(tiny):
    items = list(tiny.backend.stream(Request(PROMPT, max_tokens=12)))
    *chunks, usage = items
    expected_prompt = len(tiny.backend._tokenizer(PROMPT)["input_ids"])
    assert usage == Usage(expected_prompt, "engine", output_tokens=12)
    assert all(isinstance(c, Chunk) for c in chunks)
    assert sum(c.tokens for c in chunks) == 12
    assert [c.tokens for c in chunks if c.tokens] == [1] * 12
    assert "".join(c.text for c in chunks).strip()


def test_the_harness_times_every_token(tiny):
    g = tiny.generate(PROMPT, max_tokens=12)
    assert (g.output_tokens, g.token_source) == (12, "engine")
    assert len(g.itl_s) == 11
    assert g.ttft_s is not None
    assert g.e2e_s > g.ttft_s > 0
    assert g.tpot_s == pytest.approx((g.e2e_s - g.ttft_s) / 11)
    assert generation_threads() == []


def test_greedy_generation_is_repeatable_and_matches_generate(tiny):
    first = tiny.generate("Hello world", max_tokens=10)
    second = tiny.generate("Hello world", max_tokens=10)
    backend = tiny.backend
    inputs = backend._tokenizer("Hello world", return_tensors="pt")
    out = backend._model.generate(**inputs, max_new_tokens=10, do_sample=False)
    direct = backend._tokenizer.decode(out[0, inputs["input_ids"].shape[1] :])
    assert first.text == second.text == direct


def test_tokens_count_even_when_their_text_is_held_back(tmp_path):
    # This model emits lone UTF-8 continuation bytes: no token ever completes a character.
    path = write_tiny_gguf(tmp_path / "bytes.gguf", invalid_utf8=True)
    handle = load(f"hf:{path}")
    try:
        *chunks, usage = list(handle.backend.stream(Request("Hello", max_tokens=8)))
        g = handle.generate("Hello", max_tokens=8)
    finally:
        handle.backend.close()
    assert chunks[:8] == [Chunk("", 1)] * 8
    assert chunks[8:] == [Chunk("\ufffd" * 8, 0)]
    assert isinstance(usage, Usage)
    assert usage.output_tokens == 8
    assert g.output_tokens == 8
    assert len(g.itl_s) == 7
    json.dumps(g.to_json())


def test_streamer_releases_a_split_character_with_the_token_that_completes_it(tiny):
    tokenizer = tiny.backend._tokenizer
    streamer = _TokenStreamer(tokenizer, frozenset({EOS_ID}))
    steps = [
        [BYTE0_ID + 0xC3],  # first byte of "é"
        [BYTE0_ID + 0xA9],  # its second byte
        [ascii_id("H")],
        [ascii_id("i")],
        [BYTE0_ID + 256],  # SPM's space
        [ascii_id("!")],
        [EOS_ID],
    ]
    streamer.put(torch.tensor([[1, ascii_id("x")]]))  # the prompt: skipped
    for step in steps:
        streamer.put(torch.tensor(step))
    streamer.end()
    got = [streamer.queue.get_nowait() for _ in range(streamer.queue.qsize())]
    assert got == [("", 1), ("é", 1), ("H", 1), ("i", 1), (" ", 1), ("!", 1)]
    generated = [t for step in steps[:-1] for t in step]
    assert "".join(text for text, _ in got) == tokenizer.decode(generated)


def test_chat_messages_go_through_the_chat_template(tiny, tiny_path):
    messages = [{"role": "user", "content": "Hi there"}]
    g = tiny.generate(messages, max_tokens=4)
    tokenizer = tiny.backend._tokenizer
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|user|>Hi there\n<|assistant|>"
    # The template writes no BOS, so the tokenizer adds its own, as llama.cpp does: the same
    # prompt tokens on both engines.
    expected = tokenizer(text)["input_ids"]
    assert expected[0] == BOS_ID
    assert (g.prompt_tokens, g.output_tokens) == (len(expected), 4)
    assert tiny.backend.info()["chat_template"] == "model"
    assert g.prompt_tokens != len(tiny.backend._tokenizer("Hi there")["input_ids"])
    chat = load(f"hf:{tiny_path}?chat=true")
    try:
        assert chat.generate("Hi there", max_tokens=4).prompt_tokens == g.prompt_tokens
        # built once from the GGUF's metadata, shared by specs of the same file
        assert chat.backend._tokenizer is tiny.backend._tokenizer
    finally:
        chat.backend.close()


def test_a_saved_directory_loads_in_its_own_dtype_by_default(tiny_dir):
    handle = load(f"hf:{tiny_dir}")
    try:
        g = handle.generate("Hello", max_tokens=5)
        info = handle.backend.info()
        assert handle.backend.model_file == tiny_dir / "model.safetensors"
        with pytest.raises(NoChatTemplate, match="has no chat template") as no_template:
            handle.generate([{"role": "user", "content": "Hi"}], max_tokens=2)
        assert handle.backend.info()["chat_template"] is None
    finally:
        handle.backend.close()
    assert (g.output_tokens, g.token_source) == (5, "engine")
    assert (info["model_source"], info["dtype"], info["device"]) == ("dir", "bfloat16", "cpu")
    message = str(no_template.value)
    assert f"(hf:{tiny_dir}?chat_template=chatml)" in message
    assert f"(hf:{tiny_dir}?chat_template=/path/to/template.jinja)" in message


@pytest.mark.parametrize(
    ("dtype", "expected"), [("auto", "float32"), ("float32", "float32"), ("bfloat16", "bfloat16")]
)
def test_dtype_is_applied_to_the_weights(tiny_path, dtype, expected):
    handle = load(f"hf:{tiny_path}?dtype={dtype}")
    try:
        g = handle.generate("Hello", max_tokens=4)
        info = handle.backend.info()
        dtypes = {str(p.dtype) for p in handle.backend._model.parameters()}
    finally:
        handle.backend.close()
    assert g.output_tokens == 4
    assert info["dtype"] == expected
    assert dtypes == {f"torch.{expected}"}
    assert info["param_count"] > 100_000
    assert (info["library"], info["library_version"]) == ("transformers", transformers.__version__)
    assert info["options"]["dtype"] == dtype
    assert info["cuda_peak_memory_mb"] is None  # CPU: no accelerator memory to report
    assert g.accelerator_peak_mb is None


def test_bad_dtype_is_rejected_with_the_valid_values():
    spec = parse_spec("hf:gemma3-270m?dtype=fp8")
    with pytest.raises(
        SpecError, match="'dtype': expected one of auto, float32, float16, bfloat16"
    ):
        resolve_options(spec, HFBackend.options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("device=gpu", "bad value 'gpu' for option 'device': expected cpu, cuda, cuda:N, mps"),
        ("gptq_bits=5", "gptq_bits must be 2, 3, 4 or 8"),
        ("load_in_8bit=1&load_in_4bit=1", "choose one of load_in_8bit, load_in_4bit"),
    ],
)
def test_inconsistent_options_are_spec_errors(options, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        backend(f"hf:gemma3-270m?{options}").check()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "options", ["device=cuda", "device=cuda:1", "load_in_8bit=1", "load_in_4bit=1", "gptq_bits=4"]
)
def test_cuda_options_are_refused_where_there_is_no_cuda(options):
    option = options.replace("=1", "").split("=")[0]
    with pytest.raises(BackendUnavailable) as info:
        backend(f"hf:gemma3-270m?{options}").check()
    message = str(info.value)
    assert option in message
    assert "needs a CUDA GPU, but torch.cuda.is_available() is False" in message
    assert "CUDA build of torch" in message


def test_model_paths_are_checked_before_loading(tmp_path, tiny_path):
    with pytest.raises(BackendUnavailable, match=f"model path not found: {tmp_path}/nope.gguf"):
        backend(f"hf:{tmp_path}/nope.gguf").check()
    with pytest.raises(BackendUnavailable, match=f"model path not found: {tmp_path}/a/b"):
        backend(f"hf:{tmp_path}/a/b").check()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(
        BackendUnavailable,
        match=re.escape(f"no model weights in {tmp_path}/empty: looked for *.safetensors, *.bin"),
    ):
        backend(f"hf:{tmp_path}/empty").check()
    (tmp_path / "fake.gguf").write_bytes(b"\x89PNG" + bytes(64))
    with pytest.raises(BackendUnavailable, match="not a GGUF file"):
        backend(f"hf:{tmp_path}/fake.gguf").check()
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.gguf", "b.gguf"):
        (two / name).write_bytes(tiny_path.read_bytes())
    with pytest.raises(BackendUnavailable, match=r"several GGUF files \(a.gguf, b.gguf\)"):
        backend(f"hf:{two}").check()


def test_a_directory_holding_one_gguf_loads_it(tiny_path):
    b = backend(f"hf:{tiny_path.parent}")
    b.check()
    assert (b._source, b.model_file) == ("gguf", tiny_path)


def test_an_uncached_hub_id_is_refused_offline():
    with pytest.raises(BackendUnavailable, match="not in the local Hugging Face cache"):
        backend("hf:pytest-llmperf/no-such-model").check()


@pytest.mark.parametrize(
    ("options", "content", "message"),
    [
        ("", None, "model path not found"),
        ("", b"", "no model weights in"),
        ("?dtype=float64", b"GGUF", "bad value 'float64' for option 'dtype': expected one of"),
        ("?device=cuda", b"GGUF", "needs a CUDA GPU"),
    ],
)
def test_bad_specs_stop_the_run_before_any_test(pytester, tmp_path, options, content, message):
    if torch.cuda.is_available() and "cuda" in options:
        pytest.skip("CUDA is available here")
    path = tmp_path / "model"
    if content == b"":
        path.mkdir()
    elif content is not None:
        path = tmp_path / "model.gguf"
        path.write_bytes(content)
    pytester.makepyfile("def test_x(llm_backend):\n    raise AssertionError('ran')\n")
    result = pytester.runpytest(f"--llm=hf:{path}{options}", "--llm-json=out.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert not (pytester.path / "out.json").exists()


@pytest.mark.parametrize(
    ("missing", "spec", "message"),
    [
        (
            "transformers",
            "hf:gemma3-270m",
            "hf needs transformers: pip install 'pytest-llmperf[hf]'",
        ),
        ("accelerate", "hf:org/model?device_map=auto", "device_map needs the accelerate package"),
        ("gguf", "hf:gemma3-270m", "loading a GGUF file with transformers needs the gguf package"),
    ],
)
def test_a_missing_package_is_named(monkeypatch, missing, spec, message):
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == missing else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(BackendUnavailable, match=re.escape(message)):
        backend(spec).check()


class Boom(transformers.LogitsProcessor):
    """Fails (or stalls) inside ``generate``, on the generation thread, at a given step."""

    def __init__(self, at_step: int, *, sleep_s: float = 0.0) -> None:
        self.at_step, self.sleep_s, self.calls = at_step, sleep_s, 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.at_step:
            if not self.sleep_s:
                raise RuntimeError("boom in step 3")
            threading.Event().wait(self.sleep_s)
        return scores


def test_an_exception_in_the_generation_thread_reaches_the_consumer(tiny):
    stream = tiny.backend.stream(
        Request("Hello", max_tokens=20, options={"logits_processor": [Boom(3)]})
    )
    received = []
    with pytest.raises(GenerationError, match="RuntimeError: boom in step 3") as info:
        received.extend(stream)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert [c.tokens for c in received] == [1, 1]  # the two steps before the failure
    assert generation_threads() == []


def test_transformers_own_errors_come_back_as_generation_errors(tiny):
    with pytest.raises(GenerationError, match="cannot be used with beam search"):
        tiny.generate("Hello", max_tokens=4, num_beams=2)
    assert generation_threads() == []


def test_a_stalled_generation_times_out_instead_of_hanging(tiny_path):
    handle = load(f"hf:{tiny_path}")
    handle.backend.stall_timeout_s = 0.2
    try:
        with pytest.raises(GenerationError, match=r"produced no token for 0.2 s"):
            handle.generate("Hello", max_tokens=8, logits_processor=[Boom(3, sleep_s=2.0)])
        assert generation_threads() == []  # the stuck step ended and the thread was joined
    finally:
        handle.backend.close()


def test_a_consumer_that_stops_early_stops_the_generation(tiny):
    stream = tiny.backend.stream(Request("Hello", max_tokens=900))
    first = [next(stream) for _ in range(3)]
    stream.close()
    assert [c.tokens for c in first] == [1, 1, 1]
    assert generation_threads() == []


def test_invalid_requests_are_refused_before_generating(tiny):
    with pytest.raises(InvalidRequest, match="max_tokens must be >= 1, got 0"):
        tiny.generate("Hello", max_tokens=0)
    with pytest.raises(InvalidRequest, match=r"exceeds the model's context of 1024 tokens"):
        tiny.generate("word " * 400, max_tokens=8)
    with pytest.raises(InvalidRequest, match=r"unknown generation option 'beam_width'"):
        tiny.generate("Hello", max_tokens=2, beam_width=4)
    with pytest.raises(InvalidRequest, match=r"unknown generation option 'max_new_tokens'"):
        tiny.generate("Hello", max_tokens=2, max_new_tokens=4)


def test_the_backend_itself_names_the_closest_valid_option(tiny):
    valid = set(tiny.backend.generation_options())
    assert {"top_k", "top_p", "repetition_penalty", "min_new_tokens", "logits_processor"} <= valid
    assert not valid & {"max_new_tokens", "temperature", "do_sample", "streamer"}
    # Straight to stream(), past the harness's own check: the backend refuses it too.
    stream = tiny.backend.stream(Request("Hello", max_tokens=2, options={"temprature": 0.7}))
    with pytest.raises(InvalidRequest) as info:
        next(stream)
    message = str(info.value)
    assert message.startswith(
        "unknown generation option 'temprature' (did you mean 'temperature'?) for hf; "
        "valid options: "
    )
    assert "repetition_penalty" in message
    assert message.endswith(
        "(do_sample, max_length, max_new_tokens, num_return_sequences, streamer, temperature "
        "are set from max_tokens and temperature)"
    )


def test_generation_options_reach_generate(tiny):
    plain = tiny.generate("Hello", max_tokens=12)
    penalised = tiny.generate("Hello", max_tokens=12, repetition_penalty=5.0)
    assert plain.output_tokens == penalised.output_tokens == 12
    assert plain.text != penalised.text


def test_seeded_sampling_is_reproducible(tiny):
    a = tiny.generate("Hello", max_tokens=16, temperature=0.9, seed=7)
    b = tiny.generate("Hello", max_tokens=16, temperature=0.9, seed=7)
    assert a.output_tokens == b.output_tokens == 16
    assert a.text == b.text


def test_threads_option_sets_torch_threads(tiny_path):
    before = torch.get_num_threads()
    try:
        handle = load(f"hf:{tiny_path}?threads=1")
        assert torch.get_num_threads() == 1
        handle.backend.close()
    finally:
        torch.set_num_threads(before)


def test_close_releases_the_model(tiny_path):
    handle = load(f"hf:{tiny_path}")
    handle.backend.close()
    assert handle.backend._model is None
    assert handle.backend._tokenizer is None


def test_embedded_model_in_float32_and_bfloat16_in_one_session(pytester):
    # Each load of the embedded GGUF costs about a minute and a half on two cores: both dtypes
    # share this one run.
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm_perf(runs=2, warmup=0, max_tokens=16)
        def test_decode(llm_bench):
            result = llm_bench("The capital of France is", min_new_tokens=16)
            assert result.stats["decode_tps"].median > 0
        """
    )
    result = pytester.runpytest(
        "--llm=hf:gemma3-270m",
        "--llm=hf:gemma3-270m?dtype=bfloat16",
        "--llm-json=out.json",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=2)
    for row in (
        "test_decode*hf:gemma3-270m *2*16",
        "test_decode*hf:gemma3-270m?dtype=bfloat16*2*16",
    ):
        result.stdout.fnmatch_lines([row])  # one table row each, in either order
    doc = json.loads((pytester.path / "out.json").read_text())
    backends = {b["spec"]: b for b in doc["backends"]}
    assert {s: b["dtype"] for s, b in backends.items()} == {
        "hf:gemma3-270m": "float32",
        "hf:gemma3-270m?dtype=bfloat16": "bfloat16",
    }
    for record in backends.values():
        assert record["library"] == "transformers"
        assert record["model_source"] == "gguf"
        assert record["model_file"]["sha256"].startswith("a5fd3b62")
        assert record["param_count"] > 200_000_000
    results = {r["backend"]: r for r in doc["results"]}
    assert set(results) == set(backends)
    for res in results.values():
        assert len(res["generations"]) == 2
        assert all(g["token_source"] == "engine" for g in res["generations"])
        assert all(g["output_tokens"] == 16 for g in res["generations"])
        assert all(g["prompt_tokens"] == 6 for g in res["generations"])
        assert res["stats"]["ttft_s"]["n"] == 2


@pytest.mark.gpu
def test_embedded_model_on_the_gpu_reports_peak_memory():
    handle = load("hf:gemma3-270m?device=cuda&dtype=bfloat16")
    try:
        g = handle.generate("The capital of France is", max_tokens=16, min_new_tokens=16)
        info = handle.backend.info()
    finally:
        handle.backend.close()
    assert g.output_tokens == 16
    assert info["device"] == "cuda:0"
    assert info["dtype"] == "bfloat16"
    assert info["cuda_peak_memory_mb"] > 100
    assert g.accelerator_peak_mb == info["cuda_peak_memory_mb"]


@pytest.mark.gpu
def test_8bit_weights_through_bitsandbytes(tiny_dir):
    pytest.importorskip("bitsandbytes")
    handle = load(f"hf:{tiny_dir}?load_in_8bit=true")
    try:
        g = handle.generate("Hello", max_tokens=8)
        info = handle.backend.info()
        dtypes = {p.dtype for p in handle.backend._model.parameters()}
    finally:
        handle.backend.close()
    assert g.output_tokens == 8
    assert torch.int8 in dtypes
    assert info["device"].startswith("cuda")
    assert info["cuda_peak_memory_mb"] > 0


@pytest.mark.gpu
def test_gptq_checkpoint_with_the_torch_kernel(tiny, tiny_dir, tmp_path):
    pytest.importorskip("optimum")
    pytest.importorskip("gptqmodel")
    # Quantize the tiny model here (calibration on a few strings), then benchmark the result.
    tokenizer = tiny.backend._tokenizer
    config = transformers.GPTQConfig(
        bits=4, group_size=32, dataset=["Hello world, a test sentence."] * 8, tokenizer=tokenizer
    )
    quantized = transformers.AutoModelForCausalLM.from_pretrained(
        tiny_dir, quantization_config=config, device_map="cuda"
    )
    quantized.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    del quantized
    handle = load(f"hf:{tmp_path}?gptq_bits=4&disable_exllama=true")
    try:
        g = handle.generate("Hello", max_tokens=8)
    finally:
        handle.backend.close()
    assert g.output_tokens == 8


# -- chat templates and fixed output lengths ---------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "formatted", "count"),
    [(SAY_HELLO, GEMMA_SAY_HELLO, 12), (WITH_SYSTEM, GEMMA_WITH_SYSTEM, 17)],
)
def test_the_embedded_model_takes_chat_prompts_in_gemmas_format(
    embedded, messages, formatted, count
):
    backend_ = embedded.backend
    assert backend_.info()["chat_template"] == "gemma3 (built in for the embedded model)"
    assert backend_._template.format(messages) == formatted
    ids = backend_._encode(messages)[0]["input_ids"][0].tolist()
    tokenizer = backend_._tokenizer
    assert ids == tokenizer(formatted, add_special_tokens=False)["input_ids"]
    assert ids[:2] == [tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids("<start_of_turn>")]
    g = embedded.generate(messages, max_tokens=8)
    assert g.prompt_tokens == len(ids) == count  # as many as llama.cpp's (test_llamacpp.py)
    assert 0 < g.output_tokens <= 8
    assert g.text.strip()


def test_a_chat_answer_ends_at_gemmas_end_of_turn(embedded):
    # The GGUF's generation config knows <eos> only; the template's <end_of_turn> is added.
    tokenizer = embedded.backend._tokenizer
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    kwargs, stop_ids = embedded.backend._generate_kwargs(Request(SAY_HELLO), chat=True)
    assert stop_ids == {tokenizer.eos_token_id, end_of_turn}
    assert kwargs["eos_token_id"] == sorted(stop_ids)
    plain, plain_stops = embedded.backend._generate_kwargs(Request("Hi"), chat=False)
    assert "eos_token_id" not in plain
    assert plain_stops == {tokenizer.eos_token_id}


def test_ignore_eos_generates_exactly_max_tokens(embedded, tmp_path):
    # This model's greedy choice is </s> at every step: without ignore_eos nothing comes.
    handle = load(f"hf:{write_tiny_gguf(tmp_path / 'ends.gguf', eos_first=True)}")
    try:
        assert handle.backend.ignore_eos_note() is None
        stopped = handle.generate("Hello", max_tokens=12)
        forced = handle.generate("Hello", max_tokens=12, ignore_eos=True)
        *chunks, usage = list(handle.backend.stream(Request("Hi", max_tokens=5, ignore_eos=True)))
    finally:
        handle.backend.close()
    assert stopped.output_tokens == 0
    assert forced.output_tokens == 12
    assert [c.tokens for c in chunks if c.tokens] == [1] * 5  # the streamer counts each one
    assert isinstance(usage, Usage)
    assert usage.output_tokens == 5
    # The base model did not end a chat answer on its own in 8 to 64 tokens; forced: exactly 8.
    assert embedded.generate(WITH_SYSTEM, max_tokens=8, ignore_eos=True).output_tokens == 8


def test_a_llama_cpp_chat_format_by_name(tiny_path):
    from llama_cpp.llama_chat_format import format_chatml

    formatted = format_chatml(messages=SAY_HELLO).prompt
    assert "<|im_start|>user\nSay hello.<|im_end|>" in formatted
    handle = load(f"hf:{tiny_path}?chat_template=chatml")
    try:
        g = handle.generate(SAY_HELLO, max_tokens=3)
        info = handle.backend.info()
        expected = handle.backend._tokenizer(formatted)["input_ids"]  # the tokenizer's BOS too
    finally:
        handle.backend.close()
    assert expected[0] == BOS_ID
    assert (g.prompt_tokens, g.output_tokens) == (len(expected), 3)
    assert info["chat_template"] == "chatml"


def test_a_jinja_file_as_chat_template(tiny_path, tmp_path):
    template = tmp_path / "chat.jinja"
    template.write_text(
        "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n"
        "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}{{ eos_token }}"
    )
    handle = load(f"hf:{tiny_path}?chat_template={template}")
    try:
        g = handle.generate(WITH_SYSTEM, max_tokens=3)
        rendered = handle.backend._template.format(WITH_SYSTEM)
        info = handle.backend.info()
        expected = handle.backend._tokenizer(rendered, add_special_tokens=False)["input_ids"]
    finally:
        handle.backend.close()
    assert rendered == "<s>[system] You are terse.\n[user] Say hello.\n[assistant] </s>"
    # the template wrote the BOS (parsed as the BOS token): none is added in front of it
    assert expected.count(BOS_ID) == 1
    assert (g.prompt_tokens, g.output_tokens) == (len(expected), 3)
    assert info["chat_template"] == str(template)


@pytest.mark.parametrize(
    ("value", "content", "message"),
    [
        ("chatmlx", None, r"expected a chat format \(gemma3, .*chatml, .*\) or a path to a Jinja"),
        ("{tmp}/missing.jinja", None, "no such Jinja file: {tmp}/missing.jinja"),
        ("{tmp}/bad.jinja", "{{ messages[0] ", "not a valid Jinja template: .*line 1"),
        ("{tmp}", None, "not a file: {tmp}"),
    ],
)
def test_bad_chat_templates_are_one_line_spec_errors_at_check(tmp_path, value, content, message):
    value, message = value.format(tmp=tmp_path), message.format(tmp=tmp_path)
    if content is not None:
        Path(value).write_text(content)
    spec = f"hf:gemma3-270m?chat_template={value}"
    with pytest.raises(SpecError) as info:
        backend(spec).check()
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"--llm={spec!r}: bad value {value!r} for option 'chat_template': ")
    assert re.search(message, text), text


def test_a_llama_cpp_chat_format_without_llama_cpp_is_refused_at_check(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "llama_cpp" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(BackendUnavailable, match=r"chat_template='chatml'.*pip install llama-cpp"):
        backend("hf:gemma3-270m?chat_template=chatml").check()
    backend("hf:gemma3-270m?chat_template=gemma3").check()  # shipped: needs no llama_cpp
