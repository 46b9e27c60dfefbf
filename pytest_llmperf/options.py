"""Typed, validated backend options (the ``?key=value`` part of a spec).

Each backend declares its options once; the same declaration types the values, validates them,
names the valid keys in errors and documents them (``pytest --llm-list-backends``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import SpecError
from .limits import MAX_SECONDS, SAMPLING_RANGES
from .numeric import parse_number
from .prefix_cache import MODES as PREFIX_CACHE_MODES
from .spec import LLMSpec

__all__ = [
    "WORKLOAD_OPTIONS",
    "Option",
    "parse_bool",
    "resolve_options",
    "workload_defaults",
    "workload_params",
]

#: Upper bounds where an option declares none. Every float option of the backends is seconds
#: (timeouts, deadlines: a day is plenty, and keeps timers below ``threading.TIMEOUT_MAX``) or a
#: fraction; every int option (context, batch, threads, layers, seeds, bits) fits a C int.
FLOAT_MAXIMUM = MAX_SECONDS
INT_MAXIMUM = 2**31 - 1
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
    #: None: :data:`FLOAT_MAXIMUM` or :data:`INT_MAXIMUM` (or a sampling parameter's range).
    maximum: float | None = None

    def convert(self, text: str) -> Any:
        if self.type in (int, float):
            return self._number(text)
        parse: Callable[[str], Any] = parse_bool if self.type is bool else self.type
        try:
            value = parse(text)
        except ValueError as exc:
            raise ValueError(f"expected {self.type.__name__}: {exc}") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}")
        return value

    def _number(self, text: str) -> int | float:
        """A finite number in range: ``nan``, ``inf`` and ``1e999`` are refused, since a
        timeout or deadline of NaN or infinity means none at all."""
        low, high = self.minimum, self.maximum
        if self.name in SAMPLING_RANGES:
            low = SAMPLING_RANGES[self.name][0] if low is None else low
            high = SAMPLING_RANGES[self.name][1] if high is None else high
        if high is None:
            high = INT_MAXIMUM if self.type is int else FLOAT_MAXIMUM
        bounds = f"<= {_show(high)}" if low is None else f">= {_show(low)} and <= {_show(high)}"
        try:
            value = parse_number(text, what=self.name, integer=self.type is int)
        except ValueError as exc:
            # "timeout: nan is not a finite number" -> "nan is not a finite number; must be..."
            reason = str(exc).removeprefix(f"{self.name}: ")
            if reason.startswith("expected"):
                reason = f"expected {self.type.__name__}"
            raise ValueError(f"{reason}; must be {bounds}") from None
        if not (low is None or value >= low) or not value <= high:
            raise ValueError(f"must be {bounds}")
        return int(value) if self.type is int else value

    def describe(self) -> str:
        kind = "|".join(self.choices) if self.choices else self.type.__name__
        return f"{self.name}={kind} (default {self.default!r}): {self.help}"


def _show(bound: float) -> str:
    """2147483647, not 2.14748e+09: a bound is quoted so it can be typed back."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


#: Options every spec takes, whatever its backend declares: they shape the workload (what is
#: generated), not the engine, and are the defaults of the ``llm_bench``/``llm_load`` keywords
#: of the same names (``llamacpp:model.gguf?ignore_eos=true``).
WORKLOAD_OPTIONS = (
    Option("ignore_eos", bool, False, "generate exactly max_tokens tokens, never stopping early"),
    Option(
        "prefix_cache",
        str,
        "allow",
        "bust = a unique nonce starts every prompt, so a server's prompt cache cannot skip "
        "prefill; allow = leave prompts alone",
        choices=PREFIX_CACHE_MODES,
    ),
)


def workload_params(ignore_eos: bool, prefix_cache: str) -> dict[str, Any]:
    """The workload options that differ from their defaults, for a benchmark's parameters (its
    baseline key): only where set, so baselines stored before these options existed stay
    comparable, and mean exactly the defaults."""
    given = {"ignore_eos": ignore_eos, "prefix_cache": prefix_cache}
    return {o.name: given[o.name] for o in WORKLOAD_OPTIONS if given[o.name] != o.default}


def workload_defaults(spec: LLMSpec) -> dict[str, Any]:
    """The spec's values of :data:`WORKLOAD_OPTIONS` (typed; defaults where it sets none)."""
    wanted = {o.name for o in WORKLOAD_OPTIONS}
    only = dataclasses.replace(spec, options=tuple(kv for kv in spec.options if kv[0] in wanted))
    return dict(resolve_options(only, WORKLOAD_OPTIONS))


def resolve_options(spec: LLMSpec, declared: Sequence[Option]) -> Mapping[str, Any]:
    """Type ``spec.options`` against ``declared`` plus :data:`WORKLOAD_OPTIONS`; defaults fill
    the rest."""
    names = {opt.name for opt in declared}
    declared = (*declared, *(o for o in WORKLOAD_OPTIONS if o.name not in names))
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
