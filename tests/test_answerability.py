"""The answerability check: its features on real text and the real embedder, fitting, the
threshold's false-refusal bound, and its stored form."""

from __future__ import annotations

import json
import random

import pytest

from ragbot import answerability
from ragbot.answerability import AnswerabilityCheck, AnswerabilityError


def test_content_words_drop_question_words_and_stem():
    words = answerability.content_words("How can **hallucinations** be reduced in the passages?")
    assert words == {"halluc", "reduce", "passag"}
    assert answerability.content_words("reduce") <= words  # "reduced" and "reduce" meet


def test_features_on_real_text(embedder):
    passages = ["Mode collapse is when a GAN's generator produces only a few kinds of output.",
                "Diffusion models learn to reverse a gradual noising process."]
    covered = answerability.features("What is mode collapse in a GAN?", passages, embedder.encode)
    missing = answerability.features("How many attention heads does SmolLM2 use?", passages, embedder.encode)
    assert covered[0] == 1.0 and missing[0] == 0.0
    assert covered[1] > 0.6 > missing[1]
    assert answerability.features("anything", [], embedder.encode) == [0.0, 0.0]


def _rows(n: int, seed: int = 0) -> tuple[list[list[float]], list[bool]]:
    """Answerable rows cover most question words and sit close; unanswerable ones less so."""
    rng = random.Random(seed)
    rows, labels = [], []
    for i in range(n):
        unanswerable = i % 3 != 0
        coverage = min(1.0, max(0.0, rng.gauss(0.5 if unanswerable else 0.9, 0.15)))
        closeness = rng.gauss(0.45 if unanswerable else 0.6, 0.1)
        rows.append([coverage, closeness])
        labels.append(unanswerable)
    return rows, labels


def test_fit_separates_and_bounds_false_refusals():
    rows, labels = _rows(300)
    check = answerability.fit(rows, labels, false_refusal=0.05)
    report = check.fit_report
    assert report["auc"] > 0.9
    assert report["n_answerable"] == 100 and report["n_unanswerable"] == 200
    assert report["refusal_rate_answerable"] <= 0.05 + 1 / 100
    assert report["refusal_rate_unanswerable"] > 0.5
    assert all(w < 0 for w in check.weights)  # more coverage, closer passages: less likely missing
    assert check.lacks_answer([0.1, 0.3]) and not check.lacks_answer([1.0, 0.7])
    # A stricter bound refuses fewer of either kind.
    strict = answerability.fit(rows, labels, false_refusal=0.01)
    assert strict.threshold >= check.threshold
    assert strict.fit_report["refusal_rate_unanswerable"] <= report["refusal_rate_unanswerable"]


def test_fit_needs_both_kinds():
    rows, labels = _rows(30)
    with pytest.raises(AnswerabilityError, match="too few questions .* 10 answerable and 0 unanswerable"):
        answerability.fit([r for r, u in zip(rows, labels) if not u], [False] * 10)


def test_stored_form_round_trips_and_bad_forms_name_the_file():
    check = answerability.fit(*_rows(60))
    stored = json.loads(json.dumps(check.to_dict()))  # plain JSON, as in the adapter's metadata
    again = AnswerabilityCheck.from_dict(stored, where="v3/ragbot-adapter.json")
    assert again == check
    assert again.probability([0.5, 0.5]) == check.probability([0.5, 0.5])
    with pytest.raises(AnswerabilityError, match="v3/ragbot-adapter.json: the answerability check was made for other"):
        AnswerabilityCheck.from_dict({**stored, "stem_letters": 4}, where="v3/ragbot-adapter.json")
    with pytest.raises(AnswerabilityError, match="v3/ragbot-adapter.json: malformed"):
        AnswerabilityCheck.from_dict({**stored, "bias": None}, where="v3/ragbot-adapter.json")
    with pytest.raises(AnswerabilityError, match="needs 2 weights"):
        AnswerabilityCheck.from_dict({**stored, "weights": [1.0]}, where="v3/ragbot-adapter.json")
