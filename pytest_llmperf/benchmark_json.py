"""PLACEHOLDER (being written this session)."""

from __future__ import annotations

from typing import Any

__all__ = ["to_benchmark_json"]


def to_benchmark_json(document: dict[str, Any]) -> dict[str, Any]:
    raise NotImplementedError("benchmark_json is being written")
