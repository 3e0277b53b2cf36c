"""Exploration behind docs/benchmarks.md §15: how the coverage ranker should weigh a question's
tokens. Its IDF comes from the user's chunks, where question words ("who", "does") are rare, so
they weigh as much as the words that name what is asked. Variants, scored by the ROUGE-L of the
sentence each ranks first, on development sets only (tests/data/corpus_qa*.jsonl answerable rows,
and the follow-ups of bench/data/follow_ups*_dev.jsonl); never the frozen set.

    python bench/explore_question_weights.py
"""
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from common import print_paired  # noqa: E402
from ragbot import RagBot  # noqa: E402
from ragbot.answer.evidence import WORST_SHARE, candidates, worst_share  # noqa: E402
from ragbot.evaluation.metrics import best_of, rouge_l  # noqa: E402

DATA = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ragbot-explore-weights")
bot = RagBot.open(DATA, default_corpus=None)
if not bot.store.all_chunks():
    bot.ingest([ROOT / "corpus"])
ranker = bot.evidence_ranker

follow = [json.loads(line) for f in sorted((ROOT / "bench" / "data").glob("follow_ups*_dev.jsonl")) for line in open(f)]


def matrix(question, told):
    """Per sentence, each question token's best cosine with a sentence token; and the IDF weights."""
    asked = bot.embedder.encode_tokens([question])[0]
    sims = np.stack([(asked.tokens @ s.tokens.T).max(axis=1) if len(s.tokens) else np.full(len(asked.tokens), -1.0)
                     for s in told])
    return sims, ranker._weights(asked.pieces), asked.pieces


def pieces_of(text):
    return set(bot.embedder.tokenizer.convert_ids_to_tokens(bot.embedder.tokenizer(text, add_special_tokens=False)["input_ids"]))


def question_idf(questions):
    """A token's IDF over a log of questions: ~0 for what every question has ("what", "?")."""
    counts = {}
    for question in questions:
        for piece in pieces_of(question):
            counts[piece] = counts.get(piece, 0) + 1
    n = len(questions)
    return lambda pieces: np.array([np.log((n + 1) / (counts.get(p, 0) + 0.5)) / np.log((n + 1) / 0.5) for p in pieces])


LOG = None  # the question log the current row may use (set per row)


def variants(sims, w, pieces):
    """Scores of every sentence (rows of sims) under each weighting."""
    q = lambda m, ww: np.array([worst_share(row, ww, WORST_SHARE) for row in m])  # noqa: E731
    spread = sims.max(axis=0) - sims.mean(axis=0)
    std = sims.std(axis=0)
    out = {"idf (shipped)": q(sims, w),
           "centred": q(sims - sims.mean(axis=0), w),
           "idf x spread": q(sims, w * spread) if (w * spread).sum() > 0 else q(sims, w),
           "idf x std": q(sims, w * std) if (w * std).sum() > 0 else q(sims, w),
           "idf-weighted mean": (sims * w).sum(axis=1) / max(w.sum(), 1e-9),
           "idf x spread, mean": (sims * w * spread).sum(axis=1) / max((w * spread).sum(), 1e-9)}
    wq = w * LOG(pieces)
    if wq.sum() > 0:
        out["idf x question-idf"] = q(sims, wq)
        out["idf x question-idf, mean"] = (sims * wq).sum(axis=1) / wq.sum()
    else:
        out["idf x question-idf"] = out["idf (shipped)"]
        out["idf x question-idf, mean"] = out["idf-weighted mean"]
    return out


def top_rouge(query_parts, passages, references):
    pool = candidates(passages)
    if not pool:
        return None
    told = bot.embedder.encode_tokens([s for _, s in pool])
    per = [variants(*matrix(q, told)) for q in query_parts]
    result = {}
    for name in per[0]:
        scores = np.mean([p[name] for p in per], axis=0)
        result[name] = best_of(rouge_l, pool[int(np.argmax(scores))][1], references)
    return result


single = [dict(json.loads(line), file=f.name) for f in sorted((ROOT / "tests" / "data").glob("corpus_qa*.jsonl"))
          for line in open(f)]
# The question log a row may use: every dev question of the other files (as a user's earlier questions).
logs = {name: question_idf([r["question"] for r in single if r["file"] != name]) for name in {r["file"] for r in single}}
every_question = question_idf([r["question"] for r in single])
single = [r for r in single if r.get("answerable") and not r.get("previous")]
records = {"single": [], "follow-up": []}
for row in single:
    LOG = logs[row["file"]]
    r = top_rouge([row["question"]], bot.search(row["question"], k=5), row["answers"])
    if r:
        records["single"].append(r)
LOG = every_question
for row in follow:
    query = bot.standalone_query([row["previous"]], row["question"])
    parts = [query] + ([row["question"]] if query != row["question"] else [])
    r = top_rouge(parts, bot.search(query, k=5), row["answers"])
    if r:
        records["follow-up"].append(r)
print_paired(records, "idf (shipped)", width=22)
