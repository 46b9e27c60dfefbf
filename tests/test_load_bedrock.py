"""``llm_load`` on Bedrock: ConverseStream in a bounded thread pool, against the loopback
event-stream server (tests/bedrock_server.py)."""

import logging
from collections import Counter

import pytest
from bedrock_server import Script, running

from pytest_llmperf._loadgen import LoadPoint, run_load
from pytest_llmperf.backends import Request
from pytest_llmperf.backends.bedrock import BedrockBackend
from pytest_llmperf.options import resolve_options
from pytest_llmperf.spec import parse_spec

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture
def aws(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_concurrent_converse_streams_with_throttling_counted(aws):
    with running() as srv:
        srv.default = Script(first_delay_s=0.05, delay_s=0.005, output_tokens=4)
        srv.scripts.extend(
            Script(status=429, error_type="ThrottlingException", retry_after="0") for _ in range(3)
        )
        spec = parse_spec(f"bedrock:{MODEL}?endpoint_url={srv.url}&region=us-east-1&timeout=10")
        backend = BedrockBackend(spec, resolve_options(spec, BedrockBackend.options))
        backend.check()
        backend.load()
        try:
            run = run_load(backend.open_async, [Request("hi", 8)], LoadPoint(3, None, 12, None))
        finally:
            backend.close()
        peak_ports = len({r.client_port for r in srv.received})
    assert Counter(r.error for r in run.records) == {"rate_limit": 3, None: 9}
    ok = [r.generation for r in run.records if r.generation is not None]
    assert all(g.output_tokens == 4 and g.token_source == "usage" for g in ok)
    assert all(g.ttft_s is not None and g.ttft_s >= 0.05 for g in ok)
    # Three threads, three connections at most: the pool bounds the concurrency.
    assert 1 < peak_ports <= 3


def test_the_connection_pool_is_sized_to_the_load(aws, caplog):
    # botocore pools 10 connections by default; 16 threads would open more and discard them.
    caplog.set_level(logging.WARNING, logger="urllib3")
    with running() as srv:
        srv.default = Script(first_delay_s=0.02, delay_s=0.002, output_tokens=12)
        spec = parse_spec(f"bedrock:{MODEL}?endpoint_url={srv.url}&region=us-east-1&timeout=10")
        backend = BedrockBackend(spec, resolve_options(spec, BedrockBackend.options))
        backend.check()
        backend.load()
        try:
            run = run_load(backend.open_async, [Request("hi", 16)], LoadPoint(16, None, 64, None))
        finally:
            backend.close()
        ports = {r.client_port for r in srv.received}
    assert [r.error for r in run.records] == [None] * 64
    assert len(ports) <= 16
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
    # 4 text deltas, 12 tokens by the final usage: the windows count 12 per request.
    assert all(sum(k for _, k in r.token_events) == 12 for r in run.records)
    assert all(r.generation.output_tokens == 12 for r in run.records)
