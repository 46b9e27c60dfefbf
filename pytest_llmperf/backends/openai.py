"""The OpenAI API and OpenAI-compatible servers (vLLM, llama.cpp server, ollama, ...).

``openai:MODEL`` talks to the OpenAI API (``OPENAI_API_KEY``); ``openai:MODEL@BASE_URL`` to any
compatible server. Streams chat completions (``?api=completions`` for the legacy endpoint) and
asks for usage in the stream; servers that ignore that (llama.cpp's does) are counted one token
per content delta, and ``token_source`` says which happened.

The SDK never retries: a 429, 5xx, timeout or cut stream becomes a
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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BackendUnavailable, GenerationError, InvalidRequest, TransientError
from ..options import Option
from ..spec import LLMSpec
from . import Chunk, Request, Usage

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
        self._watchdog = _Watchdog()

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

        Through the SDK's documented ``client.post(path, cast_to=<http Response>)``: the SDK
        still authenticates, applies timeouts and raises its typed HTTP errors, but skips the
        per-request type transformation of ``chat.completions.create`` (about 1 ms of client
        CPU in every TTFT; see benchmarks/backends.py).
        """
        body: dict[str, Any] = {
            "model": self.spec.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
            **request.options,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if self.opts["api"] == "completions":
            if not isinstance(request.prompt, str):
                raise InvalidRequest("api=completions takes a string prompt, not chat messages")
            body["prompt"] = request.prompt
            path = "/completions"
        else:
            prompt = request.prompt
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            body["messages"] = list(messages)
            path = "/chat/completions"
        return self._client.post(path, cast_to=_http_module().Response, body=body, stream=True)

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        # The SDK builds the request, authenticates and raises typed HTTP errors; the event
        # stream is parsed here with plain json.loads, because the SDK's model objects cost
        # ~0.3 ms per chunk of client CPU that would land in every TTFT and ITL (see
        # benchmarks/backends.py).
        if request.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {request.max_tokens}")
        usage: dict[str, Any] | None = None
        chat = self.opts["api"] == "chat"
        chunks = 0
        finished = False
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
            done = False
            for line in http.iter_lines():
                if done or not line.startswith("data:"):
                    continue  # blank separators, ": ping" comments, "event:" names
                data = line[5:].strip()
                if data == "[DONE]":
                    # Read on to the body's end rather than break: a response closed unread
                    # takes its connection with it, and the next request would pay a new TCP
                    # (and TLS) handshake inside its TTFT.
                    finished = done = True
                    continue
                event = json.loads(data)
                if event.get("error"):
                    raise GenerationError(f"{self._where} sent an error event: {event['error']}")
                if event.get("usage"):
                    usage = event["usage"]
                choices = event.get("choices")
                if not choices:
                    continue
                finished = finished or bool(choices[0].get("finish_reason"))
                text = choices[0]["delta"].get("content") if chat else choices[0].get("text")
                if text:
                    chunks += 1
                    yield Chunk(text, 1)
            else:
                if expired.is_set():  # closing the response may end the iteration quietly
                    raise self._deadline_error(chunks)
                if not finished:  # some servers omit [DONE] after a finish_reason
                    raise TransientError(
                        f"{self._where} ended the stream without [DONE] after {chunks} chunks",
                        kind="stream_cut",
                    )
        except Exception as exc:
            if expired.is_set() and not isinstance(exc, TransientError):
                raise self._deadline_error(chunks) from exc
            translated = self._translate(exc, chunks)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            if armed:
                self._watchdog.disarm()
            if http is not None:
                http.close()  # also when the consumer stops early: free the connection
        if usage is not None:
            yield Usage(
                usage.get("prompt_tokens"), "usage", output_tokens=usage.get("completion_tokens")
            )
        else:
            yield Usage(None, "chunks")

    def open_async(self, limit: int) -> Any:
        """``llm_load``'s concurrent streams, on ``openai.AsyncOpenAI`` (``_openai_async``)."""
        from ._openai_async import AsyncOpenAIStreamer

        return AsyncOpenAIStreamer(self, limit)

    def _deadline_error(self, chunks: int) -> TransientError:
        return TransientError(
            f"{self._where} did not finish within deadline={self.opts['deadline']:g} s "
            f"({chunks} chunks received)",
            kind="timeout",
        )

    def _translate(self, exc: Exception, chunks: int) -> Exception:
        """The SDK's exception as one of ours; unknown exceptions pass through unchanged."""
        import openai

        where = self._where
        if isinstance(exc, openai.APITimeoutError):
            return TransientError(
                f"{where} sent nothing for timeout={self.opts['timeout']:g} s "
                f"({chunks} chunks received)",
                kind="timeout",
            )
        if isinstance(exc, _transport_errors()):
            # Raised while reading the body, outside the SDK's own error translation.
            timeout = "Timeout" in type(exc).__name__
            if timeout:
                return TransientError(
                    f"{where} sent nothing for timeout={self.opts['timeout']:g} s "
                    f"({chunks} chunks received)",
                    kind="timeout",
                )
            kind = "stream_cut" if chunks else "connection"
            return TransientError(
                f"{where} broke the stream after {chunks} chunks: {exc}", kind=kind
            )
        if isinstance(exc, openai.APIConnectionError):
            if chunks:
                return TransientError(
                    f"{where} cut the stream after {chunks} chunks: {exc}", kind="stream_cut"
                )
            return TransientError(f"lost {where}: {exc}", kind="connection")
        if isinstance(exc, openai.RateLimitError):
            return TransientError(
                f"{where} rate-limited the request (HTTP 429): {exc}",
                kind="rate_limit",
                retry_after=_retry_after(exc.response.headers),
            )
        if isinstance(exc, openai.InternalServerError):
            return TransientError(
                f"{where} failed with HTTP {exc.status_code}: {exc}",
                kind="server_error",
                retry_after=_retry_after(exc.response.headers),
            )
        if isinstance(exc, openai.AuthenticationError):
            return GenerationError(f"{where} refused the API key (HTTP 401): {exc}")
        if isinstance(exc, openai.NotFoundError):
            return GenerationError(
                f"{where} does not know model {self.spec.model!r} (HTTP 404): {exc}"
            )
        if isinstance(exc, openai.APIStatusError):
            return GenerationError(f"{where} answered HTTP {exc.status_code}: {exc}")
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
        if self._client is not None:
            self._client.close()
            self._client = None


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


class _Watchdog:
    """Calls a callback once a deadline passes, unless disarmed first; one thread for the
    backend's lifetime, since starting a timer thread per request costs ~0.5 ms here."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: float | None = None
        self._callback: Callable[[], None] | None = None
        self._stopped = False
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, callback: Callable[[], None]) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="llmperf-openai-deadline", daemon=True
                )
                self._thread.start()
            self._due, self._callback = time.monotonic() + seconds, callback
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._due = self._callback = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._stopped = False

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._due is None:
                    self._cond.wait()
                    continue
                left = self._due - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                callback, self._due, self._callback = self._callback, None, None
                if callback is not None:
                    callback()
