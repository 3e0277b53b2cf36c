"""`ragbot tune`: LoRA fine-tuning of the generator on the user's documents and feedback.

Stages, each resumable (a run lives in `<data dir>/tune/<run id>/`):
1. data      questions and examples (trainset.py), split into train and held-out, saved as JSONL;
2. answerability  the threshold on the best evidence score below which ragbot refuses
             (answerability.py), fit on the training split's questions and the feedback's votes
             on earlier answers, and measured on the held-out split's questions; with it, the
             cosine at which a new question asks what a corrected one asked (corrections.py);
3. sft       LoRA supervised fine-tuning with TRL's SFTTrainer on {prompt, completion};
4. prefer    KTO on desirable/undesirable completions (KTOTrainer), or DPO on pairs
             (DPOTrainer) when the feedback holds enough of them;
5. register  the adapter (and the check) saved as the next version in the registry, not yet active;
6. gate      candidate and active model answer the held-out questions (gate.py); the candidate
             is activated only when it is better.
Training saves checkpoints; an interrupted run continues from the last one when `ragbot tune`
is run again (unless --new).
"""

from __future__ import annotations

import gc
import json
import math
import random
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from ragbot.answer import answerability, corrections, evidence
from ragbot.learn import trainset
from ragbot.errors import ModelError, RagbotError
from ragbot.storage.files import state_lock, write_atomic
from ragbot.learn.registry import AdapterRegistry

MIN_FREE_BYTES = 1 << 30  # checkpoints and the adapter need far less; a nearly full disk fails late
MIN_SFT_EXAMPLES = 8
MIN_KTO_EACH = 4  # desirable and undesirable examples each
MIN_FEEDBACK_PAIRS_FOR_DPO = 8

Log = Callable[[str], None]


class TuneError(RagbotError):
    pass


@dataclass
class TuneConfig:
    model_questions: int = 120  # questions written by the local model (0: structure only)
    heldout_fraction: float = 0.2
    unanswerable_share: float = 0.2  # share of questions that also get an unanswerable example
    same_document_share: float = 0.5  # of those, share that withhold only the gold chunk (near misses)
    # Fit the answerability check (answerability.py) that decides whether the passages hold the answer.
    answerability_check: bool = True
    false_refusal: float = answerability.FALSE_REFUSAL  # the check's threshold: see answerability.py
    preference: str = "auto"  # auto (DPO when the feedback has pairs, else KTO) | kto | dpo | none
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # LoRA on the top N transformer layers only (0: all). Gradients then stop there, which made
    # training 1.8x faster on CPU (10 of SmolLM2-135M's 30 layers; bench/bench_tune.py).
    lora_layers: int = 10
    sft_epochs: float = 2.0
    # 1e-3: at 2e-4 an epoch on the shipped corpus left SmolLM2-135M rambling; at 1e-3 it
    # learned the short cited answer (ROUGE-L 0.117 vs 0.090 on tests/data/corpus_qa.jsonl).
    sft_learning_rate: float = 1e-3
    prefer_epochs: float = 1.0
    prefer_learning_rate: float = 2e-4
    beta: float = 0.1
    batch_size: int = 2  # per step; with gradient_accumulation the optimizer sees 4 examples
    gradient_accumulation: int = 2
    max_length: int = 1024
    max_steps: int | None = None  # per training stage
    prefer_max_steps: int | None = None  # the preference stage's own limit (None: max_steps)
    time_budget_min: float | None = None  # both training stages together
    save_steps: int = 10
    gate_questions: int = 60  # held-out examples the gate evaluates (0: all)
    gate_max_new_tokens: int | None = 96
    seed: int = 0
    fresh: bool = False  # start from the base model, not from the active adapter
    activate: str = "gate"  # gate | always | never
    # What --quick sets (quick() below).
    QUICK: ClassVar[dict] = dict(model_questions=30, sft_epochs=2.0, prefer_epochs=0.5, max_steps=24,
                                 prefer_max_steps=4, gate_max_new_tokens=80)

    @classmethod
    def quick(cls, **overrides) -> "TuneConfig":
        """Small settings that finish in 5-15 minutes on a 2-core CPU (the shipped corpus).

        Training is bounded by steps, not minutes, so a busier machine makes the same adapter,
        only later (24 SFT steps are 2 epochs of the shipped corpus's quick data; the KTO steps
        each cost about three SFT steps, bench/bench_tune.py)."""
        values = dict(cls.QUICK)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("max_steps") is not None and overrides.get("prefer_max_steps") is None:
            values["prefer_max_steps"] = min(values["prefer_max_steps"], values["max_steps"])
        return cls(**values)

    def validate(self) -> None:
        if self.preference not in ("auto", "kto", "dpo", "none"):
            raise TuneError(f"preference must be auto, kto, dpo or none (got {self.preference!r})")
        if self.activate not in ("gate", "always", "never"):
            raise TuneError(f"activate must be gate, always or never (got {self.activate!r})")
        if not 0 <= self.heldout_fraction < 1:
            raise TuneError(f"heldout_fraction must be in [0, 1) (got {self.heldout_fraction})")
        if not 0 <= self.false_refusal < 0.5:
            raise TuneError(f"false_refusal must be in [0, 0.5) (got {self.false_refusal})")
        if self.batch_size < 2:
            raise TuneError("batch_size must be at least 2 (KTO estimates its KL term within a batch)")
        if not 0 < self.sft_epochs < math.inf:  # 0 (or a negative count) would train nothing yet save a version
            raise TuneError(f"sft_epochs must be above 0 and finite (got {self.sft_epochs})")
        if self.time_budget_min is not None and not 0 < self.time_budget_min < math.inf:
            raise TuneError(f"time_budget_min must be above 0 minutes and finite (got {self.time_budget_min})")
        if self.model_questions < 0:
            raise TuneError(f"model_questions must be 0 or more (got {self.model_questions})")


@dataclass
class TuneResult:
    run_dir: Path
    version: str | None
    activated: bool
    counts: dict
    gate: object | None = None  # gate.GateResult
    stages: dict = field(default_factory=dict)


# -- the run directory -------------------------------------------------------------------------


class Run:
    """A tuning run's folder and its state file (which stages are done)."""

    def __init__(self, path: Path):
        self.path = path
        self.state_file = path / "state.json"

    @classmethod
    def latest_unfinished(cls, tune_dir: Path) -> "Run | None":
        if not tune_dir.is_dir():
            return None
        for path in sorted(tune_dir.iterdir(), reverse=True):
            run = cls(path)
            if run.state_file.is_file() and not run.state().get("finished"):
                return run
        return None

    @classmethod
    def create(cls, tune_dir: Path, config: TuneConfig) -> "Run":
        path = tune_dir / time.strftime("%Y%m%d-%H%M%S")
        while path.exists():
            path = path.with_name(path.name + "x")
        path.mkdir(parents=True)
        run = cls(path)
        run.save_state({"config": asdict(config), "done": [], "finished": False})
        return run

    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TuneError(f"{self.state_file}: unreadable ({exc}); remove the run folder or use --new") from None

    def save_state(self, state: dict) -> None:
        write_atomic(self.state_file, json.dumps(state, indent=2, default=str))

    def mark(self, stage: str, **info) -> None:
        state = self.state()
        state["done"].append(stage)
        state.setdefault("stages", {})[stage] = info
        self.save_state(state)

    def done(self, stage: str) -> bool:
        return stage in self.state()["done"]


# -- pre-flight --------------------------------------------------------------------------------


def preflight(bot) -> None:
    """Reasons a run cannot start, found before any time is spent."""
    try:
        import peft  # noqa: F401
        import trl  # noqa: F401
    except ImportError as exc:
        raise TuneError(f"tuning needs trl and peft ({exc.name} is missing): pip install trl peft") from None
    if bot.store.counts()[1] == 0:
        raise TuneError(f"no documents in {bot.settings.data_dir}: ingest some first (ragbot ingest PATH)")
    bot.settings.data_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(bot.settings.data_dir).free
    if free < MIN_FREE_BYTES:
        raise TuneError(f"only {free / 2**20:.0f} MB free in {bot.settings.data_dir}; tuning needs at least "
                        f"{MIN_FREE_BYTES / 2**20:.0f} MB for checkpoints and the adapter")


# -- stage 1: data -------------------------------------------------------------------------------


def build_data(bot, config: TuneConfig, run: Run, log: Log) -> dict:
    """Make, check, split and save the examples; returns the counts per source."""
    rng = random.Random(config.seed)
    chunks = bot.store.all_chunks()
    report = trainset.CheckReport()
    candidates = trainset.structural_questions(chunks, bot.abbreviations())
    if config.model_questions > 0:
        generator = bot.generator
        from tqdm import tqdm

        bar = tqdm(total=config.model_questions, desc="model-written questions", unit="q", leave=False)

        def write(sentence: str) -> str:
            prompt = generator.render(trainset.question_writer_messages(sentence)) + "Question:"
            return generator.generate(prompt, max_new_tokens=32).text

        def progress(i: int, total: int) -> None:
            bar.total = total
            bar.update(1)

        candidates += trainset.model_questions(chunks, write, config.model_questions, rng, progress,
                                               abbreviations=bot.abbreviations())
        bar.close()
    kept = trainset.check_candidates(bot, candidates, report)
    examples = trainset.make_examples(bot, kept, rng, config.unanswerable_share, config.same_document_share)
    feedback = {fmt: list(bot.feedback.export_rows(fmt)) for fmt in ("sft", "kto", "dpo")}
    if len(examples) + len(feedback["sft"]) < MIN_SFT_EXAMPLES:
        raise TuneError(f"too little training data: {len(examples)} examples passed the checks and the feedback "
                        f"holds {len(feedback['sft'])} (needs {MIN_SFT_EXAMPLES} in all); ingest more documents, "
                        f"or give feedback in the chat")
    trainset.add_mistakes(examples, rng)
    generator = bot.generator
    trainset.render_prompts(examples, generator, generator.context_tokens - bot.settings.max_new_tokens)
    train, heldout = trainset.split_heldout(examples, config.heldout_fraction, rng)
    trainset.save_examples(train, run.path / "train.jsonl")
    trainset.save_examples(heldout, run.path / "heldout.jsonl")
    if config.answerability_check:
        # Its own random stream, so the training examples stay the same with or without it.
        check_examples = trainset.answerability_examples(bot, kept, random.Random(config.seed + 1))
        # Votes on earlier answers say which real questions the passages did or did not answer.
        from_feedback = trainset.feedback_answerability_examples(bot, bot.feedback.answerability_labels())
        trainset.save_examples(check_examples + from_feedback, run.path / "answerability.jsonl")
        feedback["answerability"] = [{"question": ex.question, "answerable": ex.answerable} for ex in from_feedback]

    write_atomic(run.path / "feedback.json", json.dumps(feedback, ensure_ascii=False))
    counts = {
        "questions_made": dict(report.made),
        "questions_kept": dict(report.kept),
        "questions_rejected": dict(report.rejected),
        "train": _example_counts(train),
        "heldout": _example_counts(heldout),
        "feedback": {fmt: len(rows) for fmt, rows in feedback.items()},
    }
    return counts


def _example_counts(examples) -> dict:
    counts = Counter(f"{ex.origin}/{'answerable' if ex.answerable else 'unanswerable'}" for ex in examples)
    withheld = Counter(f"{ex.withheld} withheld" for ex in examples if not ex.answerable)
    return {"total": len(examples), **dict(sorted(counts.items())), **dict(sorted(withheld.items()))}


def format_counts(counts: dict) -> str:
    lines = ["Training data:"]
    made, kept = counts["questions_made"], counts["questions_kept"]
    for origin in sorted(made):
        lines.append(f"  questions by {origin:<10} {made[origin]:>4} made, {kept.get(origin, 0):>4} passed the checks")
    for reason, n in sorted(counts["questions_rejected"].items()):
        lines.append(f"    rejected: {reason}: {n}")
    for part in ("train", "heldout"):
        detail = ", ".join(f"{k} {v}" for k, v in counts[part].items() if k != "total")
        lines.append(f"  {part:<8} {counts[part]['total']:>4} examples ({detail})")
    fb = counts["feedback"]
    lines.append(f"  feedback  {fb['sft']} SFT targets, {fb['kto']} KTO labels, {fb['dpo']} DPO pairs"
                 + (f", {fb['answerability']} answerability labels" if "answerability" in fb else ""))
    return "\n".join(lines)


# -- stage 2: the answerability check -----------------------------------------------------------


def fit_answerability(bot, config: TuneConfig, run: Run, log: Log) -> dict:
    """Fit the check on the training split's questions, measure it on the held-out split's, and
    save it as answerability.json in the run folder. Returns what the run state records."""
    from tqdm import tqdm

    source = run.path / "answerability.jsonl"
    if not source.is_file():
        reason = f"{source} is missing (the run's data was made without the check); start over with --new"
        log(f"no answerability check: {reason}")
        return {"fitted": False, "reason": reason}
    train_chunks = {ex.chunk_id for ex in trainset.load_examples(run.path / "train.jsonl")}
    examples = trainset.load_examples(source)
    scorer = bot.evidence_scorer
    abbreviations = bot.abbreviations()
    scores = [best_evidence(ex.question, ex.passages, scorer, abbreviations)
              for ex in tqdm(examples, desc="evidence scores", unit="q", leave=False)]
    parts: dict[str, tuple[list, list]] = {"train": ([], []), "heldout": ([], [])}
    for ex, best in zip(examples, scores):
        # Questions from feedback are all fit on: they are few, and the ones most like the user's.
        part = "train" if ex.origin == "feedback" or ex.chunk_id in train_chunks else "heldout"
        part_scores, answerable = parts[part]
        part_scores.append(best)
        answerable.append(ex.answerable)
    try:
        check = answerability.fit(*parts["train"], scorer=scorer.name, false_refusal=config.false_refusal)
    except answerability.AnswerabilityError as exc:
        log(f"no answerability check: {exc}")
        return {"fitted": False, "reason": str(exc)}
    check.fit_report["heldout"] = {**check.rates(*parts["heldout"]), "auc": answerability.auc(*parts["heldout"])}
    voted = [ex.answerable for ex in examples if ex.origin == "feedback"]
    check.fit_report["from_feedback"] = {"answerable": sum(voted), "unanswerable": len(voted) - sum(voted)}
    write_atomic(run.path / "answerability.json", json.dumps(check.to_dict(), indent=2))
    return {"fitted": True, **check.fit_report}


def best_evidence(question: str, passages: list[dict], scorer, abbreviations: frozenset[str] = frozenset()) -> float:
    """The best evidence score of a question over given passage dicts. Passages without a
    sentence answer nothing, so they score below any threshold (as the bot refuses them).
    `abbreviations`: the documents' own, as the bot splits their sentences with them."""
    from ragbot.bot import _given_passages

    best = evidence.best_score(question, _given_passages(passages), scorer, abbreviations)
    return float("-inf") if best is None else best


def format_answerability(info: dict) -> str:
    if not info.get("fitted"):
        return f"Answerability check: none ({info.get('reason', 'turned off')})"
    held = info["heldout"]

    def rate(value) -> str:
        return "–" if value is None else f"{value:.0%}"

    voted = info.get("from_feedback") or {}
    from_feedback = (f", {voted['answerable']} / {voted['unanswerable']} of them from feedback"
                     if voted.get("answerable") or voted.get("unanswerable") else "")
    return (f"Answerability threshold {info.get('threshold', float('nan')):.3f}: fit on {info['n_answerable']} answerable and {info['n_unanswerable']} "
            f"unanswerable questions{from_feedback} (AUC {info['auc']:.2f}); it refuses {rate(info['refusal_rate_answerable'])} / "
            f"{rate(info['refusal_rate_unanswerable'])} of them, and {rate(held['refusal_rate_answerable'])} / "
            f"{rate(held['refusal_rate_unanswerable'])} of the {held['n_answerable']} / {held['n_unanswerable']} "
            f"held-out ones")


def fit_correction_match(bot, run: Run, log: Log) -> dict:
    """Fit the threshold at which a question asks what a corrected one asked (corrections.py)
    on the run's questions, each belonging to its chunk's document; saved as corrections.json."""
    examples = [ex for name in ("train.jsonl", "heldout.jsonl")
                for ex in trainset.load_examples(run.path / name) if ex.origin != "feedback"]
    try:
        fitted = corrections.fit_on_questions(bot, [(ex.question, ex.chunk_id) for ex in examples])
    except corrections.CorrectionsError as exc:
        return {"fitted": False, "reason": str(exc)}
    write_atomic(run.path / "corrections.json", json.dumps(fitted.to_dict(), indent=2))
    return {"fitted": True, "threshold": fitted.threshold, **fitted.fit_report}


def format_correction_match(info: dict) -> str:
    if not info.get("fitted"):
        return f"Correction match threshold: the default ({info.get('reason')})"
    return (f"Correction match threshold {info['threshold']:.3f}: fit on {info['questions']} questions about "
            f"{info['documents']} documents (a question about another document reaches it "
            f"{info['false_match_target']:.0%} of the time)")


# -- stages 3 and 4: training --------------------------------------------------------------------


def training_callbacks(deadline: float | None, desc: str):
    """A progress bar (steps, loss, ETA) and a stop at the time budget, as TRL/transformers callbacks."""
    from tqdm import tqdm
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        bar = None

        first_step = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.first_step = state.global_step  # > 0 when resumed from a checkpoint
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=desc, unit="step")

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}")

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    class TimeBudget(TrainerCallback):
        stopped_early = False

        def on_step_end(self, args, state, control, **kwargs):
            if deadline is not None and time.monotonic() >= deadline:
                control.should_training_stop = True
                control.should_save = True
                self.stopped_early = True

    return Progress(), TimeBudget()


def _load_trainable(bot, adapter_dir: Path | None):
    """(model, tokenizer): the base generator in float32 (training weights), with `adapter_dir`
    loaded trainable, read from where the transformers backend reads it (whatever backend the
    bot answers with)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragbot.models import load_plan

    location, _, _ = load_plan(bot.settings, "generator")
    local_only = not bot.settings.allow_downloads
    tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32, use_safetensors=True,
                                                 local_files_only=local_only)
    if adapter_dir is not None:
        from peft import PeftModel

        from ragbot.models import require_safetensors

        require_safetensors(adapter_dir, "the adapter to continue from")

        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
    return model, tokenizer


def _lora_config(model, config: TuneConfig):
    """LoRA on every linear layer of the top `config.lora_layers` transformer blocks."""
    import torch
    from peft import LoraConfig

    n_layers = int(getattr(model.config.get_text_config(), "num_hidden_layers", 0) or 0)
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and ".layers." in name}
    if not names or not n_layers:
        raise TuneError(f"cannot find the transformer layers of {type(model).__name__} to put LoRA on")
    top = range(max(0, n_layers - config.lora_layers), n_layers) if config.lora_layers else None
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=sorted(names), layers_to_transform=list(top) if top else None,
                      task_type="CAUSAL_LM")


def _training_args(config_cls, config: TuneConfig, out: Path, epochs: float, lr: float,
                   max_steps: int | None = None, **extra):
    from ragbot.models import cpu_has_native_bf16, pick_device

    cuda = pick_device() == "cuda"
    bf16 = cuda or cpu_has_native_bf16()
    # Off: the model is small and memory is not what limits a CPU run. transformers 5 renamed the
    # setting (the old name prints a FutureWarning in every run); older 5.x releases know only it.
    checkpointing = ("activation_checkpointing" if "activation_checkpointing" in {f.name for f in fields(config_cls)}
                     else "gradient_checkpointing")
    return config_cls(
        output_dir=str(out), num_train_epochs=epochs, max_steps=max_steps or config.max_steps or -1,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=lr, lr_scheduler_type="linear",
        warmup_steps=2, logging_steps=1, save_strategy="steps", save_steps=config.save_steps,
        save_total_limit=1, report_to=[], disable_tqdm=True, bf16=bf16, use_cpu=not cuda,
        dataloader_pin_memory=False, seed=config.seed, max_length=config.max_length,
        **{checkpointing: False}, **extra,
    )


def _train(trainer, out: Path, deadline: float | None, desc: str, log: Log) -> dict:
    from transformers import PrinterCallback

    progress, budget = training_callbacks(deadline, desc)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(progress)
    trainer.add_callback(budget)
    checkpoint = _last_complete_checkpoint(out)
    if checkpoint:
        log(f"{desc}: resuming from {Path(checkpoint).name}")
    started = time.monotonic()
    with warnings.catch_warnings():
        # TRL's trainers still ask the model under transformers' old name, which warns on every
        # run; the user can do nothing about it, and it broke into the progress bar.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        result = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.monotonic() - started
    history = [h for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "steps_run": trainer.state.global_step - progress.first_step,
            "seconds": round(seconds, 1),
            "train_loss": result.training_loss, "first_loss": history[0]["loss"] if history else None,
            "last_loss": history[-1]["loss"] if history else None, "stopped_by_time_budget": budget.stopped_early}


def _last_complete_checkpoint(out: Path) -> str | None:
    """The newest checkpoint whose trainer state was written (the Trainer writes it last, so a
    checkpoint cut short by a crash is skipped)."""
    if not out.is_dir():
        return None
    complete = [p for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    complete.sort(key=lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name.rsplit("-", 1)[-1].isdigit() else -1)
    return str(complete[-1]) if complete else None


def _token_count(trainer) -> int:
    """Tokens in one pass over the trainer's tokenized dataset: the sequences it trains on
    (SFT: prompt + completion; KTO: prompt + completion; DPO: prompt + chosen and prompt + rejected)."""
    data = trainer.train_dataset
    columns = set(data.column_names)

    def total(column: str) -> int:
        return sum(len(ids) for ids in data[column]) if column in columns else 0

    if "input_ids" in columns:
        return total("input_ids")
    if "chosen_ids" in columns:
        return 2 * total("prompt_ids") + total("chosen_ids") + total("rejected_ids")
    return total("prompt_ids") + total("completion_ids")


def train_sft(bot, config: TuneConfig, rows: list[dict], run: Run, parent: Path | None,
              deadline: float | None, log: Log) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = _load_trainable(bot, parent)
    args = _training_args(SFTConfig, config, run.path / "sft", config.sft_epochs, config.sft_learning_rate,
                          completion_only_loss=True, packing=False)
    lora = None if parent else _lora_config(model, config)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=lora)
    info = _train(trainer, run.path / "sft", deadline, "SFT", log)
    info["tokens_per_epoch"] = _token_count(trainer)
    info["tokens_per_second"] = _throughput(info, trainer, len(rows))
    trainer.model.save_pretrained(str(run.path / "sft-adapter"))
    return info


def _throughput(info: dict, trainer, n_rows: int) -> float | None:
    """Training tokens per second: tokens in the examples seen, over the stage's wall time."""
    args = trainer.args
    seen = info["steps_run"] * args.per_device_train_batch_size * args.gradient_accumulation_steps
    per_row = info["tokens_per_epoch"] / max(1, n_rows)
    return round(seen * per_row / info["seconds"], 1) if info["seconds"] > 0 else None


def train_preference(bot, config: TuneConfig, method: str, rows: list[dict], run: Run,
                     deadline: float | None, log: Log) -> dict:
    from datasets import Dataset

    model, tokenizer = _load_trainable(bot, run.path / "sft-adapter")
    rows = list(rows)
    random.Random(config.seed).shuffle(rows)
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        good = sum(r["label"] for r in rows)
        bad = len(rows) - good
        # Balance the two losses (KTO paper: desirable weight x count ~ undesirable weight x count).
        args = _training_args(KTOConfig, config, run.path / "prefer", config.prefer_epochs,
                              config.prefer_learning_rate, config.prefer_max_steps, beta=config.beta,
                              desirable_weight=max(1.0, bad / max(1, good)), undesirable_weight=1.0)
        trainer = KTOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    else:
        from trl import DPOConfig, DPOTrainer

        args = _training_args(DPOConfig, config, run.path / "prefer", config.prefer_epochs,
                              config.prefer_learning_rate, config.prefer_max_steps, beta=config.beta)
        trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    info = _train(trainer, run.path / "prefer", deadline, method.upper(), log)
    info["method"] = method
    info["tokens_per_epoch"] = _token_count(trainer)
    info["tokens_per_second"] = _throughput(info, trainer, len(rows))
    trainer.model.save_pretrained(str(run.path / "adapter"), selected_adapters=["default"])
    return info


def preference_method(config: TuneConfig, kto: list[dict], dpo_feedback: int) -> str | None:
    if config.preference == "none":
        return None
    if config.preference == "dpo" or (config.preference == "auto" and dpo_feedback >= MIN_FEEDBACK_PAIRS_FOR_DPO):
        return "dpo"
    good = sum(r["label"] for r in kto)
    if good < MIN_KTO_EACH or len(kto) - good < MIN_KTO_EACH:
        if config.preference == "kto":
            raise TuneError(f"too little data for KTO: {good} desirable and {len(kto) - good} undesirable "
                            f"examples (needs {MIN_KTO_EACH} of each)")
        return None
    return "kto"


# -- the whole run ---------------------------------------------------------------------------------


def settings_not_used(given: TuneConfig, kept: TuneConfig, stored: Collection[str],
                      named: Mapping[str, str] | None = None) -> str | None:
    """What a resumed run says of the settings given now that differ from those it started with
    and keeps (`kept`); None when none differ. `named`: the settings the caller set, each with the
    name the user gave it (the CLI's flag), so that defaults left alone are not listed; None: every
    setting, by its own name. Only settings the run stored (`stored`) are compared: an older
    run's config lacks newer ones, which take their defaults."""
    def shown(value) -> str:
        return "none" if value is None else str(value)

    names = named if named is not None else {f.name: f.name for f in fields(TuneConfig)}
    changed = [f"{name} {shown(getattr(given, field))} (the run's: {shown(getattr(kept, field))})"
               for field, name in names.items()
               if field in stored and getattr(given, field) != getattr(kept, field)]
    if not changed:
        return None
    return ("the run keeps the settings it started with, so these are not used: " + "; ".join(changed)
            + ". Start over with --new to use them.")


def tune(bot, config: TuneConfig, new: bool = False, log: Log = print,
         named: Mapping[str, str] | None = None) -> TuneResult:
    """Run (or resume) a tuning run. One at a time per data dir: a second one is refused at once
    with who runs the first (files.state_lock). A resumed run keeps the settings it started
    with, and names those of `config` it does not use (`named`: see settings_not_used)."""
    config.validate()
    if bot.settings.generator_backend != "transformers":
        # Training is PyTorch's; the tuned adapter is also exported for llama.cpp (below).
        bot = bot.with_settings(generator_backend="transformers")
    preflight(bot)
    with state_lock(bot.settings.data_dir / "tune.lock", f"tuning in {bot.settings.data_dir}", timeout=0):
        return _tune(bot, config, new, log, named)


def _tune(bot, config: TuneConfig, new: bool, log: Log, named: Mapping[str, str] | None = None) -> TuneResult:
    settings = bot.settings
    registry = AdapterRegistry(settings.adapters_dir)
    run = None if new else Run.latest_unfinished(settings.tune_dir)
    if run is not None:
        given = config
        stored = {k: v for k, v in run.state()["config"].items() if k in {f.name for f in fields(TuneConfig)}}
        config = TuneConfig(**stored)
        try:  # a run started before a check existed (`--epochs 0` trained nothing yet saved a version)
            config.validate()
        except TuneError as exc:
            raise TuneError(f"the unfinished run {run.path} cannot resume: {exc}; start over with --new") from None
        log(f"resuming the unfinished run {run.path} (start over with --new)")
        unused = settings_not_used(given, config, stored, named)
        if unused:  # flags given now were dropped without a word (helper-81's drive)
            log(unused)
    else:
        run = Run.create(settings.tune_dir, config)
        log(f"run folder: {run.path}")
    state = run.state()
    if "parent" not in state:  # fixed when the run starts, so a resumed run keeps it
        active = None if config.fresh else registry.active()
        state["parent"] = active.version if active else None
        run.save_state(state)
    parent = registry.get(state["parent"]) if state["parent"] else None

    if not run.done("data"):
        counts = build_data(bot, config, run, log)
        run.mark("data", counts=counts)
    counts = run.state()["stages"]["data"]["counts"]
    log(format_counts(counts))
    if config.answerability_check:
        if not run.done("answerability"):
            run.mark("answerability", **fit_answerability(bot, config, run, log))
        log(format_answerability(run.state()["stages"]["answerability"]))

    if not run.done("corrections"):
        run.mark("corrections", **fit_correction_match(bot, run, log))
    log(format_correction_match(run.state()["stages"]["corrections"]))

    train = trainset.load_examples(run.path / "train.jsonl")
    heldout = trainset.load_examples(run.path / "heldout.jsonl")
    feedback = json.loads((run.path / "feedback.json").read_text())
    sft = trainset.sft_rows(train, feedback["sft"])
    kto = trainset.kto_rows(train, feedback["kto"])
    dpo = trainset.dpo_rows(train, feedback["dpo"])
    if len(sft) < MIN_SFT_EXAMPLES:
        raise TuneError(f"too little training data: {len(sft)} examples passed the checks (needs "
                        f"{MIN_SFT_EXAMPLES}); ingest more documents, or give feedback in the chat")
    method = preference_method(config, kto, len(feedback["dpo"]))

    # The budget is for training: the data and the check before it take what they take.
    deadline = time.monotonic() + config.time_budget_min * 60 if config.time_budget_min else None
    sft_deadline = None
    if deadline is not None:
        share = 0.75 if method else 1.0  # SFT teaches the most per minute
        sft_deadline = time.monotonic() + (deadline - time.monotonic()) * share
    if settings.answer_mode == "extract" and not run.done("sft"):
        # Said before the longest stage (a newcomer waited minutes for weights the answers then
        # never read, and the gate's tie did not say why: helper-81's drive).
        used = "refusal and correction thresholds" if config.answerability_check else "correction threshold"
        log(f"answers are quoted from the documents (answer mode extract): they use this adapter's {used}, "
            "fitted above; the LoRA weights trained next write answers only with --answer-mode generate, "
            "and the gate compares the models as they answer now")
    if not run.done("sft"):
        gc.collect()
        info = train_sft(bot, config, sft, run, parent.path if parent else None, sft_deadline, log)
        run.mark("sft", **info)
    if method and not run.done("prefer"):
        gc.collect()  # the SFT trainer and its model
        info = train_preference(bot, config, method, kto if method == "kto" else dpo, run, deadline, log)
        run.mark("prefer", **info)
    adapter_dir = run.path / ("adapter" if method else "sft-adapter")
    stages = run.state()["stages"]

    if not run.done("register"):
        check_file = run.path / "answerability.json"
        check = json.loads(check_file.read_text()) if check_file.is_file() else None
        match_file = run.path / "corrections.json"
        match = json.loads(match_file.read_text()) if match_file.is_file() else None
        export_for_llama_cpp(settings, adapter_dir, log)
        info = registry.save(adapter_dir, {
            "base_model": settings.generator,
            "parent": parent.version if parent else None,
            "data_hash": trainset.data_hash(sft, kto if method == "kto" else dpo if method else []),
            "counts": counts, "config": run.state()["config"],
            "training": {k: v for k, v in stages.items() if k not in ("data", "answerability")},
            "run": str(run.path), "answerability": check, "corrections": match,
        })
        run.mark("register", version=info.version)
    version = run.state()["stages"]["register"]["version"]
    log(f"saved adapter {version} in {registry.root}")

    gate_result = None
    activated = False
    if config.activate == "always":
        registry.activate(version)
        activated = True
    elif config.activate == "gate":
        gc.collect()
        gate_result = gate_candidate(bot, config, version, heldout, run)
        registry.update_metadata(version, gate={"promoted": gate_result.promote, "reasons": gate_result.reasons,
                                                "active": gate_result.active, "candidate": gate_result.candidate})
        log(gate_result.table())
        if gate_result.promote:
            registry.activate(version)
            activated = True
    state = run.state()
    state["finished"] = True
    run.save_state(state)
    return TuneResult(run_dir=run.path, version=version, activated=activated, counts=counts,
                      gate=gate_result, stages=stages)


def export_for_llama_cpp(settings, adapter_dir: Path, log: Log) -> None:
    """Save the adapter as a GGUF LoRA next to its weights, so the llama.cpp backend serves it
    (generators/gguf_lora.py). Only for a GGUF generator; a failure leaves the adapter usable
    with the transformers backend, and says so."""
    from ragbot.generators.gguf_lora import ADAPTER_GGUF, export_lora
    from ragbot.models import generator_gguf

    try:
        base = generator_gguf(settings)
        if base is not None:
            export_lora(adapter_dir, base, adapter_dir / ADAPTER_GGUF)
    except (ModelError, OSError, KeyError, ValueError) as exc:
        log(f"the adapter was not exported for llama.cpp ({exc}); it answers on the transformers backend")


def gate_sample(rows: list[dict], n: int, seed: int) -> list[dict]:
    """At most `n` of the held-out rows (0: all), in their order, with the unanswerable ones kept
    up to half of them, so both kinds of mistake weigh in the gate's utility."""
    if not n or len(rows) <= n:
        return rows
    rng = random.Random(seed)
    unanswerable = [i for i, row in enumerate(rows) if not row["answerable"]]
    answerable = [i for i, row in enumerate(rows) if row["answerable"]]
    kept = rng.sample(unanswerable, min(len(unanswerable), n // 2))
    kept += rng.sample(answerable, min(len(answerable), n - len(kept)))
    return [rows[i] for i in sorted(kept)]


def gate_candidate(bot, config: TuneConfig, version: str, heldout: list, run: Run):
    from ragbot.learn.gate import run_gate
    from ragbot.generators.transformers_backend import TransformersGenerator

    # The held-out chunks' questions, also as the answerability stage showed them (with the chunk,
    # and with the chunk or its document withheld): three times the rows, so the gate can decide.
    held_chunks = {ex.chunk_id for ex in heldout}
    shown = run.path / "answerability.jsonl"
    extra = [ex for ex in trainset.load_examples(shown)
             if ex.origin != "feedback" and ex.chunk_id in held_chunks] if shown.is_file() else []
    candidates = {(row["question"], json.dumps(row.get("passages"), sort_keys=True)): row
                  for row in (ex.as_eval_row() for ex in [*heldout, *extra])}
    rows = gate_sample(list(candidates.values()), config.gate_questions, config.seed)
    if not rows:
        raise TuneError("no held-out examples to compare the models on; raise --heldout")
    gate_bot = bot.with_settings(max_new_tokens=config.gate_max_new_tokens)
    loaded = bot.generator  # the data stage's model: reused when it is the active one
    # Both sides on the backend the candidate was trained with.
    same = loaded.backend == "transformers" and (loaded.adapter or "none") == gate_bot.adapter_in_use()
    active = loaded if same else TransformersGenerator.load(gate_bot.settings, adapter="active")
    candidate = TransformersGenerator.load(gate_bot.settings, adapter=version)
    cases = bot.feedback.voted_answers()
    return run_gate(gate_bot, active, candidate, rows, cases, out=run.path / "gate")
