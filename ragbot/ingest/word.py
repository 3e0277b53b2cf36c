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


def _blocks(document):
    """The body as Markdown blocks, in order."""
    from docx.table import Table

    items = _without_contents_fields(list(_body_items(document)))
    # A Title: Heading 1 goes under it.
    shift = 1 if any(_level(p) == 0 for p in items if not isinstance(p, Table)) else 0
    for item in items:
        if isinstance(item, Table):
            rows = _table_rows(item)
            if rows:
                yield "\n".join(rows)
            continue
        text = " ".join(_text(item._p).split())
        if not text:
            continue
        level = _level(item)
        if level is not None:
            yield "#" * min(6, max(1, level + shift)) + " " + text
        elif _is_list_item(item):
            yield f"- {text}"
        else:
            yield text


def _body_items(document):
    """The body's paragraphs and tables in order, with those inside content controls, and
    without a table of contents."""
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    def walk(container):
        for child in container.iterchildren():
            if child.tag == qn("w:p"):
                yield Paragraph(child, document._body)
            elif child.tag == qn("w:tbl"):
                yield Table(child, document._body)
            elif child.tag == qn("w:sdt") and not _is_contents(child):
                content = child.find(qn("w:sdtContent"))
                if content is not None:
                    yield from walk(content)

    yield from walk(document.element.body)


def _without_contents_fields(items: list) -> list:
    """The items without the paragraphs of a table of contents written as a field and nothing
    more (Word's "Insert Table of Contents" dialog, older Word): a field whose code is TOC (a
    table of figures too), from the paragraph where it begins to the one where it ends. Field
    codes are the format's own words, the same in every language."""
    from docx.oxml.ns import qn
    from docx.table import Table

    begin_end, code, simple = qn("w:fldChar"), qn("w:instrText"), qn("w:fldSimple")
    fields: list[list[str]] = []  # the codes of the fields open here, outermost first
    kept = []
    for item in items:
        if isinstance(item, Table):
            kept.append(item)
            continue
        contents = any(_is_contents_code(c) for c in fields)
        for node in item._p.iter(begin_end, code, simple):
            kind = node.get(qn("w:fldCharType"))
            if node.tag == begin_end and kind == "begin":
                fields.append([""])
            elif node.tag == begin_end and kind == "end" and fields:
                fields.pop()
            elif node.tag == code and fields:
                fields[-1][0] += node.text or ""
                contents |= _is_contents_code(fields[-1])
            elif node.tag == simple:
                contents |= _is_contents_code([node.get(qn("w:instr")) or ""])
        if not contents:
            kept.append(item)
    return kept


def _is_contents_code(field: list[str]) -> bool:
    words = field[0].split()
    return bool(words) and words[0].upper() == "TOC"


def _is_contents(sdt) -> bool:
    from docx.oxml.ns import qn

    gallery = sdt.find(f"{qn('w:sdtPr')}/{qn('w:docPartObj')}/{qn('w:docPartGallery')}")
    return gallery is not None and gallery.get(qn("w:val")) == "Table of Contents"


def _text(element) -> str:
    """The text of a paragraph or a table cell as it reads: its runs, those inside content
    controls, hyperlinks and tracked insertions too, with tabs and breaks as spaces; not deleted
    text (w:delText, another tag), text moved elsewhere (w:moveFrom: it reads where it went),
    field codes (w:instrText), nor what a text box inside it holds. A cell's text includes a
    table nested in it, which python-docx's cell text left out."""
    from docx.oxml.ns import qn

    unread, parts = {qn("w:txbxContent"), qn("w:moveFrom"), qn("w:del")}, []
    for node in element.iter(qn("w:t"), qn("w:tab"), qn("w:br"), qn("w:cr"), qn("w:p")):
        if any(ancestor.tag in unread for ancestor in node.iterancestors()):
            continue
        if node.tag == qn("w:t"):
            parts.append(node.text or "")
        else:  # a tab, a break, or the start of a cell's next paragraph
            parts.append(" ")
    return "".join(parts)


def _level(paragraph) -> int | None:
    """The paragraph's heading level: 0 for a Title, 1-9 for headings; None for body text."""
    outline = _outline_level(paragraph._p.pPr)
    style = paragraph.style
    while outline is None and style is not None:
        outline = _outline_level(style.element.pPr)
        style = style.base_style
    if outline is not None:
        return outline + 1 if outline < _BODY_LEVEL else None
    name = paragraph.style.name if paragraph.style is not None else ""
    if name == "Title":
        return 0
    match = _BUILT_IN_HEADING.match(name or "")
    return int(match.group(1)) if match else None


def _is_list_item(paragraph) -> bool:
    """Numbered or bulleted: numbering properties on the paragraph or its style chain."""
    properties, style = paragraph._p.pPr, paragraph.style
    while True:
        if properties is not None and properties.numPr is not None:
            return True
        if style is None:
            return False
        properties, style = style.element.pPr, style.base_style


def _outline_level(properties) -> int | None:
    if properties is None:
        return None
    from docx.oxml.ns import qn

    found = properties.find(qn("w:outlineLvl"))
    value = found.get(qn("w:val")) if found is not None else None
    return int(value) if value is not None and value.isdigit() else None


def _table_rows(table) -> list[str]:
    """The table as Markdown rows. With a header row (Word's "repeat as header row", or its table
    style's first-row look) and no merged cells, the header is followed by a delimiter row, so the
    rows below are written with their columns' names (tables.markdown_with_named_columns)."""
    from docx.oxml.ns import qn

    rows, merged = [], False
    for tr in table._tbl.tr_lst:
        cells = []
        for tc in tr.tc_lst:
            merged |= tc.grid_span > 1 or tc.vMerge is not None
            cells.append(" ".join(_text(tc).split()))
        if any(cells):
            rows.append(table_row(cells))
    if len(rows) < 2 or merged:
        return rows
    first = table._tbl.tr_lst[0]
    marked = first.trPr is not None and first.trPr.find(qn("w:tblHeader")) is not None
    properties = table._tbl.find(qn("w:tblPr"))  # required by the format, missing in some files
    look = properties.find(qn("w:tblLook")) if properties is not None else None
    first_row_look = look is not None and (look.get(qn("w:firstRow")) in ("1", "true", "on")
                                           or int(look.get(qn("w:val"), "0") or "0", 16) & 0x0020)
    if marked or first_row_look:
        width = len(table._tbl.tr_lst[0].tc_lst)
        rows.insert(1, table_row(["---"] * width))
    return rows
