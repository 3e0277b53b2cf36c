"""Do the passages shown hold the answer? A small calibrated check that `ragbot tune` learns.

The generator alone does not learn this at the size and budget ragbot tunes on: after SFT, the
probability that a reply starts with the refusal separates answerable from unanswerable prompts
no better than chance on hand-written questions (docs/benchmarks.md). The check below does, so a
tuned model decides *whether* to answer with it, and the adapter decides *how*.

Features of a question and the passages shown (FEATURES are the ones a new check uses):
- closeness: the highest cosine between the question's embedding and a passage's.
- weakest_word: how well the passages cover the question's least covered content word. A word
  found in the passages scores 1; any other word scores the best cosine between its tokens'
  contextual vectors and any passage token's (the embedder's token outputs). A near miss asks
  about one thing the documents never mention ("How many attention heads...") and scores low;
  a paraphrase ("Where does the word come from?" for a passage on its origin) keeps a fair score.
- coverage: the share of the question's content words found in the passages. Checks fit before
  weakest_word existed use it with closeness; it ranked hand-written paraphrases as unanswerable
  (docs/benchmarks.md), because questions made from a chunk reuse its words.
Words are compared without a plural "s" and on their first STEM_LETTERS letters, a crude
stemmer ("GANs" matches "GAN", "reduced" matches "reduce"). Question words, prepositions and
vague nouns ("kind", "way") are not content words. That list is versioned (WORD_RULES), and a
stored check keeps measuring with the list it was fit with.

A logistic regression on the (standardised) features gives the probability that the answer is
missing. It is fit during tuning on the training split's questions, each shown three ways: with
its gold chunk (answerable), with only the gold chunk withheld, and with its whole document
withheld (unanswerable). The threshold is set on the answerable training questions so that at
most `false_refusal` of them would be refused, 1% by default (2% before the answer-type check).
Refusing a question the documents do answer is the costlier mistake; questions made from a chunk
reuse its words more than users do, so hand-written ones score higher; and after generating, the
reply checks (answer.py, answer_type.py) catch many of the near misses the check lets through.
With 0, the check refuses only a question less answerable-looking than every answerable
training question; on the synthetic held-out split that lets most unanswerable ones through
(docs/benchmarks.md §7).
Everything is stored as plain JSON in the adapter's metadata.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from .embed import TokenVectors
from .errors import RagbotError
from .trainset import plain

FEATURES = ("closeness", "weakest_word")
KNOWN_FEATURES = ("coverage", "closeness", "weakest_word")
STEM_LETTERS = 6
FALSE_REFUSAL = 0.01  # the share of answerable training questions the threshold may refuse
MIN_EACH = 5  # answerable and unanswerable training questions each, to fit at all
L2 = 1.0  # ridge penalty on the (standardised) weights

_WORD = re.compile(r"[a-z0-9]+", re.IGNORECASE)
_STOPWORDS_1 = frozenset("""
a an the of in on at to for from by with about and or but is are was were be been being do does did doing
have has had what which who whom whose when where why how that this these those it its they them their there
as into than then so such can could should would may might will shall not no nor any some each every all both
i you he she we me my your our his her us if else also only very more most much many one two use used using
document documents say says said according tell describe explain
""".split())
# Word rules 2 add the prepositions, adverbs and vague nouns that rules 1 missed: a question's
# "during" or "kind of" is no sign that the passages lack its answer.
_STOPWORDS_2 = _STOPWORDS_1 | frozenset("""
during before after above below over under again further once here up down out off through between
against within without until while own same other too just now cannot among along across around upon
via per onto toward towards lot lots thing things way ways kind
""".split())
WORD_RULES = 2  # which stopword list new checks use; a stored check keeps the one it was fit with
_STOPWORDS_BY_RULES = {1: _STOPWORDS_1, 2: _STOPWORDS_2}


class TokenEmbedder(Protocol):
    def encode_tokens(self, texts: Sequence[str]) -> list[TokenVectors]: ...


class AnswerabilityError(RagbotError):
    pass


def content_words(text: str, word_rules: int = WORD_RULES) -> set[str]:
    """The words that carry a text's meaning, stemmed (see _stem)."""
    stopwords = _STOPWORDS_BY_RULES[word_rules]
    return {_stem(w) for w in _WORD.findall(plain(text).lower()) if len(w) > 1 and w not in stopwords}


def _stem(word: str) -> str:
    """A plural's "s" off ("GANs" meets "GAN"), then the first STEM_LETTERS letters ("reduced"
    meets "reduce")."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word[:STEM_LETTERS]


def features(question: str, passages: Sequence[str], embedder: TokenEmbedder,
             word_rules: int = WORD_RULES) -> dict[str, float]:
    """Every known feature of `question` and the passage texts (see the module docstring)."""
    if not passages:
        return {name: 0.0 for name in KNOWN_FEATURES}
    asked = content_words(question, word_rules)
    shown = set().union(*(content_words(p, word_rules) for p in passages))
    asked_vectors, *passage_vectors = embedder.encode_tokens([question, *passages])
    return {"coverage": len(asked & shown) / len(asked) if asked else 1.0,
            "closeness": max(float(p.vector @ asked_vectors.vector) for p in passage_vectors),
            "weakest_word": _weakest_word(question, asked_vectors, passage_vectors, shown,
                                          _STOPWORDS_BY_RULES[word_rules])}


def _weakest_word(question: str, asked: TokenVectors, passages: Sequence[TokenVectors], shown: set[str],
                  stopwords: frozenset[str]) -> float:
    """The lowest score of a content word of the question: 1 when the passages hold the word,
    else the best cosine between one of its tokens and any passage token, taking its worst token."""
    passage_tokens = np.vstack([p.tokens for p in passages])
    closest = (asked.tokens @ passage_tokens.T).max(axis=1) if len(passage_tokens) else np.zeros(len(asked.spans))
    lowest = 1.0
    for match in _WORD.finditer(question):
        word = match.group().lower()
        if len(word) <= 1 or word in stopwords or _stem(word) in shown:
            continue
        inside = [closest[i] for i, (start, end) in enumerate(asked.spans) if start >= match.start() and end <= match.end()]
        if inside:
            lowest = min(lowest, float(min(inside)))
    return lowest


@dataclass
class AnswerabilityCheck:
    features: list[str]  # which of KNOWN_FEATURES it reads, in the order of the weights
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    threshold: float  # refuse when the probability of a missing answer exceeds this
    fit_report: dict = field(default_factory=dict)  # sizes and rates measured when it was fit
    word_rules: int = WORD_RULES  # the stopword list its features were measured with

    def measure(self, question: str, passages: Sequence[str], embedder: TokenEmbedder) -> dict[str, float]:
        """The feature values of a question and its passages, as this check was fit on them."""
        return features(question, passages, embedder, self.word_rules)

    def probability(self, values: Mapping[str, float]) -> float:
        """The probability that the answer is missing, from one question's feature values."""
        z = self.bias + sum(w * (values[name] - m) / s
                            for name, w, m, s in zip(self.features, self.weights, self.mean, self.scale))
        return 1.0 / (1.0 + math.exp(-z))

    def lacks_answer(self, values: Mapping[str, float]) -> bool:
        return self.probability(values) > self.threshold

    def rates(self, rows: Sequence[Mapping[str, float]], unanswerable: Sequence[bool]) -> dict:
        """How often it would refuse the answerable and the unanswerable ones of `rows`."""
        refused = [self.lacks_answer(r) for r in rows]
        ans = [r for r, u in zip(refused, unanswerable) if not u]
        una = [r for r, u in zip(refused, unanswerable) if u]
        return {"n_answerable": len(ans), "n_unanswerable": len(una),
                "refusal_rate_answerable": sum(ans) / len(ans) if ans else None,
                "refusal_rate_unanswerable": sum(una) / len(una) if una else None}

    def to_dict(self) -> dict:
        return {"stem_letters": STEM_LETTERS, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "AnswerabilityCheck":
        """Read a stored check; `where` names its file in the error."""
        names = data.get("features")
        word_rules = data.get("word_rules", 1)  # checks stored before rules 2 do not name theirs
        if (not isinstance(names, list) or not names or not set(names) <= set(KNOWN_FEATURES)
                or data.get("stem_letters") != STEM_LETTERS or word_rules not in _STOPWORDS_BY_RULES):
            raise AnswerabilityError(f"{where}: the answerability check was made for other features "
                                     f"({names}, word rules {word_rules}); retune with `ragbot tune --new`")
        try:
            check = cls(features=list(names), mean=[float(x) for x in data["mean"]],
                        scale=[float(x) for x in data["scale"]], weights=[float(x) for x in data["weights"]],
                        bias=float(data["bias"]), threshold=float(data["threshold"]),
                        fit_report=dict(data.get("fit_report") or {}), word_rules=word_rules)
        except (KeyError, TypeError, ValueError) as exc:
            raise AnswerabilityError(f"{where}: malformed answerability check ({exc!r})") from None
        if not (len(check.mean) == len(check.scale) == len(check.weights) == len(names)):
            raise AnswerabilityError(f"{where}: the answerability check needs {len(names)} weights")
        return check


def fit(rows: Sequence[Mapping[str, float]], unanswerable: Sequence[bool], features: Sequence[str] = FEATURES,
        false_refusal: float = FALSE_REFUSAL) -> AnswerabilityCheck:
    """Fit the logistic regression on `features` of the rows (Newton's method, ridge L2) and set
    the threshold."""
    X = np.asarray([[row[name] for name in features] for row in rows], dtype=np.float64).reshape(len(rows), len(features))
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
    check = AnswerabilityCheck(features=list(features), mean=mean.tolist(), scale=scale.tolist(),
                               weights=theta[:-1].tolist(), bias=float(theta[-1]), threshold=0.5)
    probabilities = [check.probability(row) for row in rows]
    answerable_p = np.array([p for p, u in zip(probabilities, y) if not u])
    check.threshold = float(np.quantile(answerable_p, 1.0 - false_refusal))
    check.fit_report = {"false_refusal_target": false_refusal, "n": len(y), **check.rates(rows, y > 0.5),
                        "auc": auc([p for p, u in zip(probabilities, y) if u], [p for p, u in zip(probabilities, y) if not u])}
    return check


def auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """The chance that a random positive scores above a random negative (ties count half)."""
    if not positive or not negative:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in positive for q in negative)
    return wins / (len(positive) * len(negative))
