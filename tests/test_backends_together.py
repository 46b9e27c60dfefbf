"""suites/latency on the embedded model with three engines in one session: one table, a row
per backend (llamacpp in-process, hf through transformers, openai through llama.cpp's server).

Slow (transformers converts the GGUF on load, ~1.5 minutes on two cores), so it runs once.
"""

import json
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the hf backend needs pytest-llmperf[hf] and torch")

SUITE = Path(__file__).resolve().parents[1] / "suites" / "latency"


@pytest.fixture(scope="module")
def embedded_server():
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings
    from test_openai import free_port

    from pytest_llmperf.models import embedded_model_path

    port = free_port()
    app = create_app(
        server_settings=ServerSettings(host="127.0.0.1", port=port),
        model_settings=[
            ModelSettings(
                model=str(embedded_model_path()), model_alias="gemma3", n_threads=2, verbose=False
            )
        ],
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "llama_cpp.server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(10)


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
