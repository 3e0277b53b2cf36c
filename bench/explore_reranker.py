"""Exploration for issue #14's optional item: a cross-encoder reranker trained from the shipped
MiniLM's weights, kept only if it pays for its latency. BEIR SciFact, on the index
bench_scifact.py keeps in bench/.cache (made here when missing: about 5 minutes).

    python bench/explore_reranker.py --pairs feedback      # judged train queries stand in for liked answers
    python bench/explore_reranker.py --pairs ict           # the corpus's own text alone (inverse cloze)

Training pairs, one positive and --negatives hard negatives each:
- feedback: four fifths of the judged train queries (qrels/train.tsv), as bench_retriever_tuning.py
  makes them: the gold document's chunk that hybrid search ranks first, and the best-ranked chunks
  of other documents;
- ict: a sentence of a chunk asks for the rest of that chunk (under its title); the negatives are
  the chunks of other documents that hybrid search ranks first for the sentence.
A `CrossEncoder` from the shipped MiniLM (a new one-logit head) learns them with sentence-transformers'
trainer and `BinaryCrossEntropyLoss`. Then the first --depth chunks of hybrid search are reordered
by the reranker alone, or by reciprocal-rank fusion of its order with the search's. Which of the
two is chosen on the held-out fifth of the train queries; the 300 test queries are only scored,
every way, with paired bootstrap intervals against hybrid search. Needs ../shared/data/scifact;
without it says so and exits 0.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

from common import SHARED, machine, save, scifact_bot, table

WORK = Path(__file__).resolve().parent / ".cache"


def passage_text(p) -> str:
    return f"{p.title}\n{p.text}"


def feedback_pairs(bot, data, query_ids, negatives: int):
    from ragbot.evaluation.metrics import _doc_id_of

    found = bot.batch_search([data.queries[q] for q in query_ids], k=30)
    pairs = []
    for qid, passages in zip(query_ids, found):
        gold = set(data.qrels[qid])
        positive = next((p for p in passages if _doc_id_of(p.source) in gold), None)
        others = [p for p in passages if _doc_id_of(p.source) not in gold][:negatives]
        if positive is not None and others:
            pairs.append((data.queries[qid], passage_text(positive), [passage_text(p) for p in others]))
    return pairs


def ict_pairs(bot, count: int, negatives: int, rng: random.Random):
    from ragbot.text import sentence_spans

    chunks = bot.store.all_chunks()
    rng.shuffle(chunks)
    made = []
    for chunk in chunks:
        spans = [s for s in sentence_spans(chunk.text) if len(chunk.text[s[0]:s[1]].split()) >= 5]
        if len(spans) < 3:
            continue
        start, end = rng.choice(spans)
        made.append((chunk, chunk.text[start:end].strip(), " ".join((chunk.text[:start] + chunk.text[end:]).split())))
        if len(made) == count:
            break
    found = bot.batch_search([query for _, query, _ in made], k=30)
    pairs = []
    for (chunk, query, rest), passages in zip(made, found):
        others = [p for p in passages if p.source != chunk.source][:negatives]
        if others:
            pairs.append((query, f"{chunk.title}\n{rest}", [passage_text(p) for p in others]))
    return pairs


def train(bot, pairs, out: Path, epochs: float, rate: float, max_length: int, seed: int):
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from ragbot.models import load_plan

    location, _, _ = load_plan(bot.settings, "embedder")
    first, second, labels = [], [], []
    for query, positive, others in pairs:
        first.append(query), second.append(positive), labels.append(1.0)
        for other in others:
            first.append(query), second.append(other), labels.append(0.0)
    model = CrossEncoder(location, num_labels=1, device="cpu", max_length=max_length)
    args = CrossEncoderTrainingArguments(output_dir=str(out), num_train_epochs=epochs, learning_rate=rate,
                                         per_device_train_batch_size=16, warmup_ratio=0.1, save_strategy="no",
                                         logging_steps=50, seed=seed, report_to=[], bf16=False)
    weight = torch.tensor((len(labels) - sum(labels)) / sum(labels))
    started = time.perf_counter()
    CrossEncoderTrainer(model=model, args=args, loss=BinaryCrossEntropyLoss(model, pos_weight=weight),
                        train_dataset=Dataset.from_dict({"sentence1": first, "sentence2": second, "label": labels})).train()
    return model, time.perf_counter() - started, len(labels)


def documents(passages) -> list[str]:
    from ragbot.evaluation.metrics import _doc_id_of

    return list(dict.fromkeys(_doc_id_of(p.source) for p in passages))


def rankings(bot, model, data, query_ids, depth: int):
    """Per query: the hybrid search's documents, and the reranked ones (alone, fused), each the
    first `depth` chunks reordered and the rest of the search after them; and the seconds spent
    reranking."""
    found = bot.batch_search([data.queries[q] for q in query_ids], k=100)
    out, seconds = [], 0.0
    for qid, passages in zip(query_ids, found):
        top = passages[:depth]
        started = time.perf_counter()
        scores = model.predict([(data.queries[qid], passage_text(p)) for p in top], batch_size=32, show_progress_bar=False)
        seconds += time.perf_counter() - started
        by_model = list(np.argsort(-scores, kind="stable"))
        model_rank = {i: r for r, i in enumerate(by_model)}
        fused = sorted(range(len(top)), key=lambda i: -(1 / (60 + i + 1) + 1 / (60 + model_rank[i] + 1)))
        rest = passages[depth:]
        out.append({"hybrid": documents(passages), "reranked": documents([top[i] for i in by_model] + rest),
                    "fused": documents([top[i] for i in fused] + rest)})
    return out, seconds / max(len(query_ids), 1)


def scores(data, query_ids, ranked, system: str) -> list[float]:
    from ragbot.evaluation.metrics import ndcg_at_k

    return [ndcg_at_k(r[system], data.qrels[q], 10) for q, r in zip(query_ids, ranked)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", choices=("feedback", "ict"), default="feedback")
    parser.add_argument("--negatives", type=int, default=3)
    parser.add_argument("--ict-chunks", type=int, default=800)
    parser.add_argument("--depth", type=int, default=20, help="chunks of hybrid search reranked")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    found = scifact_bot(WORK)
    if found is None:
        print(f"no SciFact under {SHARED}: nothing measured")
        return
    from ragbot.evaluation.metrics import bootstrap_ci, paired_difference

    bot, test, train_data = found
    rng = random.Random(args.seed)
    train_ids = sorted(train_data.qrels)
    rng.shuffle(train_ids)
    held = sorted(train_ids[: len(train_ids) // 5])
    learn = train_ids[len(train_ids) // 5:]
    pairs = (feedback_pairs(bot, train_data, learn, args.negatives) if args.pairs == "feedback"
             else ict_pairs(bot, args.ict_chunks, args.negatives, rng))
    print(f"{len(pairs)} training questions ({args.pairs})", flush=True)
    model, seconds, n_pairs = train(bot, pairs, WORK / "reranker-ckpt", args.epochs, args.rate, args.max_length, args.seed)
    print(f"trained on {n_pairs} pairs in {seconds:.0f} s", flush=True)

    held_ranked, _ = rankings(bot, model, train_data, held, args.depth)
    on_held = {s: float(np.mean(scores(train_data, held, held_ranked, s))) for s in ("hybrid", "reranked", "fused")}
    chosen = max(("reranked", "fused"), key=on_held.get)
    print("held-out train queries, nDCG@10:", {k: round(v, 3) for k, v in on_held.items()}, "->", chosen, flush=True)

    test_ids = sorted(test.qrels)
    test_ranked, ms = rankings(bot, model, test, test_ids, args.depth)
    base = scores(test, test_ids, test_ranked, "hybrid")
    rows = []
    for system in ("hybrid", "reranked", "fused"):
        values = scores(test, test_ids, test_ranked, system)
        low, high = bootstrap_ci(values)
        gain = paired_difference(base, values) if system != "hybrid" else None
        rows.append({"system": system + (" (chosen on held-out train queries)" if system == chosen else ""),
                     "nDCG@10 [95% CI]": f"{np.mean(values):.3f} [{low:.3f}, {high:.3f}]",
                     "minus hybrid [95% CI]": "" if gain is None else
                     f"{gain['mean']:+.3f} [{gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]",
                     "rerank ms/query": "" if system == "hybrid" else f"{ms * 1000:.0f}"})
    print(machine())
    print(table(rows))
    save(f"reranker-{args.pairs}", {"args": vars(args), "held": on_held, "chosen": chosen, "test": rows,
                                     "train_seconds": seconds, "pairs": n_pairs})


if __name__ == "__main__":
    sys.exit(main())
