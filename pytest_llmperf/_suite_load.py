"""Reading ``*.llmsuite.yaml`` files into validated :class:`Case` objects.

Everything a case can get wrong is found here, at collection, with the file's line number: a
typo in a key must not turn into a check that silently never runs.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import regex

from ._suite_yaml import SuiteError, _Map, read_yaml
from .bench import METRICS
from .gate import DIRECTIONS, parse_tolerances
from .limits import (
    MAX_RUNS,
    MAX_SEED,
    MAX_TOKENS,
    MAX_WARMUP,
    TEMPERATURE_RANGE,
    check_options,
)
from .numeric import MAX_COUNT
from .prefix_cache import MODES as PREFIX_CACHE_MODES

if TYPE_CHECKING:
    from ._suite_serving import LoadSpec

__all__ = [
    "BUDGET_STATISTICS",
    "CASE_KEYS",
    "DEFAULT_KEYS",
    "Budget",
    "Case",
    "Expect",
    "SuiteError",
    "load_suite",
]

#: Summary statistics a budget may bound (``n`` and ``stdev`` are not latencies).
BUDGET_STATISTICS = ("median", "mean", "min", "max", "p90", "p95", "p99")
_BUDGET_METRICS = (*METRICS, "cost_usd")
_ROLES = ("system", "user", "assistant")
_ID = re.compile(r"[\w][\w.-]*")
#: JSON Schema keywords the built-in validator understands; any other is refused, not ignored.
_SCHEMA_KEYWORDS = ("type", "properties", "required", "enum", "items", "additionalProperties")
_SCHEMA_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
#: ``llm_bench`` keywords: an option with one of these names would collide with them.
_BENCH_ARGS = (
    "prompt",
    "max_tokens",
    "runs",
    "warmup",
    "name",
    "temperature",
    "seed",
    "ignore_eos",
    "prefix_cache",
)
#: What a suite's top-level ``models`` may say: who can answer its cases.
MODEL_KINDS = ("any", "instruction-tuned")
#: ``regex`` patterns, compiled by the ``regex`` package: its search takes a timeout.
Pattern = Any  # regex.Pattern[str]; the package has no type hints


@dataclass(frozen=True)
class Expect:
    """Deterministic checks on the generated text."""

    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()
    regex: tuple[Pattern, ...] = ()
    json: bool = False
    json_schema: dict[str, Any] | None = None
    max_chars: int | None = None
    ignore_case: bool = False


@dataclass(frozen=True)
class Budget:
    """An absolute bound on one statistic of one metric (a floor where higher is better)."""

    metric: str
    statistic: str
    limit: float

    @property
    def is_floor(self) -> bool:
        return DIRECTIONS.get(self.metric, False)


@dataclass(frozen=True)
class Case:
    """One case of a suite, defaults merged in: a test per backend."""

    id: str
    line: int
    prompt: str | list[dict[str, str]]
    max_tokens: int | None = None
    #: None: the spec's (``?ignore_eos=true``), else false; see ``llm_bench``.
    ignore_eos: bool | None = None
    prefix_cache: str | None = None
    #: The suite grades answers to instructions (top-level ``models: instruction-tuned``):
    #: skipped on a model known to be a base model.
    instruction_tuned: bool = False
    temperature: float = 0.0
    seed: int | None = None
    runs: int | None = None
    warmup: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    expect: Expect | None = None
    budgets: tuple[Budget, ...] = ()
    reference: str | None = None
    rubric: str | None = None
    min_quality: float | None = None
    tolerance: dict[str, float] | None = None
    backends: tuple[str, ...] | None = None
    description: str | None = None
    #: ``llm_load``'s arguments: the case runs it instead of ``llm_bench``.
    load: LoadSpec | None = None


def _plain(value: Any) -> Any:
    """Plain dicts and lists: what reaches results and baselines is ordinary JSON data."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _line(mapping: _Map, key: str) -> int:
    return mapping.key_lines.get(key, mapping.line)


def _keys(mapping: _Map, valid: tuple[str, ...], what: str) -> None:
    for key in mapping:
        if key not in valid:
            raise SuiteError(
                _line(mapping, key),
                f"{what}unknown key {key!r} (valid: {', '.join(sorted(valid))})",
            )


def _mapping(value: Any, line: int, what: str) -> _Map:
    if not isinstance(value, _Map):
        raise SuiteError(line, f"{what} must be a mapping, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "a list" if isinstance(value, list) else "a mapping"
    )


# Each field parser takes (value, line) and returns the typed value or raises SuiteError.
def _str(value: Any, line: int) -> str:
    if not isinstance(value, str) or not value:
        raise SuiteError(line, f"expected a non-empty string, not {_kind(value)}")
    return value


class _TooLarge(SuiteError):
    """A value of the right kind beyond its upper bound; the message names the bound."""


def _int(minimum: int, maximum: int = MAX_COUNT) -> Callable[[Any, int], int]:
    def parse(value: Any, line: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SuiteError(line, f"expected a whole number >= {minimum}, not {value!r}")
        if value > maximum:
            raise _TooLarge(line, f"{value} is too large (at most {maximum})")
        return value

    return parse


def _number(lo: float, hi: float) -> Callable[[Any, int], float]:
    def parse(value: Any, line: int) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not lo <= value <= hi
        ):
            raise SuiteError(line, f"expected a number from {lo:g} to {hi:g}, not {value!r}")
        return float(value)

    return parse


def _bool(value: Any, line: int) -> bool:
    if not isinstance(value, bool):
        raise SuiteError(line, f"expected true or false, not {_kind(value)}")
    return value


def _choice(valid: tuple[str, ...]) -> Callable[[Any, int], str]:
    def parse(value: Any, line: int) -> str:
        if value not in valid:
            raise SuiteError(line, f"expected one of {', '.join(valid)}, not {value!r}")
        return str(value)

    return parse


def _seed(value: Any, line: int) -> int | None:
    return None if value is None else _int(0, MAX_SEED)(value, line)


def _strings(value: Any, line: int) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(_str(item, line) for item in items)


def _messages(value: Any, line: int) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise SuiteError(line, "messages must be a non-empty list of {role, content} mappings")
    out = []
    for message in value:
        m = _mapping(message, line, "each message")
        _keys(m, ("role", "content"), "")
        if m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
            raise SuiteError(
                m.line, f"a message needs role ({', '.join(_ROLES)}) and content (a string)"
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _options(value: Any, line: int) -> dict[str, Any]:
    options = _mapping(value, line, "options")
    clash = sorted(set(options) & set(_BENCH_ARGS))
    if clash:
        raise SuiteError(line, f"options {clash} are case keys; set them on the case")
    for key, option in options.items():
        try:
            check_options({key: option}, what="options:")
        except ValueError as exc:
            raise SuiteError(_line(options, key), str(exc)) from None
    result: dict[str, Any] = _plain(options)
    return result


def _expect(value: Any, line: int) -> Expect:
    m = _mapping(value, line, "expect")
    _keys(m, tuple(Expect.__dataclass_fields__), "expect: ")
    flags = regex.IGNORECASE if m.get("ignore_case") else 0
    patterns = []
    for text in _strings(m["regex"], _line(m, "regex")) if "regex" in m else ():
        try:
            patterns.append(regex.compile(text, flags))
        except regex.error as exc:
            raise SuiteError(_line(m, "regex"), f"regex {text!r}: {exc}") from None
    schema = m.get("json_schema")
    if schema is not None:
        _check_schema(_mapping(schema, _line(m, "json_schema"), "json_schema"))
    for key in ("json", "ignore_case"):
        if not isinstance(m.get(key, False), bool):
            raise SuiteError(_line(m, key), f"expect: {key} must be true or false")
    return Expect(
        contains=_strings(m["contains"], _line(m, "contains")) if "contains" in m else (),
        not_contains=_strings(m["not_contains"], _line(m, "not_contains"))
        if "not_contains" in m
        else (),
        regex=tuple(patterns),
        json=m.get("json", False),
        json_schema=None if schema is None else _plain(schema),
        max_chars=_int(0)(m["max_chars"], _line(m, "max_chars")) if "max_chars" in m else None,
        ignore_case=m.get("ignore_case", False),
    )


def _check_schema(schema: _Map) -> None:
    _keys(schema, _SCHEMA_KEYWORDS, "json_schema: ")
    types = schema.get("type", [])
    for t in types if isinstance(types, list) else [types]:
        if t not in _SCHEMA_TYPES:
            raise SuiteError(
                _line(schema, "type"),
                f"json_schema: type {t!r} is not one of {', '.join(_SCHEMA_TYPES)}",
            )
    for key in ("properties", "items"):
        if key in schema:
            sub = _mapping(schema[key], _line(schema, key), f"json_schema: {key}")
            for child in sub.values() if key == "properties" else [sub]:
                _check_schema(_mapping(child, sub.line, "json_schema: a subschema"))
    if "required" in schema:
        _strings(schema["required"], _line(schema, "required"))
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise SuiteError(_line(schema, "enum"), "json_schema: enum must be a list")
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        raise SuiteError(
            _line(schema, "additionalProperties"),
            "json_schema: additionalProperties must be true or false",
        )


def _budgets(value: Any, line: int) -> tuple[Budget, ...]:
    m = _mapping(value, line, "budgets")
    _keys(m, _BUDGET_METRICS, "budgets: ")
    out = []
    for metric, stats in m.items():
        s = _mapping(stats, _line(m, metric), f"budgets: {metric}")
        _keys(s, BUDGET_STATISTICS, f"budgets: {metric}: ")
        for statistic, limit in s.items():
            bound = _number(0, float("inf"))(limit, _line(s, statistic))
            out.append(Budget(metric, statistic, bound))
    return tuple(out)


def _tolerance(value: Any, line: int) -> dict[str, float]:
    text = value
    if isinstance(value, dict):
        text = ",".join(f"{k}={v}" for k, v in value.items())
    try:
        return parse_tolerances(_str(text, line))
    except ValueError as exc:
        raise SuiteError(line, f"tolerance: {exc}") from None


def _load(value: Any, line: int) -> LoadSpec:
    from ._suite_serving import parse_load  # it builds on this module's parsers

    return parse_load(value, line)


_FIELDS: dict[str, Callable[[Any, int], Any]] = {
    "id": _str,
    "description": _str,
    "prompt": _str,
    "messages": _messages,
    "max_tokens": _int(1, MAX_TOKENS),
    "ignore_eos": _bool,
    "prefix_cache": _choice(PREFIX_CACHE_MODES),
    "temperature": _number(*TEMPERATURE_RANGE),
    "seed": _seed,
    "runs": _int(1, MAX_RUNS),
    "warmup": _int(0, MAX_WARMUP),
    "options": _options,
    "expect": _expect,
    "budgets": _budgets,
    "reference": _str,
    "rubric": _str,
    "min_quality": _number(0, 100),
    "tolerance": _tolerance,
    "backends": _strings,
    "load": _load,
}
CASE_KEYS = tuple(_FIELDS)
#: Keys a file's ``defaults`` may set: everything but what identifies a case.
DEFAULT_KEYS = tuple(k for k in CASE_KEYS if k not in ("id", "description", "prompt", "messages"))
#: Mappings that defaults merge into key by key, instead of being replaced.
_MERGED = ("options", "expect", "budgets", "load")


def load_suite(path: Path) -> list[Case]:
    doc = read_yaml(path)
    if doc is None:
        raise SuiteError(0, "empty suite file: expected a mapping with a 'cases' list")
    top = _mapping(doc, 1, "a suite file")
    _keys(top, ("description", "models", "defaults", "cases"), "")
    models = _choice(MODEL_KINDS)(top.get("models", "any"), _line(top, "models"))
    defaults = _mapping(top.get("defaults", _Map()), _line(top, "defaults"), "defaults")
    _keys(defaults, DEFAULT_KEYS, "defaults: ")
    _parse_fields(defaults, "defaults: ")  # a bad default is reported where it is written
    cases = top.get("cases")
    if not isinstance(cases, list) or not cases:
        raise SuiteError(_line(top, "cases"), "'cases' must be a non-empty list of cases")
    seen: dict[str, int] = {}
    out = []
    for number, raw in enumerate(cases, 1):
        case = _case(_mapping(raw, _line(top, "cases"), f"case #{number}"), defaults, number)
        case = dataclasses.replace(case, instruction_tuned=models == "instruction-tuned")
        if case.id in seen:
            raise SuiteError(case.line, f"duplicate case id {case.id!r} (line {seen[case.id]})")
        seen[case.id] = case.line
        out.append(case)
    return out


def _parse_fields(m: _Map, what: str) -> dict[str, Any]:
    parsed = {}
    for key, value in m.items():
        try:
            parsed[key] = _FIELDS[key](value, _line(m, key))
        except SuiteError as exc:
            message = str(exc) if str(exc).startswith(f"{key}") else f"{key}: {exc}"
            raise SuiteError(exc.line, what + message) from None
    return parsed


def _merge(defaults: _Map, own: _Map) -> _Map:
    return _Map({**defaults, **own}, own.line, {**defaults.key_lines, **own.key_lines})


def _case(raw: _Map, defaults: _Map, number: int) -> Case:
    name = raw.get("id")
    what = f"case {name!r}: " if isinstance(name, str) else f"case #{number}: "
    _keys(raw, CASE_KEYS, what)
    if "id" not in raw:
        raise SuiteError(raw.line, f"{what}missing 'id'")
    merged = _merge(defaults, raw)
    for key in _MERGED:
        if isinstance(defaults.get(key), _Map) and isinstance(raw.get(key), _Map):
            merged[key] = _merge(defaults[key], raw[key])
    fields = _parse_fields(merged, what)
    if "load" in fields:
        from ._suite_serving import load_case_fields

        fields = load_case_fields(raw, fields, what)
    if not _ID.fullmatch(fields["id"]):
        raise SuiteError(
            _line(raw, "id"), f"{what}id may hold letters, digits, '_', '.' and '-' only"
        )
    if ("prompt" in fields) == ("messages" in fields):
        raise SuiteError(raw.line, f"{what}give exactly one of 'prompt' or 'messages'")
    prompt = fields.pop("prompt", None) or fields.pop("messages")
    return Case(line=raw.line, prompt=prompt, **fields)
