"""Plain text out of chunk markup, and the one sentence splitter every stage uses.

Answers quote passage sentences, training data cuts answers from chunks, and the citation
check reads a reply sentence by sentence: all three split with `sentences` here. Nothing in this
module depends on a language's words: it reads punctuation, capitals and Markdown layout only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import regex

EMPHASIS_MARK = re.compile(r"\*\*|__|`")  # Markdown emphasis and code marks, which plain() drops
# A Markdown link or image, "[text](target)" or "![text](target)": read as its text alone.
# The target may hold one level of brackets, as Markdown allows ("(javascript:alert(2))").
_LINK = re.compile(r"!?\[([^\[\]\n]*)\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"\n]*\")?\)")
# How a table row's cells are separated (HTML's <td>s, a PDF's column stops, Markdown tables).
TABLE_CELL = " | "
_CELL_BAR = re.compile(r"(?<!\\)\|")  # a bar between cells; Markdown writes a bar inside one as "\|"
ESCAPED_BAR = "\\|"
# A line break inside a paragraph that also ends a sentence, as a PDF's spacing shows one
# (ingest/pdf.py): it begins the line after it. Unicode's LINE SEPARATOR, which every tokenizer
# reads as white space and str.splitlines() as a line's end; the chunker reads its line as part of
# the paragraph, and prose_pieces ends a sentence there.
LINE_BREAK = "\u2028"


def unmarked(text: str) -> str:
    """A passage's text as it is shown outside ragbot (a prompt, JSON, the terminal): without
    its LINE_BREAK marks, which only the sentence splitting reads (the line end before each
    stays). helper-83 found them in `ask --json` as "\\u2028"."""
    return text.replace(LINE_BREAK, "")

# The glyphs that open a list item where a PDF sets one ("• Openness"; U+F0B7 is the bullet of
# Word's Symbol font): typography, not words.
BULLETS = "\u2022\u2023\u2043\u25aa\u25cf\uf0b7"  # not "◦": LaTeX's PDFs give it for a degree sign
# What opens a list item: Markdown's mark ("- ", "* ", "1. ") or a bullet glyph, then a space (a
# glyph may also stand alone on its line).
_ITEM_MARK = rf"\s*(?:(?:[-*+]|\d+[.)])\s|[{BULLETS}](?:\s|$))"
# A block ends at a blank line, or before a list item.
_BLOCK = re.compile(rf"\n\s*\n|\n(?={_ITEM_MARK})")
_ITEM_START = re.compile(_ITEM_MARK)  # matched at a line's start
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")  # Markdown's alone
# A bullet glyph that opens a sentence is not quoted (also one after a full stop: "…paste. • Word").
_BULLET = re.compile(rf"^[{BULLETS}]\s+")
# What ends a sentence in any script: Unicode's Sentence_Terminal characters (UAX #29), . ! ?
# and the danda (।), the Arabic question mark (؟), the ideographic full stop (。) and the rest.
TERMINAL = r"\p{Sentence_Terminal}"
# Those set full width (。！？): Chinese and Japanese write no space after them.
WIDE_TERMINAL = r"[\p{Sentence_Terminal}&&[\p{East_Asian_Width=Wide}\p{East_Asian_Width=Fullwidth}]]"
CLOSING = "\"'’”»)」』）】〕〉》"  # quotes and brackets that close after a sentence's stop
_CITATIONS = r"(?:\s*\[\d+(?:\s*,\s*\d+)*\])*"
_OPENS_SENTENCE = r"(?=(?:[^\s\w\[]\s*)?[\w\"'«„(「『])"
# A sentence ends after a terminal (a run of them), any closing quotes or brackets and any
# citation marks that follow it, before white space and then a word or an opening quote, with at
# most one mark before it ("• Next", "— Next"); after a full-width terminal, also with no white
# space ("…ました。新製品は…"), except after a closing quote, where the sentence goes on unless a
# quote opens ("「はい。」と言った。" is one sentence), and except after the full-width full stop
# ．, which also writes decimals and abbreviations ("１．５倍", "Fig．3"). A decimal point ("1.7")
# ends none; a closing quote ('"Stop." He') and a citation mark after the full stop ("Fact. [2]")
# belong to the sentence before it.
# (The `regex` module: Python's `re` has no Unicode properties; "(?|" numbers both branches' group 1.)
_SENTENCE_END = regex.compile(
    rf"(?|(?<={TERMINAL})([{CLOSING}]*{_CITATIONS})\s+{_OPENS_SENTENCE}"
    rf"|(?<={WIDE_TERMINAL})(?<![．﹒])(?!{TERMINAL}|[{CLOSING}])({_CITATIONS})\s*{_OPENS_SENTENCE}"
    rf"|(?<={WIDE_TERMINAL})(?<![．﹒])([{CLOSING}]+{_CITATIONS})(?=[「『（(“‘]))", regex.V1)
_FINAL_STOPS = regex.compile(rf"{TERMINAL}+$")
_SPACELESS = regex.compile(r"[\p{Line_Break=Ideographic}\p{Line_Break=Complex_Context}]")
_WORD_BOUNDARIES = regex.compile(r"\b", regex.V1 | regex.WORD)
_ENDS_WIDE = regex.compile(rf"{WIDE_TERMINAL}[{CLOSING}]*{_CITATIONS}$", regex.V1)
# The first word character after a sentence mark, past opening quotes, bullets and spaces.
_NEXT_WORD = re.compile(r"[^\w\s]*\s*(\w)?")
_LETTER = re.compile(r"[^\W\d_]")
# A date written day first: a day of one or two digits and its stop, then a word and a year
# ("am 1. Januar 2024", "30. listopadu 2022"); the stop after the day ends no sentence.
_DAY = re.compile(r"(?<![\w.,])\d{1,2}\.$")
_MONTH_YEAR = re.compile(r"[^\W\d_]+\s+\d{3,4}(?![\w,.]\d)")
# A list's number written inline, as PDF text gives a numbered list ("…in the coming years: 1.
# Develop real estate… 2. Offer best value…"): a number of one or two digits and its stop at the
# start of a line or just after a sentence's end (and its citation marks), or a "1." just after
# a colon, where a list starts. It begins the item after it. A form's "Age: 45. Sex: Male."
# still ends at "45.".
_ENUMERATOR = re.compile(r"(?:^\s*|[.!?\]]\s+)\d{1,2}\.$|:\s+1\.$")
# What may stand just before a word: white space, an opening bracket or quote.
_OPENERS = "\\s(\\[\"'«„“‘"
# A full stop after one letter, or after letters each followed by one ("A.", "z.", "U.S.",
# "e.g.", "U.S.C."), marks an initial or an abbreviation, not the end of a sentence: when the
# letters stand as a word of their own, after a space or an opening bracket or quote ("km/h." and
# "Typ-B." end sentences).
_INITIALS = re.compile(rf"(?:^|[{_OPENERS}])(?:[^\W\d_]\.)+$")
# The word a full stop closes, as an abbreviation is written ("Dr", "U.S", "Nr"): what stands
# between it and the white space or opening mark before it.
WORD_AS_ABBREVIATED = rf"(?:^|[{_OPENERS}])([^{_OPENERS}]+)"  # also read by ingest/abbreviations.py
_WORD_BEFORE_STOP = re.compile(WORD_AS_ABBREVIATED + "$")
# A sentence so far of one capitalised word and its full stop, after any list mark ("- Prof.",
# "Sgt."), before another capital: a title or an abbreviation that opens a line ("- Prof. Anton
# Várady, who mapped the caves"), not a sentence, even when the documents write it too seldom to
# teach it (ingest/abbreviations.py). Scripts without capitals, which also write no spaces
# between words ("这是模型. 它很小."), are split as before.
_ONE_WORD = re.compile(rf"\s*(?:[-*+{BULLETS}]\s+)?[^\W\d_]\S*\.")
_WORD = re.compile(r"\w+")


def plain(text: str) -> str:
    """Text without Markdown emphasis and code marks, links and images read as their text
    ("[the login page](/login)" as "the login page"), on single spaces."""
    return " ".join(EMPHASIS_MARK.sub("", _LINK.sub(r"\1", text)).split())


def word_count(text: str) -> int:
    """How many words `text` holds: its runs between spaces, except that a run in a script written
    without spaces between words (Chinese, Japanese, Thai: Unicode's line-break classes Ideographic
    and Complex_Context) counts the words Unicode's default word boundaries find in it (UAX #29:
    each kanji or kana apart, a katakana run as one). "東京本社で会議が開かれました。" is 14 words,
    not one, so it is no shorter than an English sentence of the same content."""
    return sum(sum(1 for word in _WORD_BOUNDARIES.split(run) if _WORD.search(word)) if _SPACELESS.search(run) else 1
               for run in text.split())


def sentence_body(sentence: str) -> str:
    """A sentence without the stops that end it ("… in 2013." -> "… in 2013", "…ました。" -> "…ました")."""
    return _FINAL_STOPS.sub("", sentence)


def cited(sentence: str, n: int) -> str:
    """The sentence with the citation mark [n] before the stops that end it: "… in 2013." ->
    "… in 2013 [1].", "…ました。" -> "…ました [1]。"."""
    body = sentence_body(sentence)
    return f"{body} [{n}]{sentence[len(body):]}"


def join_sentences(sentences: Iterable[str]) -> str:
    """Sentences as one text: a space between two, none after a full-width stop (。！？), as
    Chinese and Japanese write them."""
    joined = ""
    for sentence in sentences:
        if joined and not _ENDS_WIDE.search(joined):
            joined += " "
        joined += sentence
    return joined


def sentence_spans(text: str, abbreviations: frozenset[str] = frozenset()) -> list[tuple[int, int]]:
    """(start, end) of every sentence of `text`, white space trimmed. A line break ends a
    sentence; within a line a sentence ends at a sentence stop of any script (a run of them:
    `_SENTENCE_END`) and the citation marks after it, when white space and something that can
    open a sentence follow (a letter of any script, a digit, a quote; after 。！？ no white space
    is needed), unless an initial or a small letter shows it does not
    (`_ends_sentence`). A decimal point ("1.7") ends none. `abbreviations`: words, lower-cased
    and without their last stop, that the user's documents write as abbreviations ("dr", "nr",
    learned from their text by ingest/abbreviations.py); a full stop after one ends no sentence."""
    spans = []
    line_start = 0
    for line in text.split("\n"):
        start = 0
        for m in _SENTENCE_END.finditer(line):
            if not _ends_sentence(line, m, start, abbreviations):
                continue
            spans.append((line_start + start, line_start + m.end(1)))
            start = m.end()
        spans.append((line_start + start, line_start + len(line)))
        line_start += len(line) + 1
    trimmed = []
    for a, b in spans:
        piece = text[a:b]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            trimmed.append((a + lead, a + len(piece.rstrip())))
    return trimmed


def _ends_sentence(line: str, mark: regex.Match, start: int, abbreviations: frozenset[str] = frozenset()) -> bool:
    """Whether a mark that `_SENTENCE_END` found ends the sentence that began at `start`.

    Not when the next word starts with a small letter ("Lewis et al. introduced", "e.g. in
    chat") and this sentence started with a capital: a text whose sentences start with capitals
    starts every one with one, while a script whose letters all read as small (Georgian's) never
    does, and is split as before. Not when the full stop closes an initial or letters-and-stops
    ("John A. Kiley", "the U.S. Department", "z. B. GPT-3"), which also joins the rare sentence
    that ends in a one-letter word ("plan B. Then"). Not yet when only opening marks follow (a
    reply still being written): the word after them decides, so a sentence once ended stays
    ended. Not after the day of a date written day first ("am 1. Januar 2024"). Not after a
    list's number written inline ("years: 1. Develop…", "portfolio. 2. Offer…"), which begins
    its item; a number ending a sentence after a word ("The total was 12. Then") or a form's
    label ("Age: 45. Sex: Male.") still ends it. Not after a word of `abbreviations`, which the
    user's own documents taught ("Dr. Ellen Marsh"). Not after a sentence of one capitalised word
    before a capital ("- Prof. Anton Várady", "Sgt. Mira"; this also joins the rare one-word
    sentence: "Yes. We did."). What this leaves split: another word's abbreviation before a
    capital or a digit inside a sentence ("see No. 6" where the documents did not teach "no"),
    and an ordinal before a noun ("im 19. Jahrhundert", "nach dem 2. Weltkrieg"); telling those
    from a sentence's end would take a language's words."""
    following = _NEXT_WORD.match(line, mark.end()).group(1)
    if following is None:
        return False
    if following.islower():
        first = _LETTER.search(line, start, mark.start())
        if first and first.group().isupper():
            return False
    stop = mark.start()  # just past the . ! or ?
    if _DAY.search(line, max(0, stop - 3), stop) and _MONTH_YEAR.match(line, mark.end()):
        return False
    if _ENUMERATOR.search(line, max(0, stop - 40), stop):
        return False
    if line[stop - 1] != ".":
        return True
    one_word = following.isupper() and _ONE_WORD.fullmatch(line, start, stop)
    if one_word and line[start:stop].lstrip(" -*+" + BULLETS)[0].isupper():
        return False
    if abbreviations:
        word = _WORD_BEFORE_STOP.search(line, max(0, stop - 60), stop - 1)
        if word and word.group(1).lower() in abbreviations:
            return False
    # The longest run of initials is shorter than 40 characters; searching from a position keeps
    # `^` at the line's real start.
    return not _INITIALS.search(line, max(0, stop - 40), stop)


def sentences(text: str, abbreviations: frozenset[str] = frozenset()) -> list[str]:
    """The sentences of `text` (see sentence_spans), each with the citation marks after it."""
    return [text[a:b] for a, b in sentence_spans(text, abbreviations)]


def prose_sentences(text: str, abbreviations: frozenset[str] = frozenset()) -> list[str]:
    """The sentences of a passage's prose, markup removed: headings ("# ...") dropped, each list
    item and paragraph read on its own, each table row (`is_table_row`) read as an answer quotes
    it (`row_sentences`): a line without bars, or one for each label with its value in a form's
    row that holds several, a label with an empty value left out."""
    return [sentence for sentence, _ in prose_pieces(text, abbreviations)]


def prose_pieces(text: str, abbreviations: frozenset[str] = frozenset()) -> list[tuple[str, bool]]:
    """prose_sentences, each with whether it is a field: a label with its value, from a table
    row ("Registration: N5921D"). A field is a whole fact however few its words. A sentence also
    ends at a LINE_BREAK, and one that opens with a bullet glyph ("• ") is read without it."""
    found: list[tuple[str, bool]] = []
    for block in _BLOCK.split(text):
        lines = [line.strip() for line in block.splitlines() if markdown_heading(line) is None]
        prose: list[str] = []
        for line in [*lines, None]:  # None: the end of the block ends its prose
            # An empty line inside a block is where a LINE_BREAK stood (splitlines ends a line there).
            if line and not is_table_row(line):
                prose.append(line)
                continue
            flat = plain(_LIST_MARK.sub("", " ".join(prose)))
            found.extend((_BULLET.sub("", s), False) for s in sentences(flat, abbreviations) if _WORD.search(s))
            prose = []
            if line is not None and _WORD.search(line):
                found.extend(row_sentences(plain(line)))
    return found


def is_list_item(line: str) -> bool:
    """Whether a line starts a Markdown list item ("- ", "* ", "1. ")."""
    return bool(_LIST_MARK.match(line))


def opens_item(line: str) -> bool:
    """Whether a line opens a list item: Markdown's, or one set with a bullet glyph ("• ", as
    PDFs give lists), which a line of its own also shows."""
    return bool(_ITEM_START.match(line))


# A Markdown (ATX) heading as CommonMark reads one: up to three spaces, one to six "#", then
# space and the title; a closing run of "#" counts only after a space ("## Learning C#" keeps its "#").
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")


def markdown_heading(line: str) -> tuple[int, str] | None:
    """A heading line's level and title ("## Costs" -> (2, "Costs")), as ragbot's readers mark
    a section; None for any other line, and for a "#" without a title ("#1 priority", "#tag")."""
    match = _HEADING.match(line)
    if not match or not match.group(2).strip():
        return None
    return len(match.group(1)), match.group(2).strip()


def heading_title(line: str) -> str | None:
    """A Markdown heading line's title ("## Costs" -> "Costs"); None for any other line."""
    heading = markdown_heading(line)
    return heading[1] if heading else None


def readable_line(line: str) -> str:
    """A line of a passage as a reader takes it outside the chat page (an export's excerpt): a
    heading's title without its "#" marks, a table row's cells as an answer quotes them
    (cells_as_prose), a Markdown table's "| --- |" line as nothing; any other line as it is."""
    title = heading_title(line)
    if title is not None:
        return title
    if is_table_row(line):
        return cells_as_prose(line.strip()) if any(ch.isalnum() for ch in line) else ""
    return line


def is_table_row(line: str) -> bool:
    """Whether a line is a table row: it begins or ends with a bar, as a Markdown table row, the
    PDF reader's rows ("| a | b |") and the HTML reader's ("a | b |") do. A bar inside prose
    ("ls | grep x") does not make one."""
    line = line.strip()
    return len(line) > 1 and (line.startswith("|") or line.endswith("|"))


def cells_as_prose(row: str) -> str:
    """A table row ("| Departure Point: | Quincy, FL | Flight Plan: | None |") as a line a reader
    can take in an answer: a label (a cell ending in a colon) is followed by its value, every other
    cell by a semicolon ("Departure Point: Quincy, FL; Flight Plan: None"); a label whose value
    cell is empty, or is another label, by a semicolon too ("Name:; Year: 2019"). An escaped
    bar ("a\\|b") is text."""
    return "; ".join(text for text, _ in _row_parts(row))


def row_sentences(row: str) -> list[tuple[str, bool]]:
    """A table row as the sentences an answer may quote, each with whether it is a field (a label
    with its value): a form's row that pairs two labels or more with their values
    ("| Airframe Total Time: | 3861 Hours | Engine Manufacturer: | Lycoming |") gives each of its
    parts on its own, since each pair is a fact of its own; any other row is one sentence
    (cells_as_prose), a field when it is one label with its value ("| Surname: | Ambur |").

    A form's empty field says nothing, so it is left out: a label whose value cell is empty, and
    in a form's row (one that pairs a label with its value, or holds two labels or more) a label
    with no value after it: "| Departure Time: | 1710 EST | Type of Airspace: |" was quoted as
    "Departure Time: 1710 EST; Type of Airspace:", and a row of such labels gives no sentence.
    In any other row a cell ending in a colon is text ("| Step 1 | Mix the following: |")."""
    parts = _row_parts(row, empty_labels=False)
    alone = sum(not paired and text.endswith(":") for text, paired in parts)
    if any(paired for _, paired in parts) or alone > 1:
        parts = [(text, paired) for text, paired in parts if paired or not text.endswith(":")]
    if sum(paired for _, paired in parts) > 1:
        return parts
    return [("; ".join(text for text, _ in parts), len(parts) == 1 and parts[0][1])] if parts else []


def table_row(cells: list[str]) -> str:
    """Cells as a Markdown table row, "| a | b |", a bar inside a cell escaped ("\\|")."""
    return f"| {TABLE_CELL.join(cell.replace('|', ESCAPED_BAR) for cell in cells)} |"


def table_cells(row: str) -> list[str]:
    """A Markdown table row's cells (table_row read back), with or without outer bars. An empty
    cell inside the row is kept, so that what follows it stays in its column ("| Name: | | Note |")."""
    cells = [c.strip().replace(ESCAPED_BAR, "|") for c in _CELL_BAR.split(row.strip())]
    # The row's outer bars leave an empty cell at each end.
    if cells and not cells[0]:
        cells = cells[1:]
    if cells and not cells[-1]:
        cells = cells[:-1]
    return cells


def _row_parts(row: str, empty_labels: bool = True) -> list[tuple[str, bool]]:
    """The row's parts in order (cells_as_prose), each with whether it is a label and its value.
    An empty cell pairs no label with the cell after it. `empty_labels` False leaves out a label
    whose value cell is there and empty ("| Registration: | |"; a last cell ending in a colon,
    "| Step 1 | Mix the following: |", is kept)."""
    cells = table_cells(row)
    parts, i = [], 0
    while i < len(cells):
        cell, after = cells[i], cells[i + 1] if i + 1 < len(cells) else ""
        if cell.endswith(":") and after and not after.endswith(":"):
            parts.append((f"{cell} {after}", True))  # a label and its value
            i += 2
            continue
        if cell.endswith(":") and not empty_labels and i + 1 < len(cells) and not after:
            i += 2  # a label and its empty value
            continue
        if cell:
            parts.append((cell, False))
        i += 1
    return parts


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits of any script)."""
    return [w.lower() for w in _WORD.findall(text)]


def counted(n: int, thing: str) -> str:
    """"1 chunk", "2 chunks": a count and what it counts (an English plural in "s", for the
    interface's own words only, never for a document's)."""
    return f"{n} {thing}{'' if n == 1 else 's'}"


def one_line(text: str) -> str:
    """`text` safe to print on one line: a name holding a newline, a control character or bytes
    that are not UTF-8 (kept by Python as surrogates) is shown escaped, as Python writes it."""
    return text if text.isprintable() else ascii(text)[1:-1]
