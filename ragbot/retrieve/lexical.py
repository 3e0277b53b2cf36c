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
temporary folder and swapped into place (files.py), and rebuilt from the database whenever it is
missing, like the FAISS index.

**Incremental.** Each generation's folder also keeps every chunk's term counts (`TermCounts`).
A new generation reuses the counts of the chunks it shares with the one before (chunk ids are
never reused, and a stored chunk never changes), so an ingest reads and tokenizes only its own new
chunks, and the BM25 scores are then computed from all counts in one vectorised pass
(`_counts_bm25`). Tokenizing was four fifths of a rebuild, and bm25s' own build loops over the
documents in Python; its scores are still recomputed for every chunk, since a new chunk changes
every term's IDF and the mean length (docs/benchmarks.md §2). bm25s keeps the scores, searches
and saves them.

Fusion (the `fusion` setting) is reciprocal-rank fusion by default (Cormack et al., 2009;
"ranks"): a chunk's fused score is the sum over the rankings it appears in of weight / (RRF_K +
rank). It needs no score calibration between the two rankers, but reads only ranks: an NTSB
report's chunks first by cosine (0.50, 0.38, 0.37...) for "Where did the airplane depart from?"
came after a VAE chunk BM25 matched on "Where". Score fusion ("scores", `fuse_scores`: each
ranking's scores scaled to [0, 1] over the chunks either found, the cosine between its lowest and
highest, BM25 by its highest, and added, BM25's times `lexical_weight`) keeps such a first
first, and measured a little better on SciFact and the development sets, but it lets a passage
with a strong BM25 match and a weak cosine into the five, where a young data dir's sentence
ranker quoted it over the definition ("What is retrieval-augmented generation?"): tried, not
adopted (docs/benchmarks.md §31). The lexical weight was chosen on SciFact's train queries
(bench/bench_scifact.py, bench/explore_score_fusion.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ragbot.storage.files import building_dir, full_disk_reported, remove_old_generations
from ragbot.storage.store import StoredChunk

if TYPE_CHECKING:
    from ragbot.retrieve.index import VectorIndex

RRF_K = 60  # the constant of the RRF paper; it damps the difference between the first ranks
_NAME = re.compile(r"^(\d+)\.bm25$")
_IDS = "chunk_ids.json"
_COUNTS = ("ids", "indptr", "terms", "counts")  # TermCounts' arrays, each saved as <name>.npy
# Of what a chunk's counts are made (chunk_text, word_piece_ids): counts saved with another
# version are not reused, since every generation would carry them forward.
TERMS_VERSION = 1
READ_BATCH = 10_000  # chunks read from the database (and tokenized) at a time


def chunk_text(chunk: StoredChunk) -> str:
    """What BM25 reads of a chunk: its title and section path, then its text."""
    head = chunk.section if chunk.section.startswith(chunk.title) else " > ".join(
        p for p in (chunk.title, chunk.section) if p)
    return f"{head}\n{chunk.text}" if head else chunk.text


class Words(Protocol):
    """What the index reads words with: the embedder's word pieces (embed.py)."""

    name: str
    vocabulary: dict[str, int]

    def word_pieces(self, texts: Sequence[str]) -> list[list[str]]: ...

    def word_piece_ids(self, texts: Sequence[str]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class TermCounts:
    """Which terms each chunk holds and how often: row i (terms[indptr[i]:indptr[i+1]], counts
    alike) is chunk ids[i]; ids ascend."""

    ids: np.ndarray  # int64
    indptr: np.ndarray  # int64, len(ids) + 1
    terms: np.ndarray  # int32 term ids (the vocabulary's), each once per row
    counts: np.ndarray  # int32, how often the row's chunk holds the term

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def of(cls, ids: Sequence[int], pieces: Sequence[np.ndarray]) -> "TermCounts":
        """The counts of texts given as term-id arrays, one per chunk id."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.repeat(np.arange(len(pieces), dtype=np.int64), [len(p) for p in pieces])
        flat = np.concatenate(pieces).astype(np.int64) if len(pieces) else np.zeros(0, dtype=np.int64)
        # Each (row, term) once, with its count: unique over row * (largest term + 1) + term.
        width = int(flat.max()) + 1 if len(flat) else 1
        keys, counts = np.unique(rows * width + flat, return_counts=True)
        per_row = np.bincount(keys // width, minlength=len(ids))
        made = cls(ids, np.concatenate([[0], np.cumsum(per_row)]).astype(np.int64),
                   (keys % width).astype(np.int32), counts.astype(np.int32))
        return made.sorted()

    def sorted(self) -> "TermCounts":
        return self if np.all(self.ids[1:] > self.ids[:-1]) else self.take(np.argsort(self.ids, kind="stable"))

    def take(self, rows: np.ndarray) -> "TermCounts":
        """Rows `rows` (positions), in that order."""
        starts, lengths = self.indptr[rows], np.diff(self.indptr)[rows]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # Each taken row's positions in terms/counts: its start plus 0..length-1.
        at = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return TermCounts(self.ids[rows], indptr, self.terms[at], self.counts[at])

    def keep(self, ids: np.ndarray) -> "TermCounts":
        """The rows of the chunks `ids` names (ids it does not hold are left out)."""
        return self.take(np.flatnonzero(np.isin(self.ids, ids)))

    @staticmethod
    def join(parts: Sequence["TermCounts"]) -> "TermCounts":
        lengths = [np.diff(p.indptr) for p in parts]
        joined = TermCounts(np.concatenate([p.ids for p in parts]),
                            np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64),
                            np.concatenate([p.terms for p in parts]), np.concatenate([p.counts for p in parts]))
        return joined.sorted()

    def save(self, folder: Path) -> None:
        for name in _COUNTS:
            np.save(folder / f"{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, folder: Path) -> "TermCounts | None":
        """The saved counts (memory-mapped: only an ingest reads them), or None when the folder
        has none (written before they were kept) or their shapes do not fit together (checked
        on the per-chunk arrays only, so loading reads no term array)."""
        try:
            counts = cls(*(np.load(folder / f"{name}.npy", mmap_mode="r") for name in _COUNTS))
        except (OSError, ValueError):
            return None
        fits = (len(counts.indptr) == len(counts.ids) + 1 and len(counts.terms) == len(counts.counts)
                and counts.indptr[0] == 0 and counts.indptr[-1] == len(counts.terms)
                and bool(np.all(np.diff(counts.indptr) >= 0)) and bool(np.all(np.diff(counts.ids) > 0))
                and counts.terms.dtype == np.int32 and counts.counts.dtype == np.int32)
        return counts if fits else None


def _counts_bm25():
    """bm25s' BM25 with the build step its docs invite overriding (`build_index_from_ids`) given
    a `TermCounts` in place of token lists: the same Lucene-variant scores as bm25s' own loop
    (k1, b and the IDF as bm25s sets them), computed as arrays. bm25s is imported only here,
    when an index is built."""
    import bm25s

    class CountsBM25(bm25s.BM25):
        def build_index_from_ids(self, unique_token_ids, corpus_token_ids, show_progress=True, leave_progress=False):
            if self.method != "lucene":
                raise ValueError(f"the counts build computes the lucene variant, not {self.method!r}")
            self.nonoccurrence_array = None  # as bm25s' build sets it for the lucene variant
            counts: TermCounts = corpus_token_ids
            n_docs, n_vocab = len(counts), int(max(unique_token_ids, default=-1)) + 1
            # 32-bit arrays where they fit, temporaries dropped early: at a million chunks there
            # are about 10^8 (chunk, term) entries, and each byte per entry is 100 MB.
            rows = np.repeat(np.arange(n_docs, dtype=np.int32), np.diff(counts.indptr))
            tf = np.asarray(counts.counts, dtype=np.float32)
            lengths = np.bincount(rows, weights=tf, minlength=n_docs)  # tokens per chunk
            norm = (self.k1 * ((1 - self.b) + self.b * lengths / lengths.mean())).astype(np.float32)
            terms = np.asarray(counts.terms, dtype=np.int32)
            df = np.bincount(terms, minlength=n_vocab)
            idf = np.where(df > 0, np.log1p((n_docs - df + 0.5) / (df + 0.5)), 0.0).astype(np.float32)
            scores = idf[terms] * (tf / (norm[rows] + tf))
            del tf, norm
            # By term, chunks ascending within each. numpy's stable sort is a radix sort for 16-bit
            # keys, three times faster than for 32-bit ones (a WordPiece vocabulary has ~30k terms).
            keys = terms.astype(np.uint16) if n_vocab <= 2**16 else terms
            del terms
            order = np.argsort(keys, kind="stable")
            del keys
            return {"data": scores[order].astype(self.dtype),
                    "indices": rows[order].astype(self.int_dtype),
                    "indptr": np.concatenate([[0], np.cumsum(df)]).astype(np.int64),
                    "num_docs": n_docs}

    return CountsBM25()


class _Indexed:
    """What bm25s' `index` takes: token ids (here the counts) and the vocabulary."""

    def __init__(self, ids: TermCounts, vocab: dict[str, int]):
        self.ids, self.vocab = ids, vocab


class LexicalIndex:
    def __init__(self, retriever, counts: TermCounts | None, ids: np.ndarray, words: Words):
        self._retriever = retriever
        self.counts = counts  # None for an index saved before counts were kept: the next build reads everything
        self.ids = np.asarray(ids, dtype=np.int64)
        self.words = words
        self.tokenizer = words.name  # an index is only read with the tokenizer it was built with

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, ids: Sequence[int], read: Callable[[Sequence[int]], Sequence[StoredChunk]], words: Words,
              previous: "LexicalIndex | None" = None) -> "LexicalIndex":
        """The index of the chunks `ids`. The term counts of chunks `previous` holds are reused
        (when it was built with the same words); `read(ids)` gives the others' stored chunks
        (those it still finds), which are tokenized here."""
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        reused = previous.counts.keep(ids) if previous is not None and previous.counts is not None \
            and previous.tokenizer == words.name else None
        missing = ids if reused is None else np.setdiff1d(ids, reused.ids)
        parts = [] if reused is None else [reused]
        for start in range(0, len(missing), READ_BATCH):
            chunks = read(missing[start: start + READ_BATCH].tolist())
            parts.append(TermCounts.of([c.id for c in chunks], words.word_piece_ids([chunk_text(c) for c in chunks])))
        # A chunk another process removed meanwhile is not read, and so not indexed (a reader
        # may build while another process writes; the generation check then reloads).
        counts = TermCounts.join(parts) if parts else TermCounts.of([], [])
        retriever = _counts_bm25()
        if len(counts):
            # A copy: bm25s adds an empty term to the vocabulary it is given.
            retriever.index(_Indexed(counts, dict(words.vocabulary)), show_progress=False)
        return cls(retriever, counts, counts.ids, words)

    @classmethod
    def of(cls, chunks: Sequence[StoredChunk], words: Words) -> "LexicalIndex":
        """The index of these chunks, built from scratch."""
        by_id = {c.id: c for c in chunks}
        return cls.build(list(by_id), lambda ids: [by_id[i] for i in ids], words)

    def search(self, queries: Sequence[str], k: int, only: np.ndarray | None = None,
               weigh: Callable[[Sequence[str]], np.ndarray] | None = None) -> list[list[tuple[int, float]]]:
        """For each query, up to k (chunk id, BM25 score) pairs, best first; chunks sharing no
        word with the query are left out, and with `only` (chunk ids) every other chunk too.
        `weigh(terms)`: a weight for each of a query's terms, which multiplies that term's part
        of every score (the question log's weights, bot.py); None: each term weighs 1."""
        if not len(self) or (only is not None and not len(only)):
            return [[] for _ in queries]
        mask = None if only is None else np.isin(self.ids, np.asarray(only, dtype=np.int64)).astype(np.float32)
        vocab = self._retriever.vocab_dict
        found = []
        for tokens in self.words.word_pieces(list(queries)):
            known = [t for t in tokens if t in vocab]
            if not known:
                found.append([])
                continue
            if weigh is None:
                rows, scores = self._retriever.retrieve([known], k=min(k, len(self)), show_progress=False,
                                                        weight_mask=mask)
                rows, scores = rows[0], scores[0]
            else:
                rows, scores = self._weighted_search(known, np.asarray(weigh(known), dtype=np.float64), k, mask)
            found.append([(int(self.ids[r]), float(s)) for r, s in zip(rows, scores) if s > 0])
        return found

    def _weighted_search(self, terms: Sequence[str], weights: np.ndarray, k: int,
                         mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The k best rows by the weighted sum of the terms' BM25 scores. bm25s keeps each
        term's scores over the chunks that hold it (a sparse matrix, row per term) and sums
        them for a query, but takes no weight per query term: the sum is taken here, from
        those same stored scores, so a weight of 1 for every term gives bm25s' scores (summed
        in float64, not float32; equal scores are ordered by row, where bm25s' order is its own)."""
        stored = self._retriever.scores
        vocab, indptr = self._retriever.vocab_dict, stored["indptr"]
        # bm25s keeps an empty term at the vocabulary's end, past the per-term rows.
        spans = [(indptr[vocab[t]], indptr[vocab[t] + 1], w) for t, w in zip(terms, weights, strict=True)
                 if vocab[t] < len(indptr) - 1]
        if not spans:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        rows = np.concatenate([stored["indices"][a:b] for a, b, _ in spans])
        parts = np.concatenate([stored["data"][a:b].astype(np.float64) * w for a, b, w in spans])
        total = np.bincount(rows, weights=parts, minlength=len(self))
        if mask is not None:
            total *= mask
        best = np.lexsort((np.arange(len(total)), -total))[:k]  # by score, then by row
        return best, total[best]

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
                if self.counts is not None:
                    self.counts.save(tmp)
                (tmp / _IDS).write_text(json.dumps({"tokenizer": self.tokenizer, "terms": TERMS_VERSION,
                                                    "chunk_ids": self.ids.tolist()}))
        remove_old_generations(directory, _NAME, generation)
        if self.counts is not None:  # held from the file from now on, not in memory
            self.counts = TermCounts.load(target) or self.counts
        return target

    @classmethod
    def load(cls, directory: Path, generation: int, words: Words) -> "LexicalIndex | None":
        """The index saved for `generation` with `words`' tokenizer, or None when there is none
        (or it is unusable, or was made with another tokenizer)."""
        import bm25s

        path = directory / f"{generation}.bm25"
        try:
            meta = json.loads((path / _IDS).read_text())
            if meta.get("tokenizer") != words.name:
                return None
            ids = np.array(meta["chunk_ids"], dtype=np.int64)
            retriever = bm25s.BM25.load(str(path), show_progress=False, verbosity=0) if len(ids) else bm25s.BM25()
        except (OSError, ValueError, KeyError, AttributeError):
            return None
        counts = TermCounts.load(path) if meta.get("terms") == TERMS_VERSION else None
        if counts is not None and not np.array_equal(counts.ids, ids):
            counts = None  # they do not belong to this index: the next build reads every chunk
        return cls(retriever, counts, ids, words)


def fuse_scores(dense: Sequence[tuple[int, float]], lexical: Sequence[tuple[int, float]], lexical_weight: float,
                k: int) -> list[int]:
    """Score fusion of the two rankings, each (chunk id, score) best first: the best k chunk ids
    by cosine + lexical_weight * BM25, each scaled to [0, 1] over the chunks either ranking
    found (the cosine by min and max, BM25 by its maximum: a chunk sharing no word scores 0).
    `dense` must give a cosine for every chunk of `lexical` it has a vector for; a chunk without
    one takes the lowest cosine. Unlike rank fusion, how far the first is ahead counts."""
    cosine = dict(dense)
    words = dict(lexical)
    pool = list(dict.fromkeys([c for c, _ in dense] + [c for c, _ in lexical]))
    if not pool:
        return []
    cosines = np.array([cosine.get(c, np.nan) for c in pool], dtype=np.float64)
    low, high = (np.nanmin(cosines), np.nanmax(cosines)) if not np.isnan(cosines).all() else (0.0, 0.0)
    cosines = np.where(np.isnan(cosines), low, cosines)
    scaled_cosines = (cosines - low) / (high - low) if high > low else np.zeros(len(pool))
    bm25 = np.array([words.get(c, 0.0) for c in pool], dtype=np.float64)
    scaled_bm25 = bm25 / bm25.max() if bm25.max() > 0 else bm25
    fused = scaled_cosines + lexical_weight * scaled_bm25
    order = np.lexsort((np.arange(len(pool)), -fused))[:k]  # by score, then dense first
    return [pool[i] for i in order]


def with_cosines(index: "VectorIndex", vector: np.ndarray, ranking: Sequence[int], cosines: np.ndarray,
                 hits: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """For `fuse_scores`: the dense `ranking` with its `cosines` (as the vector `index`
    returned them for the query `vector`), then the cosine of each chunk of the BM25 `hits` the
    dense ranking lacks, read from the index (a chunk it does not hold yet is left out)."""
    dense = list(zip(ranking, (float(c) for c in cosines[: len(ranking)])))
    seen = set(ranking)
    more = np.asarray([c for c, _ in hits if c not in seen], dtype=np.int64)
    if len(more):
        more = more[index.holds(more)]
        dense += zip(more.tolist(), (index.vectors(more) @ vector).tolist())
    return dense


def fuse(rankings: Sequence[Sequence[int]], weights: Sequence[float], k: int) -> list[int]:
    """Reciprocal-rank fusion of chunk-id rankings (best first): the best k chunk ids."""
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, chunk_id in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (RRF_K + rank)
    return sorted(fused, key=lambda c: -fused[c])[:k]
