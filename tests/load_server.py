"""A loopback OpenAI-compatible chat server on stdlib asyncio streams, for load tests.

Real HTTP/1.1 (keep-alive, chunked transfer) and real server-sent events, so the openai SDK's
async client runs unmodified. Each request says how it wants to be answered: when the last
message's content is a JSON object, its keys set the reply (anything else gets the defaults):

    {"ttft": 0.3, "gap": 0.01, "tokens": 8, "per_chunk": 2, "running": false, "status": 429}

- ``ttft``: seconds before the first content chunk; ``gap``: seconds between chunks;
- ``tokens``: output tokens (capped by ``max_tokens``); ``per_chunk``: tokens per SSE chunk
  (each chunk then carries a running ``usage.completion_tokens``, like vLLM's continuous usage
  stats, so the client can count them, unless ``running`` is false: then only the final usage
  says how many tokens there were);
- ``status``: answer this HTTP status with a JSON error instead (``retry-after: 0``).

``tokens: 0`` answers with no content at all (a model that stopped at once), finishing with
``finish_reason: "stop"``. A prefix-cache nonce (``[0123456789] ``, see
``pytest_llmperf.prefix_cache``) in front of the directive is skipped when reading it.

``serve()`` runs it in a thread of this process; ``python tests/load_server.py`` runs it alone
and prints its base URL (for benchmarks, so the server does not share the client's GIL).
The server records arrival times (``perf_counter_ns``), request bodies, statuses and the peak
number of requests it held at once.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NONCE", "LoadServer", "directive", "serve"]

#: A prefix-cache nonce at the start of a prompt (``prefix_cache="bust"``).
NONCE = re.compile(r"^\[\d{10}\] ")


def directive(**reply: Any) -> str:
    """The prompt that asks the server for this reply."""
    return json.dumps(reply, sort_keys=True)


@dataclass
class LoadServer:
    url: str = ""
    arrivals_ns: list[int] = field(default_factory=list)
    #: Every completion request's JSON body, in arrival order.
    bodies: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0


def _reply_for(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or [{"content": body.get("prompt", "")}]
    content = messages[-1].get("content", "")
    if isinstance(content, str):
        content = NONCE.sub("", content)
    try:
        reply = json.loads(content)
    except (TypeError, ValueError):
        reply = {}
    if not isinstance(reply, dict):
        reply = {}
    reply.setdefault("tokens", 4)
    reply["tokens"] = min(int(reply["tokens"]), int(body.get("max_tokens") or 1 << 30))
    return reply


async def _send_chunk(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))
    await writer.drain()


async def _stream(writer: asyncio.StreamWriter, reply: dict[str, Any], model: str) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    tokens, per_chunk = int(reply["tokens"]), max(1, int(reply.get("per_chunk", 1)))
    continuous = per_chunk > 1 and reply.get("running", True)
    base = {"id": "load", "object": "chat.completion.chunk", "created": 0, "model": model}
    role = {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    await _send_chunk(writer, b"data: " + json.dumps(role).encode() + b"\n\n")
    if reply.get("ttft"):
        await asyncio.sleep(float(reply["ttft"]))
    sent = 0
    while sent < tokens:
        if sent and reply.get("gap"):
            await asyncio.sleep(float(reply["gap"]))
        n = min(per_chunk, tokens - sent)
        sent += n
        last = sent == tokens
        event: dict[str, Any] = {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": "w " * n},
                    "finish_reason": "length" if last else None,
                }
            ],
        }
        if continuous:
            event["usage"] = {"prompt_tokens": 3, "completion_tokens": sent, "total_tokens": 3}
        await _send_chunk(writer, b"data: " + json.dumps(event).encode() + b"\n\n")
    if tokens == 0:
        # Nothing generated, but a finished stream: an empty answer, not a cut one.
        stop = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await _send_chunk(writer, b"data: " + json.dumps(stop).encode() + b"\n\n")
    usage = {"prompt_tokens": 3, "completion_tokens": tokens, "total_tokens": 3 + tokens}
    await _send_chunk(
        writer, b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
    )
    await _send_chunk(writer, b"data: [DONE]\n\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def _plain(writer: asyncio.StreamWriter, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    writer.write(
        b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\nretry-after: 0\r\n"
        b"content-length: %d\r\n\r\n%s" % (status, len(body), body)
    )


async def _handle(
    state: LoadServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            method, path, _ = line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            if method == "GET" and path.endswith("/models"):
                _plain(writer, 200, {"object": "list", "data": [{"id": "m", "object": "model"}]})
                await writer.drain()
                continue
            if method != "POST" or not path.endswith("/completions"):
                _plain(writer, 404, {"error": {"message": f"no route {path}"}})
                await writer.drain()
                continue
            state.arrivals_ns.append(time.perf_counter_ns())
            body = json.loads(raw)
            state.bodies.append(body)
            reply = _reply_for(body)
            status = int(reply.get("status", 200))
            state.statuses.append(status)
            if status != 200:
                _plain(writer, status, {"error": {"message": "scripted", "type": "x"}})
                await writer.drain()
                continue
            state.in_flight += 1
            state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
            try:
                await _stream(writer, reply, str(body.get("model", "m")))
            finally:
                state.in_flight -= 1
    except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
        pass  # a client hanging up, or the server stopping with keep-alive connections open
    finally:
        writer.close()


@contextmanager
def serve(timeout_s: float = 10.0) -> Iterator[LoadServer]:
    """Run the server on 127.0.0.1 (a free port) in a thread; yields its state with ``url``."""
    state = LoadServer()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: _handle(state, r, w), "127.0.0.1", 0, backlog=1024
        )
        holder["loop"], holder["stop"] = asyncio.get_running_loop(), asyncio.Event()
        state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        ready.set()
        async with server:
            await holder["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(timeout_s):
        raise RuntimeError(f"load server did not start within {timeout_s} s")
    try:
        yield state
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(timeout_s)


if __name__ == "__main__":
    # Standalone: print the URL, serve until stdin closes (the parent process ends).
    with serve() as running:
        print(running.url, flush=True)
        sys.stdin.read()
