"""Exploration behind docs/benchmarks.md §16: does the coverage ranker quote better sentences when
a question token may also be covered by the heading a sentence stands under (its document's
title and section)? Development sets only (tests/data/corpus_qa*.jsonl answerable rows and
bench/data/follow_ups*_dev.jsonl); ROUGE-L of the sentence ranked first; never the frozen set.

    python bench/explore_heading_coverage.py [DATA_DIR]

Variants: the shipped coverage; coverage over the sentence's tokens plus its heading's ("with
heading") or its title's ("with title"); the mean of the shipped and "with heading".
"""
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from common import first_sentence_rouge, print_paired  # noqa: E402
from ragbot import RagBot  # noqa: E402
from ragbot.answer.evidence import WORST_SHARE, candidates, worst_share  # noqa: E402

bot = RagBot.open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ragbot-explore-headings", default_corpus=None)
if not bot.store.all_chunks():
    bot.ingest([ROOT / "corpus"])
ranker = bot.evidence_ranker
single = [json.loads(line) for f in sorted((ROOT / "tests" / "data").glob("corpus_qa*.jsonl")) for line in open(f)]
single = [r for r in single if r.get("answerable")]
follow = [json.loads(line) for f in sorted((ROOT / "bench" / "data").glob("follow_ups*_dev.jsonl")) for line in open(f)]


def heading(passage) -> str:
    parts = [passage.title] + ([passage.section.split(" > ")[-1]] if passage.section else [])
    return " ".join(dict.fromkeys(part for part in parts if part))


def coverage(asked, matched) -> list[float]:
    weights = ranker._weights(asked.pieces)
    return [worst_share((asked.tokens @ m.T).max(axis=1), weights, WORST_SHARE) for m in matched]


def scores(queries, passages):
    """The candidate sentences and each variant's scores (the mean over `queries`)."""
    pool = candidates(passages)
    if not pool:
        return None, None
    told = bot.embedder.encode_tokens([s for _, s in pool])
    headings = bot.embedder.encode_tokens([heading(p) for p in passages])
    titles = bot.embedder.encode_tokens([p.title for p in passages])
    readings = {"shipped": [s.tokens for s in told],
                "with heading": [np.vstack([s.tokens, headings[n - 1].tokens]) for (n, _), s in zip(pool, told)],
                "with title": [np.vstack([s.tokens, titles[n - 1].tokens]) for (n, _), s in zip(pool, told)]}
    asked = bot.embedder.encode_tokens(list(queries))
    out = {name: np.mean([coverage(q, matched) for q in asked], axis=0) for name, matched in readings.items()}
    out["mean of shipped and with heading"] = (out["shipped"] + out["with heading"]) / 2
    return pool, out


print_paired(first_sentence_rouge(bot, single, follow, scores), "shipped")
for question in ["What is a VAE?", "What is a GAN?", "What is retrieval-augmented generation?"]:
    pool, by_variant = scores([question], bot.search(question, k=5))
    print(question)
    for name, v in by_variant.items():
        print(f"  {name:34s} {pool[int(np.argmax(v))][1][:80]}")
