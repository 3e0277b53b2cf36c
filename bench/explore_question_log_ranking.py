"""Exploration behind docs/benchmarks.md §15 ("Token weights from the user's own question log,
through the bot"): rank the sentences to quote with each question token's weight also times its
IDF over the questions the user asked before (the answer log), so that "what" or "wer", which
most questions hold, stops weighing as much as the subject. Measured through `RagBot.ask` on the
development sets only, split in two halves, each answered in a data dir whose answer log holds
the other half's questions (as a user's earlier questions); never the frozen set.

    python bench/explore_question_log_ranking.py [WORK_DIR]

Variants of the coverage ranker (refusal is the cosine's in all, so refusals do not change):
the worst quarter (the default until section 18); the same with the question-log weights; the
weighted mean; the mean with the log weights; the worst half with the log weights. Prints ROUGE-L on the answerable rows
and the paired difference to the worst quarter with its bootstrap 95% interval.
"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
from ragbot import RagBot  # noqa: E402
from ragbot.answer.evidence import CoverageScorer, QuestionLog  # noqa: E402
from ragbot.evaluation.metrics import best_of, paired_difference, rouge_l  # noqa: E402

WORK = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="ragbot-question-log-"))
DEV = ROOT / "tests" / "data"
HALVES = {
    "a": [DEV / f"corpus_qa{s}.jsonl" for s in ("", "_blind", "_blind2", "_blind3")],
    "b": [DEV / f"corpus_qa{s}.jsonl" for s in ("_blind4", "_blind5", "_blind6", "_near_miss")]
    + [ROOT / "bench" / "data" / f for f in ("follow_ups_dev.jsonl", "follow_ups_same_sentence_dev.jsonl",
                                             "topic_changes_dev.jsonl")],
}


def rows_of(files):
    return [json.loads(line) for f in files for line in open(f, encoding="utf-8") if line.strip()]


def ranker(bot, share, log=True):
    """The coverage ranker (ragbot.answer.evidence) with each token's chunk IDF also scaled by its
    IDF over the answer log's questions (QuestionLog; `log=False`: not); `share=None` is the
    weighted mean instead of a quantile. "weighted mean, log weights" is what ships as
    `evidence_ranking = "coverage-questions"` (docs/benchmarks.md section 18)."""
    asked = QuestionLog(bot.embedder.word_pieces, bot.feedback.questions_after) if log else None
    return CoverageScorer(bot.embedder, bot._document_frequencies, asked, share=share)


scores: dict[str, list[float]] = {}
for half, other in (("a", "b"), ("b", "a")):
    bot = RagBot.open(WORK / f"data-{half}", default_corpus=None)
    if not bot.store.all_chunks():
        bot.ingest([ROOT / "corpus"])
        for row in rows_of(HALVES[other]):  # the other half's questions, as asked before
            bot.ask(row["question"])
    variants = {"worst quarter (earlier default)": ranker(bot, 0.25, log=False),
                "worst quarter, log weights": ranker(bot, 0.25), "weighted mean": ranker(bot, None, log=False), "weighted mean, log weights": ranker(bot, None),
                "worst half, log weights": ranker(bot, 0.5)}
    for row in rows_of(HALVES[half]):
        if not row["answerable"]:
            continue
        trace = {}
        if row.get("previous"):
            first = bot.ask(row["previous"], record=False)
            trace = {"retrieval_query": bot.standalone_query([row["previous"]], row["question"]),
                     "history": [{"role": "user", "content": row["previous"]},
                                 {"role": "assistant", "content": first.answer}]}
        for name, scorer in variants.items():
            bot._ranker = scorer
            answer = bot.ask(row["question"], record=False, **trace)
            scores.setdefault(name, []).append(0.0 if answer.refused else best_of(rouge_l, answer.answer, row["answers"]))

base = scores["worst quarter (earlier default)"]
print(f"{len(base)} answerable development rows; ROUGE-L, paired difference to the worst quarter [95% CI]")
for name, values in scores.items():
    d = paired_difference(base, values)
    print(f"  {name:28s} {np.mean(values):.3f}  {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
          f"  better {sum(v > b for v, b in zip(values, base))}, worse {sum(v < b for v, b in zip(values, base))}")
