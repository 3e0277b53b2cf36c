"""Do the passages shown hold the answer? A small calibrated check that `ragbot tune` learns.

The generator alone does not learn this at the size and budget ragbot tunes on: after SFT, the
probability that a reply starts with the refusal separates answerable from unanswerable prompts
no better than chance on hand-written questions (docs/benchmarks.md). The check below does, so a
tuned model decides *whether* to answer with it, and the adapter decides *how*.

Two features of a question and the passages shown:
- coverage: the share of the question's content words that occur in the passages. Words are
  compared without a plural "s" and on their first STEM_LETTERS letters, a crude stemmer
  ("GANs" matches "GAN", "reduced" matches "reduce").
  A question about something the documents never mention ("How many attention heads...")
  leaves words uncovered.
- closeness: the highest cosine between the question's embedding and a passage's.

A logistic regression on the two (standardised) gives the probability that the answer is
missing. It is fit during tuning on the training split's questions, each shown three ways: with
its gold chunk (answerable), with only the gold chunk withheld, and with its whole document
withheld (unanswerable). The threshold is set on the answerable training questions so that at
most `false_refusal` of them would be refused: refusing a question the documents do answer is
the costlier mistake, and questions made from a chunk reuse its words more than users do.
Everything is stored as plain JSON in the adapter's metadata.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import RagbotError
from .trainset import plain

FEATURES = ("coverage", "closeness")
STEM_LETTERS = 6
FALSE_REFUSAL = 0.02  # the share of answerable training questions the threshold may refuse
MIN_EACH = 5  # answerable and unanswerable training questions each, to fit at all
L2 = 1.0  # ridge penalty on the (standardised) weights

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset("""
a an the of in on at to for from by with about and or but is are was were be been being do does did doing
have has had what which who whom whose when where why how that this these those it its they them their there
as into than then so such can could should would may might will shall not no nor any some each every all both
i you he she we me my your our his her us if else also only very more most much many one two use used using
document documents say says said according tell describe explain
""".split())

Embed = Callable[[list[str]], np.ndarray]  # texts -> unit-length vectors, one row each


class AnswerabilityError(RagbotError):
    pass


def content_words(text: str) -> set[str]:
    """The words that carry a text's meaning, stemmed (see _stem)."""
    return {_stem(w) for w in _WORD.findall(plain(text).lower()) if len(w) > 1 and w not in _STOPWORDS}


def _stem(word: str) -> str:
    """A plural's "s" off ("GANs" meets "GAN"), then the first STEM_LETTERS letters ("reduced"
    meets "reduce")."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word[:STEM_LETTERS]


def features(question: str, passages: Sequence[str], embed: Embed) -> list[float]:
    """[coverage, closeness] of `question` by the passage texts (see the module docstring)."""
    if not passages:
        return [0.0, 0.0]
    asked = content_words(question)
    shown = set().union(*(content_words(p) for p in passages))
    coverage = len(asked & shown) / len(asked) if asked else 1.0
    vectors = embed([question, *passages])
    closeness = float((vectors[1:] @ vectors[0]).max())
    return [coverage, closeness]


@dataclass
class AnswerabilityCheck:
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    threshold: float  # refuse when the probability of a missing answer exceeds this
    fit_report: dict = field(default_factory=dict)  # sizes and rates measured when it was fit

    def probability(self, row: Sequence[float]) -> float:
        """The probability that the answer is missing, from one feature row."""
        z = sum(w * (x - m) / s for w, x, m, s in zip(self.weights, row, self.mean, self.scale)) + self.bias
        return 1.0 / (1.0 + math.exp(-z))

    def lacks_answer(self, row: Sequence[float]) -> bool:
        return self.probability(row) > self.threshold

    def rates(self, rows: Sequence[Sequence[float]], unanswerable: Sequence[bool]) -> dict:
        """How often it would refuse the answerable and the unanswerable ones of `rows`."""
        refused = [self.lacks_answer(r) for r in rows]
        ans = [r for r, u in zip(refused, unanswerable) if not u]
        una = [r for r, u in zip(refused, unanswerable) if u]
        return {"n_answerable": len(ans), "n_unanswerable": len(una),
                "refusal_rate_answerable": sum(ans) / len(ans) if ans else None,
                "refusal_rate_unanswerable": sum(una) / len(una) if una else None}

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), "stem_letters": STEM_LETTERS, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "AnswerabilityCheck":
        """Read a stored check; `where` names its file in the error."""
        if data.get("features") != list(FEATURES) or data.get("stem_letters") != STEM_LETTERS:
            raise AnswerabilityError(f"{where}: the answerability check was made for other features "
                                     f"({data.get('features')}); retune with `ragbot tune --new`")
        try:
            check = cls(mean=[float(x) for x in data["mean"]], scale=[float(x) for x in data["scale"]],
                        weights=[float(x) for x in data["weights"]], bias=float(data["bias"]),
                        threshold=float(data["threshold"]), fit_report=dict(data.get("fit_report") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise AnswerabilityError(f"{where}: malformed answerability check ({exc!r})") from None
        if not (len(check.mean) == len(check.scale) == len(check.weights) == len(FEATURES)):
            raise AnswerabilityError(f"{where}: the answerability check needs {len(FEATURES)} weights")
        return check


def fit(rows: Sequence[Sequence[float]], unanswerable: Sequence[bool],
        false_refusal: float = FALSE_REFUSAL) -> AnswerabilityCheck:
    """Fit the logistic regression (Newton's method, ridge L2) and set the threshold."""
    X = np.asarray(rows, dtype=np.float64)
    y = np.asarray(unanswerable, dtype=np.float64)
    n_una = int(y.sum())
    if min(n_una, len(y) - n_una) < MIN_EACH:
        raise AnswerabilityError(f"too few questions to fit an answerability check: {len(y) - n_una} answerable "
                                 f"and {n_una} unanswerable (needs {MIN_EACH} each)")
    mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-6
    Z = np.hstack([(X - mean) / scale, np.ones((len(X), 1))])
    penalty = np.diag([L2] * X.shape[1] + [0.0])  # the bias is not penalised
    theta = np.zeros(Z.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(Z @ theta)))
        gradient = Z.T @ (p - y) + penalty @ theta
        hessian = Z.T @ (Z * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    check = AnswerabilityCheck(mean=mean.tolist(), scale=scale.tolist(), weights=theta[:-1].tolist(),
                               bias=float(theta[-1]), threshold=0.5)
    answerable_p = np.array([check.probability(r) for r, u in zip(X, y) if not u])
    check.threshold = float(np.quantile(answerable_p, 1.0 - false_refusal))
    probabilities = [check.probability(r) for r in X]
    check.fit_report = {"false_refusal_target": false_refusal, "n": len(y), **check.rates(X, y > 0.5),
                        "auc": auc([p for p, u in zip(probabilities, y) if u], [p for p, u in zip(probabilities, y) if not u])}
    return check


def auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """The chance that a random positive scores above a random negative (ties count half)."""
    if not positive or not negative:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in positive for q in negative)
    return wins / (len(positive) * len(negative))
