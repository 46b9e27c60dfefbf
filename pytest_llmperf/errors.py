"""Every error pytest-llmperf raises, in one tree.

    LLMPerfError                 base of everything below
    ├── SpecError                a --llm spec (or ini / env value) is malformed or invalid
    ├── BackendUnavailable       a backend cannot start: missing extra, file, credentials
    │   └── ModelLoadError       the engine refused the model (corrupt, truncated, not a GGUF)
    ├── GenerationError          one generation failed (engine or server error)
    │   ├── InvalidRequest       the request itself is wrong (max_tokens=0, prompt > context)
    │   └── TransientError       worth another attempt: rate limit (429, throttling), 5xx,
    │                            timeout, connection lost, stream cut mid-way; ``.kind`` says
    │                            which. Counted as an error, never as a latency sample.
    ├── BaselineError            a stored baseline file is unreadable, corrupt or too new
    ├── ResultsFileError         a results or history file is missing, unreadable, corrupt or of
    │                            another schema version (the ``llmperf`` command's inputs)
    └── JudgeError               the LLM judge gave no valid verdict (``.raw``: its answers) or
                                 its request failed; the test errors, never gets a made-up score

    LLMPerfWarning (a UserWarning): a comparison was refused or is shaky (another host,
    --llm-compare-across-machines), or the judge cache is not writable; shown in pytest's
    warnings summary.

Configuration problems found before tests run (``SpecError`` and any ``BackendUnavailable`` that a
cheap pre-flight check detects) become ``pytest.UsageError`` in the plugin; errors during a test are
shown as one clear line instead of a traceback. SDK exceptions are translated at the backend
boundary with ``raise ... from exc`` so the original stays in ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "TRANSIENT_KINDS",
    "BackendUnavailable",
    "BaselineError",
    "GenerationError",
    "InvalidRequest",
    "JudgeError",
    "LLMPerfError",
    "LLMPerfWarning",
    "ModelLoadError",
    "NoChatTemplate",
    "ResultsFileError",
    "SpecError",
    "TransientError",
]


class LLMPerfError(Exception):
    """Base class of all pytest-llmperf errors.

    Its text is redacted (see :mod:`.redact`): messages quote servers, and a server may echo
    an ``Authorization`` header or a signed request back. pytest prints ``str(exc)``.
    """

    def __str__(self) -> str:
        from .redact import redact_text

        return redact_text(super().__str__())


class SpecError(LLMPerfError, ValueError):
    """A backend spec or option value is malformed; the message names the valid choices."""


class BackendUnavailable(LLMPerfError):
    """A backend cannot be started here; the message says what would fix it."""


class ModelLoadError(BackendUnavailable):
    """The engine could not load the model file."""


class GenerationError(LLMPerfError):
    """A generation failed inside the engine or on the server."""


class InvalidRequest(GenerationError, ValueError):
    """The generation request is invalid before it reaches the engine."""


class NoChatTemplate(InvalidRequest):
    """The prompt is a chat, but the model has no chat template to format it with.

    ``llm_bench`` and YAML cases skip on it (with this message, which says how to supply a
    template); a direct ``llm_backend.generate`` call raises it.
    """


class TransientError(GenerationError):
    """One attempt failed in a way another attempt may not: the harness counts it by ``kind``
    and draws a fresh sample instead (never retrying inside a timed sample).

    ``kind`` is one of :data:`TRANSIENT_KINDS`; ``retry_after`` is the server's hint in seconds
    (``Retry-After``), if any.
    """

    def __init__(self, message: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        if kind not in TRANSIENT_KINDS:
            raise ValueError(f"unknown transient error kind {kind!r}; valid: {TRANSIENT_KINDS}")
        self.kind = kind
        self.retry_after = retry_after


#: What a :class:`TransientError` can be, as counted in results and the summary.
TRANSIENT_KINDS = ("rate_limit", "server_error", "timeout", "connection", "stream_cut")


class BaselineError(LLMPerfError):
    """A baseline file is unreadable, corrupt or from a newer plugin."""


class ResultsFileError(LLMPerfError):
    """A results document (``--llm-json``, ``--llm-history``, ``llmperf merge``) cannot be used;
    the message names the file and what is wrong with it."""


class JudgeError(LLMPerfError):
    """The judge gave no parseable verdict in its attempts, or could not be asked.

    ``raw`` holds the judge's answers (empty when no answer came back); ``judge`` its spec.
    """

    def __init__(self, message: str, *, judge: str, raw: list[str]) -> None:
        super().__init__(message)
        self.judge = judge
        self.raw = list(raw)


class LLMPerfWarning(UserWarning):
    """A comparison was refused or needs a second look."""
