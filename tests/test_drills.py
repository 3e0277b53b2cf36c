"""kill -9 at random moments while state changes: afterwards the data dir checks clean (doctor),
search works, the interrupted command completes when run again, and no vote a client was told
was saved is lost. RAGBOT_DRILL_ROUNDS sets the rounds per drill (default 4; docs/reliability.md
reports a 20-round run)."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


from conftest import CORPUS, ROOT
from ragbot.doctor import doctor

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
from ragbot.registry import AdapterRegistry
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


def test_two_ingests_racing_adapter_saves_and_activations(make_bot, tmp_path):
    """Two `ragbot ingest` on one new data dir, two processes saving and activating adapters, and
    `ragbot model activate` from the CLI, all at once: every document is stored once, no two
    adapters share a number, and the state is one the registry can read."""
    from ragbot.registry import AdapterRegistry

    files = sorted(CORPUS.glob("*"))
    halves = [tmp_path / "first", tmp_path / "second"]
    for n, folder in enumerate(halves):
        folder.mkdir()
        for path in files[n::2]:
            (folder / path.name).write_bytes(path.read_bytes())
    data_dir = tmp_path / "data"
    per_saver = 6
    procs = [_ragbot("ingest", str(folder), "--data-dir", str(data_dir)) for folder in halves]
    procs += [subprocess.Popen([sys.executable, "-c", SAVER, str(data_dir), name, str(per_saver)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for name in ("a", "b")]
    registry = AdapterRegistry(data_dir / "adapters")
    activations = []
    deadline = time.time() + 120
    while len(registry.versions()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    for version in ("v1", "v2", "none"):  # while the savers and ingests still run
        activations.append(_ragbot("model", "activate", version, "--data-dir", str(data_dir)))
    outputs = [p.communicate(timeout=300)[0] for p in procs + activations]
    assert all(p.returncode == 0 for p in procs + activations), outputs

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
