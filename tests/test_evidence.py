"""Evidence-first answering: sentences of the shown passages scored by the real embedder, the best
chosen and quoted with its citation, and refusal by the threshold, on the shipped corpus."""

from __future__ import annotations

import numpy as np

from ragbot.answer import REFUSAL
from ragbot.evidence import Evidence, EmbeddingScorer, candidates, compose, rank
from ragbot.types import Passage


def _passage(rank_: int, text: str) -> Passage:
    return Passage(chunk_id=rank_, source=f"/d/{rank_}.md", title="T", section="", page=None, text=text,
                   score=0.5, rank=rank_)


class _ByLength:
    name = "length"

    def score(self, question, sentences):
        return np.array([len(s) / 100 for s in sentences])


def test_candidates_are_every_prose_sentence_numbered_by_passage():
    passages = [_passage(1, "# Heading\n\nFirst sentence here. Too short.\n\n- A list item with words."),
                _passage(2, "Another passage sentence. Ok.")]
    assert candidates(passages) == [(1, "First sentence here."), (1, "A list item with words."),
                                    (2, "Another passage sentence.")]


def test_rank_orders_by_score_and_compose_cites_in_passage_order():
    passages = [_passage(1, "A short one here. A much longer sentence than the others."),
                _passage(2, "The longest sentence of them all, by quite a margin indeed.")]
    ranked = rank("q", passages, _ByLength())
    assert [e.n for e in ranked] == [2, 1, 1]
    assert ranked[0] == Evidence(n=2, text="The longest sentence of them all, by quite a margin indeed.",
                                 score=ranked[0].score, position=2)
    # Two sentences read in the order they stand in the passages, each citing its own.
    assert compose(ranked[:2]) == (
        "A much longer sentence than the others [1]. The longest sentence of them all, by quite a margin indeed [2].")


def test_the_defining_sentence_answers_what_is_x(embedder):
    passages = [_passage(1, "Before answering, the system searches the documents. Retrieval-augmented generation "
                            "connects a language model to a collection of documents. It was described in 2020."),
                _passage(2, "Diffusion models learn to reverse a gradual noising process.")]
    best = rank("What is retrieval-augmented generation?", passages, EmbeddingScorer(embedder))[0]
    assert best.n == 1 and best.text.startswith("Retrieval-augmented generation connects")


def test_the_bot_answers_with_the_defining_sentence_and_cites_it(corpus_bot):
    answer = corpus_bot.ask("What is retrieval-augmented generation?", record=False)
    assert not answer.refused
    assert answer.answer.startswith("Retrieval-augmented generation connects a language model to a collection of documents")
    assert [c.n for c in answer.citations] == [1] and "retrieval-augmented" in answer.citations[0].source
    assert answer.evidence_score >= corpus_bot.answerability_check().threshold
    assert answer.prompt == "" and answer.tokens == {"prompt": 0, "completion": 0}  # no model saw anything


def test_below_the_threshold_it_refuses_and_says_why(corpus_bot):
    strict = corpus_bot.with_settings(evidence_threshold=0.99)
    answer = strict.ask("What is retrieval-augmented generation?", record=False)
    assert answer.refused and answer.answer == REFUSAL and answer.refusal_reason == "no_evidence"
    assert answer.evidence_score < 0.99
    far = corpus_bot.ask("What is the capital of Peru?", record=False)
    assert far.refused and far.refusal_reason == "no_evidence"
    floor = corpus_bot.with_settings(min_score=0.5).ask("What is the capital of Peru?", record=False)
    assert floor.refused and floor.refusal_reason == "low_retrieval_score" and floor.evidence_score is None
