"""How often is a text file that is not UTF-8 read back as its author wrote it?

A development set, bench/data/encodings_dev.jsonl: texts written for this bench in 22 languages,
each saved in a legacy code page its speakers' older programs write (34 paragraphs in one or two
code pages each, and 18 short notes). Each file's bytes are decoded by ragbot's reader (`readers.decode_text`,
which guesses with chardet: ingest/encoding.py), and by charset-normalizer's best guess, the
other well-kept detector on PyPI; a paragraph is read whole and cut to its first sentence.
Counted, with bootstrap 95% intervals: the share read back exactly as written. The judge is the
written text, not a detector. With `--set` another file of the same shape (the frozen set,
tests/data/frozen/encodings.jsonl: totals only).

    python bench/explore_encodings.py [--set FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, save, share  # noqa: E402

from ragbot.errors import DocumentError  # noqa: E402
from ragbot.ingest.readers import decode_text  # noqa: E402

DATA = ROOT / "bench" / "data" / "encodings_dev.jsonl"


def charset_normalizer_read(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    return str(best) if best is not None else None


def ragbot_read(data: bytes) -> str | None:
    """The text ragbot's reader decodes from a .txt file's bytes (before it folds spaces)."""
    try:
        return decode_text(Path("file.txt"), data)[0]
    except DocumentError:  # a refusal counts as a wrong read
        return None


def first_sentence(text: str) -> str:
    # the development set's paragraphs end a sentence with one of these, then a space
    cut = min((text.find(mark) for mark in (". ", "。", "? ") if mark in text), default=len(text))
    return text[:cut + 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default=str(DATA), help="the texts (default: the development set)")
    args = parser.parse_args()
    development = Path(args.set).resolve() == DATA.resolve()
    rows = [json.loads(line) for line in Path(args.set).read_text(encoding="utf-8").splitlines() if line.strip()]
    exact: dict[str, dict[str, list[bool]]] = {}
    wrong: list[str] = []
    for row in rows:
        cases = [(row["kind"], row["text"])]
        if development and row["kind"] == "paragraph":
            cases.append(("first sentence", first_sentence(row["text"])))
        for kind, text in cases:
            data = text.encode(row["encoding"])
            by = exact.setdefault(kind, {"ragbot": [], "charset-normalizer": []})
            by["ragbot"].append(ragbot_read(data) == text)
            by["charset-normalizer"].append(charset_normalizer_read(data) == text)
            if development and not by["ragbot"][-1]:
                wrong.append(f"{kind}: {row['language']} ({row['encoding']})")
    totals = {who: [flag for by in exact.values() for flag in by[who]] for who in ("ragbot", "charset-normalizer")}
    report = {"set": str(args.set), "rows": len(rows),
              "exact": {kind: {who: share(flags) for who, flags in by.items()} for kind, by in exact.items()},
              "exact_all": {who: share(flags) for who, flags in totals.items()}}
    if development:
        report["ragbot_read_wrong"] = wrong
    for kind, by in [*report["exact"].items(), ("all", report["exact_all"])]:
        for who, counted in by.items():
            low, high = counted["ci95"]
            print(f"{kind:>15} {who:>18}: {counted['share']:.3f} [{low:.3f}, {high:.3f}] of {counted['n']}")
    if development:
        print("ragbot read wrong:", "; ".join(wrong) or "none")
    print(f"written to {save('encodings' if development else 'encodings_frozen', report)}")


if __name__ == "__main__":
    main()
