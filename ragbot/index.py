"""The FAISS vector index: exact inner-product search over unit vectors, addressable by chunk id.

A file `index/<generation>.faiss` holds the vectors of the database at that generation (see
store.py). It is written atomically (files.py), so a crash never leaves a half-written index
under a real name.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .files import remove_old_generations, write_atomic

_NAME = re.compile(r"^(\d+)\.faiss$")


class VectorIndex:
    def __init__(self, dim: int, index=None):
        import faiss

        self.dim = dim
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def copy(self) -> "VectorIndex":
        """An independent copy (the next generation is built on one while searches read this)."""
        import faiss

        return VectorIndex(self.dim, faiss.clone_index(self._index))

    def ids(self) -> np.ndarray:
        import faiss

        return faiss.vector_to_array(self._index.id_map)

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
        chosen = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(only, dtype=np.int64)))
        return self._index.search(queries, min(k, len(self)), params=chosen)

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

