"""Metrics against hand-computed cases, the BEIR reader, and the eval commands end to end."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ragbot.answer.generation import REFUSAL
from ragbot.errors import RagbotError
from ragbot.evaluation.metrics import (
    best_of,
    load_beir,
    load_qa,
    mrr_at_k,
    ndcg_at_k,
    percentile,
    recall_at_k,
    reference_recall,
    rouge_l,
    token_f1,
)

from conftest import DATA, RETRIEVAL_FLOOR, ROOT


def test_ndcg_hand_computed():
    # Relevant: a (grade 2) and c (grade 1). Ranked: b, a, c.
    # DCG = 0/log2(2) + 2/log2(3) + 1/log2(4) = 1.26186 + 0.5; IDCG = 2/1 + 1/log2(3) = 2.63093
    ranked, relevant = ["b", "a", "c"], {"a": 2, "c": 1, "z": 0}
    expected = (2 / math.log2(3) + 1 / 2) / (2 + 1 / math.log2(3))
    assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(expected)
    assert ndcg_at_k(["a", "c"], relevant, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["b", "a", "c"], relevant, 1) == 0.0
    assert ndcg_at_k(["x"], {}, 10) == 0.0


def test_recall_and_mrr_hand_computed():
    relevant = {"a": 1, "c": 1, "z": 0}
    assert recall_at_k(["b", "a", "d"], relevant, 2) == 0.5
    assert recall_at_k(["b", "a", "c"], relevant, 3) == 1.0
    assert recall_at_k(["z"], relevant, 10) == 0.0  # grade 0 is not relevant
    assert mrr_at_k(["b", "d", "c"], relevant, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["b", "d", "c"], relevant, 2) == 0.0
    graded = {"a": 2, "c": 1}  # with min_grade 2 only "a" is found: the cited chunk, not its document
    assert recall_at_k(["c", "b"], graded, 2) == 0.5 and recall_at_k(["c", "b"], graded, 2, min_grade=2) == 0.0
    assert mrr_at_k(["c", "a"], graded, 10) == 1.0 and mrr_at_k(["c", "a"], graded, 10, min_grade=2) == 0.5


def test_rouge_l_and_token_f1_hand_computed():
    # LCS of "the cat sat on the mat" / "the cat is on the mat" = the cat on the mat (5 of 6 each)
    assert rouge_l("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l("mat the", "the mat") == pytest.approx(0.5)
    assert rouge_l("", "x") == 0.0
    # tokens: pred {in, 2014, by, goodfellow} ref {2014, goodfellow}: p = 2/4, r = 1 -> 2/3
    assert token_f1("In 2014 by Goodfellow [1].", "2014 Goodfellow") == pytest.approx(2 / 3)
    assert best_of(token_f1, "yes", ["no", "yes"]) == 1.0


def test_percentile_matches_linear_interpolation():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10, 20, 30, 40, 50], 95) == pytest.approx(48.0)


def _beir(tmp_path):
    (tmp_path / "qrels").mkdir(parents=True)
    (tmp_path / "corpus.part00.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "Eiffel", "text": "The Eiffel Tower was completed in 1889."}) + "\n")
    (tmp_path / "corpus.part01.jsonl").write_text(
        json.dumps({"_id": "d/2", "title": "Etna", "text": "Mount Etna is an active volcano in Sicily."}) + "\n"
        + json.dumps({"_id": "d3", "title": "", "text": "Bananas are yellow."}) + "\n")
    (tmp_path / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "When was the Eiffel Tower finished?"}) + "\n"
        + json.dumps({"_id": "q2", "text": "volcano in Italy"}) + "\n"
        + json.dumps({"_id": "q3", "text": "unjudged"}) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td/2\t1\n")
    return tmp_path


def test_load_beir_reads_split_corpus_and_judged_queries(tmp_path):
    data = load_beir(_beir(tmp_path))
    assert set(data.corpus) == {"d1", "d/2", "d3"}
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d/2": 1}}
    with pytest.raises(RagbotError, match="qrels/dev.tsv"):
        load_beir(tmp_path, split="dev")


def test_eval_retrieval_command(tmp_path):
    beir = _beir(tmp_path / "mini")
    data_dir, out = tmp_path / "data", tmp_path / "out"
    cmd = [sys.executable, "-m", "ragbot", "eval", "retrieval", "--beir", str(beir), "--data-dir", str(data_dir),
           "--out", str(out), "--json"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["queries"] == 2 and summary["ndcg@10"] == 1.0 and summary["mrr@10"] == 1.0
    assert summary["recall@10"] == 1.0
    rows = [json.loads(line) for line in (out / "per_query.jsonl").open()]
    assert [r["top"][0] for r in rows] == ["d1", "d/2"]
    assert (out / "worst.md").read_text().startswith("# Worst queries")
    # A second run reuses the index: nothing is re-embedded.
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "0 new or changed" in again.stderr and "unchanged 3" in again.stderr


def test_load_qa_checks_rows(tmp_path):
    rows = load_qa(DATA / "corpus_qa.jsonl")
    assert len(rows) == 52 and sum(not r["answerable"] for r in rows) == 14
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answers": "not a list"}\n')
    with pytest.raises(RagbotError, match="bad.jsonl:1"):
        load_qa(bad)
    bad.write_text('{"question": "q", "answers": [], "previous": ["a", 2]}\n')
    with pytest.raises(RagbotError, match="bad.jsonl:1: 'previous'"):
        load_qa(bad)


def test_eval_asks_a_rows_earlier_questions_as_turns_of_one_conversation(corpus_bot):
    """A row's "previous" may list several questions: each is asked in turn, so the row's question
    is searched as the chat page would search it (RagBot.next_turn): joined with what the last
    answered turn searched, and a refused turn left out."""
    from ragbot.bot import searched_before
    from ragbot.evaluation.metrics import earlier_questions, evaluate_answers

    assert searched_before([("a", False), ("a b", False), ("c", True)]) == ["a", "a b"]
    assert searched_before([("a", True), ("b", True)]) == ["b"]  # nothing answered: the last turn
    assert searched_before([]) == []
    assert earlier_questions({"previous": "a"}) == ["a"] and earlier_questions({"question": "q"}) == []
    earlier = ["What is a variational autoencoder?", "Who introduced it?"]
    turn = corpus_bot.next_turn(earlier, "How is it trained?")
    assert turn["retrieval_query"] == " ".join(earlier) + " How is it trained?"
    assert [m["content"] for m in turn["history"][::2]] == earlier
    after_refusal = corpus_bot.next_turn(["What is a GAN?", "What is the capital of Australia?"], "Who introduced them?")
    assert after_refusal["retrieval_query"] == "What is a GAN? Who introduced them?"
    rows = [{"previous": ["What is a GAN?", "What is the capital of Australia?"], "question": "Who introduced them?",
             "answerable": True, "answers": ["Ian Goodfellow and colleagues introduced GANs in 2014."]}]
    _, per_question = evaluate_answers(corpus_bot, rows)
    assert per_question[0]["answer"].startswith("Ian Goodfellow and colleagues introduced GANs"), per_question[0]


def test_a_later_turn_is_ordered_by_the_last_question_its_query_was_joined_with(corpus_bot):
    """A third turn is searched with its subject's whole chain of questions, and ordered by the
    last of them and the turn (bot.ordering_query): "How is it trained?" after "What is a
    variational autoencoder?" and "Who introduced it?" quoted the VAE's definition, which the
    chain's first question asks for; it quotes how a VAE is trained (docs/benchmarks.md §37)."""
    from ragbot.bot import ordering_query

    user = lambda text: {"role": "user", "content": text}  # noqa: E731
    said = {"role": "assistant", "content": "Said [1]."}
    history = [user("What is a VAE?"), said, user("Who  introduced it?"), said]
    chain = "What is a VAE? Who introduced it? How is it trained?"
    assert ordering_query(chain, "How is it trained?", history) == "Who introduced it? How is it trained?"
    # The turns the query was not joined with (a refused one, one a client sent blank) are passed
    # over, within the two exchanges the callers pass.
    refused = [user("What is the capital of Australia?"), {"role": "assistant", "content": REFUSAL}]
    assert ordering_query(chain, "How is it trained?", history[2:] + refused) == "Who introduced it? How is it trained?"
    assert ordering_query(chain, "How is it trained?", history[2:] + [user("  "), said]) \
        == "Who introduced it? How is it trained?"
    # A second turn's query is already the short one; a turn searched alone, or a query that ends
    # with no question of the history, is ordered by the query itself.
    second = "What is a VAE? How is it trained?"
    assert ordering_query(second, "How is it trained?", history[:2]) == second
    assert ordering_query("How is it trained?", "How is it trained?", history) == "How is it trained?"
    assert ordering_query(chain, "How is it trained?", [user("Unrelated?"), said]) == chain

    turn = corpus_bot.next_turn(["What is a variational autoencoder?", "Who introduced it?"], "How is it trained?")
    answer = corpus_bot.ask("How is it trained?", record=False, **turn)
    assert answer.answer.startswith("A VAE is trained to maximise the evidence lower bound (ELBO)"), answer.answer


def test_near_miss_questions_are_on_topic(corpus_bot):
    """corpus_qa_near_miss.jsonl: unanswerable questions about the corpus's own subjects. Unlike
    the off-topic ones in corpus_qa.jsonl, retrieval mostly lets them through to the model."""
    rows = load_qa(DATA / "corpus_qa_near_miss.jsonl")
    assert len(rows) == 18 and not any(r["answerable"] for r in rows)
    # A property of the set as written: measured, like the floor, by the embedder's ranking alone
    # (hybrid search may put a passage that shares rarer words first, with a lower cosine).
    dense = corpus_bot.with_settings(retrieval="dense")
    top = [passages[0].score for passages in dense.batch_search([r["question"] for r in rows], k=1)]
    assert sum(score >= RETRIEVAL_FLOOR for score in top) >= 14


@pytest.mark.parametrize("name, sizes, found, past_retrieval", [
    # Written after the check's threshold was set on the two sets above.
    ("corpus_qa_blind.jsonl", (24, 12), 24, 12),
    # Written after the check's features changed, on documents the first blind set left alone;
    # four near misses are declined by retrieval already, and one answer is in a document
    # retrieval ranks below the GAN page.
    ("corpus_qa_blind2.jsonl", (30, 14), 29, 10),
    # Written after the check's word rules changed. The game-developer answer named is in the
    # industry report; retrieval finds the benefits page, which says much the same.
    ("corpus_qa_blind3.jsonl", (26, 12), 25, 9),
    # Written before the answer-type check. "What do successful projects have in common?" is
    # answered by the industry report's closing lessons; retrieval ranks the overview pages first.
    ("corpus_qa_blind4.jsonl", (26, 13), 25, 11),
    # Written after the answer-type check. The acronym "RoPE" alone finds nothing close: the
    # embedder splits it into pieces, and the transformer page spells it out.
    ("corpus_qa_blind5.jsonl", (24, 13), 23, 13),
    # Written after the check for invented numbers.
    ("corpus_qa_blind6.jsonl", (24, 13), 24, 12),
])
def test_blind_sets_are_sound(corpus_bot, name, sizes, found, past_retrieval):
    """Each answerable question names a shipped document, which retrieval finds (for all but the
    noted few); near misses mostly get past the retrieval threshold, so only the model or the
    check declines them."""
    rows = load_qa(DATA / name)
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    assert (len(answerable), len(unanswerable)) == sizes
    assert all((ROOT / "corpus" / r["gold_passage_ids"][0]).is_file() for r in answerable)
    retrieved = corpus_bot.batch_search([r["question"] for r in answerable], k=corpus_bot.settings.top_k)
    hits = [row["gold_passage_ids"][0] in {Path(p.source).name for p in passages}
            for row, passages in zip(answerable, retrieved)]
    assert sum(hits) >= found
    top = corpus_bot.batch_search([r["question"] for r in unanswerable], k=1)
    assert sum(passages[0].score >= RETRIEVAL_FLOOR for passages in top) >= past_retrieval


def test_eval_answers_on_given_passages_and_retrieval(corpus_bot):
    from ragbot.evaluation.metrics import evaluate_answers

    rows = [
        {"question": "Who introduced the variational autoencoder?",
         "answers": ["Diederik Kingma and Max Welling introduced the VAE in 2013."],
         "answerable": True, "gold_passage_ids": ["vaes.md"]},
        {"question": "What is the capital of Australia?", "answers": [], "answerable": False},
        {"question": "When was the Eiffel Tower completed?", "answers": ["In 1889."], "answerable": True,
         "passages": [{"id": "eiffel", "text": "The Eiffel Tower in Paris was completed in 1889."}],
         "gold_passage_ids": ["eiffel"]},
        {"question": "When was the Eiffel Tower completed?", "answers": ["In 1889."], "answerable": True,
         "passages": [{"id": "bananas", "text": "Bananas are yellow when they are ripe."}]},
    ]
    summary, per_question = evaluate_answers(corpus_bot, rows)
    assert summary["n"] == 4
    assert summary["refusal_rate_unanswerable"] == 1.0
    assert per_question[1]["refusal_reason"] == "no_evidence"
    first = per_question[0]
    assert "Kingma" in first["answer"]
    assert first["rougeL"] == pytest.approx(rouge_l(first["answer"], rows[0]["answers"][0]))
    assert first["rougeL"] > 0.1
    assert first["reference_recall"] == pytest.approx(reference_recall(first["answer"], rows[0]["answers"][0]))
    assert first["reference_recall"] > 0.5  # the reply names Kingma, Welling, the VAE and 2013
    assert per_question[1]["reference_recall"] is None  # judged only where there is a reference
    assert per_question[3]["refused"] and per_question[3]["reference_recall"] == 0.0
    assert first["citation_accuracy"] == 1.0
    assert 0.0 <= summary["groundedness"] <= 1.0
    assert summary["reference_recall"] == pytest.approx((first["reference_recall"] + per_question[2]["reference_recall"]) / 3)
    for key in ("rougeL", "token_f1", "refusal_rate_answerable", "citation_accuracy", "latency_ms_p50", "latency_ms_p95"):
        assert summary[key] is not None
    # What `ragbot eval answers` prints: intervals beside their scores, no Python reprs.
    from ragbot.interfaces.cli import _summary_lines

    lines = _summary_lines({**summary, "adapter": None})
    rouge = next(line for line in lines if line.startswith("rougeL "))
    low, high = summary["ci95"]["rougeL"]
    assert rouge.split() == ["rougeL", f"{summary['rougeL']:.4f}", f"[{low:.4f},", f"{high:.4f}]"]
    assert "kind (none)                  4 questions" in "\n".join(lines)
    assert not any(mark in line for line in lines for mark in ("{", "None", "ci95"))


def test_eval_retrieval_on_liked_answers(make_bot, docs, tmp_path, capsys):
    """`ragbot eval retrieval --feedback` judges search by the user's liked answers: each such
    question's relevant chunks are the ones its answer cited; a correction judges by the
    passages it cites. A thumbs-down, a liked refusal (it cites nothing), a correction citing
    nothing and a chunk no longer stored judge nothing; a question liked twice counts once."""
    from ragbot.evaluation.metrics import feedback_judgements
    from ragbot.interfaces import cli

    bot = make_bot()
    bot.ingest([docs])
    log = bot.feedback
    liked = [bot.ask(q) for q in ("Where is the Eiffel Tower?", "Which volcano is one of the most active?",
                                  "Where is the Eiffel Tower?")]
    corrected, disliked = bot.ask("What are croissants?"), bot.ask("What colour are bananas?")
    uncited = bot.ask("Where is Mount Etna?")
    refused = bot.ask("Who won the 1998 football world cup?")
    assert not any(a.refused for a in liked + [corrected, disliked, uncited]) and refused.refused
    for answer in liked + [refused]:
        log.set_feedback(answer.id, 1)
    log.set_feedback(corrected.id, 1, correction="A French pastry of layered dough [1] [9].")  # no passage 9
    log.set_feedback(uncited.id, -1, correction="In Sicily.")
    log.set_feedback(disliked.id, -1)
    assert log.corrected_passages() == [{"answer_id": corrected.id, "question": corrected.question,
                                         "chunk_ids": [corrected.passages[0].chunk_id]}]

    rows = log.liked_passages()
    assert [r["answer_id"] for r in rows] == [a.id for a in liked]
    assert all(r["chunk_ids"] == [c.chunk_id for c in a.citations] and r["chunk_ids"] for r, a in zip(rows, liked))
    stored = set(bot.store.chunk_ids())
    data = feedback_judgements(rows, stored)
    assert sorted(data.qrels) == sorted([liked[0].id, liked[1].id])  # the repeated question once
    assert feedback_judgements(rows, stored - set(rows[1]["chunk_ids"])).qrels.keys() == {liked[0].id}

    args = cli.build_parser().parse_args(["eval", "retrieval", "--feedback", "--data-dir", str(bot.settings.data_dir),
                                          "--out", str(tmp_path / "out"), "--json", "--modes", "dense,bm25"])
    assert cli.cmd_eval(bot, args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["queries"] == 3 and summary["mrr@10"] == 1.0  # each cited chunk comes first again
    assert set(summary["modes"]) == {"dense", "bm25", "hybrid"}
    per_query = [json.loads(line) for line in (tmp_path / "out" / "per_query.jsonl").open()]
    assert {q["relevant"][0] for q in per_query} == {str(c) for r in rows[:2] for c in r["chunk_ids"]} | \
        {str(corrected.passages[0].chunk_id)}
    # Every question's cited chunks are the first it finds again (what nDCG@10 == 1.0 said when
    # only the cited chunks were judged).
    assert all(set(q["top"][:len(q["relevant"])]) == set(q["relevant"]) for q in per_query)

    # It judges as the `tune --retriever` gate does: the other chunks of a cited document count
    # for nDCG@10 (below the cited chunk), so each question scores what the gate would score.
    from ragbot.evaluation.metrics import graded_judgements
    from ragbot.learn.retriever import ndcg_per_question

    cited = {q["query"]: [int(c) for c in q["relevant"]] for q in per_query}
    judged = graded_judgements(bot.store, cited)
    assert any(len(grades) > len(cited[q]) for q, grades in judged.items()), "a cited document of two chunks"
    gate = dict(zip(judged, ndcg_per_question(bot, judged, None)))
    assert {q["query"]: q["ndcg@10"] for q in per_query} == pytest.approx(gate, abs=1e-9)


def test_eval_retrieval_on_feedback_without_likes_says_what_to_do(make_bot, docs, tmp_path):
    from ragbot.interfaces import cli

    bot = make_bot()
    bot.ingest([docs])
    args = cli.build_parser().parse_args(["eval", "retrieval", "--feedback", "--data-dir", str(bot.settings.data_dir)])
    with pytest.raises(RagbotError, match="no liked answers.*thumbs-up"):
        cli.cmd_eval(bot, args)


def test_retrieval_latency_leaves_out_the_first_search_which_loads_the_models():
    """The first mode compared was charged the embedder's and the indexes' loading (helper-83's
    drive: dense 582 ms a query, bm25 and hybrid 16): one search, untimed, comes first."""
    from ragbot.evaluation.metrics import BeirData, evaluate_retrieval
    from ragbot.types import Passage

    class Bot:
        def __init__(self):
            self.calls = []

        def batch_search(self, queries, k):
            self.calls.append(list(queries))
            return [[Passage(chunk_id=1, source="/d/a.md", title="a", section="", page=None, text="t", score=0.5,
                             rank=1)] for _ in queries]

    bot = Bot()
    data = BeirData(corpus={}, queries={"q1": "one", "q2": "two"}, qrels={"q1": {"a": 1}, "q2": {"a": 1}})
    result = evaluate_retrieval(bot, data)
    assert bot.calls == [["one"], ["one", "two"]]
    assert result.summary["queries"] == 2
