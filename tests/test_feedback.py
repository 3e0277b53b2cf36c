"""The answer log and feedback: traces, votes with history, stats, TRL-shaped exports,
and schema migrations. Answers here are built directly: the log does not depend on the model
(test_ask.py checks that real answers are recorded)."""

import json
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from ragbot.storage import store as store_module
from ragbot.answer.generation import REFUSAL
from ragbot.errors import RagbotError
from ragbot.learn.feedback import FeedbackLog, UnknownAnswerError
from ragbot.storage.store import Store
from ragbot.types import Answer, Citation, Passage


def _answer(question: str, text: str, prompt: str | None = None, adapter=None, refused=False) -> Answer:
    passages = [Passage(chunk_id=10 + i, source=f"/d/{i}.md", title="T", section="", page=None, text=f"p{i}",
                        score=0.9 - i / 10, rank=i + 1) for i in range(3)]
    return Answer(
        question=question, answer=text, refused=refused,
        citations=[] if refused else [Citation(n=2, source="/d/1.md", page=None, chunk_id=11, score=0.8, text="p1")],
        passages=passages, prompt=prompt if prompt is not None else f"<prompt for {question}>", raw_reply=text,
        model="SmolLM2-135M-Instruct", adapter=adapter, timings_ms={"retrieve": 5.0, "generate": 900.0},
        tokens={"prompt": 300, "completion": 20},
    )


@pytest.fixture
def log(tmp_path):
    store = Store(tmp_path / "ragbot.db")
    yield FeedbackLog(store)
    store.close()


def test_answers_are_recorded_with_their_trace(log):
    answer = _answer("What is a GAN?", "Two networks [2].")
    answer_id = log.record_answer(answer, conversation_id="c1", turn=3, retrieval_query="GAN definition",
                                  params={"temperature": 0.0})
    assert answer.id == answer_id
    trace = log.answer_trace(answer_id)
    assert trace["conversation_id"] == "c1" and trace["turn"] == 3
    assert trace["retrieval_query"] == "GAN definition"
    assert trace["prompt"] == "<prompt for What is a GAN?>"
    assert trace["params"] == {"temperature": 0.0} and trace["tokens"] == {"prompt": 300, "completion": 20}
    assert trace["index_generation"] == 0 and trace["adapter"] is None
    assert [(p["rank"], p["chunk_id"], p["cited"]) for p in trace["passages"]] == [(1, 10, False), (2, 11, True), (3, 12, False)]
    with pytest.raises(UnknownAnswerError):
        log.answer_trace("nope")


def test_votes_change_and_disappear_with_history_kept(log):
    answer_id = log.record_answer(_answer("q", "a"))
    assert log.set_feedback(answer_id, 1, user="ann").vote == 1
    assert log.set_feedback(answer_id, -1, comment="wrong year", user="ann").vote == -1
    assert log.feedback(answer_id).comment == "wrong year"
    assert log.set_feedback(answer_id, None, user="ann") is None
    assert log.feedback(answer_id) is None
    history = log.history(answer_id)
    assert [h["vote"] for h in history] == [1, -1, None]
    assert all(h["user"] == "ann" for h in history)
    with pytest.raises(UnknownAnswerError):
        log.set_feedback("missing", 1)
    with pytest.raises(RagbotError):
        log.set_feedback(answer_id, 5)


def test_stats_by_model_and_adapter(log):
    for vote, adapter in [(1, None), (1, None), (-1, None), (1, "v1"), (None, "v1")]:
        answer_id = log.record_answer(_answer("q", "a", adapter=adapter))
        if vote:
            log.set_feedback(answer_id, vote)
    stats = {r["adapter"]: r for r in log.stats()}
    assert (stats[None]["answers"], stats[None]["up"], stats[None]["down"]) == (3, 2, 1)
    assert stats[None]["up_rate"] == pytest.approx(2 / 3)
    assert (stats["v1"]["answers"], stats["v1"]["up"], stats["v1"]["up_rate"]) == (2, 1, 1.0)


def test_exports_have_trl_shapes(log, tmp_path):
    up = log.record_answer(_answer("When?", "In 2014 [1].", prompt="P1"))
    down = log.record_answer(_answer("When?", "In 1999 [1].", prompt="P1"))
    fixed = log.record_answer(_answer("Who?", "Nobody.", prompt="P2"))
    log.record_answer(_answer("Unvoted", "x", prompt="P3"))
    log.set_feedback(up, 1)
    log.set_feedback(down, -1)
    log.set_feedback(fixed, -1, correction="Ian Goodfellow [1].")

    def rows(fmt):
        path = tmp_path / f"{fmt}.jsonl"
        n = log.export(fmt, path)
        data = [json.loads(line) for line in path.open()]
        assert len(data) == n
        return data

    sft = rows("sft")
    assert sft == [{"prompt": "P1", "completion": "In 2014 [1]."}, {"prompt": "P2", "completion": "Ian Goodfellow [1]."}]
    kto = rows("kto")
    assert all(set(r) == {"prompt", "completion", "label"} and isinstance(r["label"], bool) for r in kto)
    assert {(r["completion"], r["label"]) for r in kto} == {
        ("In 2014 [1].", True), ("In 1999 [1].", False), ("Nobody.", False), ("Ian Goodfellow [1].", True)}
    dpo = rows("dpo")
    assert all(set(r) == {"prompt", "chosen", "rejected"} for r in dpo)
    assert {(r["prompt"], r["chosen"], r["rejected"]) for r in dpo} == {
        ("P2", "Ian Goodfellow [1].", "Nobody."), ("P1", "In 2014 [1].", "In 1999 [1].")}
    with pytest.raises(RagbotError, match="unknown export format"):
        log.export("csv", tmp_path / "x.jsonl")


def test_refusals_made_without_the_model_are_not_exported(log, tmp_path):
    answer_id = log.record_answer(_answer("Off topic?", "I don't know", prompt="", refused=True))
    log.set_feedback(answer_id, 1)
    assert log.export("kto", tmp_path / "k.jsonl") == 0
    quoted = log.record_answer(_answer("What is a GAN?", "Two networks [1].", prompt=""))  # extract mode
    log.set_feedback(quoted, -1, correction="A generator and a discriminator [1].")
    written = log.record_answer(_answer("What is a VAE?", "An autoencoder [1]."))
    log.set_feedback(written, 1)
    assert log.export("sft", tmp_path / "s.jsonl") == 1
    assert log.votes_on_quotes() == 2  # what `ragbot feedback export` says it left out, and why


def test_votes_become_answerability_labels(log):
    """Which votes say the passages shown held the answer, and which say they did not."""
    def answered(question, vote=None, correction=None, refused=False, reason=None, shown=2):
        answer = _answer(question, "I don't know." if refused else "Two networks [2].", refused=refused)
        answer.refusal_reason = reason
        answer_id = log.record_answer(answer, retrieval_query=f"query: {question}", params={"prompt_passages": shown})
        log.set_feedback(answer_id, vote, correction=correction)
        return answer_id

    answered("liked answer", vote=1)
    answered("disliked answer", vote=-1)  # may just be wrong: no label
    answered("answer corrected to the refusal", correction=REFUSAL)
    answered("answer corrected in other words", correction="I don't know.")  # read as an answer: no label
    answered("disliked refusal", vote=-1, refused=True, reason="no_evidence", shown=3)
    answered("refusal corrected to an answer", correction="GANs came in 2014 [1].", refused=True, reason="no_evidence")
    answered("liked refusal", vote=1, refused=True, reason="no_evidence")
    answered("refused on retrieval", vote=-1, refused=True, reason="low_retrieval_score")  # not the check's call
    labels = {row["question"]: row for row in log.answerability_labels()}
    assert {q: row["answerable"] for q, row in labels.items()} == {
        "query: liked answer": True, "query: answer corrected to the refusal": False,
        "query: disliked refusal": True, "query: refusal corrected to an answer": True, "query: liked refusal": False,
    }
    # The passages shown in the prompt, in order: the first `prompt_passages` of those retrieved.
    assert labels["query: liked answer"]["chunk_ids"] == [10, 11]
    assert labels["query: disliked refusal"]["chunk_ids"] == [10, 11, 12]
    # The gate's replay cases carry the same, for the check to read.
    case = next(c for c in log.voted_answers() if c["question"] == "query: liked answer")
    assert case["chunk_ids"] == [10, 11] and case["vote"] == 1


def test_database_survives_a_schema_upgrade(tmp_path, monkeypatch):
    path = tmp_path / "ragbot.db"
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
    old = Store(path)
    assert old.schema_version() == 1
    old.set_meta("embedder", "all-MiniLM-L6-v2")
    old.close()
    monkeypatch.undo()
    upgraded = Store(path)
    assert upgraded.schema_version() == len(store_module.MIGRATIONS)
    assert upgraded.meta("embedder") == "all-MiniLM-L6-v2"
    FeedbackLog(upgraded).record_answer(_answer("q", "a"))
    upgraded.close()
    versions = [r[0] for r in sqlite3.connect(path).execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, len(store_module.MIGRATIONS) + 1))


def test_an_answer_logged_before_search_ranks_reads_none(tmp_path, monkeypatch):
    """Schema 5 added answer_passages.search_rank: a passage logged before it has none."""
    path = tmp_path / "ragbot.db"
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:4])
    old = Store(path)
    answer_id = "logged-by-schema-4"  # as that ragbot wrote it: no search_rank column
    old._db.execute("INSERT INTO answers(id, conversation_id, turn, question, retrieval_query, prompt, answer, raw_reply, "
                    "refused, refusal_reason, model, adapter, index_generation, params, timings, tokens, created_at) "
                    "VALUES (?, 'c', 0, 'q', 'q', '', 'a', '', 0, NULL, 'm', NULL, 0, '{}', '{}', '{}', 0)", (answer_id,))
    old._db.executemany("INSERT INTO answer_passages(answer_id, rank, chunk_id, score, cited) VALUES (?, ?, ?, 0.5, 0)",
                        [(answer_id, n, 10 + n) for n in (1, 2, 3)])
    old.close()
    monkeypatch.undo()
    upgraded = Store(path)
    log = FeedbackLog(upgraded)
    assert [p["search_rank"] for p in log.answer_trace(answer_id)["passages"]] == [None, None, None]
    later = _answer("q2", "a")
    later.passages = [replace(p, search_rank=3 - i) for i, p in enumerate(later.passages)]
    assert [p["search_rank"] for p in log.answer_trace(log.record_answer(later))["passages"]] == [3, 2, 1]
    upgraded.close()


def test_a_newer_database_is_refused(tmp_path):
    store = Store(tmp_path / "ragbot.db")
    store._db.execute("INSERT INTO schema_migrations(version, applied_at) VALUES (99, 0)")
    store.close()
    with pytest.raises(RagbotError, match="newer ragbot"):
        Store(tmp_path / "ragbot.db")


def test_a_database_lacking_what_its_migrations_made_gets_no_further_migration(tmp_path):
    """Refused before the pending migrations run: one touching what is missing would fail with a
    bare SQL error, and those applied would be recorded on a database that is then refused."""
    import sqlite3

    Store(tmp_path / "ragbot.db").close()
    with sqlite3.connect(tmp_path / "ragbot.db") as db:
        db.executescript("DROP TABLE ranking_vectors; DROP TABLE copies; DELETE FROM schema_migrations WHERE version = 7;")
    with pytest.raises(RagbotError, match=r"lacks ranking_vectors \(migration 4\)"):
        Store(tmp_path / "ragbot.db")
    with sqlite3.connect(tmp_path / "ragbot.db") as db:
        assert db.execute("SELECT MAX(version) FROM schema_migrations").fetchone() == (6,)
        assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'copies'").fetchone() == (0,)


def test_many_threads_record_and_vote_at_once(log):
    """The chat UI answers people on worker threads; each thread's writes must not collide."""
    from concurrent.futures import ThreadPoolExecutor

    def work(i: int) -> str:
        answer_id = log.record_answer(_answer(f"q{i}", "a"))
        log.set_feedback(answer_id, 1 if i % 2 else -1, comment=f"c{i}")
        return answer_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(work, range(80)))
    assert len(set(ids)) == 80
    assert all(log.feedback(answer_id).comment == f"c{i}" for i, answer_id in enumerate(ids))
    stats = log.stats()[0]
    assert (stats["answers"], stats["up"], stats["down"]) == (80, 40, 40)


_OPENER = r"""
import sys, time
from pathlib import Path
from ragbot.storage.store import Store
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
print(Store(Path(sys.argv[1])).schema_version())
"""


def test_processes_opening_one_new_database_at_once_all_get_it(tmp_path):
    """Two `ragbot ingest` started together on a new data dir both create its database: each
    must wait for the other's schema, never fail on 'database is locked' or apply a migration
    twice (CI's racing drill died on one of these; a local rerun met the other)."""
    for round_ in range(4):
        path = tmp_path / f"round{round_}" / "ragbot.db"
        start = time.time() + 2.0  # the processes import first, then open together
        procs = [subprocess.Popen([sys.executable, "-c", _OPENER, str(path), str(start)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(6)]
        outputs = [p.communicate(timeout=120)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), outputs
        assert all(out.split() == [str(len(store_module.MIGRATIONS))] for out in outputs), outputs
        versions = [r[0] for r in sqlite3.connect(path).execute("SELECT version FROM schema_migrations")]
        assert sorted(versions) == list(range(1, len(store_module.MIGRATIONS) + 1))


def test_a_vote_from_the_command_line_keeps_what_was_written_with_the_answer(tmp_path, capsys):
    """`feedback vote ID up` erased the comment and correction saved with the answer (the chat's
    thumbs keep them); now only --comment / --correction, given even empty, replace them."""
    from ragbot import RagBot
    from ragbot.interfaces.cli import main

    bot = RagBot.open(tmp_path / "data")
    answer_id = bot.feedback.record_answer(_answer("When were GANs introduced?", "In 2015 [2]."))
    bot.close()
    data = ["--data-dir", str(tmp_path / "data")]

    def vote(*args: str) -> str:
        assert main(["feedback", "vote", answer_id, *args, *data]) == 0
        return capsys.readouterr().out.strip()

    assert vote("down", "--comment", "wrong year", "--correction", "GANs date from 2014 [2].") == f"{answer_id}: vote down"
    said = vote("up")
    assert said == f'{answer_id}: vote up; kept: its comment and correction (--comment "" or --correction "" removes one)'
    bot = RagBot.open(tmp_path / "data")
    saved = bot.feedback.feedback(answer_id)
    assert (saved.vote, saved.comment, saved.correction) == (1, "wrong year", "GANs date from 2014 [2].")
    bot.close()
    assert vote("none", "--comment", "") == f'{answer_id}: vote none; kept: its correction (--correction "" removes it)'
    assert vote("none", "--correction", "") == f"{answer_id}: no feedback"
    bot = RagBot.open(tmp_path / "data")
    assert bot.feedback.feedback(answer_id) is None
    assert [(h["vote"], h["correction"]) for h in bot.feedback.history(answer_id)] == [
        (-1, "GANs date from 2014 [2]."), (1, "GANs date from 2014 [2]."), (None, "GANs date from 2014 [2]."), (None, None)]
    bot.close()
