"""The vector index: exact until the corpus passes `approximate_index_above`, then FAISS IVF with
its recall against exact search measured when built; every operation the bot uses works on both."""

from __future__ import annotations

import numpy as np
import pytest

from ragbot.retrieve import index as index_module
from ragbot.retrieve.index import CHECK_RECALL, TARGET_RECALL, VectorIndex, approximate_if_due

DIM = 32


def _clustered(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.arange(1000, 1000 + n, dtype=np.int64), vectors


@pytest.fixture(scope="module")
def both():
    ids, vectors = _clustered(6000)
    exact = VectorIndex(DIM)
    exact.add(ids, vectors)
    approximate, built = exact.approximate()
    return ids, vectors, exact, approximate, built


def test_approximate_index_measures_its_recall_and_reaches_the_target(both):
    ids, vectors, exact, approximate, built = both
    assert exact.kind == "exact" and approximate.kind == "ivf"
    assert built["vectors"] == 6000 and built["lists"] > 1 and built["recall_at_10"] >= CHECK_RECALL
    # Measured anew here on other queries (noisy copies of stored vectors): about the same recall.
    rng = np.random.default_rng(1)
    queries = vectors[rng.integers(0, len(vectors), 100)] + 0.2 * rng.standard_normal((100, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, truth = exact.search(queries, 10)
    _, found = approximate.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])
    assert recall >= TARGET_RECALL - 0.05
    assert "IVF" in approximate.describe() and "exact" in exact.describe()


def test_approximate_index_keeps_ids_vectors_and_edits(both, tmp_path):
    ids, vectors, _, approximate, _ = both
    assert sorted(approximate.ids().tolist()) == ids.tolist()
    np.testing.assert_allclose(approximate.vectors([ids[5], ids[7]]), vectors[[5, 7]], atol=1e-6)
    changed = approximate.copy()
    changed.remove(ids[:10])
    changed.add(np.array([99], dtype=np.int64), vectors[:1])
    assert len(changed) == 6000 - 10 + 1 and len(approximate) == 6000  # the copy is independent
    assert 99 in changed.ids() and ids[0] not in changed.ids()
    _, top = changed.search(vectors[:1], 1)
    assert top[0][0] == 99  # the re-added vector is found under its new id
    changed.save(tmp_path, 3)
    loaded = VectorIndex.load(tmp_path, 3, DIM)
    assert loaded.kind == "ivf" and len(loaded) == len(changed)
    np.testing.assert_allclose(loaded.vectors([99]), vectors[:1], atol=1e-6)
    assert loaded.describe() == changed.describe()


def test_a_search_within_chosen_chunks_is_exact_on_either_index(both, monkeypatch):
    ids, vectors, exact, approximate, _ = both
    only = ids[::97]
    query = vectors[3:4]
    want = exact.search(query, 5, only)
    got = approximate.search(query, 5, only)
    assert got[1].tolist() == want[1].tolist()
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    assert set(got[1][0]) <= set(only.tolist())
    few = approximate.search(query, 5, ids[:2])  # fewer chunks than k: the rest is padding
    assert sorted(few[1][0][:2].tolist()) == sorted(ids[:2].tolist()) and few[1][0][2:].tolist() == [-1, -1, -1]
    # Ids the index does not hold (chosen as a newer database stands) are ignored, not an error.
    unknown = approximate.search(query, 5, np.array([ids[3], 10**9]))
    assert unknown[1][0][0] == ids[3] and unknown[1][0][1:].tolist() == [-1] * 4
    # Many chosen chunks: an IVF search over them, reading more lists as fewer are chosen.
    monkeypatch.setattr(index_module, "EXACT_WITHIN", 100)
    many = ids[::3]
    rng = np.random.default_rng(5)
    queries = vectors[rng.integers(0, len(vectors), 50)]
    _, truth = exact.search(queries, 10, many)
    _, found = approximate.search(queries, 10, many)
    assert all(set(f) <= set(many.tolist()) for f in found)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)]) >= TARGET_RECALL


def test_when_an_index_becomes_approximate_and_exact_again():
    ids, vectors = _clustered(3000)
    index = VectorIndex(DIM)
    index.add(ids, vectors)
    assert approximate_if_due(index, 0) == (index, None)  # 0: never
    assert approximate_if_due(index, 3000) == (index, None)  # not past the size
    approximate, built = approximate_if_due(index, 2999)
    assert approximate.kind == "ivf" and built["vectors"] == 3000 and built["recall_at_10"] >= CHECK_RECALL
    assert approximate_if_due(approximate, 2999) == (approximate, None)  # trained on this size: kept
    more_ids, more = _clustered(9100, seed=2)
    approximate.add(more_ids + 10_000, more)  # 12,100 vectors: about four times the 3,000 trained on
    again, rebuilt = approximate_if_due(approximate, 2999)
    assert rebuilt["kind"] == "ivf" and rebuilt["vectors"] == 12_100 and rebuilt["lists"] > built["lists"]
    # A setting of 0, or a corpus back at the setting, makes it exact again, with the same contents.
    flat, record = approximate_if_due(again, 0)
    assert flat.kind == "exact" and record["kind"] == "exact" and sorted(flat.ids()) == sorted(again.ids())
    again.remove(again.ids()[:9200])
    assert approximate_if_due(again, 2999)[0].kind == "exact"


def test_an_approximate_index_that_misses_the_recall_target_is_not_used(monkeypatch):
    ids, vectors = _clustered(3000)
    index = VectorIndex(DIM)
    index.add(ids, vectors)
    monkeypatch.setattr(index_module, "NPROBES", (1,))  # one list read: far from the target here
    kept, record = approximate_if_due(index, 100)
    assert kept is index and kept.kind == "exact" and record["kind"] == "exact"
    assert record["attempted_at"] == 3000 and "recall@10" in record["reason"]
    # Not tried again at every write, only once the corpus has grown enough for twice the lists.
    assert approximate_if_due(index, 100, record) == (index, None)
    more_ids, more = _clustered(9100, seed=2)
    index.add(more_ids + 10_000, more)
    assert approximate_if_due(index, 100, record)[1]["attempted_at"] == 12_100


def test_an_ivf_index_that_fails_to_cluster_again_stays_and_says_so(monkeypatch):
    ids, vectors = _clustered(3000)
    index = VectorIndex(DIM)
    index.add(ids, vectors)
    approximate, built = approximate_if_due(index, 100)
    more_ids, more = _clustered(9100, seed=2)
    approximate.add(more_ids + 10_000, more)  # grown enough to be clustered again

    def no_memory(self, seed=0):
        raise MemoryError("out of memory")

    monkeypatch.setattr(VectorIndex, "approximate", no_memory)
    kept, record = approximate_if_due(approximate, 100, built)
    # The IVF index in use stays, with its own record (lists, nprobe, recall), and why it stayed.
    assert kept is approximate and kept.kind == "ivf"
    assert record["kind"] == "ivf" and record["lists"] == built["lists"] and record["recall_at_10"] == built["recall_at_10"]
    assert record["attempted_at"] == 12_100 and "out of memory" in record["reason"]
    assert approximate_if_due(approximate, 100, record) == (approximate, None)  # not at every write


def test_an_id_added_again_replaces_its_vector_on_an_approximate_index(both):
    ids, vectors, _, approximate, _ = both
    index = approximate.copy()
    index.add(ids[:1], vectors[1:2])  # the same id, a new vector (a re-ingested chunk)
    assert len(index) == len(approximate) and list(index.ids()).count(ids[0]) == 1
    np.testing.assert_allclose(index.vectors(ids[:1]), vectors[1:2], atol=1e-6)


def test_the_bot_switches_past_the_setting_and_says_so(make_bot, docs):
    bot = make_bot(approximate_index_above=2)
    report = bot.ingest([docs])
    assert report.vector_index is not None and "vector index now approximate" in report.summary()
    status = bot.status()["vector_index"]
    assert status.startswith("approximate (IVF") and "recall@10" in status
    answer = bot.ask("When was the Eiffel Tower completed?", record=False)
    assert "Eiffel" in answer.answer
    # Another process reading the same data dir: status from the saved file, without loading anything.
    reader = make_bot(data_dir=bot.settings.data_dir, approximate_index_above=2)
    assert reader.status()["vector_index"] == status and reader._index is None
    exact = make_bot()
    exact.ingest([docs])
    assert exact.status()["vector_index"].startswith("exact")
    # Set to 0, the next write makes the index exact again.
    back = make_bot(data_dir=bot.settings.data_dir, approximate_index_above=0)
    (docs / "more.md").write_text("# More\n\nThe Louvre is a museum in Paris.\n")
    assert "vector index exact" in back.ingest([docs]).summary()
    assert back.status()["vector_index"].startswith("exact")
