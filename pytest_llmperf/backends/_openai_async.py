"""The openai backend's concurrent path for ``llm_load``: ``openai.AsyncOpenAI``, streaming.

The same request body, event parsing and error translation as the blocking path
(:class:`~pytest_llmperf.backends.openai.OpenAIBackend`), on the SDK's async client so one event
loop keeps hundreds of requests in flight. The client's connection pool is sized to the load's
concurrency, so requests never queue for a connection inside the client (which would count as
server latency). ``deadline`` bounds each whole request with ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import GenerationError, InvalidRequest, TransientError
from . import Chunk, Request, Usage

if TYPE_CHECKING:
    from .openai import OpenAIBackend

__all__ = ["AsyncOpenAIStreamer", "chunk_tokens"]


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


def _http_module() -> Any:
    """The HTTP library openai is built on (``httpx`` for 1.x/2.x, ``httpx2`` for 3.x)."""
    import openai

    client_class = openai.DefaultAsyncHttpxClient.__mro__[1]
    return sys.modules[client_class.__module__.split(".")[0]]


def request_body(backend: OpenAIBackend, request: Request) -> tuple[str, dict[str, Any]]:
    """The endpoint path and JSON body for one request."""
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


class AsyncOpenAIStreamer:
    """Created inside the load generator's event loop; ``aclose`` before the loop ends."""

    def __init__(self, backend: OpenAIBackend, limit: int) -> None:
        import openai

        http = _http_module()
        self._backend = backend
        self._http = http
        self._client = openai.AsyncOpenAI(
            base_url=backend.spec.base_url,
            api_key=backend._api_key() or "not-needed",
            timeout=backend.opts["timeout"],
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(
                limits=http.Limits(max_connections=limit, max_keepalive_connections=limit)
            ),
        )

    async def stream(self, request: Request) -> AsyncIterator[Chunk | Usage]:
        backend = self._backend
        if request.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {request.max_tokens}")
        path, body = request_body(backend, request)
        chat = path == "/chat/completions"
        usage: dict[str, Any] | None = None
        chunks = counted = 0
        finished = False
        response: Any = None
        # asyncio.timeout is 3.11+: the same thing by hand, cancelling this task at the deadline.
        task = asyncio.current_task()
        expired = asyncio.Event()

        def expire() -> None:
            expired.set()
            if task is not None:
                task.cancel()

        timer = asyncio.get_running_loop().call_later(backend.opts["deadline"], expire)
        try:
            response = await self._client.post(
                path, cast_to=self._http.Response, body=body, stream=True
            )
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, ": ping" comments, "event:" names
                data = line[5:].strip()
                if data == "[DONE]":
                    finished = True
                    continue  # read to the end so the connection goes back to the pool
                event = json.loads(data)
                if event.get("error"):
                    raise GenerationError(f"{backend._where} sent an error event: {event['error']}")
                if event.get("usage"):
                    usage = event["usage"]
                choices = event.get("choices")
                if not choices:
                    continue
                finished = finished or bool(choices[0].get("finish_reason"))
                delta = choices[0]["delta"].get("content") if chat else choices[0].get("text")
                if delta:
                    chunks += 1
                    tokens, counted = chunk_tokens(event, counted)
                    yield Chunk(delta, tokens)
            if not finished:
                raise TransientError(
                    f"{backend._where} ended the stream without [DONE] after {chunks} chunks",
                    kind="stream_cut",
                )
        except asyncio.CancelledError as exc:
            if not expired.is_set():
                raise
            uncancel = getattr(task, "uncancel", None)  # 3.11+: the cancel was ours
            if uncancel is not None:
                uncancel()
            raise backend._deadline_error(chunks) from exc
        except (TransientError, InvalidRequest):
            raise
        except Exception as exc:
            translated = backend._translate(exc, chunks)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            timer.cancel()
            if response is not None:
                await response.aclose()
        if usage is not None:
            yield Usage(
                usage.get("prompt_tokens"), "usage", output_tokens=usage.get("completion_tokens")
            )
        else:
            yield Usage(None, "chunks")

    async def aclose(self) -> None:
        await self._client.close()
