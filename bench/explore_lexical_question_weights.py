"""Exploration for docs/benchmarks.md §19: BM25 with each query term weighted by its IDF over
the questions asked before (the `lexical_question_weights` setting), so that a word most
questions hold ("where", "what") stops finding passages by itself, the way `coverage-questions`
weighs the sentences to quote (§18). No word list: the weights come from the user's own log.

    python bench/explore_lexical_question_weights.py [--part scifact,pdfs] [--data-dir DIR]

- **scifact** (../shared/data/scifact, the index of bench_scifact.py in bench/.cache/scifact): the
  300 test queries searched with the 809 train queries as the log (a user's earlier queries),
  nDCG@10 with and without the weights, for bm25 and hybrid retrieval, totals and the paired
  difference only. Development check first: the train queries in two halves, each searched with
  the other half as its log.
- **pdfs** (../shared/data/pdfs, ingested with the structure into DIR/pdfs): the frozen hard PDF
  set (40 questions, totals only) and the forms development set (bench/data/pdf_forms_dev.jsonl,
  20 questions on an NTSB form, looked at freely: a hit is a passage holding the answer), with
  the development questions of tests/data and bench/data but the forms set (371) as the log.

The log is handed to the bot as its QuestionLog (what it would read from its answer log), so the
search runs exactly as `RagBot.batch_search` runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import ROOT, machine, save, scifact_bot, shared_data

HARD = ROOT / "tests" / "data" / "frozen" / "pdf_retrieval_hard.jsonl"
FORMS = ROOT / "bench" / "data" / "pdf_forms_dev.jsonl"
# The user's earlier questions: the development sets but the forms set, which is searched here.
DEV_LOG = sorted((ROOT / "tests" / "data").glob("corpus_qa*.jsonl")) + sorted(
    f for f in (ROOT / "bench" / "data").glob("*_dev.jsonl") if f != FORMS)


def with_log(bot, questions: list[str], **settings):
    """A bot with these settings whose answer log holds `questions` (in this order)."""
    from ragbot.answer.evidence import QuestionLog

    other = bot.with_settings(**settings)
    rows = [(i + 1, q) for i, q in enumerate(questions)]
    other._question_log = QuestionLog(other.embedder.word_pieces, lambda after: [r for r in rows if r[0] > after])
    return other


def compare(label: str, base: list[float], weighted: list[float]) -> dict:
    from ragbot.evaluation.metrics import bootstrap_ci, paired_difference

    d = paired_difference(base, weighted)
    line = {"set": label, "n": len(base), "without": sum(base) / len(base), "with": sum(weighted) / len(weighted),
            "without_ci95": bootstrap_ci(base), "with_ci95": bootstrap_ci(weighted), "difference": d}
    print(f"{label} (n={len(base)}): {line['without']:.3f} -> {line['with']:.3f}, paired {d['mean']:+.3f} "
          f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]", flush=True)
    return line


def scifact(data_dir: Path) -> list[dict]:
    from ragbot.evaluation.metrics import BeirData, evaluate_retrieval

    if (found := scifact_bot(data_dir)) is None:
        return []
    bot, test, train = found
    lines = []
    ids = sorted(train.qrels)
    halves = [ids[0::2], ids[1::2]]
    for mode in ("bm25", "hybrid"):
        base, weighted = [], []
        for i, half in enumerate(halves):  # development: each half with the other's queries as its log
            part = BeirData(train.corpus, {q: train.queries[q] for q in half}, {q: train.qrels[q] for q in half})
            log = [train.queries[q] for q in halves[1 - i]]
            base += [r["ndcg@10"] for r in evaluate_retrieval(bot.with_settings(retrieval=mode), part).per_query]
            weighted += [r["ndcg@10"] for r in evaluate_retrieval(
                with_log(bot, log, retrieval=mode, lexical_question_weights=True), part).per_query]
        lines.append(compare(f"scifact train halves, {mode}, nDCG@10", base, weighted))
    log = [train.queries[q] for q in ids]
    for mode in ("bm25", "hybrid"):
        base = evaluate_retrieval(bot.with_settings(retrieval=mode), test).per_query
        weighted = evaluate_retrieval(with_log(bot, log, retrieval=mode, lexical_question_weights=True), test).per_query
        lines.append(compare(f"scifact test, {mode}, nDCG@10", [r["ndcg@10"] for r in base],
                             [r["ndcg@10"] for r in weighted]))
    bot.close()
    return lines


def pdfs(data_dir: Path) -> list[dict]:
    import sqlite3

    from bench_pdf_retrieval import _on_gold_page
    from ragbot import RagBot

    folder = shared_data("pdfs")
    if folder is None:
        return []
    bot = RagBot.open(data_dir / "pdfs", default_corpus=None)
    corpus = sorted((ROOT / "corpus").iterdir())
    print(bot.ingest([*sorted(folder.glob("*.pdf")), *corpus], prune=True).summary(), file=sys.stderr)
    with sqlite3.connect(f"file:{bot.settings.db_path}?mode=ro", uri=True) as db:
        pages = {cid: (page, page_end) for cid, page, page_end in db.execute("SELECT id, page, page_end FROM chunks")}
    log = [json.loads(line)["question"] for f in DEV_LOG for line in f.open(encoding="utf-8") if line.strip()]
    print(f"log: {len(log)} development questions", flush=True)
    hard = [json.loads(line) for line in HARD.read_text().splitlines() if line.strip()]
    forms = [json.loads(line) for line in FORMS.read_text().splitlines() if line.strip()]
    lines = []
    for mode in ("hybrid", "bm25"):
        plain = bot.with_settings(retrieval=mode)
        weighted = with_log(bot, log, retrieval=mode, lexical_question_weights=True)
        found = [b.batch_search([q["question"] for q in hard], k=5) for b in (plain, weighted)]
        for k in (1, 5):
            hits = [[float(any(_on_gold_page(p, q, pages) for p in passages[:k])) for q, passages in zip(hard, f)]
                    for f in found]
            lines.append(compare(f"hard PDF set (frozen), {mode}, hit@{k}", *hits))
        found = [b.batch_search([q["question"] for q in forms], k=5) for b in (plain, weighted)]
        for k in (1, 5):
            hits = [[float(any(a in p.text for a in q["answers"] for p in passages[:k])) for q, passages in zip(forms, f)]
                    for f in found]
            lines.append(compare(f"forms (development), {mode}, answer in top {k}", *hits))
        if mode == "hybrid":  # the example, looked at freely (development)
            for label, f in zip(("without", "with"), found):
                print(f"  {forms[0]['question']} {label}: answer in passages "
                      f"{[i + 1 for i, p in enumerate(f[0]) if forms[0]['answers'][0] in p.text]}")
    bot.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="scifact,pdfs")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent / ".cache"))
    args = parser.parse_args()
    print(machine(), flush=True)
    lines = []
    for part in args.part.split(","):
        lines += {"scifact": scifact, "pdfs": pdfs}[part](Path(args.data_dir))
    print(f"saved {save('explore_lexical_question_weights', {'lines': lines})}")


if __name__ == "__main__":
    main()
