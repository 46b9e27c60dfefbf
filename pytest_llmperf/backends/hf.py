"""Hugging Face transformers: ``hf:MODEL[?options]`` runs ``model.generate`` in PyTorch.

MODEL is a hub id (``google/gemma-3-270m``; with ``HF_HUB_OFFLINE=1`` only the local cache is
read), a directory written by ``save_pretrained``, a ``.gguf`` file (transformers unpacks it to
``dtype``), or ``gemma3-270m``: the embedded GGUF that ``llamacpp`` runs, so the same weights
can be timed on two engines.

``generate`` runs in a worker thread and a streamer hands over each decoding step as it happens:
one chunk per generated token, its text decoded incrementally. A token whose text is held back
(an incomplete UTF-8 sequence) still arrives as ``Chunk("", 1)`` when it is produced; its text
comes with a later chunk. The end-of-sequence token that stops generation is not counted, as in
``llamacpp``; ``Request.ignore_eos`` sets ``min_new_tokens`` to ``max_tokens`` (transformers then
masks EOS), so exactly ``max_tokens`` tokens come. ``Request.prefix_cache`` needs nothing: each
``generate`` starts from an empty cache (under ``"bust"`` the harness has put its nonce in the
prompt already). Chat prompts are formatted with the template that ``chat_template`` selects
(``_chat_template``): the tokenizer's own by default, Gemma 3's format for the embedded model.

GPTStonks Chat CE's settings map onto options::

    LLM_MODEL_ID=hf:ID             hf:ID
    LLM_HF_DEVICE=N (N >= 0)       device=cuda:N
    LLM_HF_DEVICE=-1               with LLM_HF_DEVICE_MAP=auto: device_map=auto (all visible
                                   GPUs); alone, -1 means the CPU in transformers: device=cpu
    LLM_HF_DEVICE_MAP=auto         device_map=auto
    LLM_HF_GPTQ_BITS=N             gptq_bits=N
    LLM_HF_DISABLE_EXLLAMA=true    disable_exllama=true
    LLM_HF_TRUST_REMOTE_CODE=true  trust_remote_code=true

transformers 5 picks GPTQ kernels through gptqmodel's ``backend``: ``disable_exllama`` asks for
its portable ``torch`` kernel.
"""

from __future__ import annotations

import gc
import importlib.util
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BackendUnavailable, InvalidRequest, ModelLoadError
from ..models import EMBEDDED_ALIAS, embedded_available, embedded_model_path
from ..options import Option
from ..spec import LLMSpec
from . import Chunk, Message, Request, Usage, check_generation_options
from ._chat_template import (
    ChatTemplate,
    check_chat_template,
    needs_bos,
    no_chat_template,
    resolve_chat_template,
)
from ._hf_source import (
    WEIGHTS,
    check_cached,
    check_dir,
    check_gguf,
    check_options,
    gguf_tokenizer,
    locate,
    offline,
)
from ._hf_streamer import RESERVED_HINT, TokenStreamer, generation_options, run_generate

__all__ = ["HFBackend"]

_INSTALL = (
    "pip install 'pytest-llmperf[hf]' (install torch first, from pytorch.org, so that pip keeps "
    "the CPU or CUDA build that fits this machine)"
)


class HFBackend:
    kind: ClassVar[str] = "hf"
    install_hint: ClassVar[str] = _INSTALL
    options: ClassVar[Sequence[Option]] = (
        Option(
            "dtype",
            str,
            "auto",
            "weight dtype; auto = float32 for GGUF (transformers unpacks it, and float32 is "
            "fastest on CPU), the checkpoint's own dtype otherwise",
            choices=("auto", "float32", "float16", "bfloat16"),
        ),
        Option("device", str, "auto", "cpu, cuda, cuda:N, mps, or auto (cuda > mps > cpu)"),
        Option("device_map", str, "", "accelerate device map, e.g. auto to spread over GPUs"),
        Option("load_in_8bit", bool, False, "8-bit weights via bitsandbytes (CUDA)"),
        Option("load_in_4bit", bool, False, "4-bit weights via bitsandbytes (CUDA)"),
        Option("gptq_bits", int, 0, "a GPTQ checkpoint's bits (2, 3, 4, 8); 0 = not GPTQ"),
        Option("disable_exllama", bool, False, "GPTQ: the portable torch kernel, not exllama"),
        Option("trust_remote_code", bool, False, "run the model repository's own Python code"),
        Option("revision", str, "", "hub branch, tag or commit; empty = the default branch"),
        Option("chat", bool, False, "format string prompts with the chat template"),
        Option(
            "chat_template",
            str,
            "",
            "chat template: gemma3, a llama-cpp-python chat format (chatml, llama-2, ...; needs "
            "llama-cpp-python) or a path to a Jinja file; empty = the tokenizer's own (the "
            "embedded model: gemma3)",
        ),
        Option("threads", int, 0, "torch.set_num_threads (process-wide); 0 = leave", minimum=0),
        Option("seed", int, 0, "sampling seed (used when temperature > 0)", minimum=0),
    )
    #: Longest wait for the next token before a generation is declared stuck.
    stall_timeout_s: float = 600.0

    def __init__(self, spec: LLMSpec, options: Mapping[str, Any]) -> None:
        self.spec = spec
        self.opts = dict(options)
        self._model: Any = None
        self._tokenizer: Any = None
        self._cuda_peak_mb: float | None = None
        self._tokenizer_reused = False
        self._template: ChatTemplate | None = None
        self._source, self._repo, self._gguf = locate(spec.model)

    @property
    def model_file(self) -> Path | None:
        if self._gguf:
            return Path(self._repo, self._gguf)
        if self._source != "dir":
            return None
        found = [p for pattern in WEIGHTS for p in Path(self._repo).glob(pattern)]
        return found[0] if len(found) == 1 else None

    # -- pre-flight: cheap, before any test ------------------------------------------------

    def check(self) -> None:
        missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            raise BackendUnavailable(f"hf needs {' and '.join(missing)}: {_INSTALL}")
        check_options(self.opts, self._where)
        check_chat_template(self.opts["chat_template"], self._where)
        if self.spec.model == EMBEDDED_ALIAS and not embedded_available():
            embedded_model_path()  # raises with the install hint
        elif self._source == "gguf" and self.spec.model != EMBEDDED_ALIAS:
            check_gguf(Path(self._repo, self._gguf or ""))
        elif self._source == "dir":
            check_dir(Path(self._repo))
        elif self._source == "hub" and offline():
            check_cached(self._repo, self.opts["revision"] or None)
        needs = ["gguf", "accelerate"] if self._source == "gguf" else []
        if absent := [m for m in needs if importlib.util.find_spec(m) is None]:
            raise BackendUnavailable(
                f"loading a GGUF file with transformers needs the {' and '.join(absent)} "
                f"package: pip install {' '.join(absent)} (or {_INSTALL})"
            )

    @property
    def _where(self) -> str:
        return f"{self.spec.source}={self.spec.raw or self.spec.text!r}"

    # -- load: once per session, timed -----------------------------------------------------

    def load(self) -> None:
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise BackendUnavailable(f"hf needs torch and transformers: {exc}; {_INSTALL}") from exc
        if self.spec.model == EMBEDDED_ALIAS:
            path = embedded_model_path()
            self._repo, self._gguf = str(path.parent), path.name
        if self.opts["threads"]:
            torch.set_num_threads(self.opts["threads"])
        device = self._resolve_device(torch)
        common: dict[str, Any] = {
            "revision": self.opts["revision"] or None,
            "trust_remote_code": self.opts["trust_remote_code"],
            "local_files_only": self._source != "hub" or offline(),
            "gguf_file": self._gguf,
        }
        what = str(self.model_file or self._repo)
        try:
            if self._gguf:
                stat = Path(self._repo, self._gguf).stat()
                stamp = (stat.st_size, stat.st_mtime_ns)
                hits = gguf_tokenizer.cache_info().hits
                tokenizer = gguf_tokenizer(self._repo, self._gguf, stamp)
                # Reported: this load_s then leaves out the tokenizer build.
                self._tokenizer_reused = gguf_tokenizer.cache_info().hits > hits
            else:
                tokenizer = transformers.AutoTokenizer.from_pretrained(self._repo, **common)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                self._repo,
                dtype=self._dtype(torch),
                device_map=self.opts["device_map"] or (None if device == "cpu" else device),
                quantization_config=self._quantization(transformers),
                **common,
            )
        except ImportError as exc:
            raise BackendUnavailable(f"transformers could not load {what}: {exc}") from exc
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"transformers could not load {what}: {exc}") from exc
        self._tokenizer, self._model = tokenizer, model.eval()
        self._resolve_template()

    def _resolve_template(self) -> None:
        tok = self._tokenizer
        model = None
        if tok.chat_template:
            # The tokenizer's own template, rendered by transformers itself.
            def own(messages: list[dict[str, Any]]) -> str:
                return str(
                    tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                )

            model = ChatTemplate("model", own)
        self._template = resolve_chat_template(
            self.opts["chat_template"],
            where=self._where,
            model=model,
            embedded=self.spec.model == EMBEDDED_ALIAS,
            bos=tok.bos_token or "",
            eos=tok.eos_token or "",
            tokenize=lambda text: tok.encode(text, add_special_tokens=False),
        )

    def _resolve_device(self, torch: Any) -> str:
        device = str(self.opts["device"])
        if device != "auto":
            return device
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"

    def _dtype(self, torch: Any) -> Any:
        name = self.opts["dtype"]
        if name == "auto":
            return torch.float32 if self._gguf else "auto"
        return getattr(torch, name)

    def _quantization(self, transformers: Any) -> Any:
        o = self.opts
        if o["load_in_8bit"] or o["load_in_4bit"]:
            return transformers.BitsAndBytesConfig(
                load_in_8bit=o["load_in_8bit"], load_in_4bit=o["load_in_4bit"]
            )
        if o["gptq_bits"]:
            kernel = "torch" if o["disable_exllama"] else None
            return transformers.GPTQConfig(bits=o["gptq_bits"], backend=kernel)
        return None

    # -- generation ------------------------------------------------------------------------

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        import torch

        if request.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {request.max_tokens}")
        check_generation_options(
            self.kind, request.options, self.generation_options(), hint=RESERVED_HINT
        )
        inputs, chat = self._encode(request.prompt)
        kwargs, stop_ids = self._generate_kwargs(request, chat=chat)
        prompt_len = int(inputs["input_ids"].shape[-1])
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if limit and prompt_len + request.max_tokens > limit:
            raise InvalidRequest(
                f"prompt ({prompt_len} tokens) + max_tokens ({request.max_tokens}) exceeds the "
                f"model's context of {limit} tokens; shorten the prompt or lower max_tokens"
            )
        if request.temperature > 0:
            torch.manual_seed(self.opts["seed"] if request.seed is None else request.seed)
        streamer = TokenStreamer(self._tokenizer, stop_ids)
        cuda = self._model.device if self._model.device.type == "cuda" else None
        if cuda is not None:
            torch.cuda.reset_peak_memory_stats(cuda)
        thread = threading.Thread(
            target=run_generate,
            args=(self._model, inputs, kwargs, streamer),
            name="llmperf-hf",
            daemon=True,
        )
        produced = 0
        thread.start()
        try:
            while (item := streamer.next(self.stall_timeout_s)) is not None:
                produced += item[1]
                yield Chunk(*item)
        finally:
            streamer.cancel.set()  # the consumer may have stopped early: stop generate too
            thread.join(timeout=30)
        peak = None
        if cuda is not None:
            peak = self._cuda_peak_mb = torch.cuda.max_memory_allocated(cuda) / 2**20
        yield Usage(prompt_len, "engine", output_tokens=produced, accelerator_peak_mb=peak)

    def generation_options(self) -> Collection[str]:
        return generation_options()

    def ignore_eos_note(self) -> str | None:
        return None  # honoured: min_new_tokens, see _generate_kwargs

    def _generate_kwargs(
        self, request: Request, *, chat: bool
    ) -> tuple[dict[str, Any], frozenset[int]]:
        """``generate``'s keywords, and the token ids the streamer leaves uncounted."""
        kwargs: dict[str, Any] = {"max_new_tokens": request.max_tokens, **request.options}
        kwargs["do_sample"] = request.temperature > 0
        if kwargs["do_sample"]:
            kwargs["temperature"] = request.temperature
        pad = self._tokenizer.pad_token_id
        kwargs.setdefault("pad_token_id", pad if pad is not None else self._tokenizer.eos_token_id)
        eos = kwargs.get("eos_token_id", self._model.generation_config.eos_token_id)
        stop_ids = frozenset([eos] if isinstance(eos, int) else eos or ())
        turn_end = self._template.stop_ids if chat and self._template else frozenset()
        if not turn_end <= stop_ids:
            # A GGUF's generation config knows EOS only; a chat answer ends at the template's
            # end-of-turn token too, as llama.cpp (which counts it as end-of-generation) ends it.
            stop_ids |= turn_end
            kwargs["eos_token_id"] = sorted(stop_ids)
        if request.ignore_eos:
            # transformers masks every eos_token_id until min_new_tokens are out and stops at
            # max_new_tokens: exactly max_tokens tokens, each of them counted.
            kwargs["min_new_tokens"] = request.max_tokens
            stop_ids = frozenset()
        return kwargs, stop_ids

    def _encode(self, prompt: str | Sequence[Message]) -> tuple[dict[str, Any], bool]:
        """The model's inputs, and whether a chat template formatted the prompt."""
        tok = self._tokenizer
        chat = not isinstance(prompt, str) or self.opts["chat"]
        if not chat:
            encoded = tok(prompt, return_tensors="pt")
        elif self._template is None:
            raise no_chat_template(self.spec)
        else:
            text = self._template.format(prompt)
            add_bos = needs_bos(text, tok.bos_token or "")
            encoded = tok(text, add_special_tokens=add_bos, return_tensors="pt")
        device = self._model.device
        inputs = {k: encoded[k].to(device) for k in ("input_ids", "attention_mask") if k in encoded}
        return inputs, chat

    # -- reporting and cleanup -------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        import torch
        import transformers

        model = self._model
        return {
            "library": "transformers",
            "library_version": transformers.__version__,
            "torch_version": torch.__version__,
            "options": self.opts,
            "model_source": self._source,
            "device": None if model is None else str(model.device),
            "dtype": None if model is None else str(model.dtype).removeprefix("torch."),
            "param_count": None if model is None else sum(p.numel() for p in model.parameters()),
            #: after the latest generation on CUDA; the session records info() once, at load
            "cuda_peak_memory_mb": self._cuda_peak_mb,
            "tokenizer_reused": self._tokenizer_reused,
            "chat_template": self._template.source if self._template else None,
        }

    def close(self) -> None:
        cuda = self._model is not None and self._model.device.type == "cuda"
        self._model = self._tokenizer = None
        gc.collect()
        if cuda:
            import torch

            torch.cuda.empty_cache()
