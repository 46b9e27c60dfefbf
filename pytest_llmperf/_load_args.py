"""``llm_load``'s arguments as the load generator takes them: prompts, sweep points, the
workload keywords (``ignore_eos``, ``prefix_cache``) and the parameters a baseline is keyed by.

Kept apart from :mod:`._load_call` (the call's flow: skip, gate, warnings, failure) so that
each stays readable; nothing here sends a request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._loadgen import LoadPoint
from .backends import Prompt
from .errors import InvalidRequest
from .options import workload_params
from .prefix_cache import check_mode

__all__ = [
    "default_requests",
    "is_sweep",
    "load_params",
    "point_label",
    "prompt_list",
    "sweep_values",
    "workload_keywords",
]


def prompt_list(prompts: Prompt | Sequence[Prompt]) -> list[Prompt]:
    """One prompt (a string or a chat) or several; requests cycle through them in order."""
    if isinstance(prompts, str):
        return [prompts]
    items: list[Any] = list(prompts)
    if not items:
        raise ValueError("llm_load needs at least one prompt")
    if all(isinstance(p, Mapping) for p in items):
        return [items]  # one chat: a list of messages
    return items


def is_sweep(value: object) -> bool:
    """A list (or tuple) of values is a sweep, even of one: the call then returns a list."""
    return isinstance(value, list | tuple)


def sweep_values(value: Any, name: str, kind: type) -> list[Any]:
    """The points of ``concurrency`` or ``rate``: ``[None]`` when absent, one when scalar."""
    if value is None:
        return [None]
    values = list(value) if is_sweep(value) else [value]
    if not values or not all(isinstance(v, kind | int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} takes a number or a list of numbers, got {value!r}")
    return values


def workload_keywords(
    defaults: Mapping[str, Any], ignore_eos: bool | None, prefix_cache: str | None
) -> tuple[bool, str]:
    """``ignore_eos`` and ``prefix_cache`` as given, else as the spec sets them
    (``?ignore_eos=true``); :class:`~pytest_llmperf.errors.InvalidRequest` (a ValueError) for a
    value that is neither, before any request."""
    eos = defaults.get("ignore_eos", False) if ignore_eos is None else ignore_eos
    # bool("false") is True: a string here is a mistake, not a wish for exact lengths.
    if not isinstance(eos, bool):
        raise InvalidRequest(f"ignore_eos takes True or False, got {eos!r}")
    cache = defaults.get("prefix_cache", "allow") if prefix_cache is None else prefix_cache
    return eos, check_mode(cache)


def default_requests(
    concurrency: int | None, rate: float | None, requests: int | None, duration: float | None
) -> int | None:
    if requests is not None or duration is not None:
        return requests
    if rate is None and concurrency is not None:
        return max(32, 4 * concurrency)
    return 32


def point_label(point: LoadPoint) -> str:
    """``c=4``, ``rate=8`` or ``rate=8,c=32``: the point's part of its result's name."""
    label = f"rate={point.rate:g}" if point.rate is not None else f"c={point.concurrency}"
    if point.rate is not None and point.concurrency is not None:
        label += f",c={point.concurrency}"
    return label


def load_params(
    point: LoadPoint,
    prompts: list[Prompt],
    max_tokens: int,
    temperature: float,
    options: Mapping[str, Any],
    warmup: int,
    *,
    ignore_eos: bool = False,
    prefix_cache: str = "allow",
) -> dict[str, Any]:
    """JSON-safe parameters; a stored baseline compares only with equal ones."""
    params: dict[str, Any] = {
        "prompts": [p if isinstance(p, str) else [dict(m) for m in p] for p in prompts],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "options": dict(options),
        "mode": point.mode,
        "concurrency": point.concurrency,
        "rate": point.rate,
        "requests": point.requests,
        "duration": point.duration,
        "seed": point.seed,
        "warmup": warmup,
    }
    params.update(workload_params(ignore_eos, prefix_cache))
    # Exactly what a stored baseline reads back (tuples become lists), so equality means it.
    normal: dict[str, Any] = json.loads(json.dumps(params, default=repr))
    return normal
