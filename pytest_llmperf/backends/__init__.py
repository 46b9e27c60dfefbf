"""The backend contract, and the registry that third-party plugins fill through a hook.

A backend turns one request into a stream of :class:`Chunk` objects and nothing else: it never
reads the clock, so the harness's timestamps mean the same for every backend. Built-in backends
register through :func:`pytest_llmperf_register_backends`, exactly as a plugin or conftest would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import pytest

from ..errors import SpecError
from ..options import Option
from ..spec import LLMSpec
from ._generation_options import check_generation_options

__all__ = [
    "AsyncCapable",
    "AsyncStreamer",
    "Backend",
    "BackendRegistry",
    "Chunk",
    "Message",
    "Prompt",
    "Request",
    "Usage",
    "check_generation_options",
]

Message = Mapping[str, str]
Prompt = str | Sequence[Message]


@dataclass(frozen=True)
class Request:
    """One generation request, as the harness hands it to a backend.

    ``options`` are the backend's own generation options, checked against what it declares
    (:func:`check_generation_options`). ``ignore_eos`` asks for exactly ``max_tokens`` output
    tokens: an in-process engine never stops at an end-of-sequence token, a server gets the
    request fields it honours (the harness counts generations that still came back short).
    ``prefix_cache`` is ``"allow"`` or ``"bust"``; under ``"bust"`` the harness has already put
    a unique nonce at the start of the prompt, and a server that has a request field to skip
    its prompt cache is asked to (llama.cpp's ``cache_prompt``).
    """

    prompt: Prompt
    max_tokens: int = 64
    temperature: float = 0.0
    seed: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    ignore_eos: bool = False
    prefix_cache: str = "allow"


@dataclass(slots=True)
class Chunk:
    """Generated text and how many output tokens it carries (0 for text-less events)."""

    text: str
    tokens: int = 1


@dataclass(slots=True)
class Usage:
    """Yielded once, usually last: token counts and where they come from.

    ``output_tokens`` overrides the sum of chunk tokens when the engine or server reports a
    total. ``token_source`` is e.g. ``"engine"`` (the engine's own token stream), ``"usage"``
    (the server's usage block) or ``"chunks"`` (one per streamed chunk).
    """

    prompt_tokens: int | None
    token_source: str
    output_tokens: int | None = None
    #: The server's own processing time for the request, where it reports one (Bedrock's
    #: ``metrics.latencyMs``): the client-side e2e minus this is network and queueing.
    server_latency_s: float | None = None
    #: Peak accelerator memory during the generation (torch on CUDA), in MiB.
    accelerator_peak_mb: float | None = None


class Backend(Protocol):
    """What a backend implements. Construction must be cheap; ``load`` does the heavy work.

    The plugin calls ``check`` before any test runs (raise
    :class:`~pytest_llmperf.errors.BackendUnavailable` with a fix), ``load`` once per session
    (timed as load time), then ``stream`` per generation, and ``close`` at the end.

    Two methods are optional (found with ``getattr``, so backends written before them work):

    - ``generation_options() -> Collection[str]``: the names a request's ``options`` may
      carry. ``stream`` should refuse any other with :func:`check_generation_options`;
      ``llm_bench``/``llm_load`` check them before the first request. Without it, a backend
      gets whatever it is given.
    - ``ignore_eos_note() -> str | None``: why the backend cannot honour
      ``Request.ignore_eos`` (one sentence, e.g. "the OpenAI API has no request field that
      forces the output length"), or None when it can. Generations that come back short are
      counted either way.
    """

    kind: ClassVar[str]
    options: ClassVar[Sequence[Option]]
    spec: LLMSpec
    #: What to ``pip install`` when the backend's SDK is missing.
    install_hint: ClassVar[str]

    def __init__(self, spec: LLMSpec, options: Mapping[str, Any]) -> None: ...

    def check(self) -> None: ...

    def load(self) -> None: ...

    def stream(self, request: Request) -> Iterator[Chunk | Usage]: ...

    def info(self) -> dict[str, Any]: ...

    @property
    def model_file(self) -> Path | None: ...

    def close(self) -> None: ...


class AsyncStreamer(Protocol):
    """Concurrent streams for the load generator (``llm_load``), bound to one event loop.

    ``stream`` has the same contract as :meth:`Backend.stream`: lazy (the request starts at the
    first ``__anext__``), never reads the clock, raises
    :class:`~pytest_llmperf.errors.TransientError` for what the load generator counts by kind.
    """

    def stream(self, request: Request) -> AsyncIterator[Chunk | Usage]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class AsyncCapable(Protocol):
    """The optional part of the contract: backends that talk to a server implement it.

    ``open_async(limit)`` is called inside the load generator's running event loop and must
    allow ``limit`` requests in flight at once; backends without it make ``llm_load`` skip.
    """

    def open_async(self, limit: int) -> AsyncStreamer: ...


class BackendRegistry:
    """Backend classes by kind; filled once per session from the registration hook."""

    def __init__(self) -> None:
        self._kinds: dict[str, type[Backend]] = {}

    def register(self, backend: type[Backend]) -> None:
        kind = backend.kind
        if kind in self._kinds and self._kinds[kind] is not backend:
            raise pytest.UsageError(
                f"two backends registered for kind {kind!r}: "
                f"{_qualname(self._kinds[kind])} and {_qualname(backend)}"
            )
        self._kinds[kind] = backend

    @property
    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def by_kind(self, kind: str) -> type[Backend]:
        return self._kinds[kind]

    def get(self, spec: LLMSpec) -> type[Backend]:
        found = self._kinds.get(spec.kind)
        if found is not None:
            return found
        where = f"{spec.source}={spec.raw or spec.text!r}"
        valid = ", ".join(self.kinds)
        raise SpecError(f"{where}: unknown backend kind {spec.kind!r}; valid kinds: {valid}")


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@pytest.hookimpl
def pytest_llmperf_register_backends(register: Callable[[type[Backend]], None]) -> None:
    from .bedrock import BedrockBackend
    from .hf import HFBackend
    from .llamacpp import LlamaCppBackend
    from .openai import OpenAIBackend

    register(LlamaCppBackend)
    register(OpenAIBackend)
    register(BedrockBackend)
    register(HFBackend)
