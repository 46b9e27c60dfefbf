"""Where an ``hf:`` model comes from (a hub id, a directory, a GGUF file or the embedded model),
and the cheap checks of a spec that ``check()`` runs before any test."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable, SpecError
from ..models import EMBEDDED_ALIAS

__all__ = [
    "WEIGHTS",
    "check_cached",
    "check_dir",
    "check_gguf",
    "check_options",
    "gguf_tokenizer",
    "locate",
    "offline",
]

WEIGHTS = ("*.safetensors", "*.bin", "*.gguf")
# A hub id is NAME or ORG/NAME; anything else is a path, even one that does not exist.
_PATHLIKE = re.compile(r"[/.~]|.*\\|(.*/){2}")
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)\Z")


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


def check_cached(repo: str, revision: str | None) -> None:
    """Offline, a hub id must be in the local cache already."""
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str):
        raise BackendUnavailable(
            f"HF_HUB_OFFLINE is set and {repo!r} is not in the local Hugging Face "
            f"cache; download it first (hf download {repo}) or unset HF_HUB_OFFLINE"
        )


@lru_cache(maxsize=2)
def gguf_tokenizer(repo: str, gguf_file: str, stamp: tuple[int, int]) -> Any:
    """Building a tokenizer from GGUF metadata takes 30-50 s for Gemma's 262k vocabulary; specs
    that differ only in options (dtype=...) share it. ``stamp`` (size, mtime) keys file versions."""
    import transformers

    return transformers.AutoTokenizer.from_pretrained(
        repo, gguf_file=gguf_file, local_files_only=True
    )


def check_options(o: Mapping[str, Any], where: str) -> None:
    """Options that contradict each other or this machine (no CUDA, a missing package)."""
    if not _DEVICE.match(o["device"]):
        raise SpecError(
            f"{where}: bad value {o['device']!r} for option 'device': expected cpu, cuda, "
            "cuda:N, mps or auto"
        )
    if o["gptq_bits"] not in (0, 2, 3, 4, 8):
        raise SpecError(f"{where}: gptq_bits must be 2, 3, 4 or 8 (0 = not GPTQ)")
    quantizers = [k for k in ("load_in_8bit", "load_in_4bit", "gptq_bits") if o[k]]
    if len(quantizers) > 1:
        raise SpecError(f"{where}: choose one of {', '.join(quantizers)}")
    if needs_cuda := quantizers + [f"device={o['device']}"] * ("cuda" in o["device"]):
        _check_cuda(needs_cuda, o["device"])
    packages = {"load_in_8bit": "bitsandbytes", "load_in_4bit": "bitsandbytes"}
    packages |= {"gptq_bits": "optimum gptqmodel", "device_map": "accelerate"}
    for option, names in packages.items():
        absent = [n for n in names.split() if importlib.util.find_spec(n) is None]
        if o[option] and absent:
            raise BackendUnavailable(
                f"{option} needs the {' and '.join(absent)} package: pip install "
                + " ".join(absent)
            )


def _check_cuda(reasons: list[str], device: str) -> None:
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
        raise BackendUnavailable(
            f"{', '.join(reasons)} needs a CUDA GPU, but torch.cuda.is_available() is False "
            f"here (torch {torch.__version__}: {build}); run on a machine with an NVIDIA "
            "GPU and a CUDA build of torch, or drop the option"
        )
    if int(device.partition(":")[2] or 0) >= torch.cuda.device_count():
        raise BackendUnavailable(
            f"device={device}, but only {torch.cuda.device_count()} CUDA device(s) are visible"
        )
