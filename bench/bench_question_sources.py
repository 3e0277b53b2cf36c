"""Which question source makes the better training data: structure or the model itself?

One data build from the shipped corpus (`ragbot tune`'s data stage, every question also made
unanswerable), then one LoRA SFT adapter per arm, on the same number of examples and steps:
- structure: questions from headings and definitions;
- model:     questions written by the local generator;
- both:      half of each.
Each adapter answers the hand-written question sets in tests/data (none of them trained on), and
the table shows answer quality and refusal rates side by side. Takes about 45 minutes on 2 cores.

    python bench/bench_question_sources.py [--examples 60] [--steps 30] [--arms structure,model,both]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from common import ROOT, save, table

QA_SETS = [ROOT / "tests" / "data" / "corpus_qa.jsonl", ROOT / "tests" / "data" / "corpus_qa_near_miss.jsonl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=60, help="training examples per arm")
    parser.add_argument("--steps", type=int, default=30, help="SFT steps per arm")
    parser.add_argument("--model-questions", type=int, default=90)
    parser.add_argument("--arms", default="structure,model,both")
    args = parser.parse_args()

    from ragbot import RagBot
    from ragbot.evaluation import metrics as evaluate
    from ragbot.learn import trainset
    from ragbot.learn.registry import AdapterRegistry
    from ragbot.learn.tune import Run, TuneConfig, build_data, train_sft

    work = Path(tempfile.mkdtemp(prefix="ragbot-bench-sources-"))
    bot = RagBot.open(work / "data")
    bot.ingest([ROOT / "corpus"])
    data_config = TuneConfig(model_questions=args.model_questions, unanswerable_share=1.0, heldout_fraction=0.0)
    data_run = Run.create(work / "runs", data_config)
    counts = build_data(bot, data_config, data_run, print)
    examples = trainset.load_examples(data_run.path / "train.jsonl")

    rng = random.Random(0)
    structure = [e for e in examples if e.origin in ("heading", "definition")]
    model = [e for e in examples if e.origin == "model"]
    n = min(args.examples, len(structure), len(model))
    arms = {"structure": rng.sample(structure, n), "model": rng.sample(model, n),
            "both": rng.sample(structure, n // 2) + rng.sample(model, n - n // 2)}

    registry = AdapterRegistry(bot.settings.adapters_dir)
    rows = []
    for name in args.arms.split(","):
        subset = arms[name]
        config = TuneConfig(max_steps=args.steps, sft_epochs=100.0, save_steps=10**6)
        run = Run.create(work / "runs", config)
        info = train_sft(bot, config, trainset.sft_rows(subset), run, None, None, print)
        version = registry.save(run.path / "sft-adapter", {"base_model": bot.settings.generator, "arm": name}).version
        row = {"arm": name, "examples": len(subset), "answerable": sum(e.answerable for e in subset),
               "loss_first": info["first_loss"], "loss_last": info["last_loss"]}
        arm_bot = bot.with_settings(adapter=version)
        for qa in QA_SETS:
            summary, per_question = evaluate.evaluate_answers(arm_bot, evaluate.load_qa(qa))
            given = [r for r in per_question if r["answerable"] and not r["refused"]]
            if summary["n_answerable"]:
                row.update({
                    "rougeL": summary["rougeL"],
                    "rougeL_of_answers_given": sum(r["rougeL"] for r in given) / len(given) if given else None,
                    "refusal_answerable": summary["refusal_rate_answerable"],
                    "refusal_unanswerable": summary["refusal_rate_unanswerable"],
                    "citation_accuracy": summary["citation_accuracy"],
                })
            else:
                row["refusal_near_miss"] = summary["refusal_rate_unanswerable"]
        arm_bot.close()
        rows.append(row)
        print(table(rows), flush=True)
    path = save("question_sources", {"data_counts": counts, "examples_per_arm": n, "steps": args.steps, "arms": rows})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
