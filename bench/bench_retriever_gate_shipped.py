"""`ragbot tune --retriever`'s gate on the shipped corpus, judged both ways (docs/benchmarks.md §11).

Every answerable development question (tests/data/corpus_qa*.jsonl) is answered with the chunk
of its gold document that hybrid search ranks first and liked, in a fresh data dir; then
`tune_retriever` runs with its defaults (made to rank, so both sides can be judged again) and
its held-out questions are judged by the graded judgement (what the gate decided by) and by the
cited chunk alone. About a minute on 2 cores.

    python bench/bench_retriever_gate_shipped.py [SEED]
"""
import argparse
import json
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def like_development_questions(bot) -> int:
    from ragbot.types import Answer, Citation

    rows = [json.loads(line) for path in sorted((ROOT / "tests/data").glob("corpus_qa*.jsonl"))
            for line in open(path) if line.strip()]
    rows = [r for r in rows if r.get("answerable") and r.get("gold_passage_ids")]
    liked = 0
    for row, passages in zip(rows, bot.batch_search([r["question"] for r in rows], k=20)):
        gold = next((p for p in passages if Path(p.source).name in row["gold_passage_ids"]), None)
        if gold is None:
            continue
        answer = Answer(question=row["question"], answer=gold.text, refused=False, passages=passages,
                        citations=[Citation(n=gold.rank, source=gold.source, page=gold.page, chunk_id=gold.chunk_id,
                                            score=gold.score, text=gold.text)],
                        prompt="", raw_reply="", model="bench", adapter=None, timings_ms={}, tokens={})
        bot.feedback.record_answer(answer)
        bot.feedback.set_feedback(answer.id, 1)
        liked += 1
    return liked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("seed", type=int, nargs="?", default=0)
    args = parser.parse_args()

    from ragbot import RagBot
    from ragbot.evaluation.metrics import CITED, paired_difference
    from ragbot.learn.retriever import RetrieverConfig, judge_searches, split_feedback, tune_retriever

    with tempfile.TemporaryDirectory() as folder:
        bot = RagBot.open(Path(folder) / "data", default_corpus=None, retrieval="hybrid")
        try:
            bot.ingest([ROOT / "corpus"])
            print(f"{like_development_questions(bot)} development questions liked")
            result = tune_retriever(bot, RetrieverConfig(activate="always", seed=args.seed), log=print)
            _, heldout = split_feedback(bot, RetrieverConfig(seed=args.seed))
            cited = {q: {str(c): CITED for c in ids} for q, ids in heldout.items()}
            before = [n for n, _ in judge_searches(bot, cited, None)]
            after = [n for n, _ in judge_searches(bot, cited, result.version)]
            gain = paired_difference(before, after)
            print(f"graded (the gate): {result.gate['reason']}")
            print(f"cited chunk only: nDCG@10 {sum(before) / len(before):.3f} -> {sum(after) / len(after):.3f}, "
                  f"gain {gain['mean']:+.3f} [{gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]")
        finally:
            bot.close()


if __name__ == "__main__":
    main()
