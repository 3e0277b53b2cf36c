"""Exploration: hybrid search fusing the two rankings' scores rather than their ranks.

Reciprocal-rank fusion (RRF, the `fusion` setting "ranks") reads only ranks, so a chunk that
the embedder puts first by a wide margin weighs as much as one it puts first by a hair, and
less than a chunk both rankings put tenth. Seen on an NTSB report: "Where did the airplane
depart from?" has the report's chunks first in the dense ranking (cosines 0.50, 0.38, 0.37...),
and RRF put a VAE chunk second because BM25 matched its "Where". Tried here: "scores", each
ranking's scores scaled to [0, 1] over the chunks either found and added, BM25's weighted by
`lexical_weight` (lexical.fuse_scores). No training; the weight is chosen on SciFact's train
queries, as RRF's was (docs/benchmarks.md §4).

    python bench/explore_score_fusion.py [--part scifact,dev,scifact-test] [--weights 0.25,0.5,1,2]

- **scifact**: BEIR SciFact's 809 train queries (development), nDCG@10 of RRF at weight 1 (the
  default) against score fusion at each weight, paired bootstrap 95% intervals; on the index
  bench_scifact.py keeps in DIR/scifact.
- **dev**: the development question sets over the shipped corpus (`searched_development_sets`):
  the share of answerable questions whose gold document is first and among the five.
- **scifact-test**: the 300 test queries, totals only, at the weight the train queries chose.
PDF retrieval is measured by bench_pdf_retrieval.py with RAGBOT_FUSION=scores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common
from common import machine, save, scifact_bot, searched_development_sets


def dev(work: Path, weights: list[float]) -> list[dict]:
    bot, rows, queries, _ = searched_development_sets(work, fusion="ranks")
    answerable = [i for i, r in enumerate(rows) if r.get("answerable") and r.get("gold_passage_ids")]
    asked = [queries[i] for i in answerable]
    base = bot.batch_search(asked, k=5)
    lines = []
    for weight in weights:
        new = bot.with_settings(fusion="scores", lexical_weight=weight).batch_search(asked, k=5)
        for k in (1, 5):
            hits = [[float(any(Path(p.source).name in rows[i]["gold_passage_ids"] for p in passages[:k]))
                     for i, passages in zip(answerable, found)] for found in (base, new)]
            lines.append(common.paired(f"development sets, scores weight {weight}, gold document in top {k}",
                                       *hits, names=("ranks", "scores")))
        for i, a, b in zip(answerable, base, new):
            first = [Path(p.source).name for p in a[:1]], [Path(p.source).name for p in b[:1]]
            if first[0] != first[1]:
                print(f"  {rows[i]['question']!r}: {first[0]} -> {first[1]} (gold {rows[i]['gold_passage_ids']})")
    bot.close()
    return lines


def scifact(work: Path, split: str, weights: list[float]) -> list[dict]:
    from ragbot.evaluation.metrics import evaluate_retrieval

    if (found := scifact_bot(work)) is None:
        return []
    bot, test, train = found
    data = test if split == "test" else train
    ranks = evaluate_retrieval(bot.with_settings(fusion="ranks", lexical_weight=1.0), data, k=10)
    base = [r["ndcg@10"] for r in ranks.per_query]
    lines = []
    for weight in weights:
        scores = evaluate_retrieval(bot.with_settings(fusion="scores", lexical_weight=weight), data, k=10)
        lines.append(common.paired(f"scifact {split}, scores weight {weight}, nDCG@10", base,
                                   [r["ndcg@10"] for r in scores.per_query], names=("ranks", "scores")))
        lines[-1]["search_ms"] = {"ranks": ranks.summary["search_ms_per_query"],
                                  "scores": scores.summary["search_ms_per_query"]}
        print(f"  search ms/query within a batch: ranks {ranks.summary['search_ms_per_query']:.1f}, "
              f"scores {scores.summary['search_ms_per_query']:.1f}")
    bot.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="scifact,dev")
    parser.add_argument("--weights", default="0.25,0.5,1,2", help="BM25 weights of the score fusion")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent / ".cache"))
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    print(machine(), flush=True)
    lines = []
    for part in args.part.split(","):
        if part == "dev":
            with tempfile.TemporaryDirectory() as tmp:
                lines += dev(Path(tmp), weights)
        else:
            lines += scifact(Path(args.data_dir), "test" if part == "scifact-test" else "train", weights)
    print(f"saved {save('explore_score_fusion', {'lines': lines})}")


if __name__ == "__main__":
    main()
