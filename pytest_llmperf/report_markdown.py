"""PLACEHOLDER (being written this session)."""

from __future__ import annotations

from typing import Any

__all__ = ["render_markdown"]


def render_markdown(document: dict[str, Any]) -> str:
    raise NotImplementedError("report_markdown is being written")
