"""Rate limits, server errors, timeouts and broken streams: counted as errors, never sampled.

The server is a scripted loopback one (real HTTP and SSE; see scripted_openai.py), so the
openai SDK and its HTTP client run unmodified.
"""

import json
import time
from pathlib import Path

import pytest
from scripted_openai import Reply, ScriptedServer

from pytest_llmperf.backends import Chunk, Request, Usage
from pytest_llmperf.backends.openai import OpenAIBackend
from pytest_llmperf.bench import RequestErrors, Workload
from pytest_llmperf.errors import GenerationError, TransientError
from pytest_llmperf.harness import LLMHandle, measure
from pytest_llmperf.options import resolve_options
from pytest_llmperf.spec import parse_spec


@pytest.fixture
def server():
    with ScriptedServer() as s:
        yield s


def backend(url: str, query: str = "") -> OpenAIBackend:
    spec = parse_spec(f"openai:m@{url}{query}")
    b = OpenAIBackend(spec, resolve_options(spec, OpenAIBackend.options))
    b.check()
    b.load()
    return b


@pytest.mark.parametrize(
    ("reply", "kind", "retry_after"),
    [
        (Reply(status=429, headers={"retry-after": "1.5"}), "rate_limit", 1.5),
        (Reply(status=429, headers={"retry-after-ms": "250"}), "rate_limit", 0.25),
        (Reply(status=500), "server_error", None),
        (Reply(status=503, headers={"retry-after": "2"}), "server_error", 2.0),
        (Reply(cut_after=2), "stream_cut", None),
    ],
)
def test_transient_failures_say_what_they_were(server, reply, kind, retry_after):
    server.script = [reply]
    b = backend(server.url)
    with pytest.raises(TransientError) as info:
        measure(b.stream(Request("hi", max_tokens=4)))
    assert (info.value.kind, info.value.retry_after) == (kind, retry_after)


def test_a_cut_stream_says_how_far_it_got(server):
    server.script = [Reply(tokens=6, cut_after=3)]
    with pytest.raises(TransientError, match="broke the stream after 3 chunks"):
        measure(backend(server.url).stream(Request("hi", max_tokens=6)))


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(status=401), r"refused the API key \(HTTP 401\): scripted 401$"),
        (Reply(status=404), r"does not know model 'm' \(HTTP 404\): scripted 404$"),
        (Reply(status=400), r"answered HTTP 400: scripted 400$"),
        (Reply(malformed="{not json"), "malformed server-sent event after 1 chunks"),
    ],
)
def test_permanent_failures_are_plain_generation_errors(server, reply, message):
    server.script = [reply]
    with pytest.raises(GenerationError, match=message) as info:
        measure(backend(server.url).stream(Request("hi", max_tokens=4)))
    assert not isinstance(info.value, TransientError)


def test_a_server_that_goes_quiet_times_out(server):
    server.script = [Reply(stall=30)]
    b = backend(server.url, "?timeout=0.5")
    with pytest.raises(TransientError, match=r"sent nothing for timeout=0.5 s") as info:
        measure(b.stream(Request("hi", max_tokens=4)))
    assert info.value.kind == "timeout"


def test_keep_alive_pings_do_not_outlive_the_deadline(server):
    # Pings reset the read timeout, so only the whole-request deadline ends this one.
    server.script = [Reply(stall=30, ping_every=0.1)]
    b = backend(server.url, "?timeout=5&deadline=0.6")
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"deadline=0.6 s \(0 chunks received\)"):
        measure(b.stream(Request("hi", max_tokens=4)))
    assert time.monotonic() - started >= 0.6


def test_a_slow_stream_past_the_deadline_is_not_a_short_sample(server):
    server.script = [Reply(tokens=40, delay=0.05)]
    b = backend(server.url, "?deadline=0.5")
    with pytest.raises(TransientError, match=r"deadline=0.5 s \(\d+ chunks received\)"):
        measure(b.stream(Request("hi", max_tokens=40)))


def test_usage_in_the_stream_is_used_when_sent(server):
    server.script = [Reply(tokens=3, usage=True)]
    g = measure(backend(server.url).stream(Request("hi", max_tokens=3)))
    assert (g.output_tokens, g.prompt_tokens, g.token_source) == (3, 3, "usage")
    assert server.requests[-1]["body"]["stream_options"] == {"include_usage": True}


# --- the harness side: RequestErrors and Workload.run -------------------------------------


class _Scripted:
    """A minimal backend that fails or succeeds as told (the plugin machinery under test)."""

    kind = "scripted"

    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes = outcomes
        self.spec = parse_spec("fake:m")

    def stream(self, request: Request):
        outcome = self.outcomes.pop(0)
        if outcome != "ok":
            raise TransientError(outcome, kind=outcome, retry_after=0.0)
        yield Chunk("a", 1)
        yield Usage(1, "engine")


def run(outcomes: list[str], samples: int, rate: float = 0.1):
    slept: list[float] = []
    errors = RequestErrors(rate, sleep=slept.append)
    handle = LLMHandle(_Scripted(outcomes), 0.0)  # type: ignore[arg-type]
    gens = [Workload("p", 1).run(handle, errors) for _ in range(samples)]
    return gens, errors, slept


def test_a_retried_attempt_is_kept_apart_from_first_tries():
    gens, errors, slept = run(["ok", "rate_limit", "ok", "ok", "ok", "ok"], samples=4)
    # Attempt 3 succeeded after a failure: reported as retried, and one more first try drawn.
    assert len(gens) == 4
    assert errors.attempts == 6
    assert errors.counts == {"rate_limit": 1}
    assert len(errors.retried) == 1
    assert errors.to_json()["failed"] == 1
    assert slept == [0.0]


def test_failures_beyond_the_budget_end_the_benchmark_with_the_counts():
    with pytest.raises(GenerationError, match=r"3 of 4 requests failed \(server_error x3\)"):
        run(["ok", "server_error", "server_error", "server_error", "ok"], samples=3)


def test_without_a_hint_the_backoff_doubles():
    slept: list[float] = []
    errors = RequestErrors(0.5, sleep=slept.append)
    for n in (1, 2, 3):
        errors.attempts += 10  # well inside the budget
        errors.record(TransientError("x", kind="timeout"), consecutive=n)
    assert slept == [0.25, 0.5, 1.0]


# --- end to end through pytest --------------------------------------------------------------

BENCH = """
import pytest

@pytest.mark.llm_perf(runs=4, warmup=0, max_tokens=3)
def test_bench(llm_bench):
    llm_bench("hello")
"""


def test_a_rate_limited_request_is_counted_not_sampled(pytester, server):
    server.script = [
        Reply(tokens=3),
        Reply(status=429, headers={"retry-after": "0"}),
        Reply(tokens=3),
    ]
    pytester.makepyfile(BENCH)
    result = pytester.runpytest(f"--llm=openai:m@{server.url}", "--llm-json=r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*llmperf: request errors (counted, never sampled)*",
            "test_bench [[]openai:m[]]: 1 of 6 requests failed (rate_limit x1); "
            "1 retried sample(s) kept out of the statistics",
        ]
    )
    (res,) = json.loads(Path(pytester.path, "r.json").read_text())["results"]
    assert res["runs"] == 4
    assert len(res["generations"]) == 4
    assert res["errors"] == {
        "attempts": 6,
        "failed": 1,
        "by_kind": {"rate_limit": 1},
        "examples": {"rate_limit": res["errors"]["examples"]["rate_limit"]},
        "retried": 1,
    }
    assert "HTTP 429" in res["errors"]["examples"]["rate_limit"]
    assert len(res["retried_generations"]) == 1


def test_a_failing_server_errors_the_test_with_counts(pytester, server):
    server.script = [Reply(status=500, headers={"retry-after": "0"})]
    pytester.makepyfile(BENCH)
    result = pytester.runpytest(f"--llm=openai:m@{server.url}", "--llm-max-error-rate=0")
    result.assert_outcomes(errors=0, failed=1)
    result.stdout.fnmatch_lines(["*3 of 3 requests failed (server_error x3)*"])
    assert "Traceback" not in result.stdout.str()


def test_max_error_rate_is_validated(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--llm-max-error-rate=1.5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--llm-max-error-rate: invalid value '1.5'" in result.stderr.str()


def test_requests_reuse_one_connection_so_ttft_holds_no_handshake(server):
    # Stopping at [DONE] without reading the body's end would close the connection, and every
    # later TTFT would include a new TCP (and, for real APIs, TLS) handshake.
    server.script = [Reply(tokens=3, usage=True)]
    b = backend(server.url)
    for _ in range(5):
        generation = measure(b.stream(Request("hi", max_tokens=3)))
        assert generation.output_tokens == 3
    b.close()
    ports = {r["client_port"] for r in server.requests}
    assert len(server.requests) == 5
    assert len(ports) == 1, f"one keep-alive connection expected, saw client ports {ports}"


def test_a_chunk_holding_several_tokens_counts_them_all(server):
    # vLLM batches tokens into one event and says so in a running usage count: a chunk is not
    # a token, and ITL must be spread over the tokens it holds.
    server.script = [Reply(tokens=4, tokens_per_event=3, usage=False)]
    items = list(backend(server.url).stream(Request("hi", max_tokens=12)))
    chunks = [i for i in items if isinstance(i, Chunk)]
    assert [c.tokens for c in chunks] == [3, 3, 3, 3]
    generation = measure(backend(server.url).stream(Request("hi", max_tokens=12)))
    assert generation.output_tokens == 12
