"""Latency suite in the spirit of llama-bench's pp512 / tg128.

Every benchmark generates exactly max_tokens tokens (``ignore_eos``), as llama-bench does, so two
models that would stop at different lengths do the same work; the prefill benchmark busts
servers' prompt caches (``prefix_cache="bust"``), or from the second request on a server that
caches prompts (llama.cpp's, vLLM) would report a cache hit as TTFT.

pytest suites/latency                                  # the embedded model
pytest suites/latency --llm=llamacpp:path/to/model.gguf --llm-json=results.json
"""

import pytest

SHORT_PROMPT = "The capital of France is"

# ~512 tokens of plain prose: the prefill (prompt processing) case.
_PARAGRAPH = (
    "Benchmarks of language models measure two different things. Prompt processing reads the "
    "whole input at once and is limited by arithmetic throughput, while decoding produces one "
    "token at a time and is limited by how fast the weights can be read from memory. "
)
LONG_PROMPT = (_PARAGRAPH * 11) + "In one sentence, the main point of this text is"

STORY_PROMPT = "Write a story about a fox who learns to read. Once upon a time,"


@pytest.mark.llm_perf(max_tokens=32, ignore_eos=True)
def test_short_prompt(llm_bench):
    result = llm_bench(SHORT_PROMPT)
    assert result.stats["ttft_s"].n == result.runs
    assert result.stats["output_tokens"].min >= 1


@pytest.mark.llm_perf(max_tokens=16, ignore_eos=True, prefix_cache="bust")
def test_prefill_heavy(llm_bench):
    result = llm_bench(LONG_PROMPT)
    prompt_tokens = result.stats["prompt_tokens"]
    # A server that reports no usage (llama.cpp's) leaves the prompt size unknown, not guessed.
    if prompt_tokens.n:
        assert prompt_tokens.median >= 400
        assert result.stats["prefill_tps"].median > 0
    else:
        assert result.missing["prefill_tps"] == result.runs


@pytest.mark.llm_perf(max_tokens=128, ignore_eos=True)
def test_decode_heavy(llm_bench):
    result = llm_bench(STORY_PROMPT)
    assert result.stats["decode_tps"].median > 0
    assert result.stats["tpot_s"].n == result.runs
