"""The timing harness: it, not the backend, timestamps every chunk.

The loop around the backend's stream does as little as possible per chunk (one
``perf_counter_ns`` call and one append); every metric is derived afterwards, following the
definitions in README ("Metrics").
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from .backends import Backend, Chunk, Prompt, Request, Usage, check_generation_options
from .errors import GenerationError
from .numeric import MAX_COUNT, check_finite
from .options import workload_defaults
from .prefix_cache import Nonces, check_mode, with_nonce

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

__all__ = [
    "MAX_OUTPUT_TOKENS",
    "SCALAR_METRICS",
    "Generation",
    "LLMHandle",
    "measure",
    "metric_values",
    "output_counts",
    "spread_tokens",
    "token_count",
]

#: Most output tokens one generation may report. The longest answers models write today are
#: ~128k tokens; a count past this is a server's error, not a measurement, and ITL holds one
#: gap per output token, so it also bounds what one generation may allocate (8 MiB).
MAX_OUTPUT_TOKENS = 2**20

#: Per-generation metrics that are summarised across runs (``itl_s`` is pooled separately).
SCALAR_METRICS = (
    "ttft_s",
    "e2e_s",
    "tpot_s",
    "decode_tps",
    "prefill_tps",
    "sec_per_token",
    "prompt_tokens",
    "output_tokens",
    "cpu_s",
    "peak_rss_mb",
    "server_latency_s",
    "accelerator_peak_mb",
)


def _peak_rss_mb() -> float | None:
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass
class Generation:
    """One measured generation. Times in seconds; ``None`` where a metric is undefined
    (e.g. TPOT with a single output token, TTFT when no text came back)."""

    text: str
    prompt_tokens: int | None
    output_tokens: int
    token_source: str
    ttft_s: float | None
    e2e_s: float
    itl_s: list[float] = field(repr=False)
    tpot_s: float | None
    decode_tps: float | None
    prefill_tps: float | None
    sec_per_token: float | None
    cpu_s: float
    peak_rss_mb: float | None
    chunks: int
    server_latency_s: float | None = None
    accelerator_peak_mb: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def metric_values(generations: Iterable[Generation], metric: str) -> list[float]:
    """The values of one per-generation metric, leaving out generations where it is undefined."""
    return [float(v) for g in generations if (v := getattr(g, metric)) is not None]


def output_counts(
    generations: Sequence[Generation], ignore_eos: bool, max_tokens: int | None
) -> tuple[int, int | None]:
    """(empty, short): generations with no text or no output tokens, and under ``ignore_eos``
    those with fewer than ``max_tokens`` output tokens (the empty ones among them); ``short``
    is None without ``ignore_eos``, where a shorter answer is the model's to give."""
    empty = sum(1 for g in generations if not g.text or g.output_tokens == 0)
    if not ignore_eos or max_tokens is None:
        return empty, None
    return empty, sum(1 for g in generations if g.output_tokens < max_tokens)


def spread_tokens(events: Sequence[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """(arrival ns, tokens) chunk events rescaled to sum to ``total`` output tokens.

    A server that reports only a final usage count (Bedrock; OpenAI-compatible servers without
    a running count) leaves each chunk counted as one token; the reported total is then spread
    over the chunks in proportion to their counts. Cumulative rounding keeps whole tokens and
    the exact sum. Without any token-carrying chunk there is nowhere to place tokens.
    """
    counted = sum(k for _, k in events)
    if counted == total or counted == 0:
        return list(events)
    scaled: list[tuple[int, int]] = []
    running = placed = 0
    for stamp, k in events:
        running += k
        upto = (2 * total * running + counted) // (2 * counted)  # round half up, in integers
        if upto > placed:
            scaled.append((stamp, upto - placed))
            placed = upto
    return scaled


def token_count(value: object, *, what: str, high: int = MAX_OUTPUT_TOKENS) -> int:
    """``value`` as a token count (a whole number from 0 to ``high``), or ValueError saying
    ``what`` was wrong: counts come from servers and third-party backends.

    >>> token_count(3, what="output_tokens")
    3
    >>> token_count(-5, what="output_tokens")
    Traceback (most recent call last):
    ...
    ValueError: output_tokens=-5 is not a token count (a whole number from 0 to at most 1048576)
    """
    # bool is an int to Python, never a count; float 3.0 is not what a tokenizer returns.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        shown = repr(value) if not isinstance(value, int) or value < 10**20 else f"{value:.3g}"
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ValueError(
            f"{what}={shown} is not a token count (a whole number from 0 to at most {high})"
        )
    return value


def _checked(items: Sequence[Chunk | Usage]) -> None:
    """Refuse what no stream can truthfully hold, before anything is derived from it."""
    total = 0
    for item in items:
        if isinstance(item, Usage):
            if item.prompt_tokens is not None:
                token_count(item.prompt_tokens, what="prompt_tokens", high=MAX_COUNT)
            if item.output_tokens is not None:
                token_count(item.output_tokens, what="output_tokens")
            for name in ("server_latency_s", "accelerator_peak_mb"):
                value = getattr(item, name)
                if value is not None:
                    check_finite(value, what=name, low=0.0)
            continue
        if not isinstance(item.text, str):
            raise ValueError(f"chunk text is {item.text!r:.40}, not a string")
        total += token_count(item.tokens, what="chunk tokens")
    token_count(total, what="chunk tokens in all")


def derive(
    t0: int, t_end: int, stamps: Sequence[int], items: Sequence[Chunk | Usage], cpu_ns: int
) -> Generation:
    """Turn raw timestamps (ns) and stream items into a :class:`Generation`.

    Raises :class:`~pytest_llmperf.errors.GenerationError` for counts or text no generation can
    have (``output_tokens=-5``, ``10**12``, a number as text): a wrong sample is worse than none.
    """
    try:
        _checked(items)
    except ValueError as exc:
        raise GenerationError(f"the backend reported {exc}") from exc
    usage: Usage | None = None
    texts: list[str] = []
    ttft_ns: int | None = None
    chunk_tokens = 0
    token_events: list[tuple[int, int]] = []
    for stamp, item in zip(stamps, items, strict=True):
        if isinstance(item, Usage):
            usage = item
            continue
        if item.text:
            texts.append(item.text)
            if ttft_ns is None:
                ttft_ns = stamp - t0
        if item.tokens > 0:
            chunk_tokens += item.tokens
            token_events.append((stamp, item.tokens))
    output = chunk_tokens
    source = "chunks"
    prompt_tokens = None
    if usage is not None:
        source = usage.token_source
        prompt_tokens = usage.prompt_tokens
        if usage.output_tokens is not None:
            output = usage.output_tokens
    # A chunk of k tokens after a gap g contributes k gaps of g/k: counts stay token counts,
    # and a batched chunk does not masquerade as one slow token. Where only a final usage
    # count says how many tokens the chunks held, they are spread over the chunks first.
    itl: list[float] = []
    for (prev, _), (stamp, k) in pairwise(spread_tokens(token_events, output)):
        itl.extend([(stamp - prev) / k / 1e9] * k)
    e2e = (t_end - t0) / 1e9
    ttft = None if ttft_ns is None else ttft_ns / 1e9
    decode_s = None if ttft is None else e2e - ttft
    tpot = decode_s / (output - 1) if decode_s is not None and output > 1 else None
    return Generation(
        text="".join(texts),
        prompt_tokens=prompt_tokens,
        output_tokens=output,
        token_source=source,
        ttft_s=ttft,
        e2e_s=e2e,
        itl_s=itl,
        tpot_s=tpot,
        decode_tps=(output - 1) / decode_s if tpot is not None and decode_s else None,
        prefill_tps=prompt_tokens / ttft if prompt_tokens and ttft else None,
        sec_per_token=e2e / output if output > 0 else None,
        cpu_s=cpu_ns / 1e9,
        peak_rss_mb=_peak_rss_mb(),
        chunks=sum(1 for item in items if not isinstance(item, Usage)),
        server_latency_s=usage.server_latency_s if usage is not None else None,
        accelerator_peak_mb=usage.accelerator_peak_mb if usage is not None else None,
    )


def measure(stream: Iterable[Chunk | Usage]) -> Generation:
    """Consume a backend stream, timestamping each item as it arrives.

    ``stream`` must be a lazy generator: t0 is taken before its first ``next()``, which is when
    a generator-based backend starts its request.
    """
    clock = time.perf_counter_ns
    stamps: list[int] = []
    items: list[Chunk | Usage] = []
    stamp = stamps.append
    keep = items.append
    cpu0 = time.process_time_ns()
    t0 = clock()
    for item in stream:
        stamp(clock())
        keep(item)
    t_end = clock()
    cpu_ns = time.process_time_ns() - cpu0
    return derive(t0, t_end, stamps, items, cpu_ns)


class LLMHandle:
    """What the ``llm_backend`` fixture gives a test: a loaded backend plus its identity."""

    def __init__(self, backend: Backend, load_s: float) -> None:
        self.backend = backend
        self.load_s = load_s
        self.spec: str = backend.spec.text
        self.kind: str = backend.kind
        self.model: str = backend.spec.model
        self.id: str = backend.spec.short_id
        #: ``ignore_eos`` and ``prefix_cache`` as the spec sets them (``?ignore_eos=true``):
        #: the defaults of the keywords of the same names.
        self.workload_defaults: dict[str, Any] = workload_defaults(backend.spec)
        self._nonces = Nonces()

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse generation options the backend does not declare, before any request (the
        backend refuses them again in ``stream``, for callers that go straight to it)."""
        declared = getattr(self.backend, "generation_options", None)
        if declared is not None:
            check_generation_options(self.kind, options, declared())

    def generate(
        self,
        prompt: Prompt,
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int | None = None,
        ignore_eos: bool | None = None,
        prefix_cache: str | None = None,
        **options: Any,
    ) -> Generation:
        """One timed generation. ``ignore_eos`` and ``prefix_cache`` default to the spec's."""
        self.check_options(options)
        ignore_eos = self.workload_defaults["ignore_eos"] if ignore_eos is None else ignore_eos
        cache = check_mode(
            self.workload_defaults["prefix_cache"] if prefix_cache is None else prefix_cache
        )
        if cache == "bust":
            prompt = with_nonce(prompt, self._nonces.next())
        request = Request(prompt, max_tokens, temperature, seed, options, bool(ignore_eos), cache)
        return measure(self.backend.stream(request))

    def __repr__(self) -> str:
        return f"<LLMHandle {self.spec} load_s={self.load_s:.3f}>"
