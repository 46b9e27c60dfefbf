"""Secrets never reach anything the plugin writes or prints.

Fake credentials (random per run, shaped like the real ones) are set in the environment and
really used: an OpenAI-compatible backend and the judge send the key as ``Authorization:
Bearer`` to a loopback server, Bedrock signs its requests with the AWS keys (the session token
travels as a header). Two servers echo the credentials back in their error messages, the way a
proxy or a misconfigured gateway does. One session writes every output (JSON, HTML, Markdown,
pytest-benchmark JSON, history, baselines); then every file under the test directory and the
terminal output are searched for each secret.
"""

from __future__ import annotations

import json
import secrets
import string
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from bedrock_server import BedrockServer, Script, running
from scripted_openai import Reply, ScriptedServer
from test_judge import _openai_stack_loaded  # noqa: F401  (module fixture: loads openai once)

from pytest_llmperf.backends.bedrock import BedrockBackend
from pytest_llmperf.backends.openai import OpenAIBackend
from pytest_llmperf.errors import BackendUnavailable, GenerationError
from pytest_llmperf.options import resolve_options
from pytest_llmperf.redact import MASK, redact, redact_text
from pytest_llmperf.spec import parse_spec

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    creds = {
        "OPENAI_API_KEY": "sk-proj-" + _random(string.ascii_letters + string.digits, 40),
        "AWS_ACCESS_KEY_ID": "AKIA" + _random(string.ascii_uppercase + string.digits, 16),
        "AWS_SECRET_ACCESS_KEY": _random(string.ascii_letters + string.digits + "/+", 40),
        "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2Vj" + _random(string.ascii_letters + string.digits, 60),
    }
    for name in [n for n in __import__("os").environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in creds.items():
        monkeypatch.setenv(name, value)
    # Nothing from this machine's AWS setup; never probe the instance metadata service.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return creds


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers everything 401 and quotes the request's Authorization header back."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        echoed = self.headers.get("Authorization", "")
        self.server.received.append(echoed)  # type: ignore[attr-defined]
        key = echoed.removeprefix("Bearer ")
        message = (
            f"Incorrect API key provided: {key}. Request headers: {{'Authorization': '{echoed}'}}"
        )
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}})
        data = body.encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer


@pytest.fixture
def echo_server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    httpd.daemon_threads = True
    httpd.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def openai_server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        # The same answer serves the judge (a valid verdict) and the backend under test.
        s.script = [Reply(text=json.dumps({"rating": 7, "reason": "fine"}))]
        yield s


@pytest.fixture
def bedrock() -> Iterator[BedrockServer]:
    with running() as srv:
        yield srv


TESTS = """
import os
import pytest

@pytest.mark.llm_perf(max_tokens=4, warmup=0, runs=3)
def test_speed(llm_bench, llm_judge):
    result = llm_bench("hello")
    llm_judge("hello", result.generations[0].text)

def test_key_in_a_message():
    # A test that prints a credential itself is the user's own doing; the plugin's outputs
    # must not copy it from the command line or the environment either way.
    assert os.environ["OPENAI_API_KEY"]
"""


def _all_text(root: Path) -> dict[Path, str]:
    return {
        path: path.read_bytes().decode("utf-8", errors="replace")
        for path in root.rglob("*")
        if path.is_file()
    }


def test_no_secret_reaches_any_output(
    fake, fake_credentials, echo_server, openai_server, bedrock, monkeypatch
):
    echo_url = f"http://127.0.0.1:{echo_server.server_address[1]}/v1"
    bedrock.default = Script()
    # A lasting (not transient) error that quotes the signed request's credentials.
    creds = fake_credentials
    bedrock.scripts.append(
        Script(
            status=403,
            error_type="AccessDeniedException",
            message=(
                "User is not authorized. Authorization: AWS4-HMAC-SHA256 Credential="
                f"{creds['AWS_ACCESS_KEY_ID']}/20261122/us-east-1/bedrock/aws4_request; "
                f"X-Amz-Security-Token: {creds['AWS_SESSION_TOKEN']}; "
                f"secret {creds['AWS_SECRET_ACCESS_KEY']}"
            ),
        )
    )
    fake.makepyfile(test_outputs=TESTS)
    bedrock_spec = f"bedrock:{MODEL}?endpoint_url={bedrock.url}&region=us-east-1"
    # A password in a base URL, on the command line only (not in the environment).
    password = _random(string.ascii_letters + string.digits, 24)
    creds = {**creds, "URL password": password}
    with_password = openai_server.url.replace("http://", f"http://llmuser:{password}@")
    args = [
        "--llm=fake:m",
        f"--llm=openai:m@{with_password}",
        f"--llm=openai:m@{echo_url}",
        f"--llm={bedrock_spec}",
        f"--llm-judge=openai:judge@{openai_server.url}",
        "--llm-baseline-dir=baselines",
        "-p",
        "no:cacheprovider",
        "-rA",
        "-l",  # local variables in tracebacks: the harshest place for a key to turn up
    ]
    outputs = [
        "--llm-json=out/results.json",
        "--llm-html=out/report.html",
        "--llm-markdown=out/summary.md",
        "--llm-benchmark-json=out/benchmark.json",
        "--llm-history=out/history",
    ]
    # In-process runs record this process's argv as the command line: make it theirs.
    monkeypatch.setattr("sys.argv", ["pytest", *args, "--llm-save-baseline", *outputs])
    saved = fake.runpytest(*args, "--llm-save-baseline", *outputs)
    monkeypatch.setattr("sys.argv", ["pytest", *args, *outputs])
    compared = fake.runpytest(*args, *outputs)
    terminal = saved.stdout.str() + saved.stderr.str() + compared.stdout.str()
    terminal += compared.stderr.str()

    # The credentials really were used, and the failures really happened.
    assert echo_server.received[0] == f"Bearer {creds['OPENAI_API_KEY']}"
    # 3 timed runs per session, the verdict once (then from the judge cache, also searched)
    assert len(openai_server.requests) >= 2 * 3 + 1
    signed = [r.headers.get("authorization", "") for r in bedrock.received]
    assert any(f"Credential={creds['AWS_ACCESS_KEY_ID']}/" in h for h in signed)
    assert any(
        r.headers.get("x-amz-security-token") == creds["AWS_SESSION_TOKEN"]
        for r in bedrock.received
    )
    doc = json.loads((fake.path / "out/results.json").read_text())
    assert "--llm=openai:m@http://llmuser:***@127.0.0.1:" in " ".join(doc["command"])
    assert any(echo_url in spec for spec in doc["backend_errors"]), doc["backend_errors"]
    assert "Incorrect API key" in json.dumps(doc["backend_errors"])
    written = _all_text(fake.path)
    kinds = {p.relative_to(fake.path).parts[0] for p in written}
    assert {"out", "baselines", ".llmperf"} <= kinds  # .llmperf: the judge cache
    assert list((fake.path / "out/history").glob("*.json"))
    assert list((fake.path / "baselines").glob("*.json"))

    leaks = [
        f"{name} in {path.relative_to(fake.path)}"
        for name, value in creds.items()
        for path, text in written.items()
        if value in text
    ]
    leaks += [f"{name} in the terminal output" for name, v in creds.items() if v in terminal]
    assert leaks == []


def test_metric_names_are_not_mistaken_for_secrets_but_token_names_are():
    doc = {
        "stats": {"sec_per_token": {"median": 0.02}},
        "tolerances": {"sec_per_token": 0.05},
        "github_token": "ghp_abcdefgh",
        "auth_token": "x",
        "max_tokens": 64,
    }
    assert redact(doc, secrets=[]) == {
        "stats": {"sec_per_token": {"median": 0.02}},
        "tolerances": {"sec_per_token": 0.05},
        "github_token": MASK,
        "auth_token": MASK,
        "max_tokens": 64,
    }


def test_keys_are_scrubbed_too():
    # Baselines are keyed by test id, and a test id can carry a spec with a URL password.
    doc = {"t.py::test[openai:m@http://u:hunter2hunter2@h/v1]": {"n": 1}}
    assert redact(doc, secrets=[]) == {"t.py::test[openai:m@http://u:***@h/v1]": {"n": 1}}


def test_error_messages_are_redacted_when_shown(monkeypatch):
    key = "sk-" + _random(string.ascii_letters, 32)
    monkeypatch.setenv("SOME_API_KEY", key)
    error = GenerationError(f"server said: bad key {key}; Authorization: Bearer {key}")
    assert str(error) == "server said: bad key ***; Authorization: Bearer ***"
    assert key in error.args[0]  # the original stays available to code that handles it


def test_the_aws_access_key_id_is_masked_whatever_its_shape(monkeypatch):
    key_id = "AKID" + _random(string.ascii_uppercase, 12)  # not the AKIA... shape
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    assert redact({"message": f"Credential={key_id}/20261122"}) == {
        "message": "Credential=***/20261122"
    }


def test_a_key_in_the_variable_a_spec_names_is_masked_whatever_its_name(monkeypatch, echo_server):
    # Neither the variable's name nor the key's shape says "secret": only the spec says so.
    key = "corp" + _random(string.ascii_lowercase + string.digits, 28)
    monkeypatch.setenv("MYCORP_LLM_KEY", key)
    url = f"http://127.0.0.1:{echo_server.server_address[1]}/v1"
    spec = parse_spec(f"openai:m@{url}?api_key_env=MYCORP_LLM_KEY")
    backend = OpenAIBackend(spec, resolve_options(spec, OpenAIBackend.options))
    with pytest.raises(BackendUnavailable, match="refused the API key") as info:
        backend.load()
    assert echo_server.received == [f"Bearer {key}"]  # the key really went out, and came back
    assert key not in str(info.value)
    assert f"Incorrect API key provided: {MASK}" in str(info.value)
    assert key not in json.dumps(redact({"error": f"echoed {key}"}))


def test_the_credentials_of_a_profile_in_the_aws_config_file_are_masked(monkeypatch, tmp_path):
    secret = _random(string.ascii_letters + string.digits, 40)
    config = tmp_path / "config"
    config.write_text(
        f"[profile corp]\nregion = us-east-1\naws_access_key_id = AKIDCORP{_random('XYZ', 8)}\n"
        f"aws_secret_access_key = {secret}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    spec = parse_spec("bedrock:m?profile=corp")
    BedrockBackend(spec, resolve_options(spec, BedrockBackend.options))
    assert redact_text(f"the server said {secret}") == f"the server said {MASK}"
