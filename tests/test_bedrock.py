"""The bedrock backend with real boto3 against a loopback server speaking ConverseStream."""

from __future__ import annotations

import json
import os
import socket
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bedrock_server import BedrockServer, Script, running
from botocore.exceptions import ClientError

from pytest_llmperf.backends import Chunk, Request, Usage
from pytest_llmperf.backends.bedrock import BedrockBackend
from pytest_llmperf.errors import (
    BackendUnavailable,
    GenerationError,
    InvalidRequest,
    TransientError,
)
from pytest_llmperf.harness import measure
from pytest_llmperf.options import resolve_options
from pytest_llmperf.retry_after import MAX_RETRY_AFTER_S
from pytest_llmperf.spec import parse_spec

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"

Connect = Callable[..., BedrockBackend]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[BedrockServer]:
    with running() as srv:
        yield srv


@pytest.fixture
def srv(server: BedrockServer) -> BedrockServer:
    server.default = Script()
    server.scripts.clear()
    server.received.clear()
    return server


def dummy_aws(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    """Dummy keys and nothing else: no profile, region or endpoint from this machine."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            mp.delenv(name)
    mp.setenv("AWS_CONFIG_FILE", str(tmp / "no-config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-credentials"))
    mp.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dummy_aws(monkeypatch, tmp_path)


def loaded(spec_text: str) -> BedrockBackend:
    spec = parse_spec(spec_text)
    backend = BedrockBackend(spec, resolve_options(spec, BedrockBackend.options))
    backend.check()
    backend.load()
    return backend


@pytest.fixture(scope="module")
def shared(
    server: BedrockServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BedrockBackend]:
    """One loaded backend for the error tests: a client takes ~0.2 s to create."""
    with pytest.MonkeyPatch.context() as mp:
        dummy_aws(mp, tmp_path_factory.mktemp("aws"))
        backend = loaded(f"bedrock:{MODEL}?endpoint_url={server.url}&region=us-east-1")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def impatient(
    server: BedrockServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BedrockBackend]:
    with pytest.MonkeyPatch.context() as mp:
        dummy_aws(mp, tmp_path_factory.mktemp("aws"))
        backend = loaded(f"bedrock:{MODEL}?endpoint_url={server.url}&region=us-east-1&timeout=0.3")
    yield backend
    backend.close()


@pytest.fixture
def connect(srv: BedrockServer) -> Iterator[Connect]:
    """Checked and loaded backends for a spec; ``{url}`` in it is the server's URL."""
    made: list[BedrockBackend] = []

    def make(query: str = "?endpoint_url={url}&region=us-east-1") -> BedrockBackend:
        backend = loaded(f"bedrock:{MODEL}{query.format(url=srv.url)}")
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def test_streams_the_servers_tokens_then_its_usage(srv: BedrockServer, connect: Connect) -> None:
    srv.default = Script(
        tokens=("Hel", "lo", " there"), input_tokens=11, output_tokens=5, latency_ms=321
    )
    b = connect()
    items = list(b.stream(Request("Hi", max_tokens=16)))
    assert items == [
        Chunk("Hel", 1),
        Chunk("lo", 1),
        Chunk(" there", 1),
        Usage(11, "usage", output_tokens=5, server_latency_s=0.321),
    ]
    assert (b.last_server_latency_ms, b.last_stop_reason) == (321, "end_turn")
    g = measure(b.stream(Request("Hi", max_tokens=16)))
    # The server's usage wins over the chunk count.
    assert (g.text, g.prompt_tokens, g.output_tokens) == ("Hello there", 11, 5)
    assert (g.token_source, g.chunks) == ("usage", 3)
    assert g.server_latency_s == 0.321


def test_without_metadata_tokens_are_counted_per_delta(
    srv: BedrockServer, connect: Connect
) -> None:
    srv.default = Script(tokens=("a", "b"), metadata=False, stop_reason="max_tokens")
    b = connect()
    g = measure(b.stream(Request("Hi", max_tokens=2)))
    assert (g.output_tokens, g.token_source, g.prompt_tokens) == (2, "chunks", None)
    assert g.server_latency_s is None
    assert (b.last_server_latency_ms, b.last_stop_reason) == (None, "max_tokens")


def test_harness_timing_follows_the_servers_pacing(srv: BedrockServer, connect: Connect) -> None:
    first, gap = 0.15, 0.05
    b = connect()
    srv.queue(Script(tokens=tuple("abcde"), first_delay_s=first, delay_s=gap))
    paced = measure(b.stream(Request("Hi", max_tokens=5)))
    srv.queue(Script(tokens=tuple("abcde")))
    unpaced = measure(b.stream(Request("Hi", max_tokens=5)))
    assert paced.ttft_s is not None and paced.ttft_s >= first
    assert len(paced.itl_s) == 4
    # Each gap is the server's pause, give or take when the client got to read each frame: a
    # frame read late shortens the gap after it, so bound the median and the sum, loosely.
    assert statistics.median(paced.itl_s) >= gap / 2
    assert sum(paced.itl_s) >= 3 * gap
    assert paced.e2e_s >= first + 4 * gap - 0.02
    assert sum(paced.itl_s) > sum(unpaced.itl_s)


def test_the_request_the_server_receives(srv: BedrockServer, connect: Connect) -> None:
    b = connect("?endpoint_url={url}&region=us-east-1&latency=optimized")
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    extra = {"additionalModelRequestFields": {"top_k": 5}}
    list(b.stream(Request(chat, max_tokens=12, temperature=0.3, options=extra)))
    list(b.stream(Request("Plain", max_tokens=3)))
    chat_request, plain_request = srv.received
    assert chat_request.path == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
    assert chat_request.model_id == MODEL
    assert chat_request.body == {
        "messages": [
            {"role": "user", "content": [{"text": "Hi"}]},
            {"role": "assistant", "content": [{"text": "Hello."}]},
            {"role": "user", "content": [{"text": "Bye"}]},
        ],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 12, "temperature": 0.3},
        "performanceConfig": {"latency": "optimized"},
        "additionalModelRequestFields": {"top_k": 5},
    }
    assert plain_request.body["messages"] == [{"role": "user", "content": [{"text": "Plain"}]}]
    assert plain_request.body["inferenceConfig"] == {"maxTokens": 3, "temperature": 0.0}
    assert "system" not in plain_request.body
    # Real SigV4 signing, scoped to the region and the service's signing name.
    auth = chat_request.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/bedrock/aws4_request" in auth


def test_the_connection_is_kept_between_generations(srv: BedrockServer, connect: Connect) -> None:
    b = connect()
    for _ in range(3):
        list(b.stream(Request("Hi", max_tokens=4)))
    # A fresh TCP connect per request would land inside every TTFT sample.
    assert len({r.client_port for r in srv.received}) == 1


@pytest.mark.parametrize("how", ["env", "at_url"])
def test_other_ways_to_name_the_endpoint(
    srv: BedrockServer, connect: Connect, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "env":
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", srv.url)
        b = connect("?region=us-west-2")
    else:
        b = connect("@{url}?region=us-west-2")
    items = list(b.stream(Request("Hi", max_tokens=4)))
    assert [i.text for i in items if isinstance(i, Chunk)] == ["Hello", ",", " world", "!"]
    assert [r.model_id for r in srv.received] == [MODEL]
    assert "/us-west-2/bedrock/" in srv.received[0].headers["authorization"]
    assert (b.info()["endpoint_url"], b.info()["region"]) == (srv.url, "us-west-2")


def test_aws_region_counts_when_boto3_has_no_region(
    srv: BedrockServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    b = connect("?endpoint_url={url}")
    list(b.stream(Request("Hi", max_tokens=4)))
    assert b.info()["region"] == "eu-central-1"
    assert "/eu-central-1/bedrock/" in srv.received[0].headers["authorization"]


def raised(backend: BedrockBackend, request: Request) -> tuple[list[str], GenerationError]:
    """The texts that came before the stream failed, and the error."""
    texts: list[str] = []

    def consume() -> None:
        for item in backend.stream(request):
            if isinstance(item, Chunk):
                texts.append(item.text)

    with pytest.raises(GenerationError) as info:
        consume()
    return texts, info.value


@pytest.mark.parametrize(
    ("script", "kind", "retry_after"),
    [
        (Script(status=429, error_type="ThrottlingException", retry_after="3"), "rate_limit", 3.0),
        (Script(status=429, error_type="ModelNotReadyException"), "server_error", None),
        (Script(status=500, error_type="InternalServerException"), "server_error", None),
        (Script(status=503, error_type="ServiceUnavailableException"), "server_error", None),
        (Script(status=502), "server_error", None),
        (Script(status=408, error_type="ModelTimeoutException"), "timeout", None),
    ],
    ids=["429", "not-ready", "500", "503", "502-bare", "408"],
)
def test_http_errors_are_transient_and_never_retried_inside_a_sample(
    srv: BedrockServer,
    shared: BedrockBackend,
    script: Script,
    kind: str,
    retry_after: float | None,
) -> None:
    b = shared
    srv.queue(script)
    texts, error = raised(b, Request("Hi", max_tokens=4))
    assert isinstance(error, TransientError)
    assert (error.kind, error.retry_after, texts) == (kind, retry_after, [])
    assert "scripted failure" in str(error)
    assert isinstance(error.__cause__, ClientError)
    assert len(srv.received) == 1  # botocore's own retries are off
    # The next attempt is an ordinary sample again.
    assert measure(b.stream(Request("Hi", max_tokens=4))).output_tokens == 4


@pytest.mark.parametrize(
    ("script", "cls", "match"),
    [
        (
            Script(status=403, error_type="AccessDeniedException", message="not authorized"),
            GenerationError,
            "refused the credentials: AccessDeniedException: not authorized",
        ),
        (
            Script(status=403, error_type="UnrecognizedClientException", message="bad token"),
            GenerationError,
            "refused the credentials: UnrecognizedClientException: bad token",
        ),
        (
            Script(status=404, error_type="ResourceNotFoundException", message="Model not found"),
            GenerationError,
            f"has no model '{MODEL}': ResourceNotFoundException: Model not found",
        ),
        (
            Script(status=400, error_type="ValidationException", message="maxTokens too big"),
            InvalidRequest,
            "rejected the request: ValidationException: maxTokens too big",
        ),
    ],
    ids=["403", "401-like", "404", "400"],
)
def test_lasting_errors_are_not_transient(
    srv: BedrockServer, shared: BedrockBackend, script: Script, cls: type, match: str
) -> None:
    b = shared
    srv.queue(script)
    _, error = raised(b, Request("Hi", max_tokens=4))
    assert type(error) is cls
    assert match in str(error)
    assert isinstance(error.__cause__, ClientError)


@pytest.mark.parametrize(
    ("script", "kind", "match"),
    [
        (
            Script(exception_after=2, exception_type="throttlingException"),
            "rate_limit",
            "throttled the request after 2 chunks: throttlingException: scripted failure",
        ),
        (
            Script(exception_after=2, exception_type="modelStreamErrorException"),
            "stream_cut",
            "broke off the stream after 2 chunks: modelStreamErrorException: scripted failure",
        ),
        (
            Script(exception_after=1, exception_type="internalServerException"),
            "stream_cut",
            "broke off the stream after 1 chunk: internalServerException",
        ),
        (Script(cut_after=2), "stream_cut", "cut the stream after 2 chunks"),
        (Script(end_after=2), "stream_cut", "without messageStop after 2 chunks"),
    ],
    ids=["throttled-frame", "model-stream-error-frame", "server-error-frame", "cut", "ended"],
)
def test_a_stream_broken_mid_way(
    srv: BedrockServer, shared: BedrockBackend, script: Script, kind: str, match: str
) -> None:
    b = shared
    srv.queue(script)
    texts, error = raised(b, Request("Hi", max_tokens=4))
    assert isinstance(error, TransientError)
    assert error.kind == kind
    assert match in str(error)
    assert texts == ["Hello", ","][: int(match.split(" after ")[1][0])]
    assert measure(b.stream(Request("Hi", max_tokens=4))).output_tokens == 4


def test_a_validation_frame_mid_stream_is_an_invalid_request(
    srv: BedrockServer, shared: BedrockBackend
) -> None:
    b = shared
    srv.queue(Script(exception_after=0, exception_type="validationException", message="no"))
    texts, error = raised(b, Request("Hi", max_tokens=4))
    assert type(error) is InvalidRequest and texts == []
    assert "validationException: no" in str(error)


def test_a_corrupt_frame_is_not_retried_as_transient(
    srv: BedrockServer, shared: BedrockBackend
) -> None:
    srv.queue(Script(corrupt_after=1))
    texts, error = raised(shared, Request("Hi", max_tokens=4))
    assert type(error) is GenerationError and texts == ["Hello"]
    assert "corrupt event stream" in str(error) and "after 1 chunk:" in str(error)


@pytest.mark.parametrize(
    ("script", "after"),
    [(Script(hang_after=1), " after 1 chunk"), (Script(headers_delay_s=5), "")],
    ids=["mid-stream", "before-headers"],
)
def test_a_silent_server_times_out(
    srv: BedrockServer, impatient: BedrockBackend, script: Script, after: str
) -> None:
    b = impatient
    srv.queue(script)
    texts, error = raised(b, Request("Hi", max_tokens=4))
    assert isinstance(error, TransientError) and error.kind == "timeout"
    assert str(error).endswith(f"sent nothing for 0.3 s{after}")
    assert texts == (["Hello"] if after else [])
    assert len(srv.received) == 1


def test_an_unreachable_endpoint_is_a_connection_error(connect: Connect) -> None:
    b = connect(f"?endpoint_url=http://127.0.0.1:{free_port()}&region=us-east-1")
    _, error = raised(b, Request("Hi", max_tokens=4))
    assert isinstance(error, TransientError) and error.kind == "connection"
    assert "Could not connect to the endpoint URL" in str(error)


def test_bad_requests_are_refused_before_any_request(
    srv: BedrockServer, shared: BedrockBackend
) -> None:
    b = shared
    with pytest.raises(InvalidRequest, match="not 'tool'"):
        list(b.stream(Request([{"role": "tool", "content": "x"}])))
    with pytest.raises(InvalidRequest, match="max_tokens must be >= 1"):
        list(b.stream(Request("Hi", max_tokens=0)))
    # Checked against ConverseStream's own fields before botocore sees them.
    with pytest.raises(InvalidRequest, match="unknown generation option 'topK' for bedrock"):
        list(b.stream(Request("Hi", options={"topK": 5})))
    # botocore still validates what passes: a known field with a wrong shape.
    with pytest.raises(InvalidRequest, match="Invalid type for parameter requestMetadata"):
        list(b.stream(Request("Hi", options={"requestMetadata": 5})))
    assert srv.received == []


def test_missing_credentials_fail_the_check_without_probing_instance_metadata(
    srv: BedrockServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    # Were the metadata service asked, it would be asked here.
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.url)
    with pytest.raises(BackendUnavailable, match="no AWS credentials found: set AWS_ACCESS_KEY_ID"):
        connect()
    assert srv.received == []
    assert "AWS_EC2_METADATA_DISABLED" not in os.environ


def test_missing_region_fails_the_check(connect: Connect) -> None:
    with pytest.raises(BackendUnavailable, match=r"no AWS region.*\?region=us-east-1"):
        connect("?endpoint_url={url}")


def test_two_endpoints_fail_the_check(connect: Connect) -> None:
    with pytest.raises(BackendUnavailable, match="two endpoints given"):
        connect("@{url}?endpoint_url=http://127.0.0.1:1&region=us-east-1")


def test_an_unknown_profile_fails_the_check(connect: Connect) -> None:
    with pytest.raises(BackendUnavailable, match=r"profile \(nope\) could not be found"):
        connect("?region=us-east-1&profile=nope")


def test_a_benchmark_through_pytest(pytester: pytest.Pytester, srv: BedrockServer) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm_perf(runs=3, warmup=1, max_tokens=4)
        def test_bench(llm_bench):
            llm_bench("Hello there")
        """
    )
    srv.default = Script(input_tokens=9)
    # The first timed run is throttled once: counted, retried, and kept out of the samples.
    srv.queue(Script(), Script(status=429, error_type="ThrottlingException", retry_after="0"))
    result = pytester.runpytest(
        f"--llm=bedrock:{MODEL}?endpoint_url={srv.url}&region=us-east-1", "--llm-json=o.json"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_bench*bedrock:anthropic.claude-3-h* 3 *"])
    doc = json.loads(Path(pytester.path, "o.json").read_text())
    assert [(b["kind"], b["library"]) for b in doc["backends"]] == [("bedrock", "boto3")]
    (res,) = doc["results"]
    assert {g["token_source"] for g in res["generations"]} == {"usage"}
    assert [(g["prompt_tokens"], g["output_tokens"]) for g in res["generations"]] == [(9, 4)] * 3
    errors = res["errors"]
    assert (errors["by_kind"], errors["retried"]) == ({"rate_limit": 1}, 1)
    assert "throttled the request: ThrottlingException" in errors["examples"]["rate_limit"]
    # One warm-up, three samples, the throttled attempt and the retry that followed it.
    assert len(srv.received) == 6


@pytest.mark.parametrize(
    ("header", "retry_after"),
    [("nan", None), ("-5", None), ("inf", None), ("1e9", MAX_RETRY_AFTER_S), ("0.5", 0.5)],
)
def test_a_retry_after_that_is_no_delay_is_ignored_and_a_huge_one_capped(
    srv: BedrockServer, shared: BedrockBackend, header: str, retry_after: float | None
) -> None:
    srv.queue(Script(status=429, error_type="ThrottlingException", retry_after=header))
    _, error = raised(shared, Request("Hi", max_tokens=4))
    assert isinstance(error, TransientError)
    assert (error.kind, error.retry_after) == ("rate_limit", retry_after)


@pytest.mark.parametrize("output_tokens", [-5, 10**12])
def test_a_usage_count_that_cannot_be_true_is_refused(
    srv: BedrockServer, shared: BedrockBackend, output_tokens: int
) -> None:
    srv.queue(Script(output_tokens=output_tokens))
    with pytest.raises(GenerationError, match=r"Bedrock .*outputTokens") as info:
        measure(shared.stream(Request("Hi", max_tokens=4)))
    assert not isinstance(info.value, TransientError)
