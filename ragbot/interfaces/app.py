"""The browser chat UI (Gradio). A thin layer: handlers translate between the page and RagBot.

No `from __future__ import annotations` here: Gradio reads the real type hints of event
handlers (gr.LikeData, gr.Request) to know what to inject.

Handlers are plain methods of `ChatHandlers` so tests can call them without a browser. Every
assistant message carries its answer's id in its metadata; a vote reads that id from the
message itself, so feedback can never land on the wrong answer.
"""


import hashlib
import html
import logging
import os
import re
import string
import shutil
import threading
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

from ragbot.answer.corrections import SAVED_CORRECTION
from ragbot.answer.evidence import quotes_by_passage
from ragbot.answer.generation import CITATION_MARK, HISTORY_TURNS, is_refusal, mark_citations, passage_header
from ragbot.bot import RagBot, searched_before
from ragbot.interfaces.conversations import ConversationError, Conversations
from ragbot.errors import RagbotError
from ragbot.learn.feedback import UnknownAnswerError
from ragbot.storage.files import write_atomic
from ragbot.ingest.readers import kind_of, readable_suffixes, supported_suffixes, title_from_name
from ragbot.text import EMPHASIS_MARK, counted, heading_title, is_table_row, opens_item, readable_line
from ragbot.types import Answer, Passage

MAX_K, MAX_TEMPERATURE = 20, 1.5  # the settings sliders' ranges
MAX_SESSIONS = 10_000  # sessions whose answer ids the server remembers
MAX_IDS_PER_SESSION = 5_000
MAX_QUESTION_CHARS = 1000  # longer is a pasted document, not a question
# The page waits this long for another process's ingest (e.g. `ragbot ingest` in a terminal),
# then says who holds the data dir instead of leaving the user with a silent spinner.
PAGE_WRITE_WAIT = 5.0
CHOOSE_FIRST = "Choose a document first."  # the library's Re-ingest or Delete with no document chosen
DOCUMENT_ROUTE = "/ragbot/documents"  # + "/<stored id>": a stored PDF, for its pages to open in the browser
BUSY = "Answering… Stop it to ask something else."
ANSWERING = "<p class='ragbot-muted'>Answering…</p>"
READY = "Ask about your documents…"
log = logging.getLogger("ragbot.interfaces.app")
DEFAULT_MAX_UPLOAD_MB = 50  # the max_upload_mb setting's default


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


def safe_upload_name(name: str) -> str:
    """A file name that cannot leave the uploads folder: no separators, no dots in front, no
    control or shell-special characters. Letters of any script are kept ("Übersicht.pdf")."""
    base = os.path.basename(name.replace("\\", "/"))
    base = "".join(ch if (ch.isalnum() or ch in "._ -()") else "_" for ch in base).strip(" .")
    stem, dot, suffix = base.rpartition(".")
    if dot and len(base.encode("utf-8")) > 200:  # file systems allow 255 bytes
        stem = stem.encode("utf-8")[: 200 - len(suffix.encode("utf-8"))].decode("utf-8", "ignore")
        base = f"{stem}.{suffix}"
    return base[:200] or "upload"


def _keep_upload(source: Path, folder: Path, name: str) -> tuple[Path, bool]:
    """Copy an upload into the uploads folder: (where it is kept, whether it is a new file). The
    file is created exclusively, so two uploads of one name at once cannot overwrite each other."""
    data_hash = _sha256(source)
    for _ in range(3):
        target = upload_target(folder, name, data_hash)
        try:
            with open(source, "rb") as src, open(target, "xb") as dst:
                shutil.copyfileobj(src, dst)
            return target, True
        except FileExistsError:
            if _sha256(target) == data_hash:
                return target, False  # the same file, kept already
    raise RagbotError(f"{name}: could not be stored under a name of its own; upload it again")


def upload_target(folder: Path, name: str, data_hash: str) -> Path:
    """Where an upload is kept: its own name, or, when an earlier upload with other content has
    that name, the name with the content's hash in it, so neither replaces the other."""
    target = folder / name
    if not target.exists() or _sha256(target) == data_hash:
        return target
    stem, dot, suffix = name.rpartition(".")
    return folder / (f"{stem}-{data_hash[:8]}.{suffix}" if dot else f"{name}-{data_hash[:8]}")


def _sha256(path: Path) -> str:
    from ragbot.models import sha256_file

    return sha256_file(path)


def render_sources(answer: Answer | None, show_all: bool, links: dict[str, str] | None = None,
                   searched: Sequence[str] | None = None) -> str:
    """HTML for the sources panel; every text from documents is escaped, never interpreted.
    `links` maps a PDF's source to the address that serves it (its pages open from there);
    `searched`: the documents the question was limited to (None: all)."""
    if answer is None:
        return "<p class='ragbot-muted'>Sources of the answer appear here.</p>"
    return render_panel(answer.passages, {c.n for c in answer.citations}, show_all, links, refused=answer.refused,
                        refusal_reason=answer.refusal_reason,
                        corrected_question=answer.corrected_question if answer.correction_of else None,
                        searched=searched, question=answer.question, quotes=quotes_by_passage(answer.answer))


def panel_heading(question: str | None) -> str:
    """Which answer the sources panel speaks of: after a reload, or with the chat scrolled to an
    older answer, nothing said it (helper-49's drive)."""
    return f"<p class='ragbot-for'>For the answer to “{html.escape(question)}”</p>" if question else ""


def render_panel(passages: list[Passage], cited: set[int], show_all: bool, links: dict[str, str] | None = None,
                 refused: bool = False, refusal_reason: str | None = None,
                 corrected_question: str | None = None, searched: Sequence[str] | None = None,
                 question: str | None = None, quotes: dict[int, list[str]] | None = None) -> str:
    """The sources panel of one answer: the question it answered, which documents were searched
    when the question was limited to some, then what a correction answered (and the passages it
    cites), why there is no source, or its passages. `quotes`: the answer's sentences by the
    passage number they cite (evidence.quotes_by_passage), marked where that passage holds them."""
    note = panel_heading(question)
    # A correction answers whatever documents were chosen (its passages may lie outside them).
    note += searched_note(searched, refused) if corrected_question is None else ""
    # A correction is the user's text, not a quote: nothing in its passages is marked as said.
    quotes = quotes if corrected_question is None else None
    return note + _panel(passages, cited, show_all, links, refused, refusal_reason, corrected_question, quotes)


NO_CONVERSATIONS = ("None yet in this browser: one is listed here once you ask. Each browser keeps its own "
                    "list; another browser's conversations do not show here.")


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


def conversation_list(choices: list[tuple[str, str]], chosen: str | None) -> dict:
    """The update of the conversation list: its choices, the one open, and when there are none,
    why (a new browser, or one whose site data was cleared, showed an empty box and no reason)."""
    import gradio as gr

    return gr.update(choices=choices, value=chosen, info="" if choices else NO_CONVERSATIONS)


def bounded_slider(minimum: float, maximum: float, **kwargs):
    """A slider whose value is brought into its range on the server. Typed into its number box,
    50 for "Passages to retrieve" (up to 20) showed 20 but was sent as 50, which Gradio refused
    with "Value 50 is greater than maximum value 20" on the next question and a traceback in the
    server's log, and the settings were not remembered. Clamped here, the value used is the one
    the box shows; a value that is not a number is refused."""
    import math

    import gradio as gr

    # The instance's own preprocess, not a subclass: Gradio's component metaclass writes a .pyi
    # file next to the module of any subclass (and would fail where the package is read-only).
    slider = gr.Slider(minimum, maximum, **kwargs)
    checked = slider.preprocess

    def preprocess(payload):
        # An emptied box arrives as None; Gradio let NaN through, and gave a TypeError for the rest.
        if isinstance(payload, bool) or not isinstance(payload, (int, float)) or math.isnan(payload):
            raise gr.Error(f"{slider.label} must be a number.")
        payload = min(max(payload, slider.minimum), slider.maximum)
        if slider.step:  # on the slider's steps, as dragging it gives (7.4 passages is 7)
            payload = slider.minimum + round((payload - slider.minimum) / slider.step) * slider.step
            payload = min(round(payload, 10), slider.maximum)
        return checked(payload)

    # Kept while nothing sends these sliders a new property: Gradio makes a block anew for a
    # session on a property update (a value alone is no property), which would drop the wrapper.
    slider.preprocess = preprocess
    return slider


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
           quotes: dict[int, list[str]] | None = None) -> str:
    if corrected_question is not None:
        # Not "your": without a login every browser of this ragbot shares them (helper-49's drive).
        note = (f"<p>{SAVED_CORRECTION.capitalize()}: it was given for the answer "
                f"to “{html.escape(corrected_question)}” and answers questions that ask the same: without "
                f"a login, for everyone who uses this ragbot; with one, for the person who gave it. To "
                f"replace it, give this answer a thumbs-down: with a new correction, that one answers; "
                f"without one, the documents answer again.</p>")
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


SAVED = "Saved "  # how every message of a saved comment or correction begins (ChatHandlers.saved_note)


SUGGESTIONS_SEARCHED = 30  # candidate suggestions searched for an empty conversation (example_questions)
NEWEST_TRIED = 5  # of them, from the document ingested last, tried first
FIRST_VISIT_SUGGESTIONS = "New here? Click a question about your documents to ask it"
NEW_CONVERSATION_SUGGESTIONS = "Click a question about your documents to ask it, or type your own"


class ChatHandlers:
    """The page's events. `session` names who is asking (the browser session, and the user when
    login is on): the server remembers which answer ids it gave to which session, and feedback
    is taken only for those, whatever ids the page sends back."""

    def __init__(self, bot: RagBot, max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB):
        self.bot = bot
        self.max_upload_bytes = max_upload_mb * 1024 * 1024
        self.uploads = (bot.settings.data_dir / "uploads").resolve()  # sources are stored absolute
        # Answer ids given to each session, most recent sessions last; bounded, so a server that
        # runs for months does not grow without end (an evicted session re-opens its conversation).
        self._issued: OrderedDict[str, dict[str, None]] = OrderedDict()  # session -> ids, oldest first
        self._issued_lock = threading.Lock()
        self.conversations = Conversations(bot.store)
        self._stops: dict[str, threading.Event] = {}  # the answer in progress, per session
        # The conversation each session's last New conversation opened, most recent last (bounded).
        self._started: OrderedDict[str, str] = OrderedDict()
        self.exports = (bot.settings.data_dir / "exports").resolve()

    def _issue(self, session: str, answer_id: str) -> None:
        with self._issued_lock:
            ids = self._issued.pop(session, {})
            ids[answer_id] = None
            while len(ids) > MAX_IDS_PER_SESSION:
                del ids[next(iter(ids))]
            self._issued[session] = ids
            while len(self._issued) > MAX_SESSIONS:
                self._issued.popitem(last=False)

    def _was_issued(self, session: str, answer_id: str) -> bool:
        with self._issued_lock:
            return answer_id in self._issued.get(session, ())

    def model_info(self) -> str:
        settings = self.bot.settings
        if settings.answer_mode == "extract":  # no generator runs: naming one would mislead
            tuned = self.bot.store.ranking_embedder()
            ranks = f" (passages ranked by your tuned embedder **{tuned}**)" if tuned else ""
            try:
                adapter, fitted = self.bot.answering_calibration()
            except RagbotError as exc:  # a damaged registry is told here, not a page that fails to load
                adapter, fitted = None, None
                log.warning("settings panel: %s", exc)
            threshold = (f"the threshold adapter **{adapter}** was calibrated with "
                         f"(**{fitted.threshold:.2f}**)" if fitted else
                         f"the `evidence_threshold` setting (**{settings.evidence_threshold:.2f}**)")
            return (f"Answers quote the sentence of your documents that answers best, with its source, found "
                    f"with **{settings.embedder}**{ranks}. No text is generated (answer mode: extract). "
                    f"A question is declined when no sentence comes close enough: {threshold}.")
        adapter = self.bot.generator.adapter if self.bot._generator else None
        return f"Answers are written by **{settings.generator}**, adapter: **{adapter or 'none'}**"

    @staticmethod
    def question_problem(question: str | None) -> str | None:
        """Why a question cannot be asked as typed, or None."""
        text = (question or "").strip()
        if not text:
            return "Type a question first."
        if len(text) > MAX_QUESTION_CHARS:
            return f"A question can be at most {MAX_QUESTION_CHARS} characters (this one has {len(text)})."
        return None

    def respond(
        self, question: str, history: list[dict], conversation_id: str, k: int, temperature: float, show_all: bool,
        session: str = "", user: str | None = None, sources: list[str] | None = None,
    ) -> Iterator[tuple[list[dict], str, str]]:
        """Stream an answer: yields (chat history, sources HTML, cleared input box). A question
        that cannot be asked (question_problem) changes nothing. `sources`: the documents to
        search (chosen_sources; None: all). The turn is one more than the stored answers in
        `history`, so a question asked again (regenerate, edit, with `history` cut before it)
        replaces that turn and the ones after it."""
        if self.question_problem(question):
            return
        question = question.strip()
        # Sent by the page (or any API client): kept to the ranges the page's sliders offer.
        k = min(max(int(k), 1), MAX_K)
        temperature = min(max(float(temperature), 0.0), MAX_TEMPERATURE)
        history = list(history or [])
        earlier_queries = self._earlier_queries(history, session)
        turn = turn_of(history)
        earlier = self._history_messages(history)
        history.append({"role": "user", "content": shown(question)})
        history.append({"role": "assistant", "content": ""})
        text = ""
        answer = None
        searched = None if sources is None else len(sources)  # as stored: reopened, the same count
        stop = self._stops[session] = threading.Event()  # Stop works from the moment the question shows
        try:
            yield history, ANSWERING, ""
            if not stop.is_set():
                query = self.bot.standalone_query(earlier_queries, question, sources)
                for event in self.bot.ask_stream(question, k=int(k), temperature=float(temperature),
                                                 conversation_id=conversation_id, turn=turn, retrieval_query=query,
                                                 history=earlier, stop=stop, user=user, sources=sources):
                    if isinstance(event, str):
                        text += event
                        history[-1] = {"role": "assistant", "content": shown_answer(text, searched=searched)}
                        yield history, ANSWERING, ""
                    else:
                        answer = event
        finally:
            if self._stops.get(session) is stop:  # a newer answer of this session keeps its own
                del self._stops[session]
        # A Stop that came after the answer was logged was too late: the answer is kept, and shown
        # as kept (it comes back after a reload), not as stopped (helper-76's drive).
        if answer is None or answer.id is None:  # stopped: the model ended at its next token; not kept
            assert stop.is_set()  # an answer nobody stopped is always logged (record=True)
            # The message says so itself: the page offers a vote under every answer, and this one
            # can take none (helper-76's drive). Its [n] stay text: no panel shows those passages.
            history[-1] = {"role": "assistant", "content": shown(text + " …") + STOPPED_MARK}
            yield history, "<p>Stopped: this answer was not finished, so it is not kept or rated.</p>", ""
            return
        self._issue(session, answer.id)
        history[-1] = {"role": "assistant", "content": shown_answer(answer.answer, corrected=bool(answer.correction_of),
                                                                    searched=searched),
                       "metadata": {"id": answer.id}}
        yield history, render_sources(answer, show_all, self.document_links(answer.passages), searched=sources), ""

    # -- what an answer rests on -----------------------------------------------------------------

    def document_links(self, passages: list[Passage]) -> dict[str, str]:
        """Where the page opens each PDF among `passages` (the document route, by stored id)."""
        links = {}
        for source in {p.source for p in passages}:
            doc = self.bot.store.document(source)
            if doc is not None and doc.kind == "pdf":
                links[source] = f"{DOCUMENT_ROUTE.lstrip('/')}/{doc.id}"
        return links

    def latest_sources(self, history: list[dict], session: str, show_all: bool) -> str:
        """The sources panel of the conversation's latest answer (a reopened or reloaded one), so
        its [n] can be read, and cited in a correction, without a click first."""
        last = next((i for i in range(len(history or []) - 1, -1, -1) if answer_id_of(history[i])), None)
        found = self.sources_of(history, last, session, show_all) if last is not None else None
        return found if found is not None else render_sources(None, show_all)

    def sources_of_answer(self, history: list[dict], answer_id: str | None, session: str, show_all: bool) -> str | None:
        """The sources panel of the chat's answer `answer_id` (the one chosen to comment on or
        correct); None when the chat shows no such answer, or this session was not given it."""
        index = next((i for i, message in enumerate(history or []) if answer_id and answer_id_of(message) == answer_id),
                     None)
        return None if index is None else self.sources_of(history, index, session, show_all)

    def shown_sources(self, history: list[dict], answer_id: str | None, session: str, show_all: bool) -> str:
        """The sources panel of the answer chosen to comment on (a click on an answer chooses
        it), else of the latest answer: what the panel shows, drawn again with `show_all`."""
        found = self.sources_of_answer(history, answer_id, session, show_all)
        return found if found is not None else self.latest_sources(history, session, show_all)

    def sources_of(self, history: list[dict], index, session: str, show_all: bool) -> str | None:
        """The sources panel for the answer at `index` of the chat (the one a user clicked), read
        from the answer log; None when that message is no answer this session was given."""
        answer_id = answer_id_of(message_at(history, index))
        if answer_id is None or not self._was_issued(session, answer_id):
            return None
        try:
            trace = self.bot.feedback.answer_trace(answer_id)
        except RagbotError:
            return None
        corrected_question = None
        if trace["params"].get("correction_of"):
            try:
                corrected_question = self.bot.feedback.answer_trace(trace["params"]["correction_of"])["question"]
            except RagbotError:
                corrected_question = ""
        chunks = self.bot.store.chunks([row["chunk_id"] for row in trace["passages"]])
        passages = [c.as_passage(row["score"], row["rank"], row["search_rank"])
                    for row in trace["passages"] if (c := chunks.get(row["chunk_id"])) is not None]
        cited = {row["rank"] for row in trace["passages"] if row["cited"]}
        gone = len(trace["passages"]) - len(passages)
        # A cited passage whose document was deleted or changed since: said so, by its number.
        gone_cited = sorted(row["rank"] for row in trace["passages"] if row["cited"] and row["chunk_id"] not in chunks)
        note = ""
        if gone_cited:
            numbers = ", ".join(f"[{n}]" for n in gone_cited)
            note = (f"<p>The passage{'s' if len(gone_cited) > 1 else ''} this answer cites ({numbers}) "
                    f"{'are' if len(gone_cited) > 1 else 'is'} no longer stored: the document was deleted or "
                    f"changed since the answer was given.</p>")
        if gone > len(gone_cited):
            note += f"<p class='ragbot-muted'>{gone - len(gone_cited)} other passage(s) of this answer are no longer stored.</p>"
        panel = render_panel(passages, cited, show_all, self.document_links(passages), refused=trace["refused"],
                             refusal_reason=trace["refusal_reason"], corrected_question=corrected_question,
                             searched=trace["params"].get("sources"), quotes=quotes_by_passage(trace["answer"]))
        # The note above already says the cited passages are gone: not also "cites no passage".
        return panel_heading(trace["question"]) + note + (panel.removesuffix(NO_PASSAGE_CITED) if gone_cited else panel)

    def chosen_sources(self, chosen: list[str] | None) -> tuple[list[str] | None, str | None]:
        """The documents a question may search, from what the page sends: (sources, problem).
        Nothing chosen: all documents. Only stored documents count, whatever the page sends."""
        if not chosen:
            return None, None
        stored = {d.source for d in self.bot.store.documents()}
        kept = list(dict.fromkeys(c for c in chosen if isinstance(c, str) and c in stored))
        if not kept:
            return None, "None of the chosen documents is stored any more: choose again, or clear the choice."
        return kept, None

    def limited_refusal(self, history: list[dict], sources: list[str] | None) -> str | None:
        """What the page says beside the latest answer in `history` when it is a refusal from
        the chosen documents alone (the chat's refusal read as the whole library's); None
        otherwise. The sources panel says the same above its passages."""
        answer_id = answer_id_of(history[-1] if history else None)
        if sources is None or answer_id is None:
            return None
        try:
            refused = self.bot.feedback.answer_trace(answer_id)["refused"]
        except RagbotError:
            return None
        return searched_sentence(sources, refused=True) if refused else None

    def started_new(self, session: str, conversation_id: str) -> None:
        """Remember that this session opened the empty conversation `conversation_id`, with its
        suggestions (New conversation, or the open conversation deleted)."""
        with self._issued_lock:
            self._started.pop(session, None)
            self._started[session] = conversation_id
            while len(self._started) > MAX_SESSIONS:
                self._started.popitem(last=False)

    def left_for_new(self, session: str, conversation_id: str) -> bool:
        """Whether this session has since opened a New conversation other than `conversation_id`:
        told by the server, whatever stale values the page sent with an event."""
        with self._issued_lock:
            started = self._started.get(session)
        return started is not None and started != conversation_id

    def answering(self, session: str) -> bool:
        """Whether an answer of this session is still being written."""
        return session in self._stops

    def request_stop(self, session: str) -> str:
        """Stop this session's answer in progress (the respond loop checks between pieces)."""
        stop = self._stops.get(session)
        if stop is None:
            return "Nothing to stop."
        stop.set()
        return "Stopping…"

    # -- conversations ------------------------------------------------------------------------

    def start_turn(self, conversation_id: str, owner: str, question: str, first: bool = False) -> str | None:
        """Record the turn in the owner's conversation (`first`: it is the first turn, asked
        anew or again); the reason it cannot be, or None."""
        try:
            self.conversations.touch(conversation_id, owner, question, first=first)
        except ConversationError:
            return "This conversation cannot be continued here; start a new one."
        return None

    def conversation_choices(self, owner: str) -> list[tuple[str, str]]:
        """(label, id) of the owner's conversations, newest first: its title and date. Two that
        would read alike (the same first question, the same minute) are told apart by a number
        after the title, the older one the lower: "What is RAG? (2) · 2026-12-03 09:14" (after
        the time, it read as part of it)."""
        import time

        listed = [(c.title, time.strftime('%Y-%m-%d %H:%M', time.localtime(c.updated_at)), c.id)
                  for c in self.conversations.list(owner)]
        alike = Counter((title, when) for title, when, _ in listed)
        left = Counter(alike)  # newest first: the first of a label gets its count
        choices = []
        for title, when, conversation_id in listed:
            number = f" ({left[title, when]})" if alike[title, when] > 1 else ""
            choices.append((f"{title}{number} · {when}", conversation_id))
            left[title, when] -= 1
        return choices

    def reopen(self, conversation_id: str, owner: str, session: str) -> list[dict]:
        """The conversation's messages as the chat shows them, its answers issued to this session
        (so they can be voted on again); empty for an id the owner does not have."""
        try:
            turns = self.conversations.turns(conversation_id, owner)
        except ConversationError:
            return []
        history = []
        for turn in turns:
            self._issue(session, turn.answer_id)
            history.append({"role": "user", "content": shown(turn.question)})
            history.append({"role": "assistant", "content": shown_answer(turn.answer, corrected=turn.corrected,
                                                                         searched=turn.chosen_documents_searched),
                            "metadata": {"id": turn.answer_id}})
        return history

    def example_questions(self, n: int = 3) -> list[str]:
        """The suggestions for an empty conversation (a first visit, a new one), made from the
        user's own documents the way tuning makes questions (their definitions and section
        headings), from different documents. The document ingested last is tried first, so a
        file just uploaded is suggested about (helper-79's drive: a library mostly of the shipped
        corpus suggested only from it).

        A suggestion must find the passage it was made from: first in the search, and closest
        of those found. "What is the loss?" (from "The loss is ...") found other documents'
        losses closer, and read as vague; no threshold is involved, only the search's own order."""
        import random

        from ragbot.learn.trainset import structural_questions

        drawn, latest = self.bot.store.sampled_chunk_ids(200, newest=50)
        ids = list(dict.fromkeys(latest + drawn))
        chunks = self.bot.store.chunks(ids)
        sampled = [chunks[i] for i in ids if i in chunks]
        candidates = [c for c in structural_questions(sampled, self.bot.abbreviations(),
                                                      self.bot.store.document_sections([c.id for c in sampled]))
                      if len(c.question) <= 120]
        random.shuffle(candidates)
        # Definitions first, a few of the newest document's before all; a bounded number
        # searched (one batch, when a conversation starts empty). One suggestion at most comes
        # from each document, so the newest's few leave room for the others'.
        candidates = sorted(candidates, key=lambda c: c.origin != "definition")
        of_newest = set(latest)
        first = [i for i, c in enumerate(candidates) if c.chunk_id in of_newest][:NEWEST_TRIED]
        candidates = ([candidates[i] for i in first]
                      + [c for i, c in enumerate(candidates) if i not in first])[:SUGGESTIONS_SEARCHED]
        found = self.bot.batch_search([c.question for c in candidates]) if candidates else []
        picked, sources = [], set()
        for candidate, passages in zip(candidates, found):
            source = chunks[candidate.chunk_id].source
            own = passages[0].chunk_id == candidate.chunk_id if passages else False
            if own and passages[0].score >= max(p.score for p in passages) and source not in sources:
                picked.append(candidate.question)
                sources.add(source)
            if len(picked) == n:
                break
        return picked

    # -- the document library -------------------------------------------------------------------

    def library(self) -> tuple[list[list], list[tuple[str, str]]]:
        """The stored documents as table rows, and as (label, source) choices."""
        import time

        rows, choices = [], []
        # By name, as a folder lists files (newest first put the shipped corpus in reverse order).
        stored = sorted(self.bot.store.documents(), key=lambda d: (Path(d.source).name.lower(), d.source))
        folders = distinct_folders([d.source for d in stored if not self._is_upload(d.source)])
        for d in stored:
            name = Path(d.source).name
            parent = Path(d.source).parent
            origin = "upload" if self._is_upload(d.source) else folders[d.source]
            # Three columns fit the side column (six made it scroll sideways): the kind, size and
            # the folder's last name together; the choices name as much of the folder as tells
            # documents of one name apart.
            pages = f", {counted(d.n_pages, 'page')}" if d.n_pages else ""
            chunks = counted(d.n_chunks, "chunk")
            where = origin if origin == "upload" else parent.name or origin
            rows.append([name, f"{d.kind}{pages}, {chunks}, from {where}",
                         time.strftime("%Y-%m-%d", time.localtime(d.ingested_at))])
            choices.append((f"{name} ({origin})", d.source))
        return rows, choices

    def shelf(self, searched, chosen) -> tuple[list[list], list[tuple[str, str]], str | None, list[str]]:
        """The library drawn again (rows, choices), with the documents chosen to search and the
        one chosen to act on as the page sends them, kept while they are stored (a re-ingest
        cleared the chosen document); anything else the page sends is dropped."""
        rows, choices = self.library()
        stored = {source for _, source in choices}
        searched = list(dict.fromkeys(s for s in (searched if isinstance(searched, list) else [])
                                      if isinstance(s, str) and s in stored))
        return rows, choices, chosen if isinstance(chosen, str) and chosen in stored else None, searched

    def document_in_row(self, index, row) -> str | None:
        """The stored document a clicked row of the library names, or None. The page sends the
        row's number and its cells as it shows them; both are checked against the library as
        stored now: the row at that number when its cells match (two documents of one name, from
        two folders of one name, read alike), else the one row that reads so (the library
        changed since the page drew it). Nothing else the page sends names a document."""
        rows, choices = self.library()
        at = index[0] if isinstance(index, (list, tuple)) and index and isinstance(index[0], int) else None
        if at is not None and 0 <= at < len(rows) and rows[at] == row:
            return choices[at][1]
        matching = [source for shown, (_, source) in zip(rows, choices) if shown == row]
        return matching[0] if len(matching) == 1 else None

    def has_documents(self) -> bool:
        return self.bot.store.counts()[0] > 0

    def _is_upload(self, source: str) -> bool:
        return Path(source).parent == self.uploads

    def _stored(self, source: str | None):
        """The stored document the page names, or None: a value the page sends back is checked."""
        return next((d for d in self.bot.store.documents() if d.source == source), None) if source else None

    def deletion_question(self, source: str | None) -> str | None:
        """What the page asks before deleting a stored document; None when it names none."""
        doc = self._stored(source)
        if doc is None:
            return None
        copy = " and ragbot's copy of the uploaded file" if self._is_upload(doc.source) else ""
        return f"Delete {literal(Path(doc.source).name)}? Its passages{copy} go; answers already given stay."

    def delete_document(self, source: str | None, searched: list[str] | None = None) -> str:
        """Delete a stored document; `searched`: the documents the page searches only (it is said
        when this one was among them, since the choice then changes without a word)."""
        doc = self._stored(source)
        if doc is None:
            return CHOOSE_FIRST
        try:
            report = self.bot.remove([doc.source], wait=PAGE_WRITE_WAIT)
        except RagbotError as exc:
            return f"{literal(Path(doc.source).name)} was not deleted: {exc}"
        except Exception as exc:  # a fault of ragbot's own: the page says what is stored, the log has the rest
            if self._stored(doc.source) is not None:
                return unexpected_error_message(exc, f"{literal(Path(doc.source).name)} was not deleted")
            if self._is_upload(doc.source):
                Path(doc.source).unlink(missing_ok=True)
            return unexpected_error_message(exc, f"{literal(Path(doc.source).name)} was deleted", done=True)
        if self._is_upload(doc.source):
            Path(doc.source).unlink(missing_ok=True)  # ragbot's own copy of an upload
        kept = "".join(f" Its copy {literal(path)} holds the same text and is searched in its place."
                       for path, _ in report.stood_in)
        kept += "".join(f" Its copy {literal(path)} could not be read ({literal(reason)}), so it is not searched."
                        for path, reason in report.failed)
        if isinstance(searched, list) and doc.source in searched:
            rest = [other for other in searched if other != doc.source and self._stored(other) is not None]
            kept += (" It was among the documents chosen to search; the others still are." if rest else
                     " It was the only document chosen to search: every document is searched now.")
        return f"Deleted {literal(Path(doc.source).name)}: its passages are no longer searched." + kept

    def reingest_document(self, source: str | None) -> str:
        doc = self._stored(source)
        if doc is None:
            return CHOOSE_FIRST
        if not Path(doc.source).is_file():
            return f"{literal(Path(doc.source).name)} is no longer on disk; delete it from the library instead."
        try:
            # ragbot's own copy of an upload goes if it turns out to be a copy: no record of it
            report = self.bot.ingest([doc.source], wait=PAGE_WRITE_WAIT, remember_copies=not self._is_upload(doc.source))
        except RagbotError as exc:
            return f"{literal(Path(doc.source).name)} was not re-ingested: {exc}"
        except Exception as exc:
            now = self._stored(doc.source)
            if now is not None and (now.sha256, now.ingested_at) == (doc.sha256, doc.ingested_at):
                return unexpected_error_message(exc, f"{literal(Path(doc.source).name)} was not re-ingested")
            return unexpected_error_message(exc, f"{literal(Path(doc.source).name)} was re-ingested", done=True)
        failed = "; ".join(reason for path, reason in report.failed if path == doc.source)
        # (The ingest may also report other files: copies of this document stored or recorded.)
        for _, original in (d for d in report.duplicates if d[0] == doc.source):  # stored before copies were told apart
            if self._is_upload(doc.source):
                Path(doc.source).unlink(missing_ok=True)
            return (f"{literal(Path(doc.source).name)} has the same content as {literal(original)}, which is "
                    f"stored: this copy was removed from the library.")
        name = literal(Path(doc.source).name)
        if failed:
            return f"{name} was not re-ingested: {literal(failed)}"
        if doc.source in report.unchanged:  # "unchanged 1" read as if the button had done nothing
            return f"{name} is as it was when ingested (the same bytes, read the same way): its passages are up to date."
        return f"{name} was read again and its passages replaced: {report.summary()}"

    def export_conversation(self, conversation_id: str, owner: str) -> Path | None:
        """The conversation written as Markdown, named after its title, in a folder named by its
        id (a random 128-bit name: the page serves only exports, and only to who knows the id)."""
        try:
            text = self.conversations.export(conversation_id, owner)
            title = self.conversations.title(conversation_id, owner)
        except ConversationError:
            return None
        folder = self._export_folder(conversation_id)
        if folder is None:
            return None
        for old in folder.glob("*.md"):  # a rename since the last export
            old.unlink(missing_ok=True)
        name = safe_upload_name(re.sub(r"[\\/]", "_", title))[:80].strip(" .") or "conversation"
        path = folder / f"{name}.md"
        write_atomic(path, text)
        return path

    def delete_conversation(self, conversation_id: str, owner: str) -> None:
        """Hide the conversation from its owner and remove its export (ConversationError if it
        is not the owner's)."""
        self.conversations.delete(conversation_id, owner)
        folder = self._export_folder(conversation_id)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            (self.exports / f"conversation-{conversation_id}.md").unlink(missing_ok=True)  # as exported before 2026-12-04

    def _export_folder(self, conversation_id: str) -> Path | None:
        """exports/<id>, for an id the page made (32 hex digits); None for any other."""
        if not re.fullmatch(r"[0-9a-f]{32}", conversation_id or ""):
            return None
        return self.exports / conversation_id

    def _earlier_queries(self, history: list[dict], session: str) -> list[str]:
        """What the conversation's earlier turns searched, as searched_before gives them to
        RagBot.standalone_query (which reads the last): for an answer this session was given, its
        query and refusal as the answer log holds them; for one it was not given (an id a client
        sent from elsewhere), the question as shown, refused if its answer shows the refusal. A
        stopped answer (not stored) and an empty question count as no turn. Read from the last
        turn back, so a long conversation reads one or two."""
        turns: list[tuple[str, dict]] = []  # (question, the answer message shown after it)
        for m in history:
            if not isinstance(m, dict):
                continue
            if m.get("role") == "user":
                turns.append((message_text(m).strip(), {}))
            elif m.get("role") == "assistant" and turns and not turns[-1][1]:
                turns[-1] = (turns[-1][0], m)
        read: list[tuple[str, bool]] = []  # newest first
        for question, shown_answer_ in reversed(turns):
            answer_id = answer_id_of(shown_answer_)
            if not question or not answer_id:
                continue
            if self._was_issued(session, answer_id):
                try:
                    trace = self.bot.feedback.answer_trace(answer_id)
                    read.append((trace["retrieval_query"], trace["refused"]))
                except UnknownAnswerError:  # a data dir put back from a backup under the running page
                    read.append((question, False))
            else:
                read.append((question, is_refusal(message_text(shown_answer_))))
            if not read[-1][1]:
                break
        return searched_before(reversed(read))

    @staticmethod
    def _history_messages(history: list[dict]) -> list[dict]:
        """The last turns of the conversation, as plain chat messages for the prompt."""
        messages = [{"role": m.get("role"), "content": message_text(m)} for m in history
                    if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
        return [m for m in messages if m["content"]][-2 * HISTORY_TURNS :]

    def on_like(self, history: list[dict], index, liked, user: str | None = None, session: str = "") -> str:
        """Record a vote from the like event: +1, -1, or removal ('' / None)."""
        answer_id = answer_id_of(message_at(history, index))
        if not answer_id:
            return "This message has no recorded answer to rate."
        if not self._was_issued(session, str(answer_id)):
            return self._refuse_foreign(answer_id, session, "vote")
        vote = 1 if liked is True else -1 if liked is False else None
        current = self.bot.feedback.feedback(answer_id)
        self.bot.feedback.set_feedback(answer_id, vote, current.comment if current else None,
                                       current.correction if current else None, user)
        said = {1: "Thanks: marked helpful.", -1: "Thanks: marked unhelpful.", None: "Vote removed."}[vote]
        # A vote on a served correction changes what answers next (corrections.py): said, as
        # nothing on the page showed the correction withdrawn (helper-57's drive).
        if self.bot.settings.use_corrections and not (current and current.correction) and self._served_correction(answer_id):
            if vote == -1:
                said += (" The saved correction it showed is withdrawn: asked again, the documents answer, "
                         "unless you save a new correction for this answer.")
            elif vote is None and current is not None and current.vote == -1:
                said += " The saved correction it showed answers again."
        return said

    def _served_correction(self, answer_id: str) -> bool:
        """Whether the answer was a saved correction, served (Answer.correction_of)."""
        try:
            return bool(self.bot.feedback.answer_trace(answer_id)["params"].get("correction_of"))
        except RagbotError:
            return False

    def saved_feedback(self, history: list[dict], answer_id: str | None, session: str = "") -> str:
        """What is saved with the chosen answer (its comment and correction), said under the
        choice as text: the boxes are emptied once saved, so choosing an answer showed nothing
        of what it had (helper-57's drive). Empty when nothing is, or for an answer this
        session was not given."""
        if not answer_id or answer_id not in {i for _, i in self.answer_choices(history)} \
                or not self._was_issued(session, str(answer_id)):
            return ""
        current = self.bot.feedback.feedback(str(answer_id))
        saved = [f"{name} “{literal(text)}”" for name, text in
                 (("comment", current.comment), ("correction", current.correction)) if text] if current else []
        if not saved:
            return ""
        it = "it" if len(saved) == 1 else "them"
        return f"Saved with this answer: {' and '.join(saved)}. To change {it}, write the new text above and save again."

    def votes(self, history: list[dict] | None, session: str = "", clicked=None) -> list[str | None]:
        """The chat's thumbs for each assistant message of `history`, in order, as stored:
        "Like", "Dislike" or None (the Chatbot's feedback_value). Every path that changes the
        chat's messages sends them, or the page would keep showing a vote where its message
        was (a reopened conversation's, a replaced turn's). Only answers issued to this session
        show theirs: the ids come from the page. `clicked`: the message a vote was just given on
        (the like event's index); "" there, not None, when nothing is stored for it."""
        shown: list[str | None] = []
        at = message_index(history, clicked) if clicked is not None else None
        for i, message in enumerate(history or []):
            if not isinstance(message, dict) or message.get("role") != "assistant":
                continue
            answer_id = answer_id_of(message)
            current = self.bot.feedback.feedback(answer_id) if answer_id and self._was_issued(session, answer_id) \
                else None
            vote = {1: "Like", -1: "Dislike"}.get(current.vote) if current else None
            shown.append("" if vote is None and i == at else vote)
        return shown

    def on_comment(self, history: list[dict], comment: str, correction: str, user: str | None = None,
                   session: str = "", answer_id: str | None = None) -> str:
        """Attach a comment and/or corrected answer to the chosen answer of the conversation
        (`answer_id`, an id the page sends back and so checked like any other), else the latest."""
        comment, correction = (comment or "").strip(), (correction or "").strip()
        if not answer_id:
            answer_id = next((answer_id_of(m) for m in reversed(history or []) if answer_id_of(m)), None)
        if answer_id is None:
            return "Ask a question first."
        if not comment and not correction:
            return "Write a comment or a corrected answer first."
        if not self._was_issued(session, str(answer_id)):
            return self._refuse_foreign(answer_id, session, "comment")
        current = self.bot.feedback.feedback(answer_id)
        # A field left empty keeps what was saved before (the page empties both once saved).
        self.bot.feedback.set_feedback(answer_id, current.vote if current else None,
                                       comment or (current.comment if current else None),
                                       correction or (current.correction if current else None), user)
        note = self.saved_note(history, str(answer_id), bool(comment), bool(correction))
        if not correction:
            return note
        return note + self._unknown_sources_note(str(answer_id), correction) + self._closer_source_note(
            str(answer_id), correction)

    def _closer_source_note(self, answer_id: str, correction: str) -> str:
        """A hint when the correction cites passages of the answer but another of its passages
        holds the sentence closest to what it says: the [n] may be a slip (the panel lists only
        the cited passages unless "Show all" is on), and the cited passage is what `ragbot tune
        --retriever` learns from. The correction is kept as written."""
        cited = self.bot.feedback.cited_chunks(answer_id, correction)  # the [n] that name a passage
        if not cited:
            return ""
        closest = self.bot.closest_passage(answer_id, correction)
        if closest is None or closest in cited:
            return ""
        return (f" Passage {literal(f'[{closest}]')} of that answer is closer to what your correction says than the "
                f"passage{'s' if len(cited) > 1 else ''} it cites: check the number (“Show all retrieved "
                f"passages” lists them all) and save again if it should cite {literal(f'[{closest}]')}.")

    def _unknown_sources_note(self, answer_id: str, correction: str) -> str:
        """A warning when the correction cites [n] that the answer did not show: those numbers
        name no passage, so they are not read as sources (the correction is kept as written)."""
        _, unknown = self.bot.feedback.passages_cited(answer_id, correction)
        if not unknown:
            return ""
        shown = len(self.bot.feedback.answer_trace(answer_id)["passages"])
        marks = ", ".join(literal(f"[{n}]") for n in unknown)  # the status line is Markdown
        # The Sources panel lists the cited passages only, unless Settings says to show all.
        had = ("had no passages" if not shown else f"had one passage, {literal('[1]')}" if shown == 1
               else f"had passages {literal('[1]')} to {literal(f'[{shown}]')} (“Show all retrieved passages” lists them)")
        one = len(unknown) == 1
        return (f" Its {marks} {'names' if one else 'name'} no passage: that answer {had}, so "
                f"{'it is' if one else 'they are'} not read as {'a source' if one else 'sources'}.")

    def saved_note(self, history: list[dict], answer_id: str, comment: bool, correction: bool) -> str:
        """What was saved, with which answer, and what a correction does from now on."""
        label = dict((i, text) for text, i in self.answer_choices(history)).get(answer_id)
        what = " and ".join(w for w, given in (("comment", comment), ("correction", correction)) if given)
        where = "with the chosen answer"
        if label:  # "2. When were GANs introduced?"
            n, question = label.split(". ", 1)
            where = f"with answer {n} (“{literal(question)}”)"
        note = f"{SAVED}your {what} {where}."
        if correction and self.bot.settings.use_corrections:
            note += self._correction_reach(answer_id)
        return note

    def _correction_reach(self, answer_id: str) -> str:
        """Which questions a correction answers from now on. A follow-up was searched together
        with what the conversation asked before it, and its correction answers only what asks the
        same read that way (corrections.py): asked on its own in a new conversation, the same words
        are answered from the documents (helper-60 expected the correction there, as the note
        promised)."""
        trace = self.bot.feedback.answer_trace(answer_id)
        asked, searched = trace["question"], trace["retrieval_query"]
        if searched == asked or not searched.endswith(asked):
            return " Questions that ask the same get your correction from now on."
        before = searched[: -len(asked)].strip()
        return (f" That question was read together with what the conversation asked before it (“{literal(before)}”): "
                "asked after a question like that, it gets your correction from now on.")

    @staticmethod
    def answer_choices(history: list[dict]) -> list[tuple[str, str]]:
        """The conversation's answers as (label, answer id), latest first: what a comment or
        correction can be attached to."""
        choices, question = [], ""
        for message in history or []:
            if not isinstance(message, dict):
                continue
            if message.get("role") == "user":
                question = message_text(message)
            elif answer_id_of(message):
                choices.append((f"{len(choices) + 1}. {question[:70]}", answer_id_of(message)))
        return list(reversed(choices))

    @staticmethod
    def _refuse_foreign(answer_id, session: str, what: str) -> str:
        log.warning("refused a %s for answer %.64r: not an answer this session was given", what, str(answer_id))
        return "Not saved: that answer was not given in this session."

    def on_upload(self, files: list[str] | None, stored: list[str] | None = None) -> Iterator[str]:
        """Ingest uploaded files with the same code and messages as `ragbot ingest`; the sources
        of the uploads stored (added or updated) are appended to `stored` before the last message."""
        if not files:
            yield "No file chosen."
            return
        self.uploads.mkdir(parents=True, exist_ok=True)
        accepted, problems, renamed = [], [], {}  # renamed: where an upload is kept -> the name it was sent with
        for path in files:
            source = Path(path)
            name = safe_upload_name(source.name)
            if kind_of(Path(name)) is None:
                problems.append(f"{name}: unsupported file type; supported: {supported_suffixes()}")
                _discard(source)
                continue
            if source.stat().st_size > self.max_upload_bytes:
                # MB as the upload box and Gradio's own limit count it: 2**20 bytes.
                problems.append(f"{name}: larger than the {self.max_upload_bytes // 2**20} MB upload limit")
                _discard(source)
                continue
            target, fresh = _keep_upload(source, self.uploads, name)
            _discard(source)  # Gradio's own copy: documents live in the data dir only
            if name != source.name:  # shortened, or characters a file name here cannot hold replaced
                renamed[str(target)] = source.name
            accepted.append((target, fresh))
        lines = [f"failed: {p}" for p in problems]
        if accepted:
            names = ", ".join(t.name for t, _ in accepted)
            yield "\n".join(lines + [f"Ingesting {len(accepted)} file(s): {names}…"])
            try:
                # An upload found to be a copy is not kept (below), so it is not recorded as one.
                report = self.bot.ingest([t for t, _ in accepted], wait=PAGE_WRITE_WAIT, remember_copies=False)
            except Exception as exc:
                kept = [t.name for t, _ in accepted if self._stored(str(t)) is not None]  # before a fault of ours
                for target, fresh in accepted:
                    if fresh and target.name not in kept:  # not ingested: ragbot's copy goes (an earlier
                        target.unlink(missing_ok=True)       # upload under that name stays)
                if isinstance(exc, RagbotError):
                    said = f"failed: {exc}"
                elif kept:
                    said = unexpected_error_message(exc, f"Stored {', '.join(kept)}", done=True)
                else:
                    said = unexpected_error_message(exc, f"Not ingested: {names}")
                yield "\n".join(lines + [said])
                return
            new = {str(t) for t, fresh in accepted if fresh}
            for path, reason in report.failed:
                if path in new:  # an earlier upload under another name is never touched
                    Path(path).unlink(missing_ok=True)
                lines.append(f"failed: {Path(path).name}: {reason}")
            sent = {str(t) for t, _ in accepted}  # (copies of a changed document may be reported too)
            for path, original in (d for d in report.duplicates if d[0] in sent):
                if path in new:  # not stored, so ragbot's copy of it goes too
                    Path(path).unlink(missing_ok=True)
                lines.append(f"not stored twice: {Path(path).name} has the same content as {original}, "
                             f"which is stored; this upload was not kept")
            for kind, paths in (("added", report.added), ("updated", report.updated),
                                ("already stored as it is, its passages up to date", report.unchanged)):
                if paths:
                    lines.append(f"{kind}: " + ", ".join(Path(p).name for p in paths))
            if report.added or report.updated:  # counts and speed: "0 chunks in 0.0s" said nothing
                lines.append(report.summary())
            for path in report.added + report.updated + report.unchanged:  # the name a stored upload has
                if path in renamed:
                    lines.append(f"renamed: {renamed[path]} is stored as {Path(path).name}")
            if stored is not None:
                stored.extend(p for p in report.added + report.updated if p in sent)
        yield "\n".join(lines)


def gradio_upload_dir() -> Path:
    import tempfile

    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def _discard(path: Path) -> None:
    """Remove Gradio's temporary copy of an upload (and the folder Gradio made for it); a path
    outside Gradio's upload folder is left alone."""
    try:
        path = Path(path).resolve()
        if not path.is_relative_to(gradio_upload_dir()):
            return
        path.unlink(missing_ok=True)
        path.parent.rmdir()  # only when empty
    except OSError:
        pass


CSS = """
/* Gradio's theme loads Source Sans Pro at 400 and 600 only, so text set bold (700: a passage's
   heading, a [n], a correction's mark) took some glyphs from another face, "A" among them. Its
   bold face ships with Gradio: it is declared here too. */
@font-face { font-family: "Source Sans Pro"; font-weight: 700; font-style: normal;
  src: url("static/fonts/SourceSansPro/SourceSansPro-Bold.woff2") format("woff2"); }
.ragbot-muted { color: #6b7280; font-size: 0.9em; }
.ragbot-stopped { color: #6b7280; font-size: 0.9em; font-style: italic; }
.ragbot-passage mark.ragbot-quote { background: #fde68a; color: #1f2937; border-radius: 2px; }
.ragbot-for { color: #6b7280; font-size: 0.9em; font-style: italic; }
.ragbot-correction { color: #92400e; font-weight: 600; }
/* A file the page refuses to send (a type ragbot does not read, or over the size limit) or whose
   upload fails is named in Gradio's notice; Gradio also left a red "Error" over the upload box,
   covering where files are dropped, until its ✕ was found. The notice says it all (any error of
   this box is told by its notice alone), and the box stays ready for the next file. Upload
   progress is drawn elsewhere, so it still shows. */
#upload [data-testid="status-tracker"]:has(> .error) { display: none; }
/* The conversations column comes last in the page (a keyboard and a screen reader reach the chat
   first, then its sources) but stands first, on the left, where the columns fit side by side. On
   a phone they stand one under another in the page's order: the chat and its question box first
   (the conversations, listed first, pushed them down). */
@media (min-width: 641px) {
  #conversations-column { order: -1; }
}
.ragbot-searched { border-left: 3px solid #60a5fa; padding-left: 8px; }
/* Gradio sets `.prose blockquote { margin: 24px 0 !important }`, so each passage's header stood
   closer to the passage above than to its own: only an !important rule of ours (Gradio scopes it
   to its container, so it is the more specific) puts the space between passages instead. */
.ragbot-source { margin-bottom: 14px; }
/* A run without spaces (a contents page's dot leaders "Vision……………1") wraps instead of running
   past the column's edge. */
.ragbot-source blockquote.ragbot-passage { margin: 4px 0 0 0 !important; padding-left: 8px;
  border-left: 3px solid #d1d5db; white-space: pre-wrap; overflow-wrap: anywhere; }
.ragbot-source.ragbot-highlight { background: #fef9c3; outline: 2px solid #facc15; }
/* A citation's number is its link: told by the link colour, at its brackets' weight (bold, the
   digit looked larger than the brackets round it). */
a.ragbot-cite { text-decoration: none; color: var(--link-text-color); }
.ragbot-more > summary { cursor: pointer; list-style: none; }
.ragbot-more > summary::-webkit-details-marker { display: none; }
.ragbot-more[open] > summary { display: none; }
/* The library's cells in the page's own font, a size smaller (Gradio's table font is monospace
   14px: a row wrapped to four lines, and four documents filled the box). The cells shown are the
   virtual table's divs; Gradio's <td>s only measure. */
#documents .cell-wrap span.text { font-family: var(--font) !important; font-size: var(--text-sm) !important;
  line-height: 1.35 !important; overflow-wrap: anywhere; }
/* Scrolled down, the table shows a "back to the top" button over its bottom right corner, where it
   covered the last row's date: the rows end a button's height above the table's bottom instead. */
#documents .virtual-body { margin-bottom: 44px; }
/* Gradio's file row keeps a name on one line and clips it: in the narrow column an export's
   name showed as ".n". The name wraps there instead, the size and download link below it. */
#exported tr.file { display: flex; flex-wrap: wrap; }
#exported td.filename { white-space: normal !important; overflow-wrap: anywhere; width: 100%; max-width: none; }
#exported td.filename .stem, #exported td.filename .ext { white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; }
/* Gradio lays the stem and the extension side by side (a flex row): a stem that wrapped left ".md"
   a column of its own, one letter per line. They run on as one name, with no space between (the
   markup's spaces between the two take no room at font size 0). */
#exported td.filename { display: block !important; font-size: 0 !important; }
#exported td.filename .stem, #exported td.filename .ext { display: inline !important; font-size: var(--text-md) !important; }
/* A conversation named by a question with a long word (a URL) ran out of its column, clipped:
   the title wraps anywhere instead. */
#conversations label { max-width: 100%; min-width: 0; }
#conversations label > span { min-width: 0; overflow-wrap: anywhere; }
/* Gradio floats the chat's toolbar (clear, copy all) over the top right corner of the scrolled
   messages, so it covered a question's bubble and its buttons there. It gets a strip of its own
   above the messages instead: the chat box is a column, the messages fill what is left. */
#chat .wrapper:has(> .top-panel) { display: flex; flex-direction: column; }
#chat .wrapper > .top-panel { position: static; align-self: flex-end; flex: none; }
#chat .wrapper > .bubble-wrap { flex: 1 1 auto; min-height: 0; }
"""


def scrolled_into_view(element_id: str) -> str:
    """Browser code that brings the element into the window once the page has drawn it: the
    "Yes, delete it" buttons appeared below the fold of the side column, unseen. An element
    already in view stays where it is."""
    return (f"() => {{ setTimeout(() => {{ const e = document.getElementById({element_id!r}); "
            f"const r = e && e.getBoundingClientRect(); "
            f"if (r && (r.top < 0 || r.bottom > window.innerHeight)) e.scrollIntoView({{block: 'center'}}); "
            f"}}, 100); }}")


def session_of(request) -> str:
    """Who is asking: the logged-in user (when login is on) and the browser session."""
    return f"{getattr(request, 'username', None) or ''}|{getattr(request, 'session_hash', None) or ''}"


_TOKEN = re.compile(r"^[0-9a-f]{32}$")


def browser_secret(data_dir: Path) -> str:
    """The key Gradio encrypts the browser's saved state with, made once per data dir. It is not
    a password (Gradio sends it to the page); it only has to outlive a server restart."""
    import secrets

    from ragbot.storage.files import write_atomic

    path = data_dir / "browser-state.key"
    try:
        key = path.read_text(encoding="ascii").strip()
        if _TOKEN.match(key):
            return key
    except (OSError, UnicodeDecodeError):
        pass
    key = secrets.token_hex(16)
    write_atomic(path, key)
    return key


def session_conversation(request) -> str:
    """The conversation of a session that no page load gave one (an API client's): one id per
    session, of the shape the page's ids have."""
    return hashlib.sha256(f"conversation|{session_of(request)}".encode()).hexdigest()[:32]


def owner_of(request, browser: dict | None) -> str:
    """Whose conversations these are: the logged-in user, else the browser's own random token
    (kept in its local storage; a token of another shape is not trusted and gives nothing)."""
    user = getattr(request, "username", None)
    if user:
        return f"user:{user}"
    token = str((browser or {}).get("owner") or "")
    return f"browser:{token}" if _TOKEN.match(token) else f"session:{getattr(request, 'session_hash', '')}"


def remembered(saved: dict | None, **changes) -> dict | None:
    """What this browser keeps, with `changes`; None (leave it as it is) while the page holds no
    owner token yet: a change written then would replace the whole record, and the browser would
    lose its token and with it its conversations."""
    if not _TOKEN.match(str((saved or {}).get("owner") or "")):
        return None
    return {**saved, **changes}


def build_app(bot: RagBot, max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB):
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    handlers = ChatHandlers(bot, max_upload_mb)

    def empty_chat():
        """No messages, and no thumbs shown (see ChatHandlers.votes)."""
        return gr.update(value=[], feedback_value=[])

    def keep(saved, **changes):
        """The browser's record with `changes`, or no change at all (see remembered)."""
        record = remembered(saved, **changes)
        return gr.skip() if record is None else record

    def deletion_check(name: str):
        """The question asked before a delete, standing above its two buttons, hidden until
        asked: (box, question, yes, no), their elem_ids `name`-check, -question, -yes, -no."""
        with gr.Column(visible=False, elem_id=f"{name}-check") as box:
            asked = gr.Markdown(elem_id=f"{name}-question")
            with gr.Row():
                yes = gr.Button("Yes, delete it", variant="stop", elem_id=f"{name}-yes")
                no = gr.Button("Keep it", elem_id=f"{name}-no")
        return box, asked, yes, no

    with gr.Blocks(title="ragbot", analytics_enabled=False) as app:
        # Set by on_load alone. A callable default would have Gradio attach a load event of its
        # own that sets a fresh id, racing on_load's: when it finished last, the page went on in
        # a new conversation with the old one still shown (the browser tests' rare "answers in 2
        # conversations" and "Not renamed: no such conversation").
        conversation = gr.State(None)
        # What this browser keeps between visits: its owner token, the open conversation, settings.
        # Gradio encrypts it with this secret: one per data dir, so it still reads after a restart.
        browser = gr.BrowserState({}, storage_key="ragbot", secret=browser_secret(bot.settings.data_dir))
        gr.Markdown("## ragbot — answers from your documents, with sources")
        with gr.Row():
            with gr.Column(scale=3, elem_id="chat-column"):
                # Regenerate (the retry button) and edit-and-resend (a question's pencil) ask again
                # from that question on; what followed it is replaced, as in the stored conversation.
                # Its label is not shown: it floated over the top message once the chat scrolled.
                # No share button: it posts to Hugging Face Spaces, which a local chat is not
                # (it had no label and did nothing); copy, copy-all and the trash stay.
                chat = gr.Chatbot(label="Chat", show_label=False, height=480, sanitize_html=True,
                                  render_markdown=False, elem_id="chat", feedback_options=("Like", "Dislike"),
                                  editable="user", buttons=["copy", "copy_all"])
                # Usable once the page has loaded its conversation (on_load), so a first question
                # always lands in this browser's own conversation.
                # The browser cuts a longer paste at the limit without a word: the limit is shown.
                question = gr.Textbox(label="Question", placeholder="Loading…", elem_id="question",
                                      max_length=MAX_QUESTION_CHARS, interactive=False,
                                      info=question_info([]))
                with gr.Row():
                    send = gr.Button("Ask", variant="primary", elem_id="ask", interactive=False)
                    stop = gr.Button("Stop", elem_id="stop")
                    new_chat = gr.Button("New conversation")
                # A click asks the question (it only filled the box, and a newcomer waited for an answer).
                examples = gr.Radio(choices=[], label=FIRST_VISIT_SUGGESTIONS, elem_id="examples", visible=False)
                status = gr.Markdown(elem_id="status")
                with gr.Accordion("Comment on or correct an answer", open=False):
                    which = gr.Dropdown(choices=[], label="Answer (latest first)", elem_id="which-answer")
                    comment = gr.Textbox(label="Comment", elem_id="comment")
                    correction = gr.Textbox(label="Corrected answer", elem_id="correction",
                                            placeholder="The right answer; cite the source that holds it as [n]",
                                            info="[n] is a passage's number in Sources. The passages the answer "
                                                 "did not cite are there too under Settings: Show all retrieved "
                                                 "passages.")
                    saved_feedback = gr.Markdown(elem_id="saved-feedback")
                    save_comment = gr.Button("Save")
            with gr.Column(scale=2, elem_id="sources-column"):
                gr.Markdown("### Sources")
                sources = gr.HTML(render_sources(None, False), elem_id="sources")
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    k = bounded_slider(1, MAX_K, value=min(bot.settings.top_k, MAX_K), step=1, label="Passages to retrieve",
                                       elem_id="passages-to-retrieve")
                    show_all = gr.Checkbox(False, label="Show all retrieved passages", elem_id="show-all")
                    # Only a generator samples: quoted answers have no temperature.
                    temperature = bounded_slider(0.0, MAX_TEMPERATURE, value=bot.settings.temperature, step=0.05,
                                                 elem_id="temperature",
                                            label="Temperature", visible=bot.settings.answer_mode == "generate")
                    info = gr.Markdown(handlers.model_info())
                with gr.Accordion("Your documents", open=False, elem_id="library") as library_panel:
                    # Widths in shares of the side column, and long file names broken anywhere
                    # (CSS): with its own widths the table ran each column as wide as the column.
                    documents = gr.Dataframe(headers=["document", "kind, size, from", "added"], column_widths=["40%", "37%", "23%"],
                                             interactive=False, elem_id="documents", wrap=True)
                    search_in = gr.Dropdown(choices=[], value=[], multiselect=True, elem_id="search-in",
                                            label=search_label([]))
                    chosen_doc = gr.Dropdown(choices=[], label="Document", elem_id="document-choice",
                                             info="Choose it here, or click its row in the table.")
                    with gr.Row():
                        reingest = gr.Button("Re-ingest", elem_id="reingest")
                        delete_doc = gr.Button("Delete from ragbot", variant="stop", elem_id="delete-document")
                    # Asks first, as deleting a conversation does: an upload's copy goes with it.
                    delete_doc_check, delete_doc_question, delete_doc_yes, delete_doc_no = deletion_check(
                        "delete-document")
                    doc_to_delete = gr.State(None)
                    library_status = gr.Markdown(elem_id="library-status")
                # Open on a first visit to an empty library, where adding documents comes first;
                # closed once there are documents, so the sources stay in view (on_load sets it).
                with gr.Accordion("Add documents", open=False, elem_id="add-documents") as adder:
                    # file_types: the file dialog offers what ragbot reads, and the page names a
                    # dropped file of another type instead of sending it (on_upload still checks).
                    # Gradio checks the types on the server too: a client other than the page that
                    # sends such a file has its whole batch refused, with Gradio's message.
                    upload = gr.File(file_count="multiple", label=f"PDF, Word (.docx), Markdown, text or HTML (max {max_upload_mb} MB each)",
                                     file_types=readable_suffixes(), elem_id="upload")
                    upload_status = gr.Textbox(label="Upload status", interactive=False, lines=3, elem_id="upload-status",
                                               placeholder="The result of each upload shows here.")

            # Last in the page, first on a wide screen (CSS): a keyboard and a screen reader reach
            # the chat first, then its sources, as the columns stand on a phone, one under another.
            with gr.Column(scale=1, min_width=220, elem_id="conversations-column"):
                past = gr.Radio(choices=[], label="Conversations", elem_id="conversations")
                with gr.Accordion("Rename, export or delete", open=False, elem_id="conversation-tools"):
                    new_title = gr.Textbox(label="New title", elem_id="new-title", max_length=80)
                    rename = gr.Button("Rename", elem_id="rename")
                    export = gr.Button("Export as Markdown", elem_id="export")
                    # Shown once there is a file: empty, it looked like a box to drop files on.
                    exported = gr.File(label="Export", interactive=False, elem_id="exported", visible=False)
                    delete = gr.Button("Delete this conversation", variant="stop", elem_id="delete")
                    # What became of a rename, an export or a delete, said by the buttons (it was
                    # said under the chat, out of sight of the buttons clicked).
                    conversation_status = gr.Markdown(elem_id="conversation-status")
                    # Deleting asks first (it cannot be undone on the page): which conversation
                    # the question was about is kept, so a switch meanwhile deletes nothing. The
                    # question stands above its buttons (it was in the status line, under the chat).
                    delete_check, delete_question, delete_yes, delete_no = deletion_check("delete")
                    to_delete = gr.State(None)

        ask_inputs = [question, chat, conversation, k, temperature, show_all]
        ask_outputs = [chat, sources, question]

        def answer(question, history, conversation_id, k, temperature, show_all, saved, chosen, request,
                   from_box=True):
            """Stream the answer to `question` after `history`; the box says why it is closed
            meanwhile (the release step opens it again). A question from the box empties it; one
            asked again (regenerate, edit) leaves what is being typed there."""
            problem = handlers.question_problem(question)
            sources_, not_stored = handlers.chosen_sources(chosen)
            problem = problem or not_stored
            conversation_id = conversation_id or session_conversation(request)
            if not problem and handlers.answering(session_of(request)):
                problem = "An answer is still being written: wait for it, or stop it first."
            if not problem:
                problem = handlers.start_turn(conversation_id, owner_of(request, saved), question.strip(),
                                              first=turn_of(history) == 1)
            if problem:  # said in a notice; the conversation, its sources and the box stay as they are
                gr.Warning(notice(problem))
                yield gr.skip(), gr.skip(), gr.skip()
                return
            first_yield, last = True, []
            for history_, html_, _ in handlers.respond(question, history, conversation_id, k, temperature, show_all,
                                                       session=session_of(request),
                                                       user=getattr(request, "username", None), sources=sources_):
                box, shown_ = gr.skip(), history_
                if first_yield:  # the turns kept keep their thumbs; a replaced turn's go with it
                    box = gr.update(interactive=False, placeholder=BUSY, **({"value": ""} if from_box else {}))
                    shown_ = gr.update(value=history_, feedback_value=handlers.votes(history_, session_of(request)))
                first_yield, last = False, history_
                yield shown_, html_, box
            limited = handlers.limited_refusal(last, sources_)
            if limited:
                gr.Info(notice(limited))

        def respond(question, history, conversation_id, k, temperature, show_all, saved, chosen=None,
                    request: gr.Request = None):
            yield from answer(question, history, conversation_id, k, temperature, show_all, saved, chosen, request)

        def asked_again(history, data, question, conversation_id, k, temperature, show_all, saved, chosen, request):
            """Ask `question` in the place of the question at data.index: that turn and every
            turn after it are replaced."""
            at = message_index(history, data.index)  # by position: the same question may be asked twice
            if at is None or history[at].get("role") != "user":
                yield gr.skip(), gr.skip(), gr.skip()
                return
            yield from answer(question, list(history)[:at], conversation_id, k, temperature, show_all, saved, chosen,
                              request, from_box=False)

        def regenerate(history, conversation_id, k, temperature, show_all, saved, chosen, data: gr.RetryData,
                       request: gr.Request):
            asked = message_at(history, data.index)
            yield from asked_again(history, data, message_text(asked or {}), conversation_id, k, temperature,
                                   show_all, saved, chosen, request)

        def edit_and_resend(history, conversation_id, k, temperature, show_all, saved, chosen, data: gr.EditData,
                            request: gr.Request):
            # The edit box starts from the question as the page holds it, escaped (a question has
            # no markup of ours): the entities are read back as the characters they stand for.
            edited = html.unescape(data.value) if isinstance(data.value, str) else message_text({"content": data.value})
            yield from asked_again(history, data, edited, conversation_id, k, temperature, show_all, saved, chosen,
                                   request)

        def release(request: gr.Request):
            """Open the question box again, unless another answer of this session is still being
            written (a regenerate refused meanwhile must not open it)."""
            if handlers.answering(session_of(request)):
                return gr.skip()
            return gr.update(interactive=True, placeholder=READY)

        def listed(conversation_id, saved, request: gr.Request):
            """The conversation list, with the open one selected and remembered by the browser."""
            owner = owner_of(request, saved)
            choices = handlers.conversation_choices(owner)
            chosen = conversation_id if any(c[1] == conversation_id for c in choices) else None
            return conversation_list(choices, chosen), keep(saved, conversation=conversation_id)

        def suggested(label: str):
            """The suggestions for an empty conversation (ChatHandlers.example_questions), under
            `label`; hidden when the documents give none."""
            choices = handlers.example_questions()
            return gr.update(choices=choices, value=None, label=label, visible=bool(choices))

        def ask_suggestion(chosen, history, conversation_id, k, temperature, show_all, saved, searched,
                           request: gr.Request):
            """A clicked suggestion is asked (Gradio sends `input` only for a radio checked), as
            a question asked again is: what is being typed in the box stays. The suggestions go."""
            hide = gr.update(visible=False)
            for shown_ in answer(chosen, history, conversation_id, k, temperature, show_all, saved, searched,
                                 request, from_box=False):
                yield *shown_, hide
                hide = gr.skip()

        def suggestions_after_answer(history, conversation_id, request: gr.Request):
            """Asked: the suggestions go, unless a New conversation came meanwhile. One clicked
            while this answer's last steps were on their way showed its suggestions, and then this
            step hid them (CI rehearsals of 2026-12-07, once in several runs each). The page sends
            this step the chat as it was when the step was sent, which can be before the New
            conversation emptied it; so the server's own record decides (left_for_new)."""
            if not history or handlers.left_for_new(session_of(request), str(conversation_id or "")):
                return gr.skip()
            return gr.update(visible=False)

        again_inputs = [chat, conversation, k, temperature, show_all, browser, search_in]
        for event in (send.click(respond, ask_inputs + [browser, search_in], ask_outputs, api_name="respond"),
                      question.submit(respond, ask_inputs + [browser, search_in], ask_outputs, api_name=False),
                      chat.retry(regenerate, again_inputs, ask_outputs, api_name=False),
                      chat.edit(edit_and_resend, again_inputs, ask_outputs, api_name=False),
                      examples.input(ask_suggestion, [examples, *again_inputs], ask_outputs + [examples],
                                     api_name=False)):
            # The list first: a conversation clicked once the box is open is not then overwritten
            # by a list (and a remembered conversation) still on its way.
            event.then(listed, [conversation, browser], [past, browser], api_name=False
                       ).then(release, None, question, api_name=False).then(lambda: ("", ""), None, [status, conversation_status], api_name=False  # stale
                       ).then(handlers.model_info, None, info, api_name=False
                       ).then(suggestions_after_answer, [chat, conversation], examples, api_name=False)

        def show_sources_of(history, show, data: gr.SelectData, request: gr.Request):
            """A click on an answer (or one of its [n]) shows that answer's sources, and makes it
            the answer to comment on: the panel and the comment box speak of the same answer."""
            found = handlers.sources_of(history, data.index, session_of(request), show)
            if found is None:
                return gr.skip(), gr.skip()
            return found, gr.update(value=answer_id_of(message_at(history, data.index)))

        chat.select(show_sources_of, [chat, show_all], [sources, which], api_name=False)

        def stop_answer(request: gr.Request):
            return handlers.request_stop(session_of(request))

        stop.click(stop_answer, None, status, api_name=False)

        def on_load(saved, request: gr.Request):
            """A reload or a server restart: the browser's open conversation comes back, with its
            settings; the first visit gets its owner token. An empty one (a first visit, or a New
            conversation not yet asked in) comes with its suggestions: "New here?" only on a first
            visit (no owner token yet), not after a browser deleted its last conversation."""
            saved = dict(saved or {})
            first_visit = not _TOKEN.match(str(saved.get("owner") or ""))
            if first_visit:
                saved["owner"] = uuid.uuid4().hex
            owner = owner_of(request, saved)
            history = handlers.reopen(str(saved.get("conversation") or ""), owner, session_of(request))
            current = str(saved["conversation"]) if history else uuid.uuid4().hex
            saved["conversation"] = current
            choices = handlers.conversation_choices(owner)
            shown_ = gr.update(value=history, feedback_value=handlers.votes(history, session_of(request)))
            return (saved, current, shown_, conversation_list(choices, current if history else None),
                    saved.get("k", bot.settings.top_k), bool(saved.get("show_all", False)),
                    saved.get("temperature", bot.settings.temperature),
                    gr.update(interactive=True, placeholder=READY), gr.update(interactive=True),
                    gr.update(visible=False) if history
                    else suggested(FIRST_VISIT_SUGGESTIONS if first_visit else NEW_CONVERSATION_SUGGESTIONS))

        def loaded_sources(history, show, request: gr.Request):
            return handlers.latest_sources(history, session_of(request), show)

        app.load(on_load, browser, [browser, conversation, chat, past, k, show_all, temperature, question, send,
                                    examples]).then(loaded_sources, [chat, show_all], sources, api_name=False)

        left_outputs = [exported, delete_check, to_delete, conversation_status]

        def conversation_left(said: str = ""):
            """For left_outputs: what spoke of the conversation left (its export, a delete
            question, what became of a rename), and `said` in its place."""
            return gr.update(value=None, visible=False), gr.update(visible=False), None, said

        def open_past(chosen, saved, show, request: gr.Request):
            history = handlers.reopen(str(chosen or ""), owner_of(request, saved), session_of(request))
            if not history:
                return (gr.skip(),) * 9
            shown_ = gr.update(value=history, feedback_value=handlers.votes(history, session_of(request)))
            return shown_, chosen, handlers.latest_sources(history, session_of(request), show), \
                keep(saved, conversation=chosen), *conversation_left(), gr.update(visible=False)

        past.input(open_past, [past, browser, show_all], [chat, conversation, sources, browser, *left_outputs, examples])

        def rename_current(conversation_id, title, saved, request: gr.Request):
            try:
                handlers.conversations.rename(conversation_id, owner_of(request, saved), title)
            except ConversationError as exc:
                return gr.skip(), f"Not renamed: {exc}.", gr.skip()
            choices = handlers.conversation_choices(owner_of(request, saved))
            return conversation_list(choices, conversation_id), "Renamed.", ""

        rename.click(rename_current, [conversation, new_title, browser], [past, conversation_status, new_title])

        def export_current(conversation_id, saved, request: gr.Request):
            path = handlers.export_conversation(conversation_id, owner_of(request, saved))
            if path is None:
                return gr.update(value=None, visible=False), "Nothing to export: ask a question first."
            # Said, as a rename and a delete are: the file box alone looked like nothing had happened.
            return (gr.update(value=str(path), visible=True),
                    f"Exported as {literal(path.name)}: the ⇣ beside its size above downloads it.")

        export.click(export_current, [conversation, browser], [exported, conversation_status])

        def ask_to_delete(conversation_id, saved, request: gr.Request):
            try:
                title = handlers.conversations.title(conversation_id, owner_of(request, saved))
            except ConversationError:
                return gr.update(visible=False), None, "Nothing to delete: ask a question first.", ""
            return (gr.update(visible=True), conversation_id, "",
                    f"Delete “{literal(title)}”? It leaves your list; its answers stay in the answer log.")

        delete.click(ask_to_delete, [conversation, browser], [delete_check, to_delete, conversation_status,
                                                               delete_question]).then(
            None, None, None, js=scrolled_into_view("delete-check"))

        def delete_current(conversation_id, chosen, saved, request: gr.Request):
            owner = owner_of(request, saved)
            if chosen != conversation_id:
                return (*(gr.skip(),) * 7, gr.update(visible=False), None,
                        "Another conversation is open now: nothing deleted.", gr.skip())
            try:
                handlers.delete_conversation(conversation_id, owner)
            except ConversationError:
                return (*(gr.skip(),) * 7, gr.update(visible=False), None,
                        "Nothing to delete: ask a question first.", gr.skip())
            fresh = uuid.uuid4().hex
            handlers.started_new(session_of(request), fresh)  # it shows suggestions, as New conversation does
            # The status under the chat spoke of the conversation deleted (a vote): emptied.
            return (empty_chat(), fresh, conversation_list(handlers.conversation_choices(owner), None),
                    render_sources(None, False), "", keep(saved, conversation=fresh),
                    *conversation_left("Conversation deleted (its answers stay in the answer log)."),  # its export too
                    suggested(NEW_CONVERSATION_SUGGESTIONS))

        delete_yes.click(delete_current, [conversation, to_delete, browser],
                         [chat, conversation, past, sources, status, browser, *left_outputs, examples])
        delete_no.click(lambda: (gr.update(visible=False), None, "Not deleted."), None,
                        [delete_check, to_delete, conversation_status])

        def remember(saved, k_value, show, temp):
            return keep(saved, k=k_value, show_all=show, temperature=temp)

        for control in (k, show_all, temperature):
            control.change(remember, [browser, k, show_all, temperature], browser)

        def like(history, data: gr.LikeData, request: gr.Request):
            said = handlers.on_like(history, data.index, data.liked, getattr(request, "username", None),
                                    session=session_of(request))
            # The thumbs as stored, so a later change of the messages can reset them (votes); the
            # one clicked is sent as "" when nothing is stored (a refused vote), not as the None
            # the page had, which would leave the click showing.
            return said, gr.update(feedback_value=handlers.votes(history, session_of(request), clicked=data.index))

        chat.like(like, chat, [status, chat])

        def save(history: list, text: str, fixed: str, chosen: str | None, request: gr.Request):
            said = handlers.on_comment(history, text, fixed, getattr(request, "username", None),
                                       session=session_of(request), answer_id=chosen)
            # Saved fields are emptied, so a second Save cannot attach them to a later answer.
            done = said.startswith(SAVED)
            return said, "" if done else gr.skip(), "" if done else gr.skip()

        def saved_with(history, chosen, request: gr.Request):
            return handlers.saved_feedback(history, chosen, session_of(request))

        save_comment.click(save, [chat, comment, correction, which], [status, comment, correction], api_name="save").then(
            saved_with, [chat, which], saved_feedback, api_name=False, show_progress="hidden")
        # Any change of the choice, the page's own (a new answer) too: what is saved with it.
        which.change(saved_with, [chat, which], saved_feedback, api_name=False, show_progress="hidden")

        def answers_of(history):
            choices = handlers.answer_choices(history)
            return gr.update(choices=choices, value=choices[0][1] if choices else None)

        chat.change(answers_of, chat, which)

        def show_sources_of_chosen(history, chosen, show, request: gr.Request):
            """Choosing the answer to correct shows its sources: a correction cites [n] of that
            answer's passages, not of the answer the panel showed before."""
            found = handlers.sources_of_answer(history, chosen, session_of(request), show)
            return found if found is not None else gr.skip()

        which.input(show_sources_of_chosen, [chat, which, show_all], sources, api_name=False)

        def toggle_all_passages(history, chosen, show, request: gr.Request):
            """"Show all retrieved passages" changes the panel at once, for the answer it shows."""
            return handlers.shown_sources(history, chosen, session_of(request), show)

        show_all.input(toggle_all_passages, [chat, which, show_all], sources, api_name=False)

        def start_new(saved, request: gr.Request):
            fresh = uuid.uuid4().hex
            handlers.started_new(session_of(request), fresh)
            # The status line spoke of the conversation left (a vote, a saved correction): emptied.
            # So did the export and a delete question: they were of that conversation.
            return (empty_chat(), render_sources(None, False), fresh, gr.update(value=None),
                    keep(saved, conversation=fresh), "", *conversation_left(), suggested(NEW_CONVERSATION_SUGGESTIONS))

        new_chat.click(start_new, browser, [chat, sources, conversation, past, browser, status, *left_outputs, examples])
        chat.clear(start_new, browser, [chat, sources, conversation, past, browser, status, *left_outputs, examples])
        def library(searched, chosen=None):
            rows, choices, chosen, searched = handlers.shelf(searched, chosen)
            return rows, gr.update(choices=choices, value=chosen), gr.update(choices=choices, value=searched,
                                                                         label=search_label(searched))

        shelf = [documents, chosen_doc, search_in]
        # Emptied once ingested, so the next files dropped there are a new upload.
        def upload_files(files):
            stored = []
            for said in handlers.on_upload(files, stored):
                yield said, stored[-1] if stored else None

        # The library lists by name, so a new upload may sort out of view: it becomes the chosen
        # document, named where Re-ingest and Delete act.
        just_stored = gr.State(None)
        upload.upload(upload_files, upload, [upload_status, just_stored], api_name=False).then(
            lambda searched, chosen, new: library(searched, new or chosen), [search_in, chosen_doc, just_stored],
            shelf, api_name=False).then(lambda: None, None, upload, api_name=False)
        # The documents chosen to search are kept by the browser, as the other settings are: a
        # reload went on searching everything while the user thought the choice still held.
        app.load(lambda saved: library(saved.get("search_in") if isinstance(saved, dict) else None), browser, shelf,
                 api_name=False)
        # Opened, the library is read again: another tab's upload or delete showed only after a reload.
        def library_reread(searched, chosen):
            """The library as stored now, for an opened panel. The choices change; a value only
            when what it named is gone: an upload that was making itself the chosen document
            meanwhile (its own step, on_upload's chain) is not set back to what the panel sent."""
            rows, choices, kept, kept_searched = handlers.shelf(searched, chosen)
            gone = isinstance(chosen, str) and kept is None
            return (rows, gr.update(choices=choices, **({"value": None} if gone else {})),
                    gr.update(choices=choices, **({"value": kept_searched, "label": search_label(kept_searched)}
                                                  if kept_searched != searched else {})))

        library_panel.expand(library_reread, [search_in, chosen_doc], shelf, api_name=False, show_progress="hidden")

        def remember_searched(saved, searched):
            """On every change of the choice, not only a pick: the dropdown's clear button and a
            Backspace change it without an `input` event (a cleared choice came back on reload),
            and a redraw drops a deleted document from it. Written only when it differs, so the
            load's own setting of the value writes nothing."""
            label = gr.update(label=search_label(searched))  # the label, not the value: no change event
            said = gr.update(info=question_info(searched))  # by the question box too
            if not isinstance(saved, dict) or searched == saved.get("search_in", []):
                return gr.skip(), label, said
            return keep(saved, search_in=searched), label, said

        # No progress overlay: Gradio covered the dropdown with one on every pick (it is an output).
        search_in.change(remember_searched, [browser, search_in], [browser, search_in, question], api_name=False,
                         show_progress="hidden")
        app.load(lambda: gr.update(open=not handlers.has_documents()), None, adder, api_name=False)

        def ask_to_delete_document(source):
            asked = handlers.deletion_question(source)
            if asked is None:
                return gr.update(visible=False), None, CHOOSE_FIRST, ""
            return gr.update(visible=True), source, "", asked

        def delete_chosen_document(source, chosen, searched):
            if chosen != source:  # the document asked about, kept on the server, is no longer the one chosen
                return "Another document is chosen now: nothing deleted.", gr.update(visible=False), None
            return handlers.delete_document(source, searched), gr.update(visible=False), None

        delete_doc.click(ask_to_delete_document, chosen_doc,
                         [delete_doc_check, doc_to_delete, library_status, delete_doc_question]).then(
            None, None, None, js=scrolled_into_view("delete-document-check"))
        delete_doc_yes.click(delete_chosen_document, [chosen_doc, doc_to_delete, search_in],
                             [library_status, delete_doc_check, doc_to_delete]).then(library, [search_in, chosen_doc],
                                                                                     shelf)
        # A question about another document would stand over this one's name (the guard in
        # delete_chosen_document deletes nothing then, but the page contradicted itself).
        chosen_doc.change(lambda source, asked: gr.skip() if source == asked else gr.update(visible=False),
                          [chosen_doc, doc_to_delete], delete_doc_check, api_name=False, show_progress="hidden")
        # A row of the table, clicked, chooses its document (the rows looked clickable and did nothing).
        def choose_row(event: gr.SelectData):
            source = handlers.document_in_row(event.index, event.row_value)
            return gr.skip() if source is None else source

        documents.select(choose_row, None, chosen_doc, api_name=False, show_progress="hidden")
        # Once a document is chosen, the prompt to choose one goes (it stayed, under the choice).
        chosen_doc.change(lambda source, said: "" if source and said == CHOOSE_FIRST else gr.skip(),
                          [chosen_doc, library_status], library_status, api_name=False, show_progress="hidden")
        delete_doc_no.click(lambda: ("Not deleted.", gr.update(visible=False), None), None,
                            [library_status, delete_doc_check, doc_to_delete])
        reingest.click(handlers.reingest_document, chosen_doc, library_status).then(library, [search_in, chosen_doc],
                                                                                   shelf)
    # As many answers at once as the generator decodes together (generators/llama_cpp_backend.py),
    # at least 4: retrieval and the extract mode interleave on the CPU.
    app.queue(default_concurrency_limit=max(4, bot.settings.parallel_answers))
    return app


# Defence in depth under the escaping: the page may load scripts, styles, images and fonts from
# its own origin only, and no frames or plugins; an image a document smuggled in is never fetched.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
                           "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
                           "connect-src 'self' ws: wss:; media-src 'self' blob:; frame-src 'none'; object-src 'none'; "
                           "base-uri 'self'; form-action 'self'")


# Gradio's screen-reader status region announces a finished event as `common.complete`, a key
# its English dictionary lacks (gradio 6.31), so screen readers spoke the key itself. Other
# locales fall back to English.
MISSING_TRANSLATIONS = {"common.complete": "Done"}


def serve(bot: RagBot, host: str, port: int, share: bool = False, auth=None, prevent_thread_lock: bool = False):
    """Build the app and serve it. Errors reach the browser as a short notice, never a traceback;
    the footer's API and Gradio links are hidden."""
    import gradio as gr

    limit = bot.settings.max_upload_mb
    app = build_app(bot, max_upload_mb=limit)
    # Only the conversation exports (named by random ids) may be served from the data dir.
    app.launch(server_name=host, server_port=port, share=share, auth=auth, max_file_size=f"{limit}mb",
               allowed_paths=[str(bot.settings.data_dir / "exports")], show_error=False, quiet=True, footer_links=[], css=CSS,
               head=f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">{HIGHLIGHT_SCRIPT}'
                    f'{ACCESSIBLE_NAMES_SCRIPT}{EDIT_ENTER_SCRIPT}',
               i18n=gr.I18n(en=MISSING_TRANSLATIONS), prevent_thread_lock=True)
    add_document_route(app.app, bot, login=auth is not None)
    if not prevent_thread_lock:
        app.block_thread()
    return app


def add_document_route(server, bot: RagBot, login: bool) -> None:
    """GET DOCUMENT_ROUTE/<id>: the stored PDF with that id, shown inline, so a citation's page
    opens in the browser's PDF viewer. Only stored documents are served (the id is looked up, no
    path comes from the client), only PDFs, only while the file is the one that was ingested;
    with `login` (the chat was started with --auth), only to a logged-in user."""
    from fastapi import HTTPException, Request
    from fastapi.responses import FileResponse

    from ragbot.models import sha256_file

    hashes: dict[tuple, str] = {}  # (path, inode, size, mtime) -> sha256: a PDF viewer asks many times

    def logged_in(request: Request) -> bool:
        """Read as Gradio reads its own login cookie; anything unexpected refuses (fails closed)."""
        try:
            token = (request.cookies.get(f"access-token-{server.cookie_id}")
                     or request.cookies.get(f"access-token-unsecure-{server.cookie_id}"))
            return token is not None and server.tokens.get(token) is not None
        except AttributeError:
            return False

    def unchanged(path: Path, expected: str) -> bool:
        try:
            info = path.stat()
        except OSError:
            return False
        key = (str(path), info.st_ino, info.st_size, info.st_mtime_ns)
        if key not in hashes:
            hashes[key] = sha256_file(path)
        return hashes[key] == expected

    def document(doc_id: int, request: Request):  # a plain def: FastAPI runs it off the event loop
        if login and not logged_in(request):
            raise HTTPException(401, "log in first")
        doc = bot.store.document_by_id(doc_id)
        if doc is None or doc.kind != "pdf":
            raise HTTPException(404, "no such PDF is stored")
        path = Path(doc.source)
        if not path.is_file() or not unchanged(path, doc.sha256):
            raise HTTPException(410, f"{path.name} changed or moved since it was ingested: ingest it again")
        return FileResponse(path, media_type="application/pdf", content_disposition_type="inline",
                            filename=path.name, headers={"X-Content-Type-Options": "nosniff"})

    server.add_api_route(DOCUMENT_ROUTE + "/{doc_id}", document, methods=["GET"], include_in_schema=False)


# Names Gradio gives that a screen reader speaks, set right by one observer of the page:
# - Each chat message is labelled with its raw content ("bot's message: ... [<a class=
#   "ragbot-cite" href="#source-1">1</a>]", "R&amp;D"), so a reader spoke the citation links'
#   tags and entity names. The label is replaced by its text ("... [1]"); text a user or a
#   document wrote is escaped in the content, and the label is only ever set as text. A label
#   set here is not read again.
# - A chosen document's ✕ in a multiselect is titled "Remove 2" (the choice's index), which the
#   mouse shows and a reader speaks: it names the document instead.
# - A group of radio buttons (the conversations, the suggestions) is a fieldset whose label is a
#   span, not a legend, so a reader announced a group without a name: it is named by that span.
ACCESSIBLE_NAMES_SCRIPT = """<script>
(() => {
  const set = new WeakMap();
  const messageLabel = el => {
    const label = el.getAttribute('aria-label');
    if (!label || !/^[\\w ]+'s message: /.test(label) || !/[<&]/.test(label) || set.get(el) === label) return;
    const text = new DOMParser().parseFromString(label, 'text/html').body.textContent;
    set.set(el, text);
    el.setAttribute('aria-label', text);
  };
  const removeTitle = el => {
    if (!el.matches('.token > .token-remove:not(.remove-all)')) return;
    const text = el.parentElement.querySelector(':scope > span');
    const title = text && 'Remove ' + text.textContent.trim();
    if (!title || el.getAttribute('title') === title) return;
    el.setAttribute('title', title);
    el.setAttribute('aria-label', title);
  };
  const groupName = el => {
    const named = el.getAttribute && el.getAttribute('aria-labelledby');
    if (!el.matches('fieldset[id]') || (named && document.getElementById(named))) return;
    const label = el.querySelector(':scope > [data-testid="block-info"]');
    if (!label) return;
    label.id = label.id || el.id + '-label';
    el.setAttribute('aria-labelledby', label.id);
  };
  const fix = el => { if (el.getAttribute) { messageLabel(el); removeTitle(el); groupName(el); } };
  new MutationObserver(records => {
    for (const r of records) {
      if (r.type === 'attributes') fix(r.target);
      else r.addedNodes.forEach(n => { if (n.nodeType === 1) { fix(n); n.querySelectorAll('[aria-label], .token-remove, fieldset[id]').forEach(fix); } });
    }
  }).observe(document.documentElement, {subtree: true, childList: true, attributes: true,
                                         attributeFilter: ['aria-label', 'title']});
})();
</script>"""

# Enter sends an edited question, as it sends one typed in the question box (Shift+Enter: a new
# line); in Gradio's edit box it only broke the line, and the edit was sent by its Submit button
# alone. Not while an input method is composing (Enter picks the characters there).
EDIT_ENTER_SCRIPT = """<script>
document.addEventListener('keydown', e => {
  if (e.key !== 'Enter' || e.shiftKey || e.isComposing) return;
  const box = e.target.closest && e.target.closest('#chat textarea.edit-textarea');
  const submit = box && document.querySelector('#chat button[aria-label="Submit"]');
  if (!submit || submit.disabled) return;
  e.preventDefault();
  submit.click();
}, true);
</script>"""

# A click on a citation [n] highlights passage n in the sources panel and scrolls to it; for an
# older answer the panel first changes to that answer's sources (chat.select), so the passage
# is marked again when the panel changes within a few seconds of the click.
HIGHLIGHT_SCRIPT = """<script>
(() => {
  let wanted = null;
  const mark = () => {
    if (!wanted || Date.now() - wanted.at > 5000) return;
    document.querySelectorAll('.ragbot-highlight').forEach(e => e.classList.remove('ragbot-highlight'));
    const row = document.querySelector('#sources #source-' + wanted.n);
    if (!row) return;
    row.classList.add('ragbot-highlight');
    // A row already in view stays where it is; one out of view is brought to the middle (its top,
    // when it is taller than the window), not to the window's edge where it was easy to miss.
    const box = row.getBoundingClientRect();
    const inView = box.top >= 0 && box.bottom <= window.innerHeight;
    row.scrollIntoView({block: inView ? 'nearest' : box.height > window.innerHeight ? 'start' : 'center'});
  };
  document.addEventListener('click', e => {
    const link = e.target.closest && e.target.closest('a.ragbot-cite');
    if (!link) return;
    e.preventDefault();
    wanted = {n: link.getAttribute('href').replace('#source-', ''), at: Date.now()};
    mark();
  }, true);
  const watch = () => {
    const panel = document.getElementById('sources');
    if (panel) new MutationObserver(mark).observe(panel, {childList: true, subtree: true, characterData: true});
    return !!panel;
  };
  if (!watch()) {
    const early = new MutationObserver(() => { if (watch()) early.disconnect(); });
    early.observe(document.documentElement, {childList: true, subtree: true});
  }
})();
</script>"""
