"""Evidence: the sentences of the shown passages that answer a question, scored and chosen.

Answering starts here. Every passage shown is cut into sentences (`text.prose_sentences`), a
scorer rates how well each sentence answers the question, and the best ones become the answer's
evidence, each citing its passage. The score of the best sentence also decides whether to answer
at all: below the threshold fit by code (answerability.py) the passages are taken not to hold
the answer. Nothing here reads words of a particular language.

The scorer is `EmbeddingScorer`: the cosine between the question's and the sentence's
embeddings, with the shipped sentence embedder; it needs no training. A scorer is anything with
a `name` and `score(question, sentences)`, so a learned one (a cross-encoder trained on the
user's documents) can take its place; a fitted threshold records which scorer it was fit for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .answer import strip_citation_marks
from .text import prose_sentences
from .types import Passage

MIN_WORDS = 3  # shorter pieces (a stray label, "Yes.") are never evidence on their own


@dataclass(frozen=True)
class Evidence:
    n: int  # the number of the passage it comes from, as shown: [n]
    text: str  # the sentence, markup removed
    score: float  # the scorer's rating; higher answers the question better
    position: int = 0  # where it stands among all the passages' sentences, in the order shown


class SentenceScorer(Protocol):
    name: str

    def score(self, question: str, sentences: Sequence[str]) -> np.ndarray: ...


class EmbeddingScorer:
    """Cosine similarity of sentence embeddings (the embedder normalises its vectors)."""

    name = "embedding"

    def __init__(self, embedder):
        self.embedder = embedder

    def score(self, question: str, sentences: Sequence[str]) -> np.ndarray:
        if not sentences:
            return np.zeros(0)
        vectors = self.embedder.encode([question, *sentences])
        return vectors[1:] @ vectors[0]


def candidates(passages: Sequence[Passage]) -> list[tuple[int, str]]:
    """(passage number, sentence) for every sentence of the passages, in the order shown. A
    document's own bracketed numbers ("[2]") are taken out, so that a quote's only citation marks
    are ragbot's; a sentence that overlapping chunks both hold counts once, for the first."""
    found, seen = [], set()
    for n, passage in enumerate(passages, start=1):
        for sentence in prose_sentences(passage.text):
            sentence = " ".join(strip_citation_marks(sentence).split())
            if len(sentence.split()) >= MIN_WORDS and sentence not in seen:
                seen.add(sentence)
                found.append((n, sentence))
    return found


def rank(question: str, passages: Sequence[Passage], scorer: SentenceScorer) -> list[Evidence]:
    """Every sentence of the passages as Evidence, best first."""
    pool = candidates(passages)
    scores = scorer.score(question, [s for _, s in pool])
    ranked = [Evidence(n=n, text=s, score=float(v), position=i) for i, ((n, s), v) in enumerate(zip(pool, scores))]
    ranked.sort(key=lambda e: -e.score)
    return ranked


def best_score(question: str, passages: Sequence[Passage], scorer: SentenceScorer) -> float | None:
    """The best sentence's score; None when the passages hold no sentence (then nothing answers)."""
    ranked = rank(question, passages, scorer)
    return ranked[0].score if ranked else None


def compose(evidence: Sequence[Evidence]) -> str:
    """The answer text: the chosen sentences in the order they stand in the passages (so a
    definition and the sentence after it read as written), each followed by its citation."""
    return " ".join(_cite(e.text.rstrip(), e.n) for e in sorted(evidence, key=lambda e: e.position))


def _cite(sentence: str, n: int) -> str:
    """The sentence with [n] before its closing mark: "... in 2013 [1]."."""
    body = sentence.rstrip(".!?")
    return f"{body} [{n}]{sentence[len(body):]}"
