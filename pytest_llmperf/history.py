"""PLACEHOLDER (being written this session)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["append_run"]


def append_run(directory: Path, document: dict[str, Any]) -> Path:
    raise NotImplementedError("history is being written")
