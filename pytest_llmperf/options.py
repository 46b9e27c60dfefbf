"""Typed, validated backend options (the ``?key=value`` part of a spec).

Each backend declares its options once; the same declaration types the values, validates them,
names the valid keys in errors and documents them (``pytest --llm-list-backends``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import SpecError
from .spec import LLMSpec

__all__ = ["Option", "parse_bool", "resolve_options"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"expected one of {', '.join(sorted(_TRUE | _FALSE))}")


@dataclass(frozen=True)
class Option:
    """One backend option: its name, type, default and allowed range or choices."""

    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    choices: Sequence[str] | None = None

    def convert(self, text: str) -> Any:
        parse: Callable[[str], Any] = parse_bool if self.type is bool else self.type
        try:
            value = parse(text)
        except ValueError as exc:
            raise ValueError(f"expected {self.type.__name__}: {exc}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be >= {self.minimum:g}")
        return value

    def describe(self) -> str:
        kind = "|".join(self.choices) if self.choices else self.type.__name__
        return f"{self.name}={kind} (default {self.default!r}): {self.help}"


def resolve_options(spec: LLMSpec, declared: Sequence[Option]) -> Mapping[str, Any]:
    """Type ``spec.options`` against ``declared``; defaults fill the rest."""
    by_name = {opt.name: opt for opt in declared}
    values = {opt.name: opt.default for opt in declared}
    where = f"{spec.source}={spec.raw or spec.text!r}"
    for key, text in spec.options:
        opt = by_name.get(key)
        if opt is None:
            valid = ", ".join(sorted(by_name)) or "none"
            raise SpecError(f"{where}: unknown option {key!r} for {spec.kind}; valid: {valid}")
        try:
            values[key] = opt.convert(text)
        except ValueError as exc:
            raise SpecError(f"{where}: bad value {text!r} for option {key!r}: {exc}") from None
    return values
