"""A loopback OpenAI-compatible server that answers each request from a script.

Real HTTP/1.1 and real server-sent events (chunked transfer, one event per chunk), so the
openai SDK and its HTTP client run unmodified; only the answers are chosen by the test:

    server.script = [Reply(status=429, headers={"retry-after": "0"}), Reply(tokens=4)]

Each request to ``/v1/chat/completions`` or ``/v1/completions`` takes the next reply; the last
one repeats. ``GET /v1/models`` always answers 200 unless ``models_status`` says otherwise.
``owned_by="me"`` and ``vocabulary={"<eos>": 7, ...}`` play llama-cpp-python's server: its
model list, and its ``POST /extras/tokenize`` (BOS first, a special token's text as its id, any
other text as one token per character); those calls land in ``tokenize_calls``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Reply", "ScriptedServer"]


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: Content deltas to stream (200 only); each is one SSE event.
    tokens: int = 4
    #: Seconds before each event.
    delay: float = 0.0
    #: Close the connection after this many events, without the final ``[DONE]``.
    cut_after: int | None = None
    #: Send this raw text as one SSE data line after the first event.
    malformed: str | None = None
    #: Send nothing for this long after the headers (a server that never produces a token).
    stall: float = 0.0
    #: Send ``: ping`` comments during the stall (keeps a read timeout from firing).
    ping_every: float | None = None
    usage: bool = False
    #: Each event carries a running ``usage.completion_tokens`` (vLLM's continuous usage
    #: stats) as if it held this many tokens.
    tokens_per_event: int | None = None
    #: Stream this text (in pieces of up to 8 characters) instead of ``tokens`` dummy words.
    text: str | None = None

    def pieces(self) -> list[str]:
        if self.text is None:
            return [f"t{i} " for i in range(self.tokens)]
        return [self.text[i : i + 8] for i in range(0, len(self.text), 8)]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up mid-stream is what several tests do on purpose


class ScriptedServer:
    def __init__(self) -> None:
        self.script: list[Reply] = [Reply()]
        self.models_status = 200
        self.requests: list[dict[str, Any]] = []
        self.owned_by: str | None = None
        self.vocabulary: dict[str, int] | None = None
        self.tokenize_calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # ends stalls early
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def _next(self) -> Reply:
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if server.models_status != 200:
                    self._json(server.models_status, {"error": {"message": "no models for you"}})
                    return
                model: dict[str, Any] = {"id": "m", "object": "model"}
                if server.owned_by is not None:
                    model["owned_by"] = server.owned_by
                self._json(200, {"object": "list", "data": [model]})

            def _tokenize(self, body: dict[str, Any]) -> None:
                server.tokenize_calls.append(body)
                vocabulary = server.vocabulary
                if vocabulary is None:
                    self._json(404, {"detail": "Not Found"})
                    return
                text = body["input"]
                ids = [vocabulary[text]] if text in vocabulary else [1000 + ord(c) for c in text]
                self._json(200, {"tokens": [1, *ids]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if self.path == "/extras/tokenize":
                    self._tokenize(body)
                    return
                server.requests.append(
                    {"path": self.path, "body": body, "client_port": self.client_address[1]}
                )
                reply = server._next()
                if reply.status != 200:
                    message = {"error": {"message": f"scripted {reply.status}", "type": "x"}}
                    self._json(reply.status, message, reply.headers)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                self._stream(reply, chat=self.path.endswith("/chat/completions"))

            def _chunk(self, text: str) -> None:
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _stream(self, reply: Reply, *, chat: bool) -> None:
                stall_end = time.monotonic() + reply.stall
                while time.monotonic() < stall_end and not server._stop.is_set():
                    step = reply.ping_every or 0.05
                    server._stop.wait(min(step, max(0.0, stall_end - time.monotonic())))
                    if reply.ping_every:
                        try:
                            self._chunk(": ping\n\n")
                        except OSError:
                            return
                pieces = reply.pieces()
                try:
                    for i, piece in enumerate(pieces):
                        if reply.cut_after is not None and i == reply.cut_after:
                            # No terminating zero-length chunk: the body ends mid-stream.
                            self.close_connection = True
                            return
                        time.sleep(reply.delay)
                        choice = (
                            {"index": 0, "delta": {"content": piece}}
                            if chat
                            else {"index": 0, "text": piece}
                        )
                        if i == len(pieces) - 1:
                            choice["finish_reason"] = "length"
                        event = {
                            "id": "x",
                            "object": "chat.completion.chunk" if chat else "text_completion",
                            "created": 0,
                            "model": "m",
                            "choices": [choice],
                        }
                        if reply.tokens_per_event is not None:
                            done = reply.tokens_per_event * (i + 1)
                            event["usage"] = {"prompt_tokens": 3, "completion_tokens": done}
                        self._chunk(f"data: {json.dumps(event)}\n\n")
                        if i == 0 and reply.malformed is not None:
                            self._chunk(f"data: {reply.malformed}\n\n")
                    if reply.usage:
                        usage = {"prompt_tokens": 3, "completion_tokens": len(pieces)}
                        last = {"id": "x", "object": "chat.completion.chunk", "created": 0}
                        last |= {"model": "m", "choices": [], "usage": usage}
                        self._chunk(f"data: {json.dumps(last)}\n\n")
                    self._chunk("data: [DONE]\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    pass  # the client went away (e.g. after its own timeout)

        return Handler
