"""BM25 next to FAISS: the fusion's arithmetic, the index per generation, and what it finds."""

import os
from pathlib import Path

import pytest

from ragbot.retrieve.lexical import LexicalIndex, chunk_text, fuse
from ragbot.storage.store import StoredChunk


def _chunk(i: int, text: str, title: str = "doc") -> StoredChunk:
    return StoredChunk(i, f"/docs/{title}.md", title, "", None, text)


def test_reciprocal_rank_fusion():
    # b is 2nd and 1st; a is 1st and absent; c is 3rd and 2nd.
    fused = fuse([[1, 2, 3], [2, 3]], weights=(1.0, 1.0), k=3)
    assert fused == [2, 3, 1]  # 1/62+1/61 > 1/63+1/62 > 1/61
    assert fuse([[1, 2, 3], [2, 3]], weights=(1.0, 0.0), k=3) == [1, 2, 3]  # weight 0: dense order


def test_index_finds_exact_words_and_survives_a_round_trip(tmp_path, embedder):
    pieces, name = embedder.word_pieces, embedder.name
    chunks = [_chunk(10, "The Frechet Inception Distance (FID) compares image statistics."),
              _chunk(11, "Bananas are yellow fruit grown in tropical regions."),
              _chunk(12, "Das Modell liest die Dokumente und antwortet mit Quellen.", title="de")]
    index = LexicalIndex.build(chunks, pieces, name)
    assert [c for c, _ in index.search(["FID"], 3)[0]] == [10]
    assert [c for c, _ in index.search(["the FIDs"], 3)[0]] == [10]  # word pieces: "fid" + "##s"
    assert [c for c, _ in index.search(["Dokumente Quellen"], 3)[0]] == [12]  # any language, no word lists
    assert index.search(["zzzunknown"], 3) == [[]]
    index.save(tmp_path, 4)
    assert LexicalIndex.load(tmp_path, 4, pieces, "another tokenizer") is None  # rebuilt, not misread
    again = LexicalIndex.load(tmp_path, 4, pieces, name)
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
    assert LexicalIndex.load(tmp_path, 4, pieces, name) is not None
    os.utime(tmp_path / ".stale-4.bm25", (1, 1))  # old for longer than the grace period now
    index.save(tmp_path, 7)
    assert not (tmp_path / "4.bm25").exists() and LexicalIndex.load(tmp_path, 4, pieces, name) is None
    assert not (tmp_path / ".stale-4.bm25").exists()
    assert (tmp_path / "5.bm25").is_dir() and (tmp_path / "6.bm25").is_dir()  # old only recently: kept
    assert LexicalIndex.load(tmp_path, 99, pieces, name) is None
    empty = LexicalIndex.build([], pieces, name)
    assert empty.search(["anything"], 3) == [[]] and list(empty.document_frequencies(["fid"])) == [0]
    empty.save(tmp_path, 8)
    assert len(LexicalIndex.load(tmp_path, 8, pieces, name)) == 0


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
    # A new generation gets its own BM25 index; a missing one is rebuilt from the database.
    (docs / "bananas.txt").write_text("Bananas are yellow. Plantains are cooked before eating.\n")
    bot.ingest([docs])
    assert bot.store.generation() != generation
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
