"""Evidence: the sentences of the shown passages that answer a question, scored and chosen.

Answering starts here. Every passage shown is cut into sentences (`text.prose_sentences`), a
scorer rates how well each sentence answers the question, and the best ones become the answer's
evidence, each citing its passage. The score of the best sentence also decides whether to answer
at all: below the threshold fit by code (answerability.py) the passages are taken not to hold
the answer. Nothing here reads words of a particular language.

Two scorers, both from the shipped sentence embedder, needing no training:
- `EmbeddingScorer` ("embedding"): the cosine between question and sentence embeddings. Its best
  score decides whether to answer at all (the threshold fit by answerability.py).
- `CoverageScorer` ("coverage"): how well the sentence covers the part of the question it covers
  worst. Each question token is matched to its closest sentence token (the embedder's contextual
  token vectors), and the score is the similarity below which a quarter of the question lies,
  each token weighted by its IDF in the user's own chunks (the BM25 index's document
  frequencies). A sentence on the question's subject that lacks what is asked ("how many
  layers") leaves the rare asked-for tokens unmatched, which a whole-sentence cosine averages
  away. It ranks the sentences to quote by default (the `evidence_ranking` setting): on the
  development sets it picked better sentences than the cosine (docs/benchmarks.md §13).
A scorer is anything with a `name` and `score(question, sentences)`; a fitted threshold records
which scorer it was fit for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ragbot.answer.generation import strip_citation_marks
from ragbot.text import prose_sentences
from ragbot.types import Passage

MIN_WORDS = 3  # shorter pieces (a stray label, "Yes.") are never evidence on their own
# The share of the question's (IDF-weighted) tokens a coverage score looks at: its worst quarter.
# Chosen among a quarter, a half and the weighted mean on the development sets (§13).
WORST_SHARE = 0.25


@dataclass(frozen=True)
class Evidence:
    n: int  # the passage it comes from, by its number in search order (an extract renumbers: cited_first)
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


class CoverageScorer:
    """The question's worst-covered quarter: for each question token its best cosine with any
    token of the sentence, and the IDF-weighted 25% quantile of those. `document_frequencies`
    (terms -> counts, and the number of chunks) gives the IDF from the user's chunks; tokens that
    are not terms (punctuation, special tokens) weigh nothing."""

    name = "coverage"

    def __init__(self, embedder, document_frequencies: Callable[[Sequence[str]], tuple[np.ndarray, int]]):
        self.embedder = embedder
        self.document_frequencies = document_frequencies

    def score(self, question: str, sentences: Sequence[str]) -> np.ndarray:
        return self.score_with_cosine(question, sentences)[0]

    def score_with_cosine(self, question: str, sentences: Sequence[str],
                          also: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
        """The coverage scores, and the cosines of the sentence embeddings (EmbeddingScorer's
        scores) from the same pass of the embedder. With `also`, the coverage scores are the
        mean over `question` and those questions (the cosines stay `question`'s own): their
        tokens come from a pass of their own, so the cosines are the very ones `score` gives."""
        if not sentences:
            return np.zeros(0), np.zeros(0)
        asked, *told = self.embedder.encode_tokens([question, *sentences])
        coverage = self._coverage(asked, told)
        for other in self.embedder.encode_tokens(list(also)) if also else ():
            coverage += self._coverage(other, told)
        coverage /= 1 + len(also)
        # As EmbeddingScorer computes it (one matrix-vector product), so the cosines are its own.
        return coverage, np.stack([s.vector for s in told]) @ asked.vector

    def _coverage(self, asked, told) -> np.ndarray:
        weights = self._weights(asked.pieces)
        return np.array([worst_share((asked.tokens @ s.tokens.T).max(axis=1), weights, WORST_SHARE)
                         if len(s.tokens) else -1.0 for s in told])

    def _weights(self, pieces: Sequence[str]) -> np.ndarray:
        frequencies, n_chunks = self.document_frequencies(pieces)
        is_term = np.array([any(ch.isalnum() for ch in p) for p in pieces], dtype=bool)
        weights = np.log((n_chunks + 1) / (np.asarray(frequencies, dtype=np.float64) + 0.5)) * is_term
        # A question of punctuation only still gets a score: every token alike.
        return weights if weights.sum() > 0 else np.ones(len(pieces))


def worst_share(values: np.ndarray, weights: np.ndarray, share: float) -> float:
    """The weighted `share` quantile of `values`: the value below which `share` of the weight lies."""
    if not len(values):
        return -1.0
    order = np.argsort(values, kind="stable")
    reached = np.cumsum(weights[order]) / weights.sum()
    return float(values[order][min(int(np.searchsorted(reached, share)), len(values) - 1)])


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
    return _ranked(pool, scorer.score(question, [s for _, s in pool]))


def rank_both(question: str, passages: Sequence[Passage], ranker: SentenceScorer,
              judge: SentenceScorer, turn: str | None = None) -> tuple[list[Evidence], list[Evidence]]:
    """The sentences ranked by `ranker` (which to quote) and by `judge` (whether to answer at
    all). When the ranker is coverage and the judge the cosine of the same embedder, both come
    from one pass of it (the second pass cost about 70 ms an answer).

    `turn` is the question as asked when `question` is a follow-up searched together with the
    question before it ("Who introduced it?" after "What is RAG?"). The ranker then ranks by the
    mean of its scores for both: the joined question alone favours the sentence that answered
    the first question, the turn alone loses what "it" names. On 50 development follow-ups the
    mean quoted better sentences than the joined question (docs/benchmarks.md §15). The judge
    reads `question` alone, as its threshold was fit."""
    pool = candidates(passages)
    sentences = [s for _, s in pool]
    also = [turn] if turn and turn != question else []
    if ranker is judge and not also:
        ranked = _ranked(pool, ranker.score(question, sentences))
        return ranked, ranked
    if isinstance(ranker, CoverageScorer) and isinstance(judge, EmbeddingScorer) and ranker.embedder is judge.embedder:
        by_ranker, by_judge = ranker.score_with_cosine(question, sentences, also)
    else:
        by_judge = judge.score(question, sentences)
        by_ranker = by_judge if ranker is judge else ranker.score(question, sentences)
        by_ranker = np.mean([by_ranker, *(ranker.score(q, sentences) for q in also)], axis=0)
    return _ranked(pool, by_ranker), _ranked(pool, by_judge)


def _ranked(pool: Sequence[tuple[int, str]], scores: np.ndarray) -> list[Evidence]:
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
