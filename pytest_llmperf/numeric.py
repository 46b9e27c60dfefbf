"""Numbers at the boundaries: the one place that decides which numbers may enter the
statistics, be read from a file, or be written to one.

Everything measured, stored or typed by a user passes through here before it reaches
:mod:`.stats` or :mod:`.gate`, so those can assume finite numbers of the right sign and never
crash on a NaN, an infinity or a ``10**400`` read from a hand-edited file. Writers go through
:func:`json_safe`, so one degenerate metric becomes ``null`` (with the reason recorded) instead of
making the JSON encoder refuse the whole document. No pytest, no I/O.

>>> check_samples([1.0, 2], what="ttft_s")
[1.0, 2.0]
>>> check_samples([1.0, float("nan")], what="ttft_s")
Traceback (most recent call last):
...
ValueError: ttft_s: sample 2 is nan, not a finite number
>>> parse_number("5%", what="--llm-alpha", low=0.0, high=1.0, percent=True)
0.05
>>> json_safe({"ratio": float("inf"), "n": 3})
({'ratio': None, 'n': 3}, {'ratio': 'inf'})
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

__all__ = [
    "MAX_COUNT",
    "MAX_JSON_DEPTH",
    "check_finite",
    "check_samples",
    "json_dumps",
    "json_loads",
    "json_safe",
    "parse_number",
]

#: Deeper documents are refused on read: none of ours nests beyond ~8 levels, and walking a
#: 100k-deep one recursively would crash the reader (RecursionError), not name the file.
MAX_JSON_DEPTH = 64
#: Largest integer read from a file: 2**53 is where floats stop holding every integer, so a
#: count beyond it cannot be a count this plugin wrote.
MAX_COUNT = 2**53


def check_finite(
    value: object,
    *,
    what: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    """``value`` as a float, or ValueError naming ``what`` and the allowed range.

    ``low``/``high`` are inclusive bounds (``low_open`` excludes ``low`` itself); ``bool`` is not
    a number here, though Python says it is.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what}: expected a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{what}: {_show(value)} is too large") from None
    if not math.isfinite(number):
        raise ValueError(f"{what}: {number} is not a finite number")
    if low is not None and (number < low or (low_open and number == low)):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise ValueError(f"{what}: {number:g} is out of range (must be {bound})")
    if high is not None and number > high:
        raise ValueError(f"{what}: {number:g} is out of range (must be <= {high:g})")
    return number


def check_samples(
    values: Iterable[object], *, what: str, positive: bool = False, nonnegative: bool = True
) -> list[float]:
    """The samples as floats, or ValueError naming ``what`` and the first bad sample (1-based).

    Latencies and rates are non-negative; ``positive`` also refuses zeros (for ratios and logs).
    """
    out: list[float] = []
    for index, value in enumerate(values, start=1):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{what}: sample {index} is {_show(value)}, not a number")
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"{what}: sample {index} is too large") from None
        if not math.isfinite(number):
            raise ValueError(f"{what}: sample {index} is {number}, not a finite number")
        if positive and number <= 0:
            raise ValueError(f"{what}: sample {index} is {number:g}, must be > 0")
        if nonnegative and number < 0:
            raise ValueError(f"{what}: sample {index} is {number:g}, must be >= 0")
        out.append(number)
    return out


def parse_number(
    text: str,
    *,
    what: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    percent: bool = False,
    integer: bool = False,
) -> float:
    """Parse an option value (``"0.05"``, ``"5%"`` where ``percent``) into a finite number in
    range; ValueError names ``what``, the value and the range. ``nan``/``inf`` are refused."""
    raw = text.strip()
    scale = 1.0
    if percent and raw.endswith("%"):
        raw, scale = raw[:-1].strip(), 0.01
    try:
        number = int(raw) if integer else float(raw) * scale
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{what}: expected {kind}, got {text!r}") from None
    return check_finite(number, what=what, low=low, high=high, low_open=low_open)


def json_safe(document: Any) -> tuple[Any, dict[str, str]]:
    """A copy of ``document`` with every non-finite float replaced by ``None``, and where each
    one was (a dotted path) with what it was (``"nan"``, ``"inf"``, ``"-inf"``)."""
    replaced: dict[str, str] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, float) and not math.isfinite(node):
            replaced[path or "."] = str(node)
            return None
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    return walk(document, ""), replaced


def json_dumps(document: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text of ``document`` with non-finite floats as ``null``. Callers that must
    say why a value is missing record :func:`json_safe`'s second result themselves."""
    safe, _ = json_safe(document)
    return json.dumps(safe, indent=indent, allow_nan=False, ensure_ascii=False)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number (JSON has no {name})")


def _parse_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:40]} is out of range")
    return number


def _parse_int(text: str) -> int:
    # Checked on the digit count first: int() of a 100k-digit string is itself slow.
    if len(text.lstrip("-")) > 16 or abs(number := int(text)) > MAX_COUNT:
        raise ValueError(f"integer {text[:40]}{'...' if len(text) > 40 else ''} is too large")
    return number


def json_loads(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON that came from a file or a server, strictly: no ``NaN``/``Infinity``, no
    number that overflows a float, no integer beyond :data:`MAX_COUNT`, no nesting deeper than
    ``max_depth``. Every refusal is a ValueError (``json.JSONDecodeError`` is one) whose text
    says what was wrong; callers add the file's name."""
    try:
        document = json.loads(
            text, parse_constant=_reject_constant, parse_float=_parse_float, parse_int=_parse_int
        )
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    # Iterative, so the check itself cannot hit the recursion limit.
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return document


def _show(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 128:
        # repr() of an int past 4300 digits raises ValueError; its size is what matters.
        return f"a {int(value.bit_length() * math.log10(2)) + 1}-digit number"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
