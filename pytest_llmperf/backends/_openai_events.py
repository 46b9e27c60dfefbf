"""Reading an OpenAI-compatible server's answer, bounded: the blocking and the ``llm_load`` path
both split the body into lines, parse the server-sent events and read error bodies with this.

Nothing here trusts the server's sizes or numbers. A line (one event) longer than
:data:`MAX_LINE_BYTES` ends the request instead of growing the process without limit; an error
body is read only up to :data:`ERROR_BODY_BYTES`; token counts must be counts
(:func:`~pytest_llmperf.harness.token_count`); text must be text. Events are parsed with plain
``json.loads`` (the SDK's model objects cost ~0.3 ms per chunk of client CPU that would land in
every TTFT and ITL); the line cap bounds its input, and whatever it raises on a hostile line
(bad JSON, a 100k-deep array, a 5000-digit number) is a malformed event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import GenerationError, TransientError
from ..harness import MAX_OUTPUT_TOKENS, token_count
from ..numeric import MAX_COUNT, json_loads
from . import Chunk, Usage

__all__ = [
    "ERROR_BODY_BYTES",
    "MAX_LINE_BYTES",
    "BodyPrefix",
    "EventStream",
    "LineSplitter",
    "chunk_tokens",
    "error_detail",
]

#: One line of the event stream, i.e. one event's data. Real events are a few hundred bytes;
#: a whole long answer in one event stays far below this.
MAX_LINE_BYTES = 1024 * 1024
#: Enough of an error body to quote the server's message.
ERROR_BODY_BYTES = 64 * 1024
#: What a malformed event raises inside ``json.loads`` and the field lookups.
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError)


class LineSplitter:
    """Bytes in, complete lines out (LF, CRLF or CR, as server-sent events allow)."""

    def __init__(self, where: str, limit: int = MAX_LINE_BYTES) -> None:
        self.where = where
        self.limit = limit
        self._tail = b""

    def feed(self, data: bytes) -> list[str]:
        if self._tail:
            data = self._tail + data
        lines = data.splitlines(keepends=True)
        # The last piece may be unfinished, or a CR whose LF is in the next read.
        self._tail = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        if len(self._tail) > self.limit or any(len(line) > self.limit for line in lines):
            raise GenerationError(
                f"{self.where} sent a line longer than {self.limit // (1024 * 1024)} MiB: "
                "not a server-sent event stream"
            )
        # Undecodable bytes become U+FFFD, as httpx's own line reader does.
        return [line.rstrip(b"\r\n").decode(errors="replace") for line in lines]

    def end(self) -> tuple[str | None, bool]:
        """At the body's end: a last line, and whether it was cut short (no line ending)."""
        tail, self._tail = self._tail, b""
        if not tail:
            return None, False
        if tail.endswith(b"\r"):
            return tail.rstrip(b"\r").decode(errors="replace"), False
        return tail.decode(errors="replace"), True


class BodyPrefix:
    """The first :data:`ERROR_BODY_BYTES` of a body; ``feed`` says when to stop reading."""

    def __init__(self, limit: int = ERROR_BODY_BYTES) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> bool:
        room = self.limit - self._size
        self._parts.append(data[:room])
        self._size += min(len(data), room)
        return self._size >= self.limit

    @property
    def text(self) -> str:
        return b"".join(self._parts).decode(errors="replace")


class EventStream:
    """One streamed completion's server-sent events, fed a line at a time."""

    def __init__(self, where: str, *, chat: bool) -> None:
        self.where = where
        self.chat = chat
        self.usage: dict[str, int | None] | None = None
        self.chunks = 0  # content events received
        self.counted = 0  # output tokens they carried
        self.finished = False
        self.done = False

    def feed(self, line: str) -> Chunk | None:
        if self.done or not line.startswith("data:"):
            return None  # blank separators, ": ping" comments, "event:" names, after [DONE]
        data = line[5:].strip()
        if data == "[DONE]":
            # The caller reads on to the body's end rather than stop here: a response closed
            # unread takes its connection with it, and the next request would pay a new TCP
            # (and TLS) handshake inside its TTFT. [DONE] alone does not finish a generation:
            # a server that cuts one short (llama_cpp.server's interrupt_requests) sends it too.
            self.done = True
            return None
        try:
            return self._event(json.loads(data))
        except _MALFORMED as exc:
            # A malformed event would make any token count a guess: fail, do not skip it.
            raise GenerationError(
                f"{self.where} sent a malformed server-sent event after {self.chunks} chunks: "
                f"{_short(exc)}"
            ) from exc

    def feed_last(self, line: str) -> Chunk | None:
        """The body ended in the middle of this line: a complete event is still an event, a
        partial one means the stream was cut, which another attempt may not see."""
        try:
            return self.feed(line)
        except GenerationError as exc:
            raise TransientError(
                f"{self.where} ended the stream in the middle of an event after "
                f"{self.chunks} chunks",
                kind="stream_cut",
            ) from exc

    def _event(self, event: Mapping[str, Any]) -> Chunk | None:
        if event.get("error"):
            raise GenerationError(f"{self.where} sent an error event: {event['error']!s:.500}")
        usage = event.get("usage")
        if usage:
            self.usage = self._counts(usage)
        choices = event.get("choices")
        if not choices:
            return None
        self.finished = self.finished or bool(choices[0].get("finish_reason"))
        text = choices[0]["delta"].get("content") if self.chat else choices[0].get("text")
        if text is None or text == "":
            return None
        if not isinstance(text, str):
            field = "content" if self.chat else "text"
            raise TypeError(f"{field} is {text!r:.40}, not text")
        self.chunks += 1
        total = self.usage.get("completion_tokens") if usage and self.usage else None
        tokens, self.counted = chunk_tokens(total, self.counted)
        return Chunk(text, tokens)

    def _counts(self, usage: Mapping[str, Any]) -> dict[str, int | None]:
        counts: dict[str, int | None] = {}
        for name, high in (("prompt_tokens", MAX_COUNT), ("completion_tokens", MAX_OUTPUT_TOKENS)):
            value = usage.get(name)
            try:
                counts[name] = None if value is None else token_count(value, what=name, high=high)
            except ValueError as exc:
                raise GenerationError(
                    f"{self.where} sent usage {exc} after {self.chunks} chunks"
                ) from exc
        return counts

    def check_end(self) -> None:
        # finish_reason is what says the generation ended ("stop", "length"); some servers
        # omit [DONE] after it. Without it the stream was cut, whether or not [DONE] came.
        if self.finished:
            return
        how = "sent [DONE] without a finish_reason" if self.done else "ended the stream"
        raise TransientError(
            f"{self.where} {how} after {self.chunks} chunks: the generation was cut short",
            kind="stream_cut",
        )

    def usage_item(self) -> Usage:
        if self.usage is None:
            return Usage(None, "chunks")
        usage = self.usage
        return Usage(
            usage.get("prompt_tokens"), "usage", output_tokens=usage.get("completion_tokens")
        )


def chunk_tokens(total: int | None, counted: int) -> tuple[int, int]:
    """Output tokens one content event carries, and the running count after it.

    Servers that send a running ``usage.completion_tokens`` (``total``, already checked to be a
    count) with every chunk (vLLM's continuous usage stats) say how many tokens a batched chunk
    holds; otherwise a content delta is one.

    >>> chunk_tokens(3, 1)
    (2, 3)
    >>> chunk_tokens(None, 3)
    (1, 4)
    """
    if total is not None and total > counted:
        return total - counted, total
    return 1, counted + 1


def error_detail(text: str) -> str:
    """The server's own message from an error body (OpenAI's ``{"error": {"message"}}``
    shape, else the text), kept short."""
    try:
        error = json_loads(text).get("error")  # bounded: an error body is the server's too
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    detail = str(message) if message else text.strip()
    return detail[:500] or "(empty body)"


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."
