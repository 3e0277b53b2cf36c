"""Training throughput of ragbot's LoRA setup against TRL's usual one, in the same run.

Both train SFTTrainer steps on the same rendered RAG prompts (from the shipped corpus, in the
chatbot's prompt format) with the default generator:
- baseline: LoRA on every linear layer of every block ("all-linear"), the common TRL recipe;
- ragbot:   LoRA on the top `lora_layers` blocks only (TuneConfig's default), so gradients
            stop early.
Prints training tokens/s (prompt + completion tokens, padding excluded) and the ratio, and the
peak RSS of this process.

    python bench/bench_tune.py [--steps 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import ROOT, peak_rss_mb, save, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()

    import random

    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from ragbot import RagBot
    from ragbot.learn import trainset
    from ragbot.learn.tune import TuneConfig, _load_trainable, _lora_config, _training_args

    bot = RagBot.open(tempfile.mkdtemp(prefix="ragbot-bench-tune-"))
    bot.ingest([ROOT / "corpus"])
    rng = random.Random(0)
    kept = trainset.check_candidates(bot, trainset.structural_questions(bot.store.all_chunks()), trainset.CheckReport())
    examples = trainset.make_examples(bot, kept, rng)
    generator = bot.generator
    trainset.render_prompts(examples, generator, generator.context_tokens - bot.settings.max_new_tokens)
    rows = trainset.sft_rows(examples)
    per_step = TuneConfig().batch_size * TuneConfig().gradient_accumulation
    n_rows = args.steps * per_step  # exactly one epoch
    rows = (rows * (n_rows // len(rows) + 1))[:n_rows]

    results = []
    for label in ("all-linear, all layers (baseline)", "ragbot: top layers"):
        config = TuneConfig(max_steps=args.steps, save_steps=10**6)
        model = _load_trainable(bot, None)
        lora = (LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                           target_modules="all-linear", task_type="CAUSAL_LM")
                if label.startswith("all") else _lora_config(model, config))
        out = tempfile.mkdtemp(prefix="ragbot-bench-tune-out-")
        targs = _training_args(SFTConfig, config, out, 1.0, config.sft_learning_rate,
                               completion_only_loss=True, packing=False)
        trainer = SFTTrainer(model=model, args=targs, train_dataset=Dataset.from_list(rows),
                             processing_class=generator.tokenizer, peft_config=lora)
        tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        results.append({"setup": label, "trainable_params": trainable, "steps": args.steps,
                        "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds})
    ratio = results[1]["tokens_per_s"] / results[0]["tokens_per_s"]
    print(table(results))
    print(f"ragbot / baseline tokens/s: {ratio:.2f}x; peak RSS {peak_rss_mb():.0f} MiB")
    print(f"saved {save('tune', {'rows': results, 'ratio': ratio, 'peak_rss_mb': peak_rss_mb()})}")


if __name__ == "__main__":
    main()
