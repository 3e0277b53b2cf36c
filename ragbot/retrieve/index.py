"""The FAISS vector index: inner-product search over unit vectors, addressable by chunk id.

Exact (a flat index) until the corpus passes the `approximate_index_above` setting; from there
on, an IVF index (`approximate`): the vectors are clustered into about 4·sqrt(n) lists, trained
on the stored vectors themselves, and a search reads only the lists nearest the query. How many
lists it reads (nprobe) is chosen when the index is built, as the fewest that find at least
CHECK_RECALL of exact search's top 10 for queries made from the stored vectors (`check_queries`),
set above TARGET_RECALL by what those queries were measured to overstate on real questions; that
recall is reported and kept (store meta "vector_index"). If no nprobe tried reaches it, or the
build fails, the index stays as it was, and the next try waits for the corpus to grow (not
every write). A corpus that grows to about four times the size the lists were trained on is
clustered again; one that shrinks back to the setting (or a setting of 0) makes the index exact
again. Only a write (ingest, remove) changes the kind of index; an index rebuilt from the
database by a reader is exact until the next write.

A file `index/<generation>.faiss` holds the vectors of the database at that generation (see
store.py). It is written atomically (files.py), so a crash never leaves a half-written index
under a real name.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from ragbot.storage.files import remove_old_generations, write_atomic

_NAME = re.compile(r"^(\d+)\.faiss$")
TARGET_RECALL = 0.95  # of exact search's top 10 for real questions, what nprobe is chosen for
# The index has no questions when it is built, so it measures recall on queries made from its
# vectors (`check_queries`). On SciFact's 1,109 real questions over MiniLM vectors those queries
# overstated recall by about 0.03 where they crossed 0.95 (bench/bench_ivf_estimate.py), so
# they must reach this much more for the real ones to reach TARGET_RECALL.
CHECK_RECALL = 0.98
NPROBES = (4, 8, 16, 32, 64, 128, 256)  # tried in order; the first reaching CHECK_RECALL is kept
RECALL_QUERIES = 200  # queries of each kind made from stored vectors to measure it
EXACT_WITHIN = 20_000  # a search restricted to at most this many chunks is exact, whatever the index


class VectorIndex:
    def __init__(self, dim: int, index=None):
        import faiss

        self.dim = dim
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._sorted_ids: np.ndarray | None = None  # for membership tests; None after a change

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        """"exact" (flat) or "ivf" (approximate)."""
        return "ivf" if self._ivf() is not None else "exact"

    def _ivf(self):
        import faiss

        return faiss.try_extract_index_ivf(self._index)

    def copy(self) -> "VectorIndex":
        """An independent copy (the next generation is built on one while searches read this)."""
        import faiss

        return VectorIndex(self.dim, faiss.clone_index(self._index))

    def ids(self) -> np.ndarray:
        import faiss

        ivf = self._ivf()
        if ivf is None:
            return faiss.vector_to_array(self._index.id_map)
        lists = ivf.invlists
        found = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(ivf.nlist) if lists.list_size(i)]
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def holds(self, ids: np.ndarray) -> np.ndarray:
        """Which of `ids` the index holds (the sorted id list is kept until the next change)."""
        if self._sorted_ids is None:
            self._sorted_ids = np.sort(self.ids())
        at = np.minimum(np.searchsorted(self._sorted_ids, ids), max(len(self._sorted_ids) - 1, 0))
        return (self._sorted_ids[at] == ids) if len(self._sorted_ids) else np.zeros(len(ids), dtype=bool)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._sorted_ids = None
        if len(ids):
            if self._ivf() is not None:  # an IVF index would keep a second entry under an id it holds
                self.remove(ids)
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids) -> None:
        self._sorted_ids = None
        if len(ids):
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))

    def vectors(self, ids) -> np.ndarray:
        """The stored vectors of chunk ids (each must be in the index)."""
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int, only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each of shape (n_queries, k); missing hits have id -1. With `only`
        (chunk ids; ids the index does not hold are ignored), the search is over those chunks
        alone: exact, except on an approximate index with more than EXACT_WITHIN of them, where
        it reads proportionally more lists (most of each list is not chosen)."""
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if len(self) == 0 or (only is not None and not len(only)):
            return _nothing(len(queries), k)
        if only is None:
            return self._index.search(queries, min(k, len(self)))
        only = np.asarray(only, dtype=np.int64)
        ivf = self._ivf()
        if ivf is None:
            chosen = faiss.SearchParameters(sel=faiss.IDSelectorBatch(only))
            return self._index.search(queries, min(k, len(self)), params=chosen)
        if len(only) <= EXACT_WITHIN:  # few chunks: exact over their stored vectors
            only = only[self.holds(only)]  # chosen as the database stands, maybe newer than this index
            return _exact(queries, only, self.vectors(only), k) if len(only) else _nothing(len(queries), k)
        nprobe = min(ivf.nlist, int(np.ceil(ivf.nprobe * len(self) / len(only))))
        chosen = faiss.SearchParametersIVF(sel=faiss.IDSelectorBatch(only), nprobe=nprobe)
        return self._index.search(queries, min(k, len(self)), params=chosen)

    # -- approximate search ------------------------------------------------------------------

    def due(self, above: int) -> str | None:
        """What this index should be rebuilt as, if anything: "ivf" when it is exact and holds more
        than `above` vectors, or approximate and has grown so that its lists are half as many as
        its size calls for (about four times the vectors they were trained on, past 24k); "exact" when it
        is approximate and `above` is 0 (never) or the corpus has shrunk to `above` or less."""
        ivf = self._ivf()
        if ivf is None:
            return "ivf" if above and len(self) > above else None
        if not above or len(self) <= above:
            return "exact"
        return "ivf" if _lists_for(len(self)) >= 2 * ivf.nlist else None

    def exact(self) -> "VectorIndex":
        """A flat index over the same ids and vectors."""
        flat = VectorIndex(self.dim)
        flat.add(*self._all())
        return flat

    def _all(self) -> tuple[np.ndarray, np.ndarray]:
        """Every id and its vector, read in one pass."""
        import faiss

        if self._ivf() is None:
            return faiss.vector_to_array(self._index.id_map), self._index.index.reconstruct_n(0, len(self))
        ids = self.ids()
        return ids, self.vectors(ids)

    def approximate(self, seed: int = 0) -> tuple["VectorIndex", dict]:
        """An IVF index over the same ids and vectors, and what was measured building it: lists,
        nprobe, recall@10 on its check against exact search, seconds. `recall_at_10` below
        CHECK_RECALL means no nprobe tried reached it; approximate_if_due then keeps the index
        as it was."""
        import faiss

        started = time.perf_counter()
        ids, vectors = self._all()
        n = len(ids)
        rng = np.random.default_rng(seed)
        nlist = _lists_for(n)
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = seed
        ivf.train(vectors[rng.choice(n, min(n, 64 * nlist), replace=False)])
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by chunk id
        ivf.add_with_ids(np.ascontiguousarray(vectors), ids)
        samples = check_queries(vectors, RECALL_QUERIES, rng)
        truths = [_exact(sample, ids, vectors, 10)[1] for sample in samples]
        recall = 0.0
        for nprobe in NPROBES:
            ivf.nprobe = min(nprobe, nlist)
            recall = min(_recall(truth, ivf.search(sample, min(10, n))[1]) for sample, truth in zip(samples, truths))
            if recall >= CHECK_RECALL or nprobe >= nlist:
                break
        result = VectorIndex(self.dim, ivf)
        return result, {"kind": "ivf", "vectors": n, "lists": nlist, "nprobe": int(ivf.nprobe),
                        "recall_at_10": round(recall, 4), "check_recall": CHECK_RECALL,
                        "seconds": round(time.perf_counter() - started, 2)}

    def describe(self) -> str:
        ivf = self._ivf()
        if ivf is None:
            return f"exact (flat), {len(self)} vectors"
        return f"approximate (IVF: {ivf.nlist} lists, {ivf.nprobe} read per search), {len(self)} vectors"

    # -- persistence ------------------------------------------------------------------------

    def save(self, directory: Path, generation: int) -> Path:
        import faiss

        target = directory / f"{generation}.faiss"
        write_atomic(target, faiss.serialize_index(self._index).tobytes())
        remove_old_generations(directory, _NAME, generation)
        return target

    @classmethod
    def load(cls, directory: Path, generation: int, dim: int) -> "VectorIndex | None":
        """The index saved for `generation`, or None when there is none (or it is unusable)."""
        import faiss

        path = directory / f"{generation}.faiss"
        if not path.is_file():
            return None
        try:
            index = faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))
        except RuntimeError:
            return None
        if index.d != dim:
            return None
        return cls(dim, index)



def approximate_if_due(index: VectorIndex, above: int, last: dict | None = None) -> tuple[VectorIndex, dict | None]:
    """`index` rebuilt as VectorIndex.due says, and the record of what it now is (store meta
    "vector_index"; None when nothing was due). `last` is the previous record.

    An IVF build that misses CHECK_RECALL at every nprobe tried, or fails (memory), is not used:
    the index stays as it was (exact, or the IVF index being clustered again, whose record is
    kept), and the record says why under "reason", with "attempted_at" (the size tried). The next
    try waits until the corpus has grown enough for twice the lists, so a failing build
    (minutes at a million chunks) is not repeated at every write."""
    due = index.due(above)
    if due is None:
        return index, None
    if due == "exact":
        reason = f"at most {above} chunks" if above else "approximate_index_above is 0"
        return index.exact(), {"kind": "exact", "vectors": len(index), "reason": reason}
    tried = int((last or {}).get("attempted_at") or 0)
    if tried and _lists_for(len(index)) < 2 * _lists_for(tried):
        return index, None
    kept = dict(last or {}) if index.kind == "ivf" else {"kind": "exact", "vectors": len(index)}
    try:
        approximate, built = index.approximate()
    except (MemoryError, RuntimeError) as exc:
        return index, {**kept, "attempted_at": len(index), "reason": f"building IVF failed: {exc}"}
    if built["recall_at_10"] < CHECK_RECALL:
        return index, {**kept, "attempted_at": len(index), "reason": f"an IVF index reached recall@10 "
                       f"{built['recall_at_10']:.3f} < {CHECK_RECALL} on its check at most"}
    return approximate, built


def _lists_for(n: int) -> int:
    """IVF lists for n vectors: about 4·sqrt(n), and at least 39 training vectors per list (FAISS's floor)."""
    return max(1, min(int(4 * np.sqrt(n)), n // 39))


def _nothing(n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n_queries, k), -np.inf, dtype=np.float32), np.full((n_queries, k), -1, dtype=np.int64)


def check_queries(vectors: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Two kinds of n unit queries made from stored vectors, to measure an IVF index's recall by
    (a stored vector itself always finds its own list and would overstate it): each halfway
    between two stored vectors, a question spanning two passages, whose neighbours often sit in
    different lists; and each at cosine 0.5 from one stored vector in a random direction, about
    where a question sits from its best passage. The index must reach CHECK_RECALL on both."""
    a, b = vectors[rng.integers(0, len(vectors), n)], vectors[rng.integers(0, len(vectors), n)]
    mixed = a + b
    norms = np.linalg.norm(mixed, axis=1, keepdims=True)
    between = (mixed / np.where(norms > 0, norms, 1)).astype(np.float32)
    return [between, near(vectors[rng.integers(0, len(vectors), n)], 0.5, rng)]


def near(vectors: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at `cosine` from each of `vectors` (unit), in random directions."""
    noise = rng.standard_normal(vectors.shape).astype(np.float32)
    noise -= (noise * vectors).sum(axis=1, keepdims=True) * vectors  # orthogonal to each vector
    noise /= np.maximum(np.linalg.norm(noise, axis=1, keepdims=True), 1e-12)
    return (cosine * vectors + np.sqrt(1 - cosine ** 2) * noise).astype(np.float32)


def _recall(truth: np.ndarray, found: np.ndarray) -> float:
    """The share of each query's true neighbours found, averaged over queries."""
    return float(np.mean([len(set(t[t >= 0]) & set(f)) / max(1, (t >= 0).sum()) for t, f in zip(truth, found)]))


def _exact(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product of each query over (ids, vectors); -1 / -inf pad the rest.
    FAISS computes it in blocks, never holding the whole queries × vectors score matrix (800 MB
    for the build's 200 check queries at a million chunks)."""
    import faiss

    n = min(k, len(ids))
    out_scores, out_ids = _nothing(len(queries), k)
    if not n:
        return out_scores, out_ids
    scores, rows = faiss.knn(np.ascontiguousarray(queries, dtype=np.float32),
                             np.ascontiguousarray(vectors, dtype=np.float32), n, metric=faiss.METRIC_INNER_PRODUCT)
    found = rows >= 0  # FAISS gives -1 where it found nothing (a vector of NaNs)
    out_scores[:, :n] = np.where(found, scores, -np.inf)
    out_ids[:, :n] = np.where(found, np.asarray(ids)[np.maximum(rows, 0)], -1)
    return out_scores, out_ids
