"""Search latency at 10k, 100k and 1M chunks: dense exact (FAISS flat), dense approximate (the IVF
index ragbot switches to past `approximate_index_above`, built by `VectorIndex.approximate`, which
picks its nprobe for recall@10 >= 0.95 and reports it), and hybrid search (BM25 fused with each).

    python bench/bench_search.py [--sizes 10000 100000 1000000] [--queries 200] [--no-hybrid]

The data is synthetic, since embedding a million chunks takes hours here:
- vectors: 384-dim unit vectors drawn around 2,000 random centres, the clustered structure real
  embeddings have (uniform random vectors have none, and make any approximate index look worse
  than it is on real data);
- texts: 120 words each, drawn with Zipf frequencies from the embedder's own whole-word
  vocabulary, indexed by ragbot's BM25 (`LexicalIndex`, the embedder's word pieces);
- queries: a vector at cosine 0.5 (`--cosine`) from a stored chunk's, in a random direction (as
  a question sits from its best passage), and 8 words of that chunk's text. (The index measures
  its own build-time recall on 200 queries of each of two kinds, index.check_queries.)
Hybrid search here is what `RagBot.batch_search` does (dense and BM25 to depth FUSION_DEPTH,
reciprocal-rank fusion, cosine of the fused top k from the index's vectors) without reading the
chunks' rows from SQLite. Recall@10 of the approximate index is against exact search, for dense
search alone and for the hybrid ranking.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import machine, peak_rss_mb, save, table

DIM = 384
WORDS = 120


def synthetic(n: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((2000, DIM), dtype=np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def timed(search, queries) -> tuple[list[float], list]:
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        found.append(search(q))
        times.append((time.perf_counter() - t0) * 1000)
    return times, found


def recall(truth: list, found: list) -> float:
    return float(np.mean([len(set(list(a)[:10]) & set(list(b)[:10])) / max(1, min(10, len(a))) for a, b in zip(truth, found)]))


def main() -> None:
    from ragbot.bot import FUSION_DEPTH
    from ragbot.retrieve.embed import Embedder
    from ragbot.retrieve.index import VectorIndex, near
    from ragbot.retrieve.lexical import LexicalIndex, fuse
    from ragbot.settings import load_settings
    from ragbot.storage.store import StoredChunk

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--cosine", type=float, default=0.5,
                        help="queries' cosine to the chunk each is made from")
    parser.add_argument("--no-hybrid", action="store_true", help="dense search only (no BM25 index)")
    args = parser.parse_args()
    print(machine(), flush=True)
    rng = np.random.default_rng(0)
    embedder = None if args.no_hybrid else Embedder.load(load_settings("/nonexistent-ragbot-bench"))
    if embedder is not None:
        words = [w for w in embedder.tokenizer.get_vocab() if w.isalpha() and len(w) > 2]
        zipf = 1.0 / np.arange(1, len(words) + 1)
        zipf /= zipf.sum()
        rng.shuffle(words)
    rows = []
    for n in args.sizes:
        vectors = synthetic(n, rng)
        picked = rng.integers(0, n, args.queries)
        queries = near(vectors[picked], args.cosine, rng)
        ids = np.arange(n, dtype=np.int64)

        exact = VectorIndex(DIM)
        exact.add(ids, vectors)
        approximate, built = exact.approximate()
        row = {"chunks": n, "ivf_lists/nprobe": f"{built['lists']}/{built['nprobe']}",
               "ivf_build_s": built["seconds"], "ivf_recall@10_at_build": built["recall_at_10"]}
        exact_ms, exact_found = timed(lambda q: exact.search(q[None, :], 10)[1][0], queries)
        ivf_ms, ivf_found = timed(lambda q: approximate.search(q[None, :], 10)[1][0], queries)
        row.update({"dense_exact_p50_ms": np.percentile(exact_ms, 50), "dense_ivf_p50_ms": np.percentile(ivf_ms, 50),
                    "dense_ivf_p95_ms": np.percentile(ivf_ms, 95), "dense_ivf_recall@10": recall(exact_found, ivf_found)})
        if embedder is not None:
            started = time.perf_counter()
            drawn = rng.choice(len(words), size=(n, WORDS), p=zipf)
            texts = [" ".join(words[i] for i in row_) for row_ in drawn]
            chunks = [StoredChunk(int(i), f"/bench/{i // 50}.md", f"doc {i // 50}", "", None, t) for i, t in enumerate(texts)]
            lexical = LexicalIndex.of(chunks, embedder)
            row["bm25_build_s"] = time.perf_counter() - started
            asked = [" ".join(texts[p].split()[j] for j in rng.choice(WORDS, 8, replace=False)) for p in picked]

            def hybrid(index, q, text):
                dense = [int(i) for i in index.search(q[None, :], FUSION_DEPTH)[1][0] if i >= 0]
                words_ = [c for c, _ in lexical.search([text], FUSION_DEPTH)[0]]
                ranking = fuse([dense, words_], (1.0, 1.0), 5)
                index.vectors(ranking) @ q
                return ranking

            h_exact_ms, h_exact = timed(lambda qt: hybrid(exact, *qt), list(zip(queries, asked)))
            h_ivf_ms, h_ivf = timed(lambda qt: hybrid(approximate, *qt), list(zip(queries, asked)))
            row.update({"hybrid_exact_p50_ms": np.percentile(h_exact_ms, 50),
                        "hybrid_ivf_p50_ms": np.percentile(h_ivf_ms, 50),
                        "hybrid_ivf_p95_ms": np.percentile(h_ivf_ms, 95),
                        "hybrid_ivf_recall@5": recall(h_exact, h_ivf)})
            del lexical, chunks, texts, drawn
        rows.append({k: round(float(v), 3) if isinstance(v, (float, np.floating)) else v for k, v in row.items()})
        print(table(rows[-1:]), flush=True)
        exact = approximate = vectors = None  # freed before the next size
    print()
    print(table(rows))
    print(f"saved {save('search', {'machine': machine(), 'rows': rows, 'peak_rss_mb': peak_rss_mb()})}")


if __name__ == "__main__":
    main()
