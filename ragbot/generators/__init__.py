"""The generator: a causal LM that turns a chat prompt into text, behind one interface.

It knows nothing about retrieval or citations (answer/generation.py builds the prompt and reads the reply).
Two backends implement the same `Generator` protocol:

- `transformers` (transformers_backend.py): the model in PyTorch, the backend `ragbot tune`
  trains with; runs any Hugging Face model dir.
- `llama.cpp` (llama_cpp_backend.py): the GGUF file run by llama-cpp-python, several times faster
  at decoding on a CPU (docs/benchmarks.md §3); a tuned adapter runs as a GGUF LoRA file
  (gguf_lora.py).

`generator_backend = auto` (the default) picks llama.cpp when llama-cpp-python is installed and
the generator is a GGUF file (the shipped model is one), else transformers. Both decode greedily
at temperature 0, penalise tokens the reply already used (never the prompt's), honour a stop
event between tokens, render the model's own chat template and count tokens with the model's own
tokenizer.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from ragbot.settings import Settings

# Penalty on tokens the reply has already produced (1.0: none).
REPETITION_PENALTY = 1.1


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int


class Generator(Protocol):
    name: str
    backend: str
    adapter: str | None  # the adapter version merged or applied, None for the base model
    answerability: object | None  # the adapter's fitted check (answerability.py), if any
    context_tokens: int

    def count_tokens(self, text: str) -> int: ...

    def render(self, messages: list[dict[str, str]]) -> str:
        """The exact prompt text the model sees for these chat messages."""

    def generate(self, prompt: str, max_new_tokens: int, temperature: float = 0.0,
                 avoid_start: str | None = None) -> Generation:
        """The reply to `prompt`; with `avoid_start`, it cannot open with that text's first token."""

    def stream(self, prompt: str, max_new_tokens: int, temperature: float = 0.0, totals: dict | None = None,
               avoid_start: str | None = None, stop: threading.Event | None = None) -> Iterator[str]:
        """Yield pieces of the reply as they are decoded; then totals["generation"] holds the
        totals. Setting `stop`, or closing the iterator early, stops at the next token."""


def chosen_adapter(settings: Settings, adapter: str | None = None):
    """(VersionInfo or None, its answerability check or None) for `adapter` (default: the
    setting). The check is read before any model loads, so a damaged one fails at once."""
    from ragbot.answer.answerability import AnswerabilityCheck
    from ragbot.learn.registry import METADATA, AdapterError, AdapterRegistry

    chosen = AdapterRegistry(settings.adapters_dir).resolve(adapter or settings.adapter)
    if chosen is not None and chosen.base_model != settings.generator:
        raise AdapterError(
            f"adapter {chosen.version} was trained on {chosen.base_model!r}, not on the generator "
            f"{settings.generator!r}; use --adapter none, or `ragbot model activate none`"
        )
    check = None
    if chosen is not None and chosen.metadata.get("answerability"):
        check = AnswerabilityCheck.from_dict(chosen.metadata["answerability"], where=str(chosen.path / METADATA))
    return chosen, check


@lru_cache(maxsize=1)
def llama_cpp_installed() -> bool:
    """True when llama-cpp-python imports (its shared library loads), not merely when it is there."""
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    try:
        import llama_cpp  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        return False
    return True


def pick_backend(settings: Settings) -> str:
    """The backend `settings` ask for, with "auto" resolved (see the module docstring)."""
    from ragbot.models import generator_gguf

    choice = settings.generator_backend
    if choice != "auto":
        return choice
    gguf = generator_gguf(settings)
    if not llama_cpp_installed() or gguf is None:
        return "transformers"
    from ragbot.generators.gguf_lora import can_serve

    chosen, _ = chosen_adapter(settings)
    return "llama.cpp" if chosen is None or can_serve(chosen.path, gguf) else "transformers"


def load_generator(settings: Settings, adapter: str | None = None, backend: str | None = None) -> Generator:
    """The generator named by `settings` on `backend` (default: the setting's choice), with the
    LoRA adapter `adapter` (default: the `adapter` setting: "active", "none" or a version)."""
    if backend == "auto":
        backend = None
    chosen = backend or pick_backend(settings)
    if chosen == "llama.cpp":
        from ragbot.generators.llama_cpp_backend import AdapterNotServable, LlamaCppGenerator

        try:
            return LlamaCppGenerator.load(settings, adapter)
        except AdapterNotServable:
            if backend or settings.generator_backend != "auto":
                raise  # llama.cpp was asked for by name
            # `auto`: an adapter llama.cpp cannot apply (an architecture gguf_lora.py does not
            # export, a LoRA llama.cpp refuses) still answers, on transformers.
    from ragbot.generators.transformers_backend import TransformersGenerator

    return TransformersGenerator.load(settings, adapter)
