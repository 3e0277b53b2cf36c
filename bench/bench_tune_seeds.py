"""Does the tuning gate decide as the frozen test set would? `ragbot tune --quick` with several
seeds on the shipped corpus, one of them while another process keeps a core busy.

For each seed: a copy of one data dir holding the shipped corpus, `ragbot tune --quick --seed S`
as its own process (timed), and the gate's decision (activated or kept, its utility gain and
interval). Then the frozen test set (tests/data/frozen, read only as totals) is answered twice in
the default extract mode, with the base model's settings (`--adapter none`) and with the run's
adapter (its fitted thresholds), and the paired utility gain is computed (gate.utility:
ROUGE-L for an answerable question, 1 for refusing an unanswerable one). The decisions agree
when an activated adapter gains on the frozen set (mean above zero) and a kept one does not gain
with confidence (interval not above zero).

    python bench/bench_tune_seeds.py [--seeds 0,1,2] [--busy-seed 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_answers import FROZEN, SHARED_PDFS, answer_all, documents, prepare, score  # noqa: E402
from common import ROOT, SHARED, machine, save, table  # noqa: E402

BUSY = "import time\nwhile True:\n    pass\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--busy-seed", type=int, default=2, help="the seed run while a core is kept busy")
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    from ragbot.evaluation.metrics import paired_difference
    from ragbot.learn.gate import utility
    from ragbot.learn.registry import AdapterRegistry

    work = Path(args.work or tempfile.mkdtemp(prefix="ragbot-bench-seeds-"))
    work.mkdir(parents=True, exist_ok=True)
    base = work / "base"
    if not (base / "ragbot.db").is_file():
        subprocess.run([sys.executable, "-m", "ragbot", "ingest", str(ROOT / "corpus"), "--data-dir", str(base), "-q"],
                       check=True, cwd=ROOT)
    shared = all((SHARED / "pdfs" / name).is_file() for name in SHARED_PDFS)
    rows = [json.loads(line) for line in (FROZEN / "answers.jsonl").open(encoding="utf-8") if line.strip()]
    rows = [r for r in rows if shared or r.get("needs") != "shared_pdfs"]
    rows_path = work / "rows.jsonl"
    rows_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    frozen_dir = work / "frozen-data"
    if not (frozen_dir / "ragbot.db").is_file():
        prepare(frozen_dir, documents(shared), None)
    base_answers = answer_all(frozen_dir, rows_path, work / "frozen-none.jsonl", {"adapter": "none"}, None)
    base_utility = [utility(r) for r in score(rows, base_answers)]

    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        data_dir = work / f"seed-{seed}"
        if data_dir.exists():
            shutil.rmtree(data_dir)
        shutil.copytree(base, data_dir, ignore=shutil.ignore_patterns("write.lock", "*.lock"))
        busy = subprocess.Popen([sys.executable, "-c", BUSY]) if seed == args.busy_seed else None
        started = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "ragbot", "tune", "--quick", "--seed", str(seed),
                                   "--data-dir", str(data_dir)], cwd=ROOT, capture_output=True, text=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"seed {seed}: tune failed:\n{proc.stderr[-3000:]}")
        registry = AdapterRegistry(data_dir / "adapters")
        info = registry.versions()[-1]
        gate = info.metadata.get("gate") or {}
        gain = (gate.get("candidate") or {}).get("utility_gain") or {}
        # The frozen set, answered with this adapter's fitted thresholds (extract mode: the
        # adapter's weights are not used, its answerability and correction thresholds are).
        adapters = frozen_dir / "adapters"
        if adapters.exists():
            shutil.rmtree(adapters)
        shutil.copytree(data_dir / "adapters", adapters, ignore=shutil.ignore_patterns("*.lock", "*.holder.json"))
        answers = answer_all(frozen_dir, rows_path, work / f"frozen-seed-{seed}.jsonl", {"adapter": info.version}, None)
        frozen_gain = paired_difference(base_utility, [utility(r) for r in score(rows, answers)])
        promoted = bool(gate.get("promoted"))
        agrees = (frozen_gain["mean"] > 0) if promoted else not (frozen_gain["ci95"] and frozen_gain["ci95"][0] > 0)
        results.append({
            "seed": seed, "busy_core": seed == args.busy_seed, "minutes": round(seconds / 60, 1),
            "threshold": (info.metadata.get("answerability") or {}).get("threshold"),
            "correction_match": (info.metadata.get("corrections") or {}).get("threshold"),
            "gate_gain": gain.get("mean"), "gate_ci95": gain.get("ci95"), "activated": promoted,
            "frozen_gain": frozen_gain["mean"], "frozen_ci95": frozen_gain["ci95"], "agrees": agrees,
            "sft_steps": (info.metadata.get("training", {}).get("sft") or {}).get("steps_run"),
        })
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps(machine()))
    print(table([{k: (f"[{v[0]:+.3f}, {v[1]:+.3f}]" if isinstance(v, list) and v else v) for k, v in r.items()}
                 for r in results]))
    print("written to", save("tune_seeds", {"rows": len(rows), "runs": results}))


if __name__ == "__main__":
    main()
