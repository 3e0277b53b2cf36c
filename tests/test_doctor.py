"""`ragbot doctor [--repair]`, `ragbot backup`, `ragbot restore`: damage made on purpose is found,
what can be rebuilt is, and a backup taken while another connection writes is consistent."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from conftest import ROOT
from ragbot.storage.doctor import backup, doctor, restore
from ragbot.errors import RagbotError


def _statuses(report) -> dict:
    return {f.check: f.status for f in report.findings}


@pytest.fixture
def ingested(make_bot, docs):
    bot = make_bot()
    bot.ingest([docs])
    return bot


def test_a_healthy_data_dir_is_clean(ingested):
    report = doctor(ingested.settings.data_dir)
    assert report.clean, report.lines()
    statuses = _statuses(report)
    assert statuses["database"] == "ok" and statuses["generator file"] == "ok" and statuses["embedder file"] == "ok"
    assert any(check.startswith("FAISS index") and status == "ok" for check, status in statuses.items())
    assert any(check.startswith("BM25 index") and status == "ok" for check, status in statuses.items())


def test_missing_and_wrong_indexes_leftovers_and_registry_damage_are_found_then_repaired(ingested):
    settings = ingested.settings
    generation = ingested.store.generation()
    (settings.index_dir / f"{generation}.faiss").unlink()
    shutil.rmtree(settings.index_dir / f"{generation}.bm25")
    (settings.index_dir / ".leftover.tmp").write_text("half")
    os.utime(settings.index_dir / ".leftover.tmp", (1, 1))  # an interrupted write long ago
    settings.adapters_dir.mkdir()
    (settings.adapters_dir / ".v1-abc").mkdir()  # an interrupted save
    (settings.adapters_dir / "state.json").write_text('{"active": "v7"')  # torn write
    ingested.close()

    report = doctor(settings.data_dir)
    assert not report.clean
    statuses = _statuses(report)
    # A missing index is what a crash after the database's commit leaves: rebuilt on the next search.
    assert statuses[f"FAISS index (generation {generation})"] == "warning"
    assert statuses[f"BM25 index (generation {generation})"] == "warning"
    assert statuses["index leftovers"] == "warning" and statuses["adapter state"] == "problem"

    repaired = doctor(settings.data_dir, repair=True)
    assert repaired.clean, repaired.lines()
    statuses = _statuses(repaired)
    assert statuses[f"FAISS index (generation {generation})"] == "repaired"
    assert statuses["adapter state"] == "repaired"
    # Gone: removed by the leftover check, or already by the rebuilt index's save, which clears old leftovers.
    assert statuses.get("index leftovers", "repaired") == "repaired"
    assert not (settings.index_dir / ".leftover.tmp").exists()
    assert (settings.index_dir / f"{generation}.faiss").is_file() and (settings.index_dir / f"{generation}.bm25").is_dir()
    assert json.loads((settings.adapters_dir / "state.json").read_text()) == {"active": None, "history": []}
    assert doctor(settings.data_dir).clean  # and it stays clean


def test_orphan_chunks_are_removed_by_repair(ingested):
    db = ingested.store._db
    db.execute("PRAGMA foreign_keys=OFF")
    doc_id = db.execute("SELECT id FROM documents WHERE source LIKE '%bananas.txt'").fetchone()[0]
    db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
    data_dir = ingested.settings.data_dir
    ingested.close()
    found = doctor(data_dir)
    assert _statuses(found)["orphan chunks"] == "problem" and found.repairable
    cli = subprocess.run([sys.executable, "-m", "ragbot", "--data-dir", str(data_dir), "doctor"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert cli.returncode == 1 and cli.stdout.strip().endswith("problems found (try --repair)"), cli.stdout + cli.stderr
    repaired = doctor(data_dir, repair=True)
    assert _statuses(repaired)["orphan chunks"] == "repaired" and repaired.clean, repaired.lines()


def test_a_damaged_database_is_named_not_repaired(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "ragbot.db").write_bytes(b"SQLite format 3\x00" + b"\x07" * 4096)
    report = doctor(data_dir, repair=True)
    assert not report.clean
    assert report.findings[0].check == "database" and "restore a backup" in report.findings[0].detail


def test_a_database_that_lacks_what_its_migrations_made_is_refused_and_named(ingested):
    """A data dir written by an unreleased ragbot whose migration was later changed (the copies
    table without its sha256 column) failed at each delete with 'no such column: c.sha256'."""
    from ragbot.storage.store import Store

    data_dir = ingested.settings.data_dir
    ingested.close()
    db = sqlite3.connect(data_dir / "ragbot.db")
    db.executescript("DROP TABLE copies; CREATE TABLE copies (path TEXT PRIMARY KEY, original TEXT NOT NULL, "
                     "recorded_at REAL NOT NULL); DROP TABLE ranking_vectors;")
    db.close()
    with pytest.raises(RagbotError, match=r"lacks copies\.sha256 \(migration 7\), ranking_vectors \(migration 4\), "
                                          r"which .* before migration 4 was recorded"):
        Store(data_dir / "ragbot.db")
    report = doctor(data_dir, repair=True)
    assert [(f.check, f.status) for f in report.findings] == [("database", "problem")]
    assert "copies.sha256" in report.findings[0].detail and "restore" in report.findings[0].detail.lower()
    # --repair cannot mend it, so the command does not send the user there.
    cli = subprocess.run([sys.executable, "-m", "ragbot", "--data-dir", str(data_dir), "doctor"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert cli.returncode == 1 and cli.stdout.strip().endswith("problems found"), cli.stdout + cli.stderr


def test_backup_while_another_connection_writes_then_restore(ingested, tmp_path):
    data_dir = ingested.settings.data_dir
    answer = ingested.ask("Where is the Eiffel Tower?")
    ingested.feedback.set_feedback(answer.id, 1, user="ann")
    # A write in progress in another connection (WAL) is not in the copy; everything committed is.
    other = sqlite3.connect(ingested.settings.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE feedback SET comment = 'uncommitted'")
    manifest = backup(data_dir, tmp_path / "backup")
    other.execute("ROLLBACK")
    other.close()
    assert manifest["counts"]["documents"] == 3 and manifest["counts"]["feedback"] == 1
    with pytest.raises(RagbotError, match="already exists"):
        backup(data_dir, tmp_path / "backup")
    # A backup inside the data dir would be lost with it, and moved aside by `restore --replace`.
    with pytest.raises(RagbotError, match="inside the data dir"):
        backup(data_dir, data_dir / "backups" / "today")
    assert not (data_dir / "backups").exists()
    shutil.copytree(tmp_path / "backup", data_dir / "old-backup")  # put there by hand
    with pytest.raises(RagbotError, match="inside the data dir"):
        restore(data_dir / "old-backup", data_dir, replace=True)
    shutil.rmtree(data_dir / "old-backup")
    with pytest.raises(RagbotError, match="missing-backup does not exist"):
        restore(tmp_path / "missing-backup", tmp_path / "new-data")
    with pytest.raises(RagbotError, match="inside the backup"):  # it would write into what it copies
        restore(tmp_path / "backup", tmp_path / "backup" / "restored")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RagbotError, match="cannot back up .* to .*afile/bk: File exists"):  # was a traceback
        backup(data_dir, tmp_path / "afile" / "bk")

    with pytest.raises(RagbotError, match="not empty.*--replace"):
        restore(tmp_path / "backup", data_dir)
    note = tmp_path / "note.md"  # --data-dir naming a file: it was moved to a hidden name, without a word
    note.write_text("mine\n")
    for replace in (False, True):
        with pytest.raises(RagbotError, match="is a file, not a folder"):
            restore(tmp_path / "backup", note, replace=replace)
    assert note.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir() if "note" in p.name) == ["note.md"]
    done = restore(tmp_path / "backup", data_dir, replace=True)
    assert done["moved_aside"] and (tmp_path / done["moved_aside"]).exists()  # the old one is kept
    fresh = subprocess.run([sys.executable, "-m", "ragbot", "search", "Eiffel Tower", "--data-dir", str(data_dir),
                            "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    assert "paris.md" in fresh.stdout  # the indexes are rebuilt from the restored database
    restored = sqlite3.connect(data_dir / "ragbot.db")
    assert restored.execute("SELECT vote, user, comment FROM feedback").fetchall() == [(1, "ann", None)]
    restored.close()


def test_cli_doctor_exit_status_and_restore_of_something_else(ingested, tmp_path):
    data_dir = str(ingested.settings.data_dir)
    run = lambda *a: subprocess.run([sys.executable, "-m", "ragbot", *a, "--data-dir", data_dir],  # noqa: E731
                                    capture_output=True, text=True, cwd=ROOT, timeout=300)
    ok = run("doctor")
    assert ok.returncode == 0 and ok.stdout.strip().endswith("clean"), ok.stdout + ok.stderr
    (tmp_path / "junk").mkdir()
    bad = run("restore", str(tmp_path / "junk"))
    assert bad.returncode == 2 and "is not a ragbot backup" in bad.stderr


def test_an_index_that_holds_other_chunks_is_a_problem_and_is_rebuilt(ingested):
    import numpy as np

    from ragbot.retrieve.index import VectorIndex

    settings, generation = ingested.settings, ingested.store.generation()
    wrong = VectorIndex(ingested.embedder.dim)
    wrong.add(np.array([999], dtype=np.int64), np.ones((1, ingested.embedder.dim), dtype=np.float32))
    wrong.save(settings.index_dir, generation)
    ingested.close()
    assert _statuses(doctor(settings.data_dir))[f"FAISS index (generation {generation})"] == "problem"
    repaired = doctor(settings.data_dir, repair=True)
    assert _statuses(repaired)[f"FAISS index (generation {generation})"] == "repaired" and repaired.clean


def test_a_data_dir_this_user_cannot_write_is_named_not_called_damaged(ingested, monkeypatch):
    # SQLite's "attempt to write a readonly database" was reported as a damaged database, with
    # "restore a backup" as the fix. Permissions do not stop root, so the answer is stood in for.
    from pathlib import Path

    data_dir = ingested.settings.data_dir
    ingested.close()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != data_dir)
    report = doctor(data_dir)
    assert [(f.check, f.status) for f in report.findings] == [("data dir", "problem")]
    assert "this user may not write there" in report.findings[0].detail and "restore" not in report.findings[0].detail


def test_doctor_does_not_call_a_data_dir_with_warnings_clean(ingested, capsys):
    # helper-74 deleted the index folder and read "warning FAISS index … missing", then "clean".
    from ragbot.interfaces.cli import main
    from ragbot.text import counted

    def last_line_and_warnings() -> tuple[str, list[str]]:
        lines = capsys.readouterr().out.strip().splitlines()
        return lines[-1], [line for line in lines if line.startswith("warning ")]

    data_dir = str(ingested.settings.data_dir)
    assert main(["doctor", "--data-dir", data_dir]) == 0
    last, warnings = last_line_and_warnings()  # a machine low on disk warns here too
    assert last == ("clean" if not warnings else f"no problems; {counted(len(warnings), 'warning')} above")
    shutil.rmtree(ingested.settings.data_dir / "index")
    assert main(["doctor", "--data-dir", data_dir]) == 0  # the next search rebuilds them: no fault
    last, warnings = last_line_and_warnings()
    assert any("FAISS index" in line and "missing" in line for line in warnings), warnings
    assert last == f"no problems; {counted(len(warnings), 'warning')} above"


def _long_note(folder) -> None:
    folder.mkdir()
    (folder / "log.txt").write_text("\n\n".join(
        f"Shipment {i} left the warehouse on day {i % 28 + 1} with {i + 3} crates of tea, bound for dock {i % 9}."
        for i in range(600)) + "\n")


def test_removed_documents_give_their_space_back(make_bot, docs, tmp_path):
    """SQLite keeps the pages of deleted rows for its own later use: removing most of a library
    left the database file its size. A new database gives them back after each write."""
    bot = make_bot()
    _long_note(tmp_path / "big")
    bot.ingest([docs, tmp_path / "big"])
    size, free, incremental = bot.store.space()
    assert incremental and free == 0
    files = lambda: sum(os.path.getsize(p) for p in bot.settings.db_path.parent.glob("ragbot.db*"))  # noqa: E731
    on_disk = files()
    bot.remove([tmp_path / "big"])
    after, free, _ = bot.store.space()
    assert free == 0 and after < size * 0.6, (size, after)
    assert files() < on_disk * 0.6, (on_disk, files())  # the file and its log, while the bot is open
    assert bot.search("When was the Eiffel Tower finished?", k=1)[0].source.endswith("paris.md")


def test_doctor_compacts_a_database_that_kept_its_free_pages(make_bot, docs, tmp_path, monkeypatch):
    """A database made before that keeps them: doctor says so, and --repair compacts it."""
    from ragbot.storage import doctor as doctor_module

    bot = make_bot()
    _long_note(tmp_path / "big")
    bot.ingest([docs, tmp_path / "big"])
    db = sqlite3.connect(bot.settings.db_path, isolation_level=None)  # as a database made before
    db.execute("PRAGMA auto_vacuum=NONE")
    db.execute("VACUUM")
    db.close()
    bot.remove([tmp_path / "big"])
    size, free, incremental = bot.store.space()
    assert not incremental and free > size // 2
    monkeypatch.setattr(doctor_module, "FREE_WARN_BYTES", 1 << 16)
    data_dir = bot.settings.data_dir
    bot.close()
    report = doctor(data_dir)
    space = next(f for f in report.findings if f.check == "database space")
    assert space.status == "warning" and "--repair compacts it" in space.detail and report.clean
    repaired = doctor(data_dir, repair=True)
    space = next(f for f in repaired.findings if f.check == "database space")
    assert space.status == "repaired" and "given back after each write from now on" in space.detail, space.detail
    again = make_bot(data_dir)
    after, free, incremental = again.store.space()
    assert incremental and free == 0 and after < size * 0.6
    assert again.search("When was the Eiffel Tower finished?", k=1)[0].source.endswith("paris.md")
    assert _statuses(doctor(data_dir))["database space"] == "ok"
