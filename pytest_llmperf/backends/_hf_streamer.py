"""The streamer ``generate`` feeds in the hf backend's generation thread."""

from __future__ import annotations

import queue
import threading
from typing import Any

__all__ = ["Cancelled", "TokenStreamer"]


class Cancelled(Exception):
    """Raised inside ``generate`` once the consumer has stopped listening."""


class TokenStreamer:
    """What ``generate`` calls with each decoding step: ``put(ids)``, then ``end()``.

    This is ``transformers.generation.streamers.BaseStreamer`` by duck typing (``generate``
    checks for nothing else): a subclass would import transformers whenever the plugin merely
    registers its backends. Text is decoded over a sliding window (prefix/read offsets, as in
    text-generation-inference), so a step costs the same however long the output grows.
    """

    def __init__(self, tokenizer: Any, stop_ids: frozenset[int]) -> None:
        # (text, tokens) per step; then None once generate returns, or the exception it raised
        self.queue: queue.Queue[tuple[str, int] | BaseException | None] = queue.Queue()
        self.cancel = threading.Event()
        self._tokenizer, self._stop_ids = tokenizer, stop_ids
        self._ids: list[int] = []
        self._prefix = self._read = 0
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if self.cancel.is_set():
            raise Cancelled
        if not self._prompt_seen:  # generate's first put is the prompt
            self._prompt_seen = True
            return
        new = [t for t in map(int, value.reshape(-1).tolist()) if t not in self._stop_ids]
        if new:
            self._ids.extend(new)
            self.queue.put((self._delta(final=False), len(new)))

    def end(self) -> None:
        if text := self._delta(final=True):
            self.queue.put((text, 0))

    def _delta(self, *, final: bool) -> str:
        decode = self._tokenizer.decode
        before = str(decode(self._ids[self._prefix : self._read], skip_special_tokens=True))
        text = str(decode(self._ids[self._prefix :], skip_special_tokens=True))
        if not final and (len(text) <= len(before) or text.endswith("\ufffd")):
            return ""  # held back: an incomplete character, or no text yet
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(before) :]
