"""Which benchmark and which sample is running, shown while a long run goes on.

``--llm-progress`` (ini ``llm_progress``):

- ``auto`` (default): shown only on an interactive terminal, not under ``-q``, not in CI (``CI``
  or ``BUILD_NUMBER`` set, the variables pytest itself checks) and never on an xdist worker,
  whose output does not reach the terminal;
- ``on``: shown even under ``-q`` and when the output is not a terminal (xdist workers still
  cannot show it);
- ``off``: never.

On a terminal one status line is kept up to date in place, after whatever pytest has written on
the current line, and erased before pytest reports the test: the output that stays on screen is
what pytest alone would have printed. Elsewhere (a log file, a pipe) a plain line starts each
batch of samples (the warm-up, each sequential look), never one line per sample.

Every write happens between two generations, never inside a timed one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["Progress", "Ticker"]

#: The fewest columns of a test name worth showing.
_MIN_COLUMNS = 12


class Progress:
    """The session's progress display: decides whether and how to show, owns the status line.

    Registered as a plugin (plugin.py) so that it can clear its line before each test report.
    """

    def __init__(self, config: pytest.Config, mode: str, *, worker: bool) -> None:
        self._config = config
        self._mode = mode
        self._worker = worker
        #: "tty" (one line updated in place), "lines" (a line per batch) or None (silent);
        #: decided at session start, once the terminal reporter exists.
        self.style: str | None = None
        self._shown = 0  # columns of the status now on screen after pytest's own text
        self._batch: tuple[Any, ...] | None = None
        self._reporter: Any = None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self) -> None:
        self.style = self._decide()

    def _decide(self) -> str | None:
        if self._mode == "off" or self._worker:
            return None
        reporter = self._config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return None
        self._reporter = reporter
        tty = bool(reporter.isatty)  # a bool, or a callable bool in newer pytest
        if self._mode == "auto":
            quiet = int(self._config.getoption("verbose")) < 0
            ci = any(name in os.environ for name in ("CI", "BUILD_NUMBER"))  # as pytest
            if not tty or quiet or ci:
                return None
        return "tty" if tty else "lines"

    def show(self, label: str, detail: str, batch: tuple[Any, ...], line: str) -> None:
        """On a terminal: ``label`` (the benchmark) and ``detail`` (the sample) in place. Else:
        ``line``, printed when ``batch`` differs from the previous call's."""
        if self.style == "lines":
            if batch != self._batch:
                self._batch = batch
                writer = self._config.get_terminal_writer()
                with self._uncaptured():
                    self._reporter.ensure_newline()  # pytest then re-writes its prefix
                    if writer.width_of_current_line:  # -q: dots with no prefix
                        writer.line()
                    self._reporter.write_line(line)
        elif self.style == "tty":
            writer = self._config.get_terminal_writer()
            used = writer.width_of_current_line
            room = writer.fullwidth - used - 2
            text = _fit(label, detail, room)
            if text and used:
                text = " " + text
            with self._uncaptured():
                # Raw writes: pytest's idea of the current line (and so its "[ 50%]" column)
                # never includes the status.
                _write_raw(writer, self._erase() + text)
            self._shown = len(text)

    def start(self) -> None:
        """A new benchmark: its first batch gets a line even if shaped like the last one's."""
        self._batch = None

    def clear(self) -> None:
        if self.style == "tty" and self._shown:
            with self._uncaptured():
                _write_raw(self._config.get_terminal_writer(), self._erase())
            self._shown = 0
        self._batch = None

    def _erase(self) -> str:
        # Back over the status, then erase to the end of the line.
        return f"\x1b[{self._shown}D\x1b[K" if self._shown else ""

    @contextlib.contextmanager
    def _uncaptured(self) -> Iterator[None]:
        # During a test pytest captures output at the file-descriptor level: the status must
        # bypass that capture, as pytest's live logging does.
        capture = self._config.pluginmanager.get_plugin("capturemanager")
        if capture is None:
            yield
            return
        with capture.global_and_fixture_disabled():
            yield

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self) -> None:
        self.clear()  # before the terminal reporter writes the test's outcome

    def pytest_keyboard_interrupt(self) -> None:
        self.clear()


def _write_raw(writer: Any, text: str) -> None:
    if hasattr(writer, "write_raw"):
        writer.write_raw(text, flush=True)
    else:  # pytest < 9: the writer's own stream, past its record of the current line
        writer._file.write(text)
        writer._file.flush()


def _fit(label: str, detail: str, room: int) -> str:
    """The status in ``room`` columns: the sample count is kept, the test name shortened."""
    text = f"llmperf: {label} {detail}"
    if len(text) <= room:
        return text
    keep = room - len(detail) - 4  # "..." and a space
    if keep >= _MIN_COLUMNS:
        return f"...{label[-keep:]} {detail}"
    return detail if len(detail) <= room else ""


class Ticker:
    """One benchmark's progress; ``progress=None`` makes every call a no-op."""

    def __init__(self, progress: Progress | None, nodeid: str, name: str, most: int) -> None:
        self._progress = progress if progress is not None and progress.style else None
        if self._progress is not None:
            self._progress.start()
        label = nodeid.rsplit("::", 1)[-1]
        self._label = f"{label}:{name}" if name else label
        self._most = most
        self._phase = "sample"

    def warmup(self, done: int, total: int) -> None:
        """Before warm-up generation ``done`` (1-based) of ``total``."""
        if self._progress is None:
            return
        self._progress.show(
            self._label,
            f"warm-up {done}/{total}",
            ("warm-up",),
            f"llmperf: {self._label} warm-up, {total} run(s)",
        )

    def sample(self, done: int, total: int) -> None:
        """Before timed generation ``done`` (1-based); ``total``: the current look's count."""
        if self._progress is None:
            return
        more = f" (up to {self._most})" if self._most > total else ""
        self._progress.show(
            self._label,
            f"{self._phase} {done}/{total}{more}",
            (self._phase, total),
            f"llmperf: {self._label} {self._phase}s {done}-{total}{more}",
        )

    def rerun(self) -> None:
        """The samples that follow re-run the benchmark to confirm a regression."""
        self._phase = "confirmation sample"
