"""PLACEHOLDER (being written this session)."""

from __future__ import annotations

from typing import Any

__all__ = ["render_html"]


def render_html(document: dict[str, Any]) -> str:
    raise NotImplementedError("report_html is being written")
