"""A YAML case's ``load:`` section: ``llm_load``'s arguments as data, checked at collection.

A case with ``load`` runs ``llm_load`` instead of ``llm_bench``, so its results entries,
baselines and gate are those of the Python fixture. Keys that only mean something to
``llm_bench`` are refused when written on such a case (a typo or a misunderstanding must not
become a setting that silently does nothing) and not inherited from ``defaults``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._suite_load import SuiteError, _int, _line, _mapping, _messages, _str, _TooLarge
from ._suite_yaml import _Map
from .limits import (
    MAX_CONCURRENCY,
    MAX_DURATION_S,
    MAX_RATE,
    MAX_REQUESTS,
    MAX_SEED,
    MAX_TOKENS,
    MAX_WARMUP,
)

__all__ = ["BENCH_ONLY_KEYS", "LOAD_KEYS", "LoadSpec", "load_case_fields", "parse_load"]

LOAD_KEYS = (
    "prompts",
    "concurrency",
    "rate",
    "requests",
    "duration",
    "max_tokens",
    "warmup",
    "seed",
)
#: Case keys with no meaning for ``llm_load``; its own ``warmup`` and ``seed`` go in ``load``
#: (warm-up requests; the seed of the Poisson arrivals), and the gate's tolerances are
#: ``--llm-tolerance``'s.
BENCH_ONLY_KEYS = (
    "runs",
    "warmup",
    "seed",
    "expect",
    "budgets",
    "reference",
    "rubric",
    "min_quality",
    "tolerance",
)
#: ``llm_load``'s keyword arguments: a backend option may not have one of these names.
_LOAD_ARGS = (*LOAD_KEYS, "name", "temperature", "ignore_eos", "prefix_cache")


@dataclass(frozen=True)
class LoadSpec:
    """What ``llm_load`` is called with; a list in ``concurrency`` or ``rate`` is a sweep."""

    #: Requests cycle through these; empty: the case's own ``prompt`` / ``messages``.
    prompts: tuple[str | list[dict[str, str]], ...] = ()
    concurrency: int | tuple[int, ...] | None = None
    rate: float | tuple[float, ...] | None = None
    requests: int | None = None
    duration: float | None = None
    max_tokens: int | None = None
    warmup: int | None = None
    seed: int = 0

    @property
    def points(self) -> int:
        """Results entries (and gated sweep points) the case produces."""
        lengths = [len(v) for v in (self.concurrency, self.rate) if isinstance(v, tuple)]
        return max(lengths, default=1)

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``llm_load`` but the prompts and ``max_tokens`` (which the
        case may set), as a Python test would write them: a list for a sweep."""
        return {
            "concurrency": _listed(self.concurrency),
            "rate": _listed(self.rate),
            "requests": self.requests,
            "duration": self.duration,
            "warmup": self.warmup,
            "seed": self.seed,
        }


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _sweep(
    value: Any, line: int, parse: Callable[[Any, int], Any], what: str
) -> Any | tuple[Any, ...]:
    """One value, or a non-empty list of distinct values (a sweep)."""
    if not isinstance(value, list):
        try:
            return parse(value, line)
        except _TooLarge:
            raise
        except SuiteError:
            raise SuiteError(line, f"expected {what} or a list of them, not {value!r}") from None
    if not value:
        raise SuiteError(line, f"expected {what} or a non-empty list of them, not []")
    items = []
    for item in value:
        try:
            items.append(parse(item, line))
        except _TooLarge:
            raise
        except SuiteError:
            raise SuiteError(line, f"expected {what} in the list, not {item!r}") from None
    repeated = sorted({v for v in items if items.count(v) > 1})
    if repeated:
        raise SuiteError(line, f"{repeated[0]:g} is listed twice: one sweep point per value")
    return tuple(items)


def _prompts(value: Any, line: int) -> tuple[str | list[dict[str, str]], ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise SuiteError(line, "expected a prompt or a non-empty list of prompts")
    out: list[str | list[dict[str, str]]] = []
    for item in items:
        # A list inside the list is one chat: {role, content} messages.
        out.append(_messages(item, line) if isinstance(item, list) else _str(item, line))
    return tuple(out)


def _positive(maximum: float, what: str) -> Callable[[Any, int], float]:
    def parse(value: Any, line: int) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SuiteError(line, f"expected {what}, not {value!r}")
        if not math.isfinite(value) or not value > 0:
            raise SuiteError(line, f"expected {what}, not {value!r}")
        if value > maximum:
            raise _TooLarge(line, f"{value!r} is too large (at most {maximum:g})")
        number: float = value  # as written (2 stays 2), like the same number in a Python test
        return number

    return parse


_PARSERS: dict[str, Callable[[Any, int], Any]] = {
    "prompts": _prompts,
    "concurrency": lambda v, line: _sweep(v, line, _int(1, MAX_CONCURRENCY), "a whole number >= 1"),
    "rate": lambda v, line: _sweep(
        v, line, _positive(MAX_RATE, "a number of requests/s > 0"), "a number of requests/s > 0"
    ),
    "requests": _int(1, MAX_REQUESTS),
    "duration": _positive(MAX_DURATION_S, "a number of seconds > 0"),
    "max_tokens": _int(1, MAX_TOKENS),
    "warmup": _int(0, MAX_WARMUP),
    "seed": _int(0, MAX_SEED),
}


def parse_load(value: Any, line: int) -> LoadSpec:
    """The ``load`` mapping of a case (merged with ``defaults``' one, key by key)."""
    m = _mapping(value, line, "load")
    fields: dict[str, Any] = {}
    for key, raw in m.items():
        if key not in _PARSERS:
            raise SuiteError(
                _line(m, key), f"unknown key {key!r} (valid: {', '.join(sorted(LOAD_KEYS))})"
            )
        try:
            fields[key] = _PARSERS[key](raw, _line(m, key))
        except SuiteError as exc:
            raise SuiteError(exc.line, f"{key}: {exc}") from None
    if isinstance(fields.get("concurrency"), tuple) and isinstance(fields.get("rate"), tuple):
        raise SuiteError(
            _line(m, "rate"),
            "sweep concurrency or rate, not both (give one of them as a list; with a rate "
            "sweep, one concurrency caps the requests in flight)",
        )
    return LoadSpec(**fields)


def load_case_fields(raw: _Map, fields: dict[str, Any], what: str) -> dict[str, Any]:
    """A load case's parsed fields: ``llm_bench``-only keys refused where the case itself
    writes them and dropped where ``defaults`` does, the prompt taken from ``load.prompts``."""
    spec: LoadSpec = fields["load"]
    for key in BENCH_ONLY_KEYS:
        if key in raw:
            hint = f" (write it under 'load' for llm_load's {key})" if key in LOAD_KEYS else ""
            raise SuiteError(
                _line(raw, key),
                f"{what}{key} applies to llm_bench, not to a case with 'load'{hint}",
            )
    kept = {k: v for k, v in fields.items() if k not in BENCH_ONLY_KEYS}
    clash = sorted(set(kept.get("options", {})) & set(_LOAD_ARGS))
    if clash:
        raise SuiteError(
            _line(raw, "options") if "options" in raw else raw.line,
            f"{what}options {clash} are llm_load arguments; set them under 'load'",
        )
    given = ("prompt" in kept) + ("messages" in kept) + bool(spec.prompts)
    if given != 1:
        raise SuiteError(raw.line, f"{what}give one of 'prompt', 'messages' or 'load: prompts'")
    if spec.prompts:
        kept["prompt"] = spec.prompts[0]  # the case's prompt, for whatever shows one
    return kept
