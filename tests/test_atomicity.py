"""A write interrupted at any point leaves a data dir whose index loads and agrees with the
database: by an exception inside ragbot, or by SIGKILL from outside."""

import os
import signal
import subprocess
import sys
import time

import pytest

from ragbot import RagBot
from ragbot.retrieve.index import VectorIndex
from ragbot.storage.store import Store

from conftest import CORPUS, ROOT


def _check_consistent(data_dir, embedder) -> RagBot:
    bot = RagBot.open(data_dir)
    bot._embedder = embedder
    ids, _ = bot.store.all_vectors(embedder.dim)
    index = bot._current_index()
    assert sorted(index.ids().tolist()) == ids.tolist()
    assert VectorIndex.load(bot.settings.index_dir, bot.store.generation(), embedder.dim) is not None
    for doc in bot.store.documents():
        assert doc.n_chunks > 0, f"{doc.source} stored without chunks"
    return bot


def test_exception_while_saving_the_index(make_bot, docs, embedder, monkeypatch):
    bot = make_bot()
    bot.ingest([docs / "paris.md"])
    data_dir = bot.settings.data_dir

    def broken_save(self, directory, generation):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(VectorIndex, "save", broken_save)
    with pytest.raises(OSError):
        bot.ingest([docs])
    monkeypatch.undo()
    bot.close()
    reopened = _check_consistent(data_dir, embedder)
    assert reopened.store.counts()[0] == 3  # the database committed; the index is rebuilt from it
    assert reopened.search("Mount Etna", k=1)[0].source.endswith("volcano.html")
    reopened.close()


def test_exception_inside_a_database_write_rolls_it_back(make_bot, docs, embedder, monkeypatch):
    bot = make_bot()
    bot.ingest([docs / "paris.md"])
    data_dir = bot.settings.data_dir
    calls = {"n": 0}
    original = Store._bump_generation

    def fail_second(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash in the middle of a transaction")
        original(self)

    monkeypatch.setattr(Store, "_bump_generation", fail_second)
    (docs / "paris.md").write_text("# Paris\n\nParis has many museums, such as the Louvre.\n")
    with pytest.raises(RuntimeError):
        bot.ingest([docs])
    monkeypatch.undo()
    bot.close()
    reopened = _check_consistent(data_dir, embedder)
    # One new document went in before the failure; the failed one left nothing half-written.
    docs_now = reopened.store.documents()
    assert len(docs_now) == 2
    report = reopened.ingest([docs])
    assert report.ok and reopened.store.counts()[0] == 3
    assert "Louvre" in reopened.search("museums in Paris", k=1)[0].text
    reopened.close()


INGEST_SCRIPT = """
import sys
from ragbot import RagBot
bot = RagBot.open(sys.argv[1], chunk_tokens=int(sys.argv[3]))
bot.embedder
print("START", flush=True)
bot.ingest([sys.argv[2]])
print("DONE", flush=True)
"""


@pytest.mark.parametrize("delay", [0.0, 0.4, 1.2, 2.5])
def test_sigkill_during_ingest_leaves_a_usable_index(make_bot, embedder, tmp_path, delay):
    bot = make_bot(tmp_path / "data")
    bot.ingest([CORPUS])
    before = bot.store.counts()
    bot.close()
    # Re-chunking forces every document to be rewritten; kill the process part-way.
    proc = subprocess.Popen(
        [sys.executable, "-c", INGEST_SCRIPT, str(tmp_path / "data"), str(CORPUS), "120"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert proc.stdout.readline().strip() == "START"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    reopened = _check_consistent(tmp_path / "data", embedder)
    docs, chunks = reopened.store.counts()
    assert docs == before[0]  # every document is there, in its old or its new chunking
    assert chunks >= before[1]
    assert reopened.search("What is a GAN?", k=1)[0].source.endswith("gans.md")
    reopened.close()


def _search_without_waiting(bot, question: str, what: str) -> list:
    """The passages a search in another thread finds, failing if it takes 20 s (waits for `what`)."""
    import threading

    found: list = []
    reader = threading.Thread(target=lambda: found.extend(bot.search(question, k=3)))
    reader.start()
    reader.join(20)
    assert not reader.is_alive(), f"the search waited for {what}"
    return found


def test_searches_read_a_snapshot_while_this_process_ingests(make_bot, docs, tmp_path):
    """An ingest builds the next generation on a copy of the index: a search meanwhile (the chat
    answering while an upload is ingested) is not held up, and reads the generation the ingest
    started from; afterwards the new documents are found."""
    import threading

    bot = make_bot()
    bot.ingest([docs / "paris.md"])
    more = tmp_path / "more"
    more.mkdir()
    (more / "a-pumps.md").write_text("# Pumps\n\nThe Quell pump moves water with a spiral screw.\n")
    (more / "b-tides.md").write_text("# Tides\n\nTides rise and fall twice a day with the moon.\n")
    inside, release = threading.Event(), threading.Event()

    def slow(done, total, chunks):
        if done == 1:  # the ingest is under way: hold it here
            inside.set()
            release.wait(60)

    writer = threading.Thread(target=lambda: bot.ingest([more], progress=slow))
    writer.start()
    try:
        assert inside.wait(60)
        found = _search_without_waiting(bot, "How does the Quell pump move water?", "the ingest")
        assert found and not any(p.source.endswith(("a-pumps.md", "b-tides.md")) for p in found)
    finally:
        release.set()
        writer.join(60)
    assert bot.search("How does the Quell pump move water?", k=1)[0].source.endswith("a-pumps.md")
    assert bot.search("When do tides rise?", k=1)[0].source.endswith("b-tides.md")


def test_searches_do_not_wait_for_the_new_bm25_index(make_bot, docs, tmp_path, monkeypatch):
    """After an upload is stored, its BM25 index is built (seconds to minutes for a large
    corpus): searches meanwhile read the generation before it, not wait for the build."""
    import threading

    from ragbot import bot as bot_module

    bot = make_bot()
    bot.ingest([docs / "paris.md"])
    more = tmp_path / "more"
    more.mkdir()
    (more / "pumps.md").write_text("# Pumps\n\nThe Quell pump moves water with a spiral screw.\n")
    inside, release = threading.Event(), threading.Event()
    real_build = bot_module.LexicalIndex.build
    writer_thread: list = []

    def slow_build(*args, **kwargs):
        if threading.current_thread() in writer_thread:  # the ingest's build: hold it here
            inside.set()
            release.wait(60)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(bot_module.LexicalIndex, "build", staticmethod(slow_build))
    writer = threading.Thread(target=lambda: bot.ingest([more]))
    writer_thread.append(writer)
    writer.start()
    try:
        assert inside.wait(60)
        found = _search_without_waiting(bot, "How does the Quell pump move water?", "the BM25 build")
        assert found and not any(p.source.endswith("pumps.md") for p in found)
    finally:
        release.set()
        writer.join(60)
    assert bot.search("How does the Quell pump move water?", k=1)[0].source.endswith("pumps.md")
