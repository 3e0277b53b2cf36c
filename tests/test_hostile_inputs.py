"""What a real folder can hold, fed to `ragbot ingest`: each bad entry is one clear line, nothing
hangs (every run is bounded by a timeout), and the good files are ingested."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from ragbot.ingest import readers

TIMEOUT = 180  # a FIFO read without care blocks forever; /dev/zero never ends


def _ingest(data_dir, *paths):
    return subprocess.run([sys.executable, "-m", "ragbot", "ingest", *map(str, paths), "--data-dir", str(data_dir)],
                          capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT)


def test_a_folder_of_hostile_entries(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.md").write_text("# Good\n\nThe Quell pump moves water out of deep mines.\n")
    os.mkfifo(folder / "pipe.txt")
    os.symlink("/dev/zero", folder / "zero.txt")
    os.symlink("/dev/urandom", folder / "random.md")
    (folder / "two\nlines.txt").write_text("A name with a newline still names a good file.\n")
    with open(os.path.join(os.fsencode(folder), b"latin-\xe9.txt"), "w") as fh:
        fh.write("A name that is not UTF-8 still names a good file.\n")
    deep = folder
    for level in range(60):
        deep = deep / f"d{level}"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("Sixty folders down, a file about valves.\n")

    done = _ingest(tmp_path / "data", folder)
    assert done.returncode == 1, done.stdout + done.stderr  # some files failed, the rest went in
    failed = [line for line in done.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 4, done.stderr  # one line each
    assert sum("not a regular file" in line for line in failed) == 3  # the FIFO and the two device links
    assert any("latin-\\udce9.txt: the file name is not valid UTF-8" in line for line in failed), failed
    assert "added 3" in done.stdout, done.stdout  # good.md, the name with a newline, the deep file

    listed = subprocess.run([sys.executable, "-m", "ragbot", "documents", "--data-dir", str(tmp_path / "data")],
                            capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT)
    assert listed.returncode == 0, listed.stderr
    assert "bottom.txt" in listed.stdout and "two\\nlines.txt" in listed.stdout
    assert len(listed.stdout.strip().splitlines()) == 4  # three documents and the count: no name broke a line


def test_a_file_that_vanishes_or_grows_between_listing_and_reading(make_bot, tmp_path, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (folder / name).write_text(f"{name} holds one sentence about pumps.\n")
    bot = make_bot()

    def vanish(done, total, chunks):
        if done == 1:
            (folder / "b.txt").unlink()

    report = bot.ingest([folder], progress=vanish)
    assert [r for _, r in report.failed] == ["file not found"] and len(report.added) == 2

    monkeypatch.setattr(readers, "MAX_FILE_BYTES", 64)  # the same check as the 200 MiB limit, small
    (folder / "big.txt").write_text("x " * 100)
    report = bot.ingest([folder / "big.txt"])
    assert report.failed and "over the" in report.failed[0][1] and "limit" in report.failed[0][1]


def test_a_line_over_the_limit_is_refused_and_the_rest_ingested(make_bot, tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_LINE_CHARS", 50)  # the same check as the 1,000,000 limit, small
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "prose.txt").write_text("Pumps move water.\nEach line here is short.\n")
    (folder / "dump.txt").write_text("A heading\n\n" + "QUJD" * 20 + "\nshort\n")
    report = make_bot().ingest([folder])
    assert [Path(p).name for p in report.added] == ["prose.txt"]
    (source, reason), = report.failed
    assert Path(source).name == "dump.txt"
    assert reason.startswith("line 3 is 80 characters long, over the 50-character limit")


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_a_device_named_directly_is_refused_at_once(tmp_path, target):
    done = _ingest(tmp_path / "data", target)
    assert done.returncode == 1 and "not a regular file" in done.stderr
