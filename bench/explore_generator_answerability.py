"""Exploration behind docs/benchmarks.md §8 ("the generator's own probability"): can the shipped
generator (SmolLM2-135M-Instruct) tell whether a sentence answers a question, better than the
embedder's scores? On the development sets only (tests/data/corpus_qa*.jsonl, 301 rows; never the
frozen set). A one-off study kept so its numbers can be re-made.

    python bench/explore_generator_answerability.py     # about 4 minutes on 2 cores

For each question: hybrid retrieval over the shipped corpus, the shown passages' sentences ranked
by the shipped ranking (coverage), and for the best three sentences:
- pmi_best / pmi_top: how much the sentence raises the generator's probability of the question
  (mean log-probability of the question's tokens after "Text: <sentence>\\nQuestion about the
  text:", minus after "Question:"), the best of the three / the first;
- logp_best: the conditional log-probability alone;
- yes_no: the generator asked in its chat template whether the text answers the question, the
  log-odds of "Yes" against "No" as its first token (best sentence only);
and the embedder's two scores: the best sentence's cosine (what refuses today) and its coverage.
Printed: each score's AUC (answerable against unanswerable, and against the near misses alone),
and the share of near misses refused when each score's threshold refuses 10% of the answerable
questions, that threshold fit on these same rows: an upper bound for any threshold fit by code.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import searched_development_sets  # noqa: E402


def main() -> None:
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    from ragbot.answer.evidence import EmbeddingScorer, rank
    from ragbot.generators.transformers_backend import TransformersGenerator

    # The ranking shipped when this was measured (the default is coverage-questions since 2026-12-03).
    bot, dev, queries, shown = searched_development_sets(Path(tempfile.mkdtemp(prefix="ragbot-explore-generator-")),
                                                         evidence_ranking="coverage")
    cosine = EmbeddingScorer(bot.embedder)
    generator = TransformersGenerator.load(bot.settings)
    model, tokenizer = generator.model, generator.tokenizer
    model.eval()

    @torch.no_grad()
    def mean_logp(prefix: str, text: str) -> float:
        head, tail = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (prefix, text))
        logits = model(torch.tensor([head + tail])).logits[0].float().log_softmax(-1)
        return float(logits[len(head) - 1: len(head) - 1 + len(tail)].gather(1, torch.tensor(tail)[:, None]).mean())

    @torch.no_grad()
    def yes_no(sentence: str, question: str) -> float:
        prompt = generator.render([{"role": "user", "content": f"Text: {sentence}\n\nQuestion: {question}\n\n"
                                    "Does the text answer the question? Reply Yes or No."}])
        logits = model(torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])).logits[0, -1]
        yes, no = (tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("Yes", "No"))
        return float(logits[yes] - logits[no])

    rows = []
    for row, query, passages in zip(dev, queries, shown):
        best = rank(query, passages, bot.evidence_ranker)[:3]
        if not best:
            continue
        alone = mean_logp("Question:", " " + query)
        given = [mean_logp(f"Text: {e.text}\nQuestion about the text:", " " + query) for e in best]
        rows.append({"answerable": bool(row["answerable"]), "near_miss": "near miss" in (row.get("category") or ""),
                     "cosine": float(max(e.score for e in rank(query, passages, cosine)[:1])),
                     "coverage": best[0].score, "pmi_best": max(given) - alone, "pmi_top": given[0] - alone,
                     "logp_best": max(given), "yes_no": yes_no(best[0].text, query)})
    answerable = np.array([r["answerable"] for r in rows])
    near = np.array([r["near_miss"] for r in rows])
    pairs = answerable | near
    print(f"{len(rows)} questions: {answerable.sum()} answerable, {near.sum()} near misses")
    scores = {name: np.array([r[name] for r in rows]) for name in rows[0] if name not in ("answerable", "near_miss")}
    features = np.column_stack([scores["cosine"], scores["coverage"]])
    scores["cosine + coverage (logistic, 5-fold)"] = cross_val_predict(
        LogisticRegression(), features, answerable, cv=5, method="predict_proba")[:, 1]
    for name, values in scores.items():
        threshold = np.quantile(values[answerable], 0.10)
        print(f"{name:40s} AUC {roc_auc_score(answerable, values):.3f}  vs near misses "
              f"{roc_auc_score(answerable[pairs], values[pairs]):.3f}  near misses refused at 10% answerable "
              f"refused {np.mean(values[near] < threshold):.3f}")


if __name__ == "__main__":
    main()
