"""Retrieval quality on BEIR SciFact (test split, 300 queries) next to published figures.

Every retrieval mode (dense, bm25, hybrid) on one index, with per-query wins/losses against
dense and the search latency of each. The hybrid fusion's lexical weight is chosen on the train
queries (qrels/train.tsv), never on the test queries, then reported on test.

    python bench/bench_scifact.py [--data-dir DIR] [--weights 0.5,1,2]
Needs ../shared/data/scifact; without it the benchmark says so and exits 0. The index is kept
in the data dir (default bench/.cache), so only the first run embeds the 5,183 abstracts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import shared_data, peak_rss_mb, save, table

PUBLISHED = {
    "all-MiniLM-L6-v2 (MTEB results)": "0.645",
    "BM25 (BEIR paper, Anserini, MTEB bm25s)": "0.665-0.687",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent / ".cache"))
    parser.add_argument("--weights", default="0.5,1,2", help="lexical weights tried on the train queries")
    args = parser.parse_args()
    folder = shared_data("scifact")
    if folder is None:
        return


    from ragbot import RagBot
    from ragbot.evaluation.metrics import compare_retrieval, evaluate_retrieval, load_beir, write_beir_documents

    work = Path(args.data_dir) / "scifact"
    data = load_beir(folder, "test")
    train = load_beir(folder, "train")
    write_beir_documents(data, work / "documents")
    bot = RagBot.open(work / "data", default_corpus=None, retrieval="hybrid")
    t0 = time.perf_counter()
    report = bot.ingest([work / "documents"], prune=True, store_copies=True)  # qrels name each copy
    index_seconds = time.perf_counter() - t0
    print(report.summary(), file=sys.stderr)

    by_weight = {}
    for weight in [float(w) for w in args.weights.split(",")]:
        by_weight[weight] = evaluate_retrieval(bot.with_settings(lexical_weight=weight), train, k=10).summary["ndcg@10"]
        print(f"train queries ({len(train.qrels)}): lexical weight {weight}: nDCG@10 {by_weight[weight]:.3f}")
    weight = max(by_weight, key=by_weight.get)
    results = compare_retrieval(bot.with_settings(lexical_weight=weight), data, ("dense", "bm25", "hybrid"), k=10)
    rows = []
    for mode, result in results.items():
        m = result.summary
        name = f"ragbot {mode}" + (f" ({bot.settings.fusion} fusion, lexical weight {weight} from train)" if mode == "hybrid" else "")
        low, high = m["ndcg@10_ci95"]
        rows.append({"system": name, "ndcg@10": f"{m['ndcg@10']:.3f} [{low:.3f}, {high:.3f}]",
                     "recall@10": f"{m['recall@10']:.3f}", "mrr@10": f"{m['mrr@10']:.3f}",
                     "wins/losses vs dense": f"{m['wins_vs_dense']}/{m['losses_vs_dense']}",
                     "search ms/query": f"{m['search_ms_per_query']:.1f}"})
    rows += [{"system": name, "ndcg@10": value, "recall@10": "", "mrr@10": "", "wins/losses vs dense": "",
              "search ms/query": ""} for name, value in PUBLISHED.items()]
    print(table(rows))
    payload = {"modes": {m: r.summary for m, r in results.items()}, "train_ndcg@10_by_weight": by_weight,
               "lexical_weight": weight, "published_ndcg@10": PUBLISHED, "index_seconds": index_seconds,
               "peak_rss_mb": peak_rss_mb()}
    print(f"saved {save('scifact', payload)}")


if __name__ == "__main__":
    main()
