"""Exploration: can a classifier that reads the question and a sentence together, over the shipped
embedder's vectors, refuse near misses that the cosine answers? On the development sets only
(tests/data/corpus_qa*.jsonl, 301 rows; never the frozen set).

    python bench/explore_pair_classifier.py                  # a few minutes on 2 cores
    python bench/explore_pair_classifier.py cross-encoder    # the same folds, a cross-encoder: ~30 min

The cosine of question and sentence vectors says "same subject"; a near miss is on the subject
and lacks what is asked. A logistic regression on the pair's element-wise product and absolute
difference (u*v, |u-v|, and the cosine: the classic sentence-pair classifier over fixed
embeddings) can weigh dimensions differently, so it might learn which parts of a question
vector a sentence has to match. Labels: in an answerable row, the shown sentence with the best
ROUGE-L against the reference answers is the positive (when that ROUGE-L is at least
`MIN_ROUGE`, else the row gives no positive); every other shown sentence, and every sentence
shown for an unanswerable row, is a negative. Questions are split into 5 folds; each fold is
scored by a model trained on the other four (pairs of the same question never on both sides).
A question's score is its best sentence's probability.

This is an upper bound for the idea: the training labels come from questions written like the
test ones, where the product would have its synthetic questions and the user's votes. Printed:
AUC answerable against all unanswerable and against the near misses, and the share refused at
the threshold that refuses 10% of the answerable questions (set on these rows: in-sample), for
the cosine that refuses today and for the classifier at a few regularisation strengths.

With `cross-encoder`, each fold trains a cross-encoder from the shipped MiniLM instead (a new
one-logit head, `BinaryCrossEntropyLoss` weighted for the balance, `EPOCHS` epochs): each
training question paired with its positive and with its `NEGATIVES` shown sentences closest by
cosine (an unanswerable question: those alone). It reads question and sentence together, the
scorer §8 names as missing, trained here on questions like the ones it is judged on.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import searched_development_sets  # noqa: E402

MIN_ROUGE = 0.3  # a best sentence below this does not hold the reference answer: no positive
NEGATIVES = 8  # cross-encoder: the shown sentences closest to the question, as negatives
EPOCHS = 2


def pair_features(question: np.ndarray, sentences: np.ndarray) -> np.ndarray:
    return np.hstack([sentences * question, np.abs(sentences - question), (sentences @ question)[:, None]])


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from ragbot.answer.evidence import candidates
    from ragbot.evaluation.metrics import best_of, rouge_l

    work = Path(tempfile.mkdtemp(prefix="ragbot-explore-pairs-"))
    bot, dev, queries, shown = searched_development_sets(work)
    questions = []  # (answerable, near miss, features of each sentence, label of each sentence)
    for row, query, passages in zip(dev, queries, shown):
        pool = [sentence for _, sentence in candidates(passages)]
        if not pool:
            continue
        vectors = bot.embedder.encode([query, *pool])
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        labels = np.zeros(len(pool), dtype=bool)
        if row["answerable"] and row["answers"]:
            overlap = [best_of(rouge_l, sentence, row["answers"]) for sentence in pool]
            if max(overlap) >= MIN_ROUGE:
                labels[int(np.argmax(overlap))] = True
        questions.append((bool(row["answerable"]), "near miss" in (row.get("category") or ""),
                          pair_features(vectors[0], vectors[1:]), labels, query, pool))
    answerable = np.array([q[0] for q in questions])
    near = np.array([q[1] for q in questions])
    pairs = answerable | near
    print(f"{len(questions)} questions: {answerable.sum()} answerable "
          f"({sum(q[3].any() for q in questions)} with a positive sentence), {near.sum()} near misses, "
          f"{(~answerable).sum()} unanswerable")

    def report(name: str, scores: np.ndarray) -> None:
        threshold = np.quantile(scores[answerable], 0.10)
        print(f"{name:40s} AUC {roc_auc_score(answerable, scores):.3f}  vs near misses "
              f"{roc_auc_score(answerable[pairs], scores[pairs]):.3f}  at 10% answerable refused: near misses "
              f"{np.mean(scores[near] < threshold):.3f}, unanswerable {np.mean(scores[~answerable] < threshold):.3f}")

    report("best sentence's cosine (refuses today)", np.array([q[2][:, -1].max() for q in questions]))
    folds = np.random.default_rng(0).permutation(len(questions)) % 5
    if sys.argv[1:] == ["cross-encoder"]:
        report("cross-encoder, 5-fold", cross_encoder_scores(bot, questions, folds, work))
        bot.close()
        shutil.rmtree(work, ignore_errors=True)
        return
    for c in (0.01, 0.1, 1.0, 10.0):
        scores = np.zeros(len(questions))
        for fold in range(5):
            train = [q for q, f in zip(questions, folds) if f != fold]
            model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
            model.fit(np.vstack([q[2] for q in train]), np.concatenate([q[3] for q in train]))
            for i in np.flatnonzero(folds == fold):
                scores[i] = model.predict_proba(questions[i][2])[:, 1].max()
        report(f"pair classifier, C={c}", scores)
    bot.close()
    shutil.rmtree(work, ignore_errors=True)


def cross_encoder_scores(bot, questions, folds, work: Path) -> np.ndarray:
    import time

    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from ragbot.models import load_plan

    location, _, _ = load_plan(bot.settings, "embedder")
    scores = np.zeros(len(questions))
    for fold in range(5):
        first, second, labels = [], [], []
        for q, f in zip(questions, folds):
            if f == fold:
                continue
            _, _, features, positive, query, pool = q
            closest = [i for i in np.argsort(-features[:, -1]) if not positive[i]][:NEGATIVES]
            for i in [*np.flatnonzero(positive), *closest]:
                first.append(query)
                second.append(pool[i])
                labels.append(float(positive[i]))
        started = time.perf_counter()
        model = CrossEncoder(location, num_labels=1, device="cpu", max_length=128)
        arguments = CrossEncoderTrainingArguments(
            output_dir=str(work / "checkpoints"), num_train_epochs=EPOCHS, learning_rate=5e-5,
            per_device_train_batch_size=32, warmup_ratio=0.1, save_strategy="no", logging_steps=50, seed=0,
            report_to=[], disable_tqdm=True)
        balance = torch.tensor((len(labels) - sum(labels)) / sum(labels))
        CrossEncoderTrainer(model=model, args=arguments, loss=BinaryCrossEntropyLoss(model, pos_weight=balance),
                            train_dataset=Dataset.from_dict({"sentence1": first, "sentence2": second,
                                                             "label": labels})).train()
        for i in np.flatnonzero(folds == fold):
            _, _, _, _, query, pool = questions[i]
            scores[i] = model.predict([(query, s) for s in pool], batch_size=64, show_progress_bar=False).max()
        print(f"fold {fold}: {len(labels)} pairs ({int(sum(labels))} positive), "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    return scores


if __name__ == "__main__":
    main()
