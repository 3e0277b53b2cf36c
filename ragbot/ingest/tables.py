"""Tables that name their columns, written so that each row says what its values are.

A table row is one line of ragbot's text, a Markdown row ("| Scope | Any content type |",
`text.table_row`), and every later stage reads it on its own: chunking may cut a table between
rows, and an answer quotes a single row. A row of bare values ("Scope; Any content type; Text")
then says nothing about which value is which. So where the markup names the columns (an HTML
table's row of <th> cells or its <thead>, a Markdown table's header row above its delimiter
row), each body row is written with its column's name in every cell:
"| Aspect: Scope | Generative AI: Any content type | Large language model: Text |". The header
row itself is then left out, since every row carries it.

Only what the markup says is used: no words are read, and a table whose columns the markup does
not name (a PDF's, a header-less HTML table) is written as before.
"""

from __future__ import annotations

import re

from ragbot.text import table_cells, table_row

VERSION = 1  # of how tables are written; a stored Markdown or HTML document written otherwise is read again

# A Markdown table's delimiter row: cells of dashes, each with an optional colon at either end.
_DELIMITER_CELL = re.compile(r"^:?-+:?$")
_FENCE = re.compile(r"^(`{3,}|~{3,})")


def named_cell(name: str, value: str) -> str:
    """A cell with its column's name ("Aspect: Scope"); the value alone when the column has no
    name or the cell is empty, and no second colon after a name that already ends in one."""
    name, value = name.strip(), value.strip()
    if not name or not value:
        return value
    return f"{name} {value}" if name.endswith(":") else f"{name}: {value}"


def named_row(header: list[str], row: list[str]) -> str:
    """A body row as a Markdown row, each cell named by its column in `header`. Cells past the
    header's names are kept as they are."""
    return table_row([named_cell(header[i], cell) if i < len(header) else cell for i, cell in enumerate(row)])


def markdown_with_named_columns(text: str) -> str:
    """Markdown text with each table that has a header row (the row above a delimiter row of
    as many cells, "| --- | :-: |") written as named rows; code blocks and everything else as
    they are. A table whose header is followed by no rows is kept as written."""
    lines = text.split("\n")
    out: list[str] = []
    fence = ""  # the open code fence; a fence closes on a run of its character at least as long
    i = 0
    while i < len(lines):
        line = lines[i]
        opens = _FENCE.match(line.strip())
        if opens and not fence:
            fence = opens.group(1)
        elif opens and opens.group(1)[0] == fence[0] and len(opens.group(1)) >= len(fence) \
                and not line.strip()[len(opens.group(1)):].strip():
            fence = ""
            out.append(line)
            i += 1
            continue
        if fence or i + 1 >= len(lines) or not _is_header(line, lines[i + 1]):
            out.append(line)
            i += 1
            continue
        header = table_cells(line)
        body_end = i + 2
        while body_end < len(lines) and "|" in lines[body_end] and lines[body_end].strip():
            body_end += 1
        rows = lines[i + 2:body_end]
        out.extend([named_row(header, table_cells(row)) for row in rows] if rows else lines[i:body_end])
        i = body_end
    return "\n".join(out)


def _is_header(line: str, below: str) -> bool:
    """Whether `line` is a Markdown table's header row: both it and `below` hold a bar, and
    `below` is a delimiter row ("| --- | :-: |") with as many cells (so a line over a rule of
    dashes, "- - -" or "---", is not one)."""
    if "|" not in line or "|" not in below:
        return False
    delimiter = table_cells(below)
    return bool(delimiter) and all(_DELIMITER_CELL.match(cell) for cell in delimiter) \
        and len(delimiter) == len(table_cells(line))


def html_with_named_columns(soup) -> list:
    """Replace, in a parsed HTML page (BeautifulSoup), each table that names its columns with its
    caption (if any) and its named rows, as a block of text of its own. The header is a <thead>
    of one row, or else a first row of <th> cells only. Left as the reader writes any table
    (each row its cells, no names), wherever a name could land on the wrong value: a table
    holding another table or rows inside rows (unclosed tags, as html.parser nests them), one
    with a cell spanning rows, or header cells spanning columns, a <thead> of several rows, and
    one with no body rows. A body row whose cells span columns, or that holds only <th> cells
    (a title inside the table), is written without names. Returns the strings written in the
    tables' places, whose line ends (one per row) are ragbot's, not the source's."""
    written = []
    for table in soup.find_all("table"):
        if table.find("table") is not None:
            continue
        rows = [tr for tr in table.find_all("tr") if tr.find_parent("table") is table]
        if len(rows) < 2 or any(tr.find("tr") is not None for tr in rows):
            continue
        cells_of = [tr.find_all(["td", "th"], recursive=False) for tr in rows]
        if any(cell.find(["td", "th"]) is not None or _spans(cell, "rowspan") for cells in cells_of for cell in cells):
            continue
        head, first = table.find("thead"), cells_of[0]
        named_by_head = head is not None and rows[0].find_parent("thead") is head
        if named_by_head and sum(tr.find_parent("thead") is head for tr in rows) > 1:
            continue
        if not first or any(_spans(cell, "colspan") for cell in first) \
                or not (named_by_head or all(cell.name == "th" for cell in first)):
            continue
        header = [_cell_text(cell) for cell in first]
        body = []
        for cells in cells_of[1:]:
            values = [_cell_text(cell) for cell in cells]
            if not any(values):
                continue
            unnamed = any(_spans(cell, "colspan") for cell in cells) or all(cell.name == "th" for cell in cells)
            body.append(table_row(values) if unnamed else named_row(header, values))
        if body:
            caption = _cell_text(table.caption) if table.caption is not None else ""
            block = soup.new_string("\n\n" + "\n".join(([caption] if caption else []) + body) + "\n\n")
            table.replace_with(block)
            written.append(block)
    return written


def _spans(cell, attribute: str) -> bool:
    """Whether a cell spans more than one column ("colspan") or row ("rowspan")."""
    try:
        return int(cell.get(attribute, 1)) > 1
    except (TypeError, ValueError):
        return False  # a span that is not a number spans nothing


def _cell_text(cell) -> str:
    return " ".join(cell.get_text(" ").split())
