"""The hf backend's generation thread: what ``generate`` may be given, the streamer it feeds,
and how the consumer waits for each step."""

from __future__ import annotations

import queue
import threading
from functools import lru_cache
from typing import Any

from ..errors import GenerationError

__all__ = ["RESERVED_HINT", "Cancelled", "TokenStreamer", "generation_options", "run_generate"]

# Set by ``stream`` itself, or would break one-sequence streaming.
_RESERVED = frozenset(
    ("max_new_tokens", "max_length", "do_sample", "temperature", "streamer", "num_return_sequences")
)
#: Appended to the unknown-option message: why these GenerationConfig fields are not valid.
RESERVED_HINT = f" ({', '.join(sorted(_RESERVED))} are set from max_tokens and temperature)"


@lru_cache(maxsize=1)
def generation_options() -> frozenset[str]:
    """What a request's options may set: GenerationConfig's fields, plus generate's hooks."""
    from transformers import GenerationConfig

    fields = GenerationConfig().to_dict()
    known = {k for k in fields if not k.startswith("_")} | {"logits_processor", "stopping_criteria"}
    return frozenset(known - _RESERVED)


def run_generate(
    model: Any, inputs: dict[str, Any], kwargs: dict[str, Any], streamer: TokenStreamer
) -> None:
    """The generation thread's body: ``generate`` feeds ``streamer``, then None or the
    exception it raised goes onto the queue."""
    try:
        model.generate(**inputs, **kwargs, streamer=streamer)
    except BaseException as exc:  # handed to the consumer, which raises it
        streamer.queue.put(exc)
    else:
        streamer.queue.put(None)


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

    def next(self, timeout_s: float) -> tuple[str, int] | None:
        """The consumer's side: the next step's (text, tokens), or None once generate is done;
        raises GenerationError for what generate raised, or after ``timeout_s`` of silence."""
        try:
            item = self.queue.get(timeout=timeout_s)
        except queue.Empty:
            raise GenerationError(
                f"transformers produced no token for {timeout_s:g} s; the generation "
                "thread looks stuck"
            ) from None
        if isinstance(item, BaseException):
            raise GenerationError(
                f"transformers failed while generating: {type(item).__name__}: {item}"
            ) from item
        return item

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
