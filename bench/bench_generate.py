"""Generation speed, per backend, against raw llama.cpp in the same run.

For two prompts (the default answer prompt: 3 passages; a long one: 20 passages, ~1,500 tokens)
it measures time to first token and decode tokens/s of:
- ragbot llama.cpp: `Generator.stream` of the llama.cpp backend (ragbot's decode loop);
- ragbot transformers: `Generator.stream` of the PyTorch backend;
- raw llama.cpp: llama-cpp-python's own `create_completion(stream=True)` on the same GGUF file
  (the shipped model re-encoded for llama.cpp, generators/llama_cpp_backend.py), same tokens,
  greedy, same threads: llama.cpp as its users run it;
- raw llama.cpp, shipped Q4_1: the same on the shipped file as it is, library defaults but the
  thread count;
- raw transformers: `model.generate` on the same tokens.
Every run starts from an empty KV cache (a new prompt), so prefill is measured in full; the
"cached" rows ask again with the same system prompt, which the llama.cpp backend reuses.
Ratios are against raw llama.cpp, measured in the same run. Prints the CPU's flags.

    python bench/bench_generate.py [--new-tokens 64] [--repeats 3] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from common import machine, peak_rss_mb, save, table


def timed(pieces) -> tuple[float, int, float]:
    """(time to first piece, pieces, total seconds) of an iterator."""
    t0 = time.perf_counter()
    first, n = None, 0
    for _ in pieces:
        if first is None:
            first = time.perf_counter() - t0
        n += 1
    return first or 0.0, n, time.perf_counter() - t0


def completion_chunks(chunks):
    """llama-cpp-python's streamed chunks, less the last one that only says why it stopped
    (counted, it would add a token that was never decoded)."""
    for chunk in chunks:
        if chunk["choices"][0].get("finish_reason") and not chunk["choices"][0].get("text"):
            continue
        yield chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="reuse a data dir (keeps the converted model)")
    parser.add_argument("--llama-only", action="store_true", help="leave out the (slow) transformers rows")
    args = parser.parse_args()
    print(json.dumps(machine()))

    import torch
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    from ragbot import RagBot
    from ragbot.answer.generation import build_prompt
    from ragbot.generators import REPETITION_PENALTY, llama_cpp_installed, load_generator
    from ragbot.generators.llama_cpp_backend import cpu_threads

    if not llama_cpp_installed():
        raise SystemExit("llama-cpp-python is not installed: `make setup` builds it (see the README)")
    bot = RagBot.open(args.data_dir or tempfile.mkdtemp(prefix="ragbot-bench-gen-"))
    bot.ensure_default_corpus()
    fast = load_generator(bot.settings, backend="llama.cpp")
    torch_gen = None if args.llama_only else load_generator(bot.settings, backend="transformers")
    questions = ["How are generative models trained, tuned and evaluated?", "What is a diffusion model?",
                 "Why do GANs suffer from mode collapse?", "What does C2PA record about an image?"]

    def prompt_for(question: str, passages: int, budget: int) -> str:
        found = bot.search(question, k=passages)
        return build_prompt(question, found, fast.render, fast.count_tokens, budget=budget).text

    from llama_cpp import Llama

    from ragbot.models import generator_gguf

    # llama-cpp-python as its users run it, on the file ragbot runs, with ragbot's context settings.
    same_file = Llama(model_path=fast.model.path_model, n_ctx=bot.settings.context_tokens, n_batch=512,
                      n_threads=cpu_threads(), n_threads_batch=cpu_threads(), flash_attn=True, verbose=False)

    def fresh(llm) -> None:
        """Forget a Llama's KV cache, so the next prompt is evaluated in full."""
        llm.reset()
        llm._ctx.kv_cache_clear()

    def ragbot_fast(prompt: str, cached: bool = False):
        if not cached:
            fast.clear_cache()
        totals: dict = {}
        first, _, total = timed(fast.stream(prompt, args.new_tokens, 0.0, totals=totals))
        return first, totals["generation"].completion_tokens, total

    def ragbot_torch(prompt: str, cached: bool = False):
        totals: dict = {}
        first, _, total = timed(torch_gen.stream(prompt, args.new_tokens, 0.0, totals=totals))
        return first, totals["generation"].completion_tokens, total

    def raw_llama(prompt: str, cached: bool = False):
        if not cached:
            fresh(same_file)
        # Greedy, with llama.cpp's own repetition penalty at the same strength.
        chunks = same_file.create_completion(prompt, max_tokens=args.new_tokens, temperature=0.0,
                                            repeat_penalty=REPETITION_PENALTY, stream=True)
        return timed(completion_chunks(chunks))

    shipped = Llama(model_path=str(generator_gguf(bot.settings)), n_ctx=2048, n_threads=cpu_threads(),
                    n_threads_batch=cpu_threads(), verbose=False)

    def raw_llama_q4(prompt: str, cached: bool = False):
        fresh(shipped)
        chunks = shipped.create_completion(prompt, max_tokens=args.new_tokens, temperature=0.0,
                                           repeat_penalty=REPETITION_PENALTY, stream=True)
        return timed(completion_chunks(chunks))

    def raw_torch(prompt: str, cached: bool = False):
        inputs = torch_gen.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        n_prompt = int(inputs["input_ids"].shape[1])
        penalty = RepetitionPenaltyLogitsProcessor(REPETITION_PENALTY, prompt_ignore_length=n_prompt)
        kwargs = dict(do_sample=False, temperature=None, top_p=None, top_k=None,
                      logits_processor=LogitsProcessorList([penalty]), pad_token_id=torch_gen.tokenizer.eos_token_id)
        with torch.inference_mode():
            t0 = time.perf_counter()
            torch_gen.model.generate(**inputs, max_new_tokens=1, **kwargs)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = torch_gen.model.generate(**inputs, max_new_tokens=args.new_tokens, **kwargs)
            total = time.perf_counter() - t0  # prefill and every token: decode = (n - 1) / (total - first)
        return first, int(out.shape[1]) - n_prompt, total

    paths = {"ragbot llama.cpp": ragbot_fast, "raw llama.cpp": raw_llama, "raw llama.cpp, shipped Q4_1": raw_llama_q4,
             "ragbot transformers": ragbot_torch, "raw transformers": raw_torch}
    if args.llama_only:
        paths = {k: v for k, v in paths.items() if "transformers" not in k}
    rows = []
    for label, passages, budget in (("default (3 passages)", 3, 1900), ("long (20 passages)", 20, 1500)):
        prompts = [prompt_for(q, passages, budget) for q in questions]
        n_prompt = statistics.median(fast.count_tokens(p) for p in prompts)
        for fn in paths.values():
            fn(prompts[0])  # warm-up
        # Paths take turns on each prompt, so a change in the machine's load hits them alike.
        results: dict[str, list] = {name: [] for name in paths}
        for _ in range(args.repeats):
            for p in prompts:
                for name, fn in paths.items():
                    results[name].append(fn(p))
        for name, runs in results.items():
            rows.append({
                "prompt": label, "prompt_tokens": int(n_prompt), "path": name,
                "ttft_s": statistics.median(r[0] for r in runs),
                "decode_tok_s": statistics.median((r[1] - 1) / (r[2] - r[0]) for r in runs if r[1] > 1),
                "new_tokens": statistics.median(r[1] for r in runs),
            })
        # A question after another one: the prompt's shared start (the system prompt) is already
        # in the KV cache and is not evaluated again.
        cached = []
        for _ in range(args.repeats):
            for before, p in zip(prompts[-1:] + prompts[:-1], prompts):
                ragbot_fast(before)
                cached.append(ragbot_fast(p, cached=True))
        rows.append({"prompt": label, "prompt_tokens": int(n_prompt), "path": "ragbot llama.cpp, cached prefix",
                     "ttft_s": statistics.median(r[0] for r in cached),
                     "decode_tok_s": statistics.median((r[1] - 1) / (r[2] - r[0]) for r in cached if r[1] > 1),
                     "new_tokens": statistics.median(r[1] for r in cached)})
    for row in rows:
        raw = next(r for r in rows if r["prompt"] == row["prompt"] and r["path"] == "raw llama.cpp")
        row["decode_vs_raw_llama"] = row["decode_tok_s"] / raw["decode_tok_s"]
        row["ttft_vs_raw_llama"] = row["ttft_s"] / raw["ttft_s"]
    print(table(rows))
    dtype = str(torch_gen.model.dtype) if torch_gen else None
    print(f"transformers dtype {dtype}; llama.cpp on {cpu_threads()} threads, weights {fast.model.path_model}")
    print(f"saved {save('generate', {'rows': rows, 'dtype': dtype, 'peak_rss_mb': peak_rss_mb()})}")


if __name__ == "__main__":
    main()
