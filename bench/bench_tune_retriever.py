"""`ragbot tune --retriever` end to end on BEIR SciFact: does the command, as shipped, find better passages?

SciFact's judged train queries (qrels/train.tsv) stand in for a user's liked answers: each is
asked, answered with the chunk of its gold document that hybrid search ranks first (what the
answer would cite), and given a thumbs-up in the feedback log of a copy of the SciFact data dir.
Then `tune_retriever` runs with its defaults (its own held-out split of those questions, its
training recipe, re-embedding every chunk, its gate), except that the tuned embedder is made to
rank whatever the gate says, so the 300 test queries, never seen by it, can tell whether the
gate was right. They are scored before and after, dense and hybrid, with the paired-bootstrap
95% interval of the gain. The gate's held-out questions are also judged by the cited chunks
alone (the gate before 2026-12-03), to show what the grading of the rest of the cited
document changes.

    python bench/bench_tune_retriever.py

Needs ../shared/data/scifact and the SciFact index bench_scifact.py keeps in bench/.cache;
without them it says so and exits 0. About 10 minutes on 2 cores, most of it re-embedding.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from common import SHARED, machine, peak_rss_mb, save, table


def like_train_queries(bot, data) -> int:
    """Record each judged query's answer, citing its gold document's best-ranked chunk, and like it."""
    from ragbot.evaluation.metrics import _doc_id_of
    from ragbot.types import Answer, Citation

    query_ids = sorted(data.qrels)
    liked = 0
    for qid, passages in zip(query_ids, bot.batch_search([data.queries[q] for q in query_ids], k=100)):
        gold = next((p for p in passages if _doc_id_of(p.source) in data.qrels[qid]), None)
        if gold is None:
            continue  # no liked passage was shown: nothing a user could have voted on
        answer = Answer(question=data.queries[qid], answer=gold.text, refused=False,
                        passages=passages[:max(10, gold.rank)],
                        citations=[Citation(n=gold.rank, source=gold.source, page=gold.page, chunk_id=gold.chunk_id,
                                            score=gold.score, text=gold.text)],
                        prompt="", raw_reply="", model="bench", adapter=None, timings_ms={}, tokens={})
        bot.feedback.record_answer(answer)
        bot.feedback.set_feedback(answer.id, 1)
        liked += 1
    return liked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=str(Path(__file__).resolve().parent / ".cache"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = SHARED / "scifact"
    source = Path(args.cache) / "scifact" / "data"
    if not folder.is_dir() or not (source / "ragbot.db").is_file():
        print(f"skipped: needs {folder} and the index of bench/bench_scifact.py in {source}")
        return
    print(f"machine: {machine()}", file=sys.stderr)

    from ragbot import RagBot
    from ragbot.evaluation.metrics import CITED, compare_retrieval, load_beir, paired_difference
    from ragbot.learn.retriever import RetrieverConfig, judge_searches, split_feedback, tune_retriever

    work = Path(args.cache) / "scifact-liked" / "data"
    shutil.rmtree(work.parent, ignore_errors=True)
    shutil.copytree(source, work)
    test, train = load_beir(folder, "test"), load_beir(folder, "train")
    bot = RagBot.open(work, default_corpus=None, retrieval="hybrid")
    liked = like_train_queries(bot, train)
    print(f"{liked} of {len(train.qrels)} train queries liked", file=sys.stderr)
    modes = ("dense", "hybrid")
    before = compare_retrieval(bot, test, modes, k=10)
    started = time.perf_counter()
    result = tune_retriever(bot, RetrieverConfig(activate="always", seed=args.seed),
                            log=lambda line: print(line, file=sys.stderr))
    seconds = time.perf_counter() - started
    after = compare_retrieval(bot, test, modes, k=10)

    rows, gains = [], {}
    for mode in modes:
        for name, run in ((f"{mode}, shipped", before[mode]), (f"{mode}, tuned {result.version}", after[mode])):
            low, high = run.summary["ndcg@10_ci95"]
            rows.append({"system": name, "ndcg@10": f"{run.summary['ndcg@10']:.3f} [{low:.3f}, {high:.3f}]",
                         "recall@10": f"{run.summary['recall@10']:.3f}",
                         "search ms/query": f"{run.summary['search_ms_per_query']:.1f}"})
        gains[mode] = paired_difference([r["ndcg@10"] for r in before[mode].per_query],
                                        [r["ndcg@10"] for r in after[mode].per_query])
    print(table(rows))
    for mode, gain in gains.items():
        print(f"test, tuned - shipped, {mode}: nDCG@10 {gain['mean']:+.3f} "
              f"[{gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]")
    gate = result.gate
    # The gate's held-out questions judged by the cited chunks alone, both ways.
    _, heldout = split_feedback(bot, RetrieverConfig(seed=args.seed))
    cited = {q: {str(c): CITED for c in ids} for q, ids in heldout.items()}
    cited_only = paired_difference([n for n, _ in judge_searches(bot, cited, None)],
                                   [n for n, _ in judge_searches(bot, cited, result.version)])
    print(f"gate judged by the cited chunks alone: nDCG@10 gain {cited_only['mean']:+.3f} "
          f"[{cited_only['ci95'][0]:+.3f}, {cited_only['ci95'][1]:+.3f}]")
    print(f"gate on {gate['questions']} held-out liked questions: {gate['reason']} -> "
          f"{'would rank' if gate['promote'] else 'would keep the shipped embedder'}")
    from ragbot.learn.registry import EmbedderRegistry

    training = EmbedderRegistry(bot.settings.embedders_dir).get(result.version).metadata["training"]
    print(f"tune --retriever took {seconds:.0f}s: training {training['seconds']:.0f}s ({training['steps']} steps, "
          f"{training['pairs']} pairs), the rest mining negatives, embedding {bot.store.counts()[1]} chunks and the gate")
    payload = {"liked": liked, "gate": gate, "gate_cited_only": cited_only, "training": training, "tune_seconds": seconds,
               "test": {mode: {"shipped": before[mode].summary, "tuned": after[mode].summary, "gain": gains[mode]}
                        for mode in modes},
               "peak_rss_mb": peak_rss_mb()}
    print(f"saved {save('tune_retriever_scifact', payload)}")


if __name__ == "__main__":
    main()
