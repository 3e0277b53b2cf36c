"""Which character encoding a text file's bytes are in.

UTF-8 (with or without its mark) is read as is, and UTF-16/32 by their byte-order marks
(readers.py); UTF-8 with a few stray bytes is read as UTF-8 all the same (`mostly_utf8`). Other
bytes were written by an older program in a legacy code page (Windows-1252 for Western European
text, 1251 or KOI8-R for Russian, Shift_JIS for Japanese…). An HTML page
usually names its own in a `<meta charset>`, found by BeautifulSoup's `EncodingDetector` (the
HTML standard's prescan); for the rest, chardet guesses from the bytes, scoring each code page's
decoding against the letter statistics of the languages written in it. On the development set
(bench/explore_encodings.py: 52 texts in 22 languages) chardet 7 read 84 of 86 files and first
sentences back exactly, charset-normalizer 67 (docs/benchmarks.md §43). A short note holds too
few letters to tell code pages apart ("Le café ouvre à huit heures." came back Cyrillic), so a
guess is said: the ingest names the encoding it read such a file in.
"""

from __future__ import annotations

from dataclasses import dataclass

# Windows-1252, as Python names it
WESTERN = "cp1252"


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # Python's name for the codec that read it
    guessed: bool  # True when no mark or declaration named it: the bytes were guessed from


def guessed_note(encoding: str) -> str:
    """What the ingest says of a file whose encoding was guessed (after "read as ENCODING: PATH: ")."""
    if encoding == "utf-8":
        return ("UTF-8 but for a few bytes, each read as \ufffd (a file cut short or joined from pieces has "
                "such bytes); if letters look wrong in answers, save it as UTF-8 and ingest it again")
    return ("not UTF-8, so its encoding was guessed from its bytes; if its letters look wrong in answers, "
            "save it as UTF-8 and ingest it again")


def mostly_utf8(data: bytes) -> bool:
    """Whether bytes that are not valid UTF-8 are UTF-8 with a few stray bytes all the same: more
    of its letters outside ASCII decode as UTF-8 than there are bytes that do not. A legacy code
    page's text almost never forms a valid UTF-8 sequence ("é" in Windows-1252 is one byte that
    UTF-8 reads as the start of a sequence the next letter breaks); chardet alone read such a
    file as Windows-1252, every "ä" as "Ã¤" (helper-88's review)."""
    text = data.decode("utf-8", errors="replace")
    stray = text.count("\ufffd")
    return sum(1 for ch in text if ord(ch) > 0x7F) - stray > stray


def declared_html_encoding(data: bytes) -> str | None:
    """The encoding an HTML page names for itself (`<meta charset>`, or an XML declaration), as
    the WHATWG Encoding Standard reads the name, if Python has a codec for it."""
    import codecs

    from bs4.dammit import EncodingDetector

    declared = EncodingDetector.find_declared_encoding(data, is_html=True)
    if not declared:
        return None
    try:
        name = codecs.lookup(declared).name
    except LookupError:
        return None
    if name.startswith(("utf-16", "utf-32")):
        # A page read byte by byte cannot be UTF-16 (its "<meta" would not be ASCII): the
        # standard's prescan takes such a label for UTF-8, which the reader tried already.
        return None
    return _AS_THE_STANDARD_READS.get(name, name)


# Labels that the Encoding Standard decodes with a wider code page than the one named: pages so
# labelled hold that code page's extra characters (curly quotes and dashes in 0x80-0x9F).
_AS_THE_STANDARD_READS = {
    "iso8859-1": WESTERN, "ascii": WESTERN, "iso8859-9": "cp1254", "iso8859-11": "cp874", "tis-620": "cp874",
    "gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949", "shift_jis": "cp932",
}


def guess_encoding(data: bytes) -> str | None:
    """The legacy code page these bytes are most likely in (Python's codec name), or None when
    none reads them as text (chardet takes them for binary data)."""
    import chardet

    # prefer_superset stays off: it turns ISO-8859-2 into Windows-1250, which differs from it in
    # letters such as ś and ź (the development set's Polish and Czech files came back wrong)
    found = chardet.detect(data, compat_names=False, prefer_superset=False)
    return found["encoding"]


def decode_legacy(data: bytes, html: bool) -> Decoded | None:
    """Text that is not UTF-8, read by its HTML declaration or by a guess; None if neither reads it."""
    if html:
        declared = declared_html_encoding(data)
        if declared:
            try:
                return Decoded(data.decode(declared), declared, guessed=False)
            except UnicodeDecodeError:
                pass  # the page is not in what it declares: guessed from its bytes instead
    guessed = guess_encoding(data)
    if guessed is None:
        return None
    try:
        return Decoded(data.decode(guessed), guessed, guessed=True)
    except UnicodeDecodeError:
        return None
