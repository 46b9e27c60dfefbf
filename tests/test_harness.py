"""Metric derivation from timestamped chunks (pure; exact timestamps, no clock)."""

import pytest

from pytest_llmperf.backends import Chunk, Usage
from pytest_llmperf.errors import GenerationError
from pytest_llmperf.harness import derive, measure

MS = 1_000_000  # ns


def gen(stamps_ms, items, end_ms, t0_ms=0):
    return derive(t0_ms * MS, end_ms * MS, [s * MS for s in stamps_ms], items, cpu_ns=0)


def test_definitions_on_one_token_per_chunk():
    g = gen(
        [0, 100, 110, 130, 160],
        [
            Usage(prompt_tokens=50, token_source="engine"),
            Chunk("a"),
            Chunk("b"),
            Chunk("c"),
            Chunk("d"),
        ],
        end_ms=160,
    )
    assert g.text == "abcd"
    assert (g.prompt_tokens, g.output_tokens, g.token_source) == (50, 4, "engine")
    assert g.ttft_s == pytest.approx(0.100)
    assert g.e2e_s == pytest.approx(0.160)
    assert g.itl_s == pytest.approx([0.010, 0.020, 0.030])  # TTFT excluded
    assert g.tpot_s == pytest.approx(0.060 / 3)
    assert g.decode_tps == pytest.approx(3 / 0.060)
    assert g.prefill_tps == pytest.approx(50 / 0.100)
    assert g.sec_per_token == pytest.approx(0.160 / 4)


def test_textless_first_chunk_is_not_ttft():
    # A role-only / held-back first chunk must not count as the first token's text.
    g = gen([5, 40, 50], [Chunk("", tokens=0), Chunk("x"), Chunk("y")], end_ms=50)
    assert g.ttft_s == pytest.approx(0.040)
    assert g.output_tokens == 2
    assert g.chunks == 3


def test_multi_token_chunks_count_tokens_and_spread_gaps():
    g = gen([10, 40], [Chunk("ab", tokens=2), Chunk("cde", tokens=3)], end_ms=40)
    assert g.output_tokens == 5
    assert g.chunks == 2
    assert g.itl_s == pytest.approx([0.010, 0.010, 0.010])
    assert g.tpot_s == pytest.approx(0.030 / 4)


def test_server_usage_overrides_chunk_count():
    g = gen([10, 20, 25], [Chunk("a"), Chunk("b"), Usage(7, "usage", output_tokens=3)], end_ms=25)
    assert (g.output_tokens, g.prompt_tokens, g.token_source) == (3, 7, "usage")


def test_undefined_metrics_are_none_not_zero():
    single = gen([10], [Chunk("a")], end_ms=10)
    assert single.tpot_s is None
    assert single.decode_tps is None
    assert single.prefill_tps is None  # prompt length unknown
    nothing = gen([], [], end_ms=3)
    assert nothing.ttft_s is None
    assert nothing.sec_per_token is None
    assert nothing.output_tokens == 0


def test_measure_consumes_a_lazy_stream():
    def stream():
        yield Usage(3, "chunks")
        for word in ("one ", "two ", "three"):
            yield Chunk(word)

    g = measure(stream())
    assert g.text == "one two three"
    assert g.output_tokens == 3
    assert g.ttft_s is not None
    assert g.e2e_s >= g.ttft_s > 0
    assert len(g.itl_s) == 2


def test_a_final_usage_count_is_spread_over_chunks_counted_one_each():
    # Bedrock and many servers send several tokens per delta and say how many only at the
    # end: 3 chunks, 9 tokens -> 3 tokens per chunk; the two later chunks give 3 gaps of 10 ms
    # each (the first chunk's tokens follow TTFT, not a gap).
    g = gen(
        [100, 130, 160, 160],
        [Chunk("a"), Chunk("b"), Chunk("c"), Usage(5, "usage", output_tokens=9)],
        end_ms=160,
    )
    assert g.output_tokens == 9
    assert g.itl_s == pytest.approx([0.010] * 6)
    assert sum(g.itl_s) == pytest.approx(0.060)
    assert g.tpot_s == pytest.approx(0.060 / 8)


# --- what a backend reports is checked before anything is derived from it ------------------


@pytest.mark.parametrize(
    ("items", "message"),
    [
        pytest.param(
            [Chunk("a"), Chunk("b"), Usage(5, "usage", output_tokens=10**12)],
            r"output_tokens=1000000000000 .*at most 1048576",
            id="a-count-no-generation-holds",
        ),
        pytest.param(
            [Chunk("a"), Chunk("b"), Usage(5, "usage", output_tokens=-5)],
            r"output_tokens=-5 .*from 0",
            id="negative",
        ),
        pytest.param(
            [Chunk("a"), Usage(5, "usage", output_tokens="5")],  # type: ignore[arg-type]
            r"output_tokens='5' is not a token count",
            id="string",
        ),
        pytest.param(
            [Chunk("a"), Usage("5", "usage", output_tokens=1)],  # type: ignore[arg-type]
            r"prompt_tokens='5'",
            id="string-prompt",
        ),
        pytest.param(
            [Chunk("a"), Usage(5, "usage", output_tokens=True)],  # type: ignore[arg-type]
            r"output_tokens=True",
            id="bool",
        ),
        pytest.param(
            [Chunk("a"), Chunk("b", tokens=10**12)], r"chunk tokens=1000000000000", id="chunk-count"
        ),
        pytest.param([Chunk(5)], r"text is 5, not a string", id="numeric-text"),  # type: ignore[arg-type]
        pytest.param(
            [Chunk("a"), Usage(5, "usage", output_tokens=1, server_latency_s=float("nan"))],
            r"server_latency_s",
            id="nan-latency",
        ),
    ],
)
def test_a_count_or_text_that_cannot_be_true_is_refused(items, message):
    with pytest.raises(GenerationError, match=message):
        gen(list(range(len(items))), items, end_ms=len(items))


def test_the_largest_allowed_count_derives_without_trouble():
    g = gen([1, 2, 3], [Chunk("a"), Chunk("b"), Usage(0, "usage", output_tokens=2**20)], end_ms=3)
    assert g.output_tokens == 2**20
    assert len(g.itl_s) < 2**20
