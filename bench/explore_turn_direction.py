"""Exploration: does a second turn searched together with the question before ask about what that
search found (a follow-up), or about another subject?

A follow-up ("In which year?") asks about what the joined search finds; a question on another
subject ("What is the capital of Australia?") only dilutes the question before, whose passage
was then quoted for it (docs/benchmarks.md §29, §33, §34). For each second turn of the development
sets, this prints how the bot searched it before (every turn that finds more joined is joined:
`follow_up_rank` 0) and now, whether each was refused, and, for a turn joined before, its rank
for the joined search's first passage (evidence.turn_rank: the share of the comparison texts
that, put after the same question before, come less close to it) among four sets of texts:
- the logged questions, 100 spread over the log (what RagBot.standalone_query ranks among, §33);
- sentences of the other documents (one of each chunk, its middle one; 100 spread over them),
  tried for a first day, when no question has been logged (§34);
- the same of every document, the subject's included;
- the same of the subject's document only (what a data dir of one document would offer).
For each set: the AUC of the rank, answerable follow-ups against off-topic turns, and how many
of each rank under 0.5 (`follow_up_rank`).

    python bench/explore_turn_direction.py --work /tmp/ot
    python bench/explore_turn_direction.py --work /tmp/ot-corpus --corpus-only

The data dir holds what bench_answers.py's does (the shipped corpus, the frozen set's documents,
the two shared PDFs), or with --corpus-only the shipped corpus alone (documents on one theme),
and, as its answer log, the development questions (corpus_qa*.jsonl and the three follow-up
sets; the off-topic turns are not logged). Development sets only (looked at
freely). Also times the check itself on those turns. Writes bench/results/turn_direction.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_answers import documents, log_questions, prepare  # noqa: E402
from common import ROOT, save  # noqa: E402

SETS = ["follow_ups_dev.jsonl", "follow_ups_same_sentence_dev.jsonl", "topic_changes_dev.jsonl",
        "off_topic_turns_dev.jsonl"]
LOGGED = [*sorted(str(p) for p in (ROOT / "tests" / "data").glob("corpus_qa*.jsonl")),
          *(str(ROOT / "bench" / "data" / name) for name in SETS[:3])]


def spread(texts: list[str], size: int = 100) -> list[str]:
    """Up to `size` of `texts`, evenly spaced."""
    step = max(len(texts) / size, 1.0)
    return [texts[int(n * step)] for n in range(min(len(texts), size))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a folder for the data dir (kept between runs)")
    parser.add_argument("--corpus-only", action="store_true",
                        help="the data dir holds the shipped corpus alone (documents on one theme)")
    args = parser.parse_args()
    from ragbot import RagBot
    from ragbot.answer.evidence import candidates, turn_rank
    from ragbot.answer.generation import strip_citation_marks

    data_dir = args.work / "data"
    if not data_dir.exists():
        args.work.mkdir(parents=True, exist_ok=True)
        prepare(data_dir, [ROOT / "corpus"] if args.corpus_only else documents(shared=True), None)
        log_questions(data_dir, LOGGED, None)
    bot = RagBot.open(data_dir, default_corpus=None)
    encode = bot.embedder.encode
    before = bot.with_settings(follow_up_rank=0.0)  # every turn that finds more joined is joined, as before
    # One sentence of every chunk (its middle one), as (source, sentence).
    pool = []
    for chunk in bot.store.all_chunks():
        found = candidates([chunk.as_passage(0.0, 1)], bot.abbreviations())
        if found:
            pool.append((chunk.source, found[len(found) // 2][1]))
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
            if together:  # the rank standalone_query takes, and among the other sets of texts
                subject = together[0]
                sets = {"logged questions": bot._comparison_questions(previous, turn) or [],
                        "other documents": spread([s for source, s in pool if source != subject.source]),
                        "every document": spread([s for _, s in pool]),
                        "the subject's document": spread([s for source, s in pool if source == subject.source])}
                passage = encode([subject.text])[0]
                entry["rank"] = {}
                for key, texts in sets.items():
                    vectors = encode([old, *(f"{previous} {text}" for text in texts if text not in (previous, turn))])
                    entry["rank"][key] = turn_rank(vectors[0], passage, vectors[1:])
                started = time.perf_counter()  # what the check costs a turn, as standalone_query runs it
                turn_rank(*bot._turn_vectors(previous, old, subject.text,
                                             bot._comparison_questions(previous, turn) or []))
                entry["check_ms"] = (time.perf_counter() - started) * 1000
            out.append(entry)
        results[name] = out
        print(f"\n{name}  (answerable?, searched joined before -> now, ranks among the logged questions, the other "
              f"documents' sentences, every document's, the subject's; refused before -> now, the turn, the quote now)")
        for e in out:
            rank = "rank " + " ".join(f"{r:.2f}" for r in e["rank"].values()) if "rank" in e else " " * 24
            print(f"  {'ans' if e['answerable'] else 'UNA'} {'J' if e['joined_before'] else 'a'}->{'J' if e['joined'] else 'a'} "
                  f"{rank} {'R' if e['refused_before'] else '-'}->{'R' if e['refused'] else '-'} {e['turn'][:45]!r} "
                  f"-> {(e['quote'] or '')[:50]!r}")
        for answerable in (True, False):
            part = [e for e in out if e["answerable"] == answerable]
            if part:
                print(f"  {'answerable' if answerable else 'unanswerable'}: refused {sum(e['refused_before'] for e in part)}"
                      f" -> {sum(e['refused'] for e in part)} of {len(part)}")
    ranked = [e for out in results.values() for e in out if "rank" in e]
    print(f"\n{len(ranked)} turns joined before; rank under {bot.settings.follow_up_rank:g}:")
    for key in ranked[0]["rank"]:
        ranks = [e["rank"][key] for e in ranked]
        low = [e for e in ranked if e["rank"][key] < bot.settings.follow_up_rank]
        print(f"  among {key}: AUC {roc_auc_score([e['answerable'] for e in ranked], ranks):.3f}; "
              f"answerable {sum(e['answerable'] for e in low)} of {sum(e['answerable'] for e in ranked)}, "
              f"unanswerable {sum(not e['answerable'] for e in low)} of {sum(not e['answerable'] for e in ranked)}")
    check_ms = sorted(e["check_ms"] for out in results.values() for e in out if "check_ms" in e)
    print(f"\nthe check (the comparison questions and turn_rank, {len(check_ms)} turns): median {statistics.median(check_ms):.0f} ms, "
          f"90th percentile {check_ms[int(0.9 * len(check_ms))]:.0f} ms")
    save("turn_direction", {"results": results, "check_ms": check_ms})


if __name__ == "__main__":
    main()
