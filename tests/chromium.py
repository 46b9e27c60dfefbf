"""Open a local page in real headless Chromium, over the DevTools protocol (stdlib only).

Chromium runs with ``--remote-debugging-pipe``: it reads JSON commands on fd 3 and writes
answers and events on fd 4, each message ending with a NUL byte. One call opens a fresh browser
(its own ``--user-data-dir``), loads the page, collects every console message, uncaught
exception, log entry and network request, evaluates the given expressions in the page, writes a
full-page screenshot and closes the browser. Every wait is bounded; the process is killed in
any case.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FLAGS", "Page", "chromium_path", "open_page"]

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--mute-audio",
)
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@dataclass
class Page:
    dom: str
    values: dict[str, Any]
    screenshot: Path
    console: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Console messages, uncaught exceptions and log entries: a clean page has none."""
        return [*self.console, *self.exceptions, *self.log]


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int, deadline: float) -> None:
        self.write_fd, self.read_fd, self.deadline = write_fd, read_fd, deadline
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if not ready:
                continue
            data = os.read(self.read_fd, 1 << 20)
            if not data:
                raise ConnectionError("Chromium closed the DevTools pipe")
            self.buffer += data
        raw, _, self.buffer = self.buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read_message()
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method} failed: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            if "method" in answer:
                self.events.append(answer)

    def wait_for(self, method: str) -> dict[str, Any]:
        for event in self.events:
            if event["method"] == method:
                return event
        while True:
            event = self._read_message()
            if "method" in event:
                self.events.append(event)
                if event["method"] == method:
                    return event


def _launch(binary: str, profile: str) -> tuple[subprocess.Popen[bytes], int, int]:
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()

    def onto_3_and_4() -> None:  # runs in the child, before exec
        a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
        os.dup2(a, 3)
        os.dup2(b, 4)

    args = [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"]
    proc = subprocess.Popen(
        [*args, "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=onto_3_and_4,
        pass_fds=(3, 4),
    )
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    return proc, to_chrome_w, from_chrome_r


def _describe_console(params: dict[str, Any]) -> str:
    args = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
    return f"console.{params.get('type')}: {' '.join(args)}"


def open_page(
    html: Path,
    screenshot: Path,
    *,
    expressions: Mapping[str, str] | None = None,
    width: int = 1280,
    timeout: float = 60.0,
) -> Page:
    """Load ``html`` (a local file) and return what the browser saw.

    ``expressions`` are JavaScript expressions evaluated in the loaded page (by value).
    Raises ``TimeoutError`` if the browser does not finish within ``timeout`` seconds.
    """
    binary = chromium_path()
    if binary is None:
        raise FileNotFoundError("Chromium is not installed")
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="llmperf-chromium-") as profile:
        proc, write_fd, read_fd = _launch(binary, profile)
        try:
            pipe = _Pipe(write_fd, read_fd, deadline)
            target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
            session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.call(f"{domain}.enable", session)
            pipe.call(
                "Emulation.setDeviceMetricsOverride",
                session,
                width=width,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            pipe.events.clear()  # about:blank's own events
            pipe.call("Page.navigate", session, url=html.resolve().as_uri())
            pipe.wait_for("Page.loadEventFired")
            values = {
                name: pipe.call("Runtime.evaluate", session, expression=expr, returnByValue=True)[
                    "result"
                ].get("value")
                for name, expr in (expressions or {}).items()
            }
            dom = pipe.call(
                "Runtime.evaluate",
                session,
                expression="document.documentElement.outerHTML",
                returnByValue=True,
            )["result"]["value"]
            size = pipe.call("Page.getLayoutMetrics", session)["cssContentSize"]
            height = max(900, min(int(size["height"]) + 1, 16000))
            pipe.call(
                "Emulation.setDeviceMetricsOverride",
                session,
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            shot = pipe.call("Page.captureScreenshot", session, format="png")["data"]
            screenshot.write_bytes(base64.b64decode(shot))
            page = Page(dom=dom, values=values, screenshot=screenshot)
            for event in pipe.events:
                method, params = event["method"], event.get("params", {})
                if method == "Runtime.consoleAPICalled":
                    page.console.append(_describe_console(params))
                elif method == "Runtime.exceptionThrown":
                    page.exceptions.append(json.dumps(params.get("exceptionDetails")))
                elif method == "Log.entryAdded":
                    entry = params.get("entry", {})
                    where = f"{entry.get('level')} {entry.get('source')}"
                    page.log.append(f"{where}: {entry.get('text')}")
                elif method == "Network.requestWillBeSent":
                    page.requests.append(params["request"]["url"])
            with contextlib.suppress(ConnectionError, TimeoutError, RuntimeError):
                pipe.call("Browser.close")  # the wait below ends it either way
            return page
        finally:
            for fd in (write_fd, read_fd):
                os.close(fd)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
