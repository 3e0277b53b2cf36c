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
    # Word rules 2 also drop prepositions and vague nouns; a check fit with rules 1 keeps them.
    asked = "What kind of labels are used during training?"
    assert answerability.content_words(asked) == {"label", "traini"}
    assert answerability.content_words(asked, word_rules=1) == {"kind", "label", "during", "traini"}


def test_features_on_real_text(embedder):
    passages = ["Mode collapse is when a GAN's generator produces only a few kinds of output.",
                "Diffusion models learn to reverse a gradual noising process."]
    covered = answerability.features("What is mode collapse in a GAN?", passages, embedder)
    missing = answerability.features("How many attention heads does SmolLM2 use?", passages, embedder)
    assert covered["coverage"] == 1.0 and missing["coverage"] == 0.0
    assert covered["closeness"] > 0.6 > missing["closeness"]
    # Every content word of the first is in the passages; "heads" and "SmolLM2" are nowhere near.
    assert covered["weakest_word"] == 1.0 and missing["weakest_word"] < 0.6
    assert answerability.features("anything", [], embedder) == {name: 0.0 for name in answerability.KNOWN_FEATURES}


def test_weakest_word_gives_a_paraphrase_credit_that_word_coverage_does_not(embedder):
    """'come from' is not in the passage, but its tokens sit close to 'origin' and 'coined'."""
    passage = ["The word deepfake was coined in 2017: its origin is a Reddit user's name, a blend of "
               "deep learning and fake."]
    paraphrase = answerability.features("Where does the word deepfake come from?", passage, embedder)
    near_miss = answerability.features("Which country has the strictest deepfake laws?", passage, embedder)
    assert paraphrase["coverage"] < 1.0
    assert paraphrase["weakest_word"] > near_miss["weakest_word"] + 0.1


def _rows(n: int, seed: int = 0) -> tuple[list[dict], list[bool]]:
    """Answerable rows sit close and cover their weakest word well; unanswerable ones less so."""
    rng = random.Random(seed)
    rows, labels = [], []
    for i in range(n):
        unanswerable = i % 3 != 0
        weakest = min(1.0, max(0.0, rng.gauss(0.45 if unanswerable else 0.85, 0.15)))
        closeness = rng.gauss(0.45 if unanswerable else 0.6, 0.1)
        rows.append({"closeness": closeness, "weakest_word": weakest, "coverage": rng.random()})
        labels.append(unanswerable)
    return rows, labels


def _row(closeness: float, weakest: float) -> dict:
    return {"closeness": closeness, "weakest_word": weakest}


def test_fit_separates_and_bounds_false_refusals():
    rows, labels = _rows(300)
    check = answerability.fit(rows, labels, false_refusal=0.05)
    report = check.fit_report
    assert report["auc"] > 0.9
    assert report["n_answerable"] == 100 and report["n_unanswerable"] == 200
    assert report["refusal_rate_answerable"] <= 0.05 + 1 / 100
    assert report["refusal_rate_unanswerable"] > 0.5
    assert check.features == list(answerability.FEATURES)
    assert all(w < 0 for w in check.weights)  # closer passages, better covered words: less likely missing
    assert check.lacks_answer(_row(0.3, 0.1)) and not check.lacks_answer(_row(0.7, 1.0))
    # A stricter bound refuses fewer of either kind.
    strict = answerability.fit(rows, labels, false_refusal=0.01)
    assert strict.threshold >= check.threshold
    assert strict.fit_report["refusal_rate_unanswerable"] <= report["refusal_rate_unanswerable"]
    # Refusing none of them puts the threshold at their highest probability.
    none = answerability.fit(rows, labels, false_refusal=0.0)
    assert none.fit_report["refusal_rate_answerable"] == 0.0
    assert none.threshold == pytest.approx(max(none.probability(r) for r, u in zip(rows, labels) if not u))


def test_fit_needs_both_kinds():
    rows, labels = _rows(30)
    with pytest.raises(AnswerabilityError, match="too few questions .* 10 answerable and 0 unanswerable"):
        answerability.fit([r for r, u in zip(rows, labels) if not u], [False] * 10)


def test_stored_form_round_trips_and_bad_forms_name_the_file():
    check = answerability.fit(*_rows(60))
    stored = json.loads(json.dumps(check.to_dict()))  # plain JSON, as in the adapter's metadata
    again = AnswerabilityCheck.from_dict(stored, where="v3/ragbot-adapter.json")
    assert again == check
    assert again.probability(_row(0.5, 0.5)) == check.probability(_row(0.5, 0.5))
    with pytest.raises(AnswerabilityError, match="v3/ragbot-adapter.json: the answerability check was made for other"):
        AnswerabilityCheck.from_dict({**stored, "stem_letters": 4}, where="v3/ragbot-adapter.json")
    with pytest.raises(AnswerabilityError, match="v3/ragbot-adapter.json: malformed"):
        AnswerabilityCheck.from_dict({**stored, "bias": None}, where="v3/ragbot-adapter.json")
    with pytest.raises(AnswerabilityError, match="needs 2 weights"):
        AnswerabilityCheck.from_dict({**stored, "weights": [1.0]}, where="v3/ragbot-adapter.json")
    with pytest.raises(AnswerabilityError, match=r"made for other features \(\['length'\], word rules 2\)"):
        AnswerabilityCheck.from_dict({**stored, "features": ["length"]}, where="v3/ragbot-adapter.json")


def test_a_check_on_the_older_features_still_reads_and_decides():
    """Adapters tuned before weakest_word existed stored a check on coverage and closeness, and
    did not name their word rules (they used rules 1)."""
    rows, labels = _rows(90)
    older = answerability.fit(rows, labels, features=("coverage", "closeness"))
    stored = json.loads(json.dumps(older.to_dict()))
    del stored["word_rules"]
    assert stored["features"] == ["coverage", "closeness"]
    again = AnswerabilityCheck.from_dict(stored, where="v1/ragbot-adapter.json")
    assert again.word_rules == 1
    row = {"coverage": 0.2, "closeness": 0.3, "weakest_word": 0.9}
    assert again.probability(row) == older.probability(row)
    with pytest.raises(AnswerabilityError, match="word rules 7"):
        AnswerabilityCheck.from_dict({**stored, "word_rules": 7}, where="v1/ragbot-adapter.json")


def test_a_check_measures_with_its_own_word_rules(embedder):
    """'during' is a content word under rules 1 (missing from the passage), not under rules 2."""
    passage = ["An optimiser such as Adam nudges every weight a little after each batch of training examples."]
    question = "Which optimiser nudges the weights during training?"
    check = answerability.fit(*_rows(60))
    older = AnswerabilityCheck.from_dict({**check.to_dict(), "word_rules": 1}, where="v1/ragbot-adapter.json")
    assert check.measure(question, passage, embedder)["weakest_word"] == 1.0
    assert older.measure(question, passage, embedder)["weakest_word"] < 1.0
