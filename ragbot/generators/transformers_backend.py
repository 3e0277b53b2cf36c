"""The transformers backend: the generator in PyTorch (bfloat16 where the CPU computes it
natively), a LoRA adapter merged into its weights. `ragbot tune` trains on this backend's model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ragbot.errors import ModelError
from ragbot.models import load_plan
from ragbot.settings import Settings
from ragbot.generators import REPETITION_PENALTY, Generation, chosen_adapter


class TransformersGenerator:
    backend = "transformers"

    def __init__(self, model, tokenizer, name: str, context_tokens: int, adapter: str | None = None,
                 answerability=None):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.adapter = adapter
        # The adapter's check of whether the passages hold the answer (answerability.py); None
        # for the base model and for adapters tuned before it existed.
        self.answerability = answerability
        limit = getattr(model.config, "max_position_embeddings", None) or context_tokens
        self.context_tokens = min(context_tokens, int(limit))

    @classmethod
    def load(cls, settings: Settings, adapter: str | None = None) -> "TransformersGenerator":
        """The generator named by `settings`, with the LoRA adapter `adapter` (default: the
        `adapter` setting: "active", "none" or a version) merged into its weights."""
        from ragbot.learn.registry import AdapterError

        chosen, check = chosen_adapter(settings, adapter)
        location, device, dtype = load_plan(settings, "generator")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        local_only = not settings.allow_downloads
        try:
            tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
            model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, local_files_only=local_only,
                                                         use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load generator {settings.generator!r} from {location}: {exc}") from None
        if not tokenizer.chat_template:
            raise ModelError(f"generator {settings.generator!r} has no chat template; use an instruction-tuned model")
        if chosen is not None:
            from peft import PeftModel

            from ragbot.models import require_safetensors

            require_safetensors(chosen.path, f"adapter {chosen.version}")
            try:
                model = PeftModel.from_pretrained(model, str(chosen.path)).merge_and_unload()
            except (OSError, ValueError, RuntimeError) as exc:
                raise AdapterError(f"cannot load adapter {chosen.version} from {chosen.path}: {exc}") from None
        model.to(device)
        model.eval()
        return cls(model, tokenizer, name=settings.generator, context_tokens=settings.context_tokens,
                   adapter=chosen.version if chosen else None, answerability=check)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, messages: list[dict[str, str]]) -> str:
        """The exact prompt text the model sees for these chat messages."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _inputs(self, prompt: str):
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        return {k: v.to(self.model.device) for k, v in encoded.items()}

    def _generate_kwargs(self, max_new_tokens: int, temperature: float, n_prompt: int,
                         avoid_start: str | None = None) -> dict:
        from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

        processors = [RepetitionPenaltyLogitsProcessor(REPETITION_PENALTY, prompt_ignore_length=n_prompt)]
        if avoid_start:
            first = self.tokenizer(avoid_start, add_special_tokens=False)["input_ids"][0]
            processors.append(_BanFirstToken(first, n_prompt))
        kwargs = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            # A mild penalty on tokens the reply already used stops loops. The prompt's tokens are
            # exempt: `repetition_penalty=` would also penalise every word of the passages and of
            # the refusal sentence in the system prompt, i.e. the very text a grounded answer quotes.
            "logits_processor": LogitsProcessorList(processors),
        }
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=0.9)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def generate(self, prompt: str, max_new_tokens: int, temperature: float = 0.0,
                 avoid_start: str | None = None) -> Generation:
        """The reply to `prompt`; with `avoid_start`, it cannot open with that text's first token."""
        import torch

        inputs = self._inputs(prompt)
        n_prompt = int(inputs["input_ids"].shape[1])
        kwargs = self._generate_kwargs(max_new_tokens, temperature, n_prompt, avoid_start)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs)
        new_tokens = output[0][n_prompt:]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        return Generation(text=text.strip(), prompt_tokens=n_prompt, completion_tokens=int(len(new_tokens)))

    def stream(
        self, prompt: str, max_new_tokens: int, temperature: float = 0.0, totals: dict | None = None,
        avoid_start: str | None = None, stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield pieces of the reply as they are decoded; then totals["generation"] holds the totals.
        Setting `stop`, or closing the generator early, stops the model at its next token instead
        of letting it decode to the end in the background (the chat's Stop button)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        closed = threading.Event()  # the reader left early; the caller's `stop` is only read

        class _StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                asked = closed.is_set() or (stop is not None and stop.is_set())
                return torch.full((input_ids.shape[0],), asked, dtype=torch.bool, device=input_ids.device)

        inputs = self._inputs(prompt)
        n_prompt = int(inputs["input_ids"].shape[1])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict = {}
        kwargs = self._generate_kwargs(max_new_tokens, temperature, n_prompt, avoid_start)
        kwargs["stopping_criteria"] = StoppingCriteriaList([_StopWhenAsked()])

        def work() -> None:
            try:
                with torch.inference_mode():
                    result["output"] = self.model.generate(**inputs, streamer=streamer, **kwargs)
            except BaseException as exc:  # surfaced in the caller's thread below
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        pieces = []
        finished = False
        try:
            for piece in streamer:
                pieces.append(piece)
                yield piece
            finished = True
        finally:
            if not finished:  # closed before the reply ended: stop decoding at the next token
                closed.set()
            thread.join()
        if "error" in result:
            raise result["error"]
        completion = int(result["output"].shape[1]) - n_prompt
        if totals is not None:
            totals["generation"] = Generation("".join(pieces).strip(), n_prompt, completion)


class _BanFirstToken:
    """A logits processor: the reply's first token may not be `token_id`."""

    def __init__(self, token_id: int, n_prompt: int):
        self.token_id = token_id
        self.n_prompt = n_prompt

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] == self.n_prompt:
            scores[:, self.token_id] = float("-inf")
        return scores
