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


def share(flags: list[bool]) -> dict:
    """The share of true flags, with its bootstrap 95% interval."""
    from ragbot.evaluation.metrics import bootstrap_ci

    values = [float(f) for f in flags]
    return {"n": len(values), "share": sum(values) / len(values) if values else None, "ci95": bootstrap_ci(values)}


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


def scifact_bot(work: Path):
    """BEIR SciFact indexed as bench_scifact.py indexes it, in `work`/scifact (kept between runs,
    so only the first embeds the 5,183 abstracts): (bot with hybrid search, test split, train
    split), or None without ../shared/data/scifact."""
    import sys

    from ragbot import RagBot
    from ragbot.evaluation.metrics import load_beir, write_beir_documents

    folder = shared_data("scifact")
    if folder is None:
        return None
    test, train = load_beir(folder, "test"), load_beir(folder, "train")
    write_beir_documents(test, work / "scifact" / "documents")
    bot = RagBot.open(work / "scifact" / "data", default_corpus=None, retrieval="hybrid")
    print(bot.ingest([work / "scifact" / "documents"], prune=True, store_copies=True).summary(), file=sys.stderr)
    return bot, test, train


def corpus_bot_and_development_rows(data_dir, log_files: list[str]):
    """The explorations' data dir (made when it does not exist: the shipped corpus, and the
    questions of `log_files` logged as a user's earlier questions, as bench_answers.py
    --question-log does), with the development sets' answerable single questions
    (tests/data/corpus_qa*.jsonl) and follow-ups (bench/data/follow_ups*_dev.jsonl):
    (bot, single, follow)."""
    import json
    from pathlib import Path

    from bench_answers import log_questions
    from ragbot import RagBot

    data_dir = Path(data_dir)
    fresh = not data_dir.exists()
    bot = RagBot.open(data_dir, default_corpus=None)
    if fresh:
        bot.ingest([ROOT / "corpus"])
        if log_files:
            bot.close()
            log_questions(data_dir, log_files, None)
            bot = RagBot.open(data_dir, default_corpus=None)
    single = [json.loads(line) for f in sorted((ROOT / "tests" / "data").glob("corpus_qa*.jsonl")) for line in open(f)]
    follow = [json.loads(line) for f in sorted((ROOT / "bench" / "data").glob("follow_ups*_dev.jsonl"))
              for line in open(f)]
    return bot, [r for r in single if r.get("answerable")], follow


def first_sentence_rouge(bot, single: list[dict], follow: list[dict], scores) -> dict[str, list[dict]]:
    """ROUGE-L of the sentence each ranking variant puts first, for the development sets'
    single questions and follow-ups (the explorations of docs/benchmarks.md §15-16).
    `scores(queries, passages)` -> (candidate pool, {variant: a score per candidate}), or
    (None, None) when the passages hold no sentence; a follow-up is searched as the chat searches
    it, and scored by its standalone query and its turn as asked."""
    import numpy as np

    from ragbot.evaluation.metrics import best_of, rouge_l

    def first(queries, passages, references):
        pool, by_variant = scores(queries, passages)
        if pool is None:
            return None
        return {name: best_of(rouge_l, pool[int(np.argmax(v))][1], references) for name, v in by_variant.items()}

    results: dict[str, list[dict]] = {"single questions": [], "follow-ups": []}
    for row in single:
        found = first([row["question"]], bot.search(row["question"], k=5), row["answers"])
        if found:
            results["single questions"].append(found)
    for row in follow:
        query = bot.standalone_query([row["previous"]], row["question"])
        found = first([query] + ([row["question"]] if query != row["question"] else []), bot.search(query, k=5),
                      row["answers"])
        if found:
            results["follow-ups"].append(found)
    return results


def print_paired(results: dict[str, list[dict]], baseline: str, width: int = 34) -> None:
    """Each variant's mean, its paired difference to `baseline` with the bootstrap 95% interval,
    and how many rows it changed, for each group of rows."""
    import numpy as np

    from ragbot.evaluation.metrics import paired_difference

    for kind, rows in results.items():
        print(f"\n{kind}: {len(rows)} (ROUGE-L of the sentence ranked first; paired difference to {baseline})")
        for name in rows[0] if rows else ():
            d = paired_difference([r[baseline] for r in rows], [r[name] for r in rows])
            changed = sum(r[name] != r[baseline] for r in rows)
            print(f"  {name:{width}s} {np.mean([r[name] for r in rows]):.3f}  "
                  f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]  ({changed} changed)")


def paired(label: str, base: list[float], new: list[float], names: tuple[str, str] = ("before", "after")) -> dict:
    """Print and return one paired comparison of per-query scores: both means and the paired
    difference with its bootstrap 95% interval; `names` are the two means' keys in the result."""
    import numpy as np

    from ragbot.evaluation.metrics import paired_difference

    d = paired_difference(base, new)
    print(f"{label} (n={len(base)}): {np.mean(base):.3f} -> {np.mean(new):.3f}, paired {d['mean']:+.3f} "
          f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]", flush=True)
    return {"set": label, "n": len(base), names[0]: float(np.mean(base)), names[1]: float(np.mean(new)),
            "difference": d}
