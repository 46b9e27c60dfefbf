"""The openai backend's concurrent path for ``llm_load``: the SDK's async HTTP client, streaming.

The same request body, headers, event parsing and error translation as the blocking path
(:class:`~pytest_llmperf.backends.openai.OpenAIBackend`), on ``openai.DefaultAsyncHttpxClient`` so
one event loop keeps hundreds of requests in flight. Its connection pool is sized to the load's
concurrency, so requests never queue for a connection inside the client (which would count as
server latency). ``deadline`` bounds each whole request (a timer that cancels the task); lines
and error bodies are read under the same caps as on the blocking path.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest, LLMPerfError
from . import Chunk, Request, Usage, check_generation_options
from ._openai_events import BodyPrefix, EventStream, LineSplitter
from ._openai_request import EXTRA_BODY_HINT, request_body
from .openai import _http_module

if TYPE_CHECKING:
    from .openai import OpenAIBackend

__all__ = ["AsyncOpenAIStreamer"]


class AsyncOpenAIStreamer:
    """Created inside the load generator's event loop; ``aclose`` before the loop ends."""

    def __init__(self, backend: OpenAIBackend, limit: int) -> None:
        import openai

        limits = _http_module().Limits(max_connections=limit, max_keepalive_connections=limit)
        self._backend = backend
        self._http = openai.DefaultAsyncHttpxClient(timeout=backend.http_timeout(), limits=limits)

    async def stream(self, request: Request) -> AsyncIterator[Chunk | Usage]:
        backend = self._backend
        if request.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {request.max_tokens}")
        check_generation_options(
            backend.kind, request.options, backend.generation_options(), hint=EXTRA_BODY_HINT
        )
        path, body = request_body(backend, request)
        events = EventStream(backend._where, chat=path == "/chat/completions")
        lines = LineSplitter(backend._where)
        response: Any = None
        # asyncio.timeout is 3.11+: the same thing by hand, cancelling this task at the deadline.
        task = asyncio.current_task()
        expired = asyncio.Event()

        def expire() -> None:
            expired.set()
            if task is not None:
                task.cancel()

        deadline = backend.opts["deadline"]
        # A nan would sit in the loop's timer heap, where it breaks the ordering of every timer.
        timer = (
            asyncio.get_running_loop().call_later(deadline, expire)
            if math.isfinite(deadline)
            else None
        )
        try:
            http = self._http
            outgoing = http.build_request(
                "POST", backend._base_url + path, headers=backend._headers, content=json.dumps(body)
            )
            response = await http.send(outgoing, stream=True)
            if response.status_code >= 400:
                prefix = BodyPrefix()
                async for data in response.aiter_bytes():
                    if prefix.feed(data):
                        break  # enough to quote; an endless error body is not read to its end
                raise backend.status_error(response.status_code, response.headers, prefix.text)
            async for data in response.aiter_bytes():
                for line in lines.feed(data):
                    chunk = events.feed(line)
                    if chunk is not None:
                        yield chunk
            last, cut = lines.end()
            if last is not None:
                chunk = events.feed_last(last) if cut else events.feed(last)
                if chunk is not None:
                    yield chunk
            events.check_end()
        except asyncio.CancelledError as exc:
            if not expired.is_set():
                raise
            uncancel = getattr(task, "uncancel", None)  # 3.11+: the cancel was ours
            if uncancel is not None:
                uncancel()
            raise backend._deadline_error(events.chunks) from exc
        except LLMPerfError:
            raise
        except Exception as exc:
            translated = backend._translate(exc, events.chunks)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            if timer is not None:
                timer.cancel()
            if response is not None:
                await response.aclose()
        yield events.usage_item()

    async def aclose(self) -> None:
        await self._http.aclose()
