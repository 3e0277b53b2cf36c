"""Generation speed: time to first token for a full RAG prompt (about 1,500 tokens) and decode
tokens/s, through ragbot's Generator.stream, against raw `model.generate` on the same tokens.

    python bench/bench_generate.py [--new-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from common import peak_rss_mb, save, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="reuse a data dir (keeps the converted model)")
    args = parser.parse_args()

    import torch
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    from ragbot import RagBot
    from ragbot.answer import build_prompt
    from ragbot.generate import REPETITION_PENALTY

    bot = RagBot.open(args.data_dir or tempfile.mkdtemp(prefix="ragbot-bench-gen-"))
    bot.ensure_default_corpus()
    generator = bot.generator
    question = "How are generative models trained, tuned and evaluated?"
    passages = bot.search(question, k=20)
    prompt = build_prompt(question, passages, generator.render, generator.count_tokens, budget=1500)
    n_prompt = generator.count_tokens(prompt.text)

    # Greedy decoding that cannot stop early, so every run makes the same number of tokens.
    # The same repetition penalty as ragbot's (reply tokens only, the prompt exempt).
    penalty = RepetitionPenaltyLogitsProcessor(REPETITION_PENALTY, prompt_ignore_length=n_prompt)
    gen_kwargs = dict(do_sample=False, temperature=None, top_p=None, top_k=None,
                      logits_processor=LogitsProcessorList([penalty]), pad_token_id=generator.tokenizer.eos_token_id)

    def ours() -> tuple[float, float]:
        t0 = time.perf_counter()
        first, pieces = None, 0
        totals: dict = {}
        for piece in generator.stream(prompt.text, args.new_tokens, 0.0, totals=totals):
            if first is None:
                first = time.perf_counter() - t0
            pieces += 1
        total = time.perf_counter() - t0
        completion = totals["generation"].completion_tokens
        return first, (completion - 1) / (total - first)

    inputs = generator.tokenizer(prompt.text, return_tensors="pt", add_special_tokens=False)

    def raw() -> tuple[float, float]:
        with torch.inference_mode():
            t0 = time.perf_counter()
            generator.model.generate(**inputs, max_new_tokens=1, min_new_tokens=1, **gen_kwargs)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = generator.model.generate(**inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, **gen_kwargs)
            total = time.perf_counter() - t0
        made = out.shape[1] - inputs["input_ids"].shape[1]
        return first, (made - 1) / (total - first)

    raw()  # warm-up
    rows = []
    for name, fn in (("ragbot stream", ours), ("raw generate", raw)):
        runs = [fn() for _ in range(args.repeats)]
        rows.append({
            "path": name,
            "prompt_tokens": n_prompt,
            "ttft_s_median": statistics.median(r[0] for r in runs),
            "decode_tok_per_s_median": statistics.median(r[1] for r in runs),
        })
    rows[0]["ttft_ratio_vs_raw"] = rows[0]["ttft_s_median"] / rows[1]["ttft_s_median"]
    rows[1]["ttft_ratio_vs_raw"] = 1.0
    print(table(rows))
    print(f"dtype {generator.model.dtype}, model {generator.name}")
    print(f"saved {save('generate', {'rows': rows, 'dtype': str(generator.model.dtype), 'peak_rss_mb': peak_rss_mb()})}")


if __name__ == "__main__":
    main()
