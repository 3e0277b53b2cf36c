"""The llama.cpp backend: the generator's GGUF file run by llama-cpp-python, a tuned adapter
applied as a GGUF LoRA (gguf_lora.py).

Decoding is ragbot's own short loop over llama.cpp's `eval` and the last token's logits, not
llama-cpp-python's sampler chain: the repetition penalty must skip the prompt's tokens (the
passages a grounded answer quotes), which llama.cpp's penalty sampler cannot, and the first
token may be banned (`avoid_start`). The loop costs one numpy pass over the vocabulary per token.
The prompt's longest prefix already in the KV cache (the system prompt, a follow-up's earlier
turns) is not evaluated again. One model serves one question at a time (a lock); the chat's
queue orders the rest.
"""

from __future__ import annotations

import codecs
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

from ..errors import BusyError, ModelError
from ..settings import Settings
from . import REPETITION_PENALTY, Generation, chosen_adapter
from .gguf_lora import ADAPTER_GGUF, export_lora

TOP_P = 0.9  # nucleus sampling at temperature > 0 (the transformers backend's top_p)
# How long a question waits for the one before it to finish decoding before it is refused.
WAIT_SECONDS = 300
# Version of what `prepared_weights` writes; bump when it changes.
PREPARED_VERSION = 1


def cpu_threads() -> int:
    """The cores this process may run on (llama-cpp-python's default is half of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def adapter_gguf(settings: Settings, info, base_gguf: Path) -> Path:
    """The adapter's GGUF LoRA: the one `ragbot tune` saved in its folder, else (an adapter from
    before the export existed) one exported once into `<data dir>/models/`."""
    saved = info.path / ADAPTER_GGUF
    if saved.is_file():
        return saved
    from ..files import state_lock
    from ..models import sha256_file

    key = sha256_file(info.path / "adapter_model.safetensors")[:12]
    cached = settings.models_dir / "adapters" / f"{info.version}-{key}.gguf"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        with state_lock(settings.models_dir / ".convert.lock", f"exporting adapter {info.version}", timeout=600):
            if not cached.is_file():
                export_lora(info.path, base_gguf, cached)
    return cached


def prepared_weights(settings: Settings, gguf: Path) -> Path:
    """The GGUF file llama.cpp runs for `gguf`.

    The shipped model is Q4_1, a type llama.cpp's fast prompt kernels do not cover: a 390-token
    prompt took 1.2-1.4 s to evaluate on this project's 2-core machine, against 0.4-0.7 s for the
    same weights in BF16 (on a CPU with native bf16) and 0.5-0.9 s in Q8_0, while decoding stays
    at 60-120 tokens/s (docs/benchmarks.md §3). So the shipped model is re-encoded once (0.5 s)
    into `<data dir>/models/`: BF16 where the CPU computes bf16 natively, else Q8_0. A GGUF the
    user brings runs as it is: its quantisation is their choice of size and speed.
    """
    from ..files import atomic_path, state_lock
    from ..models import SMOLLM2_GGUF_SHA256, cpu_has_native_bf16, is_shipped_generator

    if not is_shipped_generator(settings.generator):
        return gguf
    kind = "BF16" if cpu_has_native_bf16() else "Q8_0"
    target = settings.models_dir / f"{gguf.stem}.{kind}-{SMOLLM2_GGUF_SHA256[:12]}-v{PREPARED_VERSION}.gguf"
    if target.is_file():
        return target
    import ctypes

    import llama_cpp
    from llama_cpp._logger import set_verbose

    set_verbose(False)  # llama.cpp logs every tensor it re-encodes
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    with state_lock(settings.models_dir / ".convert.lock", f"preparing the generator in {settings.models_dir}",
                    timeout=600):
        if target.is_file():
            return target
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")
        params.allow_requantize = True
        params.nthread = cpu_threads()
        with atomic_path(target) as tmp:
            failed = llama_cpp.llama_model_quantize(str(gguf).encode(), str(tmp).encode(), ctypes.byref(params))
            if failed or not tmp.is_file():
                raise ModelError(f"llama.cpp could not re-encode {gguf} as {kind} (code {failed})")
    for stale in settings.models_dir.glob(f"{gguf.stem}.*.gguf"):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


class AdapterNotServable(ModelError):
    """The adapter could not be exported for llama.cpp (the `auto` backend then uses transformers)."""


class LlamaCppGenerator:
    backend = "llama.cpp"

    def __init__(self, llm, name: str, template: str, context_tokens: int, adapter: str | None = None,
                 answerability=None):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = llm
        self.name = name
        self.adapter = adapter
        self.answerability = answerability
        self.context_tokens = min(context_tokens, int(llm.n_ctx()))
        self._vocab = llm._model.vocab
        self._formatter = Jinja2ChatFormatter(
            template=template, eos_token=self._token_text(llm.token_eos()), bos_token=self._token_text(llm.token_bos()),
            add_generation_prompt=True,
        )
        self._lock = threading.Lock()
        # Free llama.cpp's memory while the interpreter still can: left to Llama.__del__ at exit,
        # it prints a traceback (the library is already torn down).
        weakref.finalize(self, llm.close)

    @classmethod
    def load(cls, settings: Settings, adapter: str | None = None) -> "LlamaCppGenerator":
        from ..models import check_fits_in_memory, generator_gguf, gguf_chat_template

        gguf = generator_gguf(settings)
        if gguf is None:
            raise ModelError(f"generator {settings.generator!r} is not a GGUF file, which the llama.cpp backend "
                             f"needs; use generator_backend = \"transformers\" for a Hugging Face model dir")
        try:
            from llama_cpp import Llama
        except (ImportError, OSError, RuntimeError):  # not built, or its library does not load
            raise ModelError("the llama.cpp backend needs llama-cpp-python (see the README: `make setup` builds "
                             "it); or set generator_backend = \"transformers\"") from None
        template = gguf_chat_template(gguf)
        if not template:
            raise ModelError(f"generator {gguf} has no chat template: it is not a chat model; "
                             f"use an instruction-tuned model")
        chosen, check = chosen_adapter(settings, adapter)
        try:
            lora = adapter_gguf(settings, chosen, gguf) if chosen is not None else None
        except (ModelError, OSError, KeyError, ValueError) as exc:
            raise AdapterNotServable(f"adapter {chosen.version} cannot run on llama.cpp: {exc}") from None
        weights = prepared_weights(settings, gguf)
        check_fits_in_memory(weights, "generator")
        threads = cpu_threads()
        try:
            # Flash attention: 10-20% faster prompts here, the same decoding speed (§3).
            llm = Llama(model_path=str(weights), n_ctx=settings.context_tokens, n_batch=512, n_threads=threads,
                        n_threads_batch=threads, flash_attn=True, lora_path=str(lora) if lora else None,
                        verbose=False)
        except (ValueError, RuntimeError) as exc:
            if chosen is not None:
                raise AdapterNotServable(f"adapter {chosen.version} cannot run on llama.cpp: llama.cpp cannot "
                                         f"load {lora} on {gguf}: {exc}") from None
            raise ModelError(f"llama.cpp cannot load {gguf}: {exc}") from None
        try:
            return cls(llm, name=settings.generator, template=template, context_tokens=settings.context_tokens,
                       adapter=chosen.version if chosen else None, answerability=check)
        except Exception as exc:  # the template does not compile: free the model, say why
            llm.close()
            raise ModelError(f"generator {gguf}: its chat template cannot be used ({exc})") from None

    def _token_text(self, token: int) -> str:
        return "" if token < 0 else self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _tokens(self, text: str) -> list[int]:
        # `special=True`: the chat template's markers are single tokens, as in transformers'
        # tokenizer(text, add_special_tokens=False).
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self._tokens(text))

    def render(self, messages: list[dict[str, str]]) -> str:
        """The exact prompt text the model sees for these chat messages."""
        return self._formatter(messages=messages).prompt

    def generate(self, prompt: str, max_new_tokens: int, temperature: float = 0.0,
                 avoid_start: str | None = None) -> Generation:
        totals: dict = {}
        for _ in self.stream(prompt, max_new_tokens, temperature, totals=totals, avoid_start=avoid_start):
            pass
        return totals["generation"]

    def stream(
        self, prompt: str, max_new_tokens: int, temperature: float = 0.0, totals: dict | None = None,
        avoid_start: str | None = None, stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield pieces of the reply as they are decoded; then totals["generation"] holds the totals.
        Setting `stop`, or closing the iterator early, stops before the next token."""
        import llama_cpp
        import numpy as np

        tokens = self._tokens(prompt)
        n_prompt = len(tokens)
        if not tokens:
            raise ModelError("the prompt is empty")
        if n_prompt + max_new_tokens > self.llm.n_ctx():
            raise ModelError(f"the prompt ({n_prompt} tokens) and the answer ({max_new_tokens}) do not fit "
                             f"the context of {self.llm.n_ctx()} tokens")
        banned = self._tokens(avoid_start)[0] if avoid_start else None
        rng = np.random.default_rng()
        reply: list[int] = []
        # Bytes in, whole characters out: a multi-byte character cut between tokens waits.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []
        if self._acquire(stop):  # else stopped while waiting: nothing decoded
            try:
                self._evaluate_prompt(tokens)
                n_vocab = self.llm.n_vocab()
                while not (stop is not None and stop.is_set()):
                    logits = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(n_vocab,)).copy()
                    token = _pick(logits, reply, banned if not reply else None, temperature, rng)
                    if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                        break
                    piece = decoder.decode(self.llm.detokenize([token], prev_tokens=reply))
                    reply.append(token)
                    if piece:
                        pieces.append(piece)
                        yield piece
                    if len(reply) >= max_new_tokens:
                        break
                    self.llm.eval([token])
            finally:
                self._lock.release()
        pieces.append(decoder.decode(b"", final=True))
        if totals is not None:
            totals["generation"] = Generation("".join(pieces).strip(), n_prompt, len(reply))

    def _acquire(self, stop: threading.Event | None) -> bool:
        """Wait for the question before this one to finish decoding (one model, one context):
        True once this one may decode, False when `stop` was set first, BusyError after
        WAIT_SECONDS."""
        waited = 0.0
        while not self._lock.acquire(timeout=0.1):
            waited += 0.1
            if stop is not None and stop.is_set():
                return False
            if waited >= WAIT_SECONDS:
                raise BusyError(f"the generator has been answering other questions for {WAIT_SECONDS} s; "
                                f"try again in a moment")
        if stop is not None and stop.is_set():
            self._lock.release()
            return False
        return True

    def _evaluate_prompt(self, tokens: list[int]) -> None:
        """Evaluate `tokens`, reusing the longest prefix already in the KV cache; at least the
        last token is evaluated again, so the logits are this prompt's. Where the cache cannot
        drop its tail (recurrent models), everything is evaluated again."""
        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens]
        keep = 0
        for a, b in zip(cached, tokens):
            if a != b:
                break
            keep += 1
        keep = max(0, min(keep, len(tokens) - 1))
        if not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm._ctx.kv_cache_clear()
            keep = 0
        llm.n_tokens = keep
        llm.eval(tokens[keep:])


def _pick(logits, reply: list[int], banned: int | None, temperature: float, rng) -> int:
    """The next token from the last position's logits: the reply's own tokens penalised as
    transformers' RepetitionPenaltyLogitsProcessor does (the prompt exempt), then greedy at
    temperature 0, else nucleus sampling."""
    import numpy as np

    if reply:
        used = np.unique(np.asarray(reply))
        values = logits[used]
        logits[used] = np.where(values < 0, values * REPETITION_PENALTY, values / REPETITION_PENALTY)
    if banned is not None:
        logits[banned] = -np.inf
    if temperature <= 0:
        return int(np.argmax(logits))
    scaled = (logits - logits.max()) / temperature
    probs = np.exp(scaled)
    probs /= probs.sum()
    order = np.argsort(-probs)
    cumulative = np.cumsum(probs[order])
    keep = order[: int(np.searchsorted(cumulative, TOP_P)) + 1]
    return int(rng.choice(keep, p=probs[keep] / probs[keep].sum()))
