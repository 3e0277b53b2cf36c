"""Read one file into a Document: PDF (page numbers kept), Word (.docx), Markdown, plain text
and HTML.

Every problem with a file is raised as DocumentError(path, reason) with a reason a person can
act on. Nothing here touches the index or the database.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

import regex

from ragbot.errors import DocumentError
from ragbot.ingest.encoding import decode_legacy, mostly_utf8
from ragbot.ingest.pdf import HEADING_MAX_CHARS, HEADING_MAX_WORDS, read_pdf
from ragbot.ingest.tables import html_with_named_columns, markdown_with_named_columns
from ragbot.ingest.word import read_docx
from ragbot.text import CLOSING, ESCAPED_BAR, LINE_BREAK, TERMINAL, is_list_item, is_table_row, markdown_heading
from ragbot.types import Document, PageSpan

KINDS = {
    ".pdf": "pdf",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".docx": "docx",
}
MAX_FILE_BYTES = 200 * 1024 * 1024
# A line of text this long is encoded data (base64, a minified dump), not something a person
# reads: chunks cut from it are noise in every answer. Checked on the text that would be chunked
# (after HTML and PDF extraction), so minified HTML with short paragraphs passes.
MAX_LINE_CHARS = 1_000_000


def kind_of(path: Path) -> str | None:
    return KINDS.get(path.suffix.lower())


def readable_suffixes() -> list[str]:
    return sorted(KINDS)


def supported_suffixes() -> str:
    return ", ".join(readable_suffixes())


def read_document(path: Path, pdf_structure: bool = True, ruled_tables: bool = False,
                  data: bytes | None = None) -> Document:
    """Read `path` (a regular file) into a Document, or raise DocumentError. `pdf_structure`:
    PDF headings marked and running headers/footers dropped (pdf.py), else pypdf's plain text;
    `ruled_tables`: with the structure, tables drawn with rules read from their cells; `data`:
    the file's bytes when the caller has read them already (`read_bytes`)."""
    name = str(path)
    kind = kind_of(path)
    if kind is None:
        suffix = path.suffix or "(no extension)"
        raise DocumentError(name, f"unsupported file type {suffix}; supported: {supported_suffixes()}")
    if data is None:
        data = read_bytes(path)
    if not data.strip():
        raise DocumentError(name, "empty file")
    guessed_encoding = None
    if kind == "pdf":
        title, text, pages = _read_pdf(path, data, pdf_structure, ruled_tables)
    elif kind == "docx":
        title, raw = read_docx(name, data)
        text, pages = _normalise(raw), []
    else:
        raw, guessed_encoding = decode_text(path, data)
        if kind == "html":
            title, text = _html_to_text(raw)
        elif kind == "markdown":  # its HTML read before normalising: indentation makes code blocks
            text = _title_marked(markdown_with_named_columns(_normalise(_markdown_without_html(
                raw.replace("\r\n", "\n").replace("\r", "\n")))), markdown=True)[1]
            title = _markdown_title(text)
        else:
            title, text = _title_marked(_normalise(raw))
        pages = []
    if not text.strip():
        raise DocumentError(name, "no text found in the file")
    _check_line_lengths(name, text)
    return Document(
        source=name,
        kind=kind,
        title=title or title_from_name(name),
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        pages=pages,
        guessed_encoding=guessed_encoding,
    )


def title_from_name(path: str) -> str:
    """The title of a document whose contents name none: its file name's stem, "_" and "-" as spaces."""
    return Path(path).stem.replace("_", " ").replace("-", " ")


def _check_line_lengths(name: str, text: str) -> None:
    if len(text) <= MAX_LINE_CHARS:
        return  # no line can be longer than the text
    start, number = 0, 1
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if end - start > MAX_LINE_CHARS:
            raise DocumentError(name, f"line {number} is {end - start:,} characters long, over the "
                                      f"{MAX_LINE_CHARS:,}-character limit for one line; text that long "
                                      f"without a line break is usually encoded data, not prose")
        start, number = end + 1, number + 1


def read_bytes(path: Path) -> bytes:
    """The file's bytes, read from one open file: a path that became a FIFO or a device after it
    was listed is refused (opened without blocking, checked with fstat), and a file that grows
    while it is read stops at the size limit instead of filling memory."""
    too_big = f"over the {MAX_FILE_BYTES / 2**20:.0f} MiB limit"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise DocumentError(str(path), "not a regular file (a pipe, device or socket)")
            if info.st_size > MAX_FILE_BYTES:
                raise DocumentError(str(path), f"file is {info.st_size / 2**20:.0f} MiB, {too_big}")
            os.set_blocking(fd, True)
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_FILE_BYTES:
            raise DocumentError(str(path), f"file grew past the limit while it was read ({too_big})")
        return data
    except PermissionError:
        raise DocumentError(str(path), "permission denied (cannot read the file)") from None
    except FileNotFoundError:
        raise DocumentError(str(path), "file not found") from None
    except IsADirectoryError:
        raise DocumentError(str(path), "is a directory, not a file") from None
    except OSError as exc:
        raise DocumentError(str(path), f"cannot read: {exc.strerror or exc}") from None


def decode_text(path: Path, data: bytes) -> tuple[str, str | None]:
    """The file's text, and the encoding it was read in when that was guessed (encoding.py):
    "utf-8" for UTF-8 with bytes that are not UTF-8, each read as U+FFFD (`mostly_utf8`)."""
    # UTF-32's little-endian mark begins with UTF-16's (FF FE), so it is looked for first: read as
    # UTF-16, such a file gave a NUL between every two letters, and was stored so.
    for encoding, marks in (("utf-32", (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")), ("utf-16", (b"\xff\xfe", b"\xfe\xff"))):
        if data.startswith(marks):
            name = encoding.upper()
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError:
                raise DocumentError(str(path), f"has a {name} byte-order mark but is not valid {name}") from None
            if "\x00" in text[:8192]:
                raise DocumentError(str(path), f"has a {name} byte-order mark, but read so it holds NUL "
                                               f"characters: not {name} text")
            return text, None
    if b"\x00" in data[:8192]:
        raise DocumentError(str(path), "looks like a binary file (contains NUL bytes), not text")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        bad = exc.start
    if mostly_utf8(data):  # a UTF-8 file with a few stray bytes: not a legacy code page
        return data.decode("utf-8-sig", errors="replace"), "utf-8"
    legacy = decode_legacy(data, html=kind_of(path) == "html")
    if legacy is None:
        raise DocumentError(str(path), f"is not valid UTF-8 (bad byte at offset {bad}), and no other text "
                                       f"encoding reads it: it looks like binary data; if it is text, save it as UTF-8")
    return legacy.text, (legacy.encoding if legacy.guessed else None)


_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def _normalise(text: str, line_breaks: bool = False) -> str:
    """Lines with runs of spaces made one and their ends trimmed, at most one empty line between
    paragraphs. `line_breaks`: a text.LINE_BREAK that begins a line is kept (the PDF reader's
    sentence breaks; any other reader's text has none of ragbot's making)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_normalised_line(line, line_breaks) for line in text.split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def _normalised_line(line: str, line_breaks: bool) -> str:
    """A line with its runs of spaces made one and its ends trimmed, with `line_breaks` its
    LINE_BREAK kept (a line of nothing else is empty)."""
    trimmed = _SPACES.sub(" ", line).strip()
    return LINE_BREAK + trimmed if line_breaks and trimmed and line.startswith(LINE_BREAK) else trimmed


# Of how a text or Markdown file's title line is found; a note stored otherwise is read again.
TITLE_RULES = 1  # 1: a first line alone, ending in no stop, above prose with stops (_title_marked)


def _title_marked(text: str, markdown: bool = False) -> tuple[str, str]:
    """(title, text), the text with its first line marked as a heading ("# …") when that line is
    a title (else "" and the text as it is). A title stands alone before more text, and the text
    after it ends sentences with stops (of any script) where it does not, nor with a comma,
    semicolon or colon ("Hi John,", "Ingredients:"); it holds a letter, is as short as a heading
    is (pdf.py's limits) and is no Markdown markup (a heading, list item, table row, quote,
    fence, link, image or emphasis, HTML). A Markdown file with a heading of its own keeps it as
    its title. A note's title ("Recette de la tarte Tatin de Sophie") was quoted as the answer to
    questions about it (helper-87's drive); as a heading it names the note's section and is no
    sentence to quote, as Markdown's "#" titles are not."""
    first, blank, rest = text.partition("\n\n")
    line = first.strip()
    if (not blank or "\n" in first or not line or line[0] in "#>|<`~[!*_=-+" or is_list_item(line)
            or is_table_row(line) or _ENDS_LIKE_PROSE.search(line) or not _LETTER.search(line)
            or len(line.split()) > HEADING_MAX_WORDS or len(line) > HEADING_MAX_CHARS
            or not _ENDS_SENTENCE.search(rest)):
        return "", text
    if markdown and any(markdown_heading(other) or _SETEXT_UNDERLINE.match(other) for other in rest.splitlines()):
        return "", text
    return line, f"# {line}\n\n{rest}"


# A line ending in a sentence's stop (any script's), a comma, semicolon or colon, with any
# closing marks, is prose or a label, not a title; a line ending in a stop is a sentence's end.
_ENDS_LIKE_PROSE = regex.compile(rf"(?:{TERMINAL}|[:,;])[{CLOSING}]*$")
_ENDS_SENTENCE = regex.compile(rf"{TERMINAL}[{CLOSING}]*$", regex.MULTILINE)
_LETTER = regex.compile(r"\p{L}")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(?:=+|-+)\s*$")


def _markdown_title(text: str) -> str:
    match = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else ""


def _read_pdf(path: Path, data: bytes, structure: bool, ruled_tables: bool) -> tuple[str, str, list[PageSpan]]:
    """Title, text and page spans of a PDF (pdf.py reads the pages)."""
    name = str(path)
    read = read_pdf(name, data, structure=structure, ruled=ruled_tables)
    if not read.pages:
        raise DocumentError(name, "PDF has no pages")
    parts: list[str] = []
    pages: list[PageSpan] = []
    offset = 0
    for number, raw in enumerate(read.pages, start=1):
        page_text = _normalise(raw, line_breaks=True)
        pages.append(PageSpan(number=number, start=offset))
        parts.append(page_text)
        offset += len(page_text) + 2  # the "\n\n" joining pages
    text = "\n\n".join(parts)
    if not text.strip():
        raise DocumentError(
            name, f"no text layer in {len(pages)} page(s): image-only (scanned) PDF; run OCR on it first"
        )
    return read.title, text, pages


_TAG_NAME = re.compile(r"^</?\s*([A-Za-z][\w-]*)")
_HTML_SPACE = re.compile(r"[ \t\n\r\f]*[\n\r\f][ \t\n\r\f]*")  # white space holding a line end, as HTML folds it
# Of how HTML is read, in an HTML file and inside Markdown; a document stored otherwise is read again.
HTML_RULES = 4  # 2: an HTML block in a list item or quote keeps its "- " or "> "; 3: source line ends are
# spaces; 4: Markdown's character references ("&amp;", "&lt;", "&#169;") read as the characters they name
# What an opening inline tag leaves in the text: a line break a space, a superscript a "^"
# ("42<sup>2</sup>" read "422"); any other tag nothing.
_INLINE_MARKS = {"br": " ", "sup": "^"}
# Elements that end a line of text where they end (a <summary> ran into the text it summarised).
_BLOCKS = {"p", "div", "li", "tr", "br", "section", "article", "pre", "blockquote", "table", "details", "summary",
           "dl", "dt", "dd", "ul", "ol", "figure", "figcaption", "caption", "header", "main", "aside", "address",
           "hr", "form", "fieldset", "legend", "center", "hgroup", "textarea"}
_PRESERVED = {"pre", "textarea", "xmp", "listing", "plaintext"}  # elements whose white space shows as written
_HEADING_LEVELS = {f"h{level}": level for level in range(1, 7)}
_HIDDEN = {"script", "style", "noscript", "template", "svg", "nav", "footer"}  # elements whose text is not read


def _markdown_without_html(text: str) -> str:
    """Markdown text with the HTML it holds read as HTML is read: a block of HTML ("<details>…",
    a centred logo, a comment) becomes its visible text (headings as '#' lines), and an inline tag
    ("<sup>", "<b>", "<br>") is dropped, its text kept, so a quote shows no markup. Which text is
    HTML is CommonMark's call (markdown-it-py's parser), so tags in code spans, indented and
    fenced code, and a bare "a < b", stay as written; so do tags inside an image's description.
    `text` is read as written (indentation matters to CommonMark); lines come back normalised."""
    from markdown_it import MarkdownIt
    from markdown_it.rules_inline import entity, html_inline

    def noting_where(rule):  # the parser's own rule, which also notes where its token begins
        def where(state, silent):
            start = state.pos
            found = rule(state, silent)
            if found and not silent:
                state.tokens[-1].meta["start"] = start
            return found
        return where

    parser = MarkdownIt("commonmark").enable("table")
    parser.inline.ruler.at("html_inline", noting_where(html_inline))
    parser.inline.ruler.at("entity", noting_where(entity))
    parser.core.ruler.disable("text_join")  # a character reference stays a token of its own
    lines = text.split("\n")
    blocks = []  # (first line, end line, replacement lines), applied last, from the last one back
    cuts: dict[int, list[tuple[int, int, str]]] = {}  # line -> (column, end column, what replaces it)
    cursors: dict[int, int] = {}  # a table row's line -> where its next cell's text is looked for
    in_cell = False  # the inline tokens read are a table cell's
    for token in parser.parse(text):
        if token.type in ("td_open", "th_open", "td_close", "th_close"):
            in_cell = token.type.endswith("open")
        if token.map is None:
            continue
        first, end = token.map
        if token.type == "html_block":
            visible = _html_to_text(token.content)[1]
            replacement = visible.split("\n") + [""] if visible else []
            # Inside a list item or a quote, a block that reads as one line of text keeps the marks
            # before it ("- ", "> "), so the item stays an item; a blank line ends it unless the
            # next line goes on with the list or quote. Text of several lines, a heading or a
            # table row stands on its own as before: behind a mark, "## Title" or a row would be
            # read as a sentence, and the lines after the first would leave the quote anyway.
            head = lines[first]
            prefix = head[:max(head.find(token.content.split("\n", 1)[0].strip()), 0)]
            if (prefix.strip() and visible and "\n" not in visible and not is_table_row(visible)
                    and markdown_heading(visible) is None):
                goes_on = end < len(lines) and (is_list_item(lines[end]) or lines[end].lstrip().startswith(">"))
                replacement = [prefix + visible] + ([] if goes_on else [""])
            blocks.append((first, end, replacement))
        elif token.type == "inline":
            where = _inline_columns(token.content, lines[first:end], cursors.get(first, 0))
            if where is None:
                continue
            cursors[first] = where[-1][1] + len(token.content.split("\n")[-1])
            starts = [0] + [i + 1 for i, ch in enumerate(token.content) if ch == "\n"]  # of its lines
            for child in token.children or ():
                if "start" not in child.meta:
                    continue
                if child.type == "html_inline":
                    _cut(cuts, first, where, starts, child.meta["start"], child.content, _tag_mark(child.content))
                elif child.type == "text_special" and child.info == "entity":  # "&amp;" read as "&"
                    read = " " if child.content.isspace() or not child.content.isprintable() else child.content
                    # "&#124;" in a table's cell is a bar of its text, as a table row writes one ("\|").
                    _cut(cuts, first, where, starts, child.meta["start"], child.markup,
                         read.replace("|", ESCAPED_BAR) if in_cell else read)
    for line, pieces in cuts.items():
        for column, stop, mark in sorted(pieces, reverse=True):
            lines[line] = lines[line][:column] + mark + lines[line][stop:]
        if lines[line].strip().strip("#") == "":  # a heading that held only an image
            lines[line] = ""
    for first, end, replacement in sorted(blocks, reverse=True):
        lines[first:end] = replacement
    return _MANY_NEWLINES.sub("\n\n", "\n".join(_SPACES.sub(" ", line).strip() for line in lines)).strip()


def _inline_columns(content: str, source: list[str], cursor: int) -> list[tuple[int, int]] | None:
    """Where each line of an inline token's text begins in its source lines: (line offset,
    column) per line, or None where a line cannot be found (left as written). The parser drops a
    line's indentation and block marks ("> ", "- "), so each text line is looked for in its source
    line, a table row's cells one after another from `cursor`."""
    found = []
    for i, line in enumerate(content.split("\n")):
        if i >= len(source):
            return None
        column = source[i].find(line, cursor if i == 0 else 0)
        if column < 0:
            return None
        found.append((i, column))
    return found


def _tag_mark(tag: str) -> str:
    """What an inline tag leaves in the text (_INLINE_MARKS): an opening <br> a space, <sup> a "^"."""
    name = _TAG_NAME.match(tag)
    return _INLINE_MARKS.get(name.group(1).lower(), "") if name and not tag.startswith("</") else ""


def _cut(cuts: dict, first: int, where: list[tuple[int, int]], starts: list[int], start: int, written: str,
         mark: str) -> None:
    """Note the replacement of `written` (an inline tag, a character reference), found at `start`
    of an inline token's text (whose lines begin at `starts`), by `mark` in its source lines (what
    spans several lines leaves each line, emptied of it, in place)."""
    from bisect import bisect_right

    stop = start + len(written)
    line, last = bisect_right(starts, start) - 1, bisect_right(starts, stop) - 1
    column, end_column = start - starts[line], stop - starts[last]
    for i in range(line, last + 1):
        offset, begins = where[i]
        a = begins + (column if i == line else 0)
        b = begins + end_column if i == last else None
        cuts.setdefault(first + offset, []).append((a, b if b is not None else 10**9, mark if i == line else ""))


def _page_text(soup, written: set[int]) -> str:
    """The text of a parsed page, each element's marks around its text, in one walk of the tree.
    A browser shows a run of white space in the source, line ends included, as one space (but in
    <pre> and its kin): kept as lines, a source line end after a <br> made the <br>'s line a
    paragraph, so "is at:<br>\\n12 Netloft Lane<br>\\n…" was quoted as "is at:" alone (helper-83's
    drive). So lines end only at the marks: a block begins and ends a line (a <p> begins a
    paragraph: html.parser nests an unclosed "<p>One<p>Two"), a <br> ends one.
    `written`: ids of the strings ragbot wrote into the page (a table's rows), kept as written.
    Comments, the doctype and other string types are not text. Nothing is inserted into the tree:
    each insertion searched its parent's children, so a page of 20,000 table rows and 20,000
    paragraphs took 37 s to read."""
    from bs4 import CData, NavigableString, Tag

    parts: list[str] = []
    stack: list = [(child, False) for child in reversed(soup.contents)]
    while stack:
        item, preserved = stack.pop()
        if type(item) is str:  # a mark, pushed to follow its element's text
            parts.append(item)
        elif isinstance(item, Tag):
            name = item.name
            level = _HEADING_LEVELS.get(name)
            block = name in _BLOCKS and name != "br"
            if level:
                parts.append("\n\n" + "#" * level + " ")
            elif name == "sup":
                parts.append(_INLINE_MARKS["sup"])
            elif block:
                parts.append("\n\n" if name == "p" else "\n")  # a paragraph is set apart
            after = "\n\n" if level or block else "\n" if name == "br" else " | " if name in ("td", "th") else ""
            if after:
                stack.append((after, preserved))
            inner = preserved or name in _PRESERVED
            stack.extend((child, inner) for child in reversed(item.contents))
        elif id(item) in written:
            parts.append(str(item))
        elif type(item) in (NavigableString, CData):
            parts.append(str(item) if preserved else _HTML_SPACE.sub(" ", item))
    return "".join(parts)


def _html_to_text(raw: str) -> tuple[str, str]:
    """Visible text of an HTML page, with headings kept as Markdown-style '#' lines and each table
    row a line of its cells (a table that names its columns with the names in its cells: tables.py).
    Lines end where the page's elements end them (blocks, <br>), not where its source wraps."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(raw, "html.parser")
    # Each search of the tree walks all of it: a search per kind of element (13 walks) made a
    # Markdown file's 50,000 HTML blocks take 20 s to read. So the kinds present are read in one
    # walk, and only those searched for.
    present = {tag.name for tag in soup.find_all(True)}
    if present & _HIDDEN:
        for tag in soup(list(_HIDDEN)):
            tag.decompose()
    title = ""
    if "title" in present and soup.title and soup.title.string:
        title = soup.title.string.strip()
    written = html_with_named_columns(soup) if "table" in present else []
    if "head" in present and soup.head:
        soup.head.decompose()
    text = _normalise(_page_text(soup, {id(string) for string in written}))
    if not title:
        title = _markdown_title(text)
    return title, text
