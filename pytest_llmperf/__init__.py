"""pytest-llmperf: LLM inference latency as pytest regression tests.

The plugin itself loads through the ``pytest11`` entry point (``pytest_llmperf.plugin``); this
package exports what test code and third-party backends use.
"""

from __future__ import annotations

from .backends import Backend, Chunk, Request, Usage
from .bench import BenchResult
from .errors import (
    BackendUnavailable,
    GenerationError,
    InvalidRequest,
    JudgeError,
    LLMPerfError,
    ModelLoadError,
    NoChatTemplate,
    SpecError,
)
from .harness import Generation, LLMHandle
from .options import Option
from .spec import LLMSpec, parse_spec
from .stats import Summary

__all__ = [
    "Backend",
    "BackendUnavailable",
    "BenchResult",
    "Chunk",
    "Generation",
    "GenerationError",
    "InvalidRequest",
    "JudgeError",
    "LLMHandle",
    "LLMPerfError",
    "LLMSpec",
    "ModelLoadError",
    "NoChatTemplate",
    "Option",
    "Request",
    "SpecError",
    "Summary",
    "Usage",
    "parse_spec",
]
