"""Exploration for docs/benchmarks.md §19: BM25 with each query word piece also matching its
neighbours in the embedder's own input-embedding table ("depart" also matches "departure",
"departing"; "cells" matches "cell"), each neighbour weighted by its cosine, above a cutoff.
Words matched across their forms, with no stemmer and no word list: the neighbours come from
the shipped MiniLM's vocabulary table, and only pieces the index holds are added.

    python bench/explore_lexical_expansion.py [--cutoffs 0.7,0.6,0.5] [--test CUTOFF] [--data-dir DIR]

Development: SciFact's 809 train queries (nDCG@10, bm25 and hybrid, the index of
bench_scifact.py) and the forms development set (bench/data/pdf_forms_dev.jsonl: a passage
holding the answer first / in the top 5; the PDF data dir of explore_lexical_question_weights.py).
With `--test C` the cutoff C (chosen on those) is also run once on the frozen sets: SciFact's 300
test queries and the hard PDF set (tests/data/frozen/pdf_retrieval_hard.jsonl), totals only.
The search is the bot's own (dense from FAISS, BM25 scores from bm25s' stored term scores,
reciprocal-rank fusion with the bot's weight), with the expansion added to BM25's query only.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import numpy as np

from common import ROOT, machine, save, shared_data

FORMS = ROOT / "bench" / "data" / "pdf_forms_dev.jsonl"
HARD = ROOT / "tests" / "data" / "frozen" / "pdf_retrieval_hard.jsonl"


class Expander:
    """A query's word pieces and their neighbours among the index's terms, with weights."""

    def __init__(self, bot, lexical):
        model = bot.embedder._model
        table = model[0].auto_model.embeddings.word_embeddings.weight.detach().float().numpy()
        table = table / np.linalg.norm(table, axis=1, keepdims=True)
        vocab = lexical._retriever.vocab_dict
        per_term = np.diff(lexical._retriever.scores["indptr"])
        tokenizer_ids = model.tokenizer.vocab
        self.terms = [t for t, i in vocab.items() if t in tokenizer_ids and i < len(per_term) and per_term[i] > 0]
        self.table, self.ids = table, tokenizer_ids
        self.held = table[[tokenizer_ids[t] for t in self.terms]]
        self.vocab = vocab

    def __call__(self, pieces: list[str], cutoff: float | None) -> tuple[list[str], np.ndarray]:
        terms = [t for t in pieces if t in self.vocab]
        weights = [1.0] * len(terms)
        if cutoff is not None:
            for piece in dict.fromkeys(pieces):
                if piece not in self.ids:
                    continue
                sims = self.held @ self.table[self.ids[piece]]
                for j in np.flatnonzero(sims >= cutoff):
                    if self.terms[j] not in pieces:
                        terms.append(self.terms[j])
                        weights.append(float(sims[j]))
        return terms, np.array(weights)


def rankings(bot, queries: list[str], cutoff: float | None, mode: str, k: int) -> list[list[int]]:
    from ragbot.bot import FUSION_DEPTH
    from ragbot.retrieve.lexical import fuse

    index, lexical, _ = bot._search_snapshot(True)
    expander = bot._expander = getattr(bot, "_expander", None) or Expander(bot, lexical)
    depth = max(k, FUSION_DEPTH)
    found = []
    pieces = bot.embedder.word_pieces(queries)
    dense = index.search(bot.embedder.encode(queries), depth)[1] if mode == "hybrid" else None
    for i, tokens in enumerate(pieces):
        terms, weights = expander(tokens, cutoff)
        words = []
        if terms:
            rows, scores = lexical._weighted_search(terms, weights, depth, None)
            words = [int(lexical.ids[r]) for r, s in zip(rows, scores) if s > 0]
        if mode == "bm25":
            found.append(words[:k])
        else:
            found.append(fuse([[int(c) for c in dense[i] if c >= 0], words], (1.0, bot.settings.lexical_weight), k))
    return found


def scifact_ndcg(bot, data, cutoff, mode) -> list[float]:
    from ragbot.evaluation.metrics import _doc_id_of, ndcg_at_k

    ids = sorted(data.qrels)
    found = rankings(bot, [data.queries[q] for q in ids], cutoff, mode, 100)
    chunks = bot.store.chunks(sorted({c for row in found for c in row}))
    values = []
    for q, row in zip(ids, found):
        docs = list(dict.fromkeys(_doc_id_of(chunks[c].source) for c in row if c in chunks))
        values.append(ndcg_at_k(docs, data.qrels[q], 10))
    return values


def compare(label, base, other) -> dict:
    from ragbot.evaluation.metrics import paired_difference

    d = paired_difference(base, other)
    print(f"{label} (n={len(base)}): {np.mean(base):.3f} -> {np.mean(other):.3f}, paired {d['mean']:+.3f} "
          f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]", flush=True)
    return {"set": label, "n": len(base), "without": float(np.mean(base)), "with": float(np.mean(other)), "difference": d}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cutoffs", default="0.7,0.6,0.5")
    parser.add_argument("--test", type=float, help="the cutoff chosen on development, run once on the frozen sets")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent / ".cache"))
    args = parser.parse_args()
    print(machine(), flush=True)
    from bench_pdf_retrieval import _on_gold_page
    from ragbot import RagBot
    from ragbot.evaluation.metrics import load_beir

    cache = Path(args.data_dir)
    cutoffs = [float(c) for c in args.cutoffs.split(",") if c]
    lines = []
    folder = shared_data("scifact")
    if folder is not None:
        bot = RagBot.open(cache / "scifact" / "data", default_corpus=None, retrieval="hybrid")
        train = load_beir(folder, "train")
        for mode in ("bm25", "hybrid"):
            base = scifact_ndcg(bot, train, None, mode)
            for c in cutoffs:
                lines.append(compare(f"scifact train, {mode}, cutoff {c}, nDCG@10", base, scifact_ndcg(bot, train, c, mode)))
            if args.test is not None:
                test = load_beir(folder, "test")
                lines.append(compare(f"scifact TEST, {mode}, cutoff {args.test}, nDCG@10",
                                     scifact_ndcg(bot, test, None, mode), scifact_ndcg(bot, test, args.test, mode)))
        bot.close()
    if shared_data("pdfs") is not None and (cache / "pdfs" / "ragbot.db").is_file():
        bot = RagBot.open(cache / "pdfs", default_corpus=None)
        forms = [json.loads(line) for line in FORMS.read_text().splitlines() if line.strip()]
        texts = {}
        for mode in ("hybrid", "bm25"):
            for c in [None, *cutoffs]:
                found = rankings(bot, [q["question"] for q in forms], c, mode, 5)
                chunks = bot.store.chunks(sorted({i for row in found for i in row}))
                texts[(mode, c)] = [[float(any(a in chunks[i].text for a in q["answers"] for i in row[:k] if i in chunks))
                                     for q, row in zip(forms, found)] for k in (1, 5)]
            for c in cutoffs:
                for j, k in enumerate((1, 5)):
                    lines.append(compare(f"forms, {mode}, cutoff {c}, answer in top {k}",
                                         texts[(mode, None)][j], texts[(mode, c)][j]))
        if args.test is not None:
            hard = [json.loads(line) for line in HARD.read_text().splitlines() if line.strip()]
            with sqlite3.connect(f"file:{bot.settings.db_path}?mode=ro", uri=True) as db:
                pages = {cid: (p, e) for cid, p, e in db.execute("SELECT id, page, page_end FROM chunks")}
            for mode in ("hybrid", "bm25"):
                hits = {}
                for c in (None, args.test):
                    found = rankings(bot, [q["question"] for q in hard], c, mode, 5)
                    passages = bot.store.chunks(sorted({i for row in found for i in row}))
                    hits[c] = [[float(any(_on_gold_page(passages[i].as_passage(0.0, 1), q, pages) for i in row[:k]))
                                for q, row in zip(hard, found)] for k in (1, 5)]
                for j, k in enumerate((1, 5)):
                    lines.append(compare(f"hard PDF set (frozen), {mode}, cutoff {args.test}, hit@{k}",
                                         hits[None][j], hits[args.test][j]))
        bot.close()
    print(f"saved {save('explore_lexical_expansion', {'lines': lines})}")


if __name__ == "__main__":
    main()
