"""Exploration behind docs/benchmarks.md §28: should a follow-up's sentence be chosen within the
passage its joined question found?

A follow-up ("Who introduced it?" after "What is retrieval-augmented generation?") is searched
joined to the question before it, and its sentences are ranked by the mean of the coverage for
the joined question and for the turn as asked (§15). The joined question's words are mostly the
first question's, so the sentence that answered it tends to win again: the definition of RAG
(mean 0.401) beats "The technique was described by Lewis and colleagues…" (0.248), which the
turn alone prefers among that passage's sentences. Ranking by the turn alone over every shown
passage was tried in §15 and lost badly on follow-ups answered by the same sentence ("Where did
they work?" alone matches any sentence with a place). Here the turn ranks only the sentences
of one passage, the one the joined question points at, so the subject comes from the joined
question and the fact from the turn. No words are read.

Variants (a follow-up's query is joined only when `RagBot.standalone_query` joins it; a turn
searched alone is ranked by the mean, as shipped, by every variant):
- "mean (before §28)": the mean over all shown sentences;
- "passage: mean": the same mean, within the passage of the sentence the joined question's
  cosine (the answer check's score) rates best;
- "passage: turn": the turn's coverage alone, within that passage;
- "passage: turn cosine": the turn's sentence cosine alone, within that passage;
- "passage by ranker: turn": the turn's coverage within the passage of the sentence the mean
  ranks first;
- "product" over all passages; "passage by ranker: product", the product within that passage;
  "passage by ranker: ranks", the sum of the two ranks within it;
- "shipped (follow_up_order)": what ragbot does since §28, the product within that passage for
  the sentences whose product is above 0, then the rest by the mean (here with no earlier answer
  given: what the conversation quoted goes after the others since §35).

Development sets only (tests/data/corpus_qa*.jsonl answerable rows and
bench/data/follow_ups*_dev.jsonl); ROUGE-L of the sentence ranked first, paired differences to
the mean. Never the frozen set.

    python bench/explore_follow_up_passage.py DATA_DIR [QA_FILES_TO_LOG,...]
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import corpus_bot_and_development_rows, first_sentence_rouge, print_paired  # noqa: E402
from ragbot.answer.evidence import candidates, follow_up_order  # noqa: E402

bot, single, follow = corpus_bot_and_development_rows(sys.argv[1], sys.argv[2].split(",") if len(sys.argv) > 2 else [])
ranker, judge = bot.evidence_ranker, bot.evidence_scorer


def within(pool, passage: int, scores: np.ndarray) -> np.ndarray:
    """`scores` for the sentences of `passage`; every other sentence ranks below them."""
    return np.where([n == passage for n, _ in pool], scores, -np.inf)


def order_scores(pool, order) -> np.ndarray:
    """Scores that put `pool` in `order` (a list of Evidence) when the highest is taken first."""
    scores = np.zeros(len(pool))
    for place, evidence in enumerate(order):
        scores[evidence.position] = len(order) - place
    return scores


def ranks(values: np.ndarray) -> np.ndarray:
    """Each value's place from the bottom (0 for the lowest): a Borda count when two are added."""
    return np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(float)


def scores(queries, passages):
    pool = candidates(passages, bot.abbreviations())
    if not pool:
        return None, None
    sentences = [s for _, s in pool]
    shipped = np.mean([ranker.score(q, sentences) for q in queries], axis=0)
    if len(queries) == 1:  # searched alone: ranked by the mean (as shipped) by every variant
        return pool, {name: shipped for name in VARIANTS}
    joined, turn = queries
    by_judge = pool[int(np.argmax(judge.score(joined, sentences)))][0]
    by_ranker = pool[int(np.argmax(shipped))][0]
    turn_coverage = ranker.score(turn, sentences)
    joined_coverage = ranker.score(joined, sentences)
    product = turn_coverage.clip(0) * joined_coverage.clip(0)
    return pool, {
        "mean (before §28)": shipped,
        "shipped (follow_up_order)": order_scores(pool, follow_up_order(pool, joined_coverage, turn_coverage)),
        "passage: mean": within(pool, by_judge, shipped),
        "passage: turn": within(pool, by_judge, turn_coverage),
        "passage: turn cosine": within(pool, by_judge, judge.score(turn, sentences)),
        "passage by ranker: turn": within(pool, by_ranker, turn_coverage),
        "product": product,
        "passage by ranker: product": within(pool, by_ranker, product),
        "passage by ranker: ranks": within(pool, by_ranker, ranks(turn_coverage) + ranks(joined_coverage)),
    }


VARIANTS = ("mean (before §28)", "shipped (follow_up_order)", "passage: mean", "passage: turn", "passage: turn cosine",
            "passage by ranker: turn",
            "product", "passage by ranker: product", "passage by ranker: ranks")
results = first_sentence_rouge(bot, single, follow, scores)
print_paired(results, "mean (before §28)", width=28)
if len(results["follow-ups"]) == len(follow):  # by kind: a new fact, or the sentence that answered the first
    kinds = {}
    for row, found in zip(follow, results["follow-ups"]):
        kinds.setdefault(row["category"], []).append(found)
    print_paired(kinds, "mean (before §28)", width=28)
