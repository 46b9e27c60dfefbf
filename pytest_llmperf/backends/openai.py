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
the silence between bytes; ``deadline`` bounds the whole request, from sending it through the
response headers to the body's end, because a server that trickles bytes or sends keep-alive
pings but no tokens would otherwise never time out (``_watchdog``). What the server sends is
read under caps (one line, an error body) and checked (token counts, text), and every failure
of the HTTP library becomes one of ours (``_openai_events``, :meth:`OpenAIBackend._translate`).
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

from ..errors import (
    BackendUnavailable,
    GenerationError,
    InvalidRequest,
    LLMPerfError,
    TransientError,
)
from ..options import Option
from ..redact import register_spec_variables
from ..retry_after import parse_retry_after
from ..spec import LLMSpec
from . import Chunk, Request, Usage, check_generation_options
from ._openai_events import BodyPrefix, EventStream, LineSplitter, error_detail
from ._openai_request import (
    EXTRA_BODY_HINT,
    end_token_ids,
    request_body,
    schema_fields,
    served_by_llama_cpp_python,
)
from ._watchdog import Sockets, Watchdog

__all__ = ["EventStream", "OpenAIBackend", "request_body"]

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
        # Before anything can fail: a server that echoes the key in an error must not put it on
        # the terminal, whatever the variable holding it is called.
        register_spec_variables(self.opts)
        self._client: Any = None
        self._http: Any = None
        self._base_url = ""
        self._headers: dict[str, str] = {}
        self._watchdog = Watchdog()
        self._sockets = Sockets()
        #: llama-cpp-python's server only: ids of the model's end-of-generation tokens, which
        #: ``ignore_eos`` biases away (``_openai_request.end_token_ids``); empty elsewhere.
        self.end_tokens: tuple[int, ...] = ()

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
        self._http = openai.DefaultHttpxClient(timeout=self.http_timeout())
        try:
            models = self._client.models.list()
        except openai.AuthenticationError as exc:
            raise BackendUnavailable(f"{self._where} refused the API key (401): {exc}") from exc
        except openai.APIConnectionError as exc:
            raise BackendUnavailable(f"cannot reach {self._where}: {exc}") from exc
        except openai.APIStatusError as exc:
            raise BackendUnavailable(
                f"{self._where} answered HTTP {exc.status_code} to GET /models: {exc}"
            ) from exc
        except openai.OpenAIError as exc:  # e.g. a /models answer that is not the API's JSON
            raise BackendUnavailable(
                f"{self._where} gave no usable answer to GET /models: {exc}"
            ) from exc
        if self.spec.base_url is not None and served_by_llama_cpp_python(models.data):
            self.end_tokens = end_token_ids(
                self._http, self._base_url, self._headers, self.spec.model
            )

    def http_timeout(self) -> Any:
        """``timeout`` per read; opening a connection may not outlast the ``deadline`` either
        (the deadline's watchdog can only wake a connection that exists)."""
        timeout, deadline = self.opts["timeout"], self.opts["deadline"]
        return _http_module().Timeout(timeout, connect=min(timeout, deadline))

    def _create(self, request: Request, expired: threading.Event) -> Any:
        """Send the request; returns the HTTP response, its body not yet read.

        Straight to the SDK's own HTTP client, with the headers the SDK built at load: going
        through ``chat.completions.create``, or even the SDK's ``client.post``, costs ~0.8 ms of
        client CPU per request (type transformation, option models, auth and retry wrappers),
        and all of it lands inside TTFT (benchmarks/backends.py measures it).
        """
        path, body = request_body(self, request)
        http = self._http
        outgoing = http.build_request(
            "POST",
            self._base_url + path,
            headers=self._headers,
            content=json.dumps(body),
            extensions={"trace": self._sockets.tracer(expired)},
        )
        response = http.send(outgoing, stream=True)
        if response.status_code >= 400:
            prefix = BodyPrefix()
            try:
                for data in response.iter_bytes():
                    if prefix.feed(data):
                        break  # enough to quote; an endless error body is not read to its end
            finally:
                response.close()
            raise self.status_error(response.status_code, response.headers, prefix.text)
        return response

    def status_error(self, status: int, headers: Mapping[str, str], text: str) -> Exception:
        """An HTTP error answer as one of ours: 429 and 5xx are transient (counted, retried as
        fresh attempts), anything else fails the test with the server's own message."""
        where = self._where
        detail = error_detail(text)
        if status == 429:
            return TransientError(
                f"{where} rate-limited the request (HTTP 429): {detail}",
                kind="rate_limit",
                retry_after=parse_retry_after(headers),
            )
        if status >= 500:
            return TransientError(
                f"{where} failed with HTTP {status}: {detail}",
                kind="server_error",
                retry_after=parse_retry_after(headers),
            )
        if status == 401:
            return GenerationError(f"{where} refused the API key (HTTP 401): {detail}")
        if status == 404:
            return GenerationError(
                f"{where} does not know model {self.spec.model!r} (HTTP 404): {detail}"
            )
        return GenerationError(f"{where} answered HTTP {status}: {detail}")

    def generation_options(self) -> frozenset[str]:
        """The OpenAI schema's fields for the endpoint in use (read from the installed SDK's
        request types), less what the backend sets itself, plus ``extra_body``."""
        return schema_fields(self.opts["api"])

    def ignore_eos_note(self) -> str | None:
        if self.spec.base_url is None:
            return (
                "the OpenAI API has no request field that forces the output length (it "
                "refuses ignore_eos and min_tokens)"
            )
        return None  # sent as ignore_eos and min_tokens: vLLM and llama.cpp's server honour them

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        if request.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {request.max_tokens}")
        check_generation_options(
            self.kind, request.options, self.generation_options(), hint=EXTRA_BODY_HINT
        )
        events = EventStream(self._where, chat=self.opts["api"] == "chat")
        lines = LineSplitter(self._where)
        expired = threading.Event()
        sockets = self._sockets

        def expire() -> None:
            expired.set()
            sockets.shut_down()  # wakes the blocked read, before or after the headers

        http: Any = None
        # Armed before the request is sent: the deadline covers the wait for the headers too.
        self._watchdog.arm(self.opts["deadline"], expire)
        try:
            http = self._create(request, expired)
            for data in http.iter_bytes():
                for line in lines.feed(data):
                    chunk = events.feed(line)
                    if chunk is not None:
                        yield chunk
            last, cut = lines.end()
            if last is not None:
                chunk = events.feed_last(last) if cut else events.feed(last)
                if chunk is not None:
                    yield chunk
            if expired.is_set():  # a shut-down socket may end the body quietly
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
        """Any failure of the HTTP library as one of ours; ours and others pass unchanged.

        Transport failures (timeouts, lost connections, cut streams) are transient; a redirect
        loop, a body that does not decode, a URL or protocol the client cannot use are not:
        another attempt would meet them again.
        """
        if isinstance(exc, LLMPerfError):
            return exc
        where = self._where
        httpx = _http_module()
        if isinstance(exc, httpx.TimeoutException):
            return TransientError(
                f"{where} sent nothing for timeout={self.opts['timeout']:g} s "
                f"({chunks} chunks received)",
                kind="timeout",
            )
        if isinstance(exc, httpx.TooManyRedirects):
            return GenerationError(
                f"{where} redirected the request in a loop ({exc}): check the URL"
            )
        if isinstance(exc, httpx.DecodingError):
            return GenerationError(
                f"the body {where} sent could not be decoded after {chunks} chunks ({exc}): a "
                "broken server or proxy, not a busy one"
            )
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
            return GenerationError(f"cannot send the request to {where}: {exc}")
        if isinstance(exc, httpx.TransportError):
            if chunks:
                return TransientError(
                    f"{where} broke the stream after {chunks} chunks: {exc}", kind="stream_cut"
                )
            return TransientError(f"lost {where}: {exc}", kind="connection")
        if isinstance(exc, httpx.HTTPError | httpx.InvalidURL | httpx.StreamError):
            return GenerationError(f"{where}: {type(exc).__name__}: {exc}")
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


def _http_module() -> Any:
    """The HTTP library this openai is built on (``httpx`` for 1.x/2.x, ``httpx2`` for 3.x)."""
    import openai

    client_class = openai.DefaultHttpxClient.__mro__[1]
    return sys.modules[client_class.__module__.split(".")[0]]
