"""Exploration behind docs/benchmarks.md §15 ("Token weights from the user's own question log,
through the bot"): rank the sentences to quote with each question token's weight also times its
IDF over the questions the user asked before (the answer log), so that "what" or "wer", which
most questions hold, stops weighing as much as the subject. Measured through `RagBot.ask` on the
development sets only, split in two halves, each answered in a data dir whose answer log holds
the other half's questions (as a user's earlier questions); never the frozen set.

    python bench/explore_question_log_ranking.py [WORK_DIR]

Variants of the coverage ranker (refusal is the cosine's in all, so refusals do not change):
the shipped worst quarter; the same with the question-log weights; the weighted mean; the mean
with the log weights; the worst half with the log weights. Prints ROUGE-L on the answerable rows
and the paired difference to the shipped ranker with its bootstrap 95% interval.
"""
import json
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
from ragbot import RagBot  # noqa: E402
from ragbot.answer.evidence import CoverageScorer, worst_share  # noqa: E402
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


class QuestionFrequencies:
    """terms -> (how many logged questions hold each, how many there are), reading only the
    answers logged since the last call."""

    def __init__(self, bot):
        self.bot, self.counts, self.read, self.n, self.lock = bot, Counter(), 0, 0, threading.Lock()

    def __call__(self, pieces):
        with self.lock:
            rows = self.bot.store._db.execute("SELECT rowid, question FROM answers WHERE rowid > ? ORDER BY rowid",
                                              (self.read,)).fetchall()
            for held in self.bot.embedder.word_pieces([q for _, q in rows]):
                self.counts.update(set(held))
            if rows:
                self.n, self.read = self.n + len(rows), rows[-1][0]
            return np.array([self.counts.get(p, 0) for p in pieces]), self.n


class LogWeighted(CoverageScorer):
    """The coverage ranker with each token's IDF in the chunks times its scaled IDF over the log
    (1 for a token no logged question holds; about 0 for one every question holds); `share=None`
    is the weighted mean instead of a quantile."""

    def __init__(self, bot, share, log=True):
        super().__init__(bot.embedder, bot._document_frequencies)
        self.share, self.log = share, QuestionFrequencies(bot) if log else None

    def _weights(self, pieces):
        weights = super()._weights(pieces)
        if self.log is not None:
            counts, n = self.log(pieces)
            if n:
                weights = weights * np.log((n + 1) / (counts + 0.5)) / np.log((n + 1) / 0.5)
        return weights

    def _coverage(self, asked, told):
        weights = self._weights(asked.pieces)
        if self.share is not None:
            return np.array([worst_share((asked.tokens @ s.tokens.T).max(axis=1), weights, self.share)
                             if len(s.tokens) else -1.0 for s in told])
        return np.array([float((asked.tokens @ s.tokens.T).max(axis=1) @ weights / weights.sum())
                         if len(s.tokens) else -1.0 for s in told])


scores: dict[str, list[float]] = {}
for half, other in (("a", "b"), ("b", "a")):
    bot = RagBot.open(WORK / f"data-{half}", default_corpus=None)
    if not bot.store.all_chunks():
        bot.ingest([ROOT / "corpus"])
        for row in rows_of(HALVES[other]):  # the other half's questions, as asked before
            bot.ask(row["question"])
    variants = {"worst quarter (shipped)": None, "worst quarter, log weights": LogWeighted(bot, 0.25),
                "weighted mean": LogWeighted(bot, None, log=False), "weighted mean, log weights": LogWeighted(bot, None),
                "worst half, log weights": LogWeighted(bot, 0.5)}
    shipped = bot.evidence_ranker
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
            bot._ranker = scorer or shipped
            answer = bot.ask(row["question"], record=False, **trace)
            scores.setdefault(name, []).append(0.0 if answer.refused else best_of(rouge_l, answer.answer, row["answers"]))

base = scores["worst quarter (shipped)"]
print(f"{len(base)} answerable development rows; ROUGE-L, paired difference to the shipped ranker [95% CI]")
for name, values in scores.items():
    d = paired_difference(base, values)
    print(f"  {name:28s} {np.mean(values):.3f}  {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
          f"  better {sum(v > b for v, b in zip(values, base))}, worse {sum(v < b for v, b in zip(values, base))}")
