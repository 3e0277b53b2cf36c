"""Shared fixtures. Models are the real shipped ones, loaded once per test session."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from ragbot import RagBot, load_settings
from ragbot.models import resolve_generator

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
DATA = Path(__file__).resolve().parent / "data"
ARTIFACTS = ROOT / "test-artifacts"  # screenshots and server logs, kept after the run
# The development sets' soundness is stated against the retrieval floor they were written with
# (the old default `min_score`, docs/calibration.md): off-topic questions score below it, near
# misses above it. The setting itself is off now; this is a property of retrieval, not of answering.
RETRIEVAL_FLOOR = 0.25

# Tests never touch the user's data dir or the network.
os.environ.pop("RAGBOT_HOME", None)
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def embedder():
    from ragbot.retrieve.embed import Embedder

    return Embedder.load(load_settings("/nonexistent-ragbot-test-dir"))


@pytest.fixture(scope="session")
def corpus_bot(tmp_path_factory) -> RagBot:
    """A bot over the shipped corpus, shared by the read-only tests (its data dir is reused).
    Its answer log fills up as the tests ask, so its sentences are ranked without the log's
    weights (question_log_weights off, also for its `with_settings` copies): a test's quote must
    not depend on which tests asked before it. Tests of the log use bots of their own."""
    bot = RagBot.open(tmp_path_factory.mktemp("corpus-data"), question_log_weights=False)
    report = bot.ingest([CORPUS])
    assert report.ok, report.failed
    return bot


@pytest.fixture(scope="session")
def torch_generator(corpus_bot):
    """The shipped generator on the transformers backend (the default backend may be llama.cpp)."""
    from ragbot.generators import load_generator

    return load_generator(corpus_bot.settings, backend="transformers")


@pytest.fixture
def make_bot(tmp_path, embedder):
    """Fresh bots on empty data dirs, sharing the session's loaded embedder."""
    bots = []

    def make(data_dir: Path | None = None, **overrides) -> RagBot:
        bot = RagBot.open(data_dir or tmp_path / f"data{len(bots)}", **overrides)
        bot._embedder = embedder
        bot.store.claim_embedder(embedder.name, embedder.dim)
        bots.append(bot)
        return bot

    yield make
    for bot in bots:
        bot.close()


@pytest.fixture
def docs(tmp_path) -> Path:
    """A small folder of good documents in three formats."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "paris.md").write_text(
        "# Paris\n\nThe Eiffel Tower is in Paris. It was completed in 1889 for the World Fair.\n\n"
        "## Food\n\nCroissants are a French pastry made of layered dough.\n"
    )
    (folder / "bananas.txt").write_text("Bananas are yellow fruit grown in tropical regions.\n")
    (folder / "volcano.html").write_text(
        "<html><head><title>Volcanoes</title></head><body><h1>Volcanoes</h1>"
        "<p>Mount Etna in Sicily is one of the most active volcanoes in the world.</p></body></html>"
    )
    return folder


def copy_data_dir(bot: RagBot, dest: Path, votes: bool = False) -> Path:
    """A copy of `bot`'s data dir: its database (through SQLite's backup API, which includes
    writes still in the WAL file) and index; the converted model is linked, not copied.

    Votes other tests left in the shared database are dropped unless `votes`, so that a copy's
    feedback is only what its own test gives."""
    import sqlite3

    resolve_generator(bot.settings)  # converts the model for training once, in the shared data dir
    src = bot.settings.data_dir
    dest.mkdir(parents=True)
    with sqlite3.connect(src / "ragbot.db") as source, sqlite3.connect(dest / "ragbot.db") as target:
        source.backup(target)
        if not votes:
            target.execute("DELETE FROM feedback_history")
            target.execute("DELETE FROM feedback")
    shutil.copytree(src / "index", dest / "index")
    os.symlink(src / "models", dest / "models")
    return dest


def copies_in_folders(file: Path, root: Path, folders=("a", "b")) -> list[Path]:
    """The folders `root`/a, `root`/b, each holding a copy of `file` under its own name."""
    made = []
    for folder in folders:
        (root / folder).mkdir()
        shutil.copy(file, root / folder / file.name)
        made.append(root / folder)
    return made


def copy_corpus_file(name: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(CORPUS / name, dest / name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_chat(data_dir: Path, *extra: str, port: int | None = None):
    """`ragbot chat` in its own process on a free port (or `port`); yields its URL."""
    port = port or _free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"chat-server-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ragbot", "chat", "--data-dir", str(data_dir), "--port", str(port), *extra],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.time() + 180
            while True:
                try:
                    urllib.request.urlopen(url, timeout=2)
                    break
                except OSError:
                    if proc.poll() is not None or time.time() > deadline:
                        pytest.fail(f"ragbot chat did not start: {log_path.read_text()[-2000:]}")
                    time.sleep(1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture
def server(corpus_bot):
    """`ragbot chat` over the corpus bot's data dir: (url, data dir)."""
    with running_chat(corpus_bot.settings.data_dir) as url:
        yield url, corpus_bot.settings.data_dir


def _hold_lock(path: str, ready, release) -> None:
    from ragbot.storage.files import state_lock

    with state_lock(Path(path), "the thing"):
        ready.set()
        release.wait(60)


@contextmanager
def lock_held_elsewhere(path: Path):
    """The inter-process lock `path` held by another process (as another ragbot command holds
    it) until the block ends; yields that process."""
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        yield holder
    finally:
        release.set()
        holder.join(30)
