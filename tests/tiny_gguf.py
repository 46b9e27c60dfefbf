"""Write a tiny random-weight llama GGUF that llama.cpp loads in milliseconds, for fast tests.

The vocabulary is an SPM ("llama") tokenizer: <unk>, <s>, </s>, the 256 byte-fallback tokens
<0x00>..<0xFF> (so any text tokenizes) and the printable ASCII characters. Embedding dimension 0
is a constant that no layer writes to, so after the final RMS norm it is a positive offset that
the output head turns into a per-token bias: greedy decoding then always picks from a chosen set
of tokens (ASCII characters, or lone UTF-8 continuation bytes with ``invalid_utf8=True``) and
never emits </s> (or, with ``eos_first=True``, always does, so generation ends at once).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

__all__ = ["BOS_ID", "CHAT_TEMPLATE", "EOS_ID", "N_VOCAB", "write_tiny_gguf"]

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_FF = 128
N_CTX = 1024
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
BYTE0_ID = 3  # id of <0x00>; byte b is token BYTE0_ID + b
_ASCII = [chr(c) for c in range(0x21, 0x7F)]
N_VOCAB = BYTE0_ID + 256 + 1 + len(_ASCII)  # the 1 is "▁", SPM's space


def _vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁", *_ASCII]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (1 + len(_ASCII))
    return tokens, [0.0] * len(tokens), [int(t) for t in types]


def write_tiny_gguf(
    path: Path,
    *,
    invalid_utf8: bool = False,
    seed: int = 0,
    chat_template: str | None = CHAT_TEMPLATE,
    eos_first: bool = False,
) -> Path:
    """Write the model to ``path`` and return it.

    With ``invalid_utf8=True`` greedy generation emits only bytes 0x80..0xBF (lone continuation
    bytes, so no run of them is valid UTF-8); otherwise it emits printable ASCII and spaces.
    Either way </s> is strongly suppressed, so generation runs until ``max_tokens``; with
    ``eos_first=True`` it is the greedy choice instead, at every step, so an engine that stops
    at EOS generates nothing. ``chat_template=None`` leaves the template out of the metadata.
    """
    rng = np.random.default_rng(seed)

    def rand(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    tokens, scores, types = _vocab()
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(N_VOCAB)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(UNK_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    embd = rand(N_VOCAB, N_EMBD, scale=0.05)
    embd[:, 0] = 1.0  # the constant "bias" channel
    writer.add_tensor("token_embd.weight", embd)
    for i in range(N_LAYER):
        attn_out, ffn_down = rand(N_EMBD, N_EMBD), rand(N_EMBD, N_FF)
        attn_out[0], ffn_down[0] = 0.0, 0.0  # keep channel 0 constant through the residual
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", rand(N_EMBD, N_EMBD, scale=0.2))
        writer.add_tensor(f"blk.{i}.attn_k.weight", rand(N_EMBD, N_EMBD, scale=0.2))
        writer.add_tensor(f"blk.{i}.attn_v.weight", rand(N_EMBD, N_EMBD, scale=0.2))
        writer.add_tensor(f"blk.{i}.attn_output.weight", attn_out)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", rand(N_FF, N_EMBD, scale=0.2))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", rand(N_FF, N_EMBD, scale=0.2))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", ffn_down)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))

    if invalid_utf8:
        favoured = np.arange(BYTE0_ID + 0x80, BYTE0_ID + 0xC0)
    else:
        favoured = np.arange(BYTE0_ID + 256, N_VOCAB)
    # Channel 0 normalizes to about +6..8, so these weights are logit offsets of roughly +-25
    # against a random part of order 1: enough to pin the argmax inside ``favoured``.
    out = rand(N_VOCAB, N_EMBD, scale=0.5)
    out[:, 0] = -3.0
    out[favoured, 0] = 3.0
    # eos_first: +40 rather than +10, which still lets the favoured tokens win now and then
    # (llama.cpp gave 9 tokens before </s> for "Hello").
    out[EOS_ID, 0] = 40.0 if eos_first else -10.0
    writer.add_tensor("output.weight", out)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
