"""One model, three engines: the embedded Gemma 3 270M on llamacpp, hf and openai, side by side.

    python benchmarks/backends.py [--runs 5] [--skip hf] [--overhead-requests 300]

1. Starts ``llama_cpp.server`` on 127.0.0.1 (a free port) serving the embedded GGUF, then runs
   ``suites/latency`` once with ``--llm=llamacpp:gemma3-270m --llm=hf:gemma3-270m
   --llm=openai:gemma3@URL`` in this process and prints a table in the spirit of the GPTStonks
   one: seconds per token, TTFT, decode tokens/s and load time per backend (medians over runs).
2. The openai backend's client-side overhead per request: against a loopback server that answers
   instantly with a canned 16-token stream, it alternates the backend (timed by the harness) and a
   bare ``httpx`` streaming loop over the same bytes, and prints both medians and the difference
   (target < 1 ms).

Nothing here asserts: the figures are for people to read.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def llama_server(model: Path) -> Iterator[str]:
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    port = free_port()
    app = create_app(
        server_settings=ServerSettings(host="127.0.0.1", port=port),
        model_settings=[
            # The server's default is half the cores; give it what llamacpp in-process gets.
            ModelSettings(model=str(model), model_alias="gemma3", n_threads=2, verbose=False)
        ],
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("llama_cpp.server did not start within 60 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


def engines_table(runs: int, skip: set[str]) -> None:
    from pytest_llmperf.models import embedded_model_path

    model = embedded_model_path()
    with llama_server(model) as url, tempfile.TemporaryDirectory() as tmp:
        specs = {
            "llamacpp": "llamacpp:gemma3-270m",
            "hf": "hf:gemma3-270m",
            # completions: the same raw prompt as the in-process engines, no chat template
            "openai": f"openai:gemma3@{url}?api=completions",
        }
        out = Path(tmp, "r.json")
        args = [f"--llm={s}" for k, s in specs.items() if k not in skip]
        code = pytest.main(
            [
                str(ROOT / "suites" / "latency"),
                *args,
                f"--llm-runs={runs}",
                "--llm-warmup=1",
                "--llm-no-compare",
                f"--llm-json={out}",
                "-q",
                "-p",
                "no:cacheprovider",
            ]
        )
        if code != 0:
            raise SystemExit(f"the suite run failed (pytest exit {code})")
        doc = json.loads(out.read_text())
    loads = {b["id"]: b["load_s"] for b in doc["backends"]}
    print(f"\n## The embedded Gemma 3 270M Q4_K_M on three engines ({runs} runs, medians)\n")
    print("| test | backend | s/token | TTFT ms | decode tok/s | tokens | load s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in sorted(doc["results"], key=lambda r: (r["nodeid"].split("[")[0], r["backend"])):
        st = r["stats"]

        def med(metric: str, scale: float = 1.0, fmt: str = "{:.1f}", st: dict = st) -> str:
            value = st.get(metric, {}).get("median")
            return "-" if value is None else fmt.format(value * scale)

        test = r["nodeid"].split("::")[-1].split("[")[0]
        print(
            f"| {test} | {r['backend_id']} | {med('sec_per_token', fmt='{:.4f}')} | "
            f"{med('ttft_s', 1e3)} | {med('decode_tps')} | {med('output_tokens', fmt='{:.0f}')} "
            f"| {loads.get(r['backend_id'], float('nan')):.2f} |"
        )


# --- client-side overhead ------------------------------------------------------------------


def instant_sse(tokens: int) -> bytes:
    events = []
    for i in range(tokens):
        delta = {"index": 0, "delta": {"content": f"t{i} "}}
        event = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        events.append(f"data: {json.dumps(event | {'choices': [delta]})}\n\n")
    body = ("".join(events) + "data: [DONE]\n\n").encode()
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


@contextmanager
def instant_server(tokens: int) -> Iterator[str]:
    """Answers GET /v1/models and every POST at once, keep-alive, from a pre-built response."""
    import asyncio

    canned = instant_sse(tokens)
    models = b'{"object":"list","data":[{"id":"m","object":"model"}]}'
    models_reply = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(models)}\r\n\r\n".encode()
        + models
    )
    port = free_port()
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                writer.write(models_reply if head.startswith(b"GET") else canned)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def serve() -> None:
        loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", port))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def client_overhead(requests: int, tokens: int = 16) -> None:
    import openai

    from pytest_llmperf.backends import Request
    from pytest_llmperf.backends.openai import OpenAIBackend
    from pytest_llmperf.harness import measure
    from pytest_llmperf.options import resolve_options
    from pytest_llmperf.spec import parse_spec

    # openai 3.x is built on httpx2, 1.x/2.x on httpx: compare with the one it really uses.
    base = openai._base_client
    httpx = getattr(base, "httpx2", None) or getattr(base, "httpx")  # noqa: B009
    with instant_server(tokens) as url:
        spec = parse_spec(f"openai:m@{url}")
        backend = OpenAIBackend(spec, resolve_options(spec, OpenAIBackend.options))
        backend.check()
        backend.load()
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": tokens,
            "stream": True,
        }
        client = httpx.Client(timeout=10)

        def bare() -> float:
            t0 = time.perf_counter_ns()
            with client.stream("POST", f"{url}/chat/completions", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        json.loads(line[6:])
            return (time.perf_counter_ns() - t0) / 1e6

        def plugin() -> float:
            g = measure(backend.stream(Request("hi", max_tokens=tokens)))
            if g.output_tokens != tokens:
                raise SystemExit(f"expected {tokens} tokens, got {g.output_tokens}")
            return g.e2e_s * 1e3

        for _ in range(20):  # warm both connections and code paths
            bare(), plugin()
        a: list[float] = []
        b: list[float] = []
        for i in range(requests):
            first, second = (plugin, bare) if i % 2 == 0 else (bare, plugin)
            x, y = first(), second()
            (a if first is plugin else b).append(x)
            (b if first is plugin else a).append(y)
        backend.close()
        client.close()
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"\n## openai backend client-side overhead ({requests} requests each, {tokens} tokens)\n")
    print("| path | median ms/request | p90 ms |")
    print("| --- | ---: | ---: |")
    print(f"| plugin (openai SDK + backend + harness) | {ma:.3f} | {_p90(a):.3f} |")
    print(f"| bare httpx streaming loop | {mb:.3f} | {_p90(b):.3f} |")
    print(f"\noverhead per request: {ma - mb:+.3f} ms (target < 1 ms)")


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per benchmark")
    parser.add_argument("--skip", action="append", default=[], help="llamacpp, hf or openai")
    parser.add_argument("--overhead-requests", type=int, default=300)
    parser.add_argument("--only-overhead", action="store_true")
    ns = parser.parse_args()
    if not ns.only_overhead:
        engines_table(ns.runs, set(ns.skip))
    client_overhead(ns.overhead_requests)


if __name__ == "__main__":
    main()
