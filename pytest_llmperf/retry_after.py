"""A server's Retry-After hint, read once for every backend and slept on safely everywhere.

Servers say how long to wait in ``retry-after-ms`` (OpenAI's milliseconds), ``retry-after`` in
seconds, or ``retry-after`` as an HTTP date. A hint is a number from the network: ``nan``,
``-5``, ``inf`` or ``1e9`` must not crash a ``time.sleep`` or stall a run for a day, so anything
that is not a finite, non-negative delay is no hint at all (``None``: the caller's own backoff
applies), and a long one is capped. The harness and the judge pass whatever a backend put in
:attr:`~pytest_llmperf.errors.TransientError.retry_after` through :func:`retry_delay` before
sleeping, so a third-party backend's hint is held to the same rules.

>>> parse_retry_after({"retry-after": "1.5"})
1.5
>>> parse_retry_after({"Retry-After-Ms": "250"})
0.25
>>> parse_retry_after({"retry-after": "nan"}) is None
True
>>> retry_delay(-5.0, cap=10.0) is None
True
>>> retry_delay(1e9, cap=10.0)
10.0
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import Mapping

__all__ = ["MAX_RETRY_AFTER_S", "parse_retry_after", "retry_delay"]

#: The longest wait any hint may ask for; callers cap it further.
MAX_RETRY_AFTER_S = 300.0


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date),
    capped at :data:`MAX_RETRY_AFTER_S`; ``None`` where neither holds a usable delay. Header
    names are matched case-insensitively (httpx's headers are; botocore's plain dict is not)."""
    found = {name.lower(): value for name, value in headers.items()}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = found.get(name)
        if value is None:
            continue
        seconds = _seconds(str(value), scale, now)
        if seconds is not None:
            return seconds
    return None


def retry_delay(hint: object, *, cap: float) -> float | None:
    """``hint`` as a sleep of at most ``cap`` seconds, or ``None`` when it is no usable delay
    (not a number, not finite, negative)."""
    if isinstance(hint, bool) or not isinstance(hint, int | float):
        return None
    try:
        seconds = float(hint)
    except OverflowError:  # an int beyond a float's range
        return cap
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, cap)


def _seconds(text: str, scale: float, now: float | None) -> float | None:
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        return retry_delay(number * scale, cap=MAX_RETRY_AFTER_S)
    if scale != 1.0:
        return None  # milliseconds are never a date
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": the date is UTC, not this machine's local time
        when = when.replace(tzinfo=datetime.timezone.utc)
    try:
        left = when.timestamp() - (time.time() if now is None else now)
    except (OverflowError, OSError, ValueError):
        return None
    return min(max(left, 0.0), MAX_RETRY_AFTER_S)  # a date already past: retry now
