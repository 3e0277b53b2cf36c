"""Tuning on the real default model: training data, a few-step LoRA run (SFT then KTO) that is
killed and resumed, the adapter registry, and the gate (which must refuse a worse candidate).

The tests on that run are marked heavy (`make heavy`, CI): the run trains for about 100 s on two
cores, which kept `make test` over its ten minutes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import copy_data_dir
from ragbot import RagBot
from ragbot.learn import trainset
from ragbot.answer.generation import REFUSAL
from ragbot.learn.gate import MIN_QUESTIONS, decide, run_gate
from ragbot.generators.transformers_backend import TransformersGenerator
from ragbot.learn.registry import AdapterError, AdapterRegistry
from ragbot.learn.tune import Run, TuneConfig, TuneError, gate_sample, preflight, preference_method, train_sft, tune

ROOT = Path(__file__).resolve().parent.parent


def info_path(bot, result) -> Path:
    return bot.settings.adapters_dir / result.version


@pytest.fixture(scope="module")
def tuned(corpus_bot, tmp_path_factory):
    """One small tuning run: started by the CLI, killed after its first checkpoint, resumed here."""
    data_dir = copy_data_dir(corpus_bot, tmp_path_factory.mktemp("tune") / "data")
    bot = RagBot.open(data_dir)
    bot._embedder = corpus_bot.embedder
    # Votes on answers the generator wrote: they become SFT/KTO/DPO rows (extracted answers have no prompt).
    short = bot.with_settings(max_new_tokens=24, answer_mode="generate")
    liked = short.ask("What is mode collapse in a GAN?")
    disliked = short.ask("Who introduced GANs?")
    bot.feedback.set_feedback(liked.id, 1)
    bot.feedback.set_feedback(disliked.id, -1, correction="Ian Goodfellow and colleagues introduced GANs in 2014 [1].")

    cmd = [sys.executable, "-m", "ragbot", "tune", "--data-dir", str(data_dir), "--max-steps", "2",
           "--model-questions", "2", "--preference", "kto", "--gate-questions", "3", "--gate-max-new-tokens", "32", "--save-steps", "1",
           "--seed", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    checkpoint = None
    while time.time() < deadline and proc.poll() is None:
        found = list((data_dir / "tune").glob("*/sft/checkpoint-1/trainer_state.json"))
        if found:
            checkpoint = found[0]
            break
        time.sleep(0.5)
    assert checkpoint is not None, proc.communicate()[0][-3000:] if proc.poll() is not None else "no checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    lines: list[str] = []
    result = tune(bot, TuneConfig(), log=lines.append)
    yield bot, result, lines
    bot.close()


def test_a_passage_holding_the_answer_row_is_not_shown_as_unanswerable():
    """An unanswerable training example withholds every passage that holds its answer sentence,
    also a table row, stored with its bars and answered without them."""
    from types import SimpleNamespace

    import numpy as np

    from ragbot.types import Passage

    def passage(chunk_id: int, text: str) -> Passage:
        return Passage(chunk_id=chunk_id, source="/d/report.pdf", title="Report", section="", page=2, text=text,
                       score=0.5, rank=chunk_id)

    # Embeddings far apart, so only the text decides here.
    far_apart = SimpleNamespace(embedder=SimpleNamespace(encode=lambda texts: np.eye(len(texts), 8)),
                                abbreviations=frozenset)  # the documents abbreviate nothing
    row = passage(1, "| Engines: | 1 Reciprocating |\n| Engine Manufacturer: | Lycoming |")
    other = passage(2, "The pilot was not hurt.")
    assert trainset._without_answer(far_apart, "Engine Manufacturer: Lycoming", [row, other]) == [other]
    assert trainset._without_answer(far_apart, "The pilot was not hurt.", [row, other]) == [row]


def test_definition_questions_read_as_questions():
    """The chat page suggests these on a first visit: "What is a large language model (LLM)?",
    not "What is A large language model (LLM)?"; a name keeps its capital."""
    from ragbot.storage.store import StoredChunk

    text = ("A large language model (LLM) is a neural network trained on text. "
            "The transformer is an architecture based on attention layers. "
            "Gustave Eiffel is an engineer who built towers and bridges.")
    questions = [c.question for c in trainset.structural_questions([StoredChunk(1, "/d.md", "d", "", None, text)])]
    assert questions == ["What is a large language model (LLM)?", "What is the transformer?", "What is Gustave Eiffel?"]


def test_answer_sentences_are_whole_sentences_in_any_script():
    """Tune's answers are whole sentences of a chunk. They had to start with a capital and end in
    . ! ?, so a Japanese or Hindi note gave none; a piece cut by a chunk's edge is still skipped."""
    japanese = "東京本社で新しい会議室の使い方について会議が開かれました。新製品は来月の第二週に大阪で発売されます。"
    assert trainset.answer_sentences(japanese) == ["東京本社で新しい会議室の使い方について会議が開かれました。",
                                                   "新製品は来月の第二週に大阪で発売されます。"]
    hindi = "कारखाने ने पिछले महीने चार सौ पुर्ज़े बनाए। नया गोदाम अगले साल खुलेगा।"
    assert trainset.answer_sentences(hindi) == ["कारखाने ने पिछले महीने चार सौ पुर्ज़े बनाए।", "नया गोदाम अगले साल खुलेगा।"]
    english = "of the test set and was cut here. The tower was finished in the spring of 1889. It was then the"
    assert trainset.answer_sentences(english) == ["The tower was finished in the spring of 1889."]
    # Cited as an answer quoting them is: the mark before the stops, any script's.
    assert trainset.cite("新製品は来月発売されます。", 2) == "新製品は来月発売されます [2]。"
    assert trainset.cite("Is it ready?!", 1) == "Is it ready [1]?!"
    assert trainset.cite("No stop here", 3) == "No stop here [3]."


@pytest.mark.heavy
def test_killed_run_resumes_from_its_checkpoint(tuned):
    _, result, lines = tuned
    assert any("resuming the unfinished run" in line for line in lines)
    assert any("SFT: resuming from checkpoint-1" in line for line in lines)
    # Answers are quoted (the default mode): the run says what of the adapter they use.
    assert any(line.startswith("answers are quoted from the documents (answer mode extract)") for line in lines)
    sft, prefer = result.stages["sft"], result.stages["prefer"]
    assert sft["steps"] == 2 and prefer["steps"] == 2 and prefer["method"] == "kto"
    assert all(v is not None for v in (sft["first_loss"], prefer["last_loss"]))


@pytest.mark.heavy
def test_training_data_counts_and_shapes(tuned):
    bot, result, lines = tuned
    counts = result.counts
    # SFT: the liked answer and the correction; KTO: both votes and the correction; DPO: correction vs answer.
    # The check's labels: the thumbs-up says the passages held the answer (or, on a refusal, that
    # they did not); a thumbs-down on an answer says neither.
    labels = bot.feedback.answerability_labels()
    assert counts["feedback"] == {"sft": 2, "kto": 3, "dpo": 1, "answerability": len(labels)} and labels
    assert counts["train"]["total"] > 20 and counts["heldout"]["total"] > 0
    assert any("questions by heading" in line for line in lines)
    train = trainset.load_examples(result.run_dir / "train.jsonl")
    for ex in train:
        if ex.answerable:
            gold = ex.passages[ex.gold - 1]
            assert ex.answer in trainset.plain(gold["text"])
            assert ex.target.endswith(f"[{ex.gold}].") or ex.target.endswith(f"[{ex.gold}]?")
        else:
            assert ex.target == REFUSAL and f"chunk-{ex.chunk_id}" not in {p["id"] for p in ex.passages}
            assert not any(ex.answer in trainset.plain(p["text"]) for p in ex.passages)  # not even in an overlapping chunk
    # Unanswerable examples of both kinds: the whole document withheld, or only the chunk (near misses).
    assert {ex.withheld for ex in train if not ex.answerable} == {"document", "chunk"}
    assert counts["train"]["chunk withheld"] + counts["train"]["document withheld"] == sum(not ex.answerable for ex in train)
    # The same prompt the chatbot builds for these passages.
    ex = next(e for e in train if e.answerable)
    # (The generate mode, and a threshold nothing falls under, so that the generator is asked.)
    asker = bot.with_settings(max_new_tokens=4, answer_mode="generate", adapter="none", evidence_threshold=-1.0)
    answer = asker.ask(ex.question, passages=ex.passages, record=False)
    assert answer.prompt == ex.prompt
    # Held-out chunks are never trained on.
    heldout = trainset.load_examples(result.run_dir / "heldout.jsonl")
    assert not {e.chunk_id for e in heldout} & {e.chunk_id for e in train}
    # The row shapes TRL's trainers take (standard, not conversational, text).
    feedback = json.loads((result.run_dir / "feedback.json").read_text())
    for row in trainset.sft_rows(train, feedback["sft"]):
        assert set(row) == {"prompt", "completion"} and all(isinstance(v, str) for v in row.values())
    for row in trainset.kto_rows(train, feedback["kto"]):
        assert set(row) == {"prompt", "completion", "label"} and isinstance(row["label"], bool)
    for row in trainset.dpo_rows(train, feedback["dpo"]):
        assert set(row) == {"prompt", "chosen", "rejected"} and row["chosen"] != row["rejected"]


@pytest.mark.heavy
def test_adapter_weights_changed_and_registry_records_them(tuned):
    from safetensors.torch import load_file

    bot, result, _ = tuned
    registry = AdapterRegistry(bot.settings.adapters_dir)
    info = registry.get(result.version)
    weights = load_file(info.path / "adapter_model.safetensors")
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and any(float(t.abs().sum()) > 0 for t in lora_b)  # LoRA B starts at zero
    assert not any(".ref." in name for name in weights)  # KTO's reference copy is not saved
    meta = info.metadata
    assert meta["base_model"] == bot.settings.generator and meta["parent"] is None
    assert len(meta["data_hash"]) == 16 and meta["counts"]["train"]["total"] > 0
    assert meta["config"]["max_steps"] == 2 and meta["config"]["gate_questions"] == 3 and "sft" in meta["training"] and "prefer" in meta["training"]
    assert set(meta["gate"]) == {"promoted", "reasons", "active", "candidate"}
    assert meta["gate"]["candidate"]["regression_cases"] == 2
    assert (result.run_dir / "gate" / "gate.md").read_text().startswith("| metric | active | candidate |")
    assert (result.run_dir / "gate" / "report" / "report.md").is_file()
    assert registry.state()["active"] == (result.version if result.activated else None)


@pytest.mark.heavy
def test_adapter_loads_answers_and_is_recorded(tuned):
    bot, result, _ = tuned
    generator = TransformersGenerator.load(bot.settings, adapter=result.version)
    assert generator.adapter == result.version
    asker = bot.with_settings(max_new_tokens=32, answer_mode="generate")
    asker.use_generator(generator)
    answer = asker.ask("What is a diffusion model?")
    assert answer.adapter == result.version and answer.raw_reply
    assert bot.feedback.answer_trace(answer.id)["adapter"] == result.version


@pytest.mark.heavy
def test_the_adapter_is_saved_for_llama_cpp_too_and_served_there(tuned, monkeypatch):
    """`ragbot tune` trains with PyTorch and saves the adapter as a GGUF LoRA in its registry
    entry; the llama.cpp backend applies it (its fidelity: test_generators.py)."""
    from ragbot.generators import llama_cpp_installed

    if not llama_cpp_installed():
        pytest.skip("llama-cpp-python is not installed (make setup builds it)")
    import gguf
    from safetensors.torch import load_file

    from ragbot.generators import load_generator

    bot, result, _ = tuned
    info = AdapterRegistry(bot.settings.adapters_dir).get(result.version)
    reader = gguf.GGUFReader(str(info.path / "adapter.gguf"))
    assert reader.fields["general.type"].contents() == "adapter"
    pairs = {t.name for t in reader.tensors}
    assert len(pairs) == len(load_file(info.path / "adapter_model.safetensors"))
    assert all(name.startswith("blk.") and name.endswith((".lora_a", ".lora_b")) for name in pairs)
    generator = load_generator(bot.settings, adapter=result.version, backend="llama.cpp")
    assert generator.backend == "llama.cpp" and generator.adapter == result.version
    asker = bot.with_settings(max_new_tokens=16, answer_mode="generate", evidence_threshold=-1.0)
    asker.use_generator(generator)
    answer = asker.ask("What is a diffusion model?", record=False)
    assert answer.adapter == result.version and answer.raw_reply

    # An adapter llama.cpp cannot apply (an architecture the export does not know) still
    # answers with `auto`, on transformers; asked for by name, llama.cpp says why it cannot.
    from ragbot.errors import ModelError
    from ragbot.generators import llama_cpp_backend

    def unsupported(*args):
        raise ModelError("exporting adapters for the 'gemma9' architecture to llama.cpp is not supported")

    monkeypatch.setattr(llama_cpp_backend, "adapter_gguf", unsupported)
    fallback = load_generator(bot.settings, adapter=result.version)
    assert fallback.backend == "transformers" and fallback.adapter == result.version
    with pytest.raises(ModelError, match=f"adapter {result.version} cannot run on llama.cpp: .*gemma9"):
        load_generator(bot.settings, adapter=result.version, backend="llama.cpp")


@pytest.mark.heavy
def test_answerability_check_is_fit_stored_and_decides(tuned):
    """The run fits the evidence threshold on its training split, measures it on the held-out
    split, stores it with the adapter, and the bot refuses with it before any generation."""
    bot, result, lines = tuned
    fitted = result.stages["answerability"]
    assert fitted["fitted"] and fitted["n_answerable"] >= 5 and fitted["n_unanswerable"] >= 5
    assert fitted["auc"] > 0.6 and fitted["heldout"]["n_answerable"] > 0
    assert any(line.startswith("Answerability threshold") for line in lines)
    # Fit on the training split and the feedback's labels only: the held-out chunks' questions are not in it.
    voted = [row["answerable"] for row in bot.feedback.answerability_labels()]
    assert fitted["from_feedback"] == {"answerable": sum(voted), "unanswerable": len(voted) - sum(voted)}
    assert fitted["n_answerable"] == sum(voted) + sum(1 for ex in trainset.load_examples(result.run_dir / "train.jsonl")
                                                      if ex.answerable)
    from_feedback = [ex for ex in trainset.load_examples(result.run_dir / "answerability.jsonl") if ex.origin == "feedback"]
    assert [ex.question for ex in from_feedback] == [row["question"] for row in bot.feedback.answerability_labels()]
    assert all(ex.passages and ex.passages[0]["text"] for ex in from_feedback)
    generator = TransformersGenerator.load(bot.settings, adapter=result.version)
    check = generator.answerability
    assert check is not None and check.scorer == "embedding" and 0 < check.threshold < 1
    assert AdapterRegistry(bot.settings.adapters_dir).get(result.version).metadata["answerability"]["threshold"] == check.threshold

    asker = bot.with_settings(max_new_tokens=24, answer_mode="generate")
    asker.use_generator(generator)
    assert asker.answerability_check() == check
    off = asker.ask("How many attention heads does SmolLM2 use?",
                    passages=["Bananas are yellow fruit grown in tropical regions of the world."])
    assert off.refused and off.refusal_reason == "no_evidence" and off.evidence_score < check.threshold
    assert off.raw_reply == "" and off.timings_ms["generate"] == 0.0  # no generation was spent on it
    trace = bot.feedback.answer_trace(off.id)
    assert trace["refusal_reason"] == "no_evidence"
    assert trace["params"]["evidence_score"] == round(off.evidence_score, 4)
    assert trace["params"]["evidence_threshold"] == round(check.threshold, 4)
    gold = ("Mode collapse is a common failure of GANs: the generator produces only a few kinds of output "
            "that fool the discriminator, losing the variety of the real data.")
    on = asker.ask("What is mode collapse in a GAN?", passages=[gold])
    assert on.evidence_score >= check.threshold and not on.refused and on.raw_reply
    # The gate's feedback replay answers as the chat does, on the passages the vote saw.
    from ragbot.learn.gate import replay

    privacy = next(c for c in bot.store.all_chunks() if c.source.endswith("risk-privacy.md"))
    case = {"question": "How many attention heads does SmolLM2 use?", "chunk_ids": [privacy.id]}
    assert replay(asker, case) == (REFUSAL, True)


@pytest.mark.heavy
def test_correction_match_threshold_is_fit_and_stored(tuned):
    """The run also fits the cosine at which a question asks what a corrected one asked, on its
    own questions about the corpus's documents, and answers with that adapter use it."""
    bot, result, lines = tuned
    fitted = result.stages["corrections"]
    assert fitted["fitted"] and fitted["documents"] >= 2 and fitted["questions"] >= 10
    assert any(line.startswith("Correction match threshold") for line in lines)
    stored = AdapterRegistry(bot.settings.adapters_dir).get(result.version).metadata["corrections"]
    assert stored["threshold"] == fitted["threshold"]
    assert bot.with_settings(adapter=result.version).correction_threshold() == fitted["threshold"]
    assert bot.with_settings(adapter="none").correction_threshold() == bot.settings.correction_match


def test_quick_runs_are_bounded_by_steps_not_minutes():
    quick = TuneConfig.quick()
    assert quick.time_budget_min is None and quick.max_steps == 24 and quick.prefer_max_steps == 4
    assert TuneConfig.quick(max_steps=2).prefer_max_steps == 2


@pytest.mark.heavy
def test_a_damaged_check_fails_before_the_model_loads(tuned):
    from ragbot.answer.answerability import AnswerabilityError
    from ragbot.settings import with_overrides

    bot, result, _ = tuned
    registry = AdapterRegistry(bot.settings.adapters_dir)
    stored = dict(registry.get(result.version).metadata["answerability"], threshold="heavy")
    damaged = registry.save(info_path(bot, result), {"base_model": bot.settings.generator, "answerability": stored})
    with pytest.raises(AnswerabilityError, match=rf"{damaged.version}/ragbot-adapter.json: malformed"):
        TransformersGenerator.load(with_overrides(bot.settings, adapter=damaged.version))


@pytest.mark.heavy
def test_registry_activate_rollback_and_errors(tuned, tmp_path):
    bot, result, _ = tuned
    registry = AdapterRegistry(tmp_path / "adapters")
    with pytest.raises(AdapterError, match="nothing to roll back"):
        registry.rollback()
    first = registry.save(bot.settings.adapters_dir / result.version, {"base_model": "SmolLM2-135M-Instruct"})
    second = registry.save(bot.settings.adapters_dir / result.version, {"base_model": "SmolLM2-135M-Instruct"})
    assert [v.version for v in registry.versions()] == ["v1", "v2"]
    registry.activate("v1")
    registry.activate(second.version)
    assert registry.active().version == "v2"
    assert registry.rollback().version == "v1"
    assert registry.rollback() is None  # back to the base model
    with pytest.raises(AdapterError, match="no adapter 'v9'"):
        registry.activate("v9")
    # An adapter made for another base model is refused with a clear message.
    from ragbot.settings import with_overrides

    other = AdapterRegistry(bot.settings.adapters_dir).save(info_path(bot, result), {"base_model": "other-model"})
    with pytest.raises(AdapterError, match="trained on 'other-model'"):
        TransformersGenerator.load(with_overrides(bot.settings, adapter=other.version))
    assert first.path.is_dir()


@pytest.mark.heavy
def test_gate_refuses_a_candidate_trained_to_always_refuse(tuned, tmp_path):
    bot, result, _ = tuned
    train = trainset.load_examples(result.run_dir / "train.jsonl")
    rows = [{"prompt": ex.prompt, "completion": REFUSAL} for ex in train]
    run = Run.create(tmp_path / "tune", TuneConfig())
    config = TuneConfig(max_steps=6, batch_size=2, gradient_accumulation=1, sft_learning_rate=2e-3, save_steps=100)
    train_sft(bot, config, rows, run, parent=None, deadline=None, log=lambda line: None)
    registry = AdapterRegistry(bot.settings.adapters_dir)
    active_before = registry.state()["active"]
    refuser = registry.save(run.path / "sft-adapter", {"base_model": bot.settings.generator})

    heldout = trainset.load_examples(result.run_dir / "heldout.jsonl")
    # Enough questions for the gate to decide (gate.MIN_QUESTIONS), held-out ones first.
    answerable = [ex for ex in heldout + train if ex.answerable][:16]
    unanswerable = [ex for ex in train if not ex.answerable][:4]
    assert len(answerable) + len(unanswerable) >= MIN_QUESTIONS
    eval_rows = [ex.as_eval_row() for ex in answerable + unanswerable]
    gate_bot = bot.with_settings(max_new_tokens=24, answer_mode="generate")
    candidate = TransformersGenerator.load(gate_bot.settings, adapter=refuser.version)
    active = TransformersGenerator.load(gate_bot.settings, adapter="none")
    verdict = run_gate(gate_bot, active, candidate, eval_rows, cases=[], out=tmp_path / "gate")
    # The evidence decides to answer, so the candidate cannot refuse; what it writes instead of
    # the answer is worse, and the gate sees that in ROUGE-L.
    assert verdict.candidate["rougeL"] < verdict.active["rougeL"]
    assert not verdict.promote and "too few" not in verdict.reasons[0]
    assert "failed the gate: saved, not activated" in (tmp_path / "gate" / "gate.md").read_text()
    assert registry.state()["active"] == active_before


def test_training_arguments_turn_checkpointing_off_without_a_deprecation_warning(tmp_path):
    """TRL's configs default to activation checkpointing on; ragbot turns it off under the name
    transformers 5 uses, since the old name printed a FutureWarning into every run's output."""
    import warnings

    from trl import KTOConfig, SFTConfig

    from ragbot.learn.tune import _training_args

    for config_cls in (SFTConfig, KTOConfig):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            args = _training_args(config_cls, TuneConfig(), tmp_path / config_cls.__name__, epochs=1.0, lr=1e-4)
        assert args.activation_checkpointing is False and args.gradient_checkpointing is False


def test_gate_rule():
    """Activated only when the paired-bootstrap interval of the utility gain is above zero."""
    active = [0.2, 0.3, 1.0, 0.0] * 15  # 60 questions
    better = [0.5, 0.6, 1.0, 1.0] * 15
    assert decide({}, {}, active, better).promote
    assert not decide({}, {}, active, active).promote  # no gain
    assert "not above zero" in decide({}, {}, active, active).reasons[0]
    # The same gains on four questions could be chance: kept, not activated, and it says why.
    few = decide({}, {}, active[:4], better[:4])
    assert not few.promote and "too few to decide" in few.reasons[0]
    # A gain on some questions that losses on others cancel is no gain.
    mixed = [0.5, 0.0, 1.0, 0.0] * 15
    assert not decide({}, {}, active, mixed).promote
    # Nor does a gain buy a regression on the user's feedback.
    assert not decide({"regression_pass_rate": 1.0}, {"regression_pass_rate": 0.5}, active, better).promote


def test_preflight_and_data_checks(make_bot, tmp_path):
    empty = make_bot()
    with pytest.raises(TuneError, match="no documents"):
        preflight(empty)
    kto_rows = [{"prompt": "p", "completion": "c", "label": True}] * 10
    with pytest.raises(TuneError, match="too little data for KTO: 10 desirable and 0 undesirable"):
        preference_method(TuneConfig(preference="kto"), kto_rows, dpo_feedback=0)
    assert preference_method(TuneConfig(), kto_rows, dpo_feedback=0) is None  # auto: skip the stage
    assert preference_method(TuneConfig(), kto_rows, dpo_feedback=8) == "dpo"
    with pytest.raises(TuneError, match="batch_size"):
        TuneConfig(batch_size=1).validate()
    # Runs that would train nothing, or for no time, are refused before they start (helper-81's
    # drive: `--epochs 0` and `--time-budget 0` each started a run).
    for bad, said in ((dict(sft_epochs=0), "sft_epochs must be above 0"),
                      (dict(sft_epochs=-1.0), "sft_epochs must be above 0"),
                      (dict(time_budget_min=0.0), "time_budget_min must be above 0"),
                      (dict(sft_epochs=float("inf")), "sft_epochs must be above 0 and finite"),
                      (dict(model_questions=-1), "model_questions must be 0 or more")):
        with pytest.raises(TuneError, match=said):
            TuneConfig(**bad).validate()
    TuneConfig(model_questions=0, time_budget_min=0.5, sft_epochs=0.5).validate()


def test_activating_an_adapter_that_failed_its_gate_says_so(tmp_path, capsys):
    """`ragbot model activate` of an adapter its gate kept back activates it, and says that it
    failed the gate and how to go back (it said only "active: v1", helper-81's drive)."""
    from ragbot.interfaces.cli import main

    data_dir = tmp_path / "data"
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "adapter_config.json").write_text("{}")
    registry = AdapterRegistry(data_dir / "adapters")
    registry.save(trained, {"base_model": "m"})
    registry.update_metadata("v1", gate={"promoted": False, "reasons": ["utility gain +0.017, 95% interval "
                                                                        "[+0.000, +0.051] over 59 questions: not above zero"]})
    registry.save(trained, {"base_model": "m"})
    registry.update_metadata("v2", gate={"promoted": True, "reasons": ["utility gain +0.100"]})
    capsys.readouterr()
    assert main(["model", "activate", "v1", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr()
    assert out.out == "active: v1\n"
    assert ("warning: v1 failed its gate (utility gain +0.017, 95% interval [+0.000, +0.051] over 59 questions: "
            "not above zero); it is active anyway. `ragbot model rollback` goes back to the one active before.") in out.err
    # Activated again, nothing changes: no rollback to offer (it would find nothing to go back to).
    assert main(["model", "activate", "v1", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().err.endswith("it is active anyway.\n")
    assert main(["model", "activate", "v2", "--data-dir", str(data_dir)]) == 0
    assert "failed its gate" not in capsys.readouterr().err  # one that passed is activated without a warning
    assert registry.state()["active"] == "v2"


def test_a_resumed_run_says_which_settings_given_now_it_does_not_use():
    """A resumed run keeps the settings it started with; those given now that differ are named,
    by their flags, with the way to use them (they were dropped without a word). Defaults left
    alone are not listed (a quick run resumed by a plain `ragbot tune` listed every one of them)."""
    from dataclasses import asdict

    from ragbot.learn.tune import settings_not_used

    started = TuneConfig.quick()
    stored = asdict(started)
    assert settings_not_used(TuneConfig.quick(), started, stored, named={}) is None
    assert settings_not_used(TuneConfig(), started, stored, named={}) is None  # no flag given
    said = settings_not_used(TuneConfig.quick(sft_epochs=3.0), started, stored, named={"sft_epochs": "--epochs"})
    assert said == ("the run keeps the settings it started with, so these are not used: --epochs 3.0 "
                    "(the run's: 2.0). Start over with --new to use them.")
    # A setting an older run did not store is not compared (it takes the default, not the run's).
    older = {k: v for k, v in stored.items() if k != "false_refusal"}
    assert settings_not_used(TuneConfig(false_refusal=0.1), started, older, named={"false_refusal": "--false-refusal"}) is None
    # Without names (a library caller), every setting that differs is named by its field.
    assert "max_steps none (the run's: 24)" in settings_not_used(TuneConfig(), started, stored)


def test_a_run_started_with_settings_now_refused_does_not_resume(make_bot, docs):
    """An unfinished run started before a check existed (`--epochs 0` trained nothing, yet
    saved a version) is not resumed with them: it says why and how to start over."""
    bot = make_bot()
    bot.ingest([docs])
    Run.create(bot.settings.tune_dir, TuneConfig(sft_epochs=0))
    with pytest.raises(TuneError, match=r"cannot resume: sft_epochs must be above 0 and finite \(got 0\); start over "
                                        "with --new"):
        tune(bot, TuneConfig(), log=lambda line: None)


def test_tiny_corpus_is_refused_before_training(make_bot, tmp_path):
    bot = make_bot()
    (tmp_path / "one.txt").write_text("Bananas are yellow fruit grown in tropical regions.\n")
    bot.ingest([tmp_path / "one.txt"])
    with pytest.raises(TuneError, match="too little training data"):
        tune(bot, TuneConfig(model_questions=0), log=lambda line: None)


def test_feedback_labels_read_the_passages_as_they_are_now(make_bot, docs):
    """A vote's passages are read from the index when tuning starts; a vote whose passages were
    all re-ingested since is left out rather than fit on text the user never saw."""
    from ragbot.types import Answer

    bot = make_bot()
    bot.ingest([docs])

    def voted(question: str, vote: int) -> None:
        passages = bot.search(question)[:2]
        answer = Answer(question=question, answer=REFUSAL, refused=True, citations=[], passages=passages,
                        prompt="<prompt>", raw_reply=REFUSAL, model="m", adapter=None, timings_ms={}, tokens={},
                        refusal_reason="no_evidence")
        bot.feedback.record_answer(answer, params={"prompt_passages": 1})
        bot.feedback.set_feedback(answer.id, vote)

    voted("When was the Eiffel Tower finished?", -1)  # the user says the passages did answer it
    voted("What colour are bananas?", 1)
    examples = trainset.feedback_answerability_examples(bot, bot.feedback.answerability_labels())
    assert [(ex.question, ex.answerable, ex.origin) for ex in examples] == [
        ("When was the Eiffel Tower finished?", True, "feedback"), ("What colour are bananas?", False, "feedback")]
    assert "completed in 1889" in examples[0].passages[0]["text"] and len(examples[0].passages) == 1

    (docs / "bananas.txt").write_text("Bananas are long curved fruit, green until they ripen.\n")
    bot.ingest([docs])
    examples = trainset.feedback_answerability_examples(bot, bot.feedback.answerability_labels())
    assert [ex.question for ex in examples] == ["When was the Eiffel Tower finished?"]


def test_gate_sample_keeps_unanswerable_rows_up_to_half():
    rows = [{"question": f"q{i}", "answerable": i % 5 != 0} for i in range(20)]  # 4 unanswerable
    picked = gate_sample(rows, 8, seed=3)
    assert len(picked) == 8 and sum(not r["answerable"] for r in picked) == 4
    assert picked == sorted(picked, key=lambda r: int(r["question"][1:]))  # in the split's order
    assert gate_sample(rows, 8, seed=3) == picked  # the same rows for the same seed
    few = gate_sample(rows, 6, seed=3)
    assert sum(not r["answerable"] for r in few) == 3 and len(few) == 6
    assert gate_sample(rows, 0, seed=3) == rows and gate_sample(rows[:5], 8, seed=3) == rows[:5]


def test_heading_questions_leave_out_the_outline_number():
    """A suggestion read "What does the DHS2020 document say about 5.2.7. Information, Awareness &
    Resources?" (helper-58's drive): the heading's number is nobody's question."""
    from ragbot.storage.store import StoredChunk

    def asked(section, *others):
        chunks = [StoredChunk(i, "/p.pdf", "DHS2020", s, None, "Text.") for i, s in enumerate((section, *others), 1)]
        return trainset.structural_questions(chunks)[0].question

    # A heading that capitalises its words keeps its first capital too ("…about information,
    # Awareness & Resources?" and "manufacturing and Engineering" read oddly: helper-89's drive).
    assert asked("Plan > 5.2.7. Information, Awareness & Resources") == (
        "What does the DHS2020 document say about Information, Awareness & Resources?")
    assert asked("Plan > 3) Data sharing") == "What does the DHS2020 document say about data sharing?"
    assert asked("Plan > Data sharing with the EU") == "What does the DHS2020 document say about data sharing with the EU?"
    assert asked("Plan > 2024 Goals") == "What does the DHS2020 document say about 2024 Goals?"  # a year stays
    # Numbers joined by stops are an outline's only among other numbered headings of the document;
    # alone they are a figure.
    assert asked("Plan > 4.1 Data sharing", "Plan > 4.2 Data storage") == (
        "What does the DHS2020 document say about data sharing?")
    assert asked("Plan > 4.1 Data sharing", "Plan > 4. Data") == "What does the DHS2020 document say about data sharing?"
    assert asked("Growth > 2.5 Million Users", "Growth > Costs") == (
        "What does the DHS2020 document say about 2.5 Million Users?")
    assert asked("Growth > 2.5 Million Users", "Growth > 2.5 Million Users") == (  # one heading, chunked twice
        "What does the DHS2020 document say about 2.5 Million Users?")
    # The chat's suggestions read a sample of chunks: the document's sections are counted, not the sample's.
    sample = [StoredChunk(1, "/p.pdf", "DHS2020", "Plan > 4.1 Data sharing", None, "Text.")]
    sections = {("/p.pdf", "Plan > 4.1 Data sharing"), ("/p.pdf", "Plan > 4.2 Data storage"), ("/q.pdf", "")}
    assert trainset.structural_questions(sample, sections=sections)[0].question == (
        "What does the DHS2020 document say about data sharing?")


def test_the_store_gives_the_sections_of_the_documents_a_sample_of_chunks_comes_from(make_bot, tmp_path):
    plan, other = tmp_path / "plan.md", tmp_path / "other.md"
    plan.write_text("# Plan\n\n## 4.1 Data sharing\n\nWe share data.\n\n## 4.2 Data storage\n\nWe store data.\n")
    other.write_text("# Other\n\n## Costs\n\nThey are low.\n")
    bot = make_bot()
    assert bot.ingest([plan, other]).ok
    first = next(c for c in bot.store.all_chunks() if c.source == str(plan) and "4.1" in c.section)
    sections = bot.store.document_sections([first.id])
    assert {section.split(" > ")[-1] for source, section in sections} == {"4.1 Data sharing", "4.2 Data storage"}
    assert {source for source, _ in sections} == {str(plan)}
    assert bot.store.document_sections([]) == set()
