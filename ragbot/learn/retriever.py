"""`ragbot tune --retriever`: the embedder learns which passages answer the user's questions.

From the feedback: every question whose answer got a thumbs-up (and no correction) is a pair of
that question and the chunk the answer cited first, and so is every question whose correction
cites a passage ("In 2014 [2]."), with that passage; its hard negative is the chunk the current
search ranks highest among documents the answer did not cite. ("Liked questions" below means
both.) On SciFact, with judged train
queries standing in for liked answers, such pairs raised hybrid nDCG@10 from 0.723 to 0.750
(paired gain +0.027 [+0.010, +0.044]); pairs made from the corpus text alone did not help
(docs/benchmarks.md §11), so only feedback trains it.

Stages:
1. pairs    the liked questions, split at random into training pairs and held-out questions;
2. train    the shipped embedder fine-tuned with sentence-transformers' trainer and
            MultipleNegativesRankingLoss (in-batch negatives plus the hard one), saved as the
            next version in `<data dir>/embedders` (EmbedderRegistry);
3. embed    every chunk embedded by it (the ingest's speed), kept beside the shipped vectors;
4. gate     the held-out questions searched both ways, in the `retrieval` mode set; nDCG@10
            with the chunks their answers cited at grade 2 and the rest of those documents at
            grade 1; the candidate ranks from then on only when the paired-bootstrap 95%
            interval of its gain is above zero (as an adapter's gate).

A tuned embedder only orders passages (bot.py): scores, and every threshold on them, stay the
shipped embedder's cosines, so nothing calibrated on them changes meaning. The held-out
questions' cited chunks were found by the search of the day, which favours the active ranking;
grading the rest of their documents too lessens that (on SciFact the gate then ranked with an
embedder whose test gain was +0.016 [+0.002, +0.030], which it kept when judging by the cited
chunk alone: docs/benchmarks.md §11), but the gate still errs towards keeping. Training takes minutes, so a run is not resumable; an
interrupted run leaves the registry and the ranking as they were.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ragbot.evaluation.metrics import CITED, feedback_judgements, graded_judgements, ndcg_at_k, recall_at_k
from ragbot.learn.gate import MIN_QUESTIONS, gain_is_clear
from ragbot.learn.registry import EmbedderRegistry
from ragbot.learn.tune import Log, TuneError, training_callbacks

MIN_TRAIN_PAIRS = 20


class RetrieverTuneError(TuneError):
    pass


@dataclass
class RetrieverConfig:
    # One pass at 5e-5, the recipe that gained on both sets it was tried on (docs/benchmarks.md
    # §11): SciFact's held-out train queries (1e-4 gained more there) and the shipped corpus's
    # development questions, where 1e-4 lost (-0.010) and four passes lost more (-0.071).
    learning_rate: float = 5e-5
    batch_size: int = 32
    epochs: int = 1
    max_steps: int | None = None  # a cap on the steps (tests, a first try)
    max_seq_length: int = 128  # tokens of each text read while training (the saved model reads as far as before)
    heldout_fraction: float = 0.2
    depth: int = 30  # passages searched for each question's hard negative
    activate: str = "gate"  # gate | always | never
    seed: int = 0

    def validate(self) -> None:
        if not 0 < self.heldout_fraction < 1:
            raise RetrieverTuneError(f"--heldout must be between 0 and 1 (got {self.heldout_fraction})")
        if self.activate not in ("gate", "always", "never"):
            raise RetrieverTuneError(f"activate must be gate, always or never (got {self.activate!r})")


@dataclass
class RetrieverResult:
    version: str
    activated: bool
    gate: dict


# -- 1. pairs ------------------------------------------------------------------------------


def split_feedback(bot, config: RetrieverConfig) -> tuple[dict, dict]:
    """(training, held out): liked questions, each {question: cited chunk ids}, split at random."""
    data = feedback_judgements(bot.feedback.relevant_passages(), set(bot.store.chunk_ids().tolist()))
    questions = {data.queries[q]: [int(c) for c in data.qrels[q]] for q in sorted(data.qrels)}
    order = sorted(questions)
    random.Random(config.seed).shuffle(order)
    held = max(MIN_QUESTIONS, round(config.heldout_fraction * len(order)))
    needed = MIN_QUESTIONS + MIN_TRAIN_PAIRS
    if len(order) < needed or len(order) - held < MIN_TRAIN_PAIRS:
        raise RetrieverTuneError(
            f"tuning the retriever needs at least {needed} different questions whose answers got a thumbs-up "
            f"(or a correction citing a passage) "
            f"({MIN_TRAIN_PAIRS} to learn from, {MIN_QUESTIONS} held out to judge the result); the feedback holds "
            f"{len(order)} (with their cited passages still stored). Vote on more answers in the chat "
            f"(or `ragbot feedback vote ID up`), then run this again")
    return ({q: questions[q] for q in order[held:]}, {q: questions[q] for q in order[:held]})


def training_pairs(bot, liked: dict[str, list[int]], depth: int) -> list[tuple[str, str, str]]:
    """(question, the passage its answer cited first, a hard negative) as the embedder reads
    them: the negative is the best-ranked passage of a document the answer did not cite."""
    from ragbot.ingest.ingester import embedding_input

    questions = list(liked)
    found = bot.batch_search(questions, k=depth)
    wanted = {c for q in questions for c in liked[q][:1]} | {p.chunk_id for ps in found for p in ps}
    rows = {r[0]: r for r in bot.store.embedding_rows(sorted(wanted))}
    text = lambda chunk_id: embedding_input(bot.embedder, *rows[chunk_id][1:])  # noqa: E731
    cited = bot.store.chunks(sorted({c for q in questions for c in liked[q]}))
    cited_docs = {q: {cited[c].source for c in liked[q] if c in cited} for q in questions}
    pairs = []
    for question, passages in zip(questions, found):
        positive = liked[question][0]
        negative = next((p.chunk_id for p in passages if p.chunk_id not in liked[question]
                         and p.source not in cited_docs[question]), None)
        if negative is not None and positive in rows:
            pairs.append((question, text(positive), text(negative)))
    return pairs


# -- 2. train ------------------------------------------------------------------------------


def train(base: str, pairs: list[tuple[str, ...]], out: Path, config: RetrieverConfig, bf16: bool) -> dict:
    """Fine-tune the embedder at `base` on `pairs` (question, positive[, hard negative]) with
    MultipleNegativesRankingLoss; the model is saved in `out / "model"`. Returns what was done."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (BatchSamplers,
                                                                          SentenceTransformerTrainingArguments)

    from transformers import PrinterCallback

    model = SentenceTransformer(base, device="cpu", local_files_only=True)
    reads = model.max_seq_length
    model.max_seq_length = config.max_seq_length
    columns = {"anchor": [p[0] for p in pairs], "positive": [p[1] for p in pairs]}
    if len(pairs[0]) > 2:
        columns["negative"] = [p[2] for p in pairs]
    batch = min(config.batch_size, len(pairs))
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "run"), num_train_epochs=config.epochs, per_device_train_batch_size=batch,
        learning_rate=config.learning_rate, warmup_steps=0.1, batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no", logging_steps=5, report_to=[], seed=config.seed, use_cpu=True,
        dataloader_num_workers=0, bf16=bf16, max_steps=config.max_steps or -1, disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                                         loss=MultipleNegativesRankingLoss(model),
                                         callbacks=list(training_callbacks(None, "training the embedder")))
    trainer.remove_callback(PrinterCallback)  # the progress bar shows the loss; stdout stays the command's
    started = time.perf_counter()
    state = trainer.train()
    model.max_seq_length = reads
    model.save_pretrained(str(out / "model"), safe_serialization=True)
    return {"pairs": len(pairs), "batch_size": batch, "epochs": config.epochs, "steps": int(trainer.state.global_step),
            "loss": round(float(state.training_loss), 4), "seconds": round(time.perf_counter() - started, 1),
            "bf16": bf16}


# -- 4. gate -------------------------------------------------------------------------------


def ndcg_per_question(bot, judged: dict[str, dict[str, int]], version: str | None) -> list[float]:
    """nDCG@10 of each held-out question's search (`judge_searches`)."""
    return [ndcg for ndcg, _ in judge_searches(bot, judged, version)]


def judge_searches(bot, judged: dict[str, dict[str, int]], version: str | None) -> list[tuple[float, float]]:
    """(nDCG@10, recall@5 of the cited chunks) of each held-out question's search, judged by
    `judged` ({question: {chunk id: grade}}, `graded_judgements`), with embedder `version`
    ranking (None: the shipped one; its vectors must be stored) and BM25 as the `retrieval`
    setting says."""
    questions = list(judged)
    _, lexical, _ = bot._search_snapshot(bot.settings.retrieval != "dense")
    # Both sides on an exact index of their stored vectors (the one in use may be approximate).
    index = bot.index_from_store(version)
    if index is None:
        raise RetrieverTuneError(f"the tuned embedder {version} has no vectors of every chunk stored")
    embedder = bot.embedder if version is None else bot.tuned_embedder(version)
    queries = embedder.encode(questions, batch_size=bot.settings.embed_batch_size)
    scores = []
    for question, ranking in zip(questions, bot.rank(questions, queries, index, lexical, 10)):
        ranked, grades = [str(c) for c in ranking], judged[question]
        scores.append((ndcg_at_k(ranked, grades, 10), recall_at_k(ranked, grades, 5, CITED)))
    return scores


def decide(active: list[float], candidate: list[float], seed: int = 0,
           recall: tuple[list[float], list[float]] | None = None) -> dict:
    """Rank with the candidate when the paired-bootstrap 95% interval of its nDCG@10 gain over
    at least MIN_QUESTIONS held-out questions is above zero. `recall` (each side's recall@5 per
    question) is reported, not decided on."""
    promote, gain, reason = gain_is_clear(active, candidate, "nDCG@10", "held-out liked questions", seed)
    n = len(candidate)
    decision = {"active_ndcg@10": sum(active) / n if n else 0.0,
                "candidate_ndcg@10": sum(candidate) / n if n else 0.0,
                "gain": gain, "questions": n, "promote": promote, "reason": reason}
    if recall is not None and n:
        decision["active_recall@5"], decision["candidate_recall@5"] = (sum(r) / n for r in recall)
    return decision


# -- the command ---------------------------------------------------------------------------


def tune_retriever(bot, config: RetrieverConfig, log: Log = print) -> RetrieverResult:
    from tqdm import tqdm

    from ragbot.models import cpu_has_native_bf16, resolve_embedder

    config.validate()
    if bot.settings.retrieval == "bm25":
        raise RetrieverTuneError("the retrieval setting is bm25, which ranks without the embedder: a tuned one "
                                 "would change nothing (set retrieval to hybrid or dense)")
    train_on, heldout = split_feedback(bot, config)
    active = bot.store.ranking_embedder()
    log(f"{len(train_on)} liked questions to learn from, {len(heldout)} held out to judge; ranking now: "
        f"{active or 'the shipped embedder'}")
    pairs = training_pairs(bot, train_on, config.depth)
    if len(pairs) < MIN_TRAIN_PAIRS:
        raise RetrieverTuneError(f"only {len(pairs)} liked questions have a passage to contrast with (needs "
                                 f"{MIN_TRAIN_PAIRS}): the documents are too few for a hard negative")
    random.Random(config.seed).shuffle(pairs)
    bot.settings.tune_dir.mkdir(parents=True, exist_ok=True)
    work = bot.settings.tune_dir / f"retriever-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        # Trained from the shipped embedder each time, on all the feedback so far.
        bf16 = cpu_has_native_bf16()
        trained = train(resolve_embedder(bot.settings), pairs, work, config, bf16)
        log(f"trained on {trained['pairs']} pairs: {trained['steps']} steps in {trained['seconds']:.0f}s "
            f"(loss {trained['loss']:.3f}, {'bf16' if bf16 else 'float32'})")
        registry = EmbedderRegistry(bot.settings.embedders_dir)
        info = registry.save(work / "model", {
            "base_model": bot.settings.embedder, "ranking_before": active, "config": asdict(config), "training": trained,
            "feedback": {"train_questions": len(train_on), "heldout_questions": len(heldout)},
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)
    version = info.version
    chunks = bot.store.counts()[1]
    with tqdm(total=chunks, desc=f"embedding the chunks with {version}", unit="chunk") as bar:
        bot.embed_for_ranking(version, lambda done, total: bar.update(done - bar.n))
    # Judged against what ranks now (another process may have switched it during training), on
    # every chunk (ingests meanwhile embedded too).
    active = bot.store.ranking_embedder()
    bot.embed_for_ranking(version)
    if active is not None:
        bot.embed_for_ranking(active)
    judged = graded_judgements(bot.store, heldout)
    before, after = judge_searches(bot, judged, active), judge_searches(bot, judged, version)
    gate = decide([n for n, _ in before], [n for n, _ in after], config.seed,
                  recall=([r for _, r in before], [r for _, r in after]))
    log(f"gate: nDCG@10 {active or 'shipped'} {gate['active_ndcg@10']:.3f} -> {version} "
        f"{gate['candidate_ndcg@10']:.3f} (recall@5 {gate['active_recall@5']:.3f} -> "
        f"{gate['candidate_recall@5']:.3f}); {gate['reason']}")
    registry.update_metadata(version, gate=gate)
    activate = config.activate == "always" or (config.activate == "gate" and gate["promote"])
    if activate:
        bot.rank_with(version)
    else:  # its vectors are not kept; activating it later embeds the chunks again
        bot.drop_unkept_ranking_vectors()
    return RetrieverResult(version=version, activated=activate, gate=gate)
