"""Split a Document's text into Chunks measured in embedder tokens.

Boundaries are chosen from the largest unit that fits: a heading starts a new chunk, then
paragraphs, then sentences (and lines), and only a sentence longer than a whole chunk is cut
between tokens. Neighbouring chunks in a section share up to `overlap` tokens of whole
sentences. No chunk is ever longer than the embedder's limit, so nothing is silently truncated.
A chunk's text is an exact slice of the document text: `doc.text[chunk.start:chunk.end]`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import regex

from ragbot.text import CLOSING, TERMINAL, WIDE_TERMINAL, is_table_row, markdown_heading
from ragbot.types import Chunk, Document

CountTokens = Callable[[Sequence[str]], list[int]]
TokenOffsets = Callable[[str], list[tuple[int, int]]]

_PARAGRAPH = re.compile(r"[^\n]+(?:\n[^\n]+)*")
# Where a paragraph longer than a chunk may be cut: after a sentence stop of any script
# (text.TERMINAL: . ! ? and 。 ! ? । ؟ and the rest) and any closing quotes or brackets, before
# white space; after a full-width stop (。！？, not the ． of decimals) and any closing marks
# (text.CLOSING, ” and 」 alike) also with no space, as Chinese and Japanese write; and at a line break. These are packing points, not the sentences an answer
# quotes (text.sentence_spans, which keeps "U.S." and initials whole); cutting chunks with that
# splitter changed no answer and cost SciFact a little (docs/benchmarks.md section 21). After white
# space the closers are the ASCII ones and the full-width ones only, so English chunks are cut
# where they were before scripts were read (section 46).
_CLOSERS = "\"')\\]」』）】〕〉》"
_SENTENCE_END = regex.compile(rf"(?<={TERMINAL})[{_CLOSERS}]*\s+"
                              rf"|(?<={WIDE_TERMINAL}(?<![．﹒])[{CLOSING}]*)(?=[^\s{CLOSING}])(?!{TERMINAL})"
                              r"|\n", regex.V1)


@dataclass
class _Piece:
    start: int
    end: int
    tokens: int = 0
    heading_level: int = 0  # 1-6 for a Markdown heading line, 0 for body text
    heading: str = ""


def chunk_document(
    doc: Document,
    count_tokens: CountTokens,
    token_offsets: TokenOffsets,
    chunk_tokens: int,
    overlap: int,
    max_tokens: int,
) -> list[Chunk]:
    """Chunks of `doc` of at most `chunk_tokens` tokens (never above `max_tokens`)."""
    limit = min(chunk_tokens, max_tokens)
    pieces = _pieces(doc.text, count_tokens, token_offsets, limit)
    groups = _pack(pieces, limit, overlap)
    chunks: list[Chunk] = []
    texts = [doc.text[g[0].start : g[-1].end] for g, _ in groups]
    counts = count_tokens(texts)
    for (group, section), text, n_tokens in zip(groups, texts, counts):
        start, end = group[0].start, group[-1].end
        if n_tokens > max_tokens:  # joined text tokenised longer than its parts: cut it
            spans = _token_windows(doc.text, start, end, token_offsets, max_tokens)
        else:
            spans = [(start, end, n_tokens)]
        for s, e, n in spans:
            chunk_text = doc.text[s:e]
            chunks.append(
                Chunk(
                    text=chunk_text,
                    section=section,
                    start=s,
                    end=e,
                    page=doc.page_at(s),
                    page_end=doc.page_at(max(s, e - 1)),
                    n_tokens=n,
                    sha256=hashlib.sha256(chunk_text.encode()).hexdigest(),
                    ord=len(chunks),
                )
            )
    return chunks


def _pieces(text: str, count_tokens: CountTokens, token_offsets: TokenOffsets, limit: int) -> list[_Piece]:
    """Headings, paragraphs, and for paragraphs over `limit`, sentences or token windows."""
    blocks: list[_Piece] = []
    for para in _PARAGRAPH.finditer(text):
        body_start = None
        pos = para.start()
        for line in para.group().split("\n"):
            heading = markdown_heading(line)
            if heading:
                if body_start is not None:
                    blocks.append(_Piece(body_start, pos - 1))
                    body_start = None
                blocks.append(_Piece(pos, pos + len(line), heading_level=heading[0], heading=heading[1]))
            elif body_start is None:
                body_start = pos
            pos += len(line) + 1
        if body_start is not None:
            blocks.append(_Piece(body_start, para.end()))

    for block, n in zip(blocks, count_tokens([text[b.start : b.end] for b in blocks])):
        block.tokens = n

    pieces: list[_Piece] = []
    for block in blocks:
        if block.tokens <= limit:
            pieces.append(block)
            continue
        units = _units(text, block.start, block.end)
        for unit, n in zip(units, count_tokens([text[u.start : u.end] for u in units])):
            if n <= limit:
                unit.tokens = n
                pieces.append(unit)
                continue
            # A table row longer than a chunk is cut at its sentences, as prose was; a sentence
            # still too long is cut between tokens.
            if is_table_row(text[unit.start : unit.end]):
                parts = _sentences(text, unit.start, unit.end)
                counts = count_tokens([text[p.start : p.end] for p in parts])
            else:
                parts, counts = [unit], [n]
            for part, k in zip(parts, counts):
                if k <= limit:
                    part.tokens = k
                    pieces.append(part)
                else:
                    for s, e, m in _token_windows(text, part.start, part.end, token_offsets, limit):
                        pieces.append(_Piece(s, e, m))
    return pieces


def _units(text: str, start: int, end: int) -> list[_Piece]:
    """The sentences and lines of text[start:end], each table row (`text.is_table_row`) whole: a
    cell's "John A. Kiley" or "Fig. 2" is not a place to cut a row."""
    out: list[_Piece] = []
    cursor = start
    while cursor < end:
        line_end = text.find("\n", cursor, end)
        line_end = end if line_end < 0 else line_end
        if is_table_row(text[cursor:line_end]):
            out.append(_Piece(cursor, line_end))
        else:
            out.extend(_sentences(text, cursor, line_end))
        cursor = line_end + 1
    return out


def _sentences(text: str, start: int, end: int) -> list[_Piece]:
    """Pieces of text[start:end] cut at every sentence end and line break."""
    out: list[_Piece] = []
    cursor = start
    for match in _SENTENCE_END.finditer(text, start, end):
        if match.start() > cursor:
            out.append(_Piece(cursor, match.start()))
        cursor = match.end()
    if cursor < end:
        out.append(_Piece(cursor, end))
    return out


def _token_windows(
    text: str, start: int, end: int, token_offsets: TokenOffsets, limit: int
) -> list[tuple[int, int, int]]:
    """Cut text[start:end] into spans of at most `limit` tokens, between words where possible."""
    offsets = token_offsets(text[start:end])
    spans = []
    i = 0
    while i < len(offsets):
        j = min(i + limit, len(offsets))
        if j < len(offsets):
            # Back off while token j continues the word of token j-1 (no gap between them).
            k = j
            while k > i + 1 and offsets[k][0] == offsets[k - 1][1]:
                k -= 1
            if k > i + 1:
                j = k
        spans.append((start + offsets[i][0], start + offsets[j - 1][1], j - i))
        i = j
    return spans


def _pack(pieces: list[_Piece], limit: int, overlap: int) -> list[tuple[list[_Piece], str]]:
    """Group pieces into chunks; each group comes with the heading path it starts under."""
    groups: list[tuple[list[_Piece], str]] = []
    headings: list[_Piece] = []  # the open heading path
    current: list[_Piece] = []
    current_tokens = 0

    def has_body() -> bool:
        return any(p.heading_level == 0 for p in current)

    def emit() -> None:
        # Chunks never span a heading, so the open path is the chunk's section.
        groups.append((current, " > ".join(h.heading for h in headings)))

    for piece in pieces:
        if piece.heading_level:
            if has_body():
                emit()
                current, current_tokens = [], 0
            headings = [h for h in headings if h.heading_level < piece.heading_level] + [piece]
        elif current_tokens + piece.tokens > limit and has_body():
            emit()
            tail = _overlap_tail(current, overlap)
            if sum(p.tokens for p in tail) + piece.tokens > limit:
                tail = []
            current = tail
            current_tokens = sum(p.tokens for p in tail)
        current.append(piece)
        current_tokens += piece.tokens
    if current and (has_body() or not groups):
        emit()
    return groups


def _overlap_tail(group: list[_Piece], overlap: int) -> list[_Piece]:
    """The last body pieces of `group` whose tokens add up to at most `overlap`."""
    tail: list[_Piece] = []
    total = 0
    for piece in reversed(group[1:]):  # never the whole group: the next chunk must move on
        if piece.heading_level or total + piece.tokens > overlap:
            break
        tail.insert(0, piece)
        total += piece.tokens
    return tail
