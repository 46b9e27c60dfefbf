"""A fake backend for testing the plugin's own machinery (never a real backend's test).

Copied into pytester directories as ``conftest.py``; it registers itself through the same hook
a third-party plugin would use. Its latency is real (it sleeps); environment variables change
it without changing the spec (and so without changing the baseline's key):

- ``FAKE_DELAY_MS``: sleep before each chunk (overrides the ``delay_ms`` option);
- ``FAKE_GROWTH_MS``: add this much more per generation (a drifting, unstable run), counted
  from generation ``FAKE_GROWTH_CENTER`` (default 0; earlier ones are faster, never below 0);
- ``FAKE_SLOW_FIRST``: the first N generations of each instance are 4x slower (a transient);
- ``FAKE_CALL_LOG``: append each generation's model name to this file (interleaving order).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_llmperf import Chunk, ModelLoadError, Option, Request, Usage
from pytest_llmperf.errors import BackendUnavailable


class FakeBackend:
    kind = "fake"
    install_hint = "nothing to install"
    options = (
        Option("tokens_per_chunk", int, 1, "tokens per streamed chunk", minimum=1),
        Option("delay_ms", float, 0.0, "sleep before each chunk", minimum=0.0),
        Option("fail_check", bool, False, "fail the pre-flight check"),
        Option("fail_load", bool, False, "fail while loading"),
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

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
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
