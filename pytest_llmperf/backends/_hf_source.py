"""Where an ``hf:`` model comes from: a hub id, a directory, a GGUF file or the embedded model."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import BackendUnavailable
from ..models import EMBEDDED_ALIAS

__all__ = ["WEIGHTS", "check_dir", "check_gguf", "locate", "offline"]

WEIGHTS = ("*.safetensors", "*.bin", "*.gguf")
# A hub id is NAME or ORG/NAME; anything else is a path, even one that does not exist.
_PATHLIKE = re.compile(r"[/.~]|.*\\|(.*/){2}")


def locate(model: str) -> tuple[str, str, str | None]:
    """(source, hub id or directory, GGUF file name); nothing beyond ``stat`` and ``glob``."""
    if model == EMBEDDED_ALIAS:
        return "gguf", "", None  # the package assembles the file at load
    path = Path(model).expanduser()
    if path.is_dir():
        ggufs = list(path.glob("*.gguf"))
        if len(ggufs) == 1 and not any(p for w in WEIGHTS[:2] for p in path.glob(w)):
            return "gguf", str(path), ggufs[0].name  # the one model in there
        return "dir", str(path), None
    if path.suffix.lower() == ".gguf" or path.exists() or _PATHLIKE.match(model):
        return "gguf", str(path.parent), path.name
    return "hub", model, None


def offline() -> bool:
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(f.strip().lower() in {"1", "true", "yes", "on"} for f in flags)


def check_gguf(path: Path) -> None:
    if not path.exists():
        raise BackendUnavailable(
            f"model path not found: {path} (hf takes a directory, a .gguf file, a Hugging Face "
            f"hub id such as google/gemma-3-270m, or {EMBEDDED_ALIAS!r})"
        )
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise BackendUnavailable(
            f"not a GGUF file: {path} (starts with {magic!r}); pass a .gguf file or a "
            "directory written by save_pretrained"
        )


def check_dir(path: Path) -> None:
    if any(p for w in WEIGHTS[:2] for p in path.glob(w)):
        return
    if ggufs := sorted(p.name for p in path.glob("*.gguf")):  # one would have been taken
        raise BackendUnavailable(
            f"{path} holds several GGUF files ({', '.join(ggufs)}); name one: hf:{path / ggufs[0]}"
        )
    raise BackendUnavailable(
        f"no model weights in {path}: looked for {', '.join(WEIGHTS)}; pass a directory "
        "written by save_pretrained, or a .gguf file"
    )
