"""Read one file into a Document: PDF (page numbers kept), Markdown, plain text and HTML.

Every problem with a file is raised as DocumentError(path, reason) with a reason a person can
act on. Nothing here touches the index or the database.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .errors import DocumentError
from .types import Document, PageSpan

KINDS = {
    ".pdf": "pdf",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
}
MAX_FILE_BYTES = 200 * 1024 * 1024


def kind_of(path: Path) -> str | None:
    return KINDS.get(path.suffix.lower())


def supported_suffixes() -> str:
    return ", ".join(sorted(KINDS))


def read_document(path: Path) -> Document:
    """Read `path` (a regular file) into a Document, or raise DocumentError."""
    name = str(path)
    kind = kind_of(path)
    if kind is None:
        suffix = path.suffix or "(no extension)"
        raise DocumentError(name, f"unsupported file type {suffix}; supported: {supported_suffixes()}")
    data = _read_bytes(path)
    if not data.strip():
        raise DocumentError(name, "empty file")
    if kind == "pdf":
        title, text, pages = _read_pdf(path, data)
    else:
        raw = _decode_text(path, data)
        if kind == "html":
            title, text = _html_to_text(raw)
        else:
            text = _normalise(raw)
            title = _markdown_title(text) if kind == "markdown" else ""
        pages = []
    if not text.strip():
        raise DocumentError(name, "no text found in the file")
    return Document(
        source=name,
        kind=kind,
        title=title or path.stem.replace("_", " ").replace("-", " "),
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        pages=pages,
    )


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DocumentError(str(path), f"file is {size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit")
        return path.read_bytes()
    except PermissionError:
        raise DocumentError(str(path), "permission denied (cannot read the file)") from None
    except FileNotFoundError:
        raise DocumentError(str(path), "file not found") from None
    except IsADirectoryError:
        raise DocumentError(str(path), "is a directory, not a file") from None
    except OSError as exc:
        raise DocumentError(str(path), f"cannot read: {exc.strerror or exc}") from None


def _decode_text(path: Path, data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise DocumentError(str(path), "has a UTF-16 byte-order mark but is not valid UTF-16") from None
    if b"\x00" in data[:8192]:
        raise DocumentError(str(path), "looks like a binary file (contains NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            str(path), f"is not valid UTF-8 text (bad byte at offset {exc.start}); convert it to UTF-8"
        ) from None


_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def _markdown_title(text: str) -> str:
    match = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else ""


def _read_pdf(path: Path, data: bytes) -> tuple[str, str, list[PageSpan]]:
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns on every small oddity
    name = str(path)
    if not data.lstrip().startswith(b"%PDF"):
        raise DocumentError(name, "not a PDF (no %PDF header); the file is corrupt or misnamed")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password; those open fine.
            try:
                opened = reader.decrypt("")
            except Exception:  # pypdf raises several types for unsupported crypto
                opened = 0
            if not opened:
                raise DocumentError(name, "encrypted PDF: it needs a password; save an unencrypted copy")
        parts: list[str] = []
        pages: list[PageSpan] = []
        offset = 0
        for number, page in enumerate(reader.pages, start=1):
            page_text = _normalise(page.extract_text() or "")
            pages.append(PageSpan(number=number, start=offset))
            parts.append(page_text)
            offset += len(page_text) + 2  # the "\n\n" joining pages
        meta_title = ""
        try:
            if reader.metadata and reader.metadata.title:
                meta_title = str(reader.metadata.title).strip()
        except Exception:
            meta_title = ""
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise DocumentError(name, f"corrupt or unreadable PDF ({type(exc).__name__}: {exc})") from None
    if not pages:
        raise DocumentError(name, "PDF has no pages")
    text = "\n\n".join(parts)
    if not text.strip():
        raise DocumentError(
            name, f"no text layer in {len(pages)} page(s): image-only (scanned) PDF; run OCR on it first"
        )
    return meta_title, text, pages


def _html_to_text(raw: str) -> tuple[str, str]:
    """Visible text of an HTML page, with headings kept as Markdown-style '#' lines."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(raw, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg", "nav", "footer", "head"]):
        if tag.name == "head":
            continue
        tag.decompose()
    title = ""
    if soup.title and soup.title.string:
        title = soup.title.string.strip()
    for level in range(1, 7):
        for heading in soup.find_all(f"h{level}"):
            heading.insert_before("\n\n" + "#" * level + " ")
            heading.insert_after("\n\n")
    for cell in soup.find_all(["td", "th"]):
        cell.insert_after(" | ")
    for block in soup.find_all(["p", "div", "li", "tr", "br", "section", "article", "pre", "blockquote", "table"]):
        block.insert_after("\n\n" if block.name != "br" else "\n")
    if soup.head:
        soup.head.decompose()
    text = _normalise(soup.get_text())
    if not title:
        title = _markdown_title(text)
    return title, text
