"""Cost per request from a price table: the built-in ``data/prices.json``, overridden by the
file named in ``--llm-prices`` / ini ``llm_prices`` (same format).

A price applies to the provider's own API only: ``openai:gpt-4o-mini@http://vllm:8000/v1`` is a
self-hosted server whatever it calls its model, so it matches only an entry written with that
base URL. Local engines (llamacpp, hf) have no per-token price and show no cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import SpecError
from .numeric import check_finite, json_loads
from .spec import LLMSpec

__all__ = ["Price", "PriceTable", "load_prices"]


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens, and the entry it came from."""

    input: float
    output: float
    key: str
    source: str

    def cost(self, prompt_tokens: int | None, output_tokens: int) -> float | None:
        """USD for one request; ``None`` when the prompt's token count is unknown (a guess
        would be a wrong number)."""
        if prompt_tokens is None:
            return None
        return (prompt_tokens * self.input + output_tokens * self.output) / 1e6


class PriceTable:
    def __init__(self, entries: dict[str, Price]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, spec: LLMSpec) -> Price | None:
        name = f"{spec.kind}:{spec.model}"
        if spec.base_url:
            name += f"@{spec.base_url}"
        if name in self._entries:
            return self._entries[name]
        # Among wildcard matches the longest pattern is the most specific.
        matches = [k for k in self._entries if fnmatchcase(name, k)]
        return self._entries[max(matches, key=len)] if matches else None


def _parse(doc: Any, source: str) -> dict[str, Price]:
    if not isinstance(doc, dict) or not isinstance(doc.get("prices"), dict):
        raise SpecError(f"{source}: expected a JSON object with a 'prices' object")
    out = {}
    for key, entry in doc["prices"].items():
        ok = isinstance(entry, dict) and set(entry) >= {"input", "output"}
        try:
            if not ok:
                raise ValueError("missing input or output")
            # Finite, so a cost is never inf or NaN (json_loads already refuses Infinity).
            input_, output = (
                check_finite(entry[side], what=side, low=0.0) for side in ("input", "output")
            )
        except ValueError:
            raise SpecError(
                f"{source}: price {key!r} must be "
                '{"input": USD per 1M tokens, "output": USD per 1M tokens}, both >= 0 '
                f"and finite; got {_cut(entry)}"
            ) from None
        out[key] = Price(input_, output, key, source)
    return out


def _cut(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def load_prices(override: Path | None = None) -> PriceTable:
    """The built-in table, with ``override``'s entries on top. Raises :class:`SpecError` on a
    missing or malformed file."""
    builtin = resources.files("pytest_llmperf").joinpath("data/prices.json")
    entries = _parse(json_loads(builtin.read_text(encoding="utf-8")), "built-in prices.json")
    if override is not None:
        try:
            doc = json_loads(override.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpecError(f"price file {override}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise SpecError(f"price file {override}: not UTF-8 text ({exc.reason})") from None
        except ValueError as exc:  # JSONDecodeError, NaN, 10**400, nesting too deep
            raise SpecError(f"price file {override}: not valid JSON ({exc})") from None
        entries.update(_parse(doc, str(override)))
    return PriceTable(entries)
