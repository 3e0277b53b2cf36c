"""Word documents (.docx, Office Open XML) read into ragbot's Markdown-shaped text with
python-docx: headings as "#" lines (so chunks carry their section), list paragraphs as "- "
items, tables as rows of cells ("| a | b |"), everything in the order it stands in the body.

What makes a heading is read from the file's own markup, not from its words: a paragraph's
outline level (`w:outlineLvl`, on the paragraph or its style chain), else the identifiers of
Word's built-in styles ("Title", "Heading 1" … "Heading 9"), which the file stores in English
whatever the language of the Word that wrote it. Text inside content controls (`w:sdt`: a
form's fields, a template's placeholders filled in, a cover page) is read where it stands, in
the body, in a paragraph and in a table cell; python-docx's own text skips it. A table of
contents (a content control of the gallery "Table of Contents", or a TOC field: names the format
fixes) is not read: its entries are the headings, with page numbers (the PDF reader drops
contents entries for the same reason, docs/benchmarks.md §30). Headers, footers, footnotes, comments
and text boxes are not read. A .docx is a zip archive: one that would unpack past
`MAX_UNPACKED_BYTES` is refused before it is parsed.
"""

from __future__ import annotations

import io
import re
import zipfile

from ragbot.errors import DocumentError
from ragbot.ingest.tables import markdown_with_named_columns
from ragbot.text import heading_title, table_row

MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
# Of how a .docx is read; a stored one read with another version is read again at the next
# ingest (2: content controls read, a table of contents left out).
VERSION = 2
_BUILT_IN_HEADING = re.compile(r"^Heading ([1-9])$")


def _qn(name: str) -> str:
    """An element's or attribute's full name, "w:p" -> "{...wordprocessingml/2006/main}p" (as
    python-docx's qn, without importing python-docx with every ragbot command)."""
    prefix, local = name.split(":")
    assert prefix == "w"
    return "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}" + local


_W_P, _W_TBL, _W_TR, _W_TC = _qn("w:p"), _qn("w:tbl"), _qn("w:tr"), _qn("w:tc")
_W_SDT, _W_CUSTOM_XML = _qn("w:sdt"), _qn("w:customXml")
_W_T, _W_NO_BREAK_HYPHEN = _qn("w:t"), _qn("w:noBreakHyphen")
_W_FLD_CHAR, _W_INSTR, _W_FLD_SIMPLE = _qn("w:fldChar"), _qn("w:instrText"), _qn("w:fldSimple")
# What `_text` visits: text, what reads as a space, a hyphen, and the field marks.
_READ = (_W_T, _qn("w:tab"), _qn("w:ptab"), _qn("w:br"), _qn("w:cr"), _W_NO_BREAK_HYPHEN, _W_P,
         _W_FLD_CHAR, _W_INSTR, _W_FLD_SIMPLE)
# Where text is not read: a text box, text moved away or deleted, alternate content's fallback,
# a reading guide (ruby).
_UNREAD = {_qn("w:txbxContent"), _qn("w:moveFrom"), _qn("w:del"), _qn("w:rt"),
           "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"}
_BODY_LEVEL = 9  # w:outlineLvl 9 is body text


def read_docx(name: str, data: bytes) -> tuple[str, str]:
    """(title, text) of a .docx file's bytes; DocumentError(name, reason) when it cannot be read."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise DocumentError(name, "not a .docx file (not a zip archive): a password-protected document, or an "
                                  "old binary .doc renamed; save it as .docx again") from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise DocumentError(name, f"would unpack to {unpacked / 2**20:,.0f} MiB, over the "
                                  f"{MAX_UNPACKED_BYTES / 2**20:,.0f} MiB limit for a .docx")
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - python-docx raises KeyError, ValueError, lxml errors alike
        raise DocumentError(name, f"not a readable .docx file ({type(exc).__name__}: {exc})") from None
    blocks = list(_blocks(document))
    title = (document.core_properties.title or "").strip()
    text = markdown_with_named_columns("\n\n".join(blocks))
    if not title:
        title = next((t for t in map(heading_title, blocks) if t), "")
    return title, text


def _blocks(document) -> list[str]:
    """The body as Markdown blocks, in order, without a table of contents; should a contents
    field never end (a broken file), everything is kept rather than the rest of the document
    dropped."""
    from docx.table import Table

    items = list(_body_items(document))
    styles = _Styles()
    # A Title: Heading 1 goes under it.
    shift = 1 if any(_level(p, styles) == 0 for p in items if not isinstance(p, Table)) else 0
    fields: list[list[str]] = []
    blocks = _read(items, shift, styles, fields)
    if any(_is_contents_code(code) for code in fields):
        blocks = _read(items, shift, styles, None)
    return blocks


def _read(items: list, shift: int, styles: "_Styles", fields: list[list[str]] | None) -> list[str]:
    from docx.table import Table

    blocks = []
    for item in items:
        if isinstance(item, Table):
            rows = _table_rows(item, fields)
            if rows:
                blocks.append("\n".join(rows))
            continue
        text = " ".join(_text(item._p, fields).split())
        if not text:
            continue
        level = _level(item, styles)
        if level is not None:
            blocks.append("#" * min(6, max(1, level + shift)) + " " + text)
        elif _is_list_item(item, styles):
            blocks.append(f"- {text}")
        else:
            blocks.append(text)
    return blocks


def _body_items(document):
    """The body's paragraphs and tables in order, with those inside content controls (not a
    table of contents, nor a control still showing its placeholder) and custom XML."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for child in _within(document.element.body, (_W_P, _W_TBL)):
        yield Paragraph(child, document._body) if child.tag == _W_P else Table(child, document._body)


def _within(container, tags: tuple[str, ...]):
    """The children of `container` with one of `tags`, looking into the wrappers that only hold
    content (content controls, custom XML) but not into a table of contents or a placeholder."""
    for child in container.iterchildren():
        if child.tag in tags:
            yield child
        elif child.tag == _W_SDT and not _is_contents(child) and not _is_placeholder(child):
            content = child.find(_qn("w:sdtContent"))
            if content is not None:
                yield from _within(content, tags)
        elif child.tag == _W_CUSTOM_XML:
            yield from _within(child, tags)


def _is_contents_code(field: list[str]) -> bool:
    """Whether a field's code (its instructions so far) is TOC: a table of contents, or of figures."""
    words = field[0].replace("\\", " ").split()
    return bool(words) and words[0].upper() == "TOC"


def _is_contents(sdt) -> bool:
    gallery = sdt.find(f"{_qn('w:sdtPr')}/{_qn('w:docPartObj')}/{_qn('w:docPartGallery')}")
    return gallery is not None and gallery.get(_qn("w:val")) == "Table of Contents"


def _is_placeholder(sdt) -> bool:
    """A content control still showing its placeholder ("Click or tap here to enter text."): Word's
    prompt, not the document's text."""
    return sdt.find(f"{_qn('w:sdtPr')}/{_qn('w:showingPlcHdr')}") is not None


def _text(element, fields: list[list[str]] | None = None) -> str:
    """The text of a paragraph or a table cell as it reads: its runs, those inside content
    controls, hyperlinks and tracked insertions too, with tabs and breaks as spaces; not deleted
    text (w:delText, another tag), text moved elsewhere (w:moveFrom: it reads where it went),
    field codes (w:instrText), what a text box inside it holds, a placeholder, the fallback of
    alternate content (its choice is read), nor a reading guide over characters (ruby). A
    cell's text includes a table nested in it, which python-docx's cell text left out.

    `fields`: the codes of the fields open where `element` begins, outermost first, kept up to
    date as it is read (a field may span paragraphs), so the text inside a TOC field (Word's
    "Insert Table of Contents" dialog writes the contents as one, with no content control) is
    left out. Field codes are the format's own words, the same in every language."""
    parts = []
    for node in element.iter(*_READ):
        if _unread(node):
            continue
        tag = node.tag
        if tag == _W_FLD_CHAR:
            kind = node.get(_qn("w:fldCharType"))
            if fields is not None and kind == "begin":
                fields.append([""])
            elif fields and kind == "end":
                fields.pop()
            continue
        if tag == _W_INSTR:
            if fields:
                fields[-1][0] += node.text or ""
            continue
        if tag == _W_FLD_SIMPLE or (fields and any(_is_contents_code(code) for code in fields)):
            continue
        if tag == _W_T:
            parts.append(node.text or "")
        elif tag == _W_NO_BREAK_HYPHEN:
            parts.append("-")
        else:  # a tab, a break, or the start of a cell's next paragraph
            parts.append(" ")
    return "".join(parts)


def _unread(node) -> bool:
    """Whether `node` stands in something whose text is not read (`_text`)."""
    for ancestor in node.iterancestors():
        tag = ancestor.tag
        if tag in _UNREAD or (tag == _W_SDT and _is_placeholder(ancestor)):
            return True
        if tag == _W_FLD_SIMPLE and _is_contents_code([ancestor.get(_qn("w:instr")) or ""]):
            return True
    return False


class _Styles:
    """What each paragraph style says, read once per style: the outline level first found up its
    chain of base styles, its name, and whether any style of the chain is numbered. python-docx's
    style lookup was most of a large document's read (helper-64: 22 s of 26 for 5,000
    paragraphs, each paragraph's style looked up three times)."""

    def __init__(self):
        self._found: dict[str | None, tuple[int | None, str, bool]] = {}

    def of(self, paragraph) -> tuple[int | None, str, bool]:
        key = paragraph._p.style  # the style's id; None for the default paragraph style
        if key not in self._found:
            style = paragraph.style
            name, outline, numbered = (style.name or "") if style is not None else "", None, False
            while style is not None:
                properties = style.element.pPr
                if outline is None:
                    outline = _outline_level(properties)
                numbered |= properties is not None and properties.numPr is not None
                style = style.base_style
            self._found[key] = (outline, name, numbered)
        return self._found[key]


def _level(paragraph, styles: _Styles) -> int | None:
    """The paragraph's heading level: 0 for a Title, 1-9 for headings; None for body text."""
    outline = _outline_level(paragraph._p.pPr)
    style_outline, name, _ = styles.of(paragraph)
    if outline is None:
        outline = style_outline
    if outline is not None:
        return outline + 1 if outline < _BODY_LEVEL else None
    if name == "Title":
        return 0
    match = _BUILT_IN_HEADING.match(name)
    return int(match.group(1)) if match else None


def _is_list_item(paragraph, styles: _Styles) -> bool:
    """Numbered or bulleted: numbering properties on the paragraph or its style chain."""
    properties = paragraph._p.pPr
    return (properties is not None and properties.numPr is not None) or styles.of(paragraph)[2]


def _outline_level(properties) -> int | None:
    if properties is None:
        return None
    found = properties.find(_qn("w:outlineLvl"))
    value = found.get(_qn("w:val")) if found is not None else None
    return int(value) if value is not None and value.isdigit() else None


def _table_rows(table, fields: list[list[str]] | None = None) -> list[str]:
    """The table as Markdown rows (rows and cells inside content controls too; `fields` as for
    `_text`). With a header row (Word's "repeat as header row", or its table style's first-row
    look) and no merged cells, the header is followed by a delimiter row, so the rows below are
    written with their columns' names (tables.markdown_with_named_columns)."""
    rows, merged = [], False
    trs = list(_within(table._tbl, (_W_TR,)))
    for tr in trs:
        cells = []
        for tc in _within(tr, (_W_TC,)):
            merged |= tc.grid_span > 1 or tc.vMerge is not None
            cells.append(" ".join(_text(tc, fields).split()))
        if any(cells):
            rows.append(table_row(cells))
    if len(rows) < 2 or merged:
        return rows
    first = trs[0]
    marked = first.trPr is not None and first.trPr.find(_qn("w:tblHeader")) is not None
    properties = table._tbl.find(_qn("w:tblPr"))  # required by the format, missing in some files
    look = properties.find(_qn("w:tblLook")) if properties is not None else None
    first_row_look = look is not None and (look.get(_qn("w:firstRow")) in ("1", "true", "on")
                                           or int(look.get(_qn("w:val"), "0") or "0", 16) & 0x0020)
    if marked or first_row_look:
        width = len(list(_within(first, (_W_TC,))))
        rows.insert(1, table_row(["---"] * width))
    return rows
