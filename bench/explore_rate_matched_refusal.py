"""Exploration for docs/benchmarks.md §18 ("Refusing by coverage, its threshold carried over from
the cosine's by the user's own questions: tried, not adopted").

Coverage (the worst-covered quarter of the question, §13) separates answerable questions from
near misses better than the cosine that refuses today, but its threshold, fit on model-written
questions, did not transfer (§13). This tries another way to set it, with no labels: on the
questions in the user's answer log, find the share the cosine's threshold refuses, and put the
coverage threshold at the same share of their coverage scores (quantile matching). Both scores are
the best over the shown passages' sentences, for the question as the bot judges it.

    python bench/explore_rate_matched_refusal.py dev            # about 4 minutes on 2 cores
    python bench/explore_rate_matched_refusal.py frozen DATA    # about 2 minutes

- **dev**: the 301 rows of tests/data/corpus_qa*.jsonl, looked at freely, over the shipped
  corpus; 500 random halves, each the log for the other half. Printed: the mean refusal rates of
  both rules on the other half, and the 2.5-97.5% spread of the near-miss difference.
- **frozen**: tests/data/frozen/answers.jsonl, totals only, in DATA, a data dir `bench_answers.py`
  made for the frozen set with `--question-log` (its log: the development questions). Printed:
  both rules' refusal rates and the paired bootstrap interval of each difference.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT, searched_development_sets

THRESHOLD = 0.48  # the shipped evidence_threshold, the cosine's


def best_scores(bot, query: str, passages) -> tuple[float, float]:
    """(best cosine, best worst-quarter coverage) of the passages' sentences for `query`."""
    from ragbot.answer.evidence import CoverageScorer, EmbeddingScorer, candidates

    pool = [sentence for _, sentence in candidates(passages)]
    if not pool:
        return -np.inf, -np.inf
    coverage = CoverageScorer(bot.embedder, bot._document_frequencies)
    return float(EmbeddingScorer(bot.embedder).score(query, pool).max()), float(coverage.score(query, pool).max())


def matched_threshold(log: np.ndarray) -> float:
    """The coverage threshold refusing the share of the logged questions the cosine's refuses."""
    return float(np.quantile(log[:, 1], np.mean(log[:, 0] < THRESHOLD)))


def rates(refused: np.ndarray, answerable: np.ndarray, near: np.ndarray) -> list[float]:
    return [refused[answerable].mean(), refused[near].mean(), refused[~answerable].mean()]


def development() -> None:
    work = Path(tempfile.mkdtemp(prefix="ragbot-explore-rate-"))
    bot, rows, queries, shown = searched_development_sets(work)
    scores = np.array([best_scores(bot, q, p) for q, p in zip(queries, shown)])
    bot.close()
    shutil.rmtree(work, ignore_errors=True)
    answerable = np.array([bool(r["answerable"]) for r in rows])
    near = np.array(["near miss" in (r.get("category") or "") for r in rows])
    rng = np.random.default_rng(0)
    old, new = [], []
    for _ in range(500):
        order = rng.permutation(len(rows))
        log, judged = order[: len(rows) // 2], order[len(rows) // 2:]
        mask = np.zeros(len(rows), bool)
        mask[judged] = True
        threshold = matched_threshold(scores[log])
        old.append(rates((scores[:, 0] < THRESHOLD)[mask], answerable[mask], near[mask]))
        new.append(rates((scores[:, 1] < threshold)[mask], answerable[mask], near[mask]))
    old, new = np.array(old), np.array(new)
    print(f"{len(rows)} development questions: {answerable.sum()} answerable, {near.sum()} near misses")
    print("refused (answerable, near misses, unanswerable), mean over 500 halves:")
    print("  cosine at 0.48:          ", old.mean(0).round(3))
    print("  coverage, rate-matched:  ", new.mean(0).round(3))
    print("  near-miss difference, 2.5-97.5%:", np.percentile(new[:, 1] - old[:, 1], [2.5, 97.5]).round(3))


def frozen(data: Path) -> None:
    from ragbot import RagBot

    work = Path(tempfile.mkdtemp(prefix="ragbot-explore-rate-"))
    shutil.copytree(data, work / "data")
    bot = RagBot.open(work / "data", default_corpus=None)
    logged = list(dict.fromkeys(q for (q,) in bot.store._db.execute("SELECT question FROM answers ORDER BY created_at")))
    log = np.array([best_scores(bot, q, bot.search(q)) for q in logged])
    rows = [json.loads(line) for line in (ROOT / "tests" / "data" / "frozen" / "answers.jsonl").open()]
    queries = [bot.standalone_query([r["previous"]], r["question"]) if r.get("previous") else r["question"] for r in rows]
    scores = np.array([best_scores(bot, q, bot.search(q)) for q in queries])
    bot.close()
    shutil.rmtree(work, ignore_errors=True)
    answerable = np.array([bool(r["answerable"]) for r in rows])
    near = np.array([r["kind"] == "near_miss" for r in rows])
    threshold = matched_threshold(log)
    old, new = scores[:, 0] < THRESHOLD, scores[:, 1] < threshold
    print(f"{len(logged)} logged questions; the cosine refuses {np.mean(log[:, 0] < THRESHOLD):.3f} of them; "
          f"coverage threshold {threshold:.3f}")
    print("refused (answerable, near misses, unanswerable):")
    print("  cosine at 0.48:        ", np.round(rates(old, answerable, near), 3))
    print("  coverage, rate-matched:", np.round(rates(new, answerable, near), 3))
    rng = np.random.default_rng(0)
    for name, mask in (("answerable", answerable), ("near misses", near), ("unanswerable", ~answerable)):
        which = np.flatnonzero(mask)
        draws = [rng.choice(which, len(which)) for _ in range(5000)]
        spread = np.percentile([new[d].mean() - old[d].mean() for d in draws], [2.5, 97.5])
        print(f"  {name}: {new[mask].mean() - old[mask].mean():+.3f} [{spread[0]:+.3f}, {spread[1]:+.3f}]")


if __name__ == "__main__":
    if sys.argv[1:2] == ["dev"]:
        development()
    elif sys.argv[1:2] == ["frozen"] and len(sys.argv) == 3:
        frozen(Path(sys.argv[2]))
    else:
        sys.exit(__doc__)
