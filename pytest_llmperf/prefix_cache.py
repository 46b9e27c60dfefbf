"""Defeating a server's prompt-prefix cache, so that prefill is measured rather than skipped.

llama.cpp's server, vLLM and SGLang keep the KV cache of recent prompts: every request after
the first that shares a prefix skips its prefill, and TTFT then measures a cache hit (~38 ms
against ~1.4 s in-process for the shipped 512-token prompt). ``prefix_cache="bust"`` puts a
short nonce at the very start of each prompt, so no two requests share a prefix; servers with a
request field for it are also asked not to cache (see the backends). ``"allow"`` leaves the
prompt alone: the honest setting for a chat app whose requests do share a system prompt.

The nonce has a fixed shape (ten decimal digits in brackets), so every request carries the same
number of extra tokens on tokenizers that split digits (Gemma, Llama 3) and nearly the same on
others.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from .errors import InvalidRequest

__all__ = ["MODES", "Nonces", "check_mode", "with_nonce"]

#: ``allow``: whatever the server does (the default); ``bust``: a unique prefix per request.
MODES = ("allow", "bust")

Prompt = str | Sequence[Mapping[str, str]]


def check_mode(value: object) -> str:
    """``value`` if it is one of :data:`MODES`, else InvalidRequest (a ValueError) naming them."""
    if value not in MODES:
        raise InvalidRequest(f"prefix_cache={value!r}; valid: {', '.join(MODES)}")
    return str(value)


def with_nonce(prompt: Prompt, nonce: str) -> Prompt:
    """``prompt`` with ``nonce`` in front of its first text: the string, or the first message."""
    if isinstance(prompt, str):
        return f"{nonce} {prompt}"
    messages = [dict(m) for m in prompt]
    if messages:
        messages[0]["content"] = f"{nonce} {messages[0].get('content', '')}"
    return messages


class Nonces:
    """Unique nonces for one benchmark or load point. Random, not counted from zero: two runs
    against the same long-lived server must not repeat each other's prefixes either."""

    def __init__(self) -> None:
        self._rng = random.Random()
        self._seen: set[int] = set()

    def next(self) -> str:
        while True:
            value = self._rng.randrange(10**10)
            if value not in self._seen:
                self._seen.add(value)
                return f"[{value:010d}]"
