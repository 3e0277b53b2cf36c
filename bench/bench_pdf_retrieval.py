"""Retrieval on PDFs read plainly and read with their structure (the `pdf_structure` setting).

The eight PDFs of ../shared/data/pdfs (federal strategic plans with running headers and repeated
boilerplate, three NTSB accident reports, a handbook page, an essay) are ingested four times,
into separate data dirs: plainly, with the structure but without table rows (an ablation of
`pdf.table_rows`), with the whole structure (the default), and with tables drawn with rules also
read from their cells (the setting `pdf_ruled_tables`). The 36 questions of the frozen set
tests/data/frozen/pdf_retrieval.jsonl (written before the structure work) are searched with the
default retrieval; a question is a hit at k when one of the top k passages comes from its file
and spans one of its gold pages. Reported in total only, with bootstrap 95% intervals and the
paired difference; also chunks, ingest seconds and what the structure removed.

    python bench/bench_pdf_retrieval.py [--data-dir DIR] [--retrieval hybrid|dense|bm25] [--set hard]

`--set hard` asks tests/data/frozen/pdf_retrieval_hard.jsonl instead: 40 questions written after
the structure work by a helper who did not work on it, on values inside tables and forms and on
topics named only by a section heading; its totals are also given per kind. `--set tables-dev`
asks development questions, looked at freely: the 53 of bench/data/pdf_tables_dev.jsonl and
bench/data/pdf_forms_dev.jsonl, each on a value in a form of the NTSB reports; a hit there is a
passage of the question's document holding its answer, and every question's hits are saved.
Needs ../shared/data/pdfs; without it the benchmark says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

from common import shared_data, ROOT, machine, save, table

SETS = {"default": [ROOT / "tests" / "data" / "frozen" / "pdf_retrieval.jsonl"],
        "hard": [ROOT / "tests" / "data" / "frozen" / "pdf_retrieval_hard.jsonl"],
        "tables-dev": [ROOT / "bench" / "data" / "pdf_tables_dev.jsonl", ROOT / "bench" / "data" / "pdf_forms_dev.jsonl"]}
KS = (1, 5)
# (name, pdf_structure, pdf_ruled_tables); "structure" is the default every other is compared with.
READINGS = (("plain", False, False), ("structure without table rows", True, False), ("structure", True, False),
            ("structure with ruled tables", True, True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent / ".cache" / "pdf_retrieval"))
    parser.add_argument("--retrieval", default=None, help="retrieval mode (default: the settings' default)")
    parser.add_argument("--set", choices=sorted(SETS), default="default", help="which question set")
    args = parser.parse_args()
    folder = shared_data("pdfs")
    if folder is None:
        return
    print(machine(), flush=True)

    from ragbot import RagBot
    from ragbot.evaluation.metrics import bootstrap_ci, paired_difference

    questions = [json.loads(line) for path in SETS[args.set] for line in path.read_text().splitlines() if line.strip()]
    overrides = {"retrieval": args.retrieval} if args.retrieval else {}
    hits: dict[str, dict[int, list[float]]] = {}
    rows, details = [], {}
    from ragbot.ingest import pdf

    with_rows = pdf.table_rows
    for name, structure, ruled in READINGS:
        # The ablation reads with every structure rule but the table rows (pdf.table_rows).
        pdf.table_rows = (lambda page: [None] * len(page)) if name == "structure without table rows" else with_rows
        bot = RagBot.open(Path(args.data_dir) / name.replace(" ", "-"), default_corpus=None, pdf_structure=structure,
                          pdf_ruled_tables=ruled, **overrides)
        started = time.perf_counter()
        report = bot.ingest(sorted(folder.glob("*.pdf")), prune=True)
        seconds = time.perf_counter() - started
        print(report.summary(), file=sys.stderr)
        with sqlite3.connect(f"file:{bot.settings.db_path}?mode=ro", uri=True) as db:
            pages = {cid: (page, page_end) for cid, page, page_end in db.execute("SELECT id, page, page_end FROM chunks")}
            n_chunks, n_chars = db.execute("SELECT COUNT(*), SUM(LENGTH(text)) FROM chunks").fetchone()
            n_sections = db.execute("SELECT COUNT(DISTINCT doc_id || '|' || section) FROM chunks WHERE section != ''").fetchone()[0]
        found = bot.batch_search([q["question"] for q in questions], k=max(KS))
        hits[name] = {k: [] for k in KS}
        for q, passages in zip(questions, found):
            for k in KS:
                hits[name][k].append(float(any(_hit(p, q, pages) for p in passages[:k])))
        row = {"reading": name}
        for k in KS:
            values = hits[name][k]
            low, high = bootstrap_ci(values)
            row[f"hit@{k}"] = f"{sum(values) / len(values):.3f} [{low:.3f}, {high:.3f}]"
        row.update({"chunks": n_chunks, "chunk chars": n_chars, "sections": n_sections,
                    "ingest s": f"{seconds:.1f}"})
        rows.append(row)
        kinds = sorted({q["kind"] for q in questions if "kind" in q})
        for kind in kinds:  # totals per kind, never per question
            chosen = [i for i, q in enumerate(questions) if q.get("kind") == kind]
            rows.append({"reading": f"  {name}, {kind} ({len(chosen)})",
                         **{f"hit@{k}": f"{sum(hits[name][k][i] for i in chosen) / len(chosen):.3f}" for k in KS},
                         "chunks": "", "chunk chars": "", "sections": "", "ingest s": ""})
        # Per-question hits are kept for the older set and the development set: the hard set is read as totals.
        details[name] = {"hits": hits[name] if args.set != "hard" else None, "chunks": n_chunks, "chunk_chars": n_chars, "sections": n_sections,
                         "ingest_seconds": seconds, "retrieval": bot.settings.retrieval}
        bot.close()
    print(table(rows))
    differences = {}
    for name in [name for name, _, _ in READINGS if name != "structure"]:
        for k in KS:
            # Each other reading against the default: what the structure (or a part of it) adds,
            # and what ruled tables would add to it.
            new, old = (name, "structure") if name == "structure with ruled tables" else ("structure", name)
            differences[f"{new} - {old} {k}"] = d = paired_difference(hits[old][k], hits[new][k])
            low, high = d["ci95"]
            print(f"{new} - {old}, hit@{k}: {d['mean']:+.3f} [{low:+.3f}, {high:+.3f}] "
                  f"over {len(questions)} questions")
    name = "pdf_retrieval" if args.set == "default" else f"pdf_retrieval_{args.set}"
    print(f"saved {save(name, {'set': args.set, 'rows': rows, 'details': details, 'difference': differences})}")


def _hit(passage, question: dict, pages: dict) -> bool:
    """A frozen set's question is answered by its document's gold pages, a development one by a
    passage of its document that holds one of its answers."""
    if "answers" in question:
        return (Path(passage.source).name in question["gold_passage_ids"]
                and any(answer in passage.text for answer in question["answers"]))
    return _on_gold_page(passage, question, pages)


def _on_gold_page(passage, question: dict, pages: dict) -> bool:
    if Path(passage.source).name != question["document"]:
        return False
    first, last = pages.get(passage.chunk_id, (passage.page, passage.page))
    if first is None:
        return False
    return any(first <= gold <= (last or first) for gold in question["pages"])


if __name__ == "__main__":
    main()
