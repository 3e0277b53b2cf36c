"""Retrieval on the shipped corpus: the right document must be in the top 3."""

import json
from pathlib import Path

import pytest

from conftest import DATA, RETRIEVAL_FLOOR

QA = [json.loads(line) for line in (DATA / "corpus_qa.jsonl").open()]
ANSWERABLE = [row for row in QA if row["answerable"]]


def test_right_document_in_top_3_for_nearly_every_question(corpus_bot):
    results = corpus_bot.batch_search([row["question"] for row in ANSWERABLE], k=3)
    misses = [
        row["question"] for row, passages in zip(ANSWERABLE, results)
        if row["gold_passage_ids"][0] not in {Path(p.source).name for p in passages}
    ]
    # 37 of 38 when this test was written (see docs/calibration.md); allow one more miss.
    assert len(misses) <= 2, misses


@pytest.mark.parametrize(
    ("question", "source"),
    [
        ("What is mode collapse?", "gans.md"),
        ("How does latent diffusion save compute?", "diffusion-models.md"),
        ("Which laws protect personal data used in training?", "risk-privacy.md"),
        ("How do banks use generative AI?", "generative-ai-applications-by-industry.pdf"),
        ("What is the difference between an LLM and generative AI?", "llms-vs-generative-ai.html"),
        ("How does predictive AI differ from generative AI?", "generative-vs-predictive-ai.txt"),
    ],
)
def test_reworded_questions_find_their_document_in_the_top_3(corpus_bot, question, source):
    top = corpus_bot.search(question, k=3)
    assert source in {Path(p.source).name for p in top}, [(Path(p.source).name, round(p.score, 3)) for p in top]


def test_off_topic_questions_score_below_the_threshold(corpus_bot):
    off_topic = [row["question"] for row in QA if row["category"] == "unanswerable"][:12]
    threshold = RETRIEVAL_FLOOR
    tops = [passages[0].score for passages in corpus_bot.batch_search(off_topic, k=1)]
    assert max(tops) < threshold, list(zip(off_topic, tops))
