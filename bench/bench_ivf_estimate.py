"""Does the approximate index's build-time recall estimate hold for real questions?

An IVF index picks how many lists a search reads (nprobe) from a recall@10 it measures when it
is built, on queries it makes from the stored vectors, since it has no questions then
(index.py). This checks those made-up queries against real ones: the SciFact abstracts
(../shared/data/scifact, 5,183) embedded with the shipped MiniLM, and all its queries (test and
train, about 1,100 real questions), each searched exactly and on IVF indexes at every nprobe
the index may choose. Printed per nprobe: recall@10 of the real questions and of the index's two
kinds of check queries (index.check_queries: halfway between two stored vectors; at cosine 0.5
from one in a random direction). The check is safe when real questions reach TARGET_RECALL
where the index stops (both checks at CHECK_RECALL).

    python bench/bench_ivf_estimate.py [--lists N]     # about 3 minutes on 2 cores
Needs ../shared/data/scifact; without it the benchmark says so and exits 0.
"""

from __future__ import annotations

import argparse

import numpy as np

from common import shared_data, machine, save, table


BETWEEN = "check: between two stored"
NEAR = "check: cosine 0.5 from one stored"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lists", type=int, default=0, help="IVF lists (default: what the index would use)")
    args = parser.parse_args()
    folder = shared_data("scifact")
    if folder is None:
        return
    print(machine(), flush=True)
    import faiss

    from ragbot.retrieve.embed import Embedder
    from ragbot.evaluation.metrics import load_beir
    from ragbot.retrieve.index import CHECK_RECALL, NPROBES, RECALL_QUERIES, TARGET_RECALL, VectorIndex, _exact, _lists_for, check_queries
    from ragbot.settings import load_settings

    data = load_beir(folder, "test")
    embedder = Embedder.load(load_settings("/nonexistent-ragbot-bench"))
    texts = [f"{title}\n{text}" if title else text for title, text in data.corpus.values()]
    vectors = embedder.encode(texts, batch_size=64)
    questions = embedder.encode(list(data.queries.values()), batch_size=64)
    n = len(vectors)
    ids = np.arange(n, dtype=np.int64)
    flat = VectorIndex(vectors.shape[1])
    flat.add(ids, vectors)
    rng = np.random.default_rng(0)
    spanning, close = check_queries(vectors, RECALL_QUERIES * 5, rng)
    made = {"real questions": questions, BETWEEN: spanning, NEAR: close}
    truth = {name: _exact(q, ids, vectors, 10)[1] for name, q in made.items()}
    nlist = args.lists or _lists_for(n)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(vectors.shape[1]), vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = 0
    ivf.train(vectors)
    ivf.add(vectors)
    rows = []
    for nprobe in [p for p in NPROBES if p <= nlist]:
        row = {"lists": nlist, "nprobe": nprobe}
        for name, queries in made.items():
            _, found = ivf.search(queries, 10, params=faiss.SearchParametersIVF(nprobe=nprobe))
            row[name] = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth[name])]))
        rows.append(row)
    print(f"{n} abstracts, {len(questions)} real questions; the index reads the fewest lists where both checks "
          f"reach {CHECK_RECALL}, for real questions to reach {TARGET_RECALL}")
    print(table(rows))
    chosen = next((r for r in rows if min(r[BETWEEN], r[NEAR]) >= CHECK_RECALL), None)
    if chosen:
        print(f"the index would read {chosen['nprobe']} lists: real questions' recall@10 there "
              f"{chosen['real questions']:.3f}, its check {min(chosen[BETWEEN], chosen[NEAR]):.3f}")
    print(f"saved {save('ivf_estimate', {'rows': rows, 'abstracts': n, 'questions': len(questions)})}")


if __name__ == "__main__":
    main()
