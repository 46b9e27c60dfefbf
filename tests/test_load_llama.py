"""``llm_load`` against llama.cpp's own server (``llama_cpp.server``, real HTTP) and the tiny
GGUF: closed and open loop produce real tokens, counted by the client.

By default that server interrupts a running completion when another request arrives
(``interrupt_requests``): under concurrent load the cut streams are counted as errors, never
sampled. The main test turns that off, as one would to serve several clients.
"""

import json

import pytest

pytest.importorskip("llama_cpp.server")

from llama_server import serve
from tiny_gguf import write_tiny_gguf


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("load") / "tiny.gguf")


@pytest.fixture(scope="module")
def server_url(model):
    with serve(model, "tiny", interrupt_requests=False) as url:
        yield url


def test_closed_and_open_loop_against_llama_cpp_server(pytester, server_url):
    pytester.makepyfile(
        """
        def test_load(llm_load):
            closed = llm_load(["hello", "a b c"], concurrency=2, requests=6, max_tokens=8)
            opened = llm_load("hello", rate=4.0, requests=6, max_tokens=8, seed=1)
            # One point each: one result each, not a list.
            assert closed.summary["succeeded"] == opened.summary["succeeded"] == 6
            assert closed.stats["output_tokens"].median == 8
        """
    )
    result = pytester.runpytest(
        f"--llm=openai:tiny@{server_url}?timeout=30&deadline=60", "--llm-json=out.json"
    )
    result.assert_outcomes(passed=1)
    closed, opened = json.loads((pytester.path / "out.json").read_text())["results"]
    assert closed["name"] == "load[c=2]" and opened["name"] == "load2[rate=4]"
    for entry in (closed, opened):
        load = entry["load"]
        assert load["requests"] == load["succeeded"] == 6 and load["errors"] == {}
        # llama.cpp's server streams no usage: one content delta is one token, 8 per request.
        assert entry["stats"]["output_tokens"]["median"] == 8
        assert entry["stats"]["ttft_s"]["n"] == 6 and entry["stats"]["itl_s"]["n"] == 6 * 7
        assert load["throughput_rps"] > 0 and load["output_tps"] > 0
    assert opened["load"]["mode"] == "open" and opened["params"]["rate"] == 4.0


def test_a_server_that_interrupts_requests_shows_as_errors_not_samples(pytester, model):
    # Four workers at once, 64 tokens each: while one request streams, the next is waiting
    # for the model, so the server cuts the running one; only a request nobody waits behind
    # (the last) can finish. hold_until_queued makes "the next is waiting" certain rather than
    # a race a fast machine loses. The error limit is lifted to see the counts, not the
    # test's error.
    pytester.makepyfile(
        """
        def test_load(llm_load):
            llm_load("hello", concurrency=4, requests=8, max_tokens=64, warmup=0)
        """
    )
    with serve(model, "tiny", hold_until_queued=8) as url:
        result = pytester.runpytest(
            f"--llm=openai:tiny@{url}?timeout=30&deadline=60",
            "--llm-json=out.json",
            "--llm-max-error-rate=0.99",
        )
    result.assert_outcomes(passed=1)
    [entry] = json.loads((pytester.path / "out.json").read_text())["results"]
    load = entry["load"]
    assert load["requests"] == 8
    assert load["failed"] >= 1 and load["succeeded"] >= 1
    assert sum(load["errors"].values()) == load["failed"] == 8 - load["succeeded"]
    assert set(load["errors"]) <= {"connection", "stream_cut"}
    assert entry["stats"]["ttft_s"]["n"] == load["succeeded"]
