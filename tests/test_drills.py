"""kill -9 at random moments while state changes: afterwards the data dir checks clean (doctor),
search works, the interrupted command completes when run again, and no vote a client was told
was saved is lost. RAGBOT_DRILL_ROUNDS sets the rounds per drill (default 4; docs/reliability.md
reports a 20-round run). Every drill here is marked `drill`, so `make test` leaves them out (they
take 15 s to minutes each): `make drills` runs them all with 20 rounds, and CI runs it after the
tests."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import CORPUS, ROOT, copy_data_dir
from ragbot import RagBot
from ragbot.storage.doctor import doctor
from ragbot.storage.files import state_lock

ROUNDS = int(os.environ.get("RAGBOT_DRILL_ROUNDS", "4"))

# Votes on ten answers, pass after pass, so the kill lands among writes; each is acknowledged
# (as the chat acknowledges a vote) only after its commit.
VOTER = r"""
import sys
from ragbot import RagBot
bot = RagBot.open(sys.argv[1])
for n in range(100000):
    for answer_id in sys.argv[2:]:
        bot.feedback.set_feedback(answer_id, 1 if n % 2 else -1, comment=f"pass {n}", user="drill")
        print("ack", answer_id, n, "end", flush=True)
"""

# Removes and re-ingests one document over and over, so the kill lands inside one or the other.
REMOVER = r"""
import sys
from ragbot import RagBot
bot = RagBot.open(sys.argv[1])
for n in range(1000):
    bot.remove([sys.argv[2]])
    bot.ingest([sys.argv[2]])
    print("cycle", n, flush=True)
"""


def _run_and_kill(code: str, args: list[str], delay: float) -> list[str]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    return out.splitlines()


def _assert_usable(bot_factory, data_dir):
    report = doctor(data_dir)
    assert report.clean, report.lines()
    bot = bot_factory(data_dir)
    assert bot.search("Mount Etna", k=1)
    return bot


@pytest.mark.drill
def test_kill_while_votes_are_written_loses_no_acknowledged_vote(make_bot, docs):
    bot = make_bot()
    bot.ingest([docs])
    rng = random.Random(0)
    writes = 0
    for round_ in range(ROUNDS):
        ids = [bot.ask(f"Where is the Eiffel Tower? ({round_}.{i})").id for i in range(10)]
        last: dict[str, int] = {}
        for line in _run_and_kill(VOTER, [str(bot.settings.data_dir), *ids], rng.uniform(2.0, 5.0)):
            parts = line.split()
            if len(parts) == 4 and parts[0] == "ack" and parts[3] == "end":  # a line cut by the kill is no ack
                last[parts[1]] = int(parts[2])
        writes += sum(n + 1 for n in last.values())
        for answer_id, n in last.items():
            saved = bot.feedback.feedback(answer_id)
            # The last acknowledged vote, or the one after it (committed, killed before the ack).
            assert saved is not None and saved.comment in (f"pass {n}", f"pass {n + 1}"), (saved, n)
            assert saved.vote == (1 if int(saved.comment.split()[1]) % 2 else -1)
        _assert_usable(make_bot, bot.settings.data_dir)
    assert writes > 10 * ROUNDS  # the kills landed among the writes, not before them


@pytest.mark.drill
def test_kill_during_remove_then_remove_again(make_bot, docs, tmp_path):
    rng = random.Random(1)
    for round_ in range(ROUNDS):
        bot = make_bot(tmp_path / f"remove-{round_}")
        bot.ingest([docs])
        target = str(docs / "bananas.txt")
        _run_and_kill(REMOVER, [str(bot.settings.data_dir), target], rng.uniform(4.0, 9.0))
        again = _assert_usable(make_bot, bot.settings.data_dir)
        again.remove([target])  # completes, whether the killed one did or not
        assert all(not p.source.endswith("bananas.txt") for p in again.search("yellow tropical fruit", k=5))
        assert doctor(bot.settings.data_dir).clean


# Saves a tiny adapter as the next version and activates it, again and again: what `ragbot tune`
# and `ragbot model activate` do to the registry, many times while ingests run.
SAVER = r"""
import sys, tempfile
from pathlib import Path
import numpy as np
from safetensors.numpy import save_file
from ragbot.learn.registry import AdapterRegistry
registry = AdapterRegistry(Path(sys.argv[1]) / "adapters")
with tempfile.TemporaryDirectory() as tmp:
    save_file({"w": np.zeros(4, dtype=np.float32)}, f"{tmp}/adapter_model.safetensors")
    for n in range(int(sys.argv[3])):
        info = registry.save(Path(tmp), {"base_model": "drill", "saver": sys.argv[2]})
        registry.activate(info.version)
        print(info.version, flush=True)
"""


def _ragbot(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ragbot", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.drill
def test_two_ingests_racing_adapter_saves_and_activations(make_bot, tmp_path):
    """Two `ragbot ingest` on one new data dir (both made to wait for the write lock, and told
    who holds it), two processes saving and activating adapters, and `ragbot model activate`
    from the CLI, all at once: every document is stored once, no two adapters share a number,
    and the state is one the registry can read."""
    from ragbot.learn.registry import AdapterRegistry

    files = sorted(CORPUS.glob("*"))
    halves = [tmp_path / "first", tmp_path / "second"]
    for n, folder in enumerate(halves):
        folder.mkdir()
        for path in files[n::2]:
            (folder / path.name).write_bytes(path.read_bytes())
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    per_saver = 6
    said: list[list[str]] = [[], []]
    # The drill holds the write lock until both ingests wait for it, so they do meet.
    with state_lock(data_dir / "write.lock", "the drill"):
        ingests = [_ragbot("ingest", str(folder), "--data-dir", str(data_dir)) for folder in halves]
        readers = [threading.Thread(target=lambda p=p, out=out: out.extend(p.stdout), daemon=True)
                   for p, out in zip(ingests, said)]
        for reader in readers:
            reader.start()
        savers = [subprocess.Popen([sys.executable, "-c", SAVER, str(data_dir), name, str(per_saver)], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for name in ("a", "b")]
        registry = AdapterRegistry(data_dir / "adapters")
        deadline = time.time() + 180
        while time.time() < deadline and not all(any("waiting for the data dir" in line for line in out)
                                                  for out in said):
            time.sleep(0.2)
        assert all(any("waiting for the data dir" in line for line in out) for out in said), said
        while len(registry.versions()) < 2 and time.time() < deadline:
            time.sleep(0.2)
        activations = [_ragbot("model", "activate", version, "--data-dir", str(data_dir))
                       for version in ("v1", "v2", "none")]  # while the savers still run
    for proc, reader in zip(ingests, readers):
        proc.wait(timeout=300)
        reader.join(timeout=60)
    outputs = ["".join(out) for out in said] + [p.communicate(timeout=300)[0] for p in savers + activations]
    assert all(p.returncode == 0 for p in ingests + savers + activations), outputs

    saved = [out.split() for out in outputs[2:4]]
    numbers = [v for vs in saved for v in vs]
    assert len(numbers) == 2 * per_saver and len(set(numbers)) == len(numbers)  # never one number twice
    versions = registry.versions()
    assert sorted(v.version for v in versions) == sorted(numbers)
    assert all(v.metadata["version"] == v.version for v in versions)
    state = registry.state()
    assert state["active"] is None or state["active"] in numbers
    assert all(h is None or h in numbers for h in state["history"])

    bot = _assert_usable(make_bot, data_dir)
    assert sorted(Path(d.source).name for d in bot.store.documents()) == sorted(p.name for p in files)
    assert len({d.source for d in bot.store.documents()}) == len(files)


# Run inside a mount namespace of its own, where a small tmpfs holds the data dir: ingest the
# corpus, fill the disk up to a little room, ingest more, then look at what is left.
SMALL_DISK = r"""
set -u
mount -t tmpfs -o size=20m ragbot-drill "$DISK" || exit 99
ragbot() { "$PY" -m ragbot "$@" --data-dir "$DISK/data"; }
ragbot ingest "$CORPUS" -q > "$OUT/first.out" 2>&1; echo $? > "$OUT/first.rc"
"$PY" -c "import os, sys; v = os.statvfs(sys.argv[1]); room = v.f_bavail * v.f_frsize
open(sys.argv[1] + '/ballast', 'wb').write(b'x' * max(0, room - 256 * 1024))" "$DISK"
ragbot ingest "$MORE" -q > "$OUT/full.out" 2>&1; echo $? > "$OUT/full.rc"
ragbot search "What is a diffusion model?" -k 1 > "$OUT/search.out" 2>&1; echo $? > "$OUT/search.rc"
"$PY" -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])" \
    "$DISK/data/ragbot.db" > "$OUT/integrity.out" 2>&1
rm "$DISK/ballast"
ragbot ingest "$MORE" -q > "$OUT/again.out" 2>&1; echo $? > "$OUT/again.rc"
ragbot doctor > "$OUT/doctor.out" 2>&1; echo $? > "$OUT/doctor.rc"
"""


def _in_own_mount_namespace() -> list[str] | None:
    """The unshare command that gives a shell its own mounts (root, or an unprivileged user
    namespace), or None where this machine allows neither."""
    import shutil

    if shutil.which("unshare") is None:
        return None
    for cmd in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        if subprocess.run([*cmd, "true"], capture_output=True).returncode == 0:
            return cmd
    return None


@pytest.mark.drill
def test_a_data_dir_on_a_small_tmpfs_that_fills_up(tmp_path):
    """A real 20 MB tmpfs (not an injected error): the ingest that meets the full disk fails with
    one clear line, the previous state stays searchable and intact, and once there is room the
    same ingest completes and doctor is clean."""
    unshare = _in_own_mount_namespace()
    if unshare is None:
        pytest.skip("this machine allows no mount namespace (unshare), so no tmpfs can be mounted")
    more = tmp_path / "more"
    more.mkdir()
    rng = random.Random(2)
    words = " ".join((CORPUS / "transformers.md").read_text().split()).split(" ")
    for n in range(3):  # text unlike the corpus's files, about 600 chunks in all
        paragraphs = ["\n".join(" ".join(rng.choice(words) for _ in range(60)) + "." for _ in range(4))
                      for _ in range(100)]
        (more / f"notes-{n}.txt").write_text("\n\n".join(paragraphs))
    out, disk = tmp_path / "out", tmp_path / "disk"
    out.mkdir()
    disk.mkdir()
    env = {**os.environ, "PY": sys.executable, "DISK": str(disk), "CORPUS": str(CORPUS), "MORE": str(more),
           "OUT": str(out)}
    done = subprocess.run([*unshare, "bash", "-c", SMALL_DISK], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode == 99:
        pytest.skip(f"no tmpfs could be mounted here: {done.stderr.strip()[:200]}")

    def said(name: str) -> str:
        return (out / name).read_text()

    assert said("first.rc").strip() == "0", said("first.out")
    assert said("full.rc").strip() != "0"
    full = said("full.out")
    assert "Traceback" not in full and "no space left on the device" in full, full
    assert len(full.strip().splitlines()) == 1
    assert "what was stored before is kept" in full
    assert said("search.rc").strip() == "0" and "diffusion" in said("search.out").lower(), said("search.out")
    assert said("integrity.out").strip() == "ok"
    assert said("again.rc").strip() == "0", said("again.out")
    assert "added 3" in said("again.out")
    assert said("doctor.rc").strip() == "0", said("doctor.out")


TUNE = ["--max-steps", "2", "--model-questions", "2", "--preference", "kto", "--gate-questions", "3",
        "--gate-max-new-tokens", "16", "--save-steps", "1", "--seed", "1"]


@pytest.mark.drill
def test_kill_during_tune_at_random_moments(corpus_bot, embedder, tmp_path):
    """`ragbot tune` killed at a random moment of its ~90 s (loading, building data, before and
    after its checkpoints, saving, gating), round after round, each round resuming what the last
    left: afterwards doctor is clean, search works, the registry reads, and a last run completes."""
    from ragbot.learn.registry import AdapterRegistry

    data_dir = copy_data_dir(corpus_bot, tmp_path / "data")
    registry = AdapterRegistry(data_dir / "adapters")
    rng = random.Random(3)
    moments = []
    for _ in range(ROUNDS):
        proc = _ragbot("tune", "--data-dir", str(data_dir), *TUNE)
        delay = rng.uniform(1.0, 90.0)
        try:
            proc.communicate(timeout=delay)
            moments.append(f"{delay:.0f}s: finished first")
        except subprocess.TimeoutExpired:
            runs = sorted((data_dir / "tune").glob("*/"), key=lambda p: p.stat().st_mtime)
            checkpoints = sorted("/".join(p.parts[-2:]) for p in runs[-1].glob("*/checkpoint-*")) if runs else []
            proc.kill()
            proc.communicate(timeout=60)
            moments.append(f"{delay:.0f}s: killed; newest run's checkpoints: {', '.join(checkpoints) or 'none'}")
        report = doctor(data_dir)
        assert report.clean, (moments, report.lines())
        state = registry.state()
        versions = [v.version for v in registry.versions()]
        assert all(v.metadata["version"] == v.version for v in registry.versions())
        assert state["active"] is None or state["active"] in versions
        bot = RagBot.open(data_dir)
        bot._embedder = embedder
        assert bot.search("What is a diffusion model?", k=1)
        bot.close()
    print("\n".join(moments))
    last = _ragbot("tune", "--data-dir", str(data_dir), *TUNE)
    out = last.communicate(timeout=900)[0]
    assert last.returncode == 0, out[-3000:]
    assert f"adapter v{len(registry.versions())}: saved" in out
    assert doctor(data_dir).clean
