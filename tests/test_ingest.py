import os
import shutil
import tempfile
import subprocess
import sys

import numpy as np
import pytest
from pathlib import Path

from ragbot import RagBot
from ragbot.errors import DocumentError, IndexMismatchError
from ragbot.ingest.ingester import PIPELINE_VERSION, IngestReport, collect_files, embedding_input
from ragbot.ingest.readers import read_document

from conftest import ROOT, copies_in_folders, copy_corpus_file


def _consistent(bot: RagBot) -> None:
    """The FAISS index holds exactly the chunk ids of the database."""
    index = bot._current_index()
    ids, _ = bot.store.all_vectors(bot.embedder.dim)
    assert len(index) == len(ids)
    if len(ids):
        assert sorted(index.ids().tolist()) == ids.tolist()


def test_ingest_then_search(make_bot, docs):
    bot = make_bot()
    report = bot.ingest([docs])
    assert report.ok
    assert sorted(os.path.basename(p) for p in report.added) == ["bananas.txt", "paris.md", "volcano.html"]
    top = bot.search("When was the Eiffel Tower finished?", k=3)[0]
    assert top.source.endswith("paris.md") and "1889" in top.text
    assert top.score > 0.5 and top.rank == 1
    _consistent(bot)


def test_reingesting_the_same_folder_adds_nothing(make_bot, docs):
    bot = make_bot()
    first = bot.ingest([docs])
    generation = bot.store.generation()
    second = bot.ingest([docs])
    assert len(second.unchanged) == len(first.added) == 3
    assert not second.added and not second.updated and second.chunks_added == 0
    assert bot.store.generation() == generation
    assert bot.store.counts() == (3, first.chunks_added)


def test_changed_file_replaces_its_chunks(make_bot, docs):
    bot = make_bot()
    bot.ingest([docs])
    old_ids = {p.chunk_id for p in bot.search("bananas", k=10) if p.source.endswith("bananas.txt")}
    (docs / "bananas.txt").write_text("Bananas turn brown when they are overripe.\n")
    report = bot.ingest([docs])
    assert [os.path.basename(p) for p in report.updated] == ["bananas.txt"]
    assert len(report.unchanged) == 2
    hits = [p for p in bot.search("bananas", k=10) if p.source.endswith("bananas.txt")]
    assert len(hits) == 1 and "brown" in hits[0].text
    assert hits[0].chunk_id not in old_ids
    _consistent(bot)


def test_changed_chunk_settings_redo_documents(make_bot, docs, tmp_path):
    bot = make_bot(tmp_path / "data")
    bot.ingest([docs])
    bot.close()
    rechunked = make_bot(tmp_path / "data", chunk_tokens=64, chunk_overlap=8)
    report = rechunked.ingest([docs])
    assert len(report.updated) == 3


def _counting_encoder(bot, monkeypatch) -> list[str]:
    """The texts the bot's embedder is asked to embed from now on."""
    asked: list[str] = []
    encode = bot.embedder.encode

    def counted(texts, *args, **kwargs):
        asked.extend(texts)
        return encode(texts, *args, **kwargs)

    monkeypatch.setattr(bot.embedder, "encode", counted)
    return asked


def test_an_edited_file_embeds_only_the_passages_that_changed(make_bot, tmp_path, monkeypatch):
    """A long note edited in one paragraph was embedded again whole; now its unchanged chunks keep
    their stored vectors, which are the vectors embedding them again gives."""
    notes = tmp_path / "notes"
    notes.mkdir()
    paragraphs = [f"Shipment {i} left the warehouse on day {i % 28 + 1} with {i + 3} crates of tea, "
                  f"of which {i % 5} were green and the rest black, bound for dock {i % 9}." for i in range(60)]
    (notes / "log.txt").write_text("\n\n".join(paragraphs) + "\n")
    bot = make_bot(chunk_tokens=64, chunk_overlap=0)
    first = bot.ingest([notes])
    assert first.chunks_added >= 20 and first.chunks_kept == 0
    before = {row[3]: vector for row, vector in zip(bot.store.embedding_rows(bot.store.chunk_ids()),
                                                      bot.store.all_vectors(bot.embedder.dim)[1])}
    ids_before = {row[3]: row[0] for row in bot.store.embedding_rows(bot.store.chunk_ids())}
    paragraphs[30] = "Shipment 30 was held at customs for a week because its papers named the wrong port."
    (notes / "log.txt").write_text("\n\n".join(paragraphs) + "\n")
    asked = _counting_encoder(bot, monkeypatch)
    calls = []
    report = bot.ingest([notes], progress=lambda *call: calls.append(call))
    assert [Path(p).name for p in report.updated] == ["log.txt"]
    changed = report.chunks_added - report.chunks_kept
    assert 1 <= changed <= 2 and len(asked) == changed  # the chunk holding the new paragraph, no more
    assert f"({report.chunks_kept} unchanged, not embedded again)" in report.summary()
    assert calls[-1] == (1, 1, report.chunks_added)
    ids, vectors = bot.store.all_vectors(bot.embedder.dim)
    rows = bot.store.embedding_rows(ids)
    fresh = bot.embedder.encode([embedding_input(bot.embedder, *row[1:]) for row in rows])
    for row, vector, again in zip(rows, vectors, fresh):
        if row[3] in before:  # kept: the very vector stored before, and the one embedding gives now
            assert np.array_equal(vector, before[row[3]])
            assert row[0] == ids_before[row[3]]  # under its id: what cites it still does
        else:
            assert row[0] > max(ids_before.values())
        assert float(vector @ again) / float(np.linalg.norm(vector) * np.linalg.norm(again)) > 0.999
    assert "customs" in bot.search("Why was shipment 30 held?", k=1)[0].text
    _consistent(bot)


def test_a_new_pipeline_reads_every_document_again_and_embeds_only_what_it_moved(make_bot, docs, monkeypatch):
    from ragbot.ingest import ingester

    bot = make_bot()
    first = bot.ingest([docs])
    ids = bot.store.chunk_ids().tolist()
    monkeypatch.setattr(ingester, "PIPELINE_VERSION", ingester.PIPELINE_VERSION + 1)
    again = make_bot(data_dir=bot.settings.data_dir)
    asked = _counting_encoder(again, monkeypatch)
    report = again.ingest([docs])
    assert len(report.updated) == 3 and report.chunks_added == report.chunks_kept == first.chunks_added
    assert asked == [] and again.store.chunk_ids().tolist() == ids  # every passage under its id
    assert "chunks/s" not in report.summary()  # a rate would count chunks not embedded
    # A new way of making the embedding input uses no stored vector.
    monkeypatch.setattr(ingester, "PIPELINE_VERSION", ingester.PIPELINE_VERSION + 1)
    monkeypatch.setattr(ingester, "EMBEDDING_INPUT", ingester.EMBEDDING_INPUT + 1)
    report = make_bot(data_dir=bot.settings.data_dir).ingest([docs])
    assert report.chunks_kept == 0 and len(asked) == first.chunks_added
    assert again.search("When was the Eiffel Tower finished?", k=1)[0].source.endswith("paris.md")
    _consistent(again)


def test_a_moved_file_and_a_repeated_passage_keep_their_ids(make_bot, tmp_path):
    """A renamed file's passages keep their ids (what cites them still does), and of two
    passages with the same text, each keeps its own id when one of them is taken out."""
    notes = tmp_path / "notes"
    notes.mkdir()
    block = "Check the pump seals every month and replace them when they crack."
    parts = ["# Pumps", "The Quell pumps of the north field.", "## Check", block, "## Spring", "The pump is primed in March.", "## Summer",
             "The pump runs at night in July.", "## Autumn", "The pump is drained in October.", "## Check", block]
    (notes / "pumps.md").write_text("\n\n".join(parts) + "\n")
    bot = make_bot()
    bot.ingest([notes])
    before = {(row[2], row[3]): row[0] for row in bot.store.embedding_rows(bot.store.chunk_ids())}
    (notes / "pumps.md").rename(notes / "pump care.md")
    report = bot.ingest([notes])
    assert report.moved == [(str(notes / "pumps.md"), str(notes / "pump care.md"))]
    assert report.chunks_kept == report.chunks_added
    after = {(row[2], row[3]): row[0] for row in bot.store.embedding_rows(bot.store.chunk_ids())}
    assert after == before and [d.source for d in bot.store.documents()] == [str(notes / "pump care.md")]
    _consistent(bot)
    # Two passages of the same words under the same heading: the first goes, and the last keeps
    # its own id (not the first one's, with its place).
    rows = bot.store.embedding_rows(bot.store.chunk_ids())
    checks = [row[0] for row in rows if row[2].endswith("Check")]
    assert len(checks) == 2
    (notes / "pump care.md").write_text("\n\n".join(parts[:2] + parts[4:]) + "\n")
    report = bot.ingest([notes])
    assert report.chunks_kept == report.chunks_added
    rows = bot.store.embedding_rows(bot.store.chunk_ids())
    assert [row[0] for row in rows if row[2].endswith("Check")] == [max(checks)]
    _consistent(bot)


def test_remove_file_and_folder(make_bot, docs):
    bot = make_bot()
    bot.ingest([docs])
    assert bot.remove([docs / "paris.md"]).removed == [str(docs / "paris.md")]
    assert all(not p.source.endswith("paris.md") for p in bot.search("Eiffel Tower", k=10))
    assert sorted(bot.remove([docs]).removed) == [str(docs / "bananas.txt"), str(docs / "volcano.html")]
    assert bot.store.counts() == (0, 0)
    assert bot.search("anything") == []
    _consistent(bot)


def test_prune_drops_documents_whose_files_are_gone(make_bot, docs, capsys):
    from ragbot.interfaces.cli import _print_report

    bot = make_bot()
    bot.ingest([docs])
    (docs / "volcano.html").unlink()
    # Without --prune it is kept, and said (helper-89: a deleted note went on answering, unsaid).
    kept = bot.ingest([docs])
    assert kept.gone == [str(docs / "volcano.html")] and not kept.removed and bot.store.counts()[0] == 3
    _print_report(kept)
    assert (f"gone: {docs / 'volcano.html'}: its file is no longer there; what it held is still searched until "
            "`ragbot ingest --prune` (or `ragbot remove` of its path)") in capsys.readouterr().out
    assert bot.ingest([docs / "bananas.txt"]).gone == []  # only the folders read are looked at
    report = bot.ingest([docs], prune=True)
    assert report.removed == [str(docs / "volcano.html")]
    assert len(report.unchanged) == 2
    assert bot.store.counts()[0] == 2
    _consistent(bot)


def test_a_copy_of_a_stored_file_is_stored_once(make_bot, docs, tmp_path):
    """The same bytes under another path take no second slot among the passages shown: the copy
    stored first is kept, whether the other copy comes in a later ingest or in the same one."""
    bot = make_bot()
    bot.ingest([docs])
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copy(docs / "paris.md", copies / "Paris (copy).md")
    (copies / "notes.txt").write_text("The staging server restarts every Sunday.\n")
    (copies / "notes_copy.txt").write_text("The staging server restarts every Sunday.\n")
    report = bot.ingest([copies])
    assert sorted(report.duplicates) == [(str(copies / "Paris (copy).md"), str(docs / "paris.md")),
                                         (str(copies / "notes_copy.txt"), str(copies / "notes.txt"))]
    assert report.added == [str(copies / "notes.txt")] and "duplicates 2" in report.summary()
    sources = [p.source for p in bot.search("When was the Eiffel Tower finished?", k=5)]
    assert sources.count(str(docs / "paris.md")) >= 1 and str(copies / "Paris (copy).md") not in sources
    assert bot.store.counts()[0] == 4
    # Again: still duplicates, nothing stored or removed.
    again = bot.ingest([docs, copies])
    assert len(again.duplicates) == 2 and len(again.unchanged) == 4 and not again.added
    _consistent(bot)


def test_a_copy_is_stored_once_its_original_is_gone_or_changed(make_bot, docs, tmp_path):
    bot = make_bot()
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copy(docs / "paris.md", copies / "paris.md")
    shutil.copy(docs / "bananas.txt", copies / "bananas.txt")
    bot.ingest([docs])
    (docs / "paris.md").unlink()  # moved away: the copy is the one to keep now
    (docs / "bananas.txt").write_text("Bananas turn brown when they are overripe.\n")  # no longer the copy's bytes
    report = bot.ingest([copies])
    assert sorted(report.added) == [str(copies / "bananas.txt"), str(copies / "paris.md")] and not report.duplicates
    _consistent(bot)


def test_a_moved_or_renamed_file_is_stored_under_its_new_path_only(make_bot, docs, tmp_path):
    """helper-83's drive: after `mv notes.txt meeting-notes.txt` and an ingest, the old path stayed
    stored, took a second passage slot and was cited, until an `ingest --prune`."""
    bot = make_bot()
    bot.ingest([docs])
    (docs / "bananas.txt").rename(docs / "yellow fruit.txt")
    moved_away = tmp_path / "elsewhere"
    moved_away.mkdir()
    (docs / "paris.md").rename(moved_away / "paris.md")
    (docs / "volcano.html").unlink()  # gone, no new path: kept until a prune, as before
    report = bot.ingest([docs, moved_away])
    assert sorted(report.moved) == [(str(docs / "bananas.txt"), str(docs / "yellow fruit.txt")),
                                    (str(docs / "paris.md"), str(moved_away / "paris.md"))]
    assert not report.removed and "moved 2" in report.summary()
    # A move is counted once (helper-89 read "added 1, …, moved 1" for one renamed file), and a
    # file gone with no new path is named, kept until a prune (helper-89: nothing said it).
    assert report.summary().startswith("added 0, updated 0, unchanged 0, failed 0, moved 2, gone but kept 1")
    assert report.gone == [str(docs / "volcano.html")]
    assert sorted(d.source for d in bot.store.documents()) == sorted(
        [str(docs / "yellow fruit.txt"), str(moved_away / "paris.md"), str(docs / "volcano.html")])
    sources = [p.source for p in bot.search("What colour are bananas?", k=5)]
    assert str(docs / "yellow fruit.txt") in sources and str(docs / "bananas.txt") not in sources
    _consistent(bot)
    # `mv -f` onto a stored file: that path is updated with the moved file's bytes.
    (docs / "notes.txt").write_text("The staging server restarts every Sunday.\n")
    bot.ingest([docs / "notes.txt"])
    (docs / "yellow fruit.txt").replace(docs / "notes.txt")
    over = bot.ingest([docs])
    assert over.updated == [str(docs / "notes.txt")] and over.moved == [(str(docs / "yellow fruit.txt"),
                                                                         str(docs / "notes.txt"))]
    assert bot.store.document(str(docs / "yellow fruit.txt")) is None
    # Not a move: a copy whose original is still there stays a duplicate.
    shutil.copy(docs / "notes.txt", tmp_path / "copy.txt")
    again = bot.ingest([tmp_path / "copy.txt"])
    assert not again.moved and again.duplicates == [(str(tmp_path / "copy.txt"), str(docs / "notes.txt"))]


def test_a_stored_file_that_fails_to_read_keeps_its_version_and_says_so(make_bot, docs, tmp_path):
    """helper-83's drive: an emptied file failed ("empty file") yet kept answering, and nothing
    said why."""
    bot = make_bot()
    bot.ingest([docs])
    (docs / "bananas.txt").write_text("")
    (tmp_path / "new-empty.txt").write_text("")
    report = bot.ingest([docs / "bananas.txt", tmp_path / "new-empty.txt"])
    assert report.failed == [(str(docs / "bananas.txt"),
                              "empty file (the version stored before is kept and still searched)"),
                             (str(tmp_path / "new-empty.txt"), "empty file")]
    assert bot.store.document(str(docs / "bananas.txt")).n_chunks == 1


def test_a_stored_file_that_becomes_a_copy_loses_its_chunks(make_bot, docs):
    """An unchanged stored copy is the one kept, whichever file is read first."""
    bot = make_bot()
    bot.ingest([docs])
    (docs / "paris.md").write_text((docs / "bananas.txt").read_text())  # read after bananas.txt
    report = bot.ingest([docs])
    assert report.duplicates == [(str(docs / "paris.md"), str(docs / "bananas.txt"))]
    assert report.removed == [str(docs / "paris.md")] and "removed 1" in report.summary()
    assert bot.store.document(str(docs / "paris.md")) is None and bot.store.counts()[0] == 2
    assert all(not p.source.endswith("paris.md") for p in bot.search("Eiffel Tower", k=5))
    _consistent(bot)
    (docs / "paris.md").write_text("# Paris\n\nThe Eiffel Tower was completed in 1889.\n")
    bot.ingest([docs])
    (docs / "bananas.txt").write_text((docs / "paris.md").read_text())  # read before paris.md
    report = bot.ingest([docs / "bananas.txt"])  # alone, too: it defers to the stored paris.md
    assert report.duplicates == [(str(docs / "bananas.txt"), str(docs / "paris.md"))] and not report.updated
    assert [d.source for d in bot.store.documents()] == [str(docs / "paris.md"), str(docs / "volcano.html")]
    _consistent(bot)


def test_a_copy_is_searched_under_its_path_and_stored_when_its_document_goes(make_bot, docs, tmp_path):
    """A copy is not stored twice, but it is not lost either: searching under its path finds
    the document, and once the document is removed, deleted or changed, the copy is stored in
    its place in the same run (before, its text was gone until the copy was ingested again)."""
    from ragbot.interfaces.cli import _chosen_documents

    bot = make_bot()
    bot.ingest([docs])
    copies = tmp_path / "copies"
    copies.mkdir()
    for name in ("paris.md", "bananas.txt", "volcano.html"):
        shutil.copy(docs / name, copies / name)
    bot.ingest([copies])
    assert bot.store.copies() == [(str(copies / n), str(docs / n)) for n in ("bananas.txt", "paris.md", "volcano.html")]
    assert _chosen_documents(bot, [str(copies / "paris.md")]) == [str(docs / "paris.md")]
    assert sorted(_chosen_documents(bot, [str(copies)])) == sorted(str(docs / n) for n in
                                                                   ("bananas.txt", "paris.md", "volcano.html"))

    removed = bot.remove([docs / "paris.md"])  # removed by the user: the copy is stored instead
    assert removed.removed == [str(docs / "paris.md")] and removed.stood_in == [(str(copies / "paris.md"),
                                                                                 str(docs / "paris.md"))]
    assert bot.search("When was the Eiffel Tower finished?", k=1)[0].source == str(copies / "paris.md")
    (docs / "bananas.txt").write_text("Bananas turn brown when they are overripe.\n")  # changed
    (docs / "volcano.html").unlink()  # deleted
    report = bot.ingest([docs], prune=True)
    assert report.updated == [str(docs / "bananas.txt")] and report.removed == [str(docs / "volcano.html")]
    assert sorted(report.stood_in) == [(str(copies / "bananas.txt"), str(docs / "bananas.txt")),
                                       (str(copies / "volcano.html"), str(docs / "volcano.html"))]
    assert "copies stored in place 2" in report.summary()
    assert bot.search("Where are bananas grown?", k=1)[0].source == str(copies / "bananas.txt")
    assert bot.search("Mount Etna", k=1)[0].source == str(copies / "volcano.html")
    # The removed paris.md, read again with its folder, is now the copy of the one stored.
    assert report.duplicates == [(str(docs / "paris.md"), str(copies / "paris.md"))]
    assert bot.store.copies() == [(str(docs / "paris.md"), str(copies / "paris.md"))] and bot.store.counts()[0] == 4
    _consistent(bot)


def test_a_copy_stands_in_only_while_it_holds_what_it_held_and_never_at_a_loss(make_bot, docs, tmp_path, monkeypatch):
    """helper-44's review: the document went before its copy was stored, so a full disk lost
    both; a copy whose file changed since stood in under a false claim; a change of settings
    re-read every copy and reported it again."""
    from ragbot.errors import DiskFullError
    from ragbot.ingest.ingester import Ingester

    bot = make_bot()
    bot.ingest([docs])
    copies = tmp_path / "copies"
    copies.mkdir()
    for name in ("paris.md", "bananas.txt"):
        shutil.copy(docs / name, copies / name)
    bot.ingest([copies])
    store_batch = Ingester._store_batch

    def full(self, batch, report, on_embedded=None):
        if batch:
            raise DiskFullError("No space left on device")

    monkeypatch.setattr(Ingester, "_store_batch", full)
    with pytest.raises(DiskFullError):
        bot.remove([docs / "paris.md"])
    assert bot.store.document(str(docs / "paris.md")) is not None  # nothing removed before the copy is stored
    assert len(bot.store.copies()) == 2
    monkeypatch.setattr(Ingester, "_store_batch", store_batch)
    # Other chunk settings redo the documents, whose bytes are the same: their copies stay copies.
    redone = bot.with_settings(chunk_tokens=120).ingest([docs])
    assert len(redone.updated) == 3 and not redone.duplicates and len(bot.store.copies()) == 2
    (copies / "bananas.txt").write_text("Kiwis are brown outside and green inside.\n")  # not a copy any more
    removed = bot.remove([docs / "paris.md", docs / "bananas.txt"])
    assert removed.stood_in == [(str(copies / "paris.md"), str(docs / "paris.md"))] and not removed.failed
    assert bot.store.document(str(copies / "bananas.txt")) is None and bot.store.copies() == []
    _consistent(bot)


def test_every_copy_of_a_removed_document_is_kept_when_the_set_stores_copies(make_bot, docs, tmp_path):
    bot = make_bot()
    bot.ingest([docs])
    bot.ingest(copies_in_folders(docs / "paris.md", tmp_path))
    (docs / "paris.md").unlink()
    report = bot.ingest([docs], prune=True, store_copies=True)
    assert report.stood_in == [(str(tmp_path / "a" / "paris.md"), str(docs / "paris.md"))]
    assert bot.store.copies() == [(str(tmp_path / "b" / "paris.md"), str(tmp_path / "a" / "paris.md"))]


def test_removing_a_copys_path_forgets_the_copy_and_keeps_the_document(make_bot, docs, tmp_path):
    bot = make_bot()
    bot.ingest([docs])
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copy(docs / "paris.md", copies / "paris.md")
    bot.ingest([copies])
    report = bot.remove([copies])
    assert report.copies_forgotten == [str(copies / "paris.md")] and not report.removed
    assert bot.store.copies() == [] and bot.store.document(str(docs / "paris.md")) is not None
    assert (copies / "paris.md").exists()
    # Removing the document now stores nothing in its place, and neither does removing both.
    bot.ingest([copies])
    both = bot.remove([docs / "paris.md", copies])
    assert both.removed == [str(docs / "paris.md")] and not both.stood_in and bot.store.copies() == []
    _consistent(bot)


def test_a_copy_of_a_file_that_fails_to_read_takes_nothing_away(make_bot, docs):
    """A file that fails stands for nothing: a stored file with its bytes is not its duplicate."""
    bot = make_bot()
    bot.ingest([docs])
    (docs / "a.html").write_bytes(b"<script>alert(1)</script>\n")  # as HTML, no text
    (docs / "bananas.txt").write_bytes((docs / "a.html").read_bytes())  # the same bytes, as text a text
    report = bot.ingest([docs])  # a.html is read first, and fails
    assert [Path(p).name for p, _ in report.failed] == ["a.html"] and not report.duplicates
    assert report.updated == [str(docs / "bananas.txt")]
    again = bot.ingest([docs])  # now a copy of the stored text file, never the other way round
    assert again.duplicates == [(str(docs / "a.html"), str(docs / "bananas.txt"))] and not again.removed
    assert bot.store.document(str(docs / "bananas.txt")) is not None
    _consistent(bot)


def test_a_full_disk_leaves_a_duplicates_earlier_version_searchable(make_bot, docs, monkeypatch):
    from ragbot.errors import DiskFullError
    from ragbot.ingest.ingester import Ingester

    bot = make_bot()
    bot.ingest([docs])
    (docs / "bananas.txt").write_text("Bananas turn brown when they are overripe.\n")
    (docs / "paris.md").write_text((docs / "bananas.txt").read_text())  # a copy of the new bytes

    def full(self, batch, report, on_embedded=None):
        raise DiskFullError("No space left on device")

    monkeypatch.setattr(Ingester, "_store_batch", full)
    with pytest.raises(DiskFullError):
        bot.ingest([docs])
    assert bot.store.document(str(docs / "paris.md")) is not None  # not removed before the new copy is stored
    _consistent(bot)


def test_an_evaluation_set_can_store_every_copy(make_bot, docs, tmp_path):
    bot = make_bot()
    shutil.copy(docs / "paris.md", docs / "paris-2.md")
    report = bot.ingest([docs], store_copies=True)
    assert len(report.added) == 4 and not report.duplicates


def test_bad_inputs_are_reported_and_good_files_still_ingested(make_bot, docs, tmp_path):
    (docs / "empty.txt").write_bytes(b"")
    (docs / "binary.md").write_bytes(bytes(range(256)) * 4)
    (docs / "latin1.txt").write_bytes("Le caf\u00e9 na\u00eff ouvre \u00e0 huit heures, pr\u00e8s de la for\u00eat.".encode("latin-1"))
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.4\n%broken")
    (docs / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    (docs / "dangling.md").symlink_to(tmp_path / "nowhere.md")
    (docs / "sub").mkdir()
    (docs / "sub" / "loop").symlink_to(docs)
    (docs / ".hidden.md").write_text("# Hidden\n\nnot ingested")
    bot = make_bot()
    report = bot.ingest([docs, tmp_path / "missing-folder", docs / "photo.jpg"])
    failed = {os.path.basename(path): reason for path, reason in report.failed}
    assert failed["empty.txt"] == "empty file"
    assert "binary" in failed["binary.md"]
    assert "latin1.txt" not in failed  # not UTF-8, but read: its encoding guessed and said
    assert report.guessed_encodings == [(str(docs / "latin1.txt"), "cp1252")]
    assert "PDF" in failed["corrupt.pdf"]
    assert failed["dangling.md"] == "broken symbolic link"
    assert "symbolic link loop" in failed["loop"]
    assert failed["missing-folder"] == "no such file or directory"
    assert "unsupported file type .jpg" in failed["photo.jpg"]  # named explicitly: a failure
    assert [os.path.basename(p) for p, _ in report.skipped] == ["photo.jpg"]  # met in the folder: skipped
    assert sorted(os.path.basename(p) for p in report.added) == ["bananas.txt", "latin1.txt", "paris.md", "volcano.html"]
    assert bot.store.document(str(docs / "latin1.txt")) is not None
    assert not report.ok
    _consistent(bot)


def test_any_error_from_a_reader_fails_that_file_only(make_bot, docs, monkeypatch):
    """An exception of any type from a reader (a parser bug, a limit) is one line for that file."""
    import ragbot.ingest.ingester

    real = ragbot.ingest.ingester.read_document

    def flaky(path, **options):
        if path.name == "paris.md":
            raise MemoryError("parser blew up")
        return real(path, **options)

    monkeypatch.setattr(ragbot.ingest.ingester, "read_document", flaky)
    bot = make_bot()
    report = bot.ingest([docs])
    failed = {os.path.basename(path): reason for path, reason in report.failed}
    assert failed == {"paris.md": "could not be read (MemoryError: parser blew up)"}
    assert sorted(os.path.basename(p) for p in report.added) == ["bananas.txt", "volcano.html"]
    _consistent(bot)


def test_cli_reports_failures_and_exit_status(docs, tmp_path):
    (docs / "empty.md").write_text("")
    data = tmp_path / "cli-data"
    result = subprocess.run(
        [sys.executable, "-m", "ragbot", "ingest", str(docs), "--data-dir", str(data), "-q"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert f"failed: {docs / 'empty.md'}: empty file" in result.stderr
    assert "added 3, updated 0, unchanged 0, failed 1" in result.stdout
    again = subprocess.run(
        [sys.executable, "-m", "ragbot", "--data-dir", str(data), "ingest", str(docs / "paris.md"), "-q"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "unchanged 1" in again.stdout
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(docs / "paris.md", tmp_path / "elsewhere" / "paris.md")
    copy = subprocess.run(
        [sys.executable, "-m", "ragbot", "--data-dir", str(data), "ingest", str(tmp_path / "elsewhere"), "-q"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert copy.returncode == 0, copy.stderr
    assert (f"duplicate: {tmp_path / 'elsewhere' / 'paris.md'}: the same bytes as {docs / 'paris.md'}, stored once"
            in copy.stdout)
    assert "added 0, updated 0, unchanged 0, failed 0, duplicates 1" in copy.stdout
    listed = subprocess.run([sys.executable, "-m", "ragbot", "--data-dir", str(data), "documents"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert f"\n  also at {tmp_path / 'elsewhere' / 'paris.md'} (the same bytes, stored once)\n" in listed.stdout
    assert "3 document(s), 1 copy" in listed.stdout
    removed = subprocess.run([sys.executable, "-m", "ragbot", "--data-dir", str(data), "remove", str(docs / "paris.md")],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert removed.returncode == 0, removed.stderr
    assert (f"stored in place: {tmp_path / 'elsewhere' / 'paris.md'}: a copy of {docs / 'paris.md'}, so what it "
            f"holds is still searched") in removed.stdout
    # Its copy was stored in its place, so an ingest of its folder finds it a duplicate: no word
    # of storing it again. Another removed file still on disk would be stored again: said.
    assert "still on disk" not in removed.stdout
    removed = subprocess.run([sys.executable, "-m", "ragbot", "--data-dir", str(data), "remove", str(docs / "bananas.txt")],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert removed.returncode == 0, removed.stderr
    assert "its file is still on disk: ingesting a folder that holds it stores it again" in removed.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX fork")
def test_unreadable_file_names_the_reason():
    """A file the user may not read. Root reads everything, so the check runs in a child
    process that has become 'nobody' (no exec needed, the code is already loaded)."""
    folder = Path(tempfile.mkdtemp(prefix="ragbot-perm-"))  # outside pytest's private tmp root
    folder.chmod(0o755)
    secret = folder / "secret.md"
    secret.write_text("# Secret\n\nnot for you")
    secret.chmod(0o000)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            report = IngestReport()
            try:
                files = collect_files([folder], report)
                read_document(files[0])
                message = "read it"
            except DocumentError as exc:
                message = f"{exc.path}|{exc.reason}"
            except Exception as exc:
                message = f"unexpected {exc!r} {report.failed}"
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    message = os.read(read_end, 4096).decode()
    shutil.rmtree(folder)
    assert message == f"{secret}|permission denied (cannot read the file)"


def test_embedder_mismatch_is_a_clear_error(make_bot, docs):
    bot = make_bot()
    bot.ingest([docs])
    with pytest.raises(IndexMismatchError, match="built with embedder 'all-MiniLM-L6-v2'"):
        bot.store.claim_embedder("some-other-model", 768)


def test_pdf_from_the_corpus_keeps_pages(make_bot, tmp_path):
    pdf = copy_corpus_file("generative-ai-applications-by-industry.pdf", tmp_path / "pdfs")
    bot = make_bot()
    assert bot.ingest([pdf]).ok
    top = bot.search("law firms verify case citations", k=1)[0]
    assert top.page == 4
    assert top.section.endswith("Legal Services")  # the PDF's heading, found from its font size


def test_changing_how_pdfs_are_read_reads_only_the_pdfs_again(make_bot, docs):
    copy_corpus_file("generative-ai-applications-by-industry.pdf", docs)
    bot = make_bot()
    assert bot.ingest([docs]).ok
    plain = make_bot(data_dir=bot.settings.data_dir, pdf_structure=False)
    report = plain.ingest([docs])
    assert (len(report.updated), len(report.unchanged)) == (1, 3)  # the PDF, not the three others
    assert plain.search("law firms verify case citations", k=1)[0].section == ""
    assert len(plain.ingest([docs]).unchanged) == 4
    # Back to the structure, then ruled tables on as well: the PDF is read again each time, the others are not.
    assert len(make_bot(data_dir=bot.settings.data_dir).ingest([docs]).updated) == 1
    ruled = make_bot(data_dir=bot.settings.data_dir, pdf_ruled_tables=True)
    report = ruled.ingest([docs])
    assert (len(report.updated), len(report.unchanged)) == (1, 3)
    assert len(ruled.ingest([docs]).unchanged) == 4


def test_changing_how_tables_are_written_reads_markdown_and_html_again(make_bot, docs, monkeypatch):
    from ragbot.ingest import ingester

    copy_corpus_file("generative-ai-applications-by-industry.pdf", docs)
    bot = make_bot()
    assert bot.ingest([docs]).ok
    monkeypatch.setattr(ingester, "TABLE_RULES", ingester.TABLE_RULES + 1)
    again = make_bot(data_dir=bot.settings.data_dir)
    report = again.ingest([docs])
    assert sorted(Path(p).name for p in report.updated) == ["paris.md", "volcano.html"]
    assert sorted(Path(p).name for p in report.unchanged) == ["bananas.txt", "generative-ai-applications-by-industry.pdf"]
    assert len(again.ingest([docs]).unchanged) == 4  # once
    from ragbot.ingest import readers  # how HTML is read: HTML files and Markdown's HTML

    monkeypatch.setattr(ingester, "HTML_RULES", readers.HTML_RULES + 1)
    report = make_bot(data_dir=bot.settings.data_dir).ingest([docs])
    assert sorted(Path(p).name for p in report.updated) == ["paris.md", "volcano.html"] and len(report.unchanged) == 2


def test_changing_how_word_files_are_read_reads_them_again_and_nothing_else(make_bot, docs, monkeypatch):
    """A .docx stored before content controls were read lacked their text: the next ingest reads it again."""
    import docx

    from ragbot.ingest import ingester

    document = docx.Document()
    document.add_paragraph("The Quell pump is serviced every six months.")
    document.save(docs / "manual.docx")
    bot = make_bot()
    assert bot.ingest([docs]).ok
    monkeypatch.setattr(ingester, "WORD_RULES", ingester.WORD_RULES + 1)
    report = make_bot(data_dir=bot.settings.data_dir).ingest([docs])
    assert [Path(p).name for p in report.updated] == ["manual.docx"] and len(report.unchanged) == 3


def test_documents_chunked_before_the_heading_rule_are_read_again(make_bot, tmp_path):
    """A heading like "## Learning C#" was stored as the section "Learning C" until the heading
    rule changed (92d4b85) without the pipeline's version: such documents stayed as they were."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "csharp.md").write_text("# Languages\n\n## Learning C#\n\nC# runs on the .NET runtime.\n")
    (folder / "plan.txt").write_text("Plan\n\n#1 priority is the parser.\n")
    bot = make_bot()
    assert bot.ingest([folder]).ok
    with bot.store.transaction() as db:  # as a data dir ingested before then holds them
        db.execute("UPDATE documents SET pipeline = replace(pipeline, ?, 'v1|')", (f"v{PIPELINE_VERSION}|",))
    report = make_bot(data_dir=bot.settings.data_dir).ingest([folder])
    assert sorted(Path(p).name for p in report.updated) == ["csharp.md", "plan.txt"]
    assert bot.search("What does C# run on?", k=1)[0].section.endswith("Learning C#")
    assert "#1 priority" in bot.search("What is the first priority?", k=1)[0].text


def test_a_word_document_is_searched_with_its_sections(make_bot, tmp_path):
    from test_readers import _word_document

    bot = make_bot()
    folder = tmp_path / "manuals"
    folder.mkdir()
    _word_document(folder / "manual.docx")
    report = bot.ingest([folder])
    assert report.added == [str(folder / "manual.docx")], report.failed
    top = bot.search("How often is the Quell pump serviced?", k=1)[0]
    assert "every six months" in top.text and top.title == "Pump Station Manual"
    assert top.section.endswith("Maintenance"), top.section
    answer = bot.ask("What is the part number of the filter?")
    assert "F-7" in answer.answer and not answer.refused, answer.answer


def test_a_folder_with_nothing_to_read_says_so(make_bot, docs, tmp_path):
    # An empty folder (or one holding only hidden files) printed "added 0 … 0 chunks" and no more.
    bot = make_bot()
    empty = tmp_path / "empty"
    (empty / ".git").mkdir(parents=True)
    (empty / ".notes.md").write_text("# hidden\n")
    said = bot.ingest([empty]).summary()
    assert "no files found to read" in said and ".pdf" in said
    assert "no files found" not in bot.ingest([docs]).summary()
    assert "no files found" not in bot.ingest([docs]).summary()  # all unchanged: they were found


def test_progress_starts_once_the_files_are_counted_and_ends_once_they_are_embedded(make_bot, docs):
    # The CLI's bar counted its rate from before the models were loaded, and the last group of
    # chunks was embedded after its last update: its rate disagreed with the summary's.
    calls = []
    report = make_bot().ingest([docs], progress=lambda *call: calls.append(call))
    n = len(report.added)
    assert calls[0] == (0, n, 0) and calls[-1] == (n, n, report.chunks_added)
    done = [d for d, _, _ in calls]
    assert sorted(set(done)) == list(range(n + 1)) and done == sorted(done)  # each file counted, in order
    chunks = [c for _, _, c in calls]
    assert chunks == sorted(chunks)  # the chunks embedded so far: never fewer than shown before


def test_progress_moves_while_a_big_files_chunks_are_embedded(make_bot, tmp_path, monkeypatch):
    """helper-83's drive: a 5 MB file's bar showed 0/1 for 95 s, then 1/1. The chunks embedded
    are counted as they are, before the file is done."""
    big = tmp_path / "big.txt"
    big.write_text("\n\n".join(f"Paragraph {i} says that shipment {i} left the warehouse on day {i % 28 + 1} "
                                "with twelve crates of tea, four of them green and the rest black." * 3
                                for i in range(400)))
    from ragbot.ingest import ingester

    monkeypatch.setattr(ingester, "FLUSH_CHUNKS", 64)  # a group full within the file, as a 5 MB one fills 512
    calls = []
    report = make_bot().ingest([big], progress=lambda *call: calls.append(call))
    during = [chunks for done, _, chunks in calls if done == 0 and chunks > 0]  # the file not done yet
    assert report.chunks_added > 128 and len(during) >= 2 and during == sorted(during)
    assert calls[-1] == (1, 1, report.chunks_added)


def test_the_shipped_corpus_goes_only_into_a_data_dir_that_never_held_a_document(make_bot, docs, tmp_path):
    # helper-74 removed every document of a data dir, asked a question, and found the shipped
    # corpus ingested into the library he had emptied ("First run: ingesting…").
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "welcome.md").write_text("# Welcome\n\nThis demo document greets every new user of the library.\n")
    new = make_bot(default_corpus=shipped)
    assert new.never_held_documents()
    assert len(new.ensure_default_corpus().added) == 1
    emptied = make_bot(default_corpus=shipped)
    emptied.ingest([docs])
    emptied.remove([docs])
    assert emptied.store.counts() == (0, 0) and not emptied.never_held_documents()
    assert emptied.ensure_default_corpus() is None and emptied.store.counts() == (0, 0)


def test_the_cli_bar_says_it_is_loading_then_counts_chunks_as_they_embed(monkeypatch):
    """Its first frame read "0file [00:00, ?file/s]"; and a call while the first file's chunks
    embed (no file done yet) must move the count, not start the bar over."""
    import io

    from ragbot.interfaces.cli import _progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    update, close = _progress_bar("ingest")
    assert "ingest: loading the models and counting the files" in screen.getvalue()
    update(0, 1, 0)
    update(0, 1, 64)
    assert screen.getvalue().rstrip().endswith("chunks/s]") and "0/1" in screen.getvalue()
    assert "64 chunks" in screen.getvalue()
    update(1, 1, 128)
    close()
    assert "1/1" in screen.getvalue() and "128 chunks" in screen.getvalue()


def test_the_cli_names_a_guessed_encoding(capsys):
    from ragbot.interfaces.cli import _print_report

    report = IngestReport(added=["/docs/old.txt"], guessed_encodings=[("/docs/old.txt", "cp1251")])
    _print_report(report)
    out = capsys.readouterr().out
    assert ("read as cp1251: /docs/old.txt: not UTF-8, so its encoding was guessed from its bytes; if its "
            "letters look wrong in answers, save it as UTF-8 and ingest it again") in out
