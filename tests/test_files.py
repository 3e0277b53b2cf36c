"""The one atomic-write helper and the inter-process locks every state change holds."""

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from ragbot.errors import BusyError
from ragbot.storage.files import atomic_file, new_temp_dir, state_lock, swap_in_dir, write_atomic
from ragbot.learn.registry import AdapterRegistry

from conftest import lock_held_elsewhere


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    write_atomic(target, '{"v": 1}')
    with pytest.raises(RuntimeError):
        with atomic_file(target) as fh:
            fh.write('{"v": 2, "half')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    write_atomic(target, b"bytes too")
    assert target.read_bytes() == b"bytes too"


def test_a_folder_is_swapped_in_whole(tmp_path):
    target = tmp_path / "v1"
    for content in ("first", "second"):
        tmp = new_temp_dir(tmp_path, ".v1-")
        (tmp / "weights").write_text(content)
        swap_in_dir(tmp, target)
        assert (target / "weights").read_text() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]  # no temporary or old folder left


def test_a_busy_lock_names_its_holder(tmp_path):
    lock = tmp_path / "x.lock"
    with lock_held_elsewhere(lock) as holder:
        with pytest.raises(BusyError, match=rf"the thing is busy: process {holder.pid} .* since \d{{4}}-"):
            with state_lock(lock, "the thing", timeout=0):
                pass
        said = []
        with pytest.raises(BusyError):
            with state_lock(lock, "the thing", timeout=0.5, on_wait=said.append):
                pass
        assert len(said) == 1 and said[0].startswith(f"waiting for the thing: process {holder.pid} ")
    with state_lock(lock, "the thing", timeout=5):  # free again once the holder is done
        assert json.loads(lock.with_name("x.lock.holder.json").read_text())["pid"] == os.getpid()
    assert not lock.with_name("x.lock.holder.json").exists()


def _save_adapters(root: str, source: str, n: int) -> None:
    registry = AdapterRegistry(Path(root))
    for _ in range(n):
        registry.save(Path(source), {"base_model": "test"})


def test_two_processes_never_save_two_adapters_with_one_number(tmp_path):
    source = tmp_path / "trained"
    source.mkdir()
    (source / "adapter_config.json").write_text("{}")
    root = tmp_path / "adapters"
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_save_adapters, args=(str(root), str(source), 5)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    versions = [info.version for info in AdapterRegistry(root).versions()]
    assert versions == [f"v{i}" for i in range(1, 11)]


def test_a_second_tune_on_the_same_data_dir_is_refused(make_bot, docs, monkeypatch):
    from ragbot.learn import tune as tuning

    bot = make_bot()
    bot.ingest([docs])
    monkeypatch.setattr(tuning, "preflight", lambda bot: None)
    with state_lock(bot.settings.data_dir / "tune.lock", "tuning"):
        with pytest.raises(BusyError, match=r"tuning in .* is busy: process \d+"):
            tuning.tune(bot, tuning.TuneConfig(model_questions=0))


def test_a_full_disk_while_saving_the_index_is_one_clear_error_and_reading_goes_on(make_bot, docs, monkeypatch):
    import errno

    from ragbot.errors import DiskFullError

    bot = make_bot()
    bot.ingest([docs / "paris.md"])
    real_fsync = os.fsync

    def full(fd):
        if os.path.isfile(f"/proc/self/fd/{fd}") or not os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match=r"\.faiss: no space left on the device .*stored before the disk filled"):
        bot.ingest([docs])
    assert not [p for p in bot.settings.index_dir.iterdir() if ".tmp" in p.name]  # no temporary left
    # Every start rebuilds the missing index from the database; with no room to save it, it is
    # kept in memory and searching still works.
    later = make_bot(bot.settings.data_dir)
    with pytest.warns(UserWarning, match="kept in memory only"):
        top = later.search("Mount Etna", k=1)
    assert top[0].source.endswith("volcano.html")
    monkeypatch.setattr(os, "fsync", real_fsync)
    again = make_bot(bot.settings.data_dir)
    assert again.search("Mount Etna", k=1)[0].source.endswith("volcano.html")
    assert (bot.settings.index_dir / f"{again.store.generation()}.faiss").is_file()  # saved once there is room


def test_a_full_database_rolls_back_the_batch_and_says_so(make_bot, docs):
    from ragbot.errors import DiskFullError

    bot = make_bot()
    bot.ingest([docs / "paris.md"])
    db = bot.store._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + 1}")  # SQLite's own "database or disk is full"
    (docs / "long.txt").write_text("Lava flows slowly downhill and cools into basalt. " * 400)
    with pytest.raises(DiskFullError, match=r"ragbot\.db: no space left on the device"):
        bot.ingest([docs])
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [Path(d.source).name for d in bot.store.documents()] == ["paris.md"]
    assert bot.search("Eiffel Tower", k=1)[0].source.endswith("paris.md")


def test_a_write_waits_for_the_data_dir_then_names_its_holder(make_bot, docs):
    """An ingest waits for another process's write (saying so), then gives up with the holder's
    name; a repair does not wait at all; once the holder is done, the ingest goes through."""
    from ragbot.storage.doctor import doctor

    bot = make_bot()
    with lock_held_elsewhere(bot.settings.data_dir / "write.lock") as holder:
        said = []
        with pytest.raises(BusyError, match=rf"the data dir .* is busy: process {holder.pid} "):
            bot.ingest([docs], wait=0.5, on_wait=said.append)
        assert len(said) == 1 and said[0].startswith("waiting for the data dir")
        with pytest.raises(BusyError, match=rf"process {holder.pid} "):
            doctor(bot.settings.data_dir, repair=True)
    assert bot.ingest([docs]).ok


def test_a_writer_stops_when_the_data_dir_was_restored_under_it(make_bot, docs, tmp_path):
    """`restore --replace` moves the data dir aside and puts the backup in its place: a process
    that opened the old one must not write into the folder moved aside."""
    from ragbot.storage.doctor import backup, restore

    bot = make_bot()
    bot.ingest([docs / "paris.md"])
    backup(bot.settings.data_dir, tmp_path / "copy")
    restore(tmp_path / "copy", bot.settings.data_dir, replace=True)
    with pytest.raises(BusyError, match="was replaced since this process opened it"):
        bot.ingest([docs])
    assert make_bot(bot.settings.data_dir).ingest([docs]).ok  # a fresh start writes to the restored one


def test_a_lock_whose_folder_is_moved_while_waiting_says_so(tmp_path):
    """A restore moves the data dir aside while a writer waits for its lock: the writer stops
    with a message, not a FileNotFoundError from the lock library."""
    import threading

    folder = tmp_path / "data"
    lock = folder / "write.lock"
    outcome: list = []

    def wait_for_it():
        try:
            with state_lock(lock, "the data dir", timeout=30):
                outcome.append("acquired")
        except BusyError as exc:
            outcome.append(str(exc))

    with lock_held_elsewhere(lock):
        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        time.sleep(0.5)
        folder.rename(tmp_path / "data.before-restore")
        waiter.join(30)
        assert outcome and "was moved while waiting for the data dir" in outcome[0], outcome


SERVE_SCRIPT = """
import sys
from pathlib import Path
from ragbot.storage.files import serving
with serving(Path(sys.argv[1])):
    print("serving", flush=True)
    sys.stdin.read()
"""


def test_restore_refuses_while_a_chat_serves_the_data_dir(make_bot, docs, tmp_path):
    """A running chat has the database open: a restore must not move the data dir aside under it
    (its answers and votes would go there). Several chats may serve one data dir; once they end,
    even by kill -9, the restore goes ahead."""
    import subprocess
    import sys
    import threading

    from ragbot.storage.doctor import backup, restore
    from ragbot.storage.files import serving

    bot = make_bot()
    bot.ingest([docs / "paris.md"])
    data_dir = bot.settings.data_dir
    backup(data_dir, tmp_path / "copy")
    inode = os.stat(bot.settings.db_path).st_ino
    chat = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT, str(data_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert chat.stdout.readline().strip() == "serving"
        def second_chat():
            with serving(data_dir):
                pass

        second = threading.Thread(target=second_chat)  # a second chat on the same data dir: allowed
        second.start()
        second.join(10)
        assert not second.is_alive()
        with pytest.raises(BusyError, match="`ragbot chat` is serving .*stop it first"):
            restore(tmp_path / "copy", data_dir, replace=True)
        assert os.stat(bot.settings.db_path).st_ino == inode  # nothing moved
        assert not list(tmp_path.glob("*.before-restore-*"))
    finally:
        chat.kill()
        chat.wait(30)
    done = restore(tmp_path / "copy", data_dir, replace=True)
    assert done["moved_aside"] and os.stat(bot.settings.db_path).st_ino != inode


def test_a_chat_started_during_a_restore_waits_then_stops(make_bot, docs, tmp_path, monkeypatch):
    """The restore holds the serving lock from start to end: a chat that opened the data dir
    meanwhile waits for it, then finds its database replaced and stops instead of serving the
    one moved aside."""
    import threading

    import ragbot.interfaces.app as app
    from ragbot.interfaces import cli
    from ragbot.storage.doctor import backup, restore
    from ragbot.storage.files import not_served, serving

    bot = make_bot()
    bot.ingest([docs / "paris.md"])
    data_dir = bot.settings.data_dir
    backup(data_dir, tmp_path / "copy")
    started = []

    def chat_starts():
        with serving(data_dir) as held:
            started.append(held)

    with not_served(data_dir):  # as a restore holds it
        waiter = threading.Thread(target=chat_starts)
        waiter.start()
        waiter.join(1)
        assert waiter.is_alive() and not started  # waits for the restore
    waiter.join(10)
    assert started == [True]

    chat = make_bot(data_dir)  # opened the database, then a restore replaced it
    restore(tmp_path / "copy", data_dir, replace=True)
    monkeypatch.setattr(app, "serve", lambda bot, **kwargs: pytest.fail("served the database moved aside"))
    args = cli.build_parser().parse_args(["chat", "--data-dir", str(data_dir), "--no-default-corpus"])
    with pytest.raises(BusyError, match="was replaced since this process opened it"):
        cli.cmd_chat(chat, args)


def test_ragbot_chat_serves_when_the_warm_up_fails(make_bot, docs, monkeypatch, capsys):
    """A fault the warm-up meets (a damaged index, an adapter's bad metadata) is a warning: the
    page still serves documents, uploads and the log, and the question names the fault."""
    import ragbot.interfaces.app as app
    from ragbot.errors import RagbotError
    from ragbot.interfaces import cli

    bot = make_bot()
    bot.ingest([docs / "paris.md"])
    seen = []
    monkeypatch.setattr(app, "serve", lambda bot, **kwargs: seen.append(kwargs["port"]))

    def broken():
        raise RagbotError("the index is damaged")

    monkeypatch.setattr(bot, "warm_up", broken)
    args = cli.build_parser().parse_args(["chat", "--data-dir", str(bot.settings.data_dir), "--no-default-corpus"])
    assert cli.cmd_chat(bot, args) == 0 and seen
    assert "warning: the index is damaged" in capsys.readouterr().err


def test_ragbot_chat_serves_under_the_lock(make_bot, docs, monkeypatch):
    """`ragbot chat` holds the serving lock from before it loads models until the server stops."""
    import ragbot.interfaces.app as app
    from ragbot.interfaces import cli
    from ragbot.storage.files import not_served

    bot = make_bot()
    bot.ingest([docs / "paris.md"])
    seen = []

    def serve(bot, **kwargs):
        with pytest.raises(BusyError, match="is serving"):
            with not_served(bot.settings.data_dir):
                pass
        seen.append(kwargs["port"])

    monkeypatch.setattr(app, "serve", serve)
    args = cli.build_parser().parse_args(["chat", "--data-dir", str(bot.settings.data_dir), "--no-default-corpus"])
    assert cli.cmd_chat(bot, args) == 0 and seen
    with not_served(bot.settings.data_dir):  # released once the server stopped
        pass
