"""Does tuning the embedder on the corpus's own text pay? BEIR SciFact, measured before building it.

The embedder (all-MiniLM-L6-v2) is fine-tuned with sentence-transformers' own trainer and
MultipleNegativesRankingLoss on pairs made from the corpus texts alone, no judged queries and
no word lists: the inverse cloze task (one sentence of a chunk is the query, the chunk without
that sentence, under its title, is the passage; one time in ten the sentence stays, so exact
matches are learned too). Hard negatives are the other passages of each batch. The corpus is
then embedded again with the tuned model (timed, as a re-ingest would), and dense and hybrid
retrieval are scored. The learning rate is chosen on the train queries (qrels/train.tsv), never
on the test queries, and the test gain is reported with a paired bootstrap 95% interval.

    python bench/bench_retriever_tuning.py [--rates 2e-5,5e-5] [--max-pairs N] [--pairs ict|feedback]

`--pairs feedback` is the issue's "with feedback" row: the judged train queries
(qrels/train.tsv) stand in for questions users asked and liked. Each pair is a question and the
chunk of its gold document that the current hybrid search ranks first (the passage a liked answer
would cite), with the best-ranked chunk of any other document as a hard negative (mined with BM25
and the embedder together, as hybrid search ranks them). A fifth of the train queries is held
out to choose the learning rate; the test queries are only scored.
Needs ../shared/data/scifact and the SciFact index bench_scifact.py keeps in bench/.cache;
without them it says so and exits 0. Training reads 128 tokens of each text in bf16 autocast
(--max-seq-length, --no-bf16); with --max-pairs 3000 a learning rate takes about 15 minutes
on 2 cores, most of it re-embedding the corpus.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from common import SHARED, machine, peak_rss_mb, save, table


def ict_pairs(chunks, rng: random.Random, keep: float = 0.1) -> list[tuple[str, str]]:
    """(query, passage) pairs by the inverse cloze task: a sentence of the chunk asks for the
    rest of the chunk."""
    from ragbot.text import sentence_spans

    pairs = []
    for chunk in chunks:
        spans = [s for s in sentence_spans(chunk.text) if len(chunk.text[s[0]:s[1]].split()) >= 5]
        if len(spans) < 3:
            continue
        start, end = rng.choice(spans)
        query = chunk.text[start:end].strip()
        rest = chunk.text if rng.random() < keep else (chunk.text[:start] + chunk.text[end:])
        pairs.append((query, f"{chunk.title}\n{' '.join(rest.split())}"))
    return pairs


def feedback_pairs(bot, data, query_ids: list[str], depth: int = 100) -> list[tuple[str, str, str]]:
    """(question, liked passage, hard negative) for judged queries (module doc)."""
    from ragbot.evaluation.metrics import _doc_id_of

    found = bot.batch_search([data.queries[q] for q in query_ids], k=depth)
    triples = []
    for qid, passages in zip(query_ids, found):
        gold = set(data.qrels[qid])
        positive = next((p for p in passages if _doc_id_of(p.source) in gold), None)
        negative = next((p for p in passages if _doc_id_of(p.source) not in gold), None)
        if positive is None or negative is None:
            continue  # no liked passage was shown: nothing a user could have voted on
        triples.append((data.queries[qid], f"{positive.title}\n{positive.text}", f"{negative.title}\n{negative.text}"))
    return triples


def tune(pairs: list[tuple[str, ...]], base: str, out: Path, rate: float, seed: int, max_seq_length: int,
         bf16: bool, epochs: int = 1, batch: int = 64) -> float:
    """Train as `ragbot tune --retriever` does (learn/retriever.py), at the rate given; seconds taken."""
    from ragbot.learn.retriever import RetrieverConfig, train

    config = RetrieverConfig(learning_rate=rate, seed=seed, max_seq_length=max_seq_length, epochs=epochs,
                             batch_size=batch)
    return train(base, pairs, out, config, bf16)["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=str(Path(__file__).resolve().parent / ".cache"))
    parser.add_argument("--rates", default="2e-5,5e-5", help="learning rates tried; chosen on the train queries")
    parser.add_argument("--max-pairs", type=int, default=0, help="0: one pair per chunk that has 3+ sentences")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seq-length", type=int, default=128, help="tokens of each text read while training")
    parser.add_argument("--no-bf16", action="store_true", help="train in float32 (default: bf16 autocast)")
    parser.add_argument("--pairs", choices=("ict", "feedback"), default="ict",
                        help="ict: from the corpus texts alone; feedback: judged train queries as liked answers")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    folder = SHARED / "scifact"
    work = Path(args.cache) / "scifact"
    if not folder.is_dir() or not (work / "data" / "ragbot.db").is_file():
        print(f"skipped: needs {folder} and the index of bench/bench_scifact.py in {work}")
        return
    print(f"machine: {machine()}", file=sys.stderr)

    from ragbot import RagBot
    from ragbot.evaluation.metrics import (BeirData, compare_retrieval, evaluate_retrieval, load_beir,
                                           paired_difference)
    from ragbot.models import resolve_embedder

    test, train = load_beir(folder, "test"), load_beir(folder, "train")
    base = RagBot.open(work / "data", default_corpus=None, retrieval="hybrid")
    weight = base.settings.lexical_weight
    rng = random.Random(args.seed)
    choose_on = train
    if args.pairs == "ict":
        pairs = ict_pairs(base.store.all_chunks(), rng)
        rng.shuffle(pairs)
        if args.max_pairs:
            pairs = pairs[: args.max_pairs]  # a sample from every part of the corpus
        print(f"{len(pairs)} inverse-cloze pairs from {base.store.counts()[1]} chunks", file=sys.stderr)
    else:
        query_ids = sorted(train.qrels)
        rng.shuffle(query_ids)
        held = set(query_ids[: len(query_ids) // 5])
        pairs = feedback_pairs(base, train, [q for q in query_ids if q not in held])
        rng.shuffle(pairs)
        choose_on = BeirData(corpus=train.corpus, queries=train.queries,
                             qrels={q: d for q, d in train.qrels.items() if q in held})
        print(f"{len(pairs)} liked-answer pairs with a hard negative from {len(query_ids) - len(held)} train "
              f"queries; the rate is chosen on the other {len(held)}", file=sys.stderr)

    runs = {}
    for rate in [float(r) for r in args.rates.split(",")]:
        out = Path(args.cache) / f"scifact-tuned-{args.pairs}-{rate:g}"
        train_seconds = tune(pairs, resolve_embedder(base.settings), out, rate, args.seed, args.max_seq_length,
                             not args.no_bf16, args.epochs, args.batch) \
            if not (out / "model" / "model.safetensors").is_file() else float("nan")
        bot = RagBot.open(out / "data", default_corpus=None, retrieval="hybrid", embedder=str(out / "model"),
                          lexical_weight=weight)
        started = time.perf_counter()
        report = bot.ingest([work / "documents"], prune=True, store_copies=True)  # qrels name each copy
        embed_seconds = time.perf_counter() - started
        print(f"rate {rate:g}: {report.summary()}", file=sys.stderr)
        on_train = evaluate_retrieval(bot.with_settings(retrieval="dense"), choose_on, k=10).summary["ndcg@10"]
        print(f"rate {rate:g}: train nDCG@10 dense {on_train:.3f}", file=sys.stderr)
        runs[rate] = {"bot": bot, "train_ndcg@10_dense": on_train, "train_seconds": train_seconds,
                      "reingest_seconds": embed_seconds, "chunks": report.chunks_added}
    base_train = evaluate_retrieval(base.with_settings(retrieval="dense"), choose_on, k=10).summary["ndcg@10"]
    rate = max(runs, key=lambda r: runs[r]["train_ndcg@10_dense"])
    chosen = runs[rate]["bot"]

    before = compare_retrieval(base, test, ("dense", "hybrid"), k=10)
    after = compare_retrieval(chosen, test, ("dense", "hybrid"), k=10)
    rows, gains = [], {}
    for mode in ("dense", "hybrid"):
        for name, result in ((f"{mode}, shipped MiniLM", before[mode]), (f"{mode}, tuned (lr {rate:g})", after[mode])):
            low, high = result.summary["ndcg@10_ci95"]
            rows.append({"system": name, "ndcg@10": f"{result.summary['ndcg@10']:.3f} [{low:.3f}, {high:.3f}]",
                         "recall@10": f"{result.summary['recall@10']:.3f}",
                         "search ms/query": f"{result.summary['search_ms_per_query']:.1f}"})
        gains[mode] = paired_difference([r["ndcg@10"] for r in before[mode].per_query],
                                        [r["ndcg@10"] for r in after[mode].per_query])
    print(table(rows))
    for mode, gain in gains.items():
        print(f"tuned - shipped, {mode}: nDCG@10 {gain['mean']:+.3f} [{gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]")
    print(f"{len(choose_on.qrels)} train queries, dense nDCG@10: shipped {base_train:.3f}, "
          + ", ".join(f"lr {r:g} {v['train_ndcg@10_dense']:.3f}" for r, v in runs.items()))
    payload = {"pairs": len(pairs), "kind": args.pairs, "epochs": args.epochs, "batch": args.batch, "chosen_rate": rate, "train_ndcg@10_dense_shipped": base_train,
               "runs": {str(r): {k: v for k, v in run.items() if k != "bot"} for r, run in runs.items()},
               "test": {mode: {"shipped": before[mode].summary, "tuned": after[mode].summary, "gain": gains[mode]}
                        for mode in gains},
               "peak_rss_mb": peak_rss_mb()}
    print(f"saved {save(f'retriever_tuning_{args.pairs}', payload)}")


if __name__ == "__main__":
    main()
