"""Helpers shared by the benchmarks: machine facts, tables, JSON results, peak memory."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    from ragbot.models import cpu_has_native_bf16

    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "native_bf16": cpu_has_native_bf16(),
        # What decides the fast paths (bf16 matmuls in PyTorch, llama.cpp's kernels).
        "cpu_flags": {f: f in flags for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2")},
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def shared_data(name: str) -> Path | None:
    """../shared/data/<name>, or None (having said the benchmark is skipped) when it is not there."""
    folder = SHARED / name
    if folder.is_dir():
        return folder
    print(f"skipped: {folder} not found (this benchmark reads ../shared/data/{name})")
    return None


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children), in MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    cells = [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = "  ".join(k.ljust(w) for k, w in zip(keys, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    return path


def searched_development_sets(work: Path, **settings):
    """The development question sets (tests/data/corpus_qa*.jsonl, looked at freely; never the
    frozen set) searched over the shipped corpus as the bot searches them (a follow-up with the
    question before it), in a fresh data dir under `work` with `settings` overridden: (bot, rows,
    each row's search query, the passages it found)."""
    from ragbot import RagBot

    bot = RagBot.open(work / "data", default_corpus=None, **settings)
    bot.ingest([ROOT / "corpus"])
    rows = [json.loads(line) for path in sorted((ROOT / "tests" / "data").glob("corpus_qa*.jsonl"))
            for line in path.open()]
    queries = [bot.standalone_query([r["previous"]], r["question"]) if r.get("previous") else r["question"]
               for r in rows]
    return bot, rows, queries, bot.batch_search(queries)
