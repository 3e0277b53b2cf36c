"""Read a PDF into page texts, with the structure a reader sees kept and the page furniture dropped.

pypdf extracts each page's text; while it does, it reports every run of text with its font size
(the font's size scaled by the text and page matrices). From those sizes (`structure`):
- text too small to read (under MIN_READABLE_POINTS: markers some generators hide in the page)
  is dropped;
- a contents entry (a title, a dot leader and a page number) is dropped: the headings it lists
  are in the text;
- across pages, a line that recurs, at the same size, among the first or last MARGIN_LINES
  lines of at least half the pages (digits ignored, so "Page 3 of 40" matches "Page 4 of 40") is
  a running header or footer, or a page number, and is dropped there, and so is a line there
  of two words or more that is the start of one at the same edge ("Page 1 of 3" on the page
  before "Page 2 of 3 DFW08WA050"). First and last mean in
  the order pypdf extracts the page (its content stream), which is usually, not always, the
  order on the page;
- the **body size** is the size that holds most of the remaining characters;
- a **heading** is a short block of consecutive lines set larger than the body (HEADING_SCALE),
  written as a Markdown heading ("## 1.1. Holdings & Descriptions") so chunking starts a section
  there and every chunk under it carries the heading path (chunking.py). Larger sizes are higher
  levels. A block of many words at a large size is display text, and a size holding a large
  share of the text (BODY_SHARE) is a second body size: both stay text;
- a line that stands lower under the text line before it than PARAGRAPH_GAP times the document's
  usual spacing (typesetting adds room between paragraphs, not inside one) begins with
  text.LINE_BREAK, where a sentence ends: a form's last field above the narrative under it ("Flight
  Conducted Under: Non-U.S., Non-Commercial" has no full stop), values set one under another. The
  usual spacing is the larger of the two lines' sizes' (either one's when only one is known). The
  chunker still reads one paragraph there: writing an empty line instead made the forms' chunks
  smaller and cost search (docs/benchmarks.md §14);
- with `ruled` (the setting pdf_ruled_tables, off by default: docs/benchmarks.md §14), a **ruled
  table** (a table drawn with rules, found by pdfplumber from the lines painted on the page:
  `ruled_tables`) is read from its cells, in place of the lines inside its box: each row
  written as a Markdown table row, "| Restraint Used: | Seatbelt, Shoulder harness |", a cell
  whose text wraps kept whole, a column set flush right read as a column, a row spanning the
  table (its caption) as a line of text. A box holding fewer than GRID_ROWS rows of two cells
  (a framed paragraph, an empty form) is not one;
- elsewhere, a **table row** is a line with a cell that starts where a cell of the line above
  or below it starts (a column stop, within STOP_TOLERANCE points), after a gap of at least an
  em past the text before it, which holds a letter or digit (a bullet glyph set apart from its
  item is not a cell). It is written as a Markdown table row, "| Departure Point: | Quincy, FL |" (cells
  separated by text.TABLE_CELL), so a form's row is read as one rather than run into the next
  row's words. A line whose next line continues one of its cells (no gaps of its own, starting
  at one of its stops: a wrapped cell, a hanging indent) is not a row, nor are prose lines,
  which share no such stops. Not found by position: a table whose cells wrap onto lines
  of their own (joining them to their rows by position was tried and cost retrieval a little:
  docs/benchmarks.md §14), cells pypdf reports as one run (text placed within one text object),
  right-aligned columns (their cells share no start), and a row whose neighbours on its page
  have no cell at its columns.
If nothing is left (every page the same few lines), the plain text is used.

Nothing here reads words: only sizes, positions, painted rules and repetition, so it works the
same in any language. When pypdf cannot read a file, PDFium (pypdfium2) extracts plain text; it
gives no sizes, so only running headers and footers are dropped. Problems are DocumentError(path, reason).
"""

from __future__ import annotations

import ctypes
import io
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property

from ragbot.errors import DocumentError
from ragbot.text import LINE_BREAK, TABLE_CELL, table_row

# pypdf refuses arrays and dictionaries over 100,000 elements, a guard against hostile files that
# valid reports exceed (a large filing's page tree or structure tree). These limits only bound
# how many objects one array may hold; the decompression limits that bound memory stay as they are.
PYPDF_ELEMENT_LIMIT = 20_000_000
VERSION = 5  # of the rules below; a stored PDF read with another version is read again (2: table rows,
# 3: contents entries dropped, 4: a running line's start dropped too, 5: sentence breaks by spacing)
HEADING_SCALE = 1.08  # a heading is set at least this much larger than the body (Word: 12 pt over 11)
PARAGRAPH_GAP = 1.5  # a line this many times the usual spacing below the one before begins a new sentence
HEADING_MAX_WORDS = 20  # a larger-set block with more words than this is display text, not a heading
HEADING_MAX_CHARS = 150  # the same in characters (scripts written without spaces)
BODY_SHARE = 0.3  # a size holding this share of the characters is body text, never headings
MIN_READABLE_POINTS = 3.0  # text set smaller than this is not meant to be read
MARGIN_LINES = 3  # lines at the top and at the bottom of a page where running headers/footers sit
# A table cell starts at least CELL_GAP_EMS past the end of the text before it, that end
# estimated with NARROW_CHAR_EMS per character (narrower than most fonts' average, so the gap is
# if anything overestimated), and at a column stop a neighbouring line shares within STOP_TOLERANCE.
CELL_GAP_EMS = 1.0
NARROW_CHAR_EMS = 0.45
STOP_TOLERANCE = 1.0  # points
MIN_REPEATS = 2  # a running header or footer appears on at least this many pages (and half of them)
# A table drawn with ruling lines (pdfplumber finds its cells from the lines): read as a table
# when at least GRID_ROWS of its rows have two cells with text or more (a box drawn around a
# paragraph, or an empty form, is not one). Words in a cell are apart when their glyphs are
# WORD_GAP_EMS apart (pdfplumber's own 3 pt default ran the words of a tightly set plan together).
GRID_ROWS = 2
GRID_RULES = 3  # rules each way that a grid of two rows and two columns takes (_pages_that_may_hold_grids)
RULE_PIECE_POINTS = 1.0  # a shorter piece of a path is no part of a rule (pdfplumber's edge_min_length_prefilter)
RULE_MIN_POINTS = 3.0  # pieces joined into a shorter rule are none (pdfplumber's edge_min_length)
JOIN_POINTS = 3.0  # pieces on one line this close are joined into one rule (pdfplumber's join_tolerance)
ALIGNED_POINTS = 1.0  # a piece whose ends differ less than this across it is horizontal (or vertical)
FORM_DEPTH = 15  # form XObjects nested this deep are read for rules (pypdfium2's default)
WORD_GAP_EMS = 0.15
BOX_TOLERANCE = 2.0  # points: a line whose start or baseline is this close to a table's box is in it
_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")
# A table of contents' entry: a dot leader (five dots or more, spaced or not, or ellipsis
# characters) up to a page number at the line's end, or a long leader ending it (the number on
# a line of its own): "Mission ........ 3", "1.1. Intelligence . . . . . 8", "Vision……………".
_CONTENTS_ENTRY = re.compile(r"(?:(?:\.[ \t]?){5,}|…{2,})[ \t]*(?:\d+|[ivxlcdm]+)[ \t]*$|(?:\.[ \t]?){10,}[ \t]*$",
                             re.IGNORECASE)


@dataclass(frozen=True)
class Line:
    """One extracted line, as the runs of text it is made of, each with its font size (None when
    unknown: PDFium gives none), where each run starts on the page (x in points; empty when
    unknown), and the height of its first run's baseline (y in points, from the page's bottom;
    None when unknown: a line that began inside a run)."""

    parts: tuple[tuple[str, float | None], ...]
    starts: tuple[float, ...] = ()
    y: float | None = None

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.parts)

    @cached_property
    def size(self) -> float | None:
        """The size holding most of the line's characters (computed once: lines are compared
        by size many times)."""
        weight = Counter()
        for text, size in self.parts:
            if size is not None and text.strip():
                weight[size] += len(text.strip())
        return weight.most_common(1)[0][0] if weight else None

    def readable(self) -> "Line":
        """The line without its runs set too small to read."""
        keep = [i for i, (_, s) in enumerate(self.parts) if s is None or s >= MIN_READABLE_POINTS]
        return Line(tuple(self.parts[i] for i in keep), tuple(self.starts[i] for i in keep) if self.starts else (),
                    self.y)

    def first_start(self) -> float | None:
        """Where the line's first visible run starts (None when unknown)."""
        for (text, _), x in zip(self.parts, self.starts):
            if text.strip():
                return x if x == x else None  # NaN: not known
        return None

    def cell_starts(self) -> list[tuple[int, float]]:
        """(run index, x) of the runs that start a new cell by their gap: visible runs that
        start at least CELL_GAP_EMS past the (narrowly estimated) end of the visible run before,
        when the cell they end holds a letter or digit. NaN positions (unknown) start none."""
        if not self.starts:
            return []
        visible = [i for i, (text, _) in enumerate(self.parts) if text.strip()]
        found, cell = [], ""  # cell: the text of the cell so far
        for before, i in zip(visible, visible[1:]):
            text, size = self.parts[before]
            cell += text
            if size is None:
                continue
            end = self.starts[before] + NARROW_CHAR_EMS * size * len(text)
            if self.starts[i] - end >= CELL_GAP_EMS * size and any(c.isalnum() for c in cell):
                found.append((i, self.starts[i]))
                cell = ""
        return found


@dataclass(frozen=True)
class RuledTable:
    """A table drawn with ruling lines: where it stands (left, bottom, right, top, in points from
    the page's lower left corner, as Line.y and Line.starts) and each row's cell texts, in order
    (a row with one cell of text, a caption or a label whose value is empty, holds that one)."""

    box: tuple[float, float, float, float]
    rows: tuple[tuple[str, ...], ...]

    @cached_property
    def _text(self) -> str:
        """The cells' text run together without spaces, row by row (to find a line's text in)."""
        return "".join("".join(row) for row in self.rows).replace(" ", "")

    def holds(self, line: Line) -> bool:
        """Whether the line is the table's: it starts inside the table's box and its text is the
        cells' (a line that also holds text from outside, a column of prose on the same
        baseline, is not). False when its position is unknown."""
        x, y = line.first_start(), line.y
        left, bottom, right, top = self.box
        return (x is not None and y is not None and left - BOX_TOLERANCE <= x <= right + BOX_TOLERANCE
                and bottom - BOX_TOLERANCE <= y <= top + BOX_TOLERANCE and self.has_text_of(line))

    def has_text_of(self, line: Line) -> bool:
        return _SPACES.sub("", line.text) in self._text

    def lines(self, replaced: list[Line]) -> list[Line]:
        """The rows as lines of text, in place of the lines pypdf read inside the box (`replaced`):
        a row of two cells or more as a Markdown table row (a bar inside a cell escaped), at the
        size of most of those lines' text; a row of one cell (a caption, a cell spanning the row)
        as text at the size of the line that held it, so a caption set as a heading stays one."""
        sizes = Counter()
        for line in replaced:
            if line.size is not None:
                sizes[line.size] += len(line.text.strip())
        body = sizes.most_common(1)[0][0] if sizes else None
        held = {_SPACES.sub("", line.text): line.size for line in replaced}  # spacing may differ
        return [Line(((table_row(list(row)), body),)) if len(row) > 1
                else Line(((row[0], held.get(_SPACES.sub("", row[0]), body)),)) for row in self.rows]


@dataclass(frozen=True)
class PdfText:
    title: str  # from the document information; "" when it has none
    pages: list[str]


def read_pdf(name: str, data: bytes, structure: bool = True, ruled: bool = False) -> PdfText:
    """The title and page texts of a PDF's bytes (`name` is for messages). With `structure`,
    headings are marked and page furniture dropped (module doc), and with `ruled` too,
    tables drawn with rules are read from their cells; without it, each page is pypdf's text as
    it comes. pypdf first, then PDFium for a PDF that pypdf cannot read; only
    when both fail is the file refused, with pypdf's reason."""
    if not data.lstrip().startswith(b"%PDF"):
        raise DocumentError(name, "not a PDF (no %PDF header); the file is corrupt or misnamed")
    tables = None
    try:
        title, pages = _lines_pypdf(name, data)
    except DocumentError:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on files it cannot parse
        reason = f"corrupt or unreadable PDF ({type(exc).__name__}: {exc})"
        try:
            title, pages = _lines_pdfium(data)
        except Exception:  # noqa: BLE001 - the second reader failing too confirms the first
            raise DocumentError(name, reason) from None
    else:
        if structure and ruled:
            tables = ruled_tables(data)
    plain = ["\n".join(line.text for line in page) for page in pages]
    if structure:
        structured = structure_pages(pages, tables)
        if any(text.strip() for text in structured) or not any(text.strip() for text in plain):
            return PdfText(title, structured)
        # Everything was taken for page furniture (identical short pages): the plain text it is.
    return PdfText(title, plain)


def structure_pages(pages: list[list[Line]], tables: list[list[RuledTable]] | None = None) -> list[str]:
    """Page texts with unreadable text and running headers/footers dropped, table rows written as
    rows and headings marked. `tables`: each page's ruled tables (ruled_tables), read from
    their cells in place of the lines inside them."""
    pages = [_readable(page) for page in pages]
    if tables and len(tables) == len(pages):  # PDFium and pypdf read the same pages
        pages = [with_tables(page, found) for page, found in zip(pages, tables)]
    pages = drop_contents_entries(drop_running_lines(pages))
    sizes = _characters_by_size(pages)
    body = sizes.most_common(1)[0][0] if sizes else None
    if body is None:  # sizes unknown (PDFium)
        return ["\n".join(line.text for line in page) for page in pages]
    total = sum(sizes.values())
    # Larger than the body, and not a second body size (a part of the document set larger).
    heading_sizes = sorted((s for s, n in sizes.items() if s >= body * HEADING_SCALE and n < BODY_SHARE * total),
                           reverse=True)
    level = {size: min(6, rank + 1) for rank, size in enumerate(heading_sizes)}
    spacing = _line_spacing(pages)
    texts = []
    for page in pages:
        # A row becomes a line of its own text, at its own size (so blocks and headings see it as before).
        page = [Line(((row, line.size),)) if row is not None else line for line, row in zip(page, table_rows(page))]
        out: list[str] = []
        above = None  # the text line before on this page, since its start, an empty line or a heading
        for block in _blocks(page):
            if _is_heading(block, level):
                out.append(f"\n{'#' * level[block[0].size]} {' '.join(line.text.strip() for line in block)}\n")
                above = None
                continue
            for line in block:
                out.append(LINE_BREAK + line.text if _begins_sentence(above, line, spacing) else line.text)
                above = line if line.text.strip() else None
        texts.append("\n".join(out))
    return texts


def with_tables(page: list[Line], tables: list[RuledTable]) -> list[Line]:
    """The page with the lines of each ruled table (RuledTable.holds) replaced by the table's
    rows, where the table's first line stood. A line of unknown position (begun inside a run)
    goes with its table when the lines before and after it are both in that table and its text
    is the table's. A line that is not a table's is kept as it is, so no text is lost."""
    if not tables:
        return page
    inside = [next((t for t, table in enumerate(tables) if table.holds(line)), None) for line in page]
    for i, line in enumerate(page):
        if line.y is None and 0 < i < len(page) - 1 and inside[i - 1] is not None \
                and tables[inside[i - 1]].has_text_of(line):
            after = next((inside[j] for j in range(i + 1, len(page)) if page[j].y is not None), None)
            if after == inside[i - 1]:
                inside[i] = after
    replaced: dict[int, list[Line]] = {}
    for line, t in zip(page, inside):
        if t is not None:
            replaced.setdefault(t, []).append(line)
    out, placed = [], set()
    for line, t in zip(page, inside):
        if t is None:
            out.append(line)
        elif t not in placed:
            placed.add(t)
            out.extend(tables[t].lines(replaced[t]))
    return out


def ruled_tables(data: bytes) -> list[list[RuledTable]]:
    """Each page's tables drawn with ruling lines, as pdfplumber finds them from the lines (a
    table of only text-aligned columns is left to table_rows). Cells whose text wraps onto
    several lines are one cell. Empty for a PDF pdfplumber or PDFium cannot open, and no tables
    on a page pdfplumber cannot read or that is rotated: those are read by the rules alone.
    pdfplumber interprets a page several times slower than pypdf reads it, so only pages that
    paint enough to draw a grid are given to it (_pages_that_may_hold_grids)."""
    try:
        import pdfplumber

        flags = _pages_that_may_hold_grids(data)
        chosen = [i for i, flag in enumerate(flags) if flag]
        found: list[list[RuledTable]] = [[] for _ in flags]
        if chosen:
            with pdfplumber.open(io.BytesIO(data), pages=[i + 1 for i in chosen]) as pdf:
                for page in pdf.pages:
                    if 1 <= page.page_number <= len(found):
                        found[page.page_number - 1] = _page_tables(page)
                    page.close()  # its parsed objects are not needed again
    except Exception:  # noqa: BLE001 - pdfminer and PDFium raise many types; the rules still read the PDF
        return []
    return found


def _pages_that_may_hold_grids(data: bytes) -> list[bool]:
    """For each page, whether it may hold a ruled table: whether its rules (_rule_positions)
    stand at GRID_RULES different heights and GRID_RULES different x positions, the fewest that
    draw a grid of two rows and two columns (pdfplumber finds cells only where rules cross). A
    page of prose under a header band and two rules (two x positions) is skipped; however a grid
    is drawn (six rules, an outline and two rules, a rectangle per cell, dashes, pieces moved
    into place or drawn in a form), it is not. PDFium reads the paths without interpreting the
    text."""
    import pypdfium2
    import pypdfium2.raw as pdfium

    pdf = pypdfium2.PdfDocument(data)
    try:
        flags = []
        for i in range(len(pdf)):
            page = pdf[i]
            xs, ys = _rule_positions(page, pdfium)
            flags.append(len(xs) >= GRID_RULES and len(ys) >= GRID_RULES)
            page.close()
    finally:
        pdf.close()
    return flags


def _rule_positions(page, pdfium) -> tuple[set[int], set[int]]:
    """The x positions of a page's vertical rules and the heights of its horizontal ones, in
    whole points on the page, read as pdfplumber reads edges, so that no page whose grid it would
    find is skipped: a path's pieces between the ends of its segments (a curve's too; a closed
    subpath's closing side), at least RULE_PIECE_POINTS long, horizontal or vertical within
    ALIGNED_POINTS, joined along their line (_rules_at: dashes make a rule, a thin rectangle's
    short sides do not); a path that is one straight line counts as vertical at its left end
    unless it is horizontal (pdfplumber's reading of a line). A path inside form XObjects is
    placed by the forms' matrices too."""
    down: dict[int, list[tuple[float, float]]] = {}  # x -> the vertical pieces there, bottom to top
    across: dict[int, list[tuple[float, float]]] = {}  # y -> the horizontal pieces there, left to right
    x, y = ctypes.c_float(), ctypes.c_float()
    for path in page.get_objects(filter=[pdfium.FPDF_PAGEOBJ_PATH], max_depth=FORM_DEPTH):
        placements = [path.get_matrix()]
        container = path.container
        while container is not None:
            placements.append(container.get_matrix())
            container = container.container

        def on_page(px: float, py: float) -> tuple[float, float]:
            for matrix in placements:
                px, py = matrix.on_point(px, py)
            return px, py

        pieces, start, previous, curve_points = [], None, None, 0
        for s in range(pdfium.FPDFPath_CountSegments(path.raw)):
            segment = pdfium.FPDFPath_GetPathSegment(path.raw, s)
            if not pdfium.FPDFPathSegment_GetPoint(segment, x, y):
                continue
            point = on_page(x.value, y.value)
            kind = pdfium.FPDFPathSegment_GetType(segment)
            if kind == pdfium.FPDF_SEGMENT_MOVETO:
                start = previous = point
                continue
            if kind == pdfium.FPDF_SEGMENT_BEZIERTO:
                curve_points += 1
                if curve_points % 3:  # a control point; the third is where the curve ends
                    continue
            if previous is not None:
                pieces.append((previous, point))
                if pdfium.FPDFPathSegment_GetClose(segment) and start is not None:
                    pieces.append((point, start))
            previous = point
        one_line = len(pieces) == 1
        for (x0, y0), (x1, y1) in pieces:
            if max(abs(x1 - x0), abs(y1 - y0)) < RULE_PIECE_POINTS:
                continue
            if abs(y1 - y0) < ALIGNED_POINTS:
                across.setdefault(round(y0), []).append((min(x0, x1), max(x0, x1)))
            elif one_line or abs(x1 - x0) < ALIGNED_POINTS:
                down.setdefault(round(min(x0, x1)), []).append((min(y0, y1), max(y0, y1)))
    return _rules_at(down), _rules_at(across)


def _rules_at(pieces_at: dict[int, list[tuple[float, float]]]) -> set[int]:
    """The positions whose pieces, joined where they overlap or lie within JOIN_POINTS of each
    other (dashes), make a rule RULE_MIN_POINTS long (as pdfplumber joins, then drops, edges)."""
    found = set()
    for position, spans in pieces_at.items():
        spans.sort()
        low, high = spans[0]
        for a, b in spans[1:] + [(float("inf"), float("inf"))]:
            if high - low >= RULE_MIN_POINTS:
                found.add(position)
                break
            if a - high > JOIN_POINTS:
                low, high = a, b
            else:
                high = max(high, b)
    return found


def _page_tables(page) -> list[RuledTable]:
    """The page's ruled tables (ruled_tables); none when it is rotated or cannot be read."""
    if page.rotation % 360:
        return []
    # Text too small to read is not read here either (as _readable drops it).
    page = page.filter(lambda obj: obj.get("object_type") != "char" or obj.get("size", 0) >= MIN_READABLE_POINTS)
    tables = []
    try:
        found = page.find_tables()
        extracted = [table.extract(x_tolerance_ratio=WORD_GAP_EMS) for table in found]
    except Exception:  # noqa: BLE001 - pdfminer raises many types on a broken page; its text is read by the rules
        return []
    for table, cells_by_row in zip(found, extracted):
        rows = []
        for row in cells_by_row:
            # None: a cell merged into the one before it. An empty cell inside the row stays (a
            # label's empty value is not the next cell's label); empty ones at its ends go.
            cells = [_SPACES.sub(" ", cell).strip() for cell in row if cell is not None]
            while cells and not cells[-1]:
                cells.pop()
            while cells and not cells[0]:
                cells.pop(0)
            if cells:
                rows.append(tuple(cells))
        if sum(len(row) > 1 for row in rows) >= GRID_ROWS:
            # pdfplumber's x is the page's; its "top" is measured down from the media box's top,
            # so the page's y is the box's height less it, wherever the box's corner lies.
            x0, top, x1, low = table.bbox
            tables.append(RuledTable((x0, page.height - low, x1, page.height - top), tuple(rows)))
    return tables


def table_rows(page: list[Line]) -> list[str | None]:
    """For each line of the page, its text as a table row (module doc), or None when it is not one."""
    return [_row(line, cells) if cells else None for line, cells in zip(page, _cells(page))]


def _cells(page: list[Line]) -> list[set[int]]:
    """For each line, the indexes of the runs that start its cells: gaps (Line.cell_starts) at a
    column stop that the line above or below has too. A line whose next line continues one of
    its cells (no gaps of its own and starting at one of its stops) has none."""
    gaps = [line.cell_starts() for line in page]
    found = []
    for i, line in enumerate(page):
        near = [x for j in (i - 1, i + 1) if 0 <= j < len(page) for _, x in gaps[j]]
        stops = {k: x for k, x in gaps[i] if any(abs(x - y) <= STOP_TOLERANCE for y in near)}
        after = page[i + 1].first_start() if i + 1 < len(page) and not gaps[i + 1] else None
        if after is not None and any(abs(after - x) <= STOP_TOLERANCE for x in stops.values()):
            stops = {}  # a wrapped cell or a hanging indent
        found.append(set(stops))
    return found


def _row(line: Line, cells: set[int]) -> str:
    """The line as a Markdown table row: its cells (runs from each index in `cells` on)
    separated by TABLE_CELL, between outer bars."""
    row = ""
    for k, (text, _) in enumerate(line.parts):
        row = row.rstrip() + TABLE_CELL + text.lstrip() if k in cells else row + text
    return f"| {row.strip()} |"


def _characters_by_size(pages: list[list[Line]]) -> Counter:
    sizes = Counter()
    for page in pages:
        for line in page:
            for text, size in line.parts:
                if size is not None:
                    sizes[size] += len(text.strip())
    return sizes


def _readable(page: list[Line]) -> list[Line]:
    """The page without text too small to read, when most of the page is readable. (A page whose
    text is mostly that small is kept whole: its sizes are likely wrong, as for text in a scaled
    form XObject, whose matrix pypdf does not apply.) A line made only of unreadable text goes; an
    empty line stays, it separates paragraphs."""
    sizes = _characters_by_size([page])
    small = sum(n for s, n in sizes.items() if s < MIN_READABLE_POINTS)
    if not small or small * 2 >= sum(sizes.values()):
        return page
    return [line.readable() for line in page if line.readable().text.strip() or not line.text.strip()]


def _drop(above: Line, line: Line) -> float | None:
    """How far `line`'s baseline stands below that of `above`, the line before it, when both hold
    text at known heights and `line` is the lower (not a new column's first line)."""
    if above.y is None or line.y is None or not above.text.strip() or not line.text.strip():
        return None
    drop = above.y - line.y
    return drop if drop > 0 else None


def _line_spacing(pages: list[list[Line]]) -> dict[float, float]:
    """For each font size, the usual distance from one line's baseline to the next line's of the
    same size (the most common, to a tenth of a point): the document's leading."""
    drops: dict[float, Counter] = {}
    for page in pages:
        for above, line in zip(page, page[1:]):
            if line.size is not None and above.size == line.size and (drop := _drop(above, line)):
                drops.setdefault(line.size, Counter())[round(drop, 1)] += 1
    return {size: counted.most_common(1)[0][0] for size, counted in drops.items()}


def _begins_sentence(above: Line | None, line: Line, spacing: dict[float, float]) -> bool:
    """Whether `line` stands lower under `above` (the text line before it, None when there is
    none) than PARAGRAPH_GAP times the larger of their sizes' usual spacings (`spacing`; either
    one's when only one is known)."""
    drop = _drop(above, line) if above is not None else None
    if not drop:
        return False
    usual = max((spacing[size] for size in (above.size, line.size) if size in spacing), default=None)
    return usual is not None and drop > PARAGRAPH_GAP * usual


def _is_heading(block: list[Line], level: dict) -> bool:
    joined = " ".join(line.text.strip() for line in block)
    return (block[0].size in level and len(joined.split()) <= HEADING_MAX_WORDS and len(joined) <= HEADING_MAX_CHARS
            and any(c.isalpha() for c in joined))


def drop_contents_entries(pages: list[list[Line]]) -> list[list[Line]]:
    """Pages without their contents entries (`_CONTENTS_ENTRY`): a contents page repeats the
    document's headings with page numbers, and each entry, a long run of dots to the tokenizer,
    became a chunk of its own that outranked the section it names ("Mission……3" above NARA's
    mission; 250 of the 787 chunks of the eight shared PDFs with the shipped corpus)."""
    return [[line for line in page if not _CONTENTS_ENTRY.search(line.text)] for page in pages]


def drop_running_lines(pages: list[list[Line]]) -> list[list[Line]]:
    """Pages without the lines that recur among their first or last lines (module doc). Lines
    match on their text with digits ignored and on their size, so a chapter heading set large
    is not the small running header of the same words. A line without letters (a page number)
    counts only as the very first or last line of its page."""
    def key(line: Line) -> tuple[str, float | None]:
        return _SPACES.sub(" ", _DIGITS.sub("#", line.text)).strip(), line.size

    def margins(page: list[Line]) -> set[int]:
        filled = [i for i, line in enumerate(page) if line.text.strip()]
        edge = set(filled[:MARGIN_LINES] + filled[-MARGIN_LINES:])
        outermost = {filled[0], filled[-1]} if filled else set()
        return {i for i in edge if i in outermost or any(c.isalpha() for c in page[i].text)}

    def at_top(page: list[Line]) -> set[int]:
        return set([i for i, line in enumerate(page) if line.text.strip()][:MARGIN_LINES])

    edges = [(margins(page), at_top(page)) for page in pages]
    seen = Counter()
    seen_at: dict[tuple[str, float | None], set[bool]] = {}  # where each margin line stood: at the top or not
    for page, (edge, top) in zip(pages, edges):
        for i in edge:
            seen_at.setdefault(key(page[i]), set()).add(i in top)
        seen.update({key(page[i]) for i in edge})
    running = {k for k, n in seen.items() if n >= max(MIN_REPEATS, len(pages) / 2)}
    if not running:
        return pages

    def is_running(line: Line, top: bool) -> bool:
        # Or the start of one, at its size and at the same edge, of two words or more: a first
        # page's header often lacks what the later pages' add ("Page 1 of 3" over "Page 2 of 3
        # DFW08WA050" in NTSB reports, where it stood as a heading over the first chunk:
        # helper-76's drive).
        text, size = key(line)
        return (text, size) in running or (len(text.split()) > 1 and any(c.isalpha() for c in text) and any(
            s == size and r.startswith(text + " ") and top in seen_at[(r, s)] for r, s in running))

    return [[line for i, line in enumerate(page) if not (i in edge and is_running(line, i in top))]
            for page, (edge, top) in zip(pages, edges)]


def _blocks(lines: list[Line]) -> list[list[Line]]:
    """Runs of consecutive non-empty lines of one size; an empty line is a block of its own."""
    blocks: list[list[Line]] = []
    for line in lines:
        if blocks and line.text.strip() and blocks[-1][-1].text.strip() and blocks[-1][-1].size == line.size:
            blocks[-1].append(line)
        else:
            blocks.append([line])
    return blocks


def _lines_pypdf(name: str, data: bytes) -> tuple[str, list[list[Line]]]:
    import logging

    from pypdf import PdfReader, apply_configuration

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns on every small oddity
    with apply_configuration(array_maximum_element_count=PYPDF_ELEMENT_LIMIT,
                             dictionary_maximum_element_count=PYPDF_ELEMENT_LIMIT):
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password; those open fine.
            try:
                opened = reader.decrypt("")
            except Exception:  # noqa: BLE001 - pypdf raises several types for unsupported crypto
                opened = 0
            if not opened:
                raise DocumentError(name, "encrypted PDF: it needs a password; save an unencrypted copy")
        pages = [_page_lines(page) for page in reader.pages]
        try:
            title = str(reader.metadata.title).strip() if reader.metadata and reader.metadata.title else ""
        except Exception:  # noqa: BLE001 - a broken info dictionary costs only the title
            title = ""
    return title, pages


def _page_lines(page) -> list[Line]:
    """A page's lines as pypdf extracts them, each made of runs with their font sizes. The runs
    pypdf reports to its visitor add up to exactly the text it returns, so every character
    gets its run's size."""
    runs: list[tuple[str, float, float, float]] = []

    def visit(text, cm, tm, font, font_size):
        # The size on the page: the font size scaled by the text and page matrices' vertical scale.
        scale = (tm[2] ** 2 + tm[3] ** 2) ** 0.5 * (cm[2] ** 2 + cm[3] ** 2) ** 0.5
        x = float(tm[4] * cm[0] + tm[5] * cm[2] + cm[4])  # where the run starts on the page
        y = float(tm[4] * cm[1] + tm[5] * cm[3] + cm[5])  # and its baseline's height
        runs.append((text, round(float(font_size) * scale * 2) / 2, x, y))  # the size to the half point

    text = page.extract_text(visitor_text=visit) or ""
    if "".join(run[0] for run in runs) != text:  # not as expected of this pypdf: text without sizes
        return [Line(((line, None),)) for line in text.split("\n")]
    lines: list[Line] = []
    current: list[tuple[str, float]] = []
    starts: list[float] = []
    y: float | None = None
    for run, size, x, run_y in runs:
        for i, part in enumerate(run.split("\n")):
            if i:  # a line break inside the run closes the line so far
                lines.append(Line(tuple(current), tuple(starts), y))
                current, starts, y = [], [], None
            if part:
                if not current:
                    y = run_y if not i else None  # after a break inside the run: unknown
                current.append((part, size))
                starts.append(x if not i else float("nan"))  # after a break inside the run: unknown
    lines.append(Line(tuple(current), tuple(starts), y))
    return lines


def _lines_pdfium(data: bytes) -> tuple[str, list[list[Line]]]:
    import pypdfium2

    pdf = pypdfium2.PdfDocument(data)
    try:
        pages = []
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            text = textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n")
            pages.append([Line(((line, None),)) for line in text.split("\n")])
            textpage.close()
            page.close()
        title = (pdf.get_metadata_dict().get("Title") or "").strip()
    finally:
        pdf.close()
    return title, pages
