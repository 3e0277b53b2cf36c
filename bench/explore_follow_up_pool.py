"""Exploration behind docs/benchmarks.md §15 ("A new subject in the same conversation"): which
passages should a second question be answered from?

Shipped: `RagBot.standalone_query` searches the turn alone and the turn joined to the question
before it, and the query whose best passage scores higher is searched again and answered from;
a second question on a new subject ("What is a GAN?" after a VAE question) then often gets the
first subject's passages. Variants tried here, each answering through `RagBot.ask`:

- "union": the passages of both searches (the joined query's first, then the turn's that it did
  not find), so the sentence that answers a new subject is in the pool; ranked as shipped (the
  mean of the coverage for the joined question and for the turn), judged by the cosine of the
  query `standalone_query` chose;
- "union, turn judged": the same, and a sentence is also judged by its cosine with the turn
  alone, the better of the two deciding whether to answer.

    python bench/explore_follow_up_pool.py [DATA_DIR]

Development sets only (the three follow-up sets in bench/data, 70 pairs, looked at freely):
ROUGE-L of the answerable second turns, refusals of the unanswerable ones, paired intervals.
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402

from ragbot import RagBot  # noqa: E402
from ragbot.answer.evidence import EmbeddingScorer  # noqa: E402
from ragbot.evaluation.metrics import best_of, paired_difference, rouge_l  # noqa: E402

SETS = ("follow_ups_dev.jsonl", "follow_ups_same_sentence_dev.jsonl", "topic_changes_dev.jsonl")


class TurnAlsoJudges:
    """The cosine, each sentence taking the better of the query's and the turn's. (Not an
    EmbeddingScorer: rank_both would then take the cosines from the ranker's pass.)"""

    name = "embedding"

    def __init__(self, embedder, turn: str):
        self.cosine = EmbeddingScorer(embedder)
        self.turn = turn

    def score(self, question, sentences):
        import numpy as np

        return np.maximum(self.cosine.score(question, sentences), self.cosine.score(self.turn, sentences))


def asker_for(bot: RagBot, variant: str, turn: str) -> RagBot:
    if variant == "shipped":
        return bot
    other = bot.with_settings()
    plain_search = other.search

    def union(query, k=None, sources=None):
        found = plain_search(query, k, sources)
        if query == turn:
            return found
        seen = {p.chunk_id for p in found}
        extra = [p for p in plain_search(turn, k, sources) if p.chunk_id not in seen]
        return found + [replace(p, rank=len(found) + i) for i, p in enumerate(extra, start=1)]

    other.search = union
    if variant == "union, turn judged":
        other._scorer = TurnAlsoJudges(bot.embedder, turn)
        other._ranker = bot.evidence_ranker  # the shipped coverage ranker, not the judge
    return other


def main(data_dir: str) -> None:
    bot = RagBot.open(data_dir, default_corpus=None)
    if not bot.store.all_chunks():
        bot.ingest([ROOT / "corpus"])
    rows = [json.loads(line) for name in SETS for line in open(ROOT / "bench" / "data" / name) if line.strip()]
    results = {}
    for variant in ("shipped", "union", "union, turn judged"):
        scores, refused, by_set = [], [], {}
        for row in rows:
            asker = asker_for(bot, variant, row["question"])
            query = bot.standalone_query([row["previous"]], row["question"])
            answer = asker.ask(row["question"], record=False, retrieval_query=query)
            if row["answerable"]:
                value = 0.0 if answer.refused else best_of(rouge_l, answer.answer, row["answers"])
                scores.append(value)
                by_set.setdefault(row.get("category", "?"), []).append(value)
            else:
                refused.append(float(answer.refused))
        results[variant] = scores
        parts = "  ".join(f"{name} {sum(v) / len(v):.3f} ({len(v)})" for name, v in sorted(by_set.items()))
        line = (f"{variant:20s} ROUGE-L {sum(scores) / len(scores):.3f}  unanswerable refused "
                f"{sum(refused):.0f}/{len(refused)}  [{parts}]")
        if variant != "shipped":
            d = paired_difference(results["shipped"], scores)
            line += f"  vs shipped {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ragbot-explore-follow-up-pool")
