"""What does measuring cost? The plugin's harness against a bare llama-cpp-python loop.

    python benchmarks/overhead.py [--pairs 15] [--tokens 64] [--model PATH]

In one process, on one loaded model, alternate (ABAB..., then BABA...) between:
  A  the plugin: LLMHandle.generate (LlamaCppBackend.stream timed by the harness), and
  B  a bare loop: the same Llama.generate token loop with the same settings, timed only at the
     first token and at the end.
It prints decode tokens/s for both and their ratio (A / B, target >= 0.99), then the harness's
own cost per chunk, measured on a pre-built stream so that no engine time is mixed in (target
< 20 us). Nothing here asserts: the figures are for people to read.
"""

from __future__ import annotations

import argparse
import codecs
import statistics
import time
from collections.abc import Iterator

from pytest_llmperf.backends import Chunk, Usage
from pytest_llmperf.backends.llamacpp import LlamaCppBackend
from pytest_llmperf.harness import LLMHandle, derive, measure
from pytest_llmperf.options import resolve_options
from pytest_llmperf.spec import parse_spec

PROMPT = "Write a story about a fox who learns to read. Once upon a time,"


def bare_decode_tps(llm: object, prompt: str, max_tokens: int) -> float:
    """The same token loop the backend runs, with nothing but two clock reads around it."""
    import llama_cpp

    tokens = llm.tokenize(prompt.encode(), add_bos=True)  # type: ignore[attr-defined]
    llm.set_seed(0)  # type: ignore[attr-defined]
    llm.reset()  # type: ignore[attr-defined]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    vocab = llm._model.vocab  # type: ignore[attr-defined]
    first = 0
    n = 0
    for token in llm.generate(tokens, temp=0.0, reset=False, top_k=40, top_p=0.95):  # type: ignore[attr-defined]
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            break
        decoder.decode(llm.detokenize([token]))  # type: ignore[attr-defined]
        n += 1
        if n == 1:
            first = time.perf_counter_ns()
        if n >= max_tokens:
            break
    end = time.perf_counter_ns()
    return (n - 1) / ((end - first) / 1e9)


def harness_cost_per_chunk(n_chunks: int = 200_000, repeats: int = 7) -> tuple[float, float]:
    """(hot-loop cost, post-processing cost) per chunk, in microseconds; medians of repeats."""
    chunks = [Chunk("x", 1) for _ in range(n_chunks)]

    def stream() -> Iterator[Chunk | Usage]:
        yield Usage(prompt_tokens=10, token_source="engine")
        yield from chunks

    loop_costs, derive_costs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _item in stream():
            pass
        bare = time.perf_counter_ns() - t0

        t0 = time.perf_counter_ns()
        measure(stream())
        measured = time.perf_counter_ns() - t0

        stamps = list(range(n_chunks + 1))
        items: list[Chunk | Usage] = [Usage(10, "engine"), *chunks]
        t0 = time.perf_counter_ns()
        derive(0, n_chunks + 1, stamps, items, 0)
        derived = time.perf_counter_ns() - t0
        # measure() includes derive(); the hot loop's own cost is what remains.
        loop_costs.append((measured - derived - bare) / n_chunks / 1e3)
        derive_costs.append(derived / n_chunks / 1e3)
    return statistics.median(loop_costs), statistics.median(derive_costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--model", default="gemma3-270m")
    args = parser.parse_args()

    spec = parse_spec(f"llamacpp:{args.model}")
    backend = LlamaCppBackend(spec, resolve_options(spec, LlamaCppBackend.options))
    backend.load()
    handle = LLMHandle(backend, 0.0)
    llm = backend._llm
    print(f"model {backend.model_file}, {args.tokens} tokens, {args.pairs} interleaved pairs")

    plugin_tps, bare_tps = [], []
    handle.generate(PROMPT, max_tokens=args.tokens)  # warm-up, not recorded
    for i in range(args.pairs):
        order = ("A", "B") if i % 2 == 0 else ("B", "A")
        for which in order:
            if which == "A":
                g = handle.generate(PROMPT, max_tokens=args.tokens)
                assert g.decode_tps is not None
                plugin_tps.append(g.decode_tps)
            else:
                bare_tps.append(bare_decode_tps(llm, PROMPT, args.tokens))
    ratios = [a / b for a, b in zip(plugin_tps, bare_tps, strict=True)]
    print(f"decode tok/s, plugin  (A): median {statistics.median(plugin_tps):7.2f}")
    print(f"decode tok/s, bare    (B): median {statistics.median(bare_tps):7.2f}")
    print(
        f"ratio A/B per pair: median {statistics.median(ratios):.4f}  "
        f"(min {min(ratios):.4f}, max {max(ratios):.4f}; target >= 0.99)"
    )
    loop_us, derive_us = harness_cost_per_chunk()
    print(f"harness hot-loop cost per chunk: {loop_us:.3f} us (target < 20 us)")
    print(f"metric derivation after the stream, per chunk: {derive_us:.3f} us (not on the clock)")
    backend.close()


if __name__ == "__main__":
    main()
