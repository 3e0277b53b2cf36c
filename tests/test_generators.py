"""The generator backends: llama.cpp and transformers behave alike where ragbot relies on it
(chat template, token counts, the repetition penalty, stop, a banned first token), a tuned
adapter exported to GGUF changes llama.cpp's output as it changes PyTorch's, and a generator can
be a GGUF file or a model in a local Ollama store."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

from ragbot.errors import ModelError
from ragbot.generators import REPETITION_PENALTY, llama_cpp_installed, load_generator, pick_backend
from ragbot.models import find_smollm2_gguf, generator_gguf, ollama_gguf, resolve_generator
from ragbot.settings import with_overrides

needs_llama_cpp = pytest.mark.skipif(not llama_cpp_installed(),
                                     reason="llama-cpp-python is not installed (make setup builds it)")

MESSAGES = [
    {"role": "system", "content": "Answer from the passages. Cite them as [n]."},
    {"role": "user", "content": "[1] Der Eiffelturm steht in Paris.\n\nWo steht der Eiffelturm? Où est-il ?"},
]


@pytest.fixture(scope="module")
def both(corpus_bot):
    if not llama_cpp_installed():
        pytest.skip("llama-cpp-python is not installed (make setup builds it)")
    settings = corpus_bot.settings
    resolve_generator(settings)  # the conversion transformers needs, shared with other tests
    return load_generator(settings, backend="llama.cpp"), load_generator(settings, backend="transformers")


@needs_llama_cpp
def test_auto_picks_llama_cpp_for_the_shipped_gguf(corpus_bot):
    assert pick_backend(corpus_bot.settings) == "llama.cpp"
    assert pick_backend(with_overrides(corpus_bot.settings, generator_backend="transformers")) == "transformers"


def test_auto_falls_back_to_transformers(corpus_bot, tmp_path, monkeypatch):
    """Without llama.cpp (not built, or its library does not load), and for a Hugging Face model
    dir, `auto` means transformers; `ragbot status` says which."""
    from ragbot import generators

    monkeypatch.setattr(generators, "llama_cpp_installed", lambda: False)
    assert pick_backend(corpus_bot.settings) == "transformers"
    assert corpus_bot.with_settings().status()["generator_backend"] == "transformers"
    monkeypatch.undo()
    model_dir = resolve_generator(corpus_bot.settings)  # a Hugging Face dir
    assert pick_backend(with_overrides(corpus_bot.settings, generator=model_dir)) == "transformers"


@pytest.mark.slow
def test_backends_render_and_count_alike(both):
    fast, torch_gen = both
    assert fast.render(MESSAGES) == torch_gen.render(MESSAGES)
    assert fast.render(MESSAGES).endswith("<|im_start|>assistant\n")
    for text in (fast.render(MESSAGES), "Straße, Übergröße, naïve café: 1889 and 70B.", "x" * 300):
        assert fast.count_tokens(text) == torch_gen.count_tokens(text)
    assert fast.context_tokens == torch_gen.context_tokens == 2048


def test_penalty_and_greedy_pick_match_transformers():
    """The llama.cpp loop's penalty (the reply's tokens only) is transformers' processor's."""
    import torch
    from transformers import RepetitionPenaltyLogitsProcessor

    from ragbot.generators.llama_cpp_backend import _pick

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, 500).astype(np.float32)
    prompt, reply = [5, 6, 7, 8], [9, 9, 10, int(np.argmax(logits))]
    processor = RepetitionPenaltyLogitsProcessor(REPETITION_PENALTY, prompt_ignore_length=len(prompt))
    expected = processor(torch.tensor([prompt + reply]), torch.tensor(logits[None].copy()))[0].numpy()
    ours = logits.copy()
    assert _pick(ours, reply, None, 0.0, rng) == int(np.argmax(expected))
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    assert _pick(logits.copy(), [], int(np.argmax(logits)), 0.0, rng) != int(np.argmax(logits))  # banned


@pytest.fixture
def fast_alone(corpus_bot):
    """A llama.cpp generator of its own (empty KV caches) with `parallel_answers` slots."""
    generators = []

    def make(parallel_answers: int):
        generators.append(load_generator(with_overrides(corpus_bot.settings, parallel_answers=parallel_answers),
                                         backend="llama.cpp"))
        return generators[-1]

    yield make
    for generator in generators:
        generator._decoder.close()


@needs_llama_cpp
@pytest.mark.slow
def test_llama_cpp_stream_stops_bans_and_reuses_the_prefix(fast_alone):
    fast = fast_alone(1)
    system = {"role": "system", "content": "You are a storyteller. Tell stories to children."}
    prompt = fast.render([system, {"role": "user", "content": "Write a long story about a dragon."}])
    other = fast.render([system, {"role": "user", "content": "Write a poem about the sea."}])
    totals: dict = {}
    free = fast.generate(prompt, 12)  # an empty cache: this answer is the reference
    assert free.completion_tokens == 12 and free.text
    # After another question with the same system prompt, only the rest is evaluated, and the
    # answer is the one from an empty cache (stale entries after the shared start are dropped).
    fast.generate(other, 12)
    a, b = fast._tokens(prompt), fast._tokens(other)
    shared = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    assert shared >= fast.count_tokens(fast.render([system]))  # the whole system prompt at least
    assert "".join(fast.stream(prompt, 12, totals=totals)) and totals["generation"].text == free.text
    assert totals["reused_tokens"] == shared  # the prompt pass: only what follows the shared start

    stop = threading.Event()
    pieces = []
    for piece in fast.stream(prompt, 64, totals=totals, stop=stop):
        pieces.append(piece)
        stop.set()
    assert len(pieces) == 1 and totals["generation"].completion_tokens == 1

    early = fast.stream(prompt, 64)
    next(early)
    early.close()  # the slot is freed: the next call runs
    again = fast.generate(prompt, 12)
    assert again.text == free.text  # greedy, and the cached prefix gives the same logits

    # Where the cache cannot drop its tail (only a whole sequence), the whole prompt is
    # evaluated again: same answer.
    fast.generate(other, 12)
    ctx = fast._decoder.ctx
    real = ctx.kv_cache_seq_rm
    ctx.kv_cache_seq_rm = lambda seq, p0, p1: p0 == 0 and real(seq, p0, p1)
    try:
        assert fast.generate(prompt, 12).text == free.text
        totals.clear()
        list(fast.stream(prompt, 12, totals=totals))
        assert totals["reused_tokens"] == 0
    finally:
        del ctx.kv_cache_seq_rm

    first_word = free.text.split()[0]
    banned = fast.generate(prompt, 12, avoid_start=first_word)
    assert not banned.text.startswith(first_word)


@needs_llama_cpp
@pytest.mark.slow
def test_concurrent_questions_are_decoded_together(fast_alone):
    """Questions asked at once share the decoding steps, each keeps its own answer (no
    sequence reads another's cache), and a new one takes the slot whose cache shares its start."""
    fast = fast_alone(4)
    system = {"role": "system", "content": "Answer in one short sentence."}
    asked = ["What is the capital of France?", "Wie viele Beine hat eine Spinne?",
             "What colour is the sky on a clear day?", "Qui a écrit Les Misérables ?"]
    prompts = [fast.render([system, {"role": "user", "content": q}]) for q in asked]
    alone = [fast.generate(p, 12).text for p in prompts]
    assert len(set(alone)) == 4
    assert fast._decoder.widest == 1

    together: list = [None] * 4
    free = fast._decoder.free
    for _ in range(4):
        free.acquire()  # every slot busy: the four questions wait, then start at once
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, fast.generate(prompts[i], 12).text))
               for i in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(4):
        free.release()
    for thread in threads:
        thread.join(120)
    assert fast._decoder.widest >= 2  # at least two questions shared a step
    # Batched arithmetic may differ from one question alone in the last bits, so a near tie
    # late in a long answer can go the other way; these short answers have none.
    assert together == alone
    totals: dict = {}
    list(fast.stream(prompts[0], 4, totals=totals))
    assert totals["reused_tokens"] == len(fast._tokens(prompts[0])) - 1  # its own earlier cache


@needs_llama_cpp
@pytest.mark.slow
def test_a_reader_who_stops_reading_holds_up_no_one(fast_alone):
    """Steps are run by the questions' own threads: a question whose reader paused does not stop
    another from being answered; a reader who leaves frees the slot; a llama.cpp failure fails
    the questions in that step with a message and frees their slots."""
    fast = fast_alone(2)
    free = fast._decoder.free
    story = fast.render([{"role": "user", "content": "Write a long story about a dragon."}])
    sea = fast.render([{"role": "user", "content": "Write a poem about the sea."}])
    paused = fast.stream(story, 64)
    next(paused)  # one piece read, then nobody reads on: its slot stays taken
    assert fast.generate(sea, 12).completion_tokens == 12
    paused.close()  # the reader leaves: its slot is free at once
    assert all(slot.job is None for slot in fast._decoder.slots)
    assert free.acquire(blocking=False) and free.acquire(blocking=False)
    free.release()
    free.release()
    fast.clear_cache()

    ctx = fast._decoder.ctx
    ctx.decode = lambda batch: (_ for _ in ()).throw(RuntimeError("llama_decode returned -3"))
    try:
        with pytest.raises(ModelError, match="llama.cpp failed while decoding: llama_decode returned -3"):
            fast.generate(sea, 12)
    finally:
        del ctx.decode
    assert fast.generate(sea, 12).completion_tokens == 12  # its slot was freed, its cache dropped


@needs_llama_cpp
@pytest.mark.slow
def test_llama_cpp_waits_for_a_slot_stops_while_waiting_and_gives_up(fast_alone, monkeypatch):
    """Every slot answering: the next question waits; Stop while waiting ends it with nothing
    decoded; after the wait limit it is refused with a message."""
    from ragbot.errors import BusyError
    from ragbot.generators import llama_cpp_backend

    fast = fast_alone(2)
    prompt = fast.render([{"role": "user", "content": "Say hello."}])
    stop = threading.Event()
    free = fast._decoder.free
    for _ in range(2):
        free.acquire()  # both slots answering other questions
    try:
        threading.Timer(0.3, stop.set).start()
        totals: dict = {}
        assert list(fast.stream(prompt, 8, totals=totals, stop=stop)) == []
        assert totals["generation"].completion_tokens == 0
        monkeypatch.setattr(llama_cpp_backend, "WAIT_SECONDS", 0.3)
        with pytest.raises(BusyError, match="answering other questions"):
            list(fast.stream(prompt, 8))
    finally:
        free.release()
        free.release()
    assert fast.generate(prompt, 4).completion_tokens > 0  # free again


def _random_lora(model_dir, out, targets, seed=0):
    """A PEFT LoRA on the top 10 layers with random B (PEFT starts B at zero), saved to `out`;
    returns the float32 model with it merged."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets,
                                            layers_to_transform=list(range(20, 30))))
    for name, param in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.3)
    peft.save_pretrained(out)
    return peft.merge_and_unload()


@needs_llama_cpp
@pytest.mark.slow
def test_an_exported_adapter_changes_llama_cpp_as_it_changes_pytorch(corpus_bot, tmp_path, monkeypatch):
    """The logits' change from an adapter, in ragbot's llama.cpp decoder (GGUF LoRA on Q4_1)
    against PyTorch (merged, float32), correlates above 0.95 on every prompt, and the greedy next token agrees
    wherever PyTorch's choice is clear. Exported without llama.cpp's row order for Q and K, the
    same adapter's change does not correlate: the check can tell."""
    import llama_cpp
    import torch
    from llama_cpp._internals import LlamaModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragbot.generators import gguf_lora, llama_cpp_backend

    model_dir = resolve_generator(corpus_bot.settings)
    gguf = find_smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = [f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n" for q in
               ("What is the capital of France?", "Name three fruits.", "Was ist ein Vulkan?")]

    def torch_logits(model, prompt):
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            return model(**ids).logits[0, -1].float().numpy()

    # Through ragbot's own decoder (the LoRA set on its context), the logits it picks from.
    seen = []
    real_pick = llama_cpp_backend._pick
    monkeypatch.setattr(llama_cpp_backend, "_pick",
                        lambda logits, *rest: (seen.append(logits.copy()), real_pick(logits, *rest))[1])

    def llama_logits(prompt, lora=None):
        model = LlamaModel(path_model=str(gguf), params=llama_cpp.llama_model_default_params(), verbose=False)
        decoder = llama_cpp_backend._Decoder(model, lora, slots=1, context_tokens=256)
        try:
            job = llama_cpp_backend._Job(model.tokenize(prompt.encode(), add_bos=False, special=True), 1, 0.0, None)
            decoder.free.acquire()
            decoder.submit(job)
            kinds = []
            while "end" not in kinds:
                assert decoder.step() and "error" not in kinds
                while not job.out.empty():
                    kinds.append(job.out.get_nowait()[0])
        finally:
            decoder.close()
        return seen[-1]

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch_before = [torch_logits(base, p) for p in prompts]
    llama_before = [llama_logits(p) for p in prompts]
    for targets in (["q_proj", "k_proj"], ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]):
        out = tmp_path / "-".join(targets)
        merged = _random_lora(model_dir, out, targets)
        gguf_lora.export_lora(out, gguf, out / "adapter.gguf")
        for i, prompt in enumerate(prompts):
            after = torch_logits(merged, prompt)
            llama_after = llama_logits(prompt, out / "adapter.gguf")
            change, llama_change = after - torch_before[i], llama_after - llama_before[i]
            assert np.abs(change).mean() > 0.5  # the adapter does change the output
            assert np.corrcoef(change, llama_change)[0, 1] > 0.95, (targets, prompt)
            top2 = np.sort(after)[-2:]
            if top2[1] - top2[0] > 0.5:
                assert int(np.argmax(llama_after)) == int(np.argmax(after)), (targets, prompt)

    monkeypatch.setattr(gguf_lora, "_PERMUTED_QK", set())
    out = tmp_path / "unpermuted"
    merged = _random_lora(model_dir, out, ["q_proj", "k_proj"])
    gguf_lora.export_lora(out, gguf, out / "adapter.gguf")
    change = torch_logits(merged, prompts[0]) - torch_before[0]
    llama_change = llama_logits(prompts[0], out / "adapter.gguf") - llama_before[0]
    assert np.corrcoef(change, llama_change)[0, 1] < 0.5


def test_export_refuses_an_adapter_for_another_model(tmp_path):
    from safetensors.torch import save_file
    import torch

    from ragbot.generators.gguf_lora import export_lora

    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(4, 1024),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(1024, 4)},
              str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(ModelError, match=r"q_proj is 1024x1024, .* has blk\.0\.attn_q\.weight 576x576"):
        export_lora(tmp_path, find_smollm2_gguf(), tmp_path / "adapter.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*.tmp"))


def _ollama_store(root, name: str, tag: str, blob_source) -> None:
    digest = "sha256:" + "ab" * 32
    blobs = root / "blobs"
    blobs.mkdir(parents=True)
    (blobs / digest.replace(":", "-")).symlink_to(blob_source)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "cd" * 32},
        {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": 1},
    ]}))


@needs_llama_cpp
@pytest.mark.slow
def test_a_generator_from_a_gguf_file_or_the_ollama_store(corpus_bot, tmp_path, monkeypatch):
    shipped = find_smollm2_gguf()
    copy = tmp_path / "my model.gguf"
    shutil.copy(shipped, copy)
    settings = with_overrides(corpus_bot.settings, generator=str(copy), adapter="none")
    assert generator_gguf(settings) == copy.resolve()
    assert pick_backend(settings) == "llama.cpp"

    store = tmp_path / "ollama"
    _ollama_store(store, "smollm2", "135m", shipped)
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    assert ollama_gguf("smollm2:135m") == store / "blobs" / ("sha256-" + "ab" * 32)
    assert ollama_gguf("smollm2") is None  # no "latest" tag in this store
    for name in ("smollm2:135m", "ollama:smollm2:135m"):
        settings = with_overrides(corpus_bot.settings, generator=name, adapter="none")
        assert generator_gguf(settings).name.startswith("sha256-")
    generator = load_generator(settings)
    assert generator.backend == "llama.cpp"
    reply = generator.generate(generator.render([{"role": "user", "content": "Say hello."}]), 8)
    assert reply.completion_tokens > 0 and reply.text

    with pytest.raises(ModelError, match=r"no model 'qwen9:1b' in the Ollama store .*ollama list"):
        generator_gguf(with_overrides(corpus_bot.settings, generator="ollama:qwen9:1b"))
    for hostile in ("../../etc:passwd", "smollm2:..", "a/../../b", "./smollm2:135m"):
        assert ollama_gguf(hostile) is None, hostile  # names never leave the store's manifests


@needs_llama_cpp
def test_a_gguf_that_is_not_a_chat_model_is_refused_with_a_reason(corpus_bot, tmp_path):
    import gguf

    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    with pytest.raises(ModelError, match="notes.gguf is not a GGUF file"):
        generator_gguf(with_overrides(corpus_bot.settings, generator=str(not_gguf)))

    plain = tmp_path / "base-model.gguf"
    writer = gguf.GGUFWriter(str(plain), "llama")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    settings = with_overrides(corpus_bot.settings, generator=str(plain), adapter="none")
    with pytest.raises(ModelError, match=r"base-model.gguf has no chat template: .*instruction-tuned"):
        load_generator(settings, backend="llama.cpp")


@needs_llama_cpp
def test_a_model_larger_than_the_free_memory_is_refused_before_loading(corpus_bot, monkeypatch):
    from ragbot import models

    monkeypatch.setattr(models, "available_memory", lambda: 10 * 2**20)
    with pytest.raises(ModelError, match=r"needs about 0\.\d GiB of memory \(0\.\d GiB of weights, 0\.2 GiB for the "
                                         r"cache of 4 parallel answers of 2048 tokens\) and 0\.0 GiB is available"):
        load_generator(with_overrides(corpus_bot.settings, adapter="none"), backend="llama.cpp")


@needs_llama_cpp
def test_the_kv_cache_of_parallel_answers_counts_in_the_memory_check(corpus_bot, monkeypatch):
    """The check counts the KV cache llama.cpp will allocate (keys and values of 16 bits, every
    layer, every position of every parallel answer), from the GGUF metadata, not the weights only."""
    from ragbot import models
    from ragbot.generators.llama_cpp_backend import prepared_weights

    settings = with_overrides(corpus_bot.settings, adapter="none", parallel_answers=8, context_tokens=8192)
    weights = prepared_weights(settings, models.generator_gguf(settings))
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 dimensions (576 / 9 heads).
    assert models.gguf_cache_bytes(weights, 8 * 8192) == 2 * 30 * 8 * 8192 * 3 * (64 + 64)  # 1.41 GiB
    # Room for the weights and 0.5 GiB more: enough for 4 answers of 2,048 tokens, not for these.
    monkeypatch.setattr(models, "available_memory", lambda: int(weights.stat().st_size * 1.1) + 2**29)
    with pytest.raises(ModelError, match=r"1\.4 GiB for the cache of 8 parallel answers of 8192 tokens\) .*"
                                         r"fewer parallel answers or a smaller context"):
        load_generator(settings, backend="llama.cpp")
