"""One deadline at a time on a long-lived thread (the openai backend's whole-request limit)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Watchdog"]


class Watchdog:
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
