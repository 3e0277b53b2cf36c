"""BM25 next to FAISS: the fusion's arithmetic, the index per generation, and what it finds."""

import os
from pathlib import Path

import numpy as np
import pytest

from ragbot.retrieve.index import VectorIndex
from ragbot.retrieve.lexical import LexicalIndex, chunk_text, fuse, fuse_scores, with_cosines
from ragbot.storage.store import StoredChunk


def _chunk(i: int, text: str, title: str = "doc") -> StoredChunk:
    return StoredChunk(i, f"/docs/{title}.md", title, "", None, text)


class _Renamed:
    """The embedder's words under another tokenizer name."""

    def __init__(self, embedder, name):
        self._embedder, self.name = embedder, name

    def __getattr__(self, attribute):
        return getattr(self._embedder, attribute)


def test_reciprocal_rank_fusion():
    # b is 2nd and 1st; a is 1st and absent; c is 3rd and 2nd.
    fused = fuse([[1, 2, 3], [2, 3]], weights=(1.0, 1.0), k=3)
    assert fused == [2, 3, 1]  # 1/62+1/61 > 1/63+1/62 > 1/61
    assert fuse([[1, 2, 3], [2, 3]], weights=(1.0, 0.0), k=3) == [1, 2, 3]  # weight 0: dense order


def test_score_fusion_keeps_a_chunk_far_ahead_by_meaning_above_one_both_rankings_found():
    # Chunk 1 leads the cosines by far; chunk 2 is second in both rankings, only just.
    dense = [(1, 0.8), (2, 0.4), (3, 0.3), (4, 0.0)]
    lexical = [(3, 4.0), (2, 1.0)]
    assert fuse([[c for c, _ in dense], [c for c, _ in lexical]], weights=(1.0, 1.0), k=4) == [3, 2, 1, 4]
    # Scaled: cosines 1, .5, .375, 0 and BM25 0, .25, 1, 0 -> 1, .75, 1.375, 0.
    assert fuse_scores(dense, lexical, 1.0, k=4) == [3, 1, 2, 4]
    assert fuse_scores(dense, lexical, 0.0, k=4) == [1, 2, 3, 4]  # weight 0: the cosines' order
    assert fuse_scores(dense, lexical, 1.0, k=2) == [3, 1]
    assert fuse_scores([], [], 1.0, k=3) == []


def test_score_fusion_gives_a_chunk_without_a_vector_the_lowest_cosine():
    # Chunk 9 came from BM25 only and the vector index has not got it yet.
    assert fuse_scores([(1, 0.6), (2, 0.2)], [(9, 3.0), (2, 1.0)], 1.0, k=3) == [1, 9, 2]
    assert fuse_scores([], [(9, 3.0), (2, 1.0)], 1.0, k=3) == [9, 2]  # BM25's order alone


def test_the_cosines_for_score_fusion_follow_the_dense_ranking_then_read_what_only_bm25_found():
    index = VectorIndex(2)
    index.add(np.array([1, 2, 3], dtype=np.int64), np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32))
    query = np.array([1, 0], dtype=np.float32)
    scores, ids = index.search(query[None, :], 5, only=np.array([1, 2]))  # deeper than the two chosen
    ranking = [int(i) for i in ids[0] if i >= 0]
    assert ranking == [1, 2] and list(ids[0][2:]) == [-1]  # the missing hit: -1, at the end
    # Chunk 3 was found by BM25 alone: its cosine comes from the index. Chunk 9 (BM25's newer
    # generation) is not in the index yet: left out, so fuse_scores gives it the lowest cosine.
    pairs = with_cosines(index, query, ranking, scores[0], [(9, 5.0), (3, 2.0), (1, 1.0)])
    assert [c for c, _ in pairs] == [1, 2, 3]
    assert [round(s, 3) for _, s in pairs] == [1.0, 0.6, 0.0]


def test_index_finds_exact_words_and_survives_a_round_trip(tmp_path, embedder):
    pieces = embedder.word_pieces
    chunks = [_chunk(10, "The Frechet Inception Distance (FID) compares image statistics."),
              _chunk(11, "Bananas are yellow fruit grown in tropical regions."),
              _chunk(12, "Das Modell liest die Dokumente und antwortet mit Quellen.", title="de")]
    index = LexicalIndex.of(chunks, embedder)
    assert [c for c, _ in index.search(["FID"], 3)[0]] == [10]
    assert [c for c, _ in index.search(["the FIDs"], 3)[0]] == [10]  # word pieces: "fid" + "##s"
    assert [c for c, _ in index.search(["Dokumente Quellen"], 3)[0]] == [12]  # any language, no word lists
    assert index.search(["zzzunknown"], 3) == [[]]
    index.save(tmp_path, 4)
    assert LexicalIndex.load(tmp_path, 4, _Renamed(embedder, "another tokenizer")) is None  # rebuilt, not misread
    again = LexicalIndex.load(tmp_path, 4, embedder)
    assert again is not None and again.search(["bananas"], 2)[0][0][0] == 11
    # Document frequencies (the coverage scorer's IDF), the same after loading: the chunks that
    # hold each word piece, as BM25 reads them (title first).
    terms = ["fid", "the", "bananas", "zzzunknown"]
    expected = [sum(t in pieces([chunk_text(c)])[0] for c in chunks) for t in terms]
    assert list(index.document_frequencies(terms)) == list(again.document_frequencies(terms)) == expected
    assert expected[2] == 1 and expected[-1] == 0  # "bananas" is one word piece, in one chunk
    index.save(tmp_path, 5)  # a newer generation: the older one stays a while for readers still opening it
    os.utime(tmp_path / "4.bm25", (1, 1))  # written long ago: what counts is when it became old
    index.save(tmp_path, 6)
    assert LexicalIndex.load(tmp_path, 4, embedder) is not None
    os.utime(tmp_path / ".stale-4.bm25", (1, 1))  # old for longer than the grace period now
    index.save(tmp_path, 7)
    assert not (tmp_path / "4.bm25").exists() and LexicalIndex.load(tmp_path, 4, embedder) is None
    assert not (tmp_path / ".stale-4.bm25").exists()
    assert (tmp_path / "5.bm25").is_dir() and (tmp_path / "6.bm25").is_dir()  # old only recently: kept
    assert LexicalIndex.load(tmp_path, 99, embedder) is None
    empty = LexicalIndex.of([], embedder)
    assert empty.search(["anything"], 3) == [[]] and list(empty.document_frequencies(["fid"])) == [0]
    empty.save(tmp_path, 8)
    assert len(LexicalIndex.load(tmp_path, 8, embedder)) == 0


def _corpus_chunks() -> list[StoredChunk]:
    """The shipped corpus's paragraphs as chunks: real text, of varied length."""
    from conftest import CORPUS

    chunks = []
    for path in sorted(CORPUS.glob("*.md")):
        for part in path.read_text().split("\n\n"):
            if part.strip():
                chunks.append(_chunk(len(chunks) + 1, part.strip(), title=path.stem))
    return chunks


def test_counts_build_scores_as_bm25s_own_build(embedder):
    """The array build (`build_index_from_ids` given term counts) gives bm25s' own scores: the
    same score matrix as bm25s.BM25 indexing the word pieces as strings, and the same results."""
    import bm25s

    chunks = _corpus_chunks()
    assert len(chunks) > 100
    ours = LexicalIndex.of(chunks, embedder)
    theirs = bm25s.BM25()
    theirs.index(embedder.word_pieces([chunk_text(c) for c in chunks]), show_progress=False)
    # Columns are term ids: bm25s numbers the terms it met, we use the tokenizer's ids.
    terms = [t for t in theirs.vocab_dict if t]
    assert len(terms) > 1000
    for term in terms[::7]:
        mine, other = ours._retriever.vocab_dict[term], theirs.vocab_dict[term]
        a = slice(*ours._retriever.scores["indptr"][mine: mine + 2])
        b = slice(*theirs.scores["indptr"][other: other + 2])
        assert list(ours._retriever.scores["indices"][a]) == list(theirs.scores["indices"][b])
        np.testing.assert_allclose(ours._retriever.scores["data"][a], theirs.scores["data"][b], rtol=1e-5)
    for question in ["What is mode collapse in a GAN?", "Wer hat das Modell trainiert?", "FID KL divergence"]:
        known = [t for t in embedder.word_pieces([question])[0] if t in theirs.vocab_dict]
        rows, scores = theirs.retrieve([known], k=10, show_progress=False)
        expected = [(chunks[r].id, s) for r, s in zip(rows[0], scores[0]) if s > 0]
        found = ours.search([question], 10)[0]
        assert [c for c, _ in found] == [c for c, _ in expected]
        np.testing.assert_allclose([s for _, s in found], [s for _, s in expected], rtol=1e-5)


def test_weighted_terms_scale_their_part_of_the_score(embedder):
    """With a weight per query term, a chunk's score is the weighted sum of its terms' BM25 scores:
    weights of 1 give bm25s' own results; a term weighted 0 no longer finds chunks by itself,
    and half a weight halves its part; the documents chosen (`only`) still bound the search."""
    chunks = _corpus_chunks()
    index = LexicalIndex.of(chunks, embedder)
    for question in ["What is mode collapse in a GAN?", "Wer hat das Modell trainiert?", "FID KL divergence",
                     "GAN GAN loss"]:  # a repeated term counts each time, as in bm25s
        # Every chunk found (equal scores may be ordered differently from bm25s), best first.
        plain = index.search([question], len(chunks))[0]
        ones = index.search([question], len(chunks), weigh=lambda terms: np.ones(len(terms)))[0]
        assert len(ones) > 10 and dict(ones) == pytest.approx(dict(plain), rel=1e-5)
        assert all(a[1] >= b[1] for a, b in zip(ones, ones[1:]))

    question = "what is mode collapse"
    alone = {t: dict(index.search([t], len(chunks))[0]) for t in ("what", "is", "mode", "collapse")}
    weights = {"what": 0.0, "is": 0.5, "mode": 1.0, "collapse": 2.0}
    found = dict(index.search([question], len(chunks), weigh=lambda terms: np.array([weights[t] for t in terms]))[0])
    expected = {}
    for term, scores in alone.items():
        for chunk_id, score in scores.items():
            expected[chunk_id] = expected.get(chunk_id, 0.0) + weights[term] * score
    expected = {c: v for c, v in expected.items() if v > 0}
    assert set(found) == set(expected) and set(alone["what"]) - set(expected)  # "what" alone finds none now
    np.testing.assert_allclose([found[c] for c in expected], list(expected.values()), rtol=1e-5)
    chosen = np.array(sorted(expected)[:3])
    within = index.search([question], 10, only=chosen, weigh=lambda terms: np.array([weights[t] for t in terms]))[0]
    assert {c for c, _ in within} == set(chosen.tolist())
    everything = index.search([question], 10 * len(chunks), weigh=lambda terms: np.array([weights[t] for t in terms]))[0]
    assert dict(everything) == pytest.approx(expected)  # k past the number of chunks: every chunk found, once


def test_lexical_question_weights_follow_the_answer_log(make_bot, docs):
    """With `lexical_question_weights`, a word the earlier questions (the answer log) hold weighs
    less in BM25: asked about Sicily three times, "Sicily Sicily pastry" no longer ranks the
    Sicilian chunk above the pastry one (each of those words one word piece). Off, or with `question_log_weights` off, BM25 is as before."""
    bot = make_bot(retrieval="bm25")
    bot.ingest([docs])
    query = "Sicily Sicily pastry"
    names = lambda b: [Path(p.source).name for p in b.search(query, k=2)]  # noqa: E731

    weighted = bot.with_settings(lexical_question_weights=True)
    assert names(bot) == names(weighted) == ["volcano.html", "paris.md"]  # an empty log weighs every word 1
    for question in ("Is Sicily warm?", "Where is Sicily?", "How big is Sicily?"):
        bot.ask(question)
    assert names(weighted) == ["paris.md", "volcano.html"]  # the same bot reads the questions logged since
    assert names(bot) == names(bot.with_settings(lexical_question_weights=True, question_log_weights=False)) == \
        ["volcano.html", "paris.md"]


def test_a_new_generation_reads_only_new_chunks(embedder, tmp_path):
    """Built from the index before it, a generation tokenizes only the chunks that index lacks,
    and is the index a build from scratch makes: same scores, same results, same frequencies."""
    chunks = _corpus_chunks()
    by_id = {c.id: c for c in chunks}
    read: list[int] = []

    def reader(ids):
        read.extend(ids)
        return [by_id[i] for i in ids]

    first_ids = [c.id for c in chunks if c.id % 3]  # two thirds of the chunks
    first = LexicalIndex.build(first_ids, reader, embedder)
    assert sorted(read) == first_ids
    first.save(tmp_path, 1)
    first = LexicalIndex.load(tmp_path, 1, embedder)  # its counts as saved (memory-mapped)
    assert first.counts is not None and list(first.counts.ids) == first_ids
    # Next: a third of the old chunks removed (a document re-ingested), the rest of the corpus added.
    now = [c.id for c in chunks if c.id % 3 == 0 or c.id % 5]
    read.clear()
    second = LexicalIndex.build(now, reader, embedder, previous=first)
    assert sorted(read) == sorted(set(now) - set(first_ids))  # the new ones only
    scratch = LexicalIndex.of([by_id[i] for i in now], embedder)
    assert list(second.ids) == list(scratch.ids) == sorted(now)
    for name in ("indptr", "indices"):
        assert np.array_equal(second._retriever.scores[name], scratch._retriever.scores[name])
    np.testing.assert_allclose(second._retriever.scores["data"], scratch._retriever.scores["data"], rtol=1e-6)
    for question in ["What is mode collapse in a GAN?", "diffusion noise steps", "hallucination citations"]:
        assert second.search([question], 8) == scratch.search([question], 8)
    terms = ["gan", "diffusion", "the", "zzzunknown"]
    assert list(second.document_frequencies(terms)) == list(scratch.document_frequencies(terms))
    # Counts made with another tokenizer are not reused: everything is read again.
    read.clear()
    LexicalIndex.build(now, reader, _Renamed(embedder, "another tokenizer"), previous=first)
    assert sorted(read) == sorted(now)


def test_counts_not_reused_from_an_older_folder_and_reads_come_in_batches(embedder, tmp_path, monkeypatch):
    """A folder saved without counts (before they were kept), or with counts of another terms
    version, loads for searching but gives nothing to reuse: the next build reads every chunk.
    Chunks are read, and looked up in SQLite, in bounded batches."""
    import json

    from ragbot.retrieve import lexical

    chunks = _corpus_chunks()[:60]
    by_id = {c.id: c for c in chunks}
    batches: list[int] = []

    def reader(ids):
        batches.append(len(ids))
        return [by_id[i] for i in ids]

    monkeypatch.setattr(lexical, "READ_BATCH", 25)
    index = LexicalIndex.build(list(by_id), reader, embedder)
    assert batches == [25, 25, 10]
    index.save(tmp_path, 1)
    for name in lexical._COUNTS:
        (tmp_path / "1.bm25" / f"{name}.npy").unlink()
    old = LexicalIndex.load(tmp_path, 1, embedder)
    assert old is not None and old.counts is None and old.search(["generator"], 3) == index.search(["generator"], 3)
    batches.clear()
    LexicalIndex.build(list(by_id), reader, embedder, previous=old)
    assert sum(batches) == len(chunks)  # everything read again
    index.save(tmp_path, 2)
    meta = tmp_path / "2.bm25" / lexical._IDS
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "terms": lexical.TERMS_VERSION + 1}))
    assert LexicalIndex.load(tmp_path, 2, embedder).counts is None


def test_the_database_gives_more_chunks_than_it_binds_at_once(make_bot, docs, monkeypatch):
    from ragbot.storage import store

    bot = make_bot()
    bot.ingest([docs])
    ids = bot.store.chunk_ids().tolist()
    assert len(ids) > 2 and ids == sorted(ids)
    whole = bot.store.chunks(ids)
    monkeypatch.setattr(store, "_IN_LIMIT", 2)  # SQLite before 3.32 binds 999 at most
    assert bot.store.chunks(ids) == whole and sorted(whole) == ids


def test_hybrid_search_keeps_cosine_scores_and_follows_the_generation(make_bot, docs):
    bot = make_bot()
    bot.ingest([docs])
    generation = bot.store.generation()
    assert (bot.settings.index_dir / f"{generation}.bm25").is_dir()  # built with the write
    dense = bot.with_settings(retrieval="dense")
    dense._embedder = bot.embedder
    query = "Which volcano in Sicily is active?"
    hybrid_top = bot.search(query, k=3)
    dense_top = {p.chunk_id: p.score for p in dense.search(query, k=3)}
    assert Path(hybrid_top[0].source).name == "volcano.html"
    shared = [p for p in hybrid_top if p.chunk_id in dense_top]
    assert shared  # a passage's score is its cosine, whichever ranking found it
    for p in shared:
        assert p.score == pytest.approx(dense_top[p.chunk_id], abs=1e-5)
    words = bot.with_settings(retrieval="bm25")
    words._embedder = bot.embedder
    assert Path(words.search("croissants pastry", k=1)[0].source).name == "paris.md"
    # A new generation gets its own BM25 index, reading only the new document's chunks from the
    # database; a missing one is rebuilt from the database.
    (docs / "bananas.txt").write_text("Bananas are yellow. Plantains are cooked before eating.\n")
    before, read = set(bot.store.chunk_ids().tolist()), []
    real_chunks = bot.store.chunks
    bot.store.chunks = lambda ids: read.extend(ids) or real_chunks(ids)
    bot.ingest([docs])
    del bot.store.chunks
    assert bot.store.generation() != generation
    added = set(bot.store.chunk_ids().tolist()) - before
    assert added and set(read) == added
    # A write that changes nothing keeps the generation and the index in memory (no reload).
    held, generation = bot._lexical[1], bot.store.generation()
    bot.ingest([docs])
    assert bot.store.generation() == generation and bot._lexical[1] is held
    for path in bot.settings.index_dir.glob("[0-9]*.bm25"):
        import shutil

        shutil.rmtree(path)
    fresh = make_bot(bot.settings.data_dir)
    assert Path(fresh.search("plantains cooked", k=1)[0].source).name == "bananas.txt"
    assert (bot.settings.index_dir / f"{bot.store.generation()}.bm25").is_dir()


@pytest.mark.parametrize("question, source, k", [
    ("What is the C2PA standard for?", "risk-deepfakes.md", 1),  # dense alone: 3rd
    ("How is generative AI used by hospitals?", "generative-ai-applications-by-industry.pdf", 3),  # dense: not in 3
])
def test_hybrid_finds_what_dense_search_missed(corpus_bot, question, source, k):
    assert corpus_bot.settings.retrieval == "hybrid"
    top = corpus_bot.search(question, k=k)
    assert source in {Path(p.source).name for p in top}, [(Path(p.source).name, round(p.score, 3)) for p in top]


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_search_only_chosen_documents(corpus_bot, mode):
    """With `sources`, every ranking searches those documents alone, exactly: the best passage
    of the whole corpus is not found when its document is not chosen."""
    from conftest import CORPUS

    bot = corpus_bot.with_settings(retrieval=mode)
    question = "What is mode collapse in a GAN?"
    assert Path(bot.search(question, k=1)[0].source).name == "gans.md"
    chosen = [str(CORPUS / "vaes.md"), str(CORPUS / "diffusion-models.md")]
    found = bot.search(question, k=8, sources=chosen)
    assert found and {p.source for p in found} <= set(chosen)
    if mode != "bm25":  # BM25 finds only chunks sharing a word with the question
        assert len(found) == 8
    assert bot.search(question, k=5, sources=[]) == []
    assert bot.search(question, k=5, sources=["/not/stored.md"]) == []
    answer = bot.ask(question, record=False, sources=[])
    assert answer.refused and answer.refusal_reason == "low_retrieval_score" and not answer.passages
