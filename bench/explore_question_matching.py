"""Exploration: do questions the local generator writes for each sentence of the user's documents
tell a near miss from an answerable question better than the sentences do? (doc2query-style
matching: the user's question against questions a shown sentence answers, with the shipped
MiniLM, which was trained on question pairs.) Development sets only (tests/data/corpus_qa*.jsonl);
never the frozen set.

    python bench/explore_question_matching.py data DIR     # one question per answer sentence
    python bench/explore_question_matching.py eval DIR     # AUCs and refusal rates
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

ROOT = Path(__file__).resolve().parent.parent
from ragbot import RagBot  # noqa: E402
from ragbot.learn import trainset  # noqa: E402

phase, work = sys.argv[1], Path(sys.argv[2])
work.mkdir(parents=True, exist_ok=True)
bot = RagBot.open(work / "data", default_corpus=None)
if not bot.store.all_chunks():
    bot.ingest([ROOT / "corpus"])
QUESTIONS = work / "questions.jsonl"

if phase == "data":
    gen = bot.generator
    pool = [(c.id, s) for c in bot.store.all_chunks() for s in trainset.answer_sentences(c.text, bot.abbreviations())]
    t = time.time()
    with QUESTIONS.open("w") as out:
        for i, (chunk_id, sentence) in enumerate(pool):
            prompt = gen.render(trainset.question_writer_messages(sentence)) + "Question:"
            reply = gen.generate(prompt, max_new_tokens=32).text.strip().split("\n")[0]
            match = trainset._QUESTION_LINE.search(reply)
            if match:
                out.write(json.dumps({"chunk_id": chunk_id, "sentence": sentence,
                                      "question": " ".join(match.group(1).split())}) + "\n")
            if i % 50 == 0:
                print(i, len(pool), f"{time.time() - t:.0f}s", flush=True)
    sys.exit()

written = [json.loads(line) for line in QUESTIONS.open()]
by_chunk: dict[int, list[int]] = {}
for i, w in enumerate(written):
    by_chunk.setdefault(w["chunk_id"], []).append(i)
wq = bot.embedder.encode([w["question"] for w in written])
rows = [json.loads(line) for f in sorted((ROOT / "tests/data").glob("corpus_qa*.jsonl")) for line in f.open() if line.strip()]
feats, labels = [], []
for row in rows:
    q = row["question"]
    passages = bot.search(q)
    cos = bot._evidence_score(q, passages)
    qv = bot.embedder.encode([q])[0]
    ids = [i for p in passages for i in by_chunk.get(p.chunk_id, [])]
    qq = float(np.max(wq[ids] @ qv)) if ids else 0.0
    qq_first = float(np.max(wq[by_chunk.get(passages[0].chunk_id, [])] @ qv)) if by_chunk.get(passages[0].chunk_id) else 0.0
    feats.append([cos if cos is not None else 0.0, qq, qq_first])
    labels.append(int(row["answerable"]))
X, y = np.array(feats), np.array(labels)
near = np.array(["near miss" in (r.get("category") or "") for r in rows])
print(len(rows), "rows;", y.sum(), "answerable;", near.sum(), "near misses;", (~near & (y == 0)).sum(), "other unanswerable")


def report(name, s):
    auc_all = roc_auc_score(y, s)
    m = (y == 1) | near
    auc_near = roc_auc_score(y[m], s[m])
    t = np.quantile(s[y == 1], 0.10)  # in-sample: 10% of answerable refused
    print(f"{name:28s} AUC all {auc_all:.3f}  AUC near {auc_near:.3f}  near refused@10% {np.mean(s[near] < t):.3f}  all unans {np.mean(s[y == 0] < t):.3f}")


report("best sentence cosine", X[:, 0])
report("best written question", X[:, 1])
report("written q, first passage", X[:, 2])
for cols, name in [([0, 1], "cosine + written (LR 5-fold)"), ([0, 1, 2], "all three (LR 5-fold)")]:
    p = cross_val_predict(LogisticRegression(), X[:, cols], y, cv=5, method="predict_proba")[:, 1]
    report(name, p)
report("mean of cosine and written", X[:, :2].mean(axis=1))
