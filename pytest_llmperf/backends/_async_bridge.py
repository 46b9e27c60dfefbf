"""A blocking backend stream driven from asyncio through a bounded thread pool.

For SDKs without an async client (boto3): each request runs the backend's ordinary ``stream``
in one of ``limit`` threads, and every item crosses to the event loop with
``call_soon_threadsafe`` as soon as the SDK yields it. The load generator stamps an item when
the loop receives it, so the hop (tens of microseconds when the loop is not saturated) is part
of the measurement, the same for every request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import Chunk, Request, Usage

__all__ = ["ThreadedStreamer"]

_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ThreadedStreamer:
    """Created inside the running loop; ``aclose`` waits for the threads to finish."""

    def __init__(
        self,
        stream: Callable[[Request], Iterator[Chunk | Usage]],
        limit: int,
        name: str,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._stream = stream
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix=name)
        #: Frees what the streams shared (the SDK client), once every thread has finished.
        self._on_close = on_close

    def _pump(self, request: Request, queue: asyncio.Queue[object], stop: threading.Event) -> None:
        put = self._loop.call_soon_threadsafe
        items = self._stream(request)
        try:
            for item in items:
                if stop.is_set():
                    break
                put(queue.put_nowait, item)
        except BaseException as exc:  # handed to the consumer, raised there
            put(queue.put_nowait, _Failed(exc))
        else:
            put(queue.put_nowait, _END)
        finally:
            close: Any = getattr(items, "close", None)
            if close is not None:
                close()  # the consumer stopped early: free the SDK's connection

    async def stream(self, request: Request) -> AsyncIterator[Chunk | Usage]:
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()
        self._loop.run_in_executor(self._pool, self._pump, request, queue, stop)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                assert isinstance(item, Chunk | Usage)
                yield item
        finally:
            stop.set()

    async def aclose(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, True, cancel_futures=True)
        if self._on_close is not None:
            self._on_close()
