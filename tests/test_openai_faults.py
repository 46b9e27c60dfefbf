"""Network faults and hostile answers on the openai backend: every one ends the request with one
of our errors (a deadline, a size cap, a stream_cut), never a hang, a traceback or a wrong number.

Byte-level faults (trickled headers, an endless line, bad gzip, a body cut mid-event) come from a
raw-socket loopback server below; the rest from the scripted SSE server. Fault scripts that could
run long (60 s of trickle) stop as soon as the client hangs up, and every server thread is
joined, and checked to have ended, when its test ends.
"""

from __future__ import annotations

import asyncio
import json
import math
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from scripted_openai import Reply, ScriptedServer

from pytest_llmperf.backends import Chunk, Request
from pytest_llmperf.backends._watchdog import Watchdog
from pytest_llmperf.backends.openai import OpenAIBackend
from pytest_llmperf.errors import GenerationError, TransientError
from pytest_llmperf.harness import measure
from pytest_llmperf.options import resolve_options
from pytest_llmperf.retry_after import MAX_RETRY_AFTER_S, parse_retry_after
from pytest_llmperf.spec import parse_spec

#: Writes the answer to one POST; returns True to keep the connection for the next request.
Fault = Callable[[socket.socket, threading.Event], "bool | None"]
#: Long enough that only the client's deadline can end these requests within a test run.
TRICKLE_S = 60.0

_MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()
_EVENT = json.dumps(
    {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "length"}]}
)


class RawServer:
    """HTTP/1.1 on a loopback socket: ``GET /v1/models`` answers as a server would (so the
    backend loads); every POST's connection is handed to ``fault``, which writes raw bytes."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.stop = threading.Event()
        self.finished: list[bool] = []  # per POST: did the fault write everything it meant to?
        self.ports: list[int] = []  # the client's port, per POST
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def __enter__(self) -> RawServer:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(10)
        self._sock.close()
        alive = [t.name for t in self._threads if t.is_alive()]
        assert alive == [], f"server threads still running: {alive}"

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buffered = b""
        with conn:
            while not self.stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buffered += data
                while b"\r\n\r\n" in buffered:
                    head, _, rest = buffered.partition(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
                    length = int(headers.get("content-length", "0"))
                    if len(rest) < length:
                        break  # the body is still on its way
                    buffered = rest[length:]
                    if lines[0].startswith("GET"):
                        conn.sendall(_response(200, _MODELS, "application/json"))
                        continue
                    conn.settimeout(None)
                    self.ports.append(conn.getpeername()[1])
                    if not self.fault(conn, self.stop):
                        return
                    conn.settimeout(0.05)


def _response(status: int, body: bytes, content_type: str, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def _client_gone(conn: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _trickle(conn: socket.socket, stop: threading.Event, prefix: bytes, every: float) -> None:
    """``prefix``, then one byte per ``every`` seconds for TRICKLE_S, until the client leaves."""
    try:
        conn.sendall(prefix)
        end = time.monotonic() + TRICKLE_S
        while time.monotonic() < end and not stop.wait(every):
            if _client_gone(conn):
                return
            conn.sendall(b"x")
    except OSError:
        return


def _stream_head(extra: str = "") -> bytes:
    # No content-length and "connection: close": the body ends when the socket does.
    return f"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n{extra}\r\n".encode()


@pytest.fixture
def raw() -> Iterator[Callable[[Fault], RawServer]]:
    servers: list[RawServer] = []

    def start(fault: Fault) -> RawServer:
        server = RawServer(fault).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


def backend(url: str, query: str = "") -> OpenAIBackend:
    spec = parse_spec(f"openai:m@{url}{query}")
    b = OpenAIBackend(spec, resolve_options(spec, OpenAIBackend.options))
    b.check()
    b.load()
    return b


def run(b: OpenAIBackend, max_tokens: int = 4) -> object:
    try:
        return measure(b.stream(Request("hi", max_tokens=max_tokens)))
    finally:
        b.close()


# --- the whole-request deadline on the blocking path ------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        # A status line, then a header trickled a byte at a time: every read gets a byte well
        # inside timeout=5, so only the deadline can end it.
        pytest.param(
            lambda conn, stop: _trickle(conn, stop, b"HTTP/1.1 200 OK\r\nx-slow: ", 0.2),
            id="trickled-headers",
        ),
        # Not one byte after the request: the read timeout (60 s) is far beyond the deadline.
        pytest.param(
            lambda conn, stop: _trickle(conn, stop, b"", TRICKLE_S), id="silent-before-headers"
        ),
    ],
)
def test_the_deadline_covers_the_wait_for_response_headers(raw, fault):
    server = raw(fault)
    b = backend(server.url, "?timeout=60&deadline=1")
    with pytest.raises(TransientError, match=r"deadline=1 s \(0 chunks received\)") as info:
        run(b)
    assert info.value.kind == "timeout"


def test_after_a_deadline_the_next_request_gets_a_working_connection(raw):
    # The deadline shuts the client's connections down; the next request must not inherit one.
    posts: list[int] = []

    def stuck_then_fine(conn: socket.socket, stop: threading.Event) -> None:
        posts.append(1)
        if len(posts) == 1:
            _trickle(conn, stop, b"HTTP/1.1 200 OK\r\nx-slow: ", 0.2)
            return
        body = f"data: {_EVENT}\n\ndata: [DONE]\n\n".encode()
        conn.sendall(_response(200, body, "text/event-stream"))

    server = raw(stuck_then_fine)
    b = backend(server.url, "?timeout=60&deadline=1")
    try:
        with pytest.raises(TransientError, match="deadline"):
            measure(b.stream(Request("hi", max_tokens=4)))
        assert measure(b.stream(Request("hi", max_tokens=4))).text == "hi"
    finally:
        b.close()
    assert len(posts) == 2


def test_the_deadline_covers_a_reused_keep_alive_connection_too(raw):
    # No new connection is opened for the second request: the deadline must still reach it.
    def fine_then_stuck(conn: socket.socket, stop: threading.Event) -> bool:
        if len(server.ports) == 1:
            body = f"data: {_EVENT}\n\ndata: [DONE]\n\n".encode()
            conn.sendall(_response(200, body, "text/event-stream"))
            return True
        _trickle(conn, stop, b"HTTP/1.1 200 OK\r\nx-slow: ", 0.2)
        return False

    server = raw(fine_then_stuck)
    b = backend(server.url, "?timeout=60&deadline=1")
    try:
        assert measure(b.stream(Request("hi", max_tokens=4))).text == "hi"
        with pytest.raises(TransientError, match=r"deadline=1 s \(0 chunks received\)"):
            measure(b.stream(Request("hi", max_tokens=4)))
    finally:
        b.close()
    assert len(server.ports) == 2
    assert len(set(server.ports)) == 1, "the second request was meant to reuse the connection"


def test_an_infinite_deadline_does_not_kill_the_watchdog():
    watchdog = Watchdog()
    started, fired = threading.Event(), threading.Event()
    try:
        watchdog.arm(0.0, started.set)
        assert started.wait(30)  # the thread runs, and now waits for the next deadline
        watchdog.arm(math.inf, fired.set)  # "no deadline", never a dead thread
        time.sleep(0.1)  # lets the thread take it up (a busy machine only hides a failure)
        watchdog.arm(0.01, fired.set)
        assert fired.wait(30), "the watchdog thread died: later deadlines are not enforced"
        with pytest.raises(ValueError, match="nan"):
            watchdog.arm(math.nan, fired.set)
    finally:
        watchdog.stop()


def test_a_failing_callback_does_not_kill_the_watchdog():
    watchdog = Watchdog()
    ran, fired = threading.Event(), threading.Event()

    def broken() -> None:
        ran.set()
        raise RuntimeError("boom")

    try:
        watchdog.arm(0.0, broken)
        assert ran.wait(30)
        watchdog.arm(0.01, fired.set)
        assert fired.wait(30), "the watchdog thread died with its callback"
    finally:
        watchdog.stop()


# --- bounded reads -----------------------------------------------------------------------------


def _endless_line(conn: socket.socket, stop: threading.Event) -> None:
    block = b"a" * 65536
    try:
        conn.sendall(_stream_head("connection: close\r\n") + b'data: "')
        for _ in range(1024):  # 64 MiB, never a newline
            if stop.is_set():
                return
            conn.sendall(block)
    except OSError:
        return


def test_a_line_that_never_ends_is_cut_off_at_the_cap(raw):
    server = raw(_endless_line)
    with pytest.raises(GenerationError, match=r"longer than 1 MiB"):
        run(backend(server.url))


def test_the_cap_holds_on_the_load_path_too(raw):
    server = raw(_endless_line)
    b = backend(server.url)

    async def consume() -> None:
        streamer = b.open_async(1)
        try:
            async for _ in streamer.stream(Request("hi", max_tokens=4)):
                pass
        finally:
            await streamer.aclose()

    try:
        with pytest.raises(GenerationError, match=r"longer than 1 MiB"):
            asyncio.run(consume())
    finally:
        b.close()


def test_an_error_body_is_read_only_up_to_a_cap(raw):
    size = 256 * 1024 * 1024
    server: RawServer

    def huge_401(conn: socket.socket, stop: threading.Event) -> None:
        head = f"HTTP/1.1 401 X\r\ncontent-type: text/plain\r\ncontent-length: {size}\r\n\r\n"
        block = b"no " * 20000
        try:
            conn.sendall(head.encode())
            for _ in range(0, size, len(block)):
                if stop.is_set():
                    return
                conn.sendall(block)
        except OSError:
            server.finished.append(False)  # the client hung up before the body's end
        else:
            server.finished.append(True)

    server = raw(huge_401)
    with pytest.raises(GenerationError, match=r"HTTP 401"):
        run(backend(server.url))
    deadline = time.monotonic() + 30
    while not server.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.finished == [False], "the client read the whole 256 MiB error body"


# --- every httpx failure mapped at the boundary -------------------------------------------------


def test_a_body_that_is_not_the_gzip_it_claims_is_a_clear_error(raw):
    def bad_gzip(conn: socket.socket, stop: threading.Event) -> None:
        body = b"data: this is not gzip at all\n\n"
        conn.sendall(_response(200, body, "text/event-stream", "content-encoding: gzip\r\n"))

    server = raw(bad_gzip)
    with pytest.raises(GenerationError, match=r"could not be decoded") as info:
        run(backend(server.url))
    assert not isinstance(info.value, TransientError)


def test_a_redirect_loop_is_a_clear_error(server):
    server.script = [Reply(status=307, headers={"location": "/v1/chat/completions"})]
    with pytest.raises(GenerationError, match=r"redirect") as info:
        run(backend(server.url))
    assert not isinstance(info.value, TransientError)


def test_a_stream_cut_in_the_middle_of_an_event_is_a_stream_cut(raw):
    def cut(conn: socket.socket, stop: threading.Event) -> None:
        half = b'data: {"id": "x", "choi'
        conn.sendall(_stream_head("connection: close\r\n") + f"data: {_EVENT}\n\n".encode() + half)

    server = raw(cut)
    with pytest.raises(TransientError, match=r"in the middle of an event") as info:
        run(backend(server.url))
    assert info.value.kind == "stream_cut"


def test_done_without_a_finish_reason_is_a_stream_cut_not_a_sample(raw):
    # llama_cpp.server's interrupt_requests ends a running generation this way: [DONE] after
    # a content chunk that never said why it stopped. Counted as a sample, it would be a
    # short generation passed off as the server's latency.
    unfinished = json.dumps({"choices": [{"index": 0, "delta": {"content": "hi"}}]})

    def cut_with_done(conn: socket.socket, stop: threading.Event) -> None:
        body = f"data: {unfinished}\n\ndata: [DONE]\n\n".encode()
        conn.sendall(_response(200, body, "text/event-stream"))

    server = raw(cut_with_done)
    with pytest.raises(TransientError, match=r"\[DONE\] without a finish_reason") as info:
        run(backend(server.url))
    assert info.value.kind == "stream_cut"


def test_a_deeply_nested_error_body_is_shown_not_raised(raw):
    def nested_400(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(_response(400, b"[" * 100_000, "application/json"))

    server = raw(nested_400)
    with pytest.raises(GenerationError, match=r"answered HTTP 400"):
        run(backend(server.url))


# --- what the events say: content and token counts ----------------------------------------------


def _usage_event(**usage: object) -> str:
    return json.dumps({"choices": [], "usage": usage})


@pytest.mark.parametrize(
    ("malformed", "message"),
    [
        pytest.param(
            json.dumps({"choices": [{"index": 0, "delta": {"content": 5}}]}),
            "content is 5, not text",
            id="numeric-content",
        ),
        pytest.param("[" * 100_000 + "]" * 100_000, "malformed", id="deep-nesting"),
        pytest.param(
            _usage_event(prompt_tokens=3, completion_tokens="5"),
            "completion_tokens",
            id="string-count",
        ),
        pytest.param(
            _usage_event(prompt_tokens="3", completion_tokens=4),
            "prompt_tokens",
            id="string-prompt-count",
        ),
        pytest.param(
            _usage_event(prompt_tokens=3, completion_tokens=-5), "completion_tokens", id="negative"
        ),
        pytest.param(
            _usage_event(prompt_tokens=3, completion_tokens=2.5), "completion_tokens", id="float"
        ),
        pytest.param(
            _usage_event(prompt_tokens=3, completion_tokens=10**12), "completion_tokens", id="huge"
        ),
        pytest.param(
            json.dumps(
                {
                    "choices": [{"index": 0, "delta": {"content": "x"}}],
                    "usage": {"completion_tokens": 10**12},
                }
            ),
            "completion_tokens",
            id="huge-running-count",
        ),
    ],
)
def test_a_malformed_event_or_count_is_a_clear_generation_error(server, malformed, message):
    server.script = [Reply(tokens=4, malformed=malformed)]
    with pytest.raises(GenerationError, match=message) as info:
        run(backend(server.url))
    assert not isinstance(info.value, TransientError)


def test_valid_counts_still_count(server):
    server.script = [Reply(tokens=4, malformed=_usage_event(prompt_tokens=3, completion_tokens=0))]
    b = backend(server.url)
    items = list(b.stream(Request("hi", max_tokens=4)))
    b.close()
    assert [i.text for i in items if isinstance(i, Chunk)] == ["t0 ", "t1 ", "t2 ", "t3 "]


# --- Retry-After ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "nan"}, None),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "1e9"}, MAX_RETRY_AFTER_S),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "-1"}, None),
    ],
)
def test_a_retry_after_that_is_no_delay_is_ignored_and_a_huge_one_capped(server, headers, expected):
    server.script = [Reply(status=429, headers=headers)]
    with pytest.raises(TransientError) as info:
        run(backend(server.url))
    assert (info.value.kind, info.value.retry_after) == ("rate_limit", expected)


def test_retry_after_takes_an_http_date():
    now = 1_800_000_000.0
    assert parse_retry_after({"Retry-After": "Fri, 15 Jan 2027 08:00:00 GMT"}, now=now) == 0.0
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 7))
    assert parse_retry_after({"Retry-After": when}, now=now) == 7.0
    assert parse_retry_after({"Retry-After": "soon"}, now=now) is None
