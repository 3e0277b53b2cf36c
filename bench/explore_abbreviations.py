"""Exploration behind docs/benchmarks.md §17: does searching with a question's abbreviations spelled
out as the documents define them find better passages? Tried, not adopted.

The documents' definitions ("Variational Autoencoders (VAEs)") are found by the Schwartz-Hearst
algorithm (the `abbreviations` package: pip install abbreviations==0.2.5; not a ragbot
dependency), per stored document, each short form taking the long form most documents give it.
A question's short form (as written, or its plural: "VAE" for "VAEs") is then

- replaced by the long form ("Who introduced Variational Autoencoders?"), or
- followed by it ("Who introduced VAEs (Variational Autoencoders)?"),

for the search only (the sentences are still ranked and judged on the question as asked), or,
replaced, for everything ("answer": the question given to `RagBot.ask` is the spelled-out one),
or for the ranking only, each sentence taking the better of its coverage scores for the question
as asked and spelled out ("rank, better of both": a sentence that uses the short form keeps its
score, one that uses the long form can gain; search and the answer check read the question as
asked).

    python bench/explore_abbreviations.py [DATA_DIR]

1. Answers on the development sets (tests/data/corpus_qa*.jsonl, bench/data/*_dev.jsonl): only
   the rows whose question, or the question before it, holds a defined short form can change,
   so only those are asked; ROUGE-L of the answer, refusals. Never the frozen set.
2. Retrieval on SciFact (needs ../shared/data/scifact and the data dir bench/bench_scifact.py
   keeps in bench/.cache): nDCG@10 of dense and hybrid search, train and test queries.
"""
import json
import logging
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, shared_data  # noqa: E402

from ragbot import RagBot  # noqa: E402
from ragbot.evaluation.metrics import best_of, evaluate_retrieval, load_beir, paired_difference, rouge_l  # noqa: E402
from ragbot.text import plain, sentences  # noqa: E402

_root = logging.getLogger()
_handlers, _level = _root.handlers[:], _root.level
from abbreviations import schwartz_hearst  # noqa: E402  (it calls logging.basicConfig(level=INFO))

_root.handlers[:] = _handlers
_root.setLevel(_level)


def defined(text: str) -> Counter:
    found = Counter()
    for sentence in sentences(plain(text)):  # plain() joins a PDF's wrapped lines
        if "(" in sentence:
            found.update(schwartz_hearst.extract_abbreviation_definition_pairs(doc_text=sentence).items())
    return found


def known_abbreviations(bot) -> dict[str, str]:
    """Short form -> the long form most documents give it."""
    by_document: dict[str, Counter] = {}
    for chunk in bot.store.all_chunks():
        by_document.setdefault(chunk.source, Counter()).update(defined(chunk.text))
    votes = Counter()
    for found in by_document.values():
        chosen = {}
        for (short, long), _ in found.most_common():
            chosen.setdefault(short, " ".join(long.split()))
        votes.update((short, long.lower()) for short, long in chosen.items())
    known = {}
    for (short, long), _ in votes.most_common():
        if any(ch.isupper() for ch in short):  # "rh" would match plain words
            known.setdefault(short, long)
            known.setdefault(stem(short), long)
    return known


def stem(short: str) -> str:
    """"VAEs" -> "VAE": a lower-case ending after two capitals or more."""
    body = short.rstrip("abcdefghijklmnopqrstuvwxyz")
    return body if body != short and sum(ch.isupper() for ch in body) >= 2 and body[-1].isupper() else short


def expand(question: str, known: dict[str, str], keep_short: bool) -> str:
    import re

    def spelled(match):
        token = match.group()
        long = known.get(token) or known.get(stem(token))
        if not long or long in question.lower():
            return token
        return f"{token} ({long})" if keep_short else long

    return re.sub(r"[\w-]+", spelled, question)


def searching_with(bot, known, keep_short: bool | None):
    """`bot` whose searches (first questions and follow-up queries) read spelled-out questions."""
    if keep_short is None:
        return bot
    other = bot.with_settings()
    other._embedder = bot.embedder
    other.batch_search = lambda queries, k=None, sources=None: RagBot.batch_search(
        other, [expand(q, known, keep_short) for q in queries], k, sources)
    return other


def ranking_with(bot, known):
    """`bot` whose coverage ranker scores each sentence by the better of the question as asked and
    spelled out (the cosines that judge stay the question's own)."""
    import numpy as np

    other = bot.with_settings()
    other._embedder = bot.embedder
    ranker = other.evidence_ranker
    plain_scores = ranker.score_with_cosine

    def better_of_both(question, sentences, also=()):
        coverages, cosines = plain_scores(question, sentences, also)
        spelled = expand(question, known, False)
        spelled_also = [expand(q, known, False) for q in also]
        if spelled != question or spelled_also != list(also):
            coverages = [np.maximum(a, b) for a, b in zip(coverages, plain_scores(spelled, sentences, spelled_also)[0])]
        return coverages, cosines

    ranker.score_with_cosine = better_of_both
    return other


def answers(bot, rows, known, variant):
    keep_short = {"as asked": None, "search, replaced": False, "search, followed": True, "answer, replaced": None,
                  "rank, better of both": None}[variant]
    asker = searching_with(bot, known, keep_short)
    if variant == "rank, better of both":
        asker = ranking_with(bot, known)
    spell = (lambda q: expand(q, known, False)) if variant == "answer, replaced" else (lambda q: q)
    out = []
    for row in rows:
        trace = {}
        if row.get("previous"):
            trace = {"retrieval_query": asker.standalone_query([spell(row["previous"])], spell(row["question"]))}
        answer = asker.ask(spell(row["question"]), record=False, **trace)
        if row["answerable"]:
            out.append(0.0 if answer.refused else best_of(rouge_l, answer.answer, row["answers"]))
        else:
            out.append(float(answer.refused))
    return out


def dev_answers(data_dir: str) -> None:
    bot = RagBot.open(data_dir, default_corpus=None)
    if not bot.store.all_chunks():
        bot.ingest([ROOT / "corpus"])
    known = known_abbreviations(bot)
    print("defined in the shipped corpus:", {k: v for k, v in known.items()})
    files = sorted((ROOT / "tests" / "data").glob("corpus_qa*.jsonl")) + sorted((ROOT / "bench" / "data").glob("*_dev.jsonl"))
    rows = [json.loads(line) for f in files for line in open(f) if line.strip()]
    rows = [r for r in rows if r.get("needs") != "shared_pdfs"
            and any(expand(q, known, False) != q for q in (r["question"], r.get("previous", "")))]
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    print(f"{len(rows)} development rows hold a defined short form ({len(answerable)} answerable)")
    base = None
    variants = sys.argv[2].split(";") if len(sys.argv) > 2 else [
        "as asked", "search, replaced", "search, followed", "answer, replaced", "rank, better of both"]
    for variant in variants:
        scores = answers(bot, answerable, known, variant)
        refused_unanswerable = sum(answers(bot, unanswerable, known, variant))
        line = f"{variant:18s} ROUGE-L {sum(scores) / len(scores):.3f}  unanswerable refused {refused_unanswerable:.0f}/{len(unanswerable)}"
        if base is None:
            base = scores
        else:
            d = paired_difference(base, scores)
            line += f"  vs as asked {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        print(line, flush=True)


def scifact() -> None:
    folder, data_dir = shared_data("scifact"), ROOT / "bench" / ".cache" / "scifact" / "data"
    if folder is None or not (data_dir / "ragbot.db").exists():
        print("SciFact: needs ../shared/data/scifact and bench/bench_scifact.py run once")
        return
    bot = RagBot.open(data_dir, default_corpus=None)
    known = known_abbreviations(bot)
    print(f"SciFact: {len(known)} short forms defined in the abstracts")
    for split in ("train", "test"):
        data = load_beir(folder, split)
        for mode in ("dense", "hybrid"):
            searching = bot.with_settings(retrieval=mode)
            as_asked = [r["ndcg@10"] for r in evaluate_retrieval(searching, data, k=10).per_query]
            line = f"{split} ({len(data.qrels)}) {mode}: as asked {sum(as_asked) / len(as_asked):.3f}"
            for keep_short, name in ((False, "replaced"), (True, "followed")):
                spelled = replace(data, queries={q: expand(t, known, keep_short) for q, t in data.queries.items()})
                got = [r["ndcg@10"] for r in evaluate_retrieval(searching, spelled, k=10).per_query]
                d = paired_difference(as_asked, got)
                line += f"; {name} {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
            print(line, flush=True)


if __name__ == "__main__":
    dev_answers(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ragbot-explore-abbreviations")
    if len(sys.argv) <= 2:
        scifact()
