"""llama.cpp's own OpenAI-compatible server (``llama_cpp.server``) on 127.0.0.1, a free port,
in a thread: real HTTP and SSE for the openai backend's and the judge's tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["free_port", "serve"]


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
) -> Iterator[str]:
    """Yields the base URL (``http://127.0.0.1:PORT/v1``) once the server accepts requests.

    ``interrupt_requests`` is the server's own default: a new request cuts the running one."""
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
                model=str(model), model_alias=alias, n_ctx=n_ctx, n_threads=n_threads, verbose=False
            )
        ],
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
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
