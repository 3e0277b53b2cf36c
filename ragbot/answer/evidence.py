"""Evidence: the sentences of the shown passages that answer a question, scored and chosen.

Answering starts here. Every passage shown is cut into sentences (`text.prose_sentences`), a
scorer rates how well each sentence answers the question, and the best ones become the answer's
evidence, each citing its passage. The score of the best sentence also decides whether to answer
at all: below the threshold fit by code (answerability.py) the passages are taken not to hold
the answer. Nothing here reads words of a particular language.

Two kinds of scorer, both from the shipped sentence embedder, needing no training:
- `EmbeddingScorer` ("embedding"): the cosine between question and sentence embeddings. Its best
  score decides whether to answer at all (the threshold fit by answerability.py).
- `CoverageScorer`: how well the sentence covers the question, token by token. Each question
  token is matched to its closest sentence token (the embedder's contextual token vectors), each
  weighted by its IDF in the user's own chunks (the BM25 index's document frequencies). A
  sentence on the question's subject that lacks what is asked ("how many layers") leaves the
  rare asked-for tokens unmatched, where a whole-sentence cosine ranks it close to one that
  says it. Two ways (the `evidence_ranking` setting):
  - "coverage-questions", the default: the weighted mean of the matches, each token's weight
    also scaled by its IDF over the questions the user asked before (QuestionLog, read from the
    answer log), so that the words questions are made of ("what", "wer") stop outweighing the
    subject. On the frozen set it ranked better sentences than "coverage" (docs/benchmarks.md §18).
  - "coverage": the similarity below which the question's worst-covered quarter lies; it
    ranked better sentences than the cosine (§13).
A scorer is anything with a `name` and `score(question, sentences)`; a fitted threshold records
which scorer it was fit for.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import regex

from ragbot.answer.generation import cited_numbers, merged_marks, strip_citation_marks
from ragbot.text import CLOSING, TERMINAL, cited, join_sentences, prose_pieces, word_count
from ragbot.types import Passage

MIN_WORDS = 3  # shorter pieces (a stray label, "Yes.") are never evidence on their own; a field
# from a table row ("Registration: N5921D", text.prose_pieces) is a whole fact, whatever its length
# The share of the question's (IDF-weighted) tokens the "coverage" ranking looks at: its worst
# quarter. Chosen among a quarter, a half and the weighted mean on the development sets (§13).
WORST_SHARE = 0.25


@dataclass(frozen=True)
class Evidence:
    n: int  # the passage it comes from, by its number in search order (an extract renumbers: cited_first)
    text: str  # the sentence, markup removed
    score: float  # what ranked it: the scorer's rating (a follow-up's: follow_up_order); higher is better
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


Frequencies = Callable[[Sequence[str]], tuple[np.ndarray, int]]  # terms -> (counts, how many texts)


class CoverageScorer:
    """How well a sentence covers the question, token by token: for each question token its best
    cosine with any token of the sentence, reduced over the question's tokens, each weighted by
    its IDF in the user's chunks (`document_frequencies`: terms -> counts, and the number of
    chunks); tokens that are not terms (punctuation, special tokens) weigh nothing. `share`: the
    weighted quantile taken (the worst-covered quarter, "coverage"); None: the weighted mean.

    With `asked_before` (terms -> counts over the questions asked before, and their number: a
    QuestionLog), each token's weight is also scaled by its IDF over those questions. The
    "coverage-questions" ranking is the weighted mean with it (docs/benchmarks.md section 18).
    `name` is the ranking's, as the `evidence_ranking` setting spells it."""

    def __init__(self, embedder, document_frequencies: Frequencies, asked_before: Frequencies | None = None,
                 share: float | None = WORST_SHARE, name: str = "coverage"):
        self.embedder = embedder
        self.document_frequencies = document_frequencies
        self.asked_before = asked_before
        self.share = share
        self.name = name

    def score(self, question: str, sentences: Sequence[str]) -> np.ndarray:
        return self.score_with_cosine(question, sentences)[0][0]

    def score_with_cosine(self, question: str, sentences: Sequence[str],
                          also: Sequence[str] = ()) -> tuple[list[np.ndarray], np.ndarray]:
        """The coverage scores for `question` and for each of `also`, in that order, and the
        cosines of the sentence embeddings with `question` (EmbeddingScorer's scores), from the
        same pass of the embedder. `also`'s tokens come from a pass of their own, so the cosines
        are the very ones `score` gives."""
        if not sentences:
            return [np.zeros(0) for _ in range(1 + len(also))], np.zeros(0)
        asked, *told = self.embedder.encode_tokens([question, *sentences])
        coverages = [self._coverage(asked, told)]
        if also:
            coverages += [self._coverage(other, told) for other in self.embedder.encode_tokens(list(also))]
        # As EmbeddingScorer computes it (one matrix-vector product), so the cosines are its own.
        return coverages, np.stack([s.vector for s in told]) @ asked.vector

    def _coverage(self, asked, told) -> np.ndarray:
        weights = self._weights(asked.pieces)

        def reduced(best: np.ndarray) -> float:  # each question token's best match -> one score
            if not len(best):  # a question the tokenizer kept nothing of
                return -1.0
            return float(best @ weights / weights.sum()) if self.share is None else worst_share(best, weights, self.share)

        return np.array([reduced((asked.tokens @ s.tokens.T).max(axis=1)) if len(s.tokens) else -1.0 for s in told])

    def _weights(self, pieces: Sequence[str]) -> np.ndarray:
        frequencies, n_chunks = self.document_frequencies(pieces)
        is_term = np.array([any(ch.isalnum() for ch in p) for p in pieces], dtype=bool)
        weights = np.log((n_chunks + 1) / (np.asarray(frequencies, dtype=np.float64) + 0.5)) * is_term
        if self.asked_before is not None:
            weights = weights * question_idf(*self.asked_before(pieces))
        # A question of punctuation only still gets a score: every token alike. (A token every
        # logged question holds keeps a small weight: question_idf never reaches 0.)
        return weights if weights.sum() > 0 else np.ones(len(pieces))


def question_idf(counts: np.ndarray, n_questions: int) -> np.ndarray:
    """Each token's IDF over the questions asked before, scaled to [0, 1]: 1 for a token no
    question held (so every token keeps its weight while the log is empty), about 0 for one
    every question held ("what", "wer", "quel" once a few hundred questions were asked)."""
    counts = np.asarray(counts, dtype=np.float64)
    if not n_questions:
        return np.ones(len(counts))
    return np.log((n_questions + 1) / (counts + 0.5)) / np.log((n_questions + 1) / 0.5)


class QuestionLog:
    """How many of the questions asked before hold each term, and how many there are: the
    questions of the data dir's answer log (every user's of it), as term statistics in the
    embedder's word pieces. Reads only the questions logged since its last call
    (`questions_after(rowid)` -> [(rowid, question)]), so a long answer log is read once: by
    the chat's warm-up (RagBot.warm_up), else by the first answer after a start (0.24 s for
    10,000 questions on 2 cores)."""

    def __init__(self, word_pieces: Callable[[Sequence[str]], list[list[str]]],
                 questions_after: Callable[[int], list[tuple[int, str]]]):
        self.word_pieces, self.questions_after = word_pieces, questions_after
        self._counts: Counter = Counter()
        self._read = self._n = 0
        self._lock = threading.Lock()

    def __call__(self, terms: Sequence[str]) -> tuple[np.ndarray, int]:
        with self._lock:
            rows = self.questions_after(self._read)
            if rows:
                for pieces in self.word_pieces([question for _, question in rows]):
                    self._counts.update(set(pieces))
                self._n, self._read = self._n + len(rows), rows[-1][0]
            return np.array([self._counts.get(t, 0) for t in terms], dtype=np.int64), self._n


def worst_share(values: np.ndarray, weights: np.ndarray, share: float) -> float:
    """The weighted `share` quantile of `values`: the value below which `share` of the weight lies."""
    if not len(values):
        return -1.0
    order = np.argsort(values, kind="stable")
    reached = np.cumsum(weights[order]) / weights.sum()
    return float(values[order][min(int(np.searchsorted(reached, share)), len(values) - 1)])


def candidates(passages: Sequence[Passage], abbreviations: frozenset[str] = frozenset()) -> list[tuple[int, str]]:
    """(passage number, sentence) for every sentence of the passages, in the order shown. A
    document's own bracketed numbers ("[2]") are taken out, so that a quote's only citation marks
    are ragbot's; a sentence that overlapping chunks both hold counts once, for the first.
    `abbreviations`: the words the documents abbreviate (RagBot.abbreviations), which end no
    sentence ("Dr. Ellen Marsh")."""
    found, seen = [], set()
    for n, passage in enumerate(passages, start=1):
        for sentence, field in prose_pieces(passage.text, abbreviations):
            sentence = " ".join(strip_citation_marks(sentence).split())
            if (field or word_count(sentence) >= MIN_WORDS) and sentence not in seen:
                seen.add(sentence)
                found.append((n, sentence))
    return found


def rank(question: str, passages: Sequence[Passage], scorer: SentenceScorer,
         abbreviations: frozenset[str] = frozenset()) -> list[Evidence]:
    """Every sentence of the passages as Evidence, best first."""
    pool = candidates(passages, abbreviations)
    return _ranked(pool, scorer.score(question, [s for _, s in pool]))


def rank_both(question: str, passages: Sequence[Passage], ranker: SentenceScorer,
              judge: SentenceScorer, turn: str | None = None,
              abbreviations: frozenset[str] = frozenset(),
              earlier_answers: Sequence[str] = (),
              order_by: str | None = None) -> tuple[list[Evidence], list[Evidence]]:
    """The sentences ranked by `ranker` (which to quote) and by `judge` (whether to answer at
    all). When the ranker is coverage and the judge the cosine of the same embedder, both come
    from one pass of it (the second pass cost about 70 ms an answer).

    `turn` is the question as asked when `question` is a follow-up searched together with the
    question before it ("Who introduced it?" after "What is RAG?"); it is ranked as
    `follow_up_order` says, with the sentences `earlier_answers` quoted (the conversation's last
    answers) as the ones shown. `order_by`, when given, stands for `question` on the ranker's
    side of that order: a later turn's query joins the subject's whole chain of questions, which
    still chooses the document the turn is about; the chain's last question and the turn
    (bot.ordering_query) choose the passage of it and the sentence (follow_up_order's `subject`).
    The judge reads `question` alone, as its threshold was fit. `abbreviations`: as for
    `candidates`."""
    pool = candidates(passages, abbreviations)
    sentences = [s for _, s in pool]
    also = [turn] if turn and turn != question else []
    if also and order_by and order_by != question:
        also = [order_by, turn]
    if ranker is judge and not also:
        ranked = _ranked(pool, ranker.score(question, sentences))
        return ranked, ranked
    if isinstance(ranker, CoverageScorer) and isinstance(judge, EmbeddingScorer) and ranker.embedder is judge.embedder:
        by_ranker, by_judge = ranker.score_with_cosine(question, sentences, also)
    else:
        by_judge = judge.score(question, sentences)
        by_ranker = [by_judge if ranker is judge else ranker.score(question, sentences)]
        by_ranker += [ranker.score(q, sentences) for q in also]
    if not also:
        return _ranked(pool, by_ranker[0]), _ranked(pool, by_judge)
    shown = {sentence for answer in earlier_answers for sentence in quoted_sentences(answer)}
    # With `order_by`, by_ranker is [question, order_by, turn]: the whole query still chooses the
    # document the conversation is about; the short one, the passage of it and the sentences.
    subject = (by_ranker[0], [p.source for p in passages]) if len(by_ranker) == 3 else None
    return follow_up_order(pool, *by_ranker[-2:], shown=shown, subject=subject), _ranked(pool, by_judge)


def turn_rank(joined: np.ndarray, passage: np.ndarray, others_joined: np.ndarray) -> float:
    """How much a turn searched together with the question before asks about `passage`: the
    share of other questions that, put after the same question before, come less close to it.
    Normalised embeddings: `joined` of the question before and the turn, `others_joined` (n x
    dim) of the question before and each other question. A follow-up ("In which year?") asks
    about what the passage also says and ranks high; a question on another subject only dilutes
    the question before and ranks low (docs/benchmarks.md §33)."""
    if not len(others_joined):
        return 1.0
    return float(np.mean(others_joined @ passage < float(joined @ passage)))


def follow_up_order(pool: Sequence[tuple[int, str]], joined: np.ndarray, turn: np.ndarray,
                    shown: Collection[str] = (),
                    subject: tuple[np.ndarray, Sequence[str]] | None = None) -> list[Evidence]:
    """A follow-up's sentences, best first, from the ranker's scores for the joined question and
    for the turn as asked.

    The joined question's words are mostly the question before's, so ranked by it the sentence
    that answered that question comes first again; the turn alone loses what "it" names and
    matches any sentence with a place or a year. The mean of the two finds the passage the
    conversation is about (its best sentence's passage). Within that passage a sentence relevant
    to both the subject and the turn comes first, ranked by the product of its two scores (each
    clipped at 0; the mean breaks a tie): "Have companies done anything about it?" after a
    question on what happens to text pasted into a chatbot quotes the companies' restrictions,
    not the answer to the first question again. Every other sentence follows in the mean's order,
    a sentence of that passage with a product of 0 among them. On the 50 development follow-ups
    (docs/benchmarks.md §28) this quoted better sentences than the mean alone, and changed none
    of the 10 whose answer is the first question's sentence.

    `shown`: sentences of the pool the conversation has already quoted. The product still
    favours the one that answered the question before: "What kind of network did it displace?"
    after "Which paper introduced the transformer architecture?" quoted the definition again.
    Such a sentence of the subject's passage goes after that passage's other sentences that
    score on both, unless the turn's own score ranks it first in the passage: "In which year?"
    after "Who introduced GANs?" is answered by the same sentence, and its own words say so
    (§35). Each Evidence's score is what ranked it: the product for the first ones (a shown
    sentence keeps its product, though ranked after lower ones), the mean for the rest.

    `subject`: when `joined` is not the whole query searched, that query's scores and the
    document of each passage (passage n's at n - 1). A later turn's sentences are ordered by the
    chain's last question and the turn, but that short query names no subject, and alone it led
    "How can people defend against them?" after two turns on deepfakes to another document's
    sentence on bias. So the whole chain's mean with the turn says which document the
    conversation is about, and the short query's mean which of that document's passages leads:
    "How is it trained?" after two turns on VAEs is answered from the VAE page's section on
    training, not from its definition's passage, which the chain's words point to (§37)."""
    if not len(pool):
        return []
    mean = (joined + turn) / 2
    product = joined.clip(0) * turn.clip(0)
    if subject is None:
        lead = pool[int(np.argmax(mean))][0]
    else:
        whole, documents = subject
        about = documents[pool[int(np.argmax((whole + turn) / 2))][0] - 1]
        lead = pool[max((i for i, (n, _) in enumerate(pool) if documents[n - 1] == about), key=lambda i: mean[i])][0]
    in_lead = [i for i, (n, _) in enumerate(pool) if n == lead]
    turns_own = max(turn[i] for i in in_lead)
    said_before = {i for i in in_lead if pool[i][1] in shown and turn[i] < turns_own}
    first = sorted((i for i in in_lead if product[i] > 0), key=lambda i: (i in said_before, -product[i], -mean[i]))
    rest = sorted(set(range(len(pool))) - set(first), key=lambda i: (-mean[i], i))
    return ([Evidence(n=pool[i][0], text=pool[i][1], score=float(product[i]), position=i) for i in first]
            + [Evidence(n=pool[i][0], text=pool[i][1], score=float(mean[i]), position=i) for i in rest])


def _ranked(pool: Sequence[tuple[int, str]], scores: np.ndarray) -> list[Evidence]:
    ranked = [Evidence(n=n, text=s, score=float(v), position=i) for i, ((n, s), v) in enumerate(zip(pool, scores))]
    ranked.sort(key=lambda e: -e.score)
    return ranked


def best_score(question: str, passages: Sequence[Passage], scorer: SentenceScorer,
               abbreviations: frozenset[str] = frozenset()) -> float | None:
    """The best sentence's score; None when the passages hold no sentence (then nothing answers)."""
    ranked = rank(question, passages, scorer, abbreviations)
    return ranked[0].score if ranked else None


# Where a composed answer's sentence ends: its citation mark and any closing marks after it (text.cited).
_QUOTE_END = regex.compile(rf"\[[0-9]+(?:\s*,\s*[0-9]+)*\](?:{TERMINAL}|[{CLOSING}\]])*")


def compose(evidence: Sequence[Evidence]) -> str:
    """The answer text: the chosen sentences in the order they stand in the passages (so a
    definition and the sentence after it read as written), each followed by its citation."""
    return join_sentences(cited(e.text.rstrip(), e.n) for e in sorted(evidence, key=lambda e: e.position))


def quoted_sentences(answer: str) -> list[str]:
    """The sentences an answer quoted, as `candidates` writes them (what `compose` joined): the
    text cut after each citation mark and the closing marks after it ("… in 2013 [1]." ends a
    sentence), each without its mark, white space collapsed. A sentence must be whole to be
    found: "Seats: 2" is not among the sentences of "Seats: 24 [1]"."""
    return [" ".join(strip_citation_marks(piece).split()) for piece in _quote_pieces(answer)]


def quotes_by_passage(answer: str) -> dict[int, list[str]]:
    """The pieces of `answer` that quoted_sentences cuts, under the number of each passage they
    cite: what the sources panel marks in passage n. For a quoted answer these are its sentences.
    A generated reply's pieces are listed too; they are found in a passage only where the model
    copied them. A piece of one word is left out: a mark in the middle of a generated sentence
    ("It [1] is used …") cuts off a fragment that would mark any "It" of the passage."""
    quotes: dict[int, list[str]] = {}
    for piece in _quote_pieces(answer):
        sentence = " ".join(strip_citation_marks(piece).split())
        if word_count(sentence) < 2:
            continue
        for n in cited_numbers(piece):
            quotes.setdefault(n, []).append(sentence)
    return quotes


def _quote_pieces(answer: str) -> list[str]:
    answer = merged_marks(answer)  # "[2][3]" cuts once, as "[2, 3]"
    cuts = [match.end() for match in _QUOTE_END.finditer(answer)]
    pieces = [answer[start:end] for start, end in zip([0, *cuts], [*cuts, len(answer)])]
    return [piece for piece in pieces if piece.strip()]

