import json

import pytest

from ragbot.ingest.chunking import chunk_document
from ragbot.ingest.readers import read_document
from ragbot.types import Document

from conftest import CORPUS, DATA


def _chunks(embedder, doc, chunk_tokens=200, overlap=40):
    return chunk_document(doc, embedder.count_tokens, embedder.token_offsets, chunk_tokens, overlap, embedder.max_tokens)


def _doc(text: str) -> Document:
    return Document(source="/x.md", kind="markdown", title="X", text=text, sha256="0", size=len(text))


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.iterdir()))
def test_corpus_chunks_are_exact_slices_within_the_limit(embedder, name):
    doc = read_document(CORPUS / name)
    chunks = _chunks(embedder, doc)
    assert chunks
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.start : chunk.end]
        assert chunk.n_tokens == embedder.count_tokens([chunk.text])[0]
        assert chunk.n_tokens <= embedder.max_tokens
    # Every non-space character of the document lands in some chunk.
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i, ch in enumerate(doc.text) if not ch.isspace())


def test_headings_start_chunks_and_name_the_section(embedder):
    text = "# Guide\n\nIntro text here.\n\n## Setup\n\nInstall it.\n\n### Linux\n\nUse apt.\n\n## Use\n\nRun it."
    chunks = _chunks(embedder, _doc(text))
    assert [c.section for c in chunks] == ["Guide", "Guide > Setup", "Guide > Setup > Linux", "Guide > Use"]
    assert chunks[1].text.startswith("## Setup")


def test_headings_are_read_as_markdown_reads_them(embedder):
    """One heading rule for chunking, quoting and exports (text.markdown_heading): a closing
    "#" run only after a space, so "C#" keeps its "#"; up to three spaces before the marks; a
    "#" with no space after it is text, and that text can be quoted."""
    from ragbot.text import markdown_heading, prose_sentences

    text = ("# Languages\n\n## Learning C#\n\nC# runs on .NET.\n\n   ### Tooling ###\n\nUse the SDK.\n\n"
            "#1 priority is readable code for every team.")
    chunks = _chunks(embedder, _doc(text), chunk_tokens=12, overlap=0)
    sections = [c.section for c in chunks]  # (the title with no text of its own opens the first chunk)
    assert sections[:2] == ["Languages > Learning C#", "Languages > Learning C# > Tooling"], sections
    assert "#1 priority is readable code for every team." in prose_sentences(text)
    assert markdown_heading("    # indented code") is None and markdown_heading("#") is None
    assert markdown_heading("###### Six #####") == (6, "Six") and markdown_heading("#tag") is None


def test_long_paragraphs_split_on_sentences_with_overlap(embedder):
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(80)]
    text = "# Long\n\n" + " ".join(sentences)
    chunks = _chunks(embedder, _doc(text), chunk_tokens=100, overlap=30)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.n_tokens <= 110  # the heading line may ride on top of the first chunk
        assert chunk.text.rstrip().endswith(".")  # cut between sentences, not inside one
    for before, after in zip(chunks, chunks[1:]):
        assert after.start < before.end, "neighbouring chunks share overlapping sentences"
        shared = text[after.start : before.end]
        assert embedder.count_tokens([shared])[0] <= 30


@pytest.mark.parametrize("stop, space", [("。", ""), ("।", " "), ("؟", " ")])
def test_long_paragraphs_split_on_sentences_in_other_scripts(embedder, stop, space):
    """A Japanese paragraph ends its sentences at 。 with no space, Hindi at the danda, Arabic
    questions at ؟: chunks were cut only at . ! ?, so such a paragraph longer than a chunk was cut
    between tokens, inside a sentence."""
    body = {"。": "第{i}工場では部品を{n}個作りました", "।": "कारखाना {i} ने {n} पुर्ज़े बनाए",
            "؟": "هل صنع المصنع {i} عدد {n} من القطع"}[stop]
    text = "# Long\n\n" + space.join(body.format(i=i, n=i * 7 + 3) + stop for i in range(60))
    chunks = _chunks(embedder, _doc(text), chunk_tokens=100, overlap=30)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.n_tokens <= 110
        assert chunk.text.rstrip().endswith(stop)  # cut between sentences, not inside one
    for before, after in zip(chunks, chunks[1:]):
        assert after.start < before.end and text[after.start:].startswith(body[:1])


def test_decimals_and_quotes_are_not_where_a_japanese_paragraph_is_cut(embedder):
    from ragbot.ingest.chunking import _sentences

    text = "価格は１．５倍です！？「はい。」と言った。本当に。“你好。”他说。他说：“好的！”然后走了。"
    assert [text[p.start:p.end] for p in _sentences(text, 0, len(text))] == [
        "価格は１．５倍です！？", "「はい。」", "と言った。", "本当に。", "“你好。”", "他说。", "他说：“好的！”", "然后走了。"]


def test_a_table_row_is_not_cut_at_a_full_stop_inside_a_cell(embedder):
    # A form read from its ruled cells: "John A. Kiley" once ended a chunk at "A." and began the
    # next at "Kiley". Rows are pieces of their own; the prose line still splits at sentences.
    rows = [f"| Field {i}: | Value {i} | Operator: | John A. Kiley of Alton | Seats: | {i} |" for i in range(40)]
    prose = " ".join(f"Sentence {i} says something short." for i in range(30))
    text = "# Form\n\n" + "\n".join(rows) + "\n" + prose
    chunks = _chunks(embedder, _doc(text), chunk_tokens=100, overlap=20)
    assert len(chunks) > 4
    row_chunks = [c for c in chunks if "|" in c.text]
    assert len(row_chunks) > 2
    for chunk in row_chunks:
        body = chunk.text.removeprefix("# Form\n\n")
        assert body.startswith("| Field"), body[:40]
        assert all(line in rows for line in body.split("\n") if line.startswith("|")), "a row was cut"
    assert any(c.text.startswith("Sentence") and "|" not in c.text for c in chunks), "prose lines still split at sentences"


def test_a_table_row_longer_than_a_chunk_is_still_cut(embedder):
    row = "| Note: | " + " ".join(f"Sentence {i} of a long cell." for i in range(60)) + " |"
    chunks = _chunks(embedder, _doc("# Form\n\n" + row), chunk_tokens=80, overlap=10)
    assert len(chunks) > 3
    assert all(c.n_tokens <= 80 for c in chunks)
    assert all(c.text.rstrip().endswith((".", "|")) for c in chunks), "cut at the cell's sentences"


def test_a_sentence_longer_than_a_chunk_is_cut_between_tokens(embedder):
    text = " ".join(f"word{i}" for i in range(2000))  # no punctuation at all
    chunks = _chunks(embedder, _doc(text), chunk_tokens=120, overlap=20)
    assert len(chunks) > 10
    assert all(c.n_tokens <= 120 for c in chunks)
    assert "".join(text[c.start : c.end] + " " for c in chunks).split() == text.split()


def test_pdf_chunks_carry_pages(embedder):
    doc = read_document(CORPUS / "generative-ai-applications-by-industry.pdf")
    chunks = _chunks(embedder, doc, chunk_tokens=80, overlap=0)
    pages = [c.page for c in chunks]
    assert pages == sorted(pages) and pages[0] == 1 and pages[-1] == 5
    legal = next(c for c in chunks if "Law firms" in c.text)
    assert legal.page == 4


def test_golden_chunks_for_a_corpus_document(embedder):
    """Chunk boundaries of one shipped document are pinned; update the file on purpose only:
    python -c "from tests.test_chunking import write_golden; write_golden()" """
    golden = json.loads((DATA / "golden_chunks_gans.json").read_text())
    chunks = _chunks(embedder, read_document(CORPUS / "gans.md"))
    assert [_summary(c) for c in chunks] == golden


def _summary(chunk):
    return {"section": chunk.section, "start": chunk.start, "end": chunk.end, "n_tokens": chunk.n_tokens}


def write_golden():  # pragma: no cover - a maintenance helper
    from ragbot.retrieve.embed import Embedder
    from ragbot.settings import load_settings

    embedder = Embedder.load(load_settings("/nonexistent-ragbot-test-dir"))
    chunks = _chunks(embedder, read_document(CORPUS / "gans.md"))
    (DATA / "golden_chunks_gans.json").write_text(json.dumps([_summary(c) for c in chunks], indent=1) + "\n")
