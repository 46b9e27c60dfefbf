"""A fake backend for testing the plugin's own machinery (never a real backend's test).

Copied into pytester directories as ``conftest.py``; it registers itself through the same hook
a third-party plugin would use. Its latency is real (it sleeps); environment variables change
it without changing the spec (and so without changing the baseline's key):

- ``FAKE_DELAY_MS``: sleep before each chunk (overrides the ``delay_ms`` option);
- ``FAKE_GROWTH_MS``: add this much more per generation (a drifting, unstable run), counted
  from generation ``FAKE_GROWTH_CENTER`` (default 0; earlier ones are faster, never below 0);
- ``FAKE_SLOW_FIRST``: the first N generations of each instance are 4x slower (a transient);
- ``FAKE_CALL_LOG``: append each generation's model name to this file (interleaving order);
- ``FAKE_PROMPT_LOG``: append each request's prompt, ignore_eos and prefix_cache as JSON lines.

Options script the rest: ``stop_after=N`` ends a generation after N tokens as a model's end of
sequence would (``ignore_eos`` overrides it unless ``honour_ignore_eos=false``), ``empty=true``
returns no tokens at all, ``chat_template=false`` refuses chat prompts as a model without a
template does.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_llmperf import Chunk, ModelLoadError, NoChatTemplate, Option, Request, Usage
from pytest_llmperf.backends import check_generation_options
from pytest_llmperf.errors import BackendUnavailable


class FakeBackend:
    kind = "fake"
    install_hint = "nothing to install"
    options = (
        Option("tokens_per_chunk", int, 1, "tokens per streamed chunk", minimum=1),
        Option("delay_ms", float, 0.0, "sleep before each chunk", minimum=0.0),
        Option("fail_check", bool, False, "fail the pre-flight check"),
        Option("fail_load", bool, False, "fail while loading"),
        Option("stop_after", int, 0, "end after N tokens (0 = at max_tokens)", minimum=0),
        Option("honour_ignore_eos", bool, True, "ignore_eos overrides stop_after"),
        Option("empty", bool, False, "generate nothing"),
        Option("chat_template", bool, True, "take chat prompts"),
    )

    def __init__(self, spec: Any, options: Mapping[str, Any]) -> None:
        self.spec = spec
        self.opts = dict(options)
        self.generations = 0

    @property
    def model_file(self) -> Path | None:
        return None

    def check(self) -> None:
        if self.opts["fail_check"]:
            raise BackendUnavailable("fake pre-flight failure: install the fake extra")

    def load(self) -> None:
        if self.opts["fail_load"]:
            raise ModelLoadError(f"fake model {self.spec.model!r} is corrupt")

    def generation_options(self) -> tuple[str, ...]:
        return ("top_k", "top_p", "stop", "min_new_tokens")

    def ignore_eos_note(self) -> str | None:
        return None if self.opts["honour_ignore_eos"] else "the fake server has no such field"

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        check_generation_options(self.kind, request.options, self.generation_options())
        if not isinstance(request.prompt, str) and not self.opts["chat_template"]:
            raise NoChatTemplate("fake: no chat template; pass chat_template=true")
        if os.environ.get("FAKE_PROMPT_LOG"):
            with open(os.environ["FAKE_PROMPT_LOG"], "a") as log:
                entry = [request.prompt, request.ignore_eos, request.prefix_cache]
                log.write(json.dumps(entry) + "\n")
        prompt = request.prompt if isinstance(request.prompt, str) else str(request.prompt)
        yield Usage(prompt_tokens=len(prompt.split()), token_source="chunks")
        self.generations += 1
        delay = float(os.environ.get("FAKE_DELAY_MS", self.opts["delay_ms"]))
        center = int(os.environ.get("FAKE_GROWTH_CENTER", 0))
        delay += float(os.environ.get("FAKE_GROWTH_MS", 0)) * (self.generations - center)
        delay = max(delay, 0.0)
        if self.generations <= int(os.environ.get("FAKE_SLOW_FIRST", 0)):
            delay *= 4
        if os.environ.get("FAKE_CALL_LOG"):
            with open(os.environ["FAKE_CALL_LOG"], "a") as log:
                log.write(self.spec.model + "\n")
        left = request.max_tokens
        stop = self.opts["stop_after"]
        if stop and not (request.ignore_eos and self.opts["honour_ignore_eos"]):
            left = min(left, stop)
        if self.opts["empty"]:
            left = 0
        while left > 0:
            k = min(left, self.opts["tokens_per_chunk"])
            if delay:
                time.sleep(delay / 1000)
            yield Chunk("tok " * k, tokens=k)
            left -= k

    def info(self) -> dict[str, Any]:
        return {"library": "fake", "library_version": "0", "options": self.opts}

    def close(self) -> None:
        pass


def pytest_llmperf_register_backends(register: Any) -> None:
    register(FakeBackend)
