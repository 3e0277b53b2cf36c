"""Exploration: a document's own distinctive words in every chunk's header.

A chunk is embedded, and read by BM25, behind its document's title and section path
(ingester.embedding_input, lexical.chunk_text). Where the title says little, a chunk of a long
document does not say which document it belongs to: the three NTSB reports are titled by their
file names ("20080108X00031") and share their section headings, so the weather chunk of the
Alton, NH report never says "Alton", and "What was the lowest ceiling reported for the Alton, NH
accident?" finds the other reports' weather chunks as readily (docs/benchmarks.md §14, "Why
ruled tables lose form questions in search"). Tried here: each document's K most distinctive
words by TF-IDF over the user's own documents (scikit-learn's TfidfVectorizer, sublinear TF; no
word list, any language whose words \\w matches) are added to the header of each of its chunks,
for the embedding and for BM25, in documents of two chunks or more (a one-chunk document's chunk
is the whole document already).

    python bench/explore_document_keywords.py [--part forms,dev,scifact,frozen] [--keywords 8] [--where both]

- **forms**: the 53 development questions on values in the NTSB reports' forms
  (bench/data/pdf_tables_dev.jsonl, pdf_forms_dev.jsonl, looked at freely) over the eight PDFs of
  ../shared/data/pdfs: hit@1 and hit@5 as bench_pdf_retrieval.py counts them.
- **dev**: the development question sets over the shipped corpus: the share of answerable
  questions whose gold document is first, and among the first five.
- **scifact**: BEIR SciFact's 809 train queries (development), nDCG@10.
- **frozen**: the frozen PDF sets (36 and 40 questions, tests/data/frozen/pdf_retrieval*.jsonl),
  totals only, hit@1 and hit@5 on the gold pages; run once the development sets say so.
Each against the same ingest without the keywords, hybrid search (the default), paired bootstrap
95% intervals. The keywords are counted on the finished corpus, as an ingest that counted them
would once every document is in.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

import numpy as np

import common
from common import ROOT, machine, save, shared_data

FORMS = [ROOT / "bench" / "data" / "pdf_tables_dev.jsonl", ROOT / "bench" / "data" / "pdf_forms_dev.jsonl"]


def document_keywords(db_path: Path, k: int) -> dict[str, str]:
    """Title -> the K words of highest TF-IDF in that document's text (its chunks joined), for
    documents of two chunks or more; words of the title itself left out."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT d.title, GROUP_CONCAT(c.text, ' '), COUNT(*) FROM documents d "
                          "JOIN chunks c ON c.doc_id = d.id GROUP BY d.id ORDER BY d.id").fetchall()
    vectorizer = TfidfVectorizer(sublinear_tf=True)
    weights = vectorizer.fit_transform([text for _, text, _ in rows])
    words = np.array(vectorizer.get_feature_names_out())
    analyse = vectorizer.build_analyzer()
    keywords = {}
    for i, (title, _, n_chunks) in enumerate(rows):
        if n_chunks < 2:
            continue
        row = weights.getrow(i)
        order = row.indices[np.argsort(-row.data)]
        in_title = set(analyse(title))
        keywords[title] = " ".join([w for w in words[order] if w not in in_title][:k])
    return keywords


def keyed(keywords: dict[str, str], where: str = "both"):
    """Patch the places that write a chunk's header (`where`: both, dense: the embedding's only,
    bm25: BM25's only) so it carries its document's keywords; returns a function that undoes it."""
    from ragbot.ingest import ingester
    from ragbot.retrieve import lexical

    embedding_input, chunk_text = ingester.embedding_input, lexical.chunk_text

    def with_keywords(embedder, title, section, text, n_tokens):
        words = keywords.get(title)
        if not words:
            return embedding_input(embedder, title, section, text, n_tokens)
        head = f"{title} ({words})"
        section = head + section[len(title):] if section.startswith(title) else section
        return embedding_input(embedder, head, section, text, n_tokens)

    def text_with_keywords(chunk):
        words = keywords.get(chunk.title)
        return f"{words}\n{chunk_text(chunk)}" if words else chunk_text(chunk)

    ingester.embedding_input = with_keywords if where in ("both", "dense") else embedding_input
    lexical.chunk_text = text_with_keywords if where in ("both", "bm25") else chunk_text

    def undo():
        ingester.embedding_input, lexical.chunk_text = embedding_input, chunk_text
    return undo


def paired(label, base, new):
    return common.paired(label, base, new, ("without", "with_keywords"))


def both(work: Path, paths: list[Path], k: int, search, where: str = "both", **settings):
    """`search(bot)` on an ingest of `paths` without, then with, the keywords."""
    from ragbot import RagBot

    results = []
    for variant in ("without", "with"):
        bot = RagBot.open(work / variant, default_corpus=None, **settings)
        undo = keyed(document_keywords(work / "without" / "ragbot.db", k), where) if variant == "with" else (lambda: None)
        try:
            print(bot.ingest(paths, prune=True, store_copies=True).summary(), file=sys.stderr)
            results.append(search(bot))
        finally:
            undo()
            bot.close()
    if k:
        shown = document_keywords(work / "without" / "ragbot.db", k)
        print(f"  keywords of {len(shown)} documents, e.g.: " + "; ".join(
            f"{t[:30]}: {w}" for t, w in list(shown.items())[:6]), flush=True)
    return results


def forms(work: Path, k: int, where: str) -> list[dict]:
    folder = shared_data("pdfs")
    if folder is None:
        return []
    questions = [json.loads(line) for path in FORMS for line in path.read_text().splitlines() if line.strip()]

    def search(bot):
        found = bot.batch_search([q["question"] for q in questions], k=5)
        return {n: [float(any(Path(p.source).name in q["gold_passage_ids"] and any(a in p.text for a in q["answers"])
                              for p in passages[:n])) for q, passages in zip(questions, found)] for n in (1, 5)}

    base, new = both(work / "forms", sorted(folder.glob("*.pdf")), k, search, where)
    return [paired(f"forms development, hit@{n}", base[n], new[n]) for n in (1, 5)]


def frozen(work: Path, k: int, where: str) -> list[dict]:
    """The two frozen PDF sets (tests/data/frozen/pdf_retrieval*.jsonl), totals only: a hit is a
    passage of the question's document on one of its gold pages (bench_pdf_retrieval.py)."""
    from bench_pdf_retrieval import SETS, _on_gold_page

    folder = shared_data("pdfs")
    if folder is None:
        return []
    sets = {name: [json.loads(line) for line in SETS[name][0].read_text().splitlines() if line.strip()]
            for name in ("default", "hard")}

    def search(bot):
        with sqlite3.connect(f"file:{bot.settings.db_path}?mode=ro", uri=True) as db:
            pages = {cid: (page, end) for cid, page, end in db.execute("SELECT id, page, page_end FROM chunks")}
        out = {}
        for name, questions in sets.items():
            found = bot.batch_search([q["question"] for q in questions], k=5)
            for n in (1, 5):
                out[(name, n)] = [float(any(_on_gold_page(p, q, pages) for p in passages[:n]))
                                  for q, passages in zip(questions, found)]
        return out

    base, new = both(work / "frozen", sorted(folder.glob("*.pdf")), k, search, where)
    return [paired(f"frozen PDF set {name}, hit@{n}", base[(name, n)], new[(name, n)]) for name, n in base]


def dev(work: Path, k: int, where: str) -> list[dict]:
    rows = [json.loads(line) for path in sorted((ROOT / "tests" / "data").glob("corpus_qa*.jsonl")) for line in path.open()]
    answerable = [r for r in rows if r.get("answerable") and r.get("gold_passage_ids")]

    def search(bot):
        queries = [bot.standalone_query([r["previous"]], r["question"]) if r.get("previous") else r["question"]
                   for r in answerable]
        found = bot.batch_search(queries, k=5)
        return {n: [float(any(Path(p.source).name in r["gold_passage_ids"] for p in passages[:n]))
                    for r, passages in zip(answerable, found)] for n in (1, 5)}

    base, new = both(work / "dev", [ROOT / "corpus"], k, search, where)
    return [paired(f"development sets, gold document in top {n}", base[n], new[n]) for n in (1, 5)]


def scifact(work: Path, k: int, where: str) -> list[dict]:
    from ragbot.evaluation.metrics import evaluate_retrieval, load_beir, write_beir_documents

    folder = shared_data("scifact")
    if folder is None:
        return []
    test, data = load_beir(folder, "test"), load_beir(folder, "train")
    write_beir_documents(test, work / "scifact" / "documents")
    base, new = both(work / "scifact", [work / "scifact" / "documents"], k,
                     lambda bot: [r["ndcg@10"] for r in evaluate_retrieval(bot, data, k=10).per_query], where)
    return [paired("scifact train, nDCG@10", base, new)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="forms,dev,scifact")
    parser.add_argument("--keywords", type=int, default=8, help="words per document (default 8)")
    parser.add_argument("--where", choices=("both", "dense", "bm25"), default="both",
                        help="which header carries the keywords: the embedding's, BM25's, or both (default)")
    parser.add_argument("--work", help="where the data dirs go (default: a temporary folder)")
    args = parser.parse_args()
    print(machine(), flush=True)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        for part in args.part.split(","):
            lines += {"forms": forms, "dev": dev, "scifact": scifact, "frozen": frozen}[part](work, args.keywords, args.where)
    name = f"explore_document_keywords_{args.where}_{args.keywords}"
    print(f"saved {save(name, {'keywords': args.keywords, 'where': args.where, 'lines': lines})}")


if __name__ == "__main__":
    main()
