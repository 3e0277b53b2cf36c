"""Ingest throughput: `ragbot ingest` on real PDFs and the shipped corpus, against calling
sentence-transformers `encode` (float32) directly on the same chunk texts.

    python bench/bench_ingest.py
Uses ../shared/data/pdfs when present (says so when not). The ingest runs as its own process
so its peak memory is measured alone.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SHARED, peak_rss_mb, save, table


def main() -> None:
    inputs = [ROOT / "corpus"]
    pdfs = SHARED / "pdfs"
    if pdfs.is_dir():
        inputs.append(pdfs)
    else:
        print(f"note: {pdfs} not found; measuring the shipped corpus only")
    data_dir = Path(tempfile.mkdtemp(prefix="ragbot-bench-ingest-"))

    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ragbot", "ingest", *map(str, inputs), "--data-dir", str(data_dir), "-q"],
        capture_output=True, text=True, cwd=ROOT,
    )
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"ingest failed:\n{proc.stderr}")
    ingest_rss = peak_rss_mb(children=True)

    from ragbot import RagBot
    from ragbot.ingest.ingester import Ingester

    bot = RagBot.open(data_dir)
    docs = bot.store.documents()
    pages = sum(d.n_pages or 0 for d in docs)
    rows = bot.store._db.execute(
        "SELECT d.source, d.title, c.section, c.text, c.n_tokens FROM chunks c JOIN documents d ON d.id = c.doc_id"
    ).fetchall()
    n_chunks = len(rows)
    report_line = proc.stdout.strip().splitlines()[-1]
    in_command = float(report_line.split(" in ")[1].split("s")[0])  # the report's own seconds

    # Baseline: plain sentence-transformers, float32, same texts the pipeline embedded.
    from sentence_transformers import SentenceTransformer

    from ragbot.models import resolve_embedder
    from ragbot.types import Chunk, Document

    ingester = Ingester(bot.settings, bot.store, bot._current_index(), bot.embedder)
    texts = [
        ingester.embedding_input(
            Document(source=s, kind="", title=t, text="", sha256="", size=0),
            Chunk(text=x, section=sec, start=0, end=0, page=None, page_end=None, n_tokens=n, sha256="", ord=0),
        )
        for s, t, sec, x, n in rows
    ]
    raw = SentenceTransformer(resolve_embedder(bot.settings), device="cpu")
    raw.encode(texts[:32])
    t0 = time.perf_counter()
    raw.encode(texts, batch_size=64)
    raw_seconds = time.perf_counter() - t0

    # The BM25 index of hybrid search (included in the ingest's seconds above): built alone here,
    # to say what share of the ingest it costs.
    from ragbot.retrieve.lexical import LexicalIndex

    chunks = bot.store.all_chunks()
    t0 = time.perf_counter()
    LexicalIndex.of(chunks, bot.embedder)
    bm25_seconds = time.perf_counter() - t0

    pipeline_rate = n_chunks / in_command
    raw_rate = n_chunks / raw_seconds
    result = {
        "documents": len(docs),
        "pages": pages,
        "chunks": n_chunks,
        "ingest_seconds": in_command,
        "process_wall_seconds": wall,
        "ingest_chunks_per_s": pipeline_rate,
        "ingest_pages_per_s": pages / in_command,
        "raw_encode_fp32_chunks_per_s": raw_rate,
        "ratio_ingest_vs_raw_encode": pipeline_rate / raw_rate,
        "embed_dtype": bot.embedder.dtype_name,
        "ingest_peak_rss_mb": ingest_rss,
        "bm25_build_seconds": bm25_seconds,
        "bm25_share_of_ingest": bm25_seconds / in_command,
    }
    print(table([{"metric": k, "value": v} for k, v in result.items()]))
    print(f"saved {save('ingest', result)}")


if __name__ == "__main__":
    main()
