"""What the results were measured on, and what the gpu / api markers look for.

Machine and commit info come from pytest-benchmark (a declared dependency) so both tools
describe a machine the same way; this module adds what an LLM benchmark needs beside it.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from functools import lru_cache
from typing import Any

__all__ = [
    "KNOWN_APIS",
    "api_credentials",
    "commit_id",
    "comparison_key",
    "cuda_device_count",
    "describe_environment",
]

_LIBRARIES = (
    "pytest-llmperf",
    "pytest",
    "pytest-benchmark",
    "llama-cpp-python",
    "transformers",
    "torch",
    "openai",
    "boto3",
)


def commit_id() -> str | None:
    """The git commit of the working directory (pytest-benchmark's lookup), if any."""
    from pytest_benchmark.utils import get_commit_info

    found = str(get_commit_info().get("id") or "")
    # pytest-benchmark says "unversioned" or "unknown" outside a git checkout.
    return found if re.fullmatch(r"[0-9a-f]{7,40}", found) else None


def comparison_key(backend_record: dict[str, Any], workers: int) -> dict[str, Any]:
    """What must match (``strict``) and what should (``soft``) for two runs to be compared.

    ``backend_record`` is what the session records when a backend loads (library, version,
    options, model file); ``workers`` is the xdist worker count (0 without xdist), because
    parallel runs on one machine are not comparable with serial ones.
    """
    model_file = backend_record.get("model_file") or {}
    strict = {
        "plugin_major": importlib.metadata.version("pytest-llmperf").split(".")[0],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": list(_gpu_names()),
        "backend": backend_record.get("kind"),
        "backend_library": "{} {}".format(
            backend_record.get("library"), backend_record.get("library_version")
        ),
        "backend_options": backend_record.get("options"),
        "model_sha256": model_file.get("sha256"),
        "xdist_workers": workers,
    }
    soft = {
        "host": platform.node(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    return {"strict": strict, "soft": soft}


@lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """CUDA devices visible to this process (honours CUDA_VISIBLE_DEVICES), without torch."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


@lru_cache(maxsize=1)
def _gpu_names() -> tuple[str, ...]:
    if not cuda_device_count() or shutil.which("nvidia-smi") is None:
        return ()
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.strip() for line in out.splitlines() if line.strip())


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _versions() -> dict[str, str]:
    found = {}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def describe_environment() -> dict[str, Any]:
    """A JSON-safe description of the machine, for result files (takes ~1 s: cpuinfo)."""
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
    from pytest_benchmark.utils import get_commit_info

    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "ram_bytes": _ram_bytes(),
        "gpus": list(_gpu_names()),
        "cuda_device_count": cuda_device_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": _versions(),
        "machine_info": pytest_benchmark_generate_machine_info(),
        "commit_info": get_commit_info(),
    }


#: API name -> how to tell that its credentials are configured (for ``@pytest.mark.api``).
KNOWN_APIS = ("openai", "bedrock")


def api_credentials(api: str) -> str | None:
    """``None`` when ``api``'s credentials are configured, else the reason to skip."""
    if api == "openai":
        return None if os.environ.get("OPENAI_API_KEY") else "OPENAI_API_KEY is not set"
    if api == "bedrock":
        try:
            import boto3
        except ImportError:
            return "boto3 is not installed: pip install 'pytest-llmperf[bedrock]'"
        # Never probe the EC2 instance-metadata endpoint from a marker check: it is a network
        # call that hangs off-cloud. Environment, profiles and SSO config are still honoured.
        saved = os.environ.get("AWS_EC2_METADATA_DISABLED")
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        try:
            found = boto3.Session().get_credentials()
        finally:
            if saved is None:
                del os.environ["AWS_EC2_METADATA_DISABLED"]
            else:
                os.environ["AWS_EC2_METADATA_DISABLED"] = saved
        return None if found is not None else "no AWS credentials found (environment or ~/.aws)"
    raise ValueError(f"unknown API {api!r}; known: {', '.join(KNOWN_APIS)}")
