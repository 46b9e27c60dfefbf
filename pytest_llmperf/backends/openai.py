"""The OpenAI API and OpenAI-compatible servers (vLLM, llama.cpp server, ollama, ...).

``openai:MODEL`` talks to the OpenAI API (``OPENAI_API_KEY``); ``openai:MODEL@BASE_URL`` to any
compatible server. Streams chat completions (``?api=completions`` for the legacy endpoint) and
asks for usage in the stream; servers that ignore that (llama.cpp's does) are counted one token
per content delta (or by the running usage count of servers that batch tokens into one delta),
and ``token_source`` says which happened.

The SDK configures everything once at load (base URL, key, organisation and project headers,
user agent, its HTTP client) and checks the server with ``GET /models``; each timed request then
goes straight to that HTTP client, because the SDK's per-request machinery costs ~0.8 ms of client
CPU that would sit inside every TTFT (``benchmarks/backends.py`` measures what is left).

Nothing retries inside a request: a 429, 5xx, timeout or cut stream becomes a
:class:`~pytest_llmperf.errors.TransientError` that the harness counts (and retries as a fresh,
separately timed attempt), so a retry never hides inside a latency sample. ``timeout`` bounds
the silence between bytes; ``deadline`` bounds the whole request, because a server that sends
keep-alive pings but no tokens would otherwise never time out.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BackendUnavailable, GenerationError, InvalidRequest, TransientError
from ..options import Option
from ..spec import LLMSpec
from . import Chunk, Request, Usage
from ._watchdog import Watchdog

__all__ = ["OpenAIBackend"]

_INSTALL = "pip install 'pytest-llmperf[openai]'"


class OpenAIBackend:
    kind: ClassVar[str] = "openai"
    install_hint: ClassVar[str] = _INSTALL
    options: ClassVar[Sequence[Option]] = (
        Option("api", str, "chat", "endpoint", choices=("chat", "completions")),
        Option(
            "timeout", float, 60.0, "seconds of silence before a request is abandoned", minimum=0.1
        ),
        Option("deadline", float, 600.0, "seconds a whole request may take", minimum=0.1),
        Option("api_key_env", str, "OPENAI_API_KEY", "environment variable holding the key"),
    )

    def __init__(self, spec: LLMSpec, options: Mapping[str, Any]) -> None:
        self.spec = spec
        self.opts = dict(options)
        self._client: Any = None
        self._http: Any = None
        self._base_url = ""
        self._headers: dict[str, str] = {}
        self._watchdog = Watchdog()

    @property
    def model_file(self) -> Path | None:
        return None

    @property
    def _where(self) -> str:
        return self.spec.base_url or "the OpenAI API"

    def _api_key(self) -> str | None:
        return os.environ.get(self.opts["api_key_env"]) or None

    def check(self) -> None:
        if importlib.util.find_spec("openai") is None:
            raise BackendUnavailable(f"openai needs the openai package: {_INSTALL}")
        if self.spec.base_url is None and self._api_key() is None:
            raise BackendUnavailable(
                f"{self.opts['api_key_env']} is not set (needed for the OpenAI API; give a base "
                "URL, openai:MODEL@http://host:port/v1, for a compatible server)"
            )

    def load(self) -> None:
        import openai

        self._client = openai.OpenAI(
            base_url=self.spec.base_url,
            # Local compatible servers usually want no key, but the client insists on one.
            api_key=self._api_key() or "not-needed",
            timeout=self.opts["timeout"],
            max_retries=0,
        )
        # Requests bypass the SDK's per-call machinery (see _create) but keep its configuration:
        # base URL, key, organisation and project headers, user agent, and its HTTP client.
        self._base_url = str(self._client.base_url).rstrip("/")
        headers = {**self._client.default_headers, **self._client.auth_headers}
        self._headers = {k: v for k, v in headers.items() if isinstance(v, str)}
        self._http = openai.DefaultHttpxClient(timeout=self.opts["timeout"])
        try:
            self._client.models.list()
        except openai.AuthenticationError as exc:
            raise BackendUnavailable(f"{self._where} refused the API key (401): {exc}") from exc
        except openai.APIConnectionError as exc:
            raise BackendUnavailable(f"cannot reach {self._where}: {exc}") from exc
        except openai.APIStatusError as exc:
            raise BackendUnavailable(
                f"{self._where} answered HTTP {exc.status_code} to GET /models: {exc}"
            ) from exc

    def _create(self, request: Request) -> Any:
        """Send the request; returns the HTTP response, its body not yet read.

        Straight to the SDK's own HTTP client, with the headers the SDK built at load: going
        through ``chat.completions.create``, or even the SDK's ``client.post``, costs ~0.8 ms of
        client CPU per request (type transformation, option models, auth and retry wrappers),
        and all of it lands inside TTFT (benchmarks/backends.py measures it).
        """
        path, body = request_body(self, request)
        http = self._http
        outgoing = http.build_request(
            "POST", self._base_url + path, headers=self._headers, content=json.dumps(body)
        )
        response = http.send(outgoing, stream=True)
        if response.status_code >= 400:
            try:
                response.read()
            finally:
                response.close()
            raise self.status_error(response.status_code, response.headers, response.text)
        return response

    def status_error(self, status: int, headers: Mapping[str, str], text: str) -> Exception:
        """An HTTP error answer as one of ours: 429 and 5xx are transient (counted, retried as
        fresh attempts), anything else fails the test with the server's own message."""
        where = self._where
        detail = _error_detail(text)
        if status == 429:
            return TransientError(
                f"{where} rate-limited the request (HTTP 429): {detail}",
                kind="rate_limit",
                retry_after=_retry_after(headers),
            )
        if status >= 500:
            return TransientError(
                f"{where} failed with HTTP {status}: {detail}",
                kind="server_error",
                retry_after=_retry_after(headers),
            )
        if status == 401:
            return GenerationError(f"{where} refused the API key (HTTP 401): {detail}")
        if status == 404:
            return GenerationError(
                f"{where} does not know model {self.spec.model!r} (HTTP 404): {detail}"
            )
        return GenerationError(f"{where} answered HTTP {status}: {detail}")

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        # The event stream is parsed with plain json.loads: the SDK's model objects cost
        # ~0.3 ms per chunk of client CPU that would land in every TTFT and ITL.
        if request.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {request.max_tokens}")
        events = EventStream(self._where, chat=self.opts["api"] == "chat")
        expired = threading.Event()
        armed = False
        http: Any = None
        try:
            http = self._create(request)

            def expire() -> None:
                expired.set()
                http.close()

            self._watchdog.arm(self.opts["deadline"], expire)
            armed = True
            for line in http.iter_lines():
                chunk = events.feed(line)
                if chunk is not None:
                    yield chunk
            if expired.is_set():  # closing the response may end the iteration quietly
                raise self._deadline_error(events.chunks)
            events.check_end()
        except Exception as exc:
            if expired.is_set() and not isinstance(exc, TransientError):
                raise self._deadline_error(events.chunks) from exc
            translated = self._translate(exc, events.chunks)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            if armed:
                self._watchdog.disarm()
            if http is not None:
                http.close()  # also when the consumer stops early: free the connection
        yield events.usage_item()

    def open_async(self, limit: int) -> Any:
        """``llm_load``'s concurrent streams, on the SDK's async HTTP client (``_openai_async``)."""
        from ._openai_async import AsyncOpenAIStreamer

        return AsyncOpenAIStreamer(self, limit)

    def _deadline_error(self, chunks: int) -> TransientError:
        return TransientError(
            f"{self._where} did not finish within deadline={self.opts['deadline']:g} s "
            f"({chunks} chunks received)",
            kind="timeout",
        )

    def _translate(self, exc: Exception, chunks: int) -> Exception:
        """A transport or parsing failure as one of ours; others pass through unchanged."""
        where = self._where
        if isinstance(exc, _transport_errors()):
            if "Timeout" in type(exc).__name__:
                return TransientError(
                    f"{where} sent nothing for timeout={self.opts['timeout']:g} s "
                    f"({chunks} chunks received)",
                    kind="timeout",
                )
            if chunks:
                return TransientError(
                    f"{where} broke the stream after {chunks} chunks: {exc}", kind="stream_cut"
                )
            return TransientError(f"lost {where}: {exc}", kind="connection")
        if isinstance(exc, json.JSONDecodeError | KeyError | TypeError | AttributeError):
            # A malformed event would make any token count a guess: fail, do not skip it.
            return GenerationError(
                f"{where} sent a malformed server-sent event after {chunks} chunks: {exc}"
            )
        return exc

    def info(self) -> dict[str, Any]:
        import openai

        return {
            "library": "openai",
            "library_version": openai.__version__,
            "options": self.opts,
            "base_url": self.spec.base_url,
        }

    def close(self) -> None:
        self._watchdog.stop()
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._client is not None:
            self._client.close()
            self._client = None


def request_body(backend: OpenAIBackend, request: Request) -> tuple[str, dict[str, Any]]:
    """The endpoint path and JSON body of one streaming request (both the blocking and the
    ``llm_load`` path send exactly this)."""
    body: dict[str, Any] = {
        "model": backend.spec.model,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
        **request.options,
    }
    if request.seed is not None:
        body["seed"] = request.seed
    if backend.opts["api"] == "completions":
        if not isinstance(request.prompt, str):
            raise InvalidRequest("api=completions takes a string prompt, not chat messages")
        body["prompt"] = request.prompt
        return "/completions", body
    prompt = request.prompt
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    body["messages"] = [dict(m) for m in messages]
    return "/chat/completions", body


class EventStream:
    """One streamed completion's server-sent events, fed a line at a time: the blocking and
    the ``llm_load`` path both parse with this."""

    def __init__(self, where: str, *, chat: bool) -> None:
        self.where = where
        self.chat = chat
        self.usage: dict[str, Any] | None = None
        self.chunks = 0  # content events received
        self.counted = 0  # output tokens they carried
        self.finished = False
        self.done = False

    def feed(self, line: str) -> Chunk | None:
        if self.done or not line.startswith("data:"):
            return None  # blank separators, ": ping" comments, "event:" names, after [DONE]
        data = line[5:].strip()
        if data == "[DONE]":
            # The caller reads on to the body's end rather than stop here: a response closed
            # unread takes its connection with it, and the next request would pay a new TCP
            # (and TLS) handshake inside its TTFT.
            self.finished = self.done = True
            return None
        event = json.loads(data)
        if event.get("error"):
            raise GenerationError(f"{self.where} sent an error event: {event['error']}")
        if event.get("usage"):
            self.usage = event["usage"]
        choices = event.get("choices")
        if not choices:
            return None
        self.finished = self.finished or bool(choices[0].get("finish_reason"))
        text = choices[0]["delta"].get("content") if self.chat else choices[0].get("text")
        if not text:
            return None
        self.chunks += 1
        tokens, self.counted = chunk_tokens(event, self.counted)
        return Chunk(text, tokens)

    def check_end(self) -> None:
        if not self.finished:  # some servers omit [DONE] after a finish_reason
            raise TransientError(
                f"{self.where} ended the stream without [DONE] after {self.chunks} chunks",
                kind="stream_cut",
            )

    def usage_item(self) -> Usage:
        if self.usage is None:
            return Usage(None, "chunks")
        usage = self.usage
        return Usage(
            usage.get("prompt_tokens"), "usage", output_tokens=usage.get("completion_tokens")
        )


def chunk_tokens(event: Mapping[str, Any], counted: int) -> tuple[int, int]:
    """Output tokens one content event carries, and the running count after it.

    Servers that send a running ``usage.completion_tokens`` with every chunk (vLLM's continuous
    usage stats) say how many tokens a batched chunk holds; otherwise a content delta is one.

    >>> chunk_tokens({"usage": {"completion_tokens": 3}}, 1)
    (2, 3)
    >>> chunk_tokens({}, 3)
    (1, 4)
    """
    usage = event.get("usage") or {}
    total = usage.get("completion_tokens")
    if isinstance(total, int) and total > counted:
        return total - counted, total
    return 1, counted + 1


def _error_detail(text: str) -> str:
    """The server's own message from an error body (OpenAI's ``{"error": {"message"}}``
    shape, else the text), kept short."""
    try:
        error = json.loads(text).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    detail = str(message) if message else text.strip()
    return detail[:500] or "(empty body)"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds; an HTTP date is ignored)."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return float(value) * scale
            except ValueError:
                continue
    return None


def _http_module() -> Any:
    """The HTTP library this openai is built on (``httpx`` for 1.x/2.x, ``httpx2`` for 3.x)."""
    import openai

    client_class = openai.DefaultHttpxClient.__mro__[1]
    return sys.modules[client_class.__module__.split(".")[0]]


def _transport_errors() -> type[Exception]:
    error: type[Exception] = _http_module().TransportError
    return error
