"""Upper bounds on what a user may ask for: counts, rates, sampling parameters.

A count with no upper bound is a hang or an out-of-memory waiting to happen (``runs: 10**9``,
``max_tokens: 10**12`` allocating a gap per token), and a float such as ``temperature: .inf``
is accepted by Python and then means nothing. Every place that takes these values (YAML suites,
``llm_bench`` / ``llm_load`` keywords, ``--llm-*`` options, spec options) checks them here, so
one bound holds everywhere and its error text names it. No pytest, no I/O.

The bounds are far beyond any sensible benchmark and well inside what the code handles:

>>> check_count(10, what="runs", low=1, high=MAX_RUNS)
10
>>> check_count(10**6, what="runs", low=1, high=MAX_RUNS)
Traceback (most recent call last):
...
ValueError: runs: 1000000 is out of range (a whole number from 1 to 100000)
>>> check_options({"top_p": 1.5})
Traceback (most recent call last):
...
ValueError: option top_p: 1.5 is out of range (must be <= 1)
"""

from __future__ import annotations

import math
import operator
import threading
from collections.abc import Mapping
from typing import Any

from .numeric import MAX_COUNT, check_finite

__all__ = [
    "MAX_BASELINE_KEEP",
    "MAX_CONCURRENCY",
    "MAX_DURATION_S",
    "MAX_JUDGE_REPEATS",
    "MAX_RATE",
    "MAX_REQUESTS",
    "MAX_RUNS",
    "MAX_SECONDS",
    "MAX_SEED",
    "MAX_TOKENS",
    "MAX_WARMUP",
    "SAMPLING_RANGES",
    "TEMPERATURE_RANGE",
    "check_bench_arguments",
    "check_count",
    "check_load_arguments",
    "check_options",
    "check_seconds",
]

#: Output tokens of one request: the longest context windows are ~1-2M tokens, and the
#: harness keeps one inter-token gap per token.
MAX_TOKENS = 1_000_000
#: Timed generations of one benchmark (and each ``--llm-looks`` count).
MAX_RUNS = 100_000
#: Untimed warm-up generations or requests.
MAX_WARMUP = 10_000
#: Requests in flight at once (each is a connection and a task).
MAX_CONCURRENCY = 10_000
#: Requests of one load point.
MAX_REQUESTS = 1_000_000
#: Requests per second of an open-loop load point.
MAX_RATE = 100_000.0
#: A load point's duration, a timeout, a deadline, an SLO: one day. It also keeps every wait
#: far below ``threading.TIMEOUT_MAX``, past which a timer raises instead of waiting.
MAX_SECONDS = 86_400.0
MAX_DURATION_S = MAX_SECONDS
assert MAX_SECONDS < threading.TIMEOUT_MAX
#: Sampling seeds: what every backend takes (llama.cpp's seed is an unsigned 32-bit int).
MAX_SEED = 2**32 - 1
#: ``--llm-judge-repeats``: each repeat is one paid judge request per answer.
MAX_JUDGE_REPEATS = 100
#: ``--llm-baseline-keep``: stored runs pooled per benchmark, all read at every session start.
MAX_BASELINE_KEEP = 1_000
#: Temperature: 0 (greedy) to 2, the OpenAI API's range; beyond it every sampler is noise.
TEMPERATURE_RANGE = (0.0, 2.0)
#: Well-known sampling parameters, wherever they are given (a spec option, ``llm_bench``'s
#: ``**options``, a suite's ``options``): the same name means the same thing in every backend.
SAMPLING_RANGES: Mapping[str, tuple[float, float]] = {
    "temperature": TEMPERATURE_RANGE,
    "top_p": (0.0, 1.0),
    "min_p": (0.0, 1.0),
    "typical_p": (0.0, 1.0),
    "top_k": (0.0, 1_000_000.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
    "repeat_penalty": (0.0, 10.0),
    "repetition_penalty": (0.0, 10.0),
}


def check_count(value: object, *, what: str, low: int, high: int) -> int:
    """``value`` as an int from ``low`` to ``high``, or ValueError naming ``what`` and the range.

    ``bool`` is not a count, though Python says it is; integer-like types (numpy ints) are.
    """
    valid = f"a whole number from {low} to {high}"
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected {valid}, not {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{what}: expected {valid}, not {_show(value)}") from None
    if not low <= number <= high:
        raise ValueError(f"{what}: {_show(number)} is out of range ({valid})")
    return number


def check_seconds(value: object, *, what: str, low: float = 0.0) -> float:
    """A finite number of seconds, more than ``low`` and at most :data:`MAX_SECONDS`."""
    return check_finite(value, what=what, low=low, high=MAX_SECONDS, low_open=True)


def check_options(options: Mapping[str, Any], *, what: str = "option") -> None:
    """Refuse a backend option value no backend can mean: a NaN or infinity anywhere in it,
    an integer beyond 2**53, or a well-known sampling parameter outside its range."""
    for key, value in options.items():
        label = f"{what} {key}"
        if key in SAMPLING_RANGES and not isinstance(value, bool | str | None):
            low, high = SAMPLING_RANGES[key]
            check_finite(value, what=label, low=low, high=high)
        _check_numbers(value, label)


def _check_numbers(value: Any, what: str) -> None:
    # Iterative: an option value built in Python may nest deeply.
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"{what}: {node} is not a finite number")
        if isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_COUNT:
            raise ValueError(f"{what}: {_show(node)} is too large (at most 2**53)")
        if isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)


def check_bench_arguments(
    *,
    max_tokens: object,
    temperature: object,
    seed: object,
    options: Mapping[str, Any],
    runs: object = None,
    warmup: object = None,
) -> None:
    """``llm_bench``'s generation arguments (and ``runs``/``warmup`` where given): ValueError
    naming the first one out of range."""
    check_count(max_tokens, what="max_tokens", low=1, high=MAX_TOKENS)
    low, high = TEMPERATURE_RANGE
    check_finite(temperature, what="temperature", low=low, high=high)
    if seed is not None:
        check_count(seed, what="seed", low=0, high=MAX_SEED)
    if runs is not None:
        check_count(runs, what="runs", low=1, high=MAX_RUNS)
    if warmup is not None:
        check_count(warmup, what="warmup", low=0, high=MAX_WARMUP)
    check_options(options)


def check_load_arguments(
    *,
    concurrency: object = None,
    rate: object = None,
    requests: object = None,
    duration: object = None,
    max_tokens: object = 1,
    warmup: object = None,
    seed: object = 0,
    temperature: object = 0.0,
    options: Mapping[str, Any] | None = None,
) -> None:
    """``llm_load``'s arguments; ``concurrency`` and ``rate`` may be lists (a sweep). ValueError
    naming the first one out of range."""
    for value in _items(concurrency):
        check_count(value, what="concurrency", low=1, high=MAX_CONCURRENCY)
    for value in _items(rate):
        check_finite(value, what="rate", low=0.0, high=MAX_RATE, low_open=True)
    if requests is not None:
        check_count(requests, what="requests", low=1, high=MAX_REQUESTS)
    if duration is not None:
        check_seconds(duration, what="duration")
    if warmup is not None:
        check_count(warmup, what="warmup", low=0, high=MAX_WARMUP)
    check_bench_arguments(
        max_tokens=max_tokens, temperature=temperature, seed=seed, options=options or {}
    )


def _items(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _show(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 128:
        # repr() of a 5000-digit int raises ValueError; its size is what matters anyway.
        return f"a {int(value.bit_length() * math.log10(2)) + 1}-digit number"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
