"""The BM25 index next to FAISS, and how the two rankings are fused.

The 22M-parameter embedder blurs exact words: an acronym ("FID", "C2PA"), a name or a number in
the question may match no passage well by meaning while one passage holds it verbatim. BM25
(built with `bm25s`) finds those. Its terms are the embedder's own word pieces (a vocabulary
learned with the model, so "GANs" is "gan" + "##s" and matches "GAN"), with no stopword list and
no stemmer: nothing here is written for one language, and BM25's IDF weighs common pieces down.
On the development questions the word pieces found the gold document first for 84% against 79%
with bm25s' whole-word tokens (docs/benchmarks.md).

Each chunk is indexed with its title and section path, as the embedder sees it. One index per
index generation (store.py) sits beside the FAISS file as `index/<generation>.bm25/`, written to a
temporary folder and swapped into place (files.py), and rebuilt from the database whenever it is missing,
like the FAISS index.

Fusion is reciprocal-rank fusion (Cormack et al., 2009): a chunk's fused score is the sum over the
rankings it appears in of weight / (RRF_K + rank). It needs no score calibration between the two
rankers; the lexical weight was chosen on SciFact's train queries (bench/bench_scifact.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ragbot.storage.files import building_dir, full_disk_reported, remove_old_generations
from ragbot.storage.store import StoredChunk

RRF_K = 60  # the constant of the RRF paper; it damps the difference between the first ranks
_NAME = re.compile(r"^(\d+)\.bm25$")
_IDS = "chunk_ids.json"


def chunk_text(chunk: StoredChunk) -> str:
    """What BM25 reads of a chunk: its title and section path, then its text."""
    head = chunk.section if chunk.section.startswith(chunk.title) else " > ".join(
        p for p in (chunk.title, chunk.section) if p)
    return f"{head}\n{chunk.text}" if head else chunk.text


Tokenize = Callable[[Sequence[str]], list[list[str]]]


class LexicalIndex:
    def __init__(self, retriever, ids: np.ndarray, tokenize: Tokenize, tokenizer: str):
        self._retriever = retriever
        self.ids = np.asarray(ids, dtype=np.int64)
        self._tokenize = tokenize
        self.tokenizer = tokenizer  # names the tokenize function; an index is only read with its own

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, chunks: Sequence[StoredChunk], tokenize: Tokenize, tokenizer: str) -> "LexicalIndex":
        import bm25s

        retriever = bm25s.BM25()
        if chunks:
            retriever.index(tokenize([chunk_text(c) for c in chunks]), show_progress=False)
        return cls(retriever, np.array([c.id for c in chunks], dtype=np.int64), tokenize, tokenizer)

    def search(self, queries: Sequence[str], k: int, only: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        """For each query, up to k (chunk id, BM25 score) pairs, best first; chunks sharing no
        word with the query are left out, and with `only` (chunk ids) every other chunk too."""
        if not len(self) or (only is not None and not len(only)):
            return [[] for _ in queries]
        mask = None if only is None else np.isin(self.ids, np.asarray(only, dtype=np.int64)).astype(np.float32)
        vocab = self._retriever.vocab_dict
        found = []
        for tokens in self._tokenize(list(queries)):
            known = [t for t in tokens if t in vocab]
            if not known:
                found.append([])
                continue
            rows, scores = self._retriever.retrieve([known], k=min(k, len(self)), show_progress=False,
                                                    weight_mask=mask)
            found.append([(int(self.ids[r]), float(s)) for r, s in zip(rows[0], scores[0]) if s > 0])
        return found

    def document_frequencies(self, terms: Sequence[str]) -> np.ndarray:
        """How many indexed chunks hold each term (0 for a term none holds)."""
        if not len(self):
            return np.zeros(len(terms), dtype=np.int64)
        vocab, per_term = self._retriever.vocab_dict, np.diff(self._retriever.scores["indptr"])
        # bm25s keeps an empty term at the vocabulary's end, past the per-term counts.
        return np.array([per_term[vocab[t]] if vocab.get(t, len(per_term)) < len(per_term) else 0 for t in terms],
                        dtype=np.int64)

    # -- persistence ------------------------------------------------------------------------

    def save(self, directory: Path, generation: int) -> Path:
        target = directory / f"{generation}.bm25"
        with full_disk_reported(target):
            with building_dir(target, ".tmp-bm25-") as tmp:
                if len(self):
                    self._retriever.save(str(tmp), show_progress=False)
                (tmp / _IDS).write_text(json.dumps({"tokenizer": self.tokenizer, "chunk_ids": self.ids.tolist()}))
        remove_old_generations(directory, _NAME, generation)
        return target

    @classmethod
    def load(cls, directory: Path, generation: int, tokenize: Tokenize, tokenizer: str) -> "LexicalIndex | None":
        """The index saved for `generation` with `tokenizer`, or None when there is none (or it
        is unusable, or was made with another tokenizer)."""
        import bm25s

        path = directory / f"{generation}.bm25"
        try:
            meta = json.loads((path / _IDS).read_text())
            if meta.get("tokenizer") != tokenizer:
                return None
            ids = np.array(meta["chunk_ids"], dtype=np.int64)
            retriever = bm25s.BM25.load(str(path), show_progress=False, verbosity=0) if len(ids) else bm25s.BM25()
        except (OSError, ValueError, KeyError, AttributeError):
            return None
        return cls(retriever, ids, tokenize, tokenizer)


def fuse(rankings: Sequence[Sequence[int]], weights: Sequence[float], k: int) -> list[int]:
    """Reciprocal-rank fusion of chunk-id rankings (best first): the best k chunk ids."""
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, chunk_id in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (RRF_K + rank)
    return sorted(fused, key=lambda c: -fused[c])[:k]
