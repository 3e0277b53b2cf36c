"""Exploration: does a second turn searched together with the question before ask about what that
search found (a follow-up), or about another subject?

A follow-up ("In which year?") asks about what the joined search finds; a question on another
subject ("What is the capital of Australia?") only dilutes the question before, whose passage
was then quoted for it (docs/benchmarks.md §29, §33). For each second turn of the development
sets, this prints how the bot searched it before (every turn that finds more joined is joined:
`follow_up_rank` 0) and now, whether each was refused, and, for a turn joined before, its rank
among the data dir's logged questions (evidence.turn_rank: the share of them that, put after the
same question before, come less close) for three targets:
- the joined search's first passage (what RagBot.standalone_query ranks the turn for);
- the sentence of the joined search the answer check scores best;
- the sentence quoted before (chosen with the turn's own scores: biased toward the turn).

    python bench/explore_turn_direction.py --work /tmp/ot

The data dir holds what bench_answers.py's does (the shipped corpus, the frozen set's documents,
the two shared PDFs) and, as its answer log, the development questions (corpus_qa*.jsonl and the
three follow-up sets; the off-topic turns are not logged). Development sets only (looked at
freely). Also times the check itself on those turns. Writes bench/results/turn_direction.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_answers import documents, log_questions, prepare  # noqa: E402
from common import ROOT, save  # noqa: E402

SETS = ["follow_ups_dev.jsonl", "follow_ups_same_sentence_dev.jsonl", "topic_changes_dev.jsonl",
        "off_topic_turns_dev.jsonl"]
LOGGED = [*sorted(str(p) for p in (ROOT / "tests" / "data").glob("corpus_qa*.jsonl")),
          *(str(ROOT / "bench" / "data" / name) for name in SETS[:3])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a folder for the data dir (kept between runs)")
    args = parser.parse_args()
    from ragbot import RagBot
    from ragbot.answer.evidence import candidates, turn_rank
    from ragbot.answer.generation import strip_citation_marks

    data_dir = args.work / "data"
    if not data_dir.exists():
        args.work.mkdir(parents=True, exist_ok=True)
        prepare(data_dir, documents(shared=True), None)
        log_questions(data_dir, LOGGED, None)
    bot = RagBot.open(data_dir, default_corpus=None)
    encode = bot.embedder.encode
    before = bot.with_settings(follow_up_rank=0.0)  # every turn that finds more joined is joined, as before
    results = {}
    for name in SETS:
        rows = [json.loads(line) for line in open(ROOT / "bench" / "data" / name, encoding="utf-8") if line.strip()]
        out = []
        for row in rows:
            previous, turn = row["previous"], row["question"]
            old, new = before.standalone_query([previous], turn), bot.standalone_query([previous], turn)
            entry = {"turn": turn, "answerable": row["answerable"], "joined_before": old != turn, "joined": new != turn}
            for key, query, which in (("refused_before", old, before), ("refused", new, bot)):
                answer = which.ask(turn, retrieval_query=query, record=False)
                entry[key] = answer.refused
                entry[key.replace("refused", "quote")] = None if answer.refused else strip_citation_marks(answer.answer)
            together = bot.search(old) if old != turn else []
            if together:  # the rank standalone_query takes, and of two sentences tried before it
                others = bot._comparison_questions(previous, turn) or []
                sentences = [sentence for _, sentence in candidates(together, bot.abbreviations())]
                judged = sentences[int(np.argmax(bot.evidence_scorer.score(old, sentences)))]
                targets = {"rank": together[0].text, "rank_best_sentence": judged,
                           "rank_quote": entry["quote_before"] or judged}
                vectors = encode([old, *targets.values(), *(f"{previous} {q}" for q in others)])
                for n, key in enumerate(targets, start=1):
                    entry[key] = turn_rank(vectors[0], vectors[n], vectors[1 + len(targets):])
                started = time.perf_counter()  # what the check costs a turn, as standalone_query runs it
                turn_rank(*bot._turn_vectors(previous, old, together[0].text,
                                             bot._comparison_questions(previous, turn) or []))
                entry["check_ms"] = (time.perf_counter() - started) * 1000
            out.append(entry)
        results[name] = out
        print(f"\n{name}  (answerable?, searched joined before -> now, rank for the first passage, the best "
              f"sentence, the quote before; refused before -> now, the turn, the quote now)")
        for e in out:
            rank = f"rank {e['rank']:.2f} {e['rank_best_sentence']:.2f} {e['rank_quote']:.2f}" if "rank" in e else " " * 19
            print(f"  {'ans' if e['answerable'] else 'UNA'} {'J' if e['joined_before'] else 'a'}->{'J' if e['joined'] else 'a'} "
                  f"{rank} {'R' if e['refused_before'] else '-'}->{'R' if e['refused'] else '-'} {e['turn'][:45]!r} "
                  f"-> {(e['quote'] or '')[:50]!r}")
        for answerable in (True, False):
            part = [e for e in out if e["answerable"] == answerable]
            if part:
                print(f"  {'answerable' if answerable else 'unanswerable'}: refused {sum(e['refused_before'] for e in part)}"
                      f" -> {sum(e['refused'] for e in part)} of {len(part)}")
    check_ms = sorted(e["check_ms"] for out in results.values() for e in out if "check_ms" in e)
    print(f"\nthe check (the comparison questions and turn_rank, {len(check_ms)} turns): median {statistics.median(check_ms):.0f} ms, "
          f"90th percentile {check_ms[int(0.9 * len(check_ms))]:.0f} ms")
    save("turn_direction", {"results": results, "check_ms": check_ms})


if __name__ == "__main__":
    main()
