"""What the user taught: a question asked again is answered as the user corrected it.

A correction is the answer a user typed under one of ragbot's answers in the chat (or
`ragbot feedback --correction`); a thumbs-down without one says only that the answer was wrong.
Both are stored with the answer they judge (feedback.py), and from then on, for the same user
(each user's corrections are theirs: with a login on the chat page, one user's correction never
answers another), and for questions retrieved by ragbot (an evaluation on given passages
measures the model, not the memory):
- a question that asks what a corrected question asked is answered with the correction, marked
  as the user's (`Answer.correction_of` names the answer it corrected); a correction that is the
  refusal sentence makes ragbot refuse;
- for a question that asks what a thumbs-down answer's question asked, the rejected sentence is
  not quoted again: the next-best evidence answers, or ragbot refuses when none is good enough.
Feedback on an answer that a correction made takes the correction back when the question was
the corrected one (its words, searched the same way); otherwise it is that question's own entry
and the correction keeps answering the question it was saved for (`CorrectionMemory.build`).
Corrections take effect at once, with no tuning; `ragbot tune` also trains the generator on them.

"Asks what it asked" is decided by the cosine of the two questions' embeddings reaching
`match_threshold`. A question searched joined with the one before it is compared twice: its
retrieval query with the corrected turn's (so a follow-up is compared as it was searched), and
the user's own words of the two turns. A follow-up's query holds the previous question too
("What is RAG? Who introduced it?"), so it alone would hand a correction about who introduced
RAG to the next "What is RAG?"; the turns ("Who introduced it?" against "What is RAG?") keep
them apart. A question searched on its own words (a conversation's first, or a later turn
searched alone) is compared with the corrected turn's own words alone: a turn searched joined
with an unrelated question before it ("When was the transformer introduced? Which company made
StyleGAN?", which a data dir with few logged questions cannot tell from a follow-up) was
corrected for what its words ask (helper-81's drive; docs/benchmarks.md §42). The threshold
is fit by code, not chosen: questions about different documents of the user's own corpus ask
different things, so `fit` sets it at the `1 - false_match` quantile of each such question's
closest cosine to a question about another document. A question unrelated to every correction
then takes one over at most about that rate. Two different questions about the same subject can
still be that close, which is why the answer says whose correction it shows and of which question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ragbot.errors import RagbotError

# How every interface names an answer that is a correction: it was read as a quote from the
# documents, and called "your correction" in browsers that shared it.
SAVED_CORRECTION = "a saved correction, not a quote from the documents"
FALSE_MATCH = 0.05  # share of questions about other documents allowed to reach the threshold
MIN_DOCUMENTS = 2
MIN_QUESTIONS = 10


class CorrectionsError(RagbotError):
    pass


@dataclass(frozen=True)
class Correction:
    answer_id: str  # the answer the user judged
    question: str  # its retrieval query
    answer: str  # what ragbot answered
    correction: str | None  # what the user says the answer is (None: a thumbs-down alone)
    at: float  # when the feedback was last changed
    turn: str = ""  # the user's own words, when a follow-up was searched with the question before it

    @property
    def asked(self) -> str:
        """The user's own words of the judged turn."""
        return self.turn or self.question

    @property
    def key(self) -> tuple[str, str]:
        return feedback_key(self.question, self.asked)


def question_words(question: str) -> str:
    """A question's words, but for case and spacing."""
    return " ".join(question.split()).casefold()


def feedback_key(query: str, asked: str) -> tuple[str, str]:
    """What makes two judged turns one question, whose newest feedback counts: the same search
    query and the same words of the user's, but for case and spacing."""
    return question_words(query), question_words(asked)


@dataclass(frozen=True)
class Match:
    correction: Correction
    similarity: float


@dataclass
class MatchThreshold:
    threshold: float
    fit_report: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": "question_cosine", "threshold": self.threshold, "fit_report": self.fit_report}

    @classmethod
    def from_dict(cls, data: dict | None, where: str) -> "MatchThreshold | None":
        if not data:
            return None
        if data.get("kind") != "question_cosine":
            return None
        try:
            return cls(threshold=float(data["threshold"]), fit_report=dict(data.get("fit_report") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorrectionsError(f"{where}: malformed correction match threshold ({exc!r})") from None


def fit(vectors: np.ndarray, documents: Sequence[str], false_match: float = FALSE_MATCH) -> MatchThreshold:
    """The match threshold from questions (`vectors`, normalised) about known `documents`."""
    documents = np.asarray(list(documents))
    if len(documents) < MIN_QUESTIONS or len(set(documents.tolist())) < MIN_DOCUMENTS:
        raise CorrectionsError(f"too few questions to fit the correction match threshold: {len(documents)} "
                               f"questions about {len(set(documents.tolist()))} documents (needs {MIN_QUESTIONS} "
                               f"about {MIN_DOCUMENTS} or more)")
    similarity = np.asarray(vectors, dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T
    similarity[documents[:, None] == documents[None, :]] = -np.inf
    closest = similarity.max(axis=1)
    threshold = float(np.quantile(closest, 1 - false_match))
    return MatchThreshold(threshold, {"false_match_target": false_match, "questions": int(len(documents)),
                                      "documents": len(set(documents.tolist())),
                                      "closest_other_document_median": float(np.median(closest))})


def fit_on_questions(bot, questions: Sequence[tuple[str, int]], false_match: float = FALSE_MATCH) -> MatchThreshold:
    """`fit` on (question, chunk id) pairs of the user's corpus, e.g. the questions `ragbot tune`
    makes from its chunks: each question's document is its chunk's."""
    unique = list(dict.fromkeys((" ".join(q.split()), c) for q, c in questions if c >= 0))
    chunks = bot.store.chunks(sorted({c for _, c in unique}))
    unique = [(q, c) for q, c in unique if c in chunks]
    vectors = bot.embedder.encode([q for q, _ in unique]) if unique else np.zeros((0, 1))
    return fit(vectors, [chunks[c].source for _, c in unique], false_match)


class CorrectionMemory:
    """The user's corrections with their questions' vectors, matched against new questions."""

    def __init__(self, corrections: Sequence[Correction], vectors: np.ndarray, threshold: float,
                 turn_vectors: np.ndarray | None = None):
        self.corrections = list(corrections)
        self.vectors = vectors  # of the retrieval queries
        self.turn_vectors = vectors if turn_vectors is None else turn_vectors  # of the user's own words
        self.threshold = threshold

    @classmethod
    def build(cls, corrections: Sequence[Correction], embedder, threshold: float) -> "CorrectionMemory":
        """One entry per question (`Correction.key`): the newest feedback on it wins. So feedback
        on an answer that a correction made to the question it corrected, asked in its words and
        searched the same way, takes the correction back; to other words or another search (a
        rewording, another question the correction came close to, a follow-up's words asked
        on their own), it is that question's own entry, closer to it than the correction: the
        correction stops answering it and still answers its own (a thumbs-down on a wrong
        take-over used to delete the correction: helper-84's review)."""
        newest: dict[tuple[str, str], Correction] = {}
        for item in sorted(corrections, key=lambda c: c.at):
            newest[item.key] = item
        # Newest first: two turns of the same words corrected after different questions ("Who
        # introduced it?" after RAG, then after GANs) tie when those words are asked on their own,
        # and the match takes the first of a tie (helper-84's review).
        kept = sorted(newest.values(), key=lambda c: c.at, reverse=True)
        if not kept:
            empty = np.zeros((0, 1), dtype=np.float32)
            return cls(kept, empty, threshold, empty)
        texts = list(dict.fromkeys([c.question for c in kept] + [c.asked for c in kept]))
        encoded = dict(zip(texts, embedder.encode(texts)))
        return cls(kept, np.stack([encoded[c.question] for c in kept]), threshold,
                   np.stack([encoded[c.asked] for c in kept]))

    def __len__(self) -> int:
        return len(self.corrections)

    def match(self, query_vector: np.ndarray, turn_vector: np.ndarray | None = None) -> Match | None:
        """The correction closest to the question, if it reaches the threshold (the newest of
        a tie). Without `turn_vector` (a question searched on the user's words alone), the
        corrected turns' own words are compared; with it (the user's words, when the query joins
        them with the question before), both the queries and the turns' words must reach the
        threshold, and the lower of the two cosines counts."""
        if not self.corrections:
            return None
        query = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        if turn_vector is None:
            similarity = self.turn_vectors @ query
        else:
            similarity = np.minimum(self.vectors @ query,
                                    self.turn_vectors @ np.asarray(turn_vector, dtype=np.float32).reshape(-1))
        best = int(np.argmax(similarity))
        if similarity[best] < self.threshold:
            return None
        return Match(self.corrections[best], float(similarity[best]))
