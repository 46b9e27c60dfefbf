"""suites/latency on the embedded model with three engines in one session: one table, a row
per backend (llamacpp in-process, hf through transformers, openai through llama.cpp's server).

Slow (transformers converts the GGUF on load, ~1.5 minutes on two cores), so it runs once.
"""

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the hf backend needs pytest-llmperf[hf] and torch")

SUITE = Path(__file__).resolve().parents[1] / "suites" / "latency"


@pytest.fixture(scope="module")
def embedded_server():
    from llama_server import serve

    from pytest_llmperf.models import embedded_model_path

    with serve(embedded_model_path(), "gemma3", n_ctx=2048, n_threads=2) as url:
        yield url


def test_three_engines_one_table(pytester, embedded_server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytester.syspathinsert(SUITE)
    pytester.makepyfile(test_latency=(SUITE / "test_latency.py").read_text())
    # The completions endpoint: the same raw prompt on every engine, no chat template.
    openai_spec = f"openai:gemma3@{embedded_server}?api=completions"
    # In a subprocess: pytester's in-process runs drop the modules imported during them, and
    # torch and transformers' lazily imported submodules do not survive that.
    result = pytester.runpytest_subprocess(
        "--llm=llamacpp:gemma3-270m",
        "--llm=hf:gemma3-270m",
        f"--llm={openai_spec}",
        "--llm-runs=2",
        "--llm-warmup=0",
        "--llm-json=r.json",
    )
    result.assert_outcomes(passed=9)
    for test in ("test_decode_heavy", "test_prefill_heavy", "test_short_prompt"):
        result.stdout.fnmatch_lines(
            [
                f"{test}*hf:gemma3-270m*2*",
                f"{test}*llamacpp:gemma3-270m*2*",
                f"{test}*openai:gemma3?api=completions*2*",
            ]
        )
    doc = json.loads(Path(pytester.path, "r.json").read_text())
    assert {b["library"] for b in doc["backends"]} == {
        "llama-cpp-python",
        "transformers",
        "openai",
    }
    decode = {r["backend_id"]: r for r in doc["results"] if "test_decode_heavy" in r["nodeid"]}
    openai_id = "openai:gemma3?api=completions"
    assert set(decode) == {"llamacpp:gemma3-270m", "hf:gemma3-270m", openai_id}
    for r in decode.values():
        # The base model continues a story: all 128 tokens on every engine.
        assert r["stats"]["output_tokens"]["median"] == 128
        assert r["stats"]["sec_per_token"]["median"] > 0
