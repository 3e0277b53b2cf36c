"""Exploration behind docs/benchmarks.md §18 ("Refusing near misses by other scores: tried"):
do the scores of the `coverage-questions` ranking, with the token weights learned from earlier
questions, or how much the best sentence says beyond its passage's subject, tell answerable
questions from near misses better than the cosine that refuses today? On the development sets
only (tests/data/corpus_qa*.jsonl, 301 rows; never the frozen set).

    python bench/explore_near_miss_scores.py     # about 4 minutes on 2 cores

For each question: hybrid retrieval over the shipped corpus (a follow-up searched as the bot
searches it), and over every sentence of the shown passages the best score of each scorer. The
answer log each question "was asked after" is every other development question (leave one out:
a user with ~300 questions asked). Printed: each best score's AUC (answerable against
unanswerable, and against the near misses alone) and the share of near misses and of all
unanswerable questions it would refuse when its threshold refuses 10% of the answerable ones,
that threshold set on these same rows (in-sample, so optimistic for any threshold fit by code);
then the same for a few combinations, a logistic regression's 5-fold predictions on these rows.
The "beyond its subject" scores: the best sentence's cosine minus the question's cosine with
that sentence's heading (title and section), or with its whole passage, and minus the best
cosine of another sentence of the same passage.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import searched_development_sets  # noqa: E402


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    from ragbot.answer.evidence import CoverageScorer, candidates

    work = Path(tempfile.mkdtemp(prefix="ragbot-explore-near-miss-"))
    bot, dev, _, shown = searched_development_sets(work)
    pieces = bot.embedder.word_pieces([r["question"] for r in dev])
    everyone = Counter(term for question in pieces for term in set(question))
    chunks = bot._document_frequencies
    rows = []
    for row, own, passages in zip(dev, pieces, shown):
        own = Counter(set(own))

        def others(terms, own=own):  # every other development question, as a QuestionLog gives them
            return np.array([everyone[t] - own[t] for t in terms]), len(dev) - 1

        found = candidates(passages)  # (passage number, sentence)
        pool = [sentence for _, sentence in found]
        if not pool:
            continue
        question = row["question"]
        (weighted_mean,), cosine = CoverageScorer(bot.embedder, chunks, others, share=None).score_with_cosine(question, pool)
        best = int(cosine.argmax())
        passage = passages[found[best][0] - 1]
        heading = f"{passage.title}. {passage.section}" if passage.section else passage.title
        asked, heading_vector, passage_vector = bot.embedder.encode([question, heading, passage.text])
        neighbours = [cosine[i] for i, (n, _) in enumerate(found) if n == found[best][0] and i != best]
        rows.append({
            "answerable": bool(row["answerable"]), "near_miss": "near miss" in (row.get("category") or ""),
            "cosine (refuses today)": cosine.max(),
            "coverage, worst quarter": CoverageScorer(bot.embedder, chunks).score(question, pool).max(),
            "weighted mean, no log": CoverageScorer(bot.embedder, chunks, share=None).score(question, pool).max(),
            "weighted mean, log (coverage-questions)": weighted_mean.max(),
            "worst quarter, log": CoverageScorer(bot.embedder, chunks, others).score(question, pool).max(),
            "cosine of the sentence coverage-questions quotes": cosine[weighted_mean.argmax()],
            "cosine minus the heading's": cosine.max() - float(asked @ heading_vector),
            "cosine minus the passage's": cosine.max() - float(asked @ passage_vector),
            "cosine minus its passage's next best sentence's": cosine.max() - max(neighbours, default=0.0),
        })
    answerable = np.array([r["answerable"] for r in rows])
    near = np.array([r["near_miss"] for r in rows])
    pairs = answerable | near
    print(f"{len(rows)} questions: {answerable.sum()} answerable, {near.sum()} near misses, "
          f"{(~answerable).sum()} unanswerable")
    scores = {name: np.array([r[name] for r in rows]) for name in rows[0] if name not in ("answerable", "near_miss")}
    cosine, coverage = "cosine (refuses today)", "coverage, worst quarter"
    for combination in ([cosine, coverage], [cosine, coverage, "cosine minus the heading's"],
                        [cosine, coverage, "cosine minus the passage's"]):
        features = np.column_stack([scores[name] for name in combination])
        scores[" + ".join(combination)] = cross_val_predict(LogisticRegression(), features, answerable, cv=5,
                                                            method="predict_proba")[:, 1]
    for name, values in scores.items():
        threshold = np.quantile(values[answerable], 0.10)
        print(f"{name:50s} AUC {roc_auc_score(answerable, values):.3f}  vs near misses "
              f"{roc_auc_score(answerable[pairs], values[pairs]):.3f}  at 10% answerable refused: near misses "
              f"{np.mean(values[near] < threshold):.3f}, unanswerable {np.mean(values[~answerable] < threshold):.3f}")
    bot.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
