"""Exploration behind docs/benchmarks.md §13: which way of scoring a sentence against a question
picks better evidence and separates answerable from unanswerable questions, on the development
sets (tests/data/corpus_qa*.jsonl, 301 rows; never the frozen set). A one-off study kept so its
numbers can be re-made; the shipped comparison is bench_answers.py's extract vs extract-embedding.

    python bench/explore_evidence_scorers.py data 400          # questions written by the generator
    python bench/explore_evidence_scorers.py train 0 2 2e-5    # a bi-encoder tuned on them (optional)
    python bench/explore_evidence_scorers.py eval [cosine maxsim maxsim_idf weakest25 weakest50 PATH...]

Phase data: questions written by the local generator for sentences of the shipped corpus (the
sentence it was written from is the answer), checked as tune checks them.
Phase train: MiniLM fine-tuned with MNRL, anchor question, positive its source sentence, negative
a sentence of the same document among the retrieved passages (not close to the answer).
Phase eval: synthetic held-out (answerable / sentence-withheld / chunk-withheld) and the 301 dev rows.
"""
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
from ragbot import RagBot  # noqa: E402
from ragbot.learn import trainset  # noqa: E402
from ragbot.evaluation.metrics import rouge_l  # noqa: E402
from ragbot.answer.evidence import candidates  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

W = Path(tempfile.gettempdir()) / "ragbot-explore-evidence"
W.mkdir(exist_ok=True)
DATA = W / "data"
phase = sys.argv[1]
N_MODEL = int(sys.argv[2]) if phase == "data" else 0


def bot_():
    bot = RagBot.open(DATA, default_corpus=None)
    if not bot.store.all_chunks():
        bot.ingest([ROOT / "corpus"])
    return bot


if phase == "data":
    bot = bot_()
    chunks = bot.store.all_chunks()
    gen = bot.generator
    source = {}

    def write(sentence):
        prompt = gen.render(trainset.question_writer_messages(sentence)) + "Question:"
        q = gen.generate(prompt, max_new_tokens=32).text
        source[" ".join(q.strip().split("\n")[0].split())] = sentence
        return q

    t = time.time()
    cands = trainset.model_questions(chunks, write, N_MODEL, random.Random(0), None)
    print("written", len(cands), time.time() - t, flush=True)
    src_by_q = {}
    for c in cands:
        for k, s in source.items():
            if c.question in k:
                src_by_q[c.question] = s
    kept = trainset.check_candidates(bot, cands, trainset.CheckReport())
    rows = []
    for c, passages in kept:
        rows.append({"q": c.question, "chunk": c.chunk_id, "answer": src_by_q.get(c.question, c.answer),
                     "best_cos_answer": c.answer,
                     "passages": [{"chunk_id": p.chunk_id, "source": p.source, "text": p.text} for p in passages]})
    (W / "kept.json").write_text(json.dumps(rows))
    print("kept", len(rows), flush=True)
    sys.exit()

rows = json.loads((W / "kept.json").read_text())
rng = random.Random(1)
chunk_ids = sorted({r["chunk"] for r in rows})
rng.shuffle(chunk_ids)
held_chunks = set(chunk_ids[: len(chunk_ids) * 3 // 10])
train = [r for r in rows if r["chunk"] not in held_chunks]
held = [r for r in rows if r["chunk"] in held_chunks]
print("train", len(train), "held", len(held), flush=True)


def sentences_of(passages):
    return [s for _, s in candidates([_P(p["text"]) for p in passages])]


class _P:
    def __init__(self, text):
        self.text = text


def same_doc_negatives(r, embed):
    gold_src = next(p["source"] for p in r["passages"] if p["chunk_id"] == r["chunk"])
    sents = [s for p in r["passages"] if p["source"] == gold_src for s in sentences_of([p])]
    sents = [s for s in dict.fromkeys(sents) if s != r["answer"] and r["answer"] not in s and s not in r["answer"]]
    if not sents:
        return []
    v = embed([r["answer"], r["q"], *sents])
    leak = v[2:] @ v[0]
    closeq = v[2:] @ v[1]
    ok = [(c, s) for s, c, lk in zip(sents, closeq, leak) if lk < trainset.LEAK_SIMILARITY]
    ok.sort(key=lambda x: -x[0])
    return [s for _, s in ok]


if phase == "train":
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    bot = bot_()
    embed = bot.embedder.encode
    a, p, n = [], [], []
    for r in train:
        negs = same_doc_negatives(r, embed)[:3]
        for s in negs:
            a.append(r["q"])
            p.append(r["answer"])
            n.append(s)
    print("triplets", len(a), flush=True)
    from ragbot.models import load_plan
    location, _, _ = load_plan(bot.settings, "embedder")
    model = SentenceTransformer(location, device="cpu")
    epochs = float(sys.argv[3]) if len(sys.argv) > 3 else 2
    lr = float(sys.argv[4]) if len(sys.argv) > 4 else 2e-5
    args = SentenceTransformerTrainingArguments(output_dir=str(W / "ckpt"), num_train_epochs=epochs, learning_rate=lr,
                                                per_device_train_batch_size=16, warmup_ratio=0.1, save_strategy="no",
                                                logging_steps=20, seed=0, report_to=[])
    t = time.time()
    trainer = SentenceTransformerTrainer(model=model, args=args, loss=MultipleNegativesRankingLoss(model),
                                         train_dataset=Dataset.from_dict({"anchor": a, "positive": p, "negative": n}))
    trainer.train()
    print("trained", time.time() - t, flush=True)
    model.save(str(W / f"tuned-{epochs}-{lr}"))
    sys.exit()

# phase eval: scorers
bot = bot_()
from sentence_transformers import SentenceTransformer  # noqa: E402

scorers = {"cosine": lambda q, ss: (lambda v: v[1:] @ v[0])(bot.embedder.encode([q, *ss]))}
for path in [a for a in sys.argv[2:] if "/" in a]:
    m = SentenceTransformer(path)

    def sc(q, ss, m=m):
        v = m.encode([q, *ss], normalize_embeddings=True, show_progress_bar=False)
        return v[1:] @ v[0]
    scorers[Path(path).name] = sc


def maxsim(q, ss):
    tv = bot.embedder.encode_tokens([q, *ss])
    qt = tv[0].tokens
    return np.array([float((qt @ t.tokens.T).max(axis=1).mean()) for t in tv[1:]])


scorers["maxsim"] = maxsim

_tok = bot.embedder.tokenizer
_chunks = [c.text for c in bot.store.all_chunks()]
_df = {}
for ids in _tok(_chunks, truncation=False)["input_ids"]:
    for i in set(ids):
        _df[i] = _df.get(i, 0) + 1
_N = len(_chunks)


def _qweights(q):
    enc = _tok(q, truncation=True, max_length=256, return_offsets_mapping=True)
    ids = [i for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]) if b > a]
    return np.array([np.log((_N + 1) / (_df.get(i, 0) + 0.5)) for i in ids])


def maxsim_idf(q, ss):
    tv = bot.embedder.encode_tokens([q, *ss])
    qt = tv[0].tokens
    w = _qweights(q)[: len(qt)]
    w = w / w.sum()
    return np.array([float((qt @ t.tokens.T).max(axis=1) @ w) for t in tv[1:]])


scorers["maxsim_idf"] = maxsim_idf


def _wquantile(values, weights, q):
    order = np.argsort(values)
    cum = np.cumsum(weights[order]) / weights.sum()
    return float(values[order][min(int(np.searchsorted(cum, q)), len(values) - 1)])


def weakest(q, ss, share=0.25):
    tv = bot.embedder.encode_tokens([q, *ss])
    qt = tv[0].tokens
    w = _qweights(q)[: len(qt)]
    return np.array([_wquantile((qt @ t.tokens.T).max(axis=1), w, share) for t in tv[1:]])


scorers["weakest25"] = weakest
scorers["weakest50"] = lambda q, ss: weakest(q, ss, 0.5)
keep = set(sys.argv[2:]) if len(sys.argv) > 2 else set(scorers)
scorers = {k: v for k, v in scorers.items() if k in keep}

# the calibration examples, made as scripts/calibrate_evidence.py makes them (structure + model questions)
from ragbot.answer import answerability  # noqa: E402
from ragbot.learn.tune import best_evidence  # noqa: E402
cands = trainset.structural_questions(bot.store.all_chunks()) + [trainset.Candidate(r["q"], r["chunk"], "model") for r in rows]
kept_all = trainset.check_candidates(bot, cands, trainset.CheckReport())
examples = trainset.answerability_examples(bot, kept_all, random.Random(1))
print("calibration examples", len(examples), flush=True)


class _Scorer:
    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def score(self, q, ss):
        return self.fn(q, list(ss)) if ss else np.zeros(0)

dev = []
for f in sorted((ROOT / "tests" / "data").glob("corpus_qa*.jsonl")):
    for line in open(f):
        dev.append(json.loads(line))
print("dev rows", len(dev), flush=True)
queries = []
for row in dev:
    q = row["question"]
    if row.get("previous"):
        q = bot.standalone_query([row["previous"]], q)
    queries.append(q)
dev_passages = bot.batch_search(queries)
dev_sents = [[s for _, s in candidates(ps)] for ps in dev_passages]

out = {}
per = {}
for name, sc in scorers.items():
    t = time.time()
    sb = np.array([best_evidence(ex.question, ex.passages, _Scorer(name, sc)) for ex in examples])
    lab = np.array([ex.answerable for ex in examples])
    check = answerability.fit(sb, lab, scorer=name)
    thr = check.threshold
    res = {"syn": check.fit_report}
    best, picked = [], []
    for q, ss in zip(queries, dev_sents):
        if not ss:
            best.append(-1.0)
            picked.append("")
            continue
        s = sc(q, ss)
        best.append(float(s.max()))
        picked.append(ss[int(s.argmax())])
    best = np.array(best)
    ans = np.array([bool(r["answerable"]) for r in dev])
    # also the threshold that refuses 8.9% of answerable dev (same answerable refusal as cosine at 0.48)
    res["dev_auc"] = roc_auc_score(ans, best)
    res["dev_refused_answerable"] = float(np.mean(best[ans] < thr))
    res["dev_refused_unanswerable"] = float(np.mean(best[~ans] < thr))
    t89 = float(np.quantile(best[ans], 0.089))
    res["dev_unans_refused_at_8.9pct_answerable"] = float(np.mean(best[~ans] < t89))
    rl = [max(rouge_l(p, a) for a in r["answers"]) if r["answerable"] and r["answers"] else None
          for p, r in zip(picked, dev)]
    res["dev_rouge_picked_answerable"] = float(np.mean([x for x in rl if x is not None]))
    res["seconds"] = time.time() - t
    per[name] = (np.array([x if x is not None else np.nan for x in rl]), best, ans)
    out[name] = res
    print(name, json.dumps(res), flush=True)
(W / "eval.json").write_text(json.dumps(out, indent=1))

rs = np.random.default_rng(0)
base = per.get("cosine")
for name, (rl, best, ans) in per.items():
    if base is None or name == "cosine":
        continue
    d = (rl - base[0])[~np.isnan(rl)]
    boots = [rs.choice(d, len(d)).mean() for _ in range(2000)]
    print(name, "- cosine ROUGE picked", round(d.mean(), 3), np.round(np.quantile(boots, [0.025, 0.975]), 3))
