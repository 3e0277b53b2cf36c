"""Markdown reports with matplotlib plots for evaluation runs, and side-by-side comparisons.

A run is a folder written by `ragbot eval ...`: summary.json plus per_question.jsonl (answers)
or per_query.jsonl (retrieval). `write_report` reads one or two runs and writes report.md and
PNG plots into a folder; it knows nothing about models or indexes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ragbot.errors import RagbotError


def load_run(folder: Path) -> tuple[dict, list[dict], str]:
    """(summary, per-item records, kind) of a run folder; kind is "answers" or "retrieval"."""
    folder = Path(folder)
    summary_file = folder / "summary.json"
    if not summary_file.is_file():
        raise RagbotError(f"{folder}: not an evaluation run (no summary.json)")
    summary = json.loads(summary_file.read_text())
    for name, kind in (("per_question.jsonl", "answers"), ("per_query.jsonl", "retrieval")):
        path = folder / name
        if path.is_file():
            return summary, [json.loads(line) for line in path.open() if line.strip()], kind
    raise RagbotError(f"{folder}: no per_question.jsonl or per_query.jsonl")


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RagbotError("reports need matplotlib: pip install matplotlib") from None
    return plt


def _fmt(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_report(out: Path, run: Path, baseline: Path | None = None) -> Path:
    """Write out/report.md with plots for `run`, compared with `baseline` when given."""
    out.mkdir(parents=True, exist_ok=True)
    summary, records, kind = load_run(run)
    runs = [("run", summary, records)]
    if baseline is not None:
        base_summary, base_records, base_kind = load_run(baseline)
        if base_kind != kind:
            raise RagbotError(f"cannot compare a {kind} run with a {base_kind} run")
        runs = [("baseline", base_summary, base_records), ("candidate", summary, records)]

    lines = [f"# Evaluation report ({kind})", ""]
    lines += ["Runs: " + ", ".join(f"{label} = `{path}`" for label, path in
                                   zip([r[0] for r in runs], ([baseline, run] if baseline else [run]))), ""]
    keys = [k for k, v in runs[-1][1].items() if isinstance(v, (int, float)) or v is None]
    header = "| metric | " + " | ".join(label for label, _, _ in runs) + (" | change |" if baseline else " |")
    lines += [header, "|" + " --- |" * (len(runs) + 1 + (1 if baseline else 0))]
    for key in keys:
        values = [r[1].get(key) for r in runs]
        row = f"| {key} | " + " | ".join(_fmt(v) for v in values) + " |"
        if baseline:
            a, b = values
            change = f"{b - a:+.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else "–"
            row += f" {change} |"
        lines.append(row)
    lines.append("")

    plt = _plt()
    score_key = "rougeL" if kind == "answers" else "ndcg@10"
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, _, recs in runs:
        values = [r[score_key] for r in recs if r.get(score_key) is not None]
        ax.hist(values, bins=20, range=(0, 1), alpha=0.6, label=label)
    ax.set_xlabel(score_key)
    ax.set_ylabel("questions" if kind == "answers" else "queries")
    ax.set_title(f"{score_key} distribution")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=110)
    plt.close(fig)
    lines += [f"## {score_key} distribution", "", "![scores](scores.png)", ""]

    if kind == "answers":
        lines += _answer_plots(plt, out, runs)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"


def _answer_plots(plt, out: Path, runs) -> list[str]:
    lines = []
    categories = sorted({r.get("category") or "(none)" for _, _, recs in runs for r in recs})
    fig, ax = plt.subplots(figsize=(7, 3.8))
    width = 0.8 / len(runs)
    for i, (label, _, recs) in enumerate(runs):
        by_cat = defaultdict(list)
        for r in recs:
            # Per category: ROUGE-L for answerable questions, 1 - refused for unanswerable ones.
            score = r["rougeL"] if r["answerable"] else (1.0 if r["refused"] else 0.0)
            if score is not None:
                by_cat[r.get("category") or "(none)"].append(score)
        means = [sum(by_cat[c]) / len(by_cat[c]) if by_cat[c] else 0 for c in categories]
        ax.bar([x + i * width for x in range(len(categories))], means, width, label=label)
    ax.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(categories))])
    ax.set_xticklabels(categories, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mean score")
    ax.set_title("Per category (unanswerable: share refused)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "categories.png", dpi=110)
    plt.close(fig)
    lines += ["## Per category", "", "Answerable categories show mean ROUGE-L; the unanswerable one "
              "shows the share of questions refused.", "", "![categories](categories.png)", ""]

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, _, recs in runs:
        ax.hist([r["latency_ms"] / 1000 for r in recs], bins=20, alpha=0.6, label=label)
    ax.set_xlabel("seconds per answer")
    ax.set_ylabel("questions")
    ax.set_title("Latency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    lines += ["## Latency", "", "![latency](latency.png)", ""]
    return lines
