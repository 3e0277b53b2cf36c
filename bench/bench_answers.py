"""Answer quality on a QA file, for several ways of answering, with bootstrap 95% intervals.

    python bench/bench_answers.py                       # the frozen test set, every system
    python bench/bench_answers.py --qa tests/data/corpus_qa_blind6.jsonl --systems extract,quote2
    python bench/bench_answers.py --release 2423106     # also the release at that commit

Systems (each answers every question through `RagBot.ask`, follow-ups as the chat page asks them):
- extract: the shipped default, the best evidence sentence quoted with its citation;
- quote2:  the baseline the answer issue measured, the two best sentences quoted;
- generate: the generator writes the answer (refusal still by the evidence threshold), on the
  default backend; generate-llama.cpp / generate-transformers name the backend;
- release: the code at the `--release` commit (a git worktree), as it answered before;
- extract-no-min-score: extract without the retrieval-score refusal (is `min_score` needed?);
- extract-dense: extract with dense retrieval only (before hybrid search);
- extract-embedding: extract with sentences ranked by the cosine (before the coverage ranking);
- extract-coverage: extract with sentences ranked by the worst-covered quarter (the default
  before `coverage-questions`);
- extract-no-corrections: extract without the user's corrections (the same unless voted on);
- extract-plain-pdf: extract on PDFs read as plain page text (before `pdf_structure`), in a data
  dir of its own;
- extract-ruled-tables: extract on PDFs whose tables drawn with rules are read from their cells
  (`pdf_ruled_tables`), in a data dir of its own;
- extract-questions: extract with sentences ranked by `coverage-questions`, as the default
  (token weights also from the questions in the answer log: give `--question-log` to fill it);
- extract-lexical-questions: extract with BM25's query terms also weighted by the answer log's
  questions (`lexical_question_weights`);
- extract-k3, extract-k8, extract-k10: extract with 3, 8 or 10 passages retrieved (`top_k`; 5 by
  default), its sentences ranked over all of them.
`--against SYSTEM` adds the paired bootstrap interval of each system's differences to SYSTEM.

The documents: the shipped corpus, the frozen set's German and French documents, and the two
public-domain PDFs from ../shared/data/pdfs when present (rows that need them are skipped,
and the output says so, when not); with a set whose rows need them, also a development set's own
documents (`"needs": "dev_table_docs"`: bench/data/docs/tables, the documents with tables;
`"dev_german_docs"`: bench/data/docs/german, a German document for bench/data/german_dev.jsonl),
in a data dir of their own. Every system's answers are scored by the same code here:
ROUGE-L and refusals (evaluate.summarise), the share of each reference's words found in the
reply (metrics.reference_recall: whether the reply holds the answer, however long it is), and
against the release, the paired bootstrap interval of each difference. A frozen set is read only through these totals.

Prints a table and writes bench/results/answers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, machine, save, table  # noqa: E402

FROZEN = ROOT / "tests" / "data" / "frozen"
# Development sets' own documents, by the "needs" of their rows.
DEV_DOCS = {"dev_table_docs": ROOT / "bench" / "data" / "docs" / "tables",  # bench/data/tables_dev.jsonl
            "dev_german_docs": ROOT / "bench" / "data" / "docs" / "german"}  # bench/data/german_dev.jsonl
# What a reply must never show: a Markdown heading line or a passage header copied from the prompt.
PROMPT_MARKUP = re.compile(r"(?:^|\n)\s*#|\[\d+\] \(")
SHARED_PDFS = ("20071229X02007.pdf", "GSA2022.pdf")

# Run in a subprocess (so the release's code can be put first on sys.path): answer every row and
# write what each answer was, using only the API both versions share.
ANSWER_ROWS = r"""
import json, sys, time
import ragbot
print("answering with", ragbot.__file__, flush=True)
from pathlib import Path
from ragbot import RagBot
data_dir, rows_path, out_path, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
bot = RagBot.open(data_dir, **overrides)
try:
    from ragbot.app import standalone_query as joined  # the release (flat layout) decides follow-ups with a word list
    follow_up = lambda previous, question: joined([previous], question)
except ImportError:
    follow_up = lambda previous, question: bot.standalone_query([previous], question)


# The trace of `question` asked after the questions `earlier`: the bot's own next_turn where it
# has one; else (a release before it) as that release's chat page did, each turn joined with the
# question typed before it.
def next_turn(earlier, question):
    if hasattr(bot, "next_turn"):
        return bot.next_turn(earlier, question)
    history = []
    for n, asked in enumerate(earlier):
        query = follow_up(earlier[n - 1], asked) if n else asked
        # -4: that release's prompt history, HISTORY_TURNS = 2 exchanges
        answer = bot.ask(asked, record=False, retrieval_query=query, history=history[-4:])
        history += [{"role": "user", "content": asked}, {"role": "assistant", "content": answer.answer}]
    return {"retrieval_query": follow_up(earlier[-1], question), "history": history[-4:]}


with open(out_path, "w") as out:
    for line in open(rows_path):
        row = json.loads(line)
        trace = {}
        if row.get("previous"):
            earlier = [row["previous"]] if isinstance(row["previous"], str) else row["previous"]
            trace = next_turn(earlier, row["question"])
        started = time.perf_counter()
        answer = bot.ask(row["question"], record=False, **trace)
        out.write(json.dumps({"answer": answer.answer, "refused": answer.refused,
                              "reason": answer.refusal_reason, "latency_ms": (time.perf_counter() - started) * 1000,
                              "cited": [[c.source, c.text] for c in answer.citations]}) + "\n")
        out.flush()
"""


def documents(shared: bool, dev_docs: list[str] = ()) -> list[Path]:
    """What every data dir holds; `dev_docs`: also these development sets' documents (DEV_DOCS
    keys), for sets whose rows need them."""
    paths = [ROOT / "corpus", FROZEN / "docs"]
    if shared:
        paths += [SHARED / "pdfs" / name for name in SHARED_PDFS]
    return paths + [DEV_DOCS[need] for need in dev_docs]


def prepare(data_dir: Path, paths: list[Path], pythonpath: str | None, overrides: dict | None = None) -> None:
    code = ("import json, sys; from ragbot import RagBot; "
            "bot = RagBot.open(sys.argv[1], default_corpus=None, **json.loads(sys.argv[2])); "
            "r = bot.ingest(sys.argv[3:]); print(r.summary()); sys.exit(0 if r.ok else 1)")
    subprocess.run([sys.executable, "-c", code, str(data_dir), json.dumps(overrides or {}), *map(str, paths)],
                   check=True, env=_env(pythonpath), cwd=data_dir.parent)


def log_questions(data_dir: Path, files: list[str], pythonpath: str | None) -> None:
    """Ask every question of `files` (QA files) in the data dir, recorded in its answer log, as a
    user's earlier questions; follow-ups as typed."""
    code = ("import json, sys; from ragbot import RagBot; bot = RagBot.open(sys.argv[1], default_corpus=None); "
            "qs = [json.loads(l)['question'] for f in sys.argv[2:] for l in open(f, encoding='utf-8') if l.strip()]; "
            "[bot.ask(q) for q in qs]; print(len(qs), 'questions logged')")
    paths = [str(Path(f).resolve()) for f in files]  # the subprocess runs from the work folder
    subprocess.run([sys.executable, "-c", code, str(data_dir), *paths], check=True, env=_env(pythonpath),
                   cwd=data_dir.parent)


def _env(pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def answer_all(data_dir: Path, rows_path: Path, out: Path, overrides: dict, pythonpath: str | None) -> list[dict]:
    # Run from the work folder: `python -c` puts the current folder first on sys.path, and this
    # checkout's ragbot/ there would shadow the release's.
    subprocess.run([sys.executable, "-c", ANSWER_ROWS, str(data_dir), str(rows_path), str(out), json.dumps(overrides)],
                   check=True, env=_env(pythonpath), cwd=data_dir.parent)
    return [json.loads(line) for line in out.open()]


def score(rows: list[dict], answers: list[dict]) -> list[dict]:
    from ragbot.evaluation.metrics import best_of, groundedness, reference_recall, rouge_l, token_f1

    records = []
    for row, got in zip(rows, answers):
        gold = set(row.get("gold_documents") or row.get("gold_passage_ids") or [])
        cited = [Path(source).name for source, _ in got["cited"]]
        answerable = row["answerable"]
        records.append({
            "kind": row.get("kind") or row.get("category", ""), "lang": row.get("lang", ""),
            "answerable": answerable, "refused": got["refused"], "latency_ms": got["latency_ms"],
            "answer_words": len(got["answer"].split()),
            "rougeL": (0.0 if got["refused"] else best_of(rouge_l, got["answer"], row["answers"])) if answerable else None,
            "token_f1": (0.0 if got["refused"] else best_of(token_f1, got["answer"], row["answers"])) if answerable else None,
            "reference_recall": (0.0 if got["refused"] else best_of(reference_recall, got["answer"], row["answers"]))
            if answerable else None,
            "citation_accuracy": sum(c in gold for c in cited) / len(cited) if gold and cited else None,
            "groundedness": None if got["refused"] else groundedness(got["answer"], [t for _, t in got["cited"]]),
            "markup": bool(PROMPT_MARKUP.search(got["answer"])),
        })
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qa", default=str(FROZEN / "answers.jsonl"))
    parser.add_argument("--systems", default="extract,quote2,generate")
    parser.add_argument("--release", metavar="COMMIT", help="also answer with the code at this commit")
    parser.add_argument("--against", metavar="SYSTEM", help="also the paired differences to this system")
    parser.add_argument("--work", help="folder for data dirs and answers (default: a temporary one)")
    parser.add_argument("--question-log", metavar="QA_FILES",
                        help="comma-separated QA files whose questions are asked (and logged) in each new data dir "
                             "before answering: a user's earlier questions, read by extract-questions")
    parser.add_argument("--reuse", action="store_true",
                        help="score a system's answers already in --work instead of asking again")
    args = parser.parse_args()
    from ragbot.evaluation.metrics import paired_difference, summarise

    shared = all((SHARED / "pdfs" / name).is_file() for name in SHARED_PDFS)
    rows = [json.loads(line) for line in open(args.qa, encoding="utf-8") if line.strip()]
    skipped = [r for r in rows if r.get("needs") == "shared_pdfs" and not shared]
    rows = [r for r in rows if r not in skipped]
    if skipped:
        print(f"{len(skipped)} rows skipped: ../shared/data/pdfs is not here")
    work = Path(args.work or tempfile.mkdtemp(prefix="ragbot-bench-answers-"))
    work.mkdir(parents=True, exist_ok=True)
    rows_path = work / "rows.jsonl"
    rows_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    systems = [s for s in args.systems.split(",") if s]
    settings = {"extract": {}, "quote2": {"answer_sentences": 2}, "generate": {"answer_mode": "generate"},
                "generate-llama.cpp": {"answer_mode": "generate", "generator_backend": "llama.cpp"},
                "generate-transformers": {"answer_mode": "generate", "generator_backend": "transformers"},
                "extract-no-min-score": {"min_score": -1.0}, "extract-dense": {"retrieval": "dense"},
                "extract-embedding": {"evidence_ranking": "embedding"},
                "extract-coverage": {"evidence_ranking": "coverage"},
                "extract-no-corrections": {"use_corrections": False},
                "extract-plain-pdf": {"pdf_structure": False},
                "extract-ruled-tables": {"pdf_ruled_tables": True},
                "extract-questions": {"evidence_ranking": "coverage-questions"},
                "extract-lexical-questions": {"lexical_question_weights": True},
                "extract-k3": {"top_k": 3}, "extract-k8": {"top_k": 8}, "extract-k10": {"top_k": 10}}
    # Systems whose documents are read differently ingest into a data dir of their own.
    reading = {"extract-plain-pdf": {"pdf_structure": False}, "extract-ruled-tables": {"pdf_ruled_tables": True}}
    if args.release:
        release_dir = work / f"release-{args.release}"
        if not release_dir.is_dir():
            subprocess.run(["git", "worktree", "add", "--detach", str(release_dir), args.release], cwd=ROOT, check=True)
        systems.append("release")
    dev_docs = sorted({r["needs"] for r in rows if r.get("needs") in DEV_DOCS})
    results, records = {}, {}
    for system in systems:
        pythonpath = str(work / f"release-{args.release}") if system == "release" else None
        data_dir = work / ("data-release" if system == "release" else f"data-{system}" if system in reading else "data")
        for need in dev_docs:  # a data dir holds one set of documents: a work folder may serve several sets
            data_dir = data_dir.with_name(data_dir.name + "-" + need.removeprefix("dev_").replace("_", "-"))
        if not (data_dir / "ragbot.db").is_file():
            prepare(data_dir, documents(shared, dev_docs), pythonpath, reading.get(system))
            if args.question_log:
                log_questions(data_dir, args.question_log.split(","), pythonpath)
        elif args.question_log:
            print(f"{data_dir} exists: its answer log is used as it is (--question-log is asked only in a new one)")
        started = time.perf_counter()
        done = work / f"{system}.jsonl"
        if args.reuse and done.is_file() and sum(1 for _ in done.open()) == len(rows):
            answers = [json.loads(line) for line in done.open()]
        else:
            answers = answer_all(data_dir, rows_path, done, settings.get(system, {}), pythonpath)
        records[system] = score(rows, answers)
        summary = summarise(records[system])
        summary["seconds"] = time.perf_counter() - started
        summary["replies_with_markup"] = sum(r["markup"] for r in records[system])
        summary["by_lang"] = {
            lang: summarise([r for r in records[system] if r["lang"] == lang])
            for lang in sorted({r["lang"] for r in records[system]})}
        results[system] = summary
        print(f"{system}: {len(answers)} answers in {summary['seconds']:.0f}s", flush=True)
    for base in [b for b in ("release", args.against) if b in records]:
        for system in systems:
            if system != base:
                a, b = records[base], records[system]
                results[system][f"vs_{base}"] = {
                    "rougeL": paired_difference([r["rougeL"] for r in a if r["answerable"]],
                                                [r["rougeL"] for r in b if r["answerable"]]),
                    "reference_recall": paired_difference([r["reference_recall"] for r in a if r["answerable"]],
                                                          [r["reference_recall"] for r in b if r["answerable"]]),
                    "refused_answerable": paired_difference([r["refused"] for r in a if r["answerable"]],
                                                            [r["refused"] for r in b if r["answerable"]]),
                    "refused_unanswerable": paired_difference([r["refused"] for r in a if not r["answerable"]],
                                                              [r["refused"] for r in b if not r["answerable"]]),
                }

    def ci(summary: dict, key: str) -> str:
        value, bounds = summary.get(key), summary["ci95"].get(key)
        return "–" if value is None else f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else f"{value:.3f}"

    print(json.dumps(machine()))
    print(table([{"system": s, "n": r["n"], "rougeL (answerable)": ci(r, "rougeL"),
                  "reference words found": ci(r, "reference_recall"),
                  "refused answerable": ci(r, "refusal_rate_answerable"),
                  "refused unanswerable": ci(r, "refusal_rate_unanswerable"),
                  "citation acc": r["citation_accuracy"], "grounded": r["groundedness"],
                  "markup": r["replies_with_markup"], "p50 ms": r["latency_ms_p50"]} for s, r in results.items()]))
    langs = sorted({lang for r in results.values() for lang in r["by_lang"]})
    print(table([{"lang": lang, **{f"{s} {key}": results[s]["by_lang"][lang].get(key) for s in results
                                   for key in ("rougeL", "refusal_rate_answerable", "refusal_rate_unanswerable")
                                   if lang in results[s]["by_lang"]}} for lang in langs]))
    kinds = sorted({k for r in results.values() for k in r["by_kind"]})
    print(table([{"kind": k, **{f"{s} refused": results[s]["by_kind"].get(k, {}).get("refusal_rate") for s in results},
                  **{f"{s} rougeL": results[s]["by_kind"].get(k, {}).get("rougeL") for s in results}} for k in kinds]))
    for system, summary in results.items():
        for key in [k for k in summary if k.startswith("vs_")]:
            d = summary[key]
            print(f"{system} - {key[3:]}: " + "; ".join(f"{k} {v['mean']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]"
                                                   for k, v in d.items() if v["ci95"]))
    print("written to", save("answers", {"qa": str(args.qa), "skipped_rows": len(skipped), "systems": results}))


if __name__ == "__main__":
    main()
