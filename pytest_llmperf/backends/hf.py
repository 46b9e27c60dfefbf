"""Hugging Face transformers: ``hf:MODEL[?options]`` runs ``model.generate`` in PyTorch.

MODEL is a hub id (``google/gemma-3-270m``; with ``HF_HUB_OFFLINE=1`` only the local cache is
read), a directory written by ``save_pretrained``, a ``.gguf`` file (transformers unpacks it to
``dtype``), or ``gemma3-270m``: the embedded GGUF that ``llamacpp`` runs, so the same weights
can be timed on two engines.

``generate`` runs in a worker thread and a streamer hands over each decoding step as it happens:
one chunk per generated token, its text decoded incrementally. A token whose text is held back
(an incomplete UTF-8 sequence) still arrives as ``Chunk("", 1)`` when it is produced; its text
comes with a later chunk. The end-of-sequence token that stops generation is not counted, as in
``llamacpp``.

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
import queue
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BackendUnavailable, GenerationError, InvalidRequest, ModelLoadError, SpecError
from ..models import EMBEDDED_ALIAS, embedded_available, embedded_model_path
from ..options import Option
from ..spec import LLMSpec
from . import Chunk, Message, Request, Usage
from ._hf_source import WEIGHTS, check_dir, check_gguf, locate, offline
from ._hf_streamer import TokenStreamer

__all__ = ["HFBackend"]

_INSTALL = (
    "pip install 'pytest-llmperf[hf]' (install torch first, from pytorch.org, so that pip keeps "
    "the CPU or CUDA build that fits this machine)"
)
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)\Z")
# Set by ``stream`` itself, or would break one-sequence streaming.
_RESERVED = frozenset(
    ("max_new_tokens", "max_length", "do_sample", "temperature", "streamer", "num_return_sequences")
)


@lru_cache(maxsize=2)
def _gguf_tokenizer(repo: str, gguf_file: str, stamp: tuple[int, int]) -> Any:
    """Building a tokenizer from GGUF metadata takes 30-50 s for Gemma's 262k vocabulary; specs
    that differ only in options (dtype=...) share it. ``stamp`` (size, mtime) keys file versions."""
    import transformers

    return transformers.AutoTokenizer.from_pretrained(
        repo, gguf_file=gguf_file, local_files_only=True
    )


@lru_cache(maxsize=1)
def _generation_options() -> frozenset[str]:
    """What a request's options may set: GenerationConfig's fields, plus generate's hooks."""
    from transformers import GenerationConfig

    fields = GenerationConfig().to_dict()
    known = {k for k in fields if not k.startswith("_")} | {"logits_processor", "stopping_criteria"}
    return frozenset(known - _RESERVED)


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
        Option("chat", bool, False, "format string prompts with the tokenizer's chat template"),
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
        self._check_options()
        if self.spec.model == EMBEDDED_ALIAS and not embedded_available():
            embedded_model_path()  # raises with the install hint
        elif self._source == "gguf" and self.spec.model != EMBEDDED_ALIAS:
            check_gguf(Path(self._repo, self._gguf or ""))
        elif self._source == "dir":
            check_dir(Path(self._repo))
        elif self._source == "hub" and offline():
            self._check_cached()
        needs = ["gguf", "accelerate"] if self._source == "gguf" else []
        if absent := [m for m in needs if importlib.util.find_spec(m) is None]:
            raise BackendUnavailable(
                f"loading a GGUF file with transformers needs the {' and '.join(absent)} "
                f"package: pip install {' '.join(absent)} (or {_INSTALL})"
            )

    def _check_options(self) -> None:
        o, where = self.opts, f"{self.spec.source}={self.spec.raw or self.spec.text!r}"
        if not _DEVICE.match(o["device"]):
            raise SpecError(
                f"{where}: bad value {o['device']!r} for option 'device': expected cpu, cuda, "
                "cuda:N, mps or auto"
            )
        if o["gptq_bits"] not in (0, 2, 3, 4, 8):
            raise SpecError(f"{where}: gptq_bits must be 2, 3, 4 or 8 (0 = not GPTQ)")
        quantizers = [k for k in ("load_in_8bit", "load_in_4bit", "gptq_bits") if o[k]]
        if len(quantizers) > 1:
            raise SpecError(f"{where}: choose one of {', '.join(quantizers)}")
        if needs_cuda := quantizers + [f"device={o['device']}"] * ("cuda" in o["device"]):
            self._check_cuda(needs_cuda)
        packages = {"load_in_8bit": "bitsandbytes", "load_in_4bit": "bitsandbytes"}
        packages |= {"gptq_bits": "optimum gptqmodel", "device_map": "accelerate"}
        for option, names in packages.items():
            absent = [n for n in names.split() if importlib.util.find_spec(n) is None]
            if o[option] and absent:
                raise BackendUnavailable(
                    f"{option} needs the {' and '.join(absent)} package: pip install "
                    + " ".join(absent)
                )

    def _check_cuda(self, reasons: list[str]) -> None:
        import torch

        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
            raise BackendUnavailable(
                f"{', '.join(reasons)} needs a CUDA GPU, but torch.cuda.is_available() is False "
                f"here (torch {torch.__version__}: {build}); run on a machine with an NVIDIA "
                "GPU and a CUDA build of torch, or drop the option"
            )
        device = self.opts["device"]
        if int(device.partition(":")[2] or 0) >= torch.cuda.device_count():
            raise BackendUnavailable(
                f"device={device}, but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )

    def _check_cached(self) -> None:
        from huggingface_hub import try_to_load_from_cache

        revision = self.opts["revision"] or None
        if not isinstance(
            try_to_load_from_cache(self._repo, "config.json", revision=revision), str
        ):
            raise BackendUnavailable(
                f"HF_HUB_OFFLINE is set and {self._repo!r} is not in the local Hugging Face "
                f"cache; download it first (hf download {self._repo}) or unset HF_HUB_OFFLINE"
            )

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
                hits = _gguf_tokenizer.cache_info().hits
                tokenizer = _gguf_tokenizer(self._repo, self._gguf, stamp)
                # Reported: this load_s then leaves out the tokenizer build.
                self._tokenizer_reused = _gguf_tokenizer.cache_info().hits > hits
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
        kwargs = self._generate_kwargs(request)
        inputs = self._encode(request.prompt)
        prompt_len = int(inputs["input_ids"].shape[-1])
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if limit and prompt_len + request.max_tokens > limit:
            raise InvalidRequest(
                f"prompt ({prompt_len} tokens) + max_tokens ({request.max_tokens}) exceeds the "
                f"model's context of {limit} tokens; shorten the prompt or lower max_tokens"
            )
        if request.temperature > 0:
            torch.manual_seed(self.opts["seed"] if request.seed is None else request.seed)
        eos = self._model.generation_config.eos_token_id
        stop_ids = frozenset([eos] if isinstance(eos, int) else eos or ())
        streamer = TokenStreamer(self._tokenizer, stop_ids)
        cuda = self._model.device if self._model.device.type == "cuda" else None
        if cuda is not None:
            torch.cuda.reset_peak_memory_stats(cuda)
        thread = threading.Thread(
            target=self._run, args=(inputs, kwargs, streamer), name="llmperf-hf", daemon=True
        )
        produced = 0
        thread.start()
        try:
            while (item := self._next(streamer)) is not None:
                produced += item[1]
                yield Chunk(*item)
        finally:
            streamer.cancel.set()  # the consumer may have stopped early: stop generate too
            thread.join(timeout=30)
        peak = None
        if cuda is not None:
            peak = self._cuda_peak_mb = torch.cuda.max_memory_allocated(cuda) / 2**20
        yield Usage(prompt_len, "engine", output_tokens=produced, accelerator_peak_mb=peak)

    def _generate_kwargs(self, request: Request) -> dict[str, Any]:
        if unknown := set(request.options) - _generation_options():
            raise InvalidRequest(
                f"unknown or reserved generation option(s) for hf: {', '.join(sorted(unknown))}; "
                "valid: any GenerationConfig field (top_k, top_p, repetition_penalty, "
                "min_new_tokens, ...) but " + ", ".join(sorted(_RESERVED))
            )
        kwargs: dict[str, Any] = {"max_new_tokens": request.max_tokens, **request.options}
        kwargs["do_sample"] = request.temperature > 0
        if kwargs["do_sample"]:
            kwargs["temperature"] = request.temperature
        pad = self._tokenizer.pad_token_id
        kwargs.setdefault("pad_token_id", pad if pad is not None else self._tokenizer.eos_token_id)
        return kwargs

    def _encode(self, prompt: str | Sequence[Message]) -> dict[str, Any]:
        tok = self._tokenizer
        if isinstance(prompt, str) and not self.opts["chat"]:
            encoded = tok(prompt, return_tensors="pt")
        elif not tok.chat_template:
            raise InvalidRequest(
                f"{self.spec.short_id}: the tokenizer has no chat template, so it cannot take "
                "chat messages or chat=true; pass a plain string prompt"
            )
        else:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            try:
                encoded = tok.apply_chat_template(
                    [dict(m) for m in messages],
                    add_generation_prompt=True,
                    tokenize=True,
                    return_dict=True,
                    return_tensors="pt",
                )
            except Exception as exc:  # jinja2's TemplateError too, without importing jinja2
                raise InvalidRequest(f"the chat template failed: {exc}") from exc
        device = self._model.device
        return {k: encoded[k].to(device) for k in ("input_ids", "attention_mask") if k in encoded}

    def _next(self, streamer: TokenStreamer) -> tuple[str, int] | None:
        try:
            item = streamer.queue.get(timeout=self.stall_timeout_s)
        except queue.Empty:
            raise GenerationError(
                f"transformers produced no token for {self.stall_timeout_s:g} s; the generation "
                "thread looks stuck"
            ) from None
        if isinstance(item, BaseException):
            raise GenerationError(
                f"transformers failed while generating: {type(item).__name__}: {item}"
            ) from item
        return item

    def _run(self, inputs: dict[str, Any], kwargs: dict[str, Any], streamer: TokenStreamer) -> None:
        try:
            self._model.generate(**inputs, **kwargs, streamer=streamer)
        except BaseException as exc:  # handed to the consumer, which raises it
            streamer.queue.put(exc)
        else:
            streamer.queue.put(None)

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
        }

    def close(self) -> None:
        cuda = self._model is not None and self._model.device.type == "cuda"
        self._model = self._tokenizer = None
        gc.collect()
        if cuda:
            import torch

            torch.cuda.empty_cache()
