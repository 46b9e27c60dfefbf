"""The openai backend's whole-request deadline on the blocking path: one long-lived timer thread
(:class:`Watchdog`) and the sockets it shuts down when a deadline passes (:class:`Sockets`).

A read blocked in another thread cannot be interrupted from Python, and closing its socket
does not wake it (on Linux the read goes on waiting on the closed descriptor until its own
timeout). ``shutdown()`` does: the blocked read returns end-of-file at once, whether the
request was still waiting for its response headers or reading the body.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Sockets", "Watchdog"]

#: The longest single wait: ``Condition.wait`` refuses timeouts beyond the platform's time_t,
#: and a deadline far away is simply waited for in steps.
_MAX_WAIT_S = 3600.0
_CONNECTED = (".connect_tcp.complete", ".connect_unix_socket.complete", ".start_tls.complete")


class Watchdog:
    """Calls a callback once a deadline passes, unless disarmed first; one thread for the
    backend's lifetime, since starting a timer thread per request costs ~0.5 ms here.

    Nothing a caller passes may end the thread: an infinite deadline means none, and a callback
    that raises is the last of its own request only.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: float | None = None
        self._callback: Callable[[], None] | None = None
        self._stopped = False
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, callback: Callable[[], None]) -> None:
        if math.isnan(seconds):
            raise ValueError("deadline: nan is not a number of seconds")
        with self._cond:
            if math.isinf(seconds) and seconds > 0:
                self._due = self._callback = None  # no deadline at all
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="llmperf-openai-deadline", daemon=True
                )
                self._thread.start()
            self._due, self._callback = time.monotonic() + seconds, callback
            self._cond.notify()

    def disarm(self) -> None:
        """After this returns, the callback armed before it never runs (it runs under the
        same lock, so a callback already running has finished)."""
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
                    self._cond.wait(min(left, _MAX_WAIT_S))
                    continue
                callback, self._due, self._callback = self._callback, None, None
                if callback is not None:
                    # A callback that raises ends its own request only, never the thread.
                    with contextlib.suppress(Exception):
                        callback()


class Sockets:
    """The sockets one HTTP client has opened, learnt from httpcore's ``trace`` extension (each
    request passes :meth:`tracer`): the one way to reach a connection before its response
    headers arrive, which httpx does not expose.

    The blocking path runs one request at a time (one watchdog, one deadline), so when a
    deadline passes every socket of the client is shut down: the request's own, and idle
    keep-alive ones, which the pool notices (an idle socket that reads end-of-file is stale)
    and replaces on the next request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def tracer(self, expired: threading.Event) -> Callable[[str, Mapping[str, Any]], None]:
        """The ``trace`` callback for one request: a connection it opens after its deadline
        passed is shut down as it opens (the watchdog fired before it could see it)."""

        def trace(event: str, info: Mapping[str, Any]) -> None:
            if not event.endswith(_CONNECTED):
                return
            stream = info.get("return_value")
            sock = None if stream is None else stream.get_extra_info("socket")
            if not isinstance(sock, socket.socket):
                return
            with self._lock:
                self._open.add(sock)
            if expired.is_set():
                _shut(sock)

        return trace

    def shut_down(self) -> None:
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also under TLS: SSLSocket.shutdown would drop its SSL object
    # under the reading thread. OSError: already closed, nothing to wake.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
