"""What the chat page shows, as HTML and text: answers with their citation links, the sources
panel with its passages and the sentences quoted from them, and the messages of notices. Every
text from documents, models and users is escaped here before any tag of ragbot's is added.

Plain functions of strings and ragbot's types; nothing here knows Gradio or the bot.
"""

import html
import logging
import re
import string
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ragbot.answer.corrections import SAVED_CORRECTION
from ragbot.answer.evidence import quotes_by_passage
from ragbot.answer.generation import (
    CITATION_MARK,
    is_refusal,
    mark_citations,
    passage_header,
)
from ragbot.ingest.readers import title_from_name
from ragbot.text import (
    EMPHASIS_MARK,
    heading_title,
    is_table_row,
    opens_item,
    readable_line,
)
from ragbot.types import Answer, Passage

log = logging.getLogger(__name__)


MAX_QUESTION_CHARS = 1000  # longer is a pasted document, not a question


def shown(text: str) -> str:
    """Text from documents, models or users as the chat shows it: HTML-escaped, so the page
    displays `<img src=...>` as those characters and never loads, links or runs anything."""
    return html.escape(text, quote=False)


CORRECTION_MARK = "Saved correction:"  # before an answer that is a correction, not a quote


# After the text of an answer Stop ended: it is not kept, so neither a vote nor a reload finds it.
STOPPED_MARK = ' <span class="ragbot-stopped">(stopped: not kept)</span>'


def shown_answer(text: str, corrected: bool = False, searched: int | None = None) -> str:
    """An answer as the chat shows it: escaped like all text, each citation number a link to
    that passage in the sources panel (the only markup in a message, and ragbot's own). A saved
    correction says so first: it read as a quote from the documents (helper-49's drive).
    `searched`: how many documents chosen in the library the question searched (None: all); a
    refusal then says that those lack the answer (not a saved correction that is the refusal:
    the user's, it was not searched for)."""
    if searched is not None and not corrected and is_refusal(text):
        text = refusal_within(searched)
    cited = mark_citations(shown(text), lambda n: f'<a class="ragbot-cite" href="#source-{n}">{n}</a>')
    return f'<span class="ragbot-correction">{CORRECTION_MARK}</span> {cited}' if corrected else cited


def refusal_within(searched: int) -> str:
    """The refusal as the chat shows it for a question that searched only the documents chosen in
    the library (`searched` of them): the stored refusal's "the documents" read as all of them."""
    if searched == 0:
        return "I don't know: none of the documents chosen to search is stored."
    which = "the chosen document does not" if searched == 1 else f"the {searched} chosen documents do not"
    return f"I don't know: {which} contain the answer."


# ASCII punctuation, which Markdown lets a backslash make literal; not & and ; (html.escape's entities).
_MARKDOWN_MARKS = re.compile("([" + re.escape("".join(c for c in string.punctuation if c not in "&;")) + "])")


def literal(text: str) -> str:
    """Text from documents or users as a Markdown component (the status lines) shows it: HTML
    escaped and every punctuation mark backslashed, so a question such as "[x](http://...)" is
    shown as typed, never as a link or markup."""
    return _MARKDOWN_MARKS.sub(r"\\\1", html.escape(text, quote=False))


# Every text in a message is escaped (`shown`), so a "<" there is the start of ragbot's own markup.
_OWN_MARKUP = re.compile(r"<[^>]*>")


def message_text(message: dict) -> str:
    """A chat message's text as it was before `shown` or `shown_answer`: Gradio hands content
    back as a list of parts, we send escaped strings."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    if not isinstance(content, str):
        return ""
    return html.unescape(_OWN_MARKUP.sub("", content.replace(STOPPED_MARK, "")))


def message_index(history: list | None, index) -> int | None:
    """The position in `history` of the message an event names (Gradio sends an int or an
    [int, int]); None for an index the page cannot have meant."""
    if isinstance(index, (list, tuple)):
        index = index[0] if index else None
    try:
        position = int(index)
    except (TypeError, ValueError):
        return None
    history = history or []
    if not 0 <= position < len(history) or not isinstance(history[position], dict):
        return None
    return position


def message_at(history: list | None, index) -> dict | None:
    """The chat message an event names, or None (see message_index)."""
    position = message_index(history, index)
    return None if position is None else history[position]


def turn_of(history: list | None) -> int:
    """The turn a question asked after `history` takes: one more than the answers kept there (a
    stopped answer is not stored), so a question asked again replaces the same stored turns it
    replaces on the page."""
    return sum(1 for m in history or [] if answer_id_of(m)) + 1


def answer_id_of(message: dict | None) -> str | None:
    """The id of the stored answer a chat message shows (an id the page sends back: it is
    checked against what the session was given before it is used)."""
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return None
    answer_id = (message.get("metadata") or {}).get("id")
    return str(answer_id) if answer_id else None


def notice(text: str) -> str:
    """Text for a Gradio notice (gr.Info, gr.Warning), which renders its message as HTML: a
    document's file name in it ("<img src=x onerror=…>.md") is shown as text."""
    return html.escape(text, quote=False)


def unexpected_error_message(exc: Exception, what: str, done: bool = False) -> str:
    """The page's message for an error that is ragbot's fault, not the user's (a bug, or a data
    dir changed under it): `what` happened or did not (`done`: the error came after it was
    stored), and where the details are. Gradio would show only a red 'Error'."""
    log.exception("%s", what)
    return (f"{what}, {'but an unexpected error followed' if done else 'because of an unexpected error'} "
            f"({type(exc).__name__}); the server's log has the details.")


def render_sources(answer: Answer | None, show_all: bool, links: dict[str, str] | None = None,
                   searched: Sequence[str] | None = None, corrected_elsewhere: bool = False) -> str:
    """HTML for the sources panel; every text from documents is escaped, never interpreted.
    `links` maps a PDF's source to the address that serves it (its pages open from there);
    `searched`: the documents the question was limited to (None: all); `corrected_elsewhere`: the
    answer is a correction given for another question (render_panel)."""
    if answer is None:
        return "<p class='ragbot-muted'>Sources of the answer appear here.</p>"
    return render_panel(answer.passages, {c.n for c in answer.citations}, show_all, links, refused=answer.refused,
                        refusal_reason=answer.refusal_reason,
                        corrected_question=answer.corrected_question if answer.correction_of else None,
                        searched=searched, question=answer.question, quotes=quotes_by_passage(answer.answer),
                        corrected_elsewhere=corrected_elsewhere)


def panel_heading(question: str | None) -> str:
    """Which answer the sources panel speaks of: after a reload, or with the chat scrolled to an
    older answer, nothing said it (helper-49's drive)."""
    return f"<p class='ragbot-for'>For the answer to “{html.escape(question)}”</p>" if question else ""


def render_panel(passages: list[Passage], cited: set[int], show_all: bool, links: dict[str, str] | None = None,
                 refused: bool = False, refusal_reason: str | None = None,
                 corrected_question: str | None = None, searched: Sequence[str] | None = None,
                 question: str | None = None, quotes: dict[int, list[str]] | None = None,
                 corrected_elsewhere: bool = False) -> str:
    """The sources panel of one answer: the question it answered, which documents were searched
    when the question was limited to some, then what a correction answered (and the passages it
    cites), why there is no source, or its passages. `quotes`: the answer's sentences by the
    passage number they cite (evidence.quotes_by_passage), marked where that passage holds them;
    `corrected_elsewhere`: the correction was given for another question (other words, or the
    same searched otherwise), so a thumbs-down here only stops it answering this one."""
    note = panel_heading(question)
    # A correction answers whatever documents were chosen (its passages may lie outside them).
    note += searched_note(searched, refused) if corrected_question is None else ""
    # A correction is the user's text, not a quote: nothing in its passages is marked as said.
    quotes = quotes if corrected_question is None else None
    return note + _panel(passages, cited, show_all, links, refused, refusal_reason, corrected_question, quotes,
                         corrected_elsewhere)


def distinct_folders(sources: Sequence[str]) -> dict[str, str]:
    """For each path, the shortest end of its folder that no other path of the same file name
    ends with: the folder's last name ("pdfs") when no other has it, more of the path ("a/same",
    "b/same") when one does; the whole folder at most ("/" for a file at the root)."""
    by_name: dict[str, list[str]] = {}
    for source in dict.fromkeys(sources):
        by_name.setdefault(Path(source).name, []).append(source)
    shown = {}
    for group in by_name.values():
        folders = {source: Path(source).parent for source in group}
        for source, folder in folders.items():
            others = [f for s, f in folders.items() if s != source]
            for depth in range(1, len(folder.parts) + 1):
                end = folder.parts[-depth:]
                if not any(other.parts[-depth:] == end for other in others):
                    break
            shown[source] = "/".join(end) if depth < len(folder.parts) else str(folder)
    return shown


def question_info(searched) -> str:
    """What the question box says under its label: its length limit, and while documents are
    chosen under "Your documents", that only they are searched (the choice outlives a reload and
    a new conversation, and inside the closed panel nothing near the box showed it)."""
    n = len(searched) if isinstance(searched, list) else 0
    limit = f"Up to {MAX_QUESTION_CHARS:,} characters: a longer paste is cut there."
    if not n:
        return limit
    which = "the document" if n == 1 else f"the {n} documents"
    return f"Searching only {which} chosen under “Your documents”. {limit}"


def search_label(searched) -> str:
    """The label of the choice of documents to search, which says what a question searches now
    (it said "none chosen: all of them" while some were chosen)."""
    n = len(searched) if isinstance(searched, list) else 0
    if not n:
        return "Search only these documents (none chosen: all of them)"
    return f"Search only these documents ({n} chosen: only {'it is' if n == 1 else 'they are'} searched)"


def searched_sentence(searched: Sequence[str] | None, refused: bool = False) -> str:
    """Says, as plain text, that a question searched only the documents chosen in the library,
    and which: a refusal there means those documents lack the answer, not all of them, and says
    how to search them all. Each is named by its file name, with as much of its folder as tells
    two chosen files of one name apart. Empty when everything was searched."""
    if searched is None:
        return ""
    searched = list(dict.fromkeys(searched))
    if not searched:
        return "No document was searched: none of those chosen is stored."
    names = Counter(Path(s).name for s in searched)
    folders = distinct_folders(searched)
    labels = sorted((f"{Path(s).name} ({folders[s]})" if names[Path(s).name] > 1 else Path(s).name
                     for s in searched), key=str.lower)
    which = "the document" if len(searched) == 1 else f"the {len(searched)} documents"
    hint = " To search all of them, clear “Search only these documents”." if refused else ""
    return f"Searched only {which} chosen under “Your documents”: {', '.join(labels)}.{hint}"


def searched_note(searched: Sequence[str] | None, refused: bool = False) -> str:
    """searched_sentence as the sources panel shows it, above the passages."""
    sentence = searched_sentence(searched, refused)
    return f"<p class='ragbot-searched'>{html.escape(sentence)}</p>" if sentence else ""


def _panel(passages: list[Passage], cited: set[int], show_all: bool, links: dict[str, str] | None,
           refused: bool, refusal_reason: str | None, corrected_question: str | None,
           quotes: dict[int, list[str]] | None = None, corrected_elsewhere: bool = False) -> str:
    if corrected_question is not None:
        # A thumbs-down takes a correction back only on the question it was given for; on another
        # it stops answering that one (corrections.py), which helper-87's drive found unsaid here.
        if not corrected_elsewhere:
            change = ("To replace it, give this answer a thumbs-down: with a new correction, that one answers; "
                      "without one, the documents answer again.")
        else:
            change = ("To stop it answering this question, give this answer a thumbs-down: with a new "
                      "correction, that one answers it; without one, the documents do, and the saved "
                      "correction still answers the question it was given for.")
        # Not "your": without a login every browser of this ragbot shares them (helper-49's drive).
        note = (f"<p>{SAVED_CORRECTION.capitalize()}: it was given for the answer "
                f"to “{html.escape(corrected_question)}” and answers questions that ask the same: without "
                f"a login, for everyone who uses this ragbot; with one, for the person who gave it. "
                f"{change}</p>")
        return note + (render_passages(passages, cited, show_all, links) if cited or show_all else "")
    if refused and not show_all:
        return f"<p>No source: {html.escape(REFUSAL_NOTES.get(refusal_reason or '', 'declined'))}.</p>"
    return render_passages(passages, cited, show_all, links, quotes)


SNIPPET_CHARS = 400  # of a passage, shown before it is opened


# What a passage's number in the panel is (Passage.score: the shipped embedder's cosine with the
# search query), and why the list is not sorted by it: it follows the [n] numbers, which an extract
# gives its cited passages first and the search (hybrid: shared words too; a tuned embedder)
# orders otherwise.
SIMILARITY_NOTE = ("Cosine similarity of the passage and the searched question: higher is closer. The list "
                   "follows the [n] numbers, not this number: the answer's sources first, then the search's order, "
                   "which also weighs the words they share.")


def render_passages(passages: list[Passage], cited: set[int], show_all: bool, links: dict[str, str] | None = None,
                    quotes: dict[int, list[str]] | None = None) -> str:
    """The passages of one answer, cited ones marked; each row is the target of its [n] links
    in the answer (id `source-n`). A cited passage marks the sentences `quotes` gives for its
    number where it holds them, so the quote is read where it stands (helper-73 saw answers
    such as "It is an example of … [1]" that need the sentence before)."""
    quotes = quotes or {}
    rows = []
    for p in passages:
        if not show_all and p.rank not in cited:
            continue
        page = f", page {p.page}" if p.page is not None else ""
        mark = "cited" if p.rank in cited else "retrieved"
        # A cited passage is shown whole: the quoted sentence may stand past any cut. Of another,
        # the first SNIPPET_CHARS; a click on them shows the whole passage.
        cut = len(p.text) > SNIPPET_CHARS and p.rank not in cited
        shown = snippet_html(p.text[:SNIPPET_CHARS] + " …") if cut else ""
        body = (f"<details class='ragbot-more'><summary title='Show the whole passage'>{shown} "
                f"<span class='ragbot-muted'>(show all)</span></summary>"
                f"{snippet_html(p.text)}</details>" if shown else snippet_html(p.text, quotes.get(p.rank, ())))
        opener = ""
        if links and p.source in links:
            target = f"{links[p.source]}#page={p.page}" if p.page is not None else links[p.source]
            opener = (f" <a class='ragbot-open' href='{html.escape(target)}' target='_blank' rel='noopener noreferrer'>"
                      f"open{' page ' + str(p.page) if p.page is not None else ''} ↗</a>")
        # The title and section, where they say more than the file name and page shown before them
        # (a text file's title is its name: "glimmerwood.txt (glimmerwood; …)").
        where = passage_header(p, with_page=False)
        where = "" if where == title_from_name(p.source) else f"{where}; "
        rows.append(
            f"<div class='ragbot-source' id='source-{p.rank}' data-rank='{p.rank}'><b>[{p.rank}]</b> "
            f"{html.escape(Path(p.source).name)}{html.escape(page)} "
            f"<span class='ragbot-muted'>({html.escape(where)}"
            f"<span title='{html.escape(SIMILARITY_NOTE)}'>similarity {p.score:.2f}</span>; {mark})</span>{opener}"
            f"<blockquote class='ragbot-passage'>{body}</blockquote></div>"
        )
    return "".join(rows) or NO_PASSAGE_CITED


NO_PASSAGE_CITED = "<p>The answer cites no passage.</p>"


# Markdown **bold**, read on the escaped text; not inside a word ("x**2") or an expression
# ("f(**kw)"), and never inside `code` (see _inline_markup).
_STRONG = re.compile(r"(?<![\w*])\*\*(?=[^\s*])((?:(?!\*\*).)+?)(?<=[^\s*])\*\*(?![\w*])")


# Markdown `code`, read on the escaped text: a single backtick pair within a paragraph around text
# that neither starts nor ends with a space (a ``double`` pair is left as typed).
_CODE = re.compile(r"(?<!`)`(?=[^\s`])([^`]+?)(?<=[^\s`])`(?!`)")


def _inline_markup(escaped: str) -> str:
    """`code` and **bold** of one escaped block as tags: code first, and bold only outside it,
    as Markdown reads them (`**kwargs**` is code, not bold code)."""
    parts = _CODE.split(escaped)  # text, code, text, code, ..., text
    return "".join(f"<code>{part}</code>" if i % 2 else _STRONG.sub(r"<b>\1</b>", part) for i, part in enumerate(parts))


def snippet_html(text: str, quotes: Sequence[str] = ()) -> str:
    """A passage's text as the sources panel shows it: escaped; a paragraph's wrapped lines
    joined, each paragraph, list item, table row ("Label: value; Label: value", as answers quote
    it: text.cells_as_prose) and heading on a line of its own, a Markdown heading
    (how ragbot's readers mark a section) shown as a bold title rather than its "#" marks, and
    **bold** words bold and `code` as code rather than between their marks. The tags are put
    around text already escaped, so a passage's own markup still shows as text. Each of `quotes`
    (sentences as an answer quotes them) is marked where a block holds it (_as_quoted, _quote_span)."""
    text = text.replace(_QUOTE_OPEN, "").replace(_QUOTE_CLOSE, "")  # the marks' stand-ins are ragbot's alone
    blocks: list[tuple[bool, str]] = []  # (a heading?, its text)
    joined = False  # whether the next line continues the block before it (a wrapped paragraph line)
    for line in text.splitlines():
        heading = heading_title(line)
        if not line.strip():
            joined = False
        elif heading is not None:
            blocks.append((True, heading))
            joined = False
        elif is_table_row(line):  # a line of its own, its cells read as an answer quotes them
            if row := readable_line(line):  # nothing for a Markdown table's "| --- |" line
                blocks.append((False, row))
            joined = False
        elif joined and not opens_item(line):  # a list item starts a line of its own
            blocks[-1] = (False, blocks[-1][1] + " " + line.strip())
        else:
            blocks.append((False, line.strip()))
            joined = True
    shown_blocks = [_inline_markup(f"<b>{html.escape(block)}</b>" if heading else _escaped_with_quotes(block, quotes))
                    for heading, block in blocks]
    shown = "<br>".join(shown_blocks).replace(_QUOTE_OPEN + _QUOTE_CLOSE, "")  # a mark around nothing
    return shown.replace(_QUOTE_OPEN, "<mark class='ragbot-quote'>").replace(_QUOTE_CLOSE, "</mark>")


# Stand-ins for a quote's marks while the block is escaped and its **bold** and `code` are read
# (control characters, which no escaping or markup touches); text from documents loses its own.
_QUOTE_OPEN, _QUOTE_CLOSE = "\x02", "\x03"


# What a quote leaves out of the text it was cut from (evidence.candidates: text.plain and
# strip_citation_marks): emphasis and code marks, and a document's own citation marks.
_CITATION_IN_TEXT = re.compile(r"\s*" + CITATION_MARK.pattern, re.ASCII)


def _as_quoted(block: str) -> tuple[str, list[int]]:
    """`block` (a paragraph or a table row as the panel shows it) read as quotes are cut: without
    emphasis and code marks, without citation marks (one between two words leaves a space, as
    strip_citation_marks does), white space as single spaces; with where each of its characters
    stands in `block`."""
    kept: list[str] = []
    at: list[int] = []
    i = 0
    while i < len(block):
        if emphasis := EMPHASIS_MARK.match(block, i):
            i = emphasis.end()
            continue
        if cited := _CITATION_IN_TEXT.match(block, i):
            i = cited.end()
            if kept and kept[-1].isalnum() and i < len(block) and block[i].isalnum():
                kept.append(" "), at.append(cited.start())
            continue
        if not block[i].isspace():
            kept.append(block[i]), at.append(i)
        elif kept and kept[-1] != " ":
            kept.append(" "), at.append(i)
        i += 1
    return "".join(kept), at


def _quote_span(flat: str, at: list[int], quote: str) -> tuple[int, int] | None:
    """Where the block read as `flat` (_as_quoted) holds `quote` whole (not "Seats: 2" in
    "Seats: 24"), as a span of the block; None where it does not (a generated sentence, a
    link's text)."""
    quote = " ".join(quote.split())
    start = flat.find(quote) if quote else -1
    while start >= 0:
        end = start + len(quote)
        if not (start and flat[start - 1].isalnum()) and not (end < len(flat) and flat[end].isalnum()):
            return at[start], at[end - 1] + 1
        start = flat.find(quote, start + 1)
    return None


def _escaped_with_quotes(block: str, quotes: Sequence[str]) -> str:
    """`block` escaped, each quote it holds between the stand-ins of a mark (the first of
    overlapping ones). A mark is closed before each emphasis or code mark inside it and opened
    again after, so that it never crosses the edge of the <b> or <code> those become."""
    pieces, done = [], 0
    flat, at = _as_quoted(block) if quotes else ("", [])
    for a, b in sorted(span for quote in quotes if (span := _quote_span(flat, at, quote)) is not None):
        if a < done:
            continue
        pieces.append(html.escape(block[done:a]))
        start = a
        for emphasis in EMPHASIS_MARK.finditer(block, a, b):
            pieces += [_QUOTE_OPEN, html.escape(block[start:emphasis.start()]), _QUOTE_CLOSE, emphasis.group()]
            start = emphasis.end()
        pieces += [_QUOTE_OPEN, html.escape(block[start:b]), _QUOTE_CLOSE]
        done = b
    return "".join(pieces) + html.escape(block[done:])


REFUSAL_NOTES = {
    "low_retrieval_score": "no passage in your documents is close enough to the question",
    "no_evidence": "no sentence of the retrieved passages answers the question well enough",
    "corrected": "you corrected an earlier answer to this question to the refusal",
}
