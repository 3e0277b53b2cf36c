"""A tuned embedder ranks passages while the shipped one scores them (`ragbot tune --retriever`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import CORPUS, DATA
from ragbot.errors import RagbotError
from ragbot.interfaces.cli import main
from ragbot.learn.registry import EmbedderRegistry
from ragbot.evaluation.metrics import graded_judgements
from ragbot.learn.retriever import RetrieverConfig, RetrieverTuneError, decide, ndcg_per_question, tune_retriever
from ragbot.storage.doctor import doctor
from ragbot.types import Answer, Citation

QUESTIONS = ["Where is the Eiffel Tower?", "Which volcano is one of the most active?", "What are croissants?",
             "What colour are bananas?"]


def _save_other_embedder(bot, folder: Path, seed: int = 0) -> str:
    """The shipped embedder with noise in its word embeddings, saved as the next tuned version:
    it ranks differently, as a tuned one would, without minutes of training."""
    import torch
    from sentence_transformers import SentenceTransformer

    from ragbot.models import resolve_embedder

    model = SentenceTransformer(resolve_embedder(bot.settings), device="cpu", local_files_only=True)
    weights = model[0].auto_model.embeddings.word_embeddings.weight
    with torch.no_grad():
        weights += torch.randn(weights.shape, generator=torch.Generator().manual_seed(seed)) * weights.std() * 2
    model.save_pretrained(str(folder))
    return EmbedderRegistry(bot.settings.embedders_dir).save(folder, {"base_model": "test"}).version


def _dense_order(bot, question: str, version: str | None) -> list[int]:
    """Every chunk id ordered by the cosine of `version`'s stored vectors with its query vector."""
    dim = bot.embedder.dim
    if version is None:
        ids, vectors = bot.store.all_vectors(dim)
        query = bot.embedder.encode([question])[0]
    else:
        ids, vectors = bot.store.ranking_vectors(version, dim)
        query = bot.tuned_embedder(version).encode([question])[0]
    return [int(i) for i in ids[np.argsort(-(vectors @ query), kind="stable")]]


def test_a_tuned_embedder_orders_passages_and_the_shipped_one_scores_them(make_bot, docs, tmp_path):
    bot = make_bot(retrieval="dense")
    bot.ingest([docs])
    shipped = {q: [(p.chunk_id, p.score) for p in bot.search(q, k=4)] for q in QUESTIONS}
    # Another process on the data dir, holding the shipped index already (a chat server).
    other = make_bot(bot.settings.data_dir, retrieval="dense")
    assert [p.chunk_id for p in other.search(QUESTIONS[0], k=4)] == [c for c, _ in shipped[QUESTIONS[0]]]
    version = _save_other_embedder(bot, tmp_path / "other")

    assert bot.rank_with(version) == version
    assert bot.store.ranking_embedder() == version and bot.status()["ranking_embedder"] == version
    assert not len(bot.store.chunks_without_ranking_vectors(version))
    reordered = compared = 0
    for question in QUESTIONS:
        found = bot.search(question, k=4)
        assert [p.chunk_id for p in found] == _dense_order(bot, question, version)[:4]  # ranked by the tuned vectors
        before = dict(shipped[question])
        for p in found:  # scored as before: the shipped embedder's cosine
            if p.chunk_id in before:
                assert p.score == pytest.approx(before[p.chunk_id], abs=1e-5)
                compared += 1
        reordered += [p.chunk_id for p in found] != [c for c, _ in shipped[question]]
    assert reordered and compared >= len(QUESTIONS)  # the test can tell the two apart, and compared scores
    # The other process notices the switch at its next search.
    assert [p.chunk_id for p in other.search(QUESTIONS[0], k=4)] == _dense_order(bot, QUESTIONS[0], version)[:4]
    # Hybrid search and a search within chosen documents rank with it too.
    hybrid = make_bot(bot.settings.data_dir, retrieval="hybrid")
    found = hybrid.search(QUESTIONS[1], k=4)
    query = bot.embedder.encode([QUESTIONS[1]])[0]
    ids, vectors = bot.store.all_vectors(bot.embedder.dim)
    cosines = dict(zip(ids.tolist(), vectors @ query))
    assert found and all(p.score == pytest.approx(cosines[p.chunk_id], abs=1e-5) for p in found)
    within = [d.source for d in bot.store.documents()][:1]
    assert {p.source for p in bot.search(QUESTIONS[0], k=4, sources=within)} <= set(within)

    # While it ranks, an ingest embeds every new chunk twice (the vectors it stores are the ones
    # the tuned embedder gives), and a remove takes both vectors away.
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "tea.md").write_text("# Tea\n\nGreen tea is made from leaves that are not oxidised.\n", encoding="utf-8")
    bot.ingest([extra])
    assert not len(bot.store.chunks_without_ranking_vectors(version))
    assert bot.search("How is green tea made?", k=1)[0].source.endswith("tea.md")
    # Edited, it keeps both vectors of its unchanged chunk and embeds the new one twice; the
    # count of chunks embedded moves through both passes and ends at the chunks stored.
    kept_ids = bot.store.chunk_ids_of([str(extra / "tea.md")])
    kept = bot.store.ranking_vectors_of(version, kept_ids, bot.embedder.dim)
    (extra / "tea.md").write_text("# Tea\n\nGreen tea is made from leaves that are not oxidised.\n\n"
                                  "## Black tea\n\nBlack tea is made from leaves left to oxidise for hours.\n",
                                  encoding="utf-8")
    calls = []
    report = bot.ingest([extra], progress=lambda *call: calls.append(call))
    assert (report.chunks_added, report.chunks_kept) == (2, 1) and calls[-1] == (1, 1, 2)
    assert [chunks for _, _, chunks in calls] == sorted(chunks for _, _, chunks in calls)
    assert not len(bot.store.chunks_without_ranking_vectors(version))
    now = bot.store.ranking_vectors_of(version, bot.store.chunk_ids_of([str(extra / "tea.md")]), bot.embedder.dim)
    assert set(kept) <= set(now) and all(np.array_equal(now[i], kept[i]) for i in kept)  # under its id
    index = bot._current_index()
    assert sorted(index.ids().tolist()) == bot.store.chunk_ids().tolist()
    ids = bot.store.chunk_ids_of([str(extra / "tea.md")])
    assert np.allclose(index.vectors(ids), np.stack([now[int(i)] for i in ids]))  # the tuned vectors
    assert bot.search("How is black tea made?", k=1)[0].section == "Tea > Black tea"
    ids, stored = bot.store.ranking_vectors(version, bot.embedder.dim)
    with bot.store.transaction() as db:
        db.execute("DELETE FROM ranking_vectors WHERE embedder = ?", (version,))
    assert bot.embed_for_ranking(version) == len(ids)
    assert np.allclose(bot.store.ranking_vectors(version, bot.embedder.dim)[1], stored, atol=1e-4)
    bot.remove([extra])
    assert len(bot.store.ranking_vectors(version, bot.embedder.dim)[0]) == bot.store.counts()[1]

    # A lost index file is rebuilt from the tuned vectors, in the tuned embedder's folder.
    generation = bot.store.generation()
    (bot.index_dir_of(version) / f"{generation}.faiss").unlink()
    fresh = make_bot(bot.settings.data_dir, retrieval="dense")
    assert [p.chunk_id for p in fresh.search(QUESTIONS[2], k=4)] == _dense_order(bot, QUESTIONS[2], version)[:4]
    assert (bot.index_dir_of(version) / f"{generation}.faiss").is_file()
    assert not (bot.settings.index_dir / f"{generation}.faiss").exists()

    # A second tuned embedder: the first is its rollback target, whose vectors are kept, so going
    # back to it embeds nothing.
    second = _save_other_embedder(bot, tmp_path / "second", seed=1)
    bot.rank_with(second)
    assert bot.store.ranking_history() == [None, version]
    assert not len(bot.store.chunks_without_ranking_vectors(version))
    assert bot.rollback_ranking() == version
    assert len(bot.store.chunks_without_ranking_vectors(second)) == bot.store.counts()[1]  # no longer kept
    assert not bot.settings.index_dir.joinpath(f"embedder-{second}").exists()

    # Rollback again: the shipped embedder ranks, exactly as before.
    assert bot.rollback_ranking() is None
    for question in QUESTIONS:
        assert [(p.chunk_id, pytest.approx(p.score, abs=1e-5)) for p in bot.search(question, k=4)] == shipped[question]
    with pytest.raises(RagbotError, match="nothing to roll back"):
        bot.rollback_ranking()


def test_an_unknown_tuned_embedder_is_refused_before_any_work(make_bot, docs):
    bot = make_bot()
    bot.ingest([docs])
    with pytest.raises(RagbotError, match="no embedder 'v3'"):
        bot.rank_with("v3")
    assert bot.store.ranking_embedder() is None


def test_doctor_makes_the_shipped_embedder_rank_when_the_tuned_one_is_gone(make_bot, docs, tmp_path):
    import shutil

    bot = make_bot()
    bot.ingest([docs])
    version = _save_other_embedder(bot, tmp_path / "other")
    bot.rank_with(version)
    shutil.rmtree(bot.settings.embedders_dir / version)
    statuses = {f.check: f.status for f in doctor(bot.settings.data_dir).findings}
    assert statuses["ranking embedder"] == "problem"
    assert any(name.startswith("BM25 index") for name in statuses)  # the other checks still ran
    repaired = {f.check: f.status for f in doctor(bot.settings.data_dir, repair=True).findings}
    assert repaired["ranking embedder"] == "repaired"
    assert bot.store.ranking_embedder() is None and version not in bot.store.ranking_history()
    assert doctor(bot.settings.data_dir).clean


def test_doctor_finds_and_embeds_chunks_a_tuned_embedder_has_no_vector_of(make_bot, docs, tmp_path):
    bot = make_bot()
    bot.ingest([docs])
    version = _save_other_embedder(bot, tmp_path / "other")
    bot.rank_with(version)
    with bot.store.transaction() as db:
        db.execute("DELETE FROM ranking_vectors WHERE chunk_id = (SELECT MIN(id) FROM chunks)")
    statuses = {f.check: f.status for f in doctor(bot.settings.data_dir).findings}
    assert statuses["ranking embedder"] == "problem"
    repaired = {f.check: f.status for f in doctor(bot.settings.data_dir, repair=True).findings}
    assert repaired["ranking embedder"] == "repaired"
    assert not len(bot.store.chunks_without_ranking_vectors(version))


def test_the_gate_decides_by_the_interval_of_the_paired_gain():
    better = decide([0.5] * 30, [0.5 + 0.02 * (i % 3 + 1) for i in range(30)])
    assert better["promote"] and better["gain"]["ci95"][0] > 0
    mixed = decide([0.5] * 30, [0.6 if i % 2 else 0.45 for i in range(30)])
    assert not mixed["promote"] and "not above zero" in mixed["reason"]
    assert not decide([0.0] * 10, [1.0] * 10)["promote"]  # every question better, but only ten


def test_the_gate_grades_the_rest_of_a_cited_document_below_the_cited_chunk(make_bot, docs):
    bot = make_bot()
    bot.ingest([docs])
    chunks = bot.store.all_chunks()
    paris = [c.id for c in chunks if c.source.endswith("paris.md")]
    assert len(paris) >= 2, "the judgement needs a document of two chunks"
    cited, sibling = paris[0], paris[1:]
    judged = graded_judgements(bot.store, {"When was the Eiffel Tower completed?": [cited]})
    # The cited chunk at 2, the rest of its document at 1, other documents not at all.
    assert judged == {"When was the Eiffel Tower completed?": {str(cited): 2} | {str(c): 1 for c in sibling}}
    # A chunk no longer stored (re-ingested) judges only itself.
    assert graded_judgements(bot.store, {"q": [10**6]}) == {"q": {str(10**6): 2}}


def _like_dev_questions(bot) -> int:
    """Every answerable development question answered with the chunk of its gold document that
    search ranks first, and liked: a user who voted a lot."""
    rows = [json.loads(line) for path in sorted(DATA.glob("corpus_qa*.jsonl")) for line in open(path) if line.strip()]
    rows = [r for r in rows if r.get("answerable") and r.get("gold_passage_ids")]
    liked = 0
    for row, passages in zip(rows, bot.batch_search([r["question"] for r in rows], k=20)):
        gold = next((p for p in passages if Path(p.source).name in row["gold_passage_ids"]), None)
        if gold is None:
            continue
        answer = Answer(question=row["question"], answer=gold.text, refused=False, passages=passages,
                        citations=[Citation(n=gold.rank, source=gold.source, page=gold.page, chunk_id=gold.chunk_id,
                                            score=gold.score, text=gold.text)],
                        prompt="", raw_reply="", model="test", adapter=None, timings_ms={}, tokens={})
        bot.feedback.record_answer(answer)
        bot.feedback.set_feedback(answer.id, 1)
        liked += 1
    return liked


def test_tune_retriever_trains_gates_and_keeps_what_the_gate_says(make_bot, capsys):
    bot = make_bot()
    with pytest.raises(RetrieverTuneError, match="needs at least 40 different questions.*holds 0"):
        tune_retriever(bot, RetrieverConfig())
    bot.ingest([CORPUS])
    assert _like_dev_questions(bot) >= 100

    result = tune_retriever(bot, RetrieverConfig(max_steps=2, activate="never"), log=lambda line: None)
    info = EmbedderRegistry(bot.settings.embedders_dir).get(result.version)
    assert info.metadata["training"]["steps"] == 2 and info.metadata["gate"] == result.gate
    assert not result.activated and bot.store.ranking_embedder() is None
    # A candidate not made to rank keeps no vectors.
    assert len(bot.store.chunks_without_ranking_vectors(result.version)) == bot.store.counts()[1]
    # The gate's numbers are the held-out questions' searches, both ways, and its decision the
    # rule applied to them.
    from ragbot.learn.retriever import split_feedback

    _, heldout = split_feedback(bot, RetrieverConfig())
    assert result.gate["questions"] == len(heldout) >= 20
    judged = graded_judgements(bot.store, heldout)
    shipped = ndcg_per_question(bot, judged, None)
    assert sum(shipped) / len(shipped) == pytest.approx(result.gate["active_ndcg@10"], abs=1e-9)
    gate = result.gate
    assert gate["gain"]["mean"] == pytest.approx(gate["candidate_ndcg@10"] - gate["active_ndcg@10"], abs=1e-9)
    assert gate["promote"] == (gate["gain"]["ci95"][0] > 0)

    from ragbot.evaluation.metrics import compare_retrieval, feedback_judgements

    liked = feedback_judgements(bot.feedback.liked_passages(), set(bot.store.chunk_ids().tolist()))
    before = compare_retrieval(bot, liked, ["hybrid"])["hybrid"].per_query
    forced = tune_retriever(bot, RetrieverConfig(max_steps=2, activate="always"), log=lambda line: None)
    assert forced.activated and bot.store.ranking_embedder() == forced.version
    # `eval retrieval` can still search as before, beside the tuned ranking.
    after = compare_retrieval(bot, liked, ["hybrid", "hybrid@shipped"])
    assert [r["top"] for r in after["hybrid@shipped"].per_query] == [r["top"] for r in before]
    # Judged again now that it ranks, the candidate scores what the gate measured.
    measured = ndcg_per_question(bot, judged, forced.version)
    assert sum(measured) / len(measured) == pytest.approx(forced.gate["candidate_ndcg@10"], abs=1e-9)

    assert main(["model", "list", "--retriever", "--data-dir", str(bot.settings.data_dir)]) == 0
    listed = capsys.readouterr().out
    assert f"* {forced.version}" in listed and result.version in listed
    assert main(["model", "rollback", "--retriever", "--data-dir", str(bot.settings.data_dir)]) == 0
    assert "ranking passages: the shipped embedder" in capsys.readouterr().out
    assert bot.store.ranking_embedder() is None


def test_tune_retriever_refuses_generator_options_and_bm25(tmp_path, capsys):
    assert main(["tune", "--retriever", "--quick", "--data-dir", str(tmp_path / "d")]) == 2
    assert "--quick tune the generator and do not apply with --retriever" in capsys.readouterr().err
    assert main(["tune", "--retriever", "--model-questions", "0", "--data-dir", str(tmp_path / "d")]) == 2
    assert "--model-questions tune the generator" in capsys.readouterr().err
    (tmp_path / "d" / "config.toml").write_text('retrieval = "bm25"\n')
    assert main(["tune", "--retriever", "--data-dir", str(tmp_path / "d")]) == 2
    assert "ranks without the embedder" in capsys.readouterr().err
