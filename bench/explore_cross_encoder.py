"""Exploration behind docs/benchmarks.md §8 (a cross-encoder trained on model-written questions): after
`python bench/explore_evidence_scorers.py data 800` has written the questions, train a cross-encoder
from the shipped MiniLM (same-document and other-passage hard negatives) and score the development
sets (never the frozen set).

    python bench/explore_cross_encoder.py [EPOCHS] [LEARNING_RATE]    # 3 5e-5: about 4 minutes
"""
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ragbot import RagBot  # noqa: E402
from ragbot.answer.evidence import candidates  # noqa: E402
from ragbot.evaluation.metrics import rouge_l  # noqa: E402
from ragbot.learn import trainset  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

W = Path(tempfile.gettempdir()) / "ragbot-explore-evidence"
bot = RagBot.open(W / "data", default_corpus=None)
rows = json.loads((W / "kept.json").read_text())
rng = random.Random(1)
chunk_ids = sorted({r["chunk"] for r in rows}); rng.shuffle(chunk_ids)
held_chunks = set(chunk_ids[: len(chunk_ids) * 2 // 10])
train = [r for r in rows if r["chunk"] not in held_chunks]; held = [r for r in rows if r["chunk"] in held_chunks]
print("train", len(train), "held", len(held), flush=True)
class P:
    def __init__(s, t): s.text = t
def sents(passages): return [s for _, s in candidates([P(p["text"]) for p in passages])]
emb = bot.embedder.encode
def negatives(r, n_same=4, n_other=3):
    gold_src = next(p["source"] for p in r["passages"] if p["chunk_id"] == r["chunk"])
    out = {}
    for same in (True, False):
        ss = [s for p in r["passages"] if (p["source"] == gold_src) == same for s in sents([p])]
        ss = [s for s in dict.fromkeys(ss) if s != r["answer"] and r["answer"] not in s and s not in r["answer"]]
        if not ss: out[same] = []; continue
        v = emb([r["answer"], r["q"], *ss]); leak = v[2:] @ v[0]; close = v[2:] @ v[1]
        ok = sorted([(c, s) for s, c, lk in zip(ss, close, leak) if lk < trainset.LEAK_SIMILARITY], key=lambda x: -x[0])
        out[same] = [s for _, s in ok][: n_same if same else n_other]
    return out[True] + out[False]
a, b, y = [], [], []
for r in train:
    a.append(r["q"]); b.append(r["answer"]); y.append(1.0)
    for s in negatives(r):
        a.append(r["q"]); b.append(s); y.append(0.0)
print("pairs", len(a), "positives", int(sum(y)), flush=True)
from datasets import Dataset
from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
from ragbot.models import load_plan
location, _, _ = load_plan(bot.settings, "embedder")
epochs = float(sys.argv[1]) if len(sys.argv) > 1 else 3
lr = float(sys.argv[2]) if len(sys.argv) > 2 else 5e-5
ce = CrossEncoder(location, num_labels=1, device="cpu", max_length=128)
args = CrossEncoderTrainingArguments(output_dir=str(W / "ce-ckpt"), num_train_epochs=epochs, learning_rate=lr,
    per_device_train_batch_size=32, warmup_ratio=0.1, save_strategy="no", logging_steps=50, seed=0, report_to=[])
t = time.time()
pos_weight = (len(y) - sum(y)) / sum(y)
import torch
CrossEncoderTrainer(model=ce, args=args, loss=BinaryCrossEntropyLoss(ce, pos_weight=torch.tensor(pos_weight)),
    train_dataset=Dataset.from_dict({"sentence1": a, "sentence2": b, "label": y})).train()
print("trained", round(time.time() - t), "s", flush=True)
def score(q, ss): return ce.predict([(q, s) for s in ss], batch_size=64, show_progress_bar=False) if ss else np.zeros(0)
# synthetic held-out: with answer sentence / sentence withheld (rest of its chunk kept) / chunk withheld
syn_s, syn_y, syn_kind = [], [], []
for r in held:
    ss = sents(r["passages"][:3]) if any(p["chunk_id"] == r["chunk"] for p in r["passages"][:3]) else sents(r["passages"][:3]) + [r["answer"]]
    if r["answer"] not in ss: ss = ss + [r["answer"]]
    syn_s.append(float(score(r["q"], ss).max())); syn_y.append(True); syn_kind.append("answerable")
    withheld = [s for s in ss if s != r["answer"] and r["answer"] not in s and s not in r["answer"]]
    if withheld:
        syn_s.append(float(score(r["q"], withheld).max())); syn_y.append(False); syn_kind.append("sentence withheld")
syn_s, syn_y = np.array(syn_s), np.array(syn_y)
thr = float(np.quantile(syn_s[syn_y], 0.05))
print("synthetic held-out AUC", round(roc_auc_score(syn_y, syn_s), 3), "thr@5%", round(thr, 3),
      "sentence-withheld refused", round(float(np.mean(syn_s[~syn_y] < thr)), 3), flush=True)
dev = [json.loads(l) for f in sorted((ROOT / "tests/data").glob("corpus_qa*.jsonl")) for l in open(f)]
queries = [bot.standalone_query([r["previous"]], r["question"]) if r.get("previous") else r["question"] for r in dev]
shown = bot.batch_search(queries)
best, picked = [], []
for q, ps in zip(queries, shown):
    ss = [s for _, s in candidates(ps)]
    v = score(q, ss)
    best.append(float(v.max()) if len(v) else -99); picked.append(ss[int(v.argmax())] if len(v) else "")
best = np.array(best); ans = np.array([r["answerable"] for r in dev]); near = np.array(["near miss" in (r.get("category") or "") for r in dev])
pairs = ans | near
t10 = np.quantile(best[ans], 0.10)
rl = [max(rouge_l(p, x) for x in r["answers"]) for p, r in zip(picked, dev) if r["answerable"] and r["answers"]]
print(f"dev AUC {roc_auc_score(ans, best):.3f} vs near {roc_auc_score(ans[pairs], best[pairs]):.3f} ceiling near refused@10% {np.mean(best[near] < t10):.3f}")
print(f"dev with synthetic threshold: answerable refused {np.mean(best[ans] < thr):.3f} near refused {np.mean(best[near] < thr):.3f} unanswerable refused {np.mean(best[~ans] < thr):.3f}")
print(f"dev ROUGE-L of picked {np.mean(rl):.3f}")
json.dump({"best": best.tolist(), "ans": ans.tolist(), "near": near.tolist()}, open(W / f"ce_{epochs}_{lr}.json", "w"))
ce.save(str(W / f"ce-{epochs}-{lr}"))
