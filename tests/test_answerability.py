"""The answerability threshold: fit by code on best-evidence scores, its false-refusal bound, its
stored form, and that a stored check of an older kind is not used."""

from __future__ import annotations

import json
import random

import pytest

from ragbot.answer import answerability
from ragbot.answer.answerability import AnswerabilityCheck, AnswerabilityError


def _scores(n: int, seed: int = 0) -> tuple[list[float], list[bool]]:
    """A third answerable (scores around 0.7), the rest unanswerable (around 0.45)."""
    rng = random.Random(seed)
    scores, answerable = [], []
    for i in range(n):
        ok = i % 3 == 0
        scores.append(rng.gauss(0.7 if ok else 0.45, 0.08))
        answerable.append(ok)
    return scores, answerable


def test_fit_bounds_false_refusals_on_the_training_questions():
    scores, answerable = _scores(300)
    check = answerability.fit(scores, answerable, scorer="embedding", false_refusal=0.05)
    report = check.fit_report
    assert report["auc"] > 0.9
    assert report["n_answerable"] == 100 and report["n_unanswerable"] == 200
    assert report["refusal_rate_answerable"] <= 0.05 + 1 / 100
    assert report["refusal_rate_unanswerable"] > 0.7
    assert check.lacks_answer(0.3) and not check.lacks_answer(0.9)
    # A stricter bound sits lower and refuses fewer of either kind.
    strict = answerability.fit(scores, answerable, scorer="embedding", false_refusal=0.01)
    assert strict.threshold <= check.threshold
    assert strict.fit_report["refusal_rate_unanswerable"] <= report["refusal_rate_unanswerable"]
    # Refusing none of them puts the threshold at the lowest answerable score.
    none = answerability.fit(scores, answerable, scorer="embedding", false_refusal=0.0)
    assert none.fit_report["refusal_rate_answerable"] == 0.0
    assert none.threshold == pytest.approx(min(s for s, a in zip(scores, answerable) if a))


def test_fit_needs_both_kinds():
    scores, answerable = _scores(30)
    with pytest.raises(AnswerabilityError, match="too few questions .* 10 answerable and 0 unanswerable"):
        answerability.fit([s for s, a in zip(scores, answerable) if a], [True] * 10, scorer="embedding")


def test_auc_is_sklearns_and_undefined_for_one_kind():
    assert answerability.auc([0.9, 0.8, 0.2], [True, True, False]) == 1.0
    assert answerability.auc([0.9, 0.2, 0.8], [True, True, False]) == 0.5
    assert answerability.auc([0.9, 0.8], [True, True]) is None


def test_stored_form_round_trips_and_bad_forms_name_the_file():
    check = answerability.fit(*_scores(60), scorer="embedding")
    stored = json.loads(json.dumps(check.to_dict()))  # plain JSON, as in the adapter's metadata
    assert AnswerabilityCheck.from_dict(stored, where="v3/ragbot-adapter.json") == check
    with pytest.raises(AnswerabilityError, match="v3/ragbot-adapter.json: malformed"):
        AnswerabilityCheck.from_dict({**stored, "threshold": None}, where="v3/ragbot-adapter.json")


def test_a_check_of_an_older_kind_is_not_used():
    """Adapters tuned before evidence-first answering stored a logistic check on word features."""
    older = {"features": ["closeness", "weakest_word"], "mean": [0.5, 0.5], "scale": [0.1, 0.1],
             "weights": [-1.0, -1.0], "bias": 0.0, "threshold": 0.6, "word_rules": 2, "stem_letters": 6}
    assert AnswerabilityCheck.from_dict(older, where="v1/ragbot-adapter.json") is None
