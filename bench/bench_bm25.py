"""What the BM25 index costs an ingest: building it from scratch, and the next generation after
one new document, against bm25s indexing word-piece strings (how ragbot built every generation
before), measured in the same run.

    python bench/bench_bm25.py [--sizes 10000 100000] [--new 50] [--gone 50] [--no-baseline]

Synthetic chunks (texts of 120 words drawn with Zipf frequencies from the embedder's own
whole-word vocabulary, as bench_search.py makes them), so sizes past the shipped corpus are
cheap to make. For each size:
- "baseline": the embedder's word pieces as strings for every chunk, then `bm25s.BM25().index`:
  what every ingest paid before the term counts were kept (lexical.py);
- "scratch": `LexicalIndex.build` with no index before it (a first ingest, or a lost index);
- "next": `LexicalIndex.build` given the index of the generation before, after an ingest that
  adds `--new` chunks (one document) and replaces `--gone` (a re-ingested one): what an ingest
  pays now;
- the next generation's top 10 against the baseline's on 100 queries of 8 words: the same
  ranking, since the counts build computes bm25s' own scores; where the order differs, the
  scores are the same and only chunks of equal score are ordered otherwise ("ties").
`--no-baseline` measures only scratch and next (at a million chunks the baseline alone takes
about 450 s and 20 GB here).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import machine, peak_rss_mb, save, table

WORDS = 120


def main() -> None:
    import bm25s

    from ragbot.retrieve.embed import Embedder
    from ragbot.retrieve.lexical import LexicalIndex, chunk_text
    from ragbot.settings import load_settings
    from ragbot.storage.store import StoredChunk

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--new", type=int, default=50, help="chunks the next ingest adds")
    parser.add_argument("--gone", type=int, default=50, help="chunks the next ingest replaces")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--no-baseline", action="store_true", help="skip bm25s' own build and the ranking check")
    args = parser.parse_args()
    print(machine(), flush=True)
    rng = np.random.default_rng(0)
    embedder = Embedder.load(load_settings("/nonexistent-ragbot-bench"))
    words = [w for w in embedder.tokenizer.get_vocab() if w.isalpha() and len(w) > 2]
    zipf = 1.0 / np.arange(1, len(words) + 1)
    zipf /= zipf.sum()
    rng.shuffle(words)

    def chunks_of(ids) -> list:
        drawn = rng.choice(len(words), size=(len(ids), WORDS), p=zipf)
        return [StoredChunk(int(i), f"/bench/{i // 50}.md", f"doc {i // 50}", "", None, " ".join(words[j] for j in row))
                for i, row in zip(ids, drawn)]

    rows = []
    for n in args.sizes:
        stored = {c.id: c for c in chunks_of(range(n))}
        read = lambda ids: [stored[i] for i in ids]  # noqa: E731  (the database, in memory)

        baseline = baseline_next = None
        if not args.no_baseline:
            started = time.perf_counter()
            baseline = bm25s.BM25()
            baseline.index(embedder.word_pieces([chunk_text(c) for c in stored.values()]), show_progress=False)
            baseline_s = time.perf_counter() - started

        started = time.perf_counter()
        first = LexicalIndex.build(list(stored), read, embedder)
        scratch_s = time.perf_counter() - started

        # The next ingest: --gone chunks replaced (removed, their document's new chunks added
        # under new ids), --new chunks added.
        gone = rng.choice(n, args.gone, replace=False)
        for i in gone:
            del stored[int(i)]
        stored.update({c.id: c for c in chunks_of(range(n, n + args.gone + args.new))})
        started = time.perf_counter()
        nxt = LexicalIndex.build(list(stored), read, embedder, previous=first)
        next_s = time.perf_counter() - started
        counts_mb = sum(getattr(nxt.counts, a).nbytes for a in ("ids", "indptr", "terms", "counts")) / 2**20
        if args.no_baseline:
            rows.append({"chunks": n, "scratch build s": round(scratch_s, 3),
                         f"next generation (+{args.new}, ~{args.gone}) s": round(next_s, 3),
                         "term counts MB": round(counts_mb, 1)})
            print(table(rows[-1:]), flush=True)
            del first, nxt
            continue
        started = time.perf_counter()
        baseline_next = bm25s.BM25()
        order = sorted(stored)
        baseline_next.index(embedder.word_pieces([chunk_text(stored[i]) for i in order]), show_progress=False)
        baseline_next_s = time.perf_counter() - started

        picked = rng.choice(order, args.queries)
        asked = [" ".join(rng.choice(stored[int(p)].text.split(), 8, replace=False)) for p in picked]
        same = ties = differ = 0
        for question in asked:
            known = [t for t in embedder.word_pieces([question])[0] if t in baseline_next.vocab_dict]
            r, s = baseline_next.retrieve([known], k=10, show_progress=False)
            expected = [(order[i], float(v)) for i, v in zip(r[0], s[0]) if v > 0]
            found = nxt.search([question], 10)[0]
            if [c for c, _ in found] == [c for c, _ in expected]:
                same += 1
            elif len(found) == len(expected) and np.allclose([v for _, v in found], [v for _, v in expected], rtol=1e-5):
                ties += 1  # the same scores, chunks of equal score in another order
            else:
                differ += 1
        rows.append({"chunks": n, "baseline build s": baseline_s, "scratch build s": scratch_s,
                     "scratch / baseline": scratch_s / baseline_s,
                     f"next generation (+{args.new}, ~{args.gone}) s": next_s,
                     "baseline next s": baseline_next_s, "next / baseline next": next_s / baseline_next_s,
                     "same top 10": f"{same}/{len(asked)}", "ties ordered otherwise": ties, "differ": differ,
                     "term counts MB": counts_mb})
        rows[-1] = {k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}
        print(table(rows[-1:]), flush=True)
        del baseline, baseline_next, first, nxt  # freed before the next size
    print()
    print(table(rows))
    print(f"saved {save('bm25', {'machine': machine(), 'rows': rows, 'peak_rss_mb': peak_rss_mb()})}")


if __name__ == "__main__":
    main()
