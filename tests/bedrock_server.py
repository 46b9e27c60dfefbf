"""A loopback server that speaks Bedrock's ConverseStream wire format, scriptable per test.

moto has no ``converse_stream``, so this answers ``POST /model/{id}/converse-stream`` itself:
``application/vnd.amazon.eventstream`` frames (prelude and message CRC32s included, so botocore's
decoder validates them), each frame its own HTTP chunk, flushed, so the client sees per-token
timing. Every wait is bounded and ends at once when the server stops.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

__all__ = ["BedrockServer", "Received", "Script", "encode_frame", "running"]

_PATH_PREFIX = "/model/"
_PATH_SUFFIX = "/converse-stream"


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (lengths + CRC), string headers, payload, CRC."""
    head = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        head += struct.pack(">B", len(raw_name)) + raw_name
        head += struct.pack(">BH", 7, len(raw_value)) + raw_value  # 7: string
    prelude = struct.pack(">II", 12 + len(head) + len(payload) + 4, len(head))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, body: dict[str, Any]) -> bytes:
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_frame(headers, json.dumps(body).encode())


def exception(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_frame(headers, json.dumps({"message": message}).encode())


@dataclass
class Script:
    """How to answer one request. Token counts below count token frames already sent."""

    tokens: Sequence[str] = ("Hello", ",", " world", "!")
    #: Before the first frame (after the HTTP headers), and between token frames.
    first_delay_s: float = 0.0
    delay_s: float = 0.0
    #: Hold the HTTP response headers back this long (a server slow to answer at all).
    headers_delay_s: float = 0.0
    #: Anything but 200 answers with a JSON error body instead of a stream.
    status: int = 200
    error_type: str | None = None
    message: str = "scripted failure"
    retry_after: str | None = None
    #: Send an exception frame of ``exception_type`` after this many token frames.
    exception_after: int | None = None
    exception_type: str = "modelStreamErrorException"
    #: Stop sending after this many token frames and hold the connection for ``hang_s``.
    hang_after: int | None = None
    hang_s: float = 5.0
    #: After this many token frames send half a frame and drop the connection.
    cut_after: int | None = None
    #: After this many token frames send a frame whose message CRC is wrong.
    corrupt_after: int | None = None
    #: After this many token frames end the body cleanly, with no messageStop.
    end_after: int | None = None
    metadata: bool = True
    input_tokens: int = 7
    output_tokens: int | None = None
    latency_ms: int = 42
    stop_reason: str = "end_turn"


@dataclass
class Received:
    path: str
    model_id: str
    headers: dict[str, str]
    body: dict[str, Any]
    client_port: int


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A fallback bound on an idle keep-alive connection; stop() closes them sooner.
    timeout = 10
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Without it Nagle holds each small frame until the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _other(self) -> None:
        # Recorded so a test can show nothing probed it (the EC2 metadata service, say).
        self.server.owner.received.append(
            Received(self.path, "", {k.lower(): v for k, v in self.headers.items()}, {}, 0)
        )
        self._error(404, None, f"no route for {self.command} {self.path}", None)

    do_GET = do_PUT = _other

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        owner = self.server.owner
        if not (self.path.startswith(_PATH_PREFIX) and self.path.endswith(_PATH_SUFFIX)):
            self._error(404, "UnknownOperationException", f"no route for {self.path}", None)
            return
        model_id = unquote(self.path[len(_PATH_PREFIX) : -len(_PATH_SUFFIX)])
        owner.received.append(
            Received(
                self.path,
                model_id,
                {k.lower(): v for k, v in self.headers.items()},
                json.loads(raw or b"{}"),
                int(self.client_address[1]),
            )
        )
        script = owner.next_script()
        if script.status != 200:
            self._error(script.status, script.error_type, script.message, script.retry_after)
            return
        self._stream(script)

    def _error(self, status: int, kind: str | None, message: str, retry_after: str | None) -> None:
        body = json.dumps({"message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        if kind is not None:
            # The real service appends a namespace after ':'; botocore must strip it.
            self.send_header("x-amzn-ErrorType", f"{kind}:http://internal.amazon.com/coral/")
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        # One frame per HTTP chunk, written straight to the socket (wbufsize is 0).
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _stream(self, s: Script) -> None:
        stop = self.server.owner.stopping
        if s.headers_delay_s and stop.wait(s.headers_delay_s):
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        self.end_headers()
        self._chunk(event("messageStart", {"role": "assistant"}))
        for i, token in enumerate(s.tokens):
            if i == s.exception_after:
                self._chunk(exception(s.exception_type, s.message))
                return self._end()
            if i == s.hang_after:
                stop.wait(s.hang_s)
                self.close_connection = True
                return
            if i == s.cut_after:
                frame = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}})
                self._chunk(frame[: len(frame) // 2])
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if i == s.corrupt_after:
                frame = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}})
                self._chunk(frame[:-1] + bytes([frame[-1] ^ 0xFF]))
                return self._end()
            if i == s.end_after:
                return self._end()
            if stop.wait(s.first_delay_s if i == 0 else s.delay_s):
                self.close_connection = True
                return
            delta = {"contentBlockIndex": 0, "delta": {"text": token}}
            self._chunk(event("contentBlockDelta", delta))
        self._chunk(event("contentBlockStop", {"contentBlockIndex": 0}))
        self._chunk(event("messageStop", {"stopReason": s.stop_reason}))
        if s.metadata:
            output = len(s.tokens) if s.output_tokens is None else s.output_tokens
            usage = {
                "inputTokens": s.input_tokens,
                "outputTokens": output,
                "totalTokens": s.input_tokens + output,
            }
            self._chunk(event("metadata", {"usage": usage, "metrics": {"latencyMs": s.latency_ms}}))
        self._end()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    # Handler threads are joined on close; each is bounded by its socket timeout and waits.
    daemon_threads = False
    block_on_close = True
    # Load tests open many connections at once; the default backlog of 5 would drop some SYNs.
    request_queue_size = 128
    owner: BedrockServer

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.owner.lock:
            self.owner.connections.add(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up mid-stream (a timeout test) breaks the pipe: expected.
        pass

    def shutdown_request(self, request: Any) -> None:
        with self.owner.lock:
            self.owner.connections.discard(request)
        super().shutdown_request(request)


@dataclass
class BedrockServer:
    """The running server: queue scripts, read back what it received."""

    default: Script = field(default_factory=Script)
    received: list[Received] = field(default_factory=list)
    scripts: list[Script] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: set[socket.socket] = field(default_factory=set)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def queue(self, *scripts: Script) -> None:
        """Answer the next requests with these, in order; then with ``default``."""
        with self.lock:
            self.scripts.extend(scripts)

    def next_script(self) -> Script:
        with self.lock:
            return self.scripts.pop(0) if self.scripts else self.default


@contextmanager
def running() -> Iterator[BedrockServer]:
    owner = BedrockServer()
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.owner = owner
    owner.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield owner
    finally:
        owner.stopping.set()
        httpd.shutdown()
        # Wake handlers blocked reading an idle keep-alive connection.
        with owner.lock:
            for conn in list(owner.connections):
                with suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        thread.join(10)
