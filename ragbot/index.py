"""The FAISS vector index: inner-product search over unit vectors, addressable by chunk id.

Exact (a flat index) until the corpus passes the `approximate_index_above` setting; from there
on, an IVF index (`approximate`): the vectors are clustered into about 4·sqrt(n) lists, trained
on the stored vectors themselves, and a search reads only the lists nearest the query. How many
lists it reads (nprobe) is chosen when the index is built, as the fewest that find at least
TARGET_RECALL of exact search's top 10 for queries made from a sample of stored vectors (each at
cosine QUERY_COSINE from its own); that recall is measured, reported and kept (store meta
"vector_index"). A corpus that grows to four
times the size the lists were trained on is clustered again.

A file `index/<generation>.faiss` holds the vectors of the database at that generation (see
store.py). It is written atomically (files.py), so a crash never leaves a half-written index
under a real name.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np

from .files import remove_old_generations, write_atomic

_NAME = re.compile(r"^(\d+)\.faiss$")
TARGET_RECALL = 0.95  # of exact search's top 10, for the nprobe an approximate index is built with
NPROBES = (4, 8, 16, 32, 64, 128, 256)  # tried in order; the first reaching TARGET_RECALL is kept
RECALL_QUERIES = 200  # queries made from stored vectors to measure it
# Those queries sit at this cosine from the stored vector each is made from, as a question sits
# from its best passage (the evidence threshold is 0.48; answerable questions' best cosines lie
# above it): the low end, so recall is not overstated. A stored vector itself as the query would
# find its own list and overstate it.
QUERY_COSINE = 0.5
EXACT_WITHIN = 20_000  # a search restricted to at most this many chunks is exact, whatever the index
RETRAIN_GROWTH = 4  # cluster again once the corpus is this many times the size trained on


class VectorIndex:
    def __init__(self, dim: int, index=None):
        import faiss

        self.dim = dim
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        """"exact" (flat) or "ivf" (approximate)."""
        return "ivf" if self._ivf() is not None else "exact"

    def _ivf(self):
        import faiss

        try:
            return faiss.extract_index_ivf(self._index)
        except RuntimeError:
            return None

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

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids) -> None:
        if len(ids):
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))

    def vectors(self, ids) -> np.ndarray:
        """The stored vectors of chunk ids (each must be in the index)."""
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self._index.reconstruct(int(i)) for i in ids])

    def search(self, queries: np.ndarray, k: int, only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each of shape (n_queries, k); missing hits have id -1. With `only`
        (chunk ids), the search is exact over those chunks alone."""
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if len(self) == 0 or (only is not None and not len(only)):
            n = len(queries)
            return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
        if only is None:
            return self._index.search(queries, min(k, len(self)))
        only = np.asarray(only, dtype=np.int64)
        ivf = self._ivf()
        if ivf is None:
            chosen = faiss.SearchParameters(sel=faiss.IDSelectorBatch(only))
            return self._index.search(queries, min(k, len(self)), params=chosen)
        if len(only) <= EXACT_WITHIN:  # few chunks: exact over their stored vectors
            return _exact(queries, only, self.vectors(only), k)
        chosen = faiss.SearchParametersIVF(sel=faiss.IDSelectorBatch(only), nprobe=ivf.nprobe)
        return self._index.search(queries, min(k, len(self)), params=chosen)

    # -- approximate search ------------------------------------------------------------------

    def should_approximate(self, above: int, trained_on: int | None = None) -> bool:
        """Whether this index should be (re)built approximate: it is exact and holds more than
        `above` vectors (0: never), or approximate and has grown RETRAIN_GROWTH times past the
        `trained_on` vectors its lists were trained on (unknown: never)."""
        if not above:
            return False
        if self._ivf() is None:
            return len(self) > above
        return bool(trained_on) and len(self) > RETRAIN_GROWTH * trained_on

    def approximate(self, seed: int = 0) -> tuple["VectorIndex", dict]:
        """An IVF index over the same ids and vectors, and what was measured building it: lists,
        nprobe, recall@10 against exact search, seconds."""
        import faiss

        started = time.perf_counter()
        ids = self.ids()
        vectors = self.vectors(ids)
        n = len(ids)
        rng = np.random.default_rng(seed)
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))  # FAISS wants about 39 training points per list
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = seed
        ivf.train(vectors[rng.choice(n, min(n, 64 * nlist), replace=False)])
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by chunk id
        ivf.add_with_ids(np.ascontiguousarray(vectors), ids)
        sample = near(vectors[rng.choice(n, min(n, RECALL_QUERIES), replace=False)], QUERY_COSINE, rng)
        _, truth = _exact(sample, ids, vectors, 10)
        recall = 0.0
        for nprobe in NPROBES:
            ivf.nprobe = min(nprobe, nlist)
            _, found = ivf.search(sample, min(10, n))
            recall = float(np.mean([len(set(a[a >= 0]) & set(b)) / max(1, (a >= 0).sum())
                                    for a, b in zip(truth, found)]))
            if recall >= TARGET_RECALL or nprobe >= nlist:
                break
        result = VectorIndex(self.dim, ivf)
        return result, {"kind": "ivf", "vectors": n, "lists": nlist, "nprobe": int(ivf.nprobe),
                        "recall_at_10": round(recall, 4), "target_recall": TARGET_RECALL,
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



def approximate_if_due(index: VectorIndex, above: int, recorded: str | None) -> tuple[VectorIndex, dict | None]:
    """`index` made approximate when it is due (VectorIndex.should_approximate), with what was
    measured building it; else `index` itself and None. `recorded` is the store's "vector_index"
    meta (JSON of the last build's measurements), which says how many vectors it was trained on."""
    try:
        trained_on = int(json.loads(recorded or "{}").get("vectors") or 0) or None
    except (ValueError, TypeError, AttributeError):
        trained_on = None
    if not index.should_approximate(above, trained_on):
        return index, None
    return index.approximate()


def near(vectors: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at about `cosine` from each of `vectors` (unit), in random directions."""
    noise = rng.standard_normal(vectors.shape).astype(np.float32)
    noise -= (noise * vectors).sum(axis=1, keepdims=True) * vectors  # orthogonal to each vector
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return (cosine * vectors + np.sqrt(1 - cosine ** 2) * noise).astype(np.float32)


def _exact(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product of each query over (ids, vectors); -1 / -inf pad the rest."""
    scores = queries @ vectors.T
    n = min(k, len(ids))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    out_scores[:, :n] = np.take_along_axis(scores, top, axis=1)
    out_ids[:, :n] = np.asarray(ids)[top]
    return out_scores, out_ids
