"""Text -> unit-length vectors with a sentence-transformers model.

The embedder knows nothing about documents or indexes. It counts tokens (chunking is measured
in its tokens), and encodes in bfloat16 where the CPU does that natively, shortest texts first
so each batch carries little padding.
"""

from __future__ import annotations

import threading

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ragbot.errors import ModelError
from ragbot.models import load_plan, pick_device, pick_dtype, require_safetensors
from ragbot.settings import Settings


@dataclass
class TokenVectors:
    """A text's unit-length embedding, and a unit-length contextual vector for each of its tokens
    with the character span of the text that the token covers (special tokens left out)."""

    vector: np.ndarray  # (dim,)
    tokens: np.ndarray  # (n_tokens, dim)
    spans: list[tuple[int, int]]
    pieces: list[str]  # each token as the vocabulary spells it ("gan", "##s"): the BM25 terms


class Embedder:
    def __init__(self, model, name: str, dtype_name: str):
        self._model = model
        self.name = name
        self.dtype_name = dtype_name
        self.dim = int(model.get_embedding_dimension())
        # Room for the [CLS] and [SEP] tokens the model adds itself.
        self.max_tokens = int(model.max_seq_length) - 2
        self.tokenizer = model.tokenizer
        # One call into the model or its tokenizer at a time: the fast tokenizer keeps its padding
        # and truncation as state that each call sets, so two threads (chat sessions answering
        # at once) could tokenize with each other's settings and fail. Held per batch, so a long
        # ingest lets a question's embedding in between.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings) -> "Embedder":
        location, _, _ = load_plan(settings, "embedder")
        return cls._load(settings, location, settings.embedder, f"embedder {settings.embedder!r}",
                         local_only=not settings.allow_downloads)

    @classmethod
    def load_tuned(cls, settings: Settings, path, version: str) -> "Embedder":
        """A tuned copy of the shipped embedder saved at `path` (learn/retriever.py), loaded on
        the device and in the dtype the shipped one uses; named after its version. Only from
        safetensors: a pickled checkpoint in the data dir could run code when loaded."""
        require_safetensors(path, f"the tuned embedder {version}", "model.safetensors")
        return cls._load(settings, str(path), f"{settings.embedder}@{version}",
                         f"the tuned embedder {version} from {path}", local_only=True)

    @classmethod
    def _load(cls, settings: Settings, location: str, name: str, what: str, local_only: bool) -> "Embedder":
        device = pick_device()
        dtype = pick_dtype(settings.dtype, device)
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(location, device=device, local_files_only=local_only)
        except Exception as exc:  # noqa: BLE001 - a missing, partial or corrupt model folder: said, not a traceback
            raise ModelError(f"cannot load {what}: {type(exc).__name__}: {exc}") from None
        model.to(dtype)
        model.eval()
        return cls(model, name=name, dtype_name=str(dtype).removeprefix("torch."))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self._input_ids(texts)]

    def _input_ids(self, texts: Sequence[str], part: int = 256) -> list[list[int]]:
        """Each text's token ids (no special tokens), tokenized `part` texts at a time with the
        lock let go between parts, so a question's embedding is not kept waiting behind a long
        document's thousands of sentences."""
        encoded: list[list[int]] = []
        for start in range(0, len(texts), part):
            with self._lock:
                encoded += self.tokenizer(list(texts[start: start + part]), add_special_tokens=False)["input_ids"]
        return encoded

    def word_pieces(self, texts: Sequence[str]) -> list[list[str]]:
        """The tokens the embedder reads in each text (its own learned vocabulary: "GANs" is
        "gan" + "##s"), punctuation left out: the terms of the BM25 index (lexical.py)."""
        spell = self.tokenizer.convert_ids_to_tokens
        return [spell(ids.tolist()) for ids in self.word_piece_ids(texts)]

    def word_piece_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """`word_pieces` as the pieces' ids in `vocabulary` (int32), one array per text."""
        is_term = self._is_term
        return [row[is_term[row]] for row in (np.asarray(ids, dtype=np.int32) for ids in self._input_ids(texts))]

    @cached_property
    def vocabulary(self) -> dict[str, int]:
        """Every word piece of the tokenizer and its id."""
        return dict(self.tokenizer.get_vocab())

    @cached_property
    def _is_term(self) -> np.ndarray:
        """For each token id: whether the piece holds a letter or digit (punctuation is no term)."""
        spelled = self.tokenizer.convert_ids_to_tokens(list(range(max(self.vocabulary.values()) + 1)))
        return np.array([piece is not None and any(ch.isalnum() for ch in piece) for piece in spelled], dtype=bool)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of `text`."""
        with self._lock:
            return list(self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"])

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        on_progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in input order."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                with self._lock:
                    vectors = self._model.encode(
                        [texts[i] for i in idx],
                        batch_size=batch_size,
                        convert_to_tensor=True,
                        normalize_embeddings=True,
                        show_progress_bar=False,
                    )
                    out[idx] = vectors.float().cpu().numpy()
                if on_progress:
                    on_progress(len(idx))
        return out

    def encode_tokens(self, texts: Sequence[str], batch_size: int = 64) -> list[TokenVectors]:
        """Each text's embedding and its tokens' contextual vectors, from one pass of the model.
        Texts longer than the model reads are cut where the model cuts them. Batched and
        normalised as `encode` does (shortest first, `batch_size` at a time), so the embeddings
        are the very vectors `encode` gives: in bfloat16, padding and the order of operations
        move the last bits."""
        import torch

        result: list[TokenVectors | None] = [None] * len(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start: start + batch_size]
            part = [texts[i] for i in idx]
            with self._lock, torch.inference_mode():
                outputs = self._model.encode(part, batch_size=batch_size, output_value=None, normalize_embeddings=False,
                                             show_progress_bar=False)
                # Normalised as one batch in the model's dtype, as `encode` does: the same bits.
                vectors = torch.nn.functional.normalize(torch.stack([o["sentence_embedding"] for o in outputs]),
                                                        p=2, dim=1).float().cpu().numpy()
                encoded = self.tokenizer(part, truncation=True, max_length=int(self._model.max_seq_length),
                                         return_offsets_mapping=True)
                pieces = [self.tokenizer.convert_ids_to_tokens(ids) for ids in encoded["input_ids"]]
            for i, out, vector, spans, names in zip(idx, outputs, vectors, encoded["offset_mapping"], pieces):
                n = int(out["attention_mask"].sum())
                keep = [j for j, (first, end) in enumerate(spans[:n]) if end > first]
                tokens = out["token_embeddings"][:n].float().cpu().numpy()[keep]
                tokens /= np.linalg.norm(tokens, axis=1, keepdims=True) + 1e-12
                result[i] = TokenVectors(vector=vector, tokens=tokens,
                                         spans=[tuple(spans[j]) for j in keep], pieces=[names[j] for j in keep])
        return result
