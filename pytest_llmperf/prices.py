"""Cost per request from a price table: the built-in ``data/prices.json``, overridden by the
file named in ``--llm-prices`` / ini ``llm_prices`` (same format).

A price applies to the provider's own API only: ``openai:gpt-4o-mini@http://vllm:8000/v1`` is a
self-hosted server whatever it calls its model, so it matches only an entry written with that
base URL. Local engines (llamacpp, hf) have no per-token price and show no cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import SpecError
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
        values = [entry.get("input"), entry.get("output")] if ok else []
        if not ok or not all(isinstance(v, int | float) and v >= 0 for v in values):
            raise SpecError(
                f"{source}: price {key!r} must be "
                '{"input": USD per 1M tokens, "output": USD per 1M tokens}, both >= 0; '
                f"got {entry!r}"
            )
        out[key] = Price(float(entry["input"]), float(entry["output"]), key, source)
    return out


def load_prices(override: Path | None = None) -> PriceTable:
    """The built-in table, with ``override``'s entries on top. Raises :class:`SpecError` on a
    missing or malformed file."""
    builtin = resources.files("pytest_llmperf").joinpath("data/prices.json")
    entries = _parse(json.loads(builtin.read_text(encoding="utf-8")), "built-in prices.json")
    if override is not None:
        try:
            doc = json.loads(override.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpecError(f"price file {override}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise SpecError(f"price file {override}: not valid JSON ({exc})") from None
        entries.update(_parse(doc, str(override)))
    return PriceTable(entries)
