"""The values that flow between ragbot's stages.

Document -> Chunk (ingest) -> Passage (retrieve) -> Answer (generate).
This module imports nothing heavy so every other module, the CLI and the tests can use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ragbot.text import unmarked


@dataclass(frozen=True)
class PageSpan:
    """Page `number` (1-based) starts at character `start` of the document text."""

    number: int
    start: int


@dataclass
class Document:
    """A file's text as read, before chunking."""

    source: str  # absolute path of the file
    kind: str  # "pdf", "markdown", "text" or "html"
    title: str
    text: str
    sha256: str  # of the file's bytes
    size: int
    pages: list[PageSpan] = field(default_factory=list)  # empty for formats without pages
    # A text file neither UTF-8 nor named by its page: the legacy encoding its bytes were read in,
    # guessed (ingest/encoding.py), or "utf-8" for UTF-8 with stray bytes read as U+FFFD; the
    # ingest reports it, since a guess can be wrong
    guessed_encoding: str | None = None

    def page_at(self, offset: int) -> int | None:
        """The page holding character `offset`, or None for formats without pages."""
        page = None
        for span in self.pages:
            if span.start > offset:
                break
            page = span.number
        return page


@dataclass
class Chunk:
    """A piece of a document small enough for the embedder, with where it came from."""

    text: str
    section: str  # heading path inside the document ("" when there is none)
    start: int  # character span in Document.text
    end: int
    page: int | None
    page_end: int | None
    n_tokens: int  # embedder tokens of `text`
    sha256: str
    ord: int  # position in the document


@dataclass
class Passage:
    """A retrieved chunk with its score and its number for one answer: [rank] in the answer and
    the sources panel, the search's order, except that an extracted answer's cited passages are
    numbered first (generation.cited_first)."""

    chunk_id: int
    source: str
    title: str
    section: str
    page: int | None
    text: str
    score: float
    rank: int  # 1-based: the [n] that names it
    # 1-based place in the search's order (an extract renumbers `rank`, not this); None for a
    # passage no search found (a chunk a correction cites, added after the search's).
    search_rank: int | None = None

    def to_dict(self) -> dict:
        """The shape `ragbot search --json` prints."""
        return {**asdict(self), "text": unmarked(self.text)}


@dataclass
class Citation:
    """A passage the answer cites as [n]."""

    n: int
    source: str
    page: int | None
    chunk_id: int
    score: float
    text: str


@dataclass
class Answer:
    question: str
    answer: str
    refused: bool
    citations: list[Citation]
    passages: list[Passage]  # every passage retrieved, cited or not
    prompt: str  # the exact text the model saw ("" when no model call was made)
    raw_reply: str  # the model's reply before citations were checked and added
    model: str
    adapter: str | None
    timings_ms: dict[str, float]
    tokens: dict[str, int]
    # None, or why the bot declined: "no_evidence" (no sentence of the passages scores as an
    # answer: evidence.py) or "low_retrieval_score" (the best passage is under `min_score`).
    refusal_reason: str | None = None
    # The best sentence's evidence score (None: no passage was scored). Below the calibrated
    # threshold (answerability.py), refusal_reason is "no_evidence".
    evidence_score: float | None = None
    evidence_threshold: float | None = None  # the threshold it was held to
    # Set when the answer is the user's correction of an earlier answer (corrections.py): that
    # answer's id, and that answer's question as the user typed it.
    correction_of: str | None = None
    corrected_question: str | None = None
    id: str | None = None  # set when the answer is recorded in the answer log

    def to_dict(self) -> dict:
        """The shape `ragbot ask --json` prints."""
        return {
            "id": self.id,
            "answer": self.answer,
            "refused": self.refused,
            "citations": [asdict(c) for c in self.citations],
            "passages": [_passage_fields(p) for p in self.passages],
            "model": self.model,
            "adapter": self.adapter,
            "timings_ms": self.timings_ms,
            "tokens": self.tokens,
            "correction_of": self.correction_of,
        }


def _passage_fields(p: Passage) -> dict:
    return {
        "n": p.rank,
        "source": p.source,
        "page": p.page,
        "chunk_id": p.chunk_id,
        "score": p.score,
        "text": unmarked(p.text),
        "title": p.title,
        "section": p.section,
        "search_rank": p.search_rank,
    }
