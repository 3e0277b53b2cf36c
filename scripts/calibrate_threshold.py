"""Calibrate `min_score`: the top retrieval score below which ragbot declines to answer.

Ingests the shipped corpus into a scratch data dir, retrieves for every question of
tests/data/corpus_qa.jsonl, and prints the top-1 cosine scores of answerable and unanswerable
questions with the accuracy of each candidate threshold.

    python scripts/calibrate_threshold.py [--data-dir DIR]
"""

import argparse
import json
import tempfile
from pathlib import Path

from ragbot import RagBot

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="ragbot-calibrate-")
    bot = RagBot.open(data_dir)
    bot.ingest([ROOT / "corpus"])
    rows = [json.loads(line) for line in (ROOT / "tests/data/corpus_qa.jsonl").open()]
    results = bot.batch_search([r["question"] for r in rows], k=3)
    answerable, unanswerable, hits = [], [], 0
    for row, passages in zip(rows, results):
        top = passages[0].score
        if row["answerable"]:
            answerable.append(top)
            hits += any(Path(p.source).name == row["gold_passage_ids"][0] for p in passages)
        else:
            unanswerable.append(top)
        print(f"{top:.3f}  {'A' if row['answerable'] else 'U'}  {row['question']}")
    print(f"\nanswerable: n={len(answerable)} min={min(answerable):.3f} max={max(answerable):.3f}; "
          f"right document in top 3: {hits}/{len(answerable)}")
    print(f"unanswerable: n={len(unanswerable)} min={min(unanswerable):.3f} max={max(unanswerable):.3f}")
    print("\nthreshold  answered(answerable)  declined(unanswerable)")
    for t in [x / 100 for x in range(10, 55, 5)]:
        kept = sum(s >= t for s in answerable) / len(answerable)
        declined = sum(s < t for s in unanswerable) / len(unanswerable)
        print(f"  {t:.2f}        {kept:6.1%}               {declined:6.1%}")


if __name__ == "__main__":
    main()
