"""The generator's side of answering: the prompt it sees, and reading its reply.

The prompt numbers the passages [1]..[n] in rank order and fits them into the generator's
context budget, counted in the generator's own tokens. The reply is read for [n] citations
(only numbers of passages actually shown count), shown a settled sentence at a time, and each
sentence is pointed at the passage that supports it. Whether to answer at all is decided
before, by the evidence (evidence.py, answerability.py); REFUSAL is the one sentence a refusal is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import regex

from ragbot.text import CLOSING, TERMINAL, sentence_body, sentence_spans, unmarked
from ragbot.types import Citation, Passage

REFUSAL = "I don't know: the documents do not contain the answer."

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages. Keep answers short. "
    "After each fact, cite the passage it comes from, like [1]. "
    f'If the passages do not answer the question, reply only: "{REFUSAL}"'
)

CITATION_MARK = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]", re.ASCII)  # [n] or [n, m]: ASCII digits
MIN_PASSAGE_TOKENS = 32
# An answer sentence without a citation gets one to the shown passage most similar to it
# (cosine of embeddings), when that similarity reaches this value.
SUPPORT_THRESHOLD = 0.40
# A cited sentence is re-pointed to another shown passage that is at least this much more similar.
RECITE_MARGIN = 0.10


@dataclass
class Prompt:
    messages: list[dict[str, str]]
    passages: list[Passage]  # the passages shown, numbered 1..n in this order
    text: str  # rendered with the model's chat template


# The earlier turns a generate-mode prompt shows, as chat messages (the page and the terminal chat).
HISTORY_TURNS = 2


def passage_header(p: Passage, with_page: bool = True) -> str:
    where = p.title
    if p.section and p.section != p.title:
        where = p.section if p.section.startswith(p.title) else f"{p.title} > {p.section}"
    if p.page is not None and with_page:
        where += f", page {p.page}"
    return where


def build_prompt(
    question: str,
    passages: Sequence[Passage],
    render: Callable[[list[dict[str, str]]], str],
    count_tokens: Callable[[str], int],
    budget: int,
    history: Sequence[dict[str, str]] = (),
) -> Prompt:
    """Messages with as many passages (in rank order) as fit in `budget` prompt tokens."""

    def messages_for(blocks: list[str]) -> list[dict[str, str]]:
        body = "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}" if blocks else f"Question: {question}"
        return [{"role": "system", "content": SYSTEM_PROMPT}, *history, {"role": "user", "content": body}]

    used = count_tokens(render(messages_for(["[1] ()\n"])))
    blocks: list[str] = []
    shown: list[Passage] = []
    for passage in passages:
        n = len(shown) + 1
        # A PDF's sentence breaks are for ragbot's splitter; the model reads the lines as lines.
        block = f"[{n}] ({passage_header(passage)})\n{unmarked(passage.text)}"
        cost = count_tokens(block) + 2
        room = budget - used
        if cost > room:
            if room < MIN_PASSAGE_TOKENS:
                break
            block = _truncate(block, room - 2, count_tokens)
            cost = room
        blocks.append(block)
        shown.append(passage)
        used += cost
    messages = messages_for(blocks)
    return Prompt(messages=messages, passages=shown, text=render(messages))


def _truncate(text: str, tokens: int, count_tokens: Callable[[str], int]) -> str:
    """Cut `text` at a word boundary so it takes at most `tokens` tokens."""
    lo, hi = 0, len(text)
    while lo < hi:  # binary search on characters
        mid = (lo + hi + 1) // 2
        if count_tokens(text[:mid]) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    space = cut.rfind(" ")
    return (cut[:space] if space > len(cut) // 2 else cut).rstrip() + " …"


def marked_numbers(text: str) -> list[int]:
    """Every number marked as [n] or [n, m] in `text`, [0] too, in first-seen order."""
    found: list[int] = []
    for match in CITATION_MARK.finditer(text):
        for part in match.group(1).split(","):
            if int(part) not in found:
                found.append(int(part))
    return found


def cited_numbers(reply: str, n_passages: int | None = None) -> list[int]:
    """Passage numbers cited as [n] or [n, m], in first-seen order, limited to 1..n_passages
    (None: every number from 1 on)."""
    return [n for n in marked_numbers(reply) if n >= 1 and (n_passages is None or n <= n_passages)]


def strip_invalid_citations(reply: str, n_passages: int) -> str:
    """Remove [n] markers that point at no shown passage, so the answer never invents sources."""

    def keep(match: re.Match) -> str:
        valid = [p.strip() for p in match.group(1).split(",") if 1 <= int(p) <= n_passages]
        return f"[{', '.join(valid)}]" if valid else ""

    return re.sub(r"\s+([.,;:!?])", r"\1", CITATION_MARK.sub(keep, reply)).strip()


def mark_citations(text: str, mark: Callable[[str], str]) -> str:
    """`text` with each number of its [n] and [n, m] markers replaced by mark(n) (n: its digits)."""
    return CITATION_MARK.sub(lambda m: "[" + ", ".join(mark(n.strip()) for n in m.group(1).split(",")) + "]", text)


# A mark with the white space before it, and the punctuation after it if any.
_MARK_IN_TEXT = re.compile(r"(\s*)" + CITATION_MARK.pattern + r"(?=([.,;:!?])?)", re.ASCII)


def strip_citation_marks(text: str) -> str:
    """`text` without its [n] marks. A mark goes with the space before it ("a Lycoming engine
    [1]." -> "a Lycoming engine.", "engine [1] and" -> "engine and"); one between two words with
    no space leaves one, so the words stay apart."""
    return renumber_citations(text, {})


# Two marks or more in a row ("[1][2]", "[1] [2]", as replies and Wikipedia-style texts write
# them): read as one mark naming them all, so that taking them out leaves no space behind.
_MARK_RUN = re.compile(CITATION_MARK.pattern + r"(?:\s*" + CITATION_MARK.pattern + r")+", re.ASCII)


def merged_marks(text: str) -> str:
    """`text` with each run of marks written as one ("in 2014 [1][2]." reads "in 2014 [1, 2].")."""
    return _MARK_RUN.sub(lambda run: f"[{', '.join(map(str, marked_numbers(run.group())))}]", text)


def renumber_citations(text: str, numbers: Mapping[int, int]) -> str:
    """`text` with each [n] mark renumbered by `numbers` ([2, 5] with {2: 1, 5: 3} reads [1, 3]);
    a mark naming none of them is taken out, as strip_citation_marks takes it. A run of marks is
    one mark (merged_marks), so taking it out leaves no space behind ("in 2014 [1][2]." read
    "in 2014 ." without its marks before)."""
    text = merged_marks(text)

    def renumbered(match: re.Match) -> str:
        mapped = dict.fromkeys(numbers[n] for n in map(int, match.group(2).split(",")) if n in numbers)
        if mapped:
            return f"{match.group(1)}[{', '.join(map(str, mapped))}]"
        after = match.string[match.end():match.end() + 1]
        # Taken out with the space before it where punctuation, a space or the end follows;
        # between two words ("a[9]b") it leaves one space.
        return "" if match.group(3) or not after or after.isspace() else " "

    return _MARK_IN_TEXT.sub(renumbered, text)


def cited_first(text: str, passages: Sequence[Passage]) -> tuple[str, list[Passage]]:
    """`passages` numbered again so that those `text` cites come first, in the order it first
    cites them, and the rest after in their own order; `text` with its [n] marks numbered to
    match. An answer quoting the fourth passage found then cites [1], and the sources panel,
    which lists the cited passages, does not start at [4]."""
    cited = cited_numbers(text, len(passages))
    order = cited + [n for n in range(1, len(passages) + 1) if n not in cited]
    renumbered = [replace(passages[old - 1], rank=new) for new, old in enumerate(order, start=1)]
    return renumber_citations(text, {old: new for new, old in enumerate(order, start=1)}), renumbered


def is_refusal(text: str | None) -> bool:
    """Whether `text` is ragbot's refusal: the one sentence every refusal is (a correction typed
    as the refusal too). Replies are not read for refusals in other words: whether to answer is
    decided before any text is made (answerability.py)."""
    return bool(text) and " ".join(text.split()) == REFUSAL


def citations_for(numbers: Sequence[int], shown: Sequence[Passage]) -> list[Citation]:
    return [
        Citation(n=n, source=shown[n - 1].source, page=shown[n - 1].page, chunk_id=shown[n - 1].chunk_id,
                 score=shown[n - 1].score, text=shown[n - 1].text)
        for n in numbers
    ]


def check_citations(
    reply: str, n_shown: int, similarity: Callable[[list[str]], "list[list[float]]"],
    abbreviations: frozenset[str] = frozenset(),
) -> tuple[str, bool]:
    """Make each sentence of `reply` cite the shown passage that supports it.

    `similarity(sentences)` returns, per sentence, its similarity to each of the n_shown
    passages. A sentence without a citation gets one to its most similar passage, when that
    reaches SUPPORT_THRESHOLD. A sentence whose citation points elsewhere than a passage that is
    clearly more similar (by RECITE_MARGIN, and reaching SUPPORT_THRESHOLD) cites that passage
    instead: small models copy the right sentence and guess its number. Returns the reply (its
    layout kept), and whether any sentence is supported, by a valid citation or by similarity.
    `abbreviations`: the documents' own (RagBot.abbreviations), which end no sentence.
    """
    spans = sentence_spans(reply, abbreviations)
    if not spans or n_shown == 0:
        return reply, False
    scores = similarity([reply[a:b] for a, b in spans])
    supported = False
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) in the original reply
    for (a, b), row in zip(spans, scores):
        sentence = reply[a:b]
        cited = cited_numbers(sentence, n_shown)
        best = max(range(n_shown), key=lambda j: row[j])
        if cited:
            supported = True
            closest_cited = max(row[n - 1] for n in cited)
            if best + 1 not in cited and row[best] >= SUPPORT_THRESHOLD and row[best] - closest_cited >= RECITE_MARGIN:
                edits.append((a, b, CITATION_MARK.sub(f"[{best + 1}]", sentence)))
        elif row[best] >= SUPPORT_THRESHOLD:
            end = a + len(sentence_body(sentence))
            edits.append((end, end, f" [{best + 1}]"))
            supported = True
    for a, b, text in sorted(edits, reverse=True):
        reply = reply[:a] + text + reply[b:]
    return reply, supported


# The shape of a passage header in the prompt, "[2] (Title > Section, page 4)", closed or cut off.
_HEADER_SHAPE = re.compile(r"\[(\d+)\] \(([^()\n]*)(?:\)|(?=\n)|$)")
_ENDS_SENTENCE = regex.compile(rf"{TERMINAL}[{CLOSING}\]]*(?:\s*\[\d+(?:\s*,\s*\d+)*\])*$")


def settled_sentences(pieces: Iterable[str], shown: Sequence[Passage],
                      was_cut: Callable[[], bool] = lambda: True,
                      abbreviations: frozenset[str] = frozenset()) -> Iterator[str]:
    """The sentences of a reply being generated, each yielded once it is complete and will not
    change, with prompt markup the model copied left out: a shown passage's "[n] (Title >
    Section)" header, whole or cut short, a header for a passage number never shown, and Markdown
    heading lines. A last piece that ends no sentence is dropped when `was_cut()` says generation
    stopped at the token limit (or marked " …" when it is all there is); otherwise it stands.
    `abbreviations`: as for check_citations."""
    headers = {str(n): passage_header(p) for n, p in enumerate(shown, start=1)}

    def markup(match: re.Match) -> str:
        n, inside = match.group(1), match.group(2)
        header = headers.get(n)
        copied = header is None or (inside and header.startswith(inside.rstrip(" .…")))
        return " " if copied else match.group(0)

    def visible(text: str) -> str:
        return _HEADER_SHAPE.sub(markup, text)

    def shown_sentence(text: str, a: int, b: int) -> str | None:
        sentence = " ".join(text[a:b].split())
        return sentence if sentence and not sentence.startswith("#") else None

    raw, done, said = "", 0, 0
    for piece in pieces:
        raw += piece
        text = visible(raw)
        spans = sentence_spans(text, abbreviations)
        for a, b in spans[done:-1]:  # the last span may still grow
            if sentence := shown_sentence(text, a, b):
                said += 1
                yield sentence
        done = max(done, len(spans) - 1)
    text = visible(raw)
    spans = sentence_spans(text, abbreviations)
    for i, (a, b) in enumerate(spans[done:], start=done):
        sentence = shown_sentence(text, a, b)
        if sentence is None:
            continue
        if i == len(spans) - 1 and not _ENDS_SENTENCE.search(sentence) and was_cut():
            if said:
                continue
            sentence += " …"
        said += 1
        yield sentence
