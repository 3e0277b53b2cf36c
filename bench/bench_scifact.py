"""Retrieval quality on BEIR SciFact (test split, 300 queries) next to published figures.

    python bench/bench_scifact.py [--data-dir DIR]
Needs ../shared/data/scifact; without it the benchmark says so and exits 0. The index is kept
in the data dir (default bench/.cache), so only the first run embeds the 5,183 abstracts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import SHARED, peak_rss_mb, save, table

PUBLISHED = {
    "all-MiniLM-L6-v2 (MTEB results)": "0.645",
    "BM25 (BEIR paper, Anserini, MTEB bm25s)": "0.665-0.687",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent / ".cache"))
    args = parser.parse_args()
    folder = SHARED / "scifact"
    if not folder.is_dir():
        print(f"skipped: {folder} not found (SciFact is read from ../shared/data/scifact)")
        return


    from ragbot import RagBot
    from ragbot.evaluate import evaluate_retrieval, load_beir, write_beir_documents

    work = Path(args.data_dir) / "scifact"
    data = load_beir(folder, "test")
    write_beir_documents(data, work / "documents")
    bot = RagBot.open(work / "data", default_corpus=None)
    t0 = time.perf_counter()
    report = bot.ingest([work / "documents"], prune=True)
    print(report.summary(), file=sys.stderr)
    result = evaluate_retrieval(bot, data, k=10)
    rows = [{"system": f"ragbot dense ({bot.embedder.name}, {bot.settings.chunk_tokens}-token chunks)",
             "ndcg@10": f"{result.summary['ndcg@10']:.3f}", "recall@10": f"{result.summary['recall@10']:.3f}",
             "mrr@10": f"{result.summary['mrr@10']:.3f}"}]
    rows += [{"system": name, "ndcg@10": value, "recall@10": "", "mrr@10": ""} for name, value in PUBLISHED.items()]
    print(table(rows))
    payload = {**result.summary, "published_ndcg@10": PUBLISHED, "index_seconds": time.perf_counter() - t0,
               "peak_rss_mb": peak_rss_mb()}
    print(f"saved {save('scifact', payload)}")


if __name__ == "__main__":
    main()
