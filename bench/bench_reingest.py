"""Reading documents again: what keeping the vectors of unchanged chunks saves.

    python bench/bench_reingest.py

Two writes a user meets, each timed with the stored vectors kept (ragbot now) and with every
chunk embedded again (the baseline, `Ingester._stored_vectors` made to find nothing), in the same
run on the same data dir:
- a new pipeline version (an upgrade that changes how documents are read): every stored
  document is read and chunked again; the shipped corpus and ../shared/data/pdfs when present;
- one paragraph edited in a long note (a generated 600-paragraph log, 160 chunks).
Each is timed `--repeats` times, alternating the two ways; the median is reported, and the
ratio baseline / now. The report's own seconds are the ingest's, models already loaded.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import ROOT, SHARED, save, table


def _note(paragraphs: list[str]) -> str:
    return "\n\n".join(paragraphs) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings of each way, alternated (default 3)")
    args = parser.parse_args()

    from ragbot import RagBot
    from ragbot.ingest import ingester

    work = Path(tempfile.mkdtemp(prefix="ragbot-bench-reingest-"))
    inputs = [ROOT / "corpus"]
    if (SHARED / "pdfs").is_dir():
        inputs.append(SHARED / "pdfs")
    else:
        print(f"note: {SHARED / 'pdfs'} not found; the shipped corpus only")
    notes = work / "notes"
    notes.mkdir()
    paragraphs = [f"Shipment {i} left the warehouse on day {i % 28 + 1} with {i + 3} crates of tea, "
                  f"{i % 5} of them green and the rest black, bound for dock {i % 9} by the coast road "
                  f"after the inspector signed form {1000 + i}." for i in range(600)]
    (notes / "log.txt").write_text(_note(paragraphs))

    bot = RagBot.open(work / "data")
    first = bot.ingest([*inputs, notes])
    assert first.ok, first.failed
    real = ingester.Ingester._stored_vectors

    def find_nothing(self, batch):
        vectors, ranked, _, own = real(self, batch)
        return vectors, ranked, set(), [({}, []) for _ in own]

    def timed(keep: bool, write) -> tuple[float, int, int]:
        ingester.Ingester._stored_vectors = real if keep else find_nothing
        try:
            report = write()
        finally:
            ingester.Ingester._stored_vectors = real
        return report.seconds, report.chunks_added, report.chunks_kept

    def bump():
        ingester.PIPELINE_VERSION += 1
        return bot.ingest([*inputs, notes])

    edits = iter(range(10_000))

    def edit():  # one paragraph changed from what is stored (the edits add up)
        at = 37 * (next(edits) + 1) % len(paragraphs)
        paragraphs[at] = f"Shipment {at} was held at customs for {at % 6 + 2} days: its papers named the wrong port."
        (notes / "log.txt").write_text(_note(paragraphs))
        return bot.ingest([notes])

    rows, result = [], {"chunks": first.chunks_added}
    for name, write in (("new pipeline version", bump), ("one paragraph of a long note edited", edit)):
        runs: dict[bool, list[tuple[float, int, int]]] = {True: [], False: []}
        for _ in range(args.repeats):
            for keep in (False, True):
                runs[keep].append(timed(keep, write))
        now = statistics.median(r[0] for r in runs[True])
        before = statistics.median(r[0] for r in runs[False])
        rows.append({"write": name, "chunks stored": runs[True][0][1], "kept (now)": runs[True][0][2],
                     "seconds, all embedded": before, "seconds, now": now, "ratio": before / now})
        result[name] = rows[-1]
    print(table(rows))
    print(f"saved {save('reingest', result)}")


if __name__ == "__main__":
    main()
