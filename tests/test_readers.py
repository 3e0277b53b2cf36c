from pathlib import Path

import pytest
from pypdf import PdfWriter

from ragbot.errors import DocumentError
from ragbot import readers
from ragbot.readers import read_document

from conftest import CORPUS


def test_markdown_title_and_text(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# My Notes\r\n\r\nFirst   line.\r\n\r\n\r\n\r\nSecond line.")
    doc = read_document(path)
    assert doc.kind == "markdown"
    assert doc.title == "My Notes"
    assert doc.text == "# My Notes\n\nFirst line.\n\nSecond line."
    assert doc.pages == []


def test_html_keeps_headings_and_table_cells_and_drops_scripts():
    doc = read_document(CORPUS / "llms-vs-generative-ai.html")
    assert doc.title == "Large Language Models versus Generative AI"
    assert "## Where they overlap" in doc.text
    assert "Scope | Any content type | Text and text-like data" in doc.text
    assert "console.log" not in doc.text
    assert "font-family" not in doc.text


def test_text_with_bom_and_utf16(tmp_path):
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffCafé au lait.".encode("utf-8"))
    assert read_document(bom).text == "Café au lait."
    wide = tmp_path / "wide.txt"
    wide.write_bytes("Ünïcode text.".encode("utf-16"))
    assert read_document(wide).text == "Ünïcode text."


def test_pdf_keeps_page_numbers():
    doc = read_document(CORPUS / "generative-ai-applications-by-industry.pdf")
    assert doc.kind == "pdf"
    assert [p.number for p in doc.pages] == [1, 2, 3, 4, 5]
    assert doc.title == "Generative AI Applications by Industry"
    legal = doc.text.index("Legal Services")
    assert doc.page_at(legal) == 4
    assert doc.page_at(0) == 1


def _blank_pdf(path: Path, pages: int = 2, password: str | None = None) -> Path:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    if password:
        writer.encrypt(user_password=password, algorithm="RC4-128")
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"", "empty file"),
        ("blank.md", b"  \n\n \t\n", "empty file"),
        ("binary.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00" * 20, "binary file"),
        ("latin1.txt", "caf\u00e9 cr\u00e8me".encode("latin-1"), "not valid UTF-8"),
        ("notes.docx", b"PK\x03\x04 not really", "unsupported file type .docx"),
        ("corrupt.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage", "corrupt or unreadable PDF"),
        ("fake.pdf", b"this is plain text named .pdf", "no %PDF header"),
        ("empty.html", b"<html><body><script>alert(1)</script></body></html>", "no text found"),
    ],
)
def test_bad_files_get_a_clear_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentError) as err:
        read_document(path)
    assert err.value.path == str(path)
    assert reason in err.value.reason
    assert str(path) in str(err.value)


def test_image_only_pdf(tmp_path):
    path = _blank_pdf(tmp_path / "scan.pdf", pages=3)
    with pytest.raises(DocumentError, match="no text layer in 3 page"):
        read_document(path)


def test_encrypted_pdf(tmp_path):
    path = _blank_pdf(tmp_path / "secret.pdf", password="hunter2")
    with pytest.raises(DocumentError, match="encrypted PDF"):
        read_document(path)


def test_missing_file(tmp_path):
    with pytest.raises(DocumentError, match="file not found"):
        read_document(tmp_path / "gone.md")


def text_pdf(page_texts: list[str], pages_extra: bytes = b"") -> bytes:
    """A small valid PDF, one Helvetica line per page, written object by object so a test can put
    `pages_extra` (e.g. a huge array) in the page tree's root, as large company reports do."""
    n = len(page_texts)
    font = 3 + 2 * n
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Count {n} /Kids [{kids}] ".encode() + pages_extra + b">>"]
    for i, text in enumerate(page_texts):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
                       f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode())
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_pdf_with_an_array_over_pypdfs_default_limit_is_read(tmp_path):
    """A quarterly report whose page tree holds an array of more than 100,000 elements made
    pypdf's page count raise LimitReachedError with its default limits, and the ingest stop."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError

    data = text_pdf(["Revenue grew in the quarter", "Outlook for next year"],
                    b"/Padding [" + b"0 " * 150_000 + b"] ")
    with pytest.raises(LimitReachedError):  # the file really is past pypdf's defaults
        len(PdfReader(io.BytesIO(data)).pages)
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    doc = read_document(path)
    assert [p.number for p in doc.pages] == [1, 2]
    assert "Revenue grew in the quarter" in doc.text
    assert doc.page_at(doc.text.index("Outlook")) == 2


def test_pdf_that_pypdf_cannot_parse_is_read_by_pdfium(tmp_path, monkeypatch):
    def broken(name, data):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(readers, "_pdf_pages_pypdf", broken)
    path = tmp_path / "odd.pdf"
    path.write_bytes(text_pdf(["First page text", "Second page text"]))
    doc = read_document(path)
    assert [p.number for p in doc.pages] == [1, 2]
    assert "Second page text" in doc.text


def test_pdf_that_neither_reader_opens_names_pypdfs_reason(tmp_path, monkeypatch):
    def broken(name, data):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(readers, "_pdf_pages_pypdf", broken)
    path = tmp_path / "bad.pdf"
    path.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage")
    with pytest.raises(DocumentError, match=r"corrupt or unreadable PDF \(RecursionError"):
        read_document(path)
