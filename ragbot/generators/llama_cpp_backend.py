"""The llama.cpp backend: the generator's GGUF file run by llama-cpp-python, a tuned adapter
applied as a GGUF LoRA (gguf_lora.py).

Decoding is ragbot's own short loop over llama.cpp's `llama_decode` and each question's
last-token logits, not llama-cpp-python's sampler chain: the repetition penalty must skip the
prompt's tokens (the passages a grounded answer quotes), which llama.cpp's penalty sampler
cannot, and the first token may be banned (`avoid_start`). The loop costs one numpy pass over the vocabulary per token.
Questions asked at the same time are decoded together (`_Decoder`: one llama.cpp batch per
step holds every question's next token), up to the `parallel_answers` setting; more wait for a
free slot. The prompt's longest prefix already in a slot's KV cache (the system prompt, a
follow-up's earlier turns) is not evaluated again.
"""

from __future__ import annotations

import codecs
import os
import queue
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ragbot.errors import BusyError, ModelError
from ragbot.settings import Settings
from ragbot.generators import REPETITION_PENALTY, Generation, chosen_adapter
from ragbot.generators.gguf_lora import ADAPTER_GGUF, export_lora

TOP_P = 0.9  # nucleus sampling at temperature > 0 (the transformers backend's top_p)
# How long a question waits for a free slot (all answering others) before it is refused.
WAIT_SECONDS = 300
# How often a question whose steps another thread runs checks whether it may run them itself.
DRIVE_POLL_SECONDS = 0.005
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
    from ragbot.storage.files import state_lock
    from ragbot.models import sha256_file

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
    from ragbot.storage.files import atomic_path, state_lock
    from ragbot.models import SMOLLM2_GGUF_SHA256, cpu_has_native_bf16, is_shipped_generator

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

    def __init__(self, model, decoder: "_Decoder", name: str, template: str, context_tokens: int,
                 adapter: str | None = None, answerability=None):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.model = model  # llama-cpp-python's LlamaModel: the weights and the tokenizer
        self.name = name
        self.adapter = adapter
        self.answerability = answerability
        self.context_tokens = min(context_tokens, decoder.sequence_tokens)
        self._decoder = decoder
        self._formatter = Jinja2ChatFormatter(
            template=template, eos_token=self._token_text(model.token_eos()),
            bos_token=self._token_text(model.token_bos()), add_generation_prompt=True,
        )
        # Free llama.cpp's memory while the interpreter still can: left to the wrappers'
        # __del__ at exit, it prints a traceback (the library is already torn down).
        weakref.finalize(self, decoder.close)

    @classmethod
    def load(cls, settings: Settings, adapter: str | None = None) -> "LlamaCppGenerator":
        from ragbot.models import check_fits_in_memory, generator_gguf, gguf_cache_bytes, gguf_chat_template

        gguf = generator_gguf(settings)
        if gguf is None:
            raise ModelError(f"generator {settings.generator!r} is not a GGUF file, which the llama.cpp backend "
                             f"needs; use generator_backend = \"transformers\" for a Hugging Face model dir")
        try:
            import llama_cpp
            from llama_cpp._internals import LlamaModel
            from llama_cpp._logger import set_verbose
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
        positions = settings.parallel_answers * settings.context_tokens  # the context _Decoder makes
        check_fits_in_memory(weights, "generator", gguf_cache_bytes(weights, positions),
                             f"the cache of {settings.parallel_answers} parallel answers of {settings.context_tokens} tokens")
        set_verbose(False)
        _backend_init()
        try:
            model = LlamaModel(path_model=str(weights), params=llama_cpp.llama_model_default_params(), verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp cannot load {gguf}: {exc}") from None
        try:
            decoder = _Decoder(model, lora, slots=settings.parallel_answers, context_tokens=settings.context_tokens)
        except AdapterNotServable as exc:
            model.close()
            raise AdapterNotServable(f"adapter {chosen.version} cannot run on llama.cpp: llama.cpp cannot "
                                     f"load {lora} on {gguf}: {exc}") from None
        except (ValueError, RuntimeError) as exc:
            model.close()
            raise ModelError(f"llama.cpp cannot run {gguf} with {settings.parallel_answers} parallel answers of "
                             f"{settings.context_tokens} tokens: {exc}") from None
        try:
            return cls(model, decoder, name=settings.generator, template=template,
                       context_tokens=settings.context_tokens, adapter=chosen.version if chosen else None,
                       answerability=check)
        except Exception as exc:  # the template does not compile: free the model, say why
            decoder.close()
            raise ModelError(f"generator {gguf}: its chat template cannot be used ({exc})") from None

    def _token_text(self, token: int) -> str:
        return "" if token < 0 else self.model.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _tokens(self, text: str) -> list[int]:
        if self._decoder.closed:  # its model is freed
            raise ModelError("the generator was closed")
        # `special=True`: the chat template's markers are single tokens, as in transformers'
        # tokenizer(text, add_special_tokens=False).
        return self.model.tokenize(text.encode("utf-8"), add_bos=False, special=True)

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
        """Yield pieces of the reply as they are decoded; then totals["generation"] holds the
        totals of what was yielded, and totals["reused_tokens"] the prompt tokens found in the KV
        cache. Setting `stop`, or closing the iterator early, ends it before the next piece."""
        tokens = self._tokens(prompt)
        n_prompt = len(tokens)
        if not tokens:
            raise ModelError("the prompt is empty")
        if n_prompt + max_new_tokens > self.context_tokens:
            raise ModelError(f"the prompt ({n_prompt} tokens) and the answer ({max_new_tokens}) do not fit "
                             f"the context of {self.context_tokens} tokens")
        banned = self._tokens(avoid_start)[0] if avoid_start else None
        job = _Job(tokens, max_new_tokens, temperature, banned)
        pieces: list[str] = []
        shown = 0  # reply tokens behind the pieces yielded
        decoder = self._decoder
        ended = False
        if self._acquire(stop):  # else stopped while waiting: nothing decoded
            decoder.submit(job)
            try:
                while not (stop is not None and stop.is_set()):
                    try:
                        kind, value, count = job.out.get_nowait()
                    except queue.Empty:
                        # Run the next step for every question in flight, unless another
                        # question's thread is running it: then wait for this one's piece.
                        if decoder.step():
                            continue
                        try:
                            kind, value, count = job.out.get(timeout=DRIVE_POLL_SECONDS)
                        except queue.Empty:
                            continue
                    if kind == "error":
                        ended = True
                        raise value
                    shown = count
                    if value:
                        pieces.append(value)
                        if kind == "piece":
                            yield value
                    if kind == "end":
                        ended = True
                        break
            finally:
                if not ended:  # a reader who left, a stop: its slot is freed at the next step
                    job.cancelled.set()
                    decoder.step()
        if totals is not None:
            totals["generation"] = Generation("".join(pieces).strip(), n_prompt, shown)
            totals["reused_tokens"] = job.reused

    def clear_cache(self) -> None:
        """Forget every slot's KV cache (the next prompts are evaluated in full), once the
        questions being answered now are done."""
        self._decoder.clear()

    def _acquire(self, stop: threading.Event | None) -> bool:
        """Wait for a free slot (every one answering another question): True once this question
        may decode, False when `stop` was set first, BusyError after WAIT_SECONDS."""
        free = self._decoder.free
        waited = 0.0
        while not free.acquire(timeout=0.1):
            waited += 0.1
            self._decoder.step()  # the questions in the slots may have no reader left to run them
            if stop is not None and stop.is_set():
                return False
            if waited >= WAIT_SECONDS:
                raise BusyError(f"the generator has been answering other questions for {WAIT_SECONDS} s; "
                                f"try again in a moment")
        if stop is not None and stop.is_set():
            free.release()
            return False
        return True


_backend_ready = threading.Lock()
_backend_started = False


def _backend_init() -> None:
    """llama.cpp's one-time global set-up (llama-cpp-python's Llama class does the same)."""
    global _backend_started
    import llama_cpp

    with _backend_ready:
        if not _backend_started:
            llama_cpp.llama_backend_init()
            _backend_started = True


class _Job:
    """One question being decoded: its prompt, how its tokens are picked, and the queue its
    pieces go to, as ("piece", text, reply tokens so far), then ("end", text left, count) or
    ("error", exception, count)."""

    def __init__(self, tokens: list[int], max_new_tokens: int, temperature: float, banned: int | None):
        import numpy as np

        self.tokens = tokens
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.banned = banned
        self.rng = np.random.default_rng()
        self.out: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = threading.Event()
        self.reply: list[int] = []
        # Bytes in, whole characters out: a multi-byte character cut between tokens waits.
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.todo: list[int] = []  # still to evaluate: the prompt's uncached part, then the last token
        self.reused = 0  # prompt tokens found in the KV cache


@dataclass
class _Slot:
    """One sequence of the KV cache, and the question using it (None: free)."""

    seq: int
    cached: list[int] = field(default_factory=list)  # the tokens in its KV cache, in order
    job: _Job | None = None


class _Decoder:
    """Decodes up to `slots` questions together: each step evaluates, in one llama.cpp batch,
    the next token of every question being answered and as much of the new prompts as fits, so
    the weights are read once for all of them (a CPU's decoding is bound by reading them).

    There is no thread of its own: the threads of the questions being answered run the steps,
    one at a time (`step`), each for all of them. A question answered alone therefore runs its
    steps between reading its own pieces, as a plain loop would; a decoding thread next to the
    reader made one answer about 30% slower on 2 cores (the reader's work and llama.cpp's
    threads competing for the cores). A question takes a free slot (one KV-cache sequence of
    `context_tokens`); the free slot whose cache shares the longest start with the prompt (the
    system prompt, at least) is chosen, and only the rest is evaluated.
    """

    def __init__(self, model, lora: Path | None, slots: int, context_tokens: int, batch_tokens: int = 512):
        import ctypes

        import llama_cpp
        from llama_cpp._internals import LlamaBatch, LlamaContext

        self.model = model
        self.lora = self.ctx = self.batch = None
        self.slots: list[_Slot] = []
        self._waiting: deque[_Job] = deque()
        self._stepping = threading.Lock()  # held while a thread runs a step (llama.cpp's context)
        self._clearing = threading.Lock()
        self._closed = False
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = slots * context_tokens
        params.n_seq_max = slots
        params.kv_unified = False  # each sequence its own `context_tokens` (measured: no faster unified)
        params.n_batch = params.n_ubatch = batch_tokens
        params.n_threads = params.n_threads_batch = cpu_threads()
        # Flash attention: 10-20% faster prompts here, the same decoding speed (§3).
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.no_perf = True
        self.ctx = LlamaContext(model=model, params=params, verbose=False)
        if lora is not None:
            self.lora = llama_cpp.llama_adapter_lora_init(model.model, str(lora).encode("utf-8"))
            if not self.lora:
                self.close()
                raise AdapterNotServable("llama_adapter_lora_init refused it")
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.lora)
            if llama_cpp.llama_set_adapters_lora(self.ctx.ctx, adapters, 1, (ctypes.c_float * 1)(1.0)):
                self.close()
                raise AdapterNotServable("llama_set_adapters_lora refused it")
        self.batch = LlamaBatch(n_tokens=batch_tokens, embd=0, n_seq_max=1, verbose=False)
        self.batch_tokens = batch_tokens
        self.sequence_tokens = int(llama_cpp.llama_n_ctx_seq(self.ctx.ctx))
        self.n_vocab = model.n_vocab()
        self.slots = [_Slot(seq) for seq in range(slots)]
        self.free = threading.BoundedSemaphore(slots)  # taken by a question before it is submitted
        self.widest = 0  # most questions decoded in one step so far (tests read it)

    def submit(self, job: _Job) -> None:
        """Queue `job` (its thread holds one of `free`); the next step admits it."""
        self._waiting.append(job)

    def step(self) -> bool:
        """Run one step for every question in flight, admitting those queued; False when
        another thread is running one."""
        if not self._stepping.acquire(blocking=False):
            return False
        try:
            while self._waiting:  # a slot is free for each: its question holds `free`
                job = self._waiting.popleft()
                if self._closed or job.cancelled.is_set():
                    self._end(job, ModelError("the generator was closed") if self._closed else None)
                    continue
                try:
                    self._admit(job)
                except Exception as exc:  # llama.cpp could not trim a cache: this question fails alone
                    self._end(job, ModelError(f"llama.cpp could not start this answer: {exc}"))
            if self._closed:
                return True
            try:
                self._batch_step()
            except Exception as exc:  # llama.cpp failed: the questions in it get the error
                for slot in self.slots:
                    if slot.job is not None:
                        self._drop_after(slot.seq, 0)
                        slot.cached = []
                        self._finish(slot, ModelError(f"llama.cpp failed while decoding: {exc}"))
        finally:
            self._stepping.release()
        return True

    def clear(self) -> None:
        if self._closed:
            return
        with self._clearing:  # two clears each holding some slots would wait on each other
            self._clear()

    def _clear(self) -> None:
        held = 0
        try:
            for _ in self.slots:  # every slot's permit: no question is being decoded
                while not self.free.acquire(timeout=0.1):
                    self.step()  # questions whose readers left end at the next step
                held += 1
            with self._stepping:
                for slot in self.slots:
                    self._drop_after(slot.seq, 0)
                    slot.cached = []
        finally:
            for _ in range(held):
                self.free.release()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        import llama_cpp

        with self._stepping:
            self._closed = True
            for slot in self.slots if self.ctx is not None else ():
                if slot.job is not None:
                    self._finish(slot, ModelError("the generator was closed"))
            for part in (self.batch, self.ctx):
                if part is not None:
                    part.close()
            self.batch = self.ctx = None
            if self.lora:
                llama_cpp.llama_adapter_lora_free(self.lora)
                self.lora = None
            self.model.close()

    def _admit(self, job: _Job) -> None:
        free = [s for s in self.slots if s.job is None]
        slot = max(free, key=lambda s: _shared_start(s.cached, job.tokens))
        # At least the last prompt token is evaluated again, so the logits are this prompt's.
        keep = min(_shared_start(slot.cached, job.tokens), len(job.tokens) - 1)
        try:
            if not self._drop_after(slot.seq, keep):  # a cache that cannot drop its tail (recurrent)
                self._drop_after(slot.seq, 0)
                keep = 0
        except Exception:
            slot.cached = []  # what it holds is unknown now: the next question evaluates all
            raise
        slot.cached = job.tokens[:keep]
        slot.job, job.todo, job.reused = job, job.tokens[keep:], keep

    def _drop_after(self, seq: int, keep: int) -> bool:
        """Drop sequence `seq`'s cache from position `keep` on."""
        return self.ctx.kv_cache_seq_rm(seq, keep, -1)

    def _batch_step(self) -> None:
        """One llama.cpp batch: every answering question's next token first, then the new prompts
        in the room left; then a token is picked for each question whose input is all in."""
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled.is_set():
                self._finish(slot)
        active = [s for s in self.slots if s.job is not None]
        # Every answering question's next token first, then the new prompts in the room left.
        room, takes = self.batch_tokens, {}
        for slot in sorted(active, key=lambda s: len(s.job.todo)):
            takes[slot.seq] = min(len(slot.job.todo), room)
            room -= takes[slot.seq]
        # In slot order: llama.cpp splits a batch over separate KV sequences into runs of
        # consecutive sequence ids with as many tokens from each (one forward pass per run), so
        # rows out of order cost passes. A step with new prompt tokens takes at least two.
        batch = self.batch.batch
        n, ready = 0, []
        for slot in active:
            job = slot.job
            take = job.todo[: takes[slot.seq]]
            for token in take:
                batch.token[n] = token
                batch.pos[n] = len(slot.cached)
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = slot.seq
                batch.logits[n] = False
                slot.cached.append(token)
                n += 1
            job.todo = job.todo[len(take):]
            if take and not job.todo:
                batch.logits[n - 1] = True
                ready.append((slot, n - 1))
        if n == 0:
            return
        batch.n_tokens = n
        self.ctx.decode(self.batch)
        self.widest = max(self.widest, len(ready))
        for slot, row in ready:
            self._next_token(slot, row)

    def _next_token(self, slot: _Slot, row: int) -> None:
        import llama_cpp
        import numpy as np

        job = slot.job
        logits = np.ctypeslib.as_array(self.ctx.get_logits_ith(row), shape=(self.n_vocab,)).copy()
        token = _pick(logits, job.reply, job.banned if not job.reply else None, job.temperature, job.rng)
        if llama_cpp.llama_vocab_is_eog(self.model.vocab, token):
            self._finish(slot)
            return
        job.reply.append(token)
        job.out.put(("piece", job.utf8.decode(self.model.detokenize([token])), len(job.reply)))
        if len(job.reply) >= job.max_new_tokens:
            self._finish(slot)
        else:
            job.todo = [token]

    def _finish(self, slot: _Slot, error: Exception | None = None) -> None:
        job, slot.job = slot.job, None
        self._end(job, error)

    def _end(self, job: _Job, error: Exception | None = None) -> None:
        """Tell `job`'s reader it is over (or why it failed), and free its permit."""
        if error is not None:
            job.out.put(("error", error, len(job.reply)))
        else:
            job.out.put(("end", job.utf8.decode(b"", final=True), len(job.reply)))
        self.free.release()


def _shared_start(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


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
