"""Exploration for docs/benchmarks.md §14 ("Telling similar documents apart: tried, not
adopted"): can search find a value in a form when the question names its document ("the Alton,
NH accident") but the chunk holding the value does not? Two ways, both read from the user's own
documents, no word list:

- **lead**: every chunk's BM25 text also holds the first K word pieces of its document's body
  (the first chunk's text without its heading lines; punctuation is no word piece), so a word that names the document matches
  every chunk of it and the rest of the question decides which chunk. The dense ranking is
  unchanged (no chunk is embedded again).
- **keywords**: every chunk's BM25 text also holds those of its document's K most distinctive
  words that the chunk itself lacks (so at most K): distinctive by the word's count over the
  document's chunks (as BM25 reads them: headings repeated in each, overlaps counted twice)
  times log(documents / documents holding the word) to the power POWER; words joined from their
  word pieces. The words that name a document reach every chunk of it; nothing a chunk already
  holds is added again. With --recurring-keywords, only words found in two or more of the
  document's chunks are candidates.
- **document**: a third ranking in the fusion, the fused pool ordered by the BM25 score of the
  chunk's whole document (then by the fused rank), at weight W.

    python bench/explore_document_context.py forms DATA     # DATA: a data dir of the 8 shared PDFs
    python bench/explore_document_context.py corpus DATA    # DATA: a data dir holding corpus/
    python bench/explore_document_context.py scifact train|test [--keywords | --recurring-keywords | --document-ranks]

- forms: the 53 development questions of bench/data/pdf_tables_dev.jsonl and
  pdf_forms_dev.jsonl (a hit: a passage of the question's document holding its answer), hit@1
  and hit@5 (`bench_pdf_retrieval.py --set tables-dev --data-dir D` makes D/structure).
- corpus: the answerable development questions of tests/data/corpus_qa*.jsonl (a hit: a passage
  of the gold document).
- scifact: nDCG@10 of hybrid and BM25 search with the lead (or with --keywords the keywords;
  with --document-ranks, hybrid only: the fusion ranking each chunk by 1 + the distinct
  documents above it in each list, alone and with 20 keywords or a 32-piece lead), on the index
  bench_scifact.py keeps in bench/.cache/scifact (train queries are development; test is the
  issue's measure).
Every variant rebuilds BM25 in memory; nothing is written to the data dir.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from common import ROOT, shared_data

LEADS = (16, 32, 48)
KEYWORDS = (5, 10, 20)
POWER = 3  # idf's exponent in a word's distinctiveness (1 picks the forms' shared labels)
DOCUMENT_WEIGHTS = (0.25, 0.5, 1.0)
_HEADING_LINE = re.compile(r"#{1,6}\s")


def leads(bot, chunks, k: int) -> dict[str, str]:
    """Each document's first k word pieces of body text (what BM25 counts: punctuation is no
    word piece), written back as words; `chunks` sorted by id, so a document's first chunk
    comes first."""
    first = {}
    for chunk in chunks:
        first.setdefault(chunk.source, chunk)
    bodies = {s: "\n".join(line for line in c.text.split("\n") if not _HEADING_LINE.match(line)) for s, c in first.items()}
    pieces = bot.embedder.word_pieces(list(bodies.values()))
    return {s: " ".join(p[:k]).replace(" ##", "") for s, p in zip(bodies, pieces)}


def with_lead(bot, chunks, k: int):
    """The BM25 index of `chunks` whose texts (but the first of each document) end with the lead."""
    import ragbot.retrieve.lexical as lexical

    original, lead = lexical.chunk_text, leads(bot, chunks, k)
    firsts = {}
    for chunk in chunks:  # sorted by id: a document's first chunk comes first
        firsts.setdefault(chunk.source, chunk.id)
    firsts = set(firsts.values())
    lexical.chunk_text = lambda c: original(c) + ("" if c.id in firsts or not lead[c.source] else "\n" + lead[c.source])
    try:
        return lexical.LexicalIndex.of(chunks, bot.embedder)
    finally:
        lexical.chunk_text = original


def words_of(pieces: list[str]) -> list[str]:
    """Whole words from word pieces ("n", "##30", "##70", "##a" -> "n3070a")."""
    words: list[str] = []
    for piece in pieces:
        if piece.startswith("##") and words:
            words[-1] += piece[2:]
        else:
            words.append(piece)
    return words


def with_keywords(bot, chunks, k: int, recurring: bool = False):
    """The BM25 index of `chunks` whose texts end with those of their document's k most
    distinctive words (count over the document's chunks x idf over documents ** POWER) that the
    chunk does not hold; and each document's k words. With `recurring`, only words found in two
    or more of the document's chunks are candidates: a word that recurs across a document names
    it, one found in a single chunk is that chunk's own (and a document of one or two chunks,
    whose shared words each chunk already holds, gets nothing)."""
    import math
    from collections import Counter

    import ragbot.retrieve.lexical as lexical

    original = lexical.chunk_text
    chunk_words = {c.id: words_of(p) for c, p in zip(chunks, bot.embedder.word_pieces([original(c) for c in chunks]))}
    per_doc: dict[str, Counter] = defaultdict(Counter)
    spread: dict[str, Counter] = defaultdict(Counter)  # in how many of its document's chunks a word is
    for c in chunks:
        per_doc[c.source].update(chunk_words[c.id])
        spread[c.source].update(set(chunk_words[c.id]))
    df = Counter(w for counts in per_doc.values() for w in counts)
    n = len(per_doc)
    top = {s: [w for w, _ in sorted(((w, c) for w, c in counts.items() if not recurring or spread[s][w] >= 2),
                                    key=lambda wc: (-wc[1] * math.log(n / df[wc[0]]) ** POWER, wc[0]))[:k]]
           for s, counts in per_doc.items()}
    extra = {c.id: " ".join(w for w in top[c.source] if w not in set(chunk_words[c.id])) for c in chunks}
    lexical.chunk_text = lambda c: original(c) + ("\n" + extra[c.id] if extra.get(c.id) else "")
    try:
        return lexical.LexicalIndex.of(chunks, bot.embedder), top
    finally:
        lexical.chunk_text = original


@contextmanager
def fused_by_documents(chunks, on: bool):
    """While on, the fusion ranks a chunk in each ranking by the documents above it (1 + how
    many distinct documents have a chunk above it), so a document's other chunks do not push
    other documents down."""
    import ragbot.bot
    from ragbot.retrieve.lexical import RRF_K

    if not on:
        yield
        return
    source = {c.id: c.source for c in chunks}

    def fuse(rankings, weights, k):
        fused: dict[int, float] = {}
        for ranking, weight in zip(rankings, weights):
            above: set[str] = set()
            for chunk_id in ranking:
                fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (RRF_K + 1 + len(above))
                above.add(source[chunk_id])
        return sorted(fused, key=lambda c: -fused[c])[:k]

    original, ragbot.bot.fuse = ragbot.bot.fuse, fuse
    try:
        yield
    finally:
        ragbot.bot.fuse = original


def document_ranking(bot, chunks):
    """A function (query, fused pool) -> the pool ordered by its documents' BM25 scores."""
    import bm25s

    from ragbot.retrieve.lexical import chunk_text

    by_doc = defaultdict(list)
    for chunk in chunks:
        by_doc[chunk.source].append(chunk)
    docs = sorted(by_doc)
    source = {c.id: c.source for c in chunks}
    retriever = bm25s.BM25()
    retriever.index(bot.embedder.word_pieces(["\n".join(chunk_text(c) for c in by_doc[d]) for d in docs]),
                    show_progress=False)

    def order(query: str, pool: list[int]) -> list[int]:
        terms = [t for t in bot.embedder.word_pieces([query])[0] if t in retriever.vocab_dict]
        scores = {}
        if terms:
            rows, values = retriever.retrieve([terms], k=len(docs), show_progress=False)
            scores = {docs[r]: s for r, s in zip(rows[0], values[0])}
        place = {c: i for i, c in enumerate(pool)}
        return sorted(pool, key=lambda c: (-scores.get(source[c], 0.0), place[c]))

    return order


def hits(bot, questions, lexical_index, hit, document=None, weight=0.0) -> dict[int, np.ndarray]:
    """hit@1 and hit@5 of each question, searched as RagBot.rank fuses (dense and BM25 to depth 50)."""
    from ragbot.bot import FUSION_DEPTH
    from ragbot.retrieve.lexical import fuse

    texts = [q["question"] for q in questions]
    index, _, _ = bot._search_snapshot(True)
    _, dense = index.search(bot.embedder.encode(texts), FUSION_DEPTH, None)
    lexical = lexical_index.search(texts, FUSION_DEPTH, None, None)
    chunks = {c.id: c for c in bot.store.all_chunks()}
    found = {1: [], 5: []}
    for question, text, row, lex in zip(questions, texts, dense, lexical):
        rankings = [[int(i) for i in row if i >= 0], [c for c, _ in lex]]
        weights = [1.0, bot.settings.lexical_weight]
        if document is not None:
            rankings.append(document(text, fuse(rankings, weights, FUSION_DEPTH)))
            weights.append(weight)
        ranking = fuse(rankings, weights, 5)
        for k in found:
            found[k].append(float(any(hit(question, chunks[c]) for c in ranking[:k])))
    return {k: np.array(v) for k, v in found.items()}


def compare(bot, questions, hit) -> None:
    from ragbot.retrieve.lexical import LexicalIndex

    chunks = sorted(bot.store.all_chunks(), key=lambda c: c.id)
    base = hits(bot, questions, LexicalIndex.of(chunks, bot.embedder), hit)
    print(f"{len(questions)} questions; as shipped: hit@1 {base[1].mean():.3f}, hit@5 {base[5].mean():.3f}")

    def line(label, got):
        print(f"  {label:33s}" + "  ".join(
            f"hit@{k} {got[k].mean():.3f} ({got[k].mean() - base[k].mean():+.3f}: "
            f"{int((got[k] > base[k]).sum())} won, {int((got[k] < base[k]).sum())} lost)" for k in (1, 5)))

    for k in LEADS:
        line(f"lead of {k} word pieces", hits(bot, questions, with_lead(bot, chunks, k), hit))
    for k in KEYWORDS:
        index, top = with_keywords(bot, chunks, k)
        if k == KEYWORDS[-1]:
            for source in sorted(top)[:12]:
                print(f"    {Path(source).name}: {' '.join(top[source])}")
        line(f"{k} keywords", hits(bot, questions, index, hit))
    for k in KEYWORDS:
        index, top = with_keywords(bot, chunks, k, recurring=True)
        if k == KEYWORDS[-1]:
            for source in sorted(top)[:12]:
                print(f"    {Path(source).name}: {' '.join(top[source])}")
        line(f"{k} recurring keywords", hits(bot, questions, index, hit))
    document = document_ranking(bot, chunks)
    plain = LexicalIndex.of(chunks, bot.embedder)
    for weight in DOCUMENT_WEIGHTS:
        line(f"document ranking, weight {weight}", hits(bot, questions, plain, hit, document, weight))


def scifact(split: str) -> None:
    from ragbot import RagBot
    from ragbot.evaluation.metrics import evaluate_retrieval, load_beir, paired_difference
    from ragbot.retrieve.lexical import LexicalIndex

    folder = shared_data("scifact")
    if folder is None:
        return
    data = load_beir(folder, split)
    bot = RagBot.open(Path(__file__).resolve().parent / ".cache" / "scifact" / "data", default_corpus=None)
    chunks = sorted(bot.store.all_chunks(), key=lambda c: c.id)
    base = {}
    by_documents = "--document-ranks" in sys.argv
    if by_documents:  # hybrid only: BM25 alone fuses nothing
        variants = [("as shipped", None), ("document ranks", 0), ("document ranks, 20 keywords", 20),
                    ("document ranks, lead of 32", -32)]
    elif "--keywords" in sys.argv:
        variants = [("as shipped", None), *((f"{k} keywords", k) for k in KEYWORDS)]
    elif "--recurring-keywords" in sys.argv:
        variants = [("as shipped", None), *((f"{k} recurring keywords", k) for k in KEYWORDS)]
    else:
        variants = [("as shipped", None), *((f"lead of {k}", -k) for k in LEADS)]
    for label, k in variants:
        index = LexicalIndex.of(chunks, bot.embedder) if not k else \
            with_lead(bot, chunks, -k) if k < 0 else with_keywords(bot, chunks, k, "--recurring-keywords" in sys.argv)[0]
        for mode in ("hybrid",) if by_documents else ("hybrid", "bm25"):
            searching = bot.with_settings(retrieval=mode)
            searching._current_index()
            searching._lexical = (searching.store.generation(), index)
            with fused_by_documents(chunks, k is not None and by_documents):
                report = evaluate_retrieval(searching, data, k=10)
            scores = [q["ndcg@10"] for q in report.per_query]
            if k is None:
                base[mode] = scores
                print(f"{split}, {mode}, as shipped: nDCG@10 {report.summary['ndcg@10']:.4f}")
            else:
                d = paired_difference(base[mode], scores)
                print(f"{split}, {mode}, {label}: nDCG@10 {report.summary['ndcg@10']:.4f}, "
                      f"{d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]")


def main() -> None:
    from ragbot import RagBot

    part = sys.argv[1] if len(sys.argv) > 1 else ""
    if part == "scifact" and (len(sys.argv) == 3 or len(sys.argv) == 4 and sys.argv[3] in (
            "--keywords", "--recurring-keywords", "--document-ranks")):
        return scifact(sys.argv[2])
    if part not in ("forms", "corpus") or len(sys.argv) != 3:
        sys.exit(__doc__)
    bot = RagBot.open(sys.argv[2], default_corpus=None)
    if part == "forms":
        files = [ROOT / "bench" / "data" / "pdf_tables_dev.jsonl", ROOT / "bench" / "data" / "pdf_forms_dev.jsonl"]
        questions = [json.loads(line) for f in files for line in f.open() if line.strip()]
        compare(bot, questions, lambda q, c: Path(c.source).name in q["gold_passage_ids"]
                and any(a in c.text for a in q["answers"]))
    else:
        questions = [q for f in sorted((ROOT / "tests" / "data").glob("corpus_qa*.jsonl"))
                     for q in map(json.loads, f.open()) if q["answerable"] and q.get("gold_passage_ids")]
        compare(bot, questions, lambda q, c: Path(c.source).name in q["gold_passage_ids"])
    bot.close()


if __name__ == "__main__":
    main()
