"""Search latency at 10k, 100k and 1M vectors, exact (ragbot's FAISS flat index) and
approximate (FAISS IVF), with the approximate index's recall@10 against exact search.

    python bench/bench_search.py [--sizes 10000 100000 1000000] [--queries 200]

Vectors are synthetic: 384-dim unit vectors drawn around 2,000 random centres, which gives
the clustered structure real embeddings have (uniform random vectors have none, and make any
approximate index look worse than it is on real data).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import peak_rss_mb, save, table

DIM = 384


def synthetic(n: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((2000, DIM), dtype=np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def latencies(search, queries: np.ndarray) -> tuple[list[float], np.ndarray]:
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, ids = search(q[None, :])
        times.append((time.perf_counter() - t0) * 1000)
        found.append(ids[0])
    return times, np.array(found)


def main() -> None:
    import faiss

    from ragbot.index import VectorIndex

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nprobe", type=int, default=32, help="IVF lists searched per query")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        vectors = synthetic(n, rng)
        queries = vectors[rng.integers(0, n, args.queries)] + 0.3 * rng.standard_normal((args.queries, DIM), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)

        exact = VectorIndex(DIM)
        exact.add(np.arange(n, dtype=np.int64), vectors)
        exact_ms, exact_ids = latencies(lambda q: exact.search(q, 10), queries)

        nlist = int(4 * np.sqrt(n))
        quantizer = faiss.IndexFlatIP(DIM)
        ivf = faiss.IndexIVFFlat(quantizer, DIM, nlist, faiss.METRIC_INNER_PRODUCT)
        t0 = time.perf_counter()
        ivf.train(vectors[rng.choice(n, min(n, 64 * nlist), replace=False)])
        ivf.add(vectors)
        build_s = time.perf_counter() - t0
        ivf.nprobe = args.nprobe
        ivf_ms, ivf_ids = latencies(lambda q: ivf.search(q, 10), queries)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_ids, ivf_ids)])
        rows.append({
            "vectors": n,
            "exact_p50_ms": float(np.percentile(exact_ms, 50)),
            "exact_p95_ms": float(np.percentile(exact_ms, 95)),
            "ivf_p50_ms": float(np.percentile(ivf_ms, 50)),
            "ivf_p95_ms": float(np.percentile(ivf_ms, 95)),
            "ivf_recall@10": float(recall),
            "ivf_nlist/nprobe": f"{nlist}/{args.nprobe}",
            "ivf_build_s": build_s,
        })
        print(table(rows[-1:]), flush=True)
        del exact, ivf, vectors
    print()
    print(table(rows))
    print(f"saved {save('search', {'rows': rows, 'peak_rss_mb': peak_rss_mb()})}")


if __name__ == "__main__":
    main()
