"""The OpenAI API and OpenAI-compatible servers (vLLM, llama.cpp server, ollama, ...).

``openai:MODEL`` talks to the OpenAI API (``OPENAI_API_KEY``); ``openai:MODEL@BASE_URL`` to any
compatible server. Streams chat completions (``?api=completions`` for the legacy endpoint) and
asks for usage in the stream; servers that ignore that (llama.cpp's does) are counted one token
per content delta, and ``token_source`` says which happened. Retries are off by default so a
retried request's latency is never mixed with first tries.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BackendUnavailable, GenerationError, InvalidRequest
from ..options import Option
from ..spec import LLMSpec
from . import Chunk, Request, Usage

__all__ = ["OpenAIBackend"]

_INSTALL = "pip install 'pytest-llmperf[openai]'"


class OpenAIBackend:
    kind: ClassVar[str] = "openai"
    install_hint: ClassVar[str] = _INSTALL
    options: ClassVar[Sequence[Option]] = (
        Option("api", str, "chat", "endpoint", choices=("chat", "completions")),
        Option("timeout", float, 60.0, "seconds before a request is abandoned", minimum=0.1),
        Option(
            "max_retries", int, 0, "client retries (0: a retry never hides in a sample)", minimum=0
        ),
        Option("api_key_env", str, "OPENAI_API_KEY", "environment variable holding the key"),
    )

    def __init__(self, spec: LLMSpec, options: Mapping[str, Any]) -> None:
        self.spec = spec
        self.opts = dict(options)
        self._client: Any = None

    @property
    def model_file(self) -> Path | None:
        return None

    @property
    def _where(self) -> str:
        return self.spec.base_url or "the OpenAI API"

    def _api_key(self) -> str | None:
        return os.environ.get(self.opts["api_key_env"]) or None

    def check(self) -> None:
        if importlib.util.find_spec("openai") is None:
            raise BackendUnavailable(f"openai needs the openai package: {_INSTALL}")
        if self.spec.base_url is None and self._api_key() is None:
            raise BackendUnavailable(
                f"{self.opts['api_key_env']} is not set (needed for the OpenAI API; give a base "
                "URL, openai:MODEL@http://host:port/v1, for a compatible server)"
            )

    def load(self) -> None:
        import openai

        self._client = openai.OpenAI(
            base_url=self.spec.base_url,
            # Local compatible servers usually want no key, but the client insists on one.
            api_key=self._api_key() or "not-needed",
            timeout=self.opts["timeout"],
            max_retries=self.opts["max_retries"],
        )
        try:
            self._client.models.list()
        except openai.AuthenticationError as exc:
            raise BackendUnavailable(f"{self._where} refused the API key (401): {exc}") from exc
        except openai.APIConnectionError as exc:
            raise BackendUnavailable(f"cannot reach {self._where}: {exc}") from exc
        except openai.APIStatusError as exc:
            raise BackendUnavailable(
                f"{self._where} answered HTTP {exc.status_code} to GET /models: {exc}"
            ) from exc

    def _create(self, request: Request) -> Any:
        kwargs: dict[str, Any] = {
            "model": self.spec.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
            **request.options,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if self.opts["api"] == "completions":
            if not isinstance(request.prompt, str):
                raise InvalidRequest("api=completions takes a string prompt, not chat messages")
            return self._client.completions.create(prompt=request.prompt, **kwargs)
        prompt = request.prompt
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return self._client.chat.completions.create(messages=list(messages), **kwargs)

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        import openai

        if request.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {request.max_tokens}")
        usage = None
        chat = self.opts["api"] == "chat"
        try:
            for event in self._create(request):
                if getattr(event, "usage", None):
                    usage = event.usage
                if not event.choices:
                    continue
                choice = event.choices[0]
                text = choice.delta.content if chat else choice.text
                if text:
                    yield Chunk(text, 1)
        except openai.APIConnectionError as exc:
            raise GenerationError(f"lost {self._where}: {exc}") from exc
        except openai.APIStatusError as exc:
            raise GenerationError(f"{self._where} answered HTTP {exc.status_code}: {exc}") from exc
        if usage is not None:
            yield Usage(usage.prompt_tokens, "usage", output_tokens=usage.completion_tokens)
        else:
            yield Usage(None, "chunks")

    def info(self) -> dict[str, Any]:
        import openai

        return {
            "library": "openai",
            "library_version": openai.__version__,
            "options": self.opts,
            "base_url": self.spec.base_url,
        }

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
