"""llama.cpp's own OpenAI-compatible server (``llama_cpp.server``) on 127.0.0.1, a free port,
in a thread: real HTTP and SSE for the openai backend's and the judge's tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["free_port", "serve"]

_HOLD_CAP_S = 60.0  # only a broken set-up waits this long; normally the wait is milliseconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(
    model: Path,
    alias: str,
    *,
    n_ctx: int = 512,
    n_threads: int = 1,
    interrupt_requests: bool = True,
    hold_until_queued: int | None = None,
    chat_format: str | None = None,
) -> Iterator[str]:
    """Yields the base URL (``http://127.0.0.1:PORT/v1``) once the server accepts requests.

    ``interrupt_requests`` is the server's own default: a new request cuts the running one.
    ``hold_until_queued=N`` scripts that cut instead of racing for it: each response is held
    back until another request waits for the model (or all N requests have arrived), so the
    running stream always sees a waiting request, on a slow machine or a fast one.

    ``chat_format`` is llama-cpp-python's (``gemma``, ``chatml``, ...); None: the server's own
    choice, the GGUF's template or, without one (the embedded model), ``llama-2``."""
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    port = free_port()
    app = create_app(
        server_settings=ServerSettings(
            host="127.0.0.1", port=port, interrupt_requests=interrupt_requests
        ),
        model_settings=[
            ModelSettings(
                model=str(model),
                model_alias=alias,
                n_ctx=n_ctx,
                n_threads=n_threads,
                chat_format=chat_format,
                verbose=False,
            )
        ],
    )
    asgi = app if hold_until_queued is None else _HoldUntilQueued(app, hold_until_queued)
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("llama_cpp.server did not start within 60 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


class _HoldUntilQueued:
    """ASGI middleware: a completion's response body waits until llama_cpp.server's outer lock
    is taken (another request queues for the model) or every expected request has arrived.

    While the body is held, the server's generator blocks on its 10-slot channel; released, its
    next check of ``interrupt_requests`` finds the waiting request and cuts the stream."""

    def __init__(self, app: Any, expected: int) -> None:
        self.app, self.expected, self.arrived = app, expected, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/completions"):
            await self.app(scope, receive, send)
            return
        self.arrived += 1
        held = True

        async def held_send(message: Any) -> None:
            nonlocal held
            if held and message["type"] == "http.response.body":
                held = False
                await self._wait_for_queue()
            await send(message)

        await self.app(scope, receive, held_send)

    async def _wait_for_queue(self) -> None:
        import asyncio

        from llama_cpp.server.app import llama_outer_lock

        stop = time.monotonic() + _HOLD_CAP_S
        while not llama_outer_lock.locked() and self.arrived < self.expected:
            if time.monotonic() > stop:
                return
            await asyncio.sleep(0.005)
