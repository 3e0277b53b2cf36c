"""The answer log and user feedback, in the data dir's SQLite database.

Every answer is recorded with the full trace of how it was made (question, retrieval query,
passages with scores, the exact prompt, model, adapter, index generation, generation parameters,
timings). A passage's number (`answer_passages.rank`) is the [n] the user saw: the search's order,
except that an extracted answer's cited passages come first (generation.cited_first); its place in
the search's order is kept too (`search_rank`). Votes, comments and corrections point at an
answer by its id; the current state is in `feedback`, every change is appended to
`feedback_history`. Exports produce the dataset shapes TRL trainers take.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragbot.answer.generation import cited_numbers, is_refusal, marked_numbers
from ragbot.errors import RagbotError
from ragbot.storage.files import atomic_file
from ragbot.storage.store import Store
from ragbot.types import Answer

if TYPE_CHECKING:
    from ragbot.answer.corrections import Correction

EXPORT_FORMATS = ("sft", "kto", "dpo")


class UnknownAnswerError(RagbotError):
    pass


@dataclass
class Feedback:
    answer_id: str
    vote: int | None  # +1, -1, or None (no vote)
    comment: str | None
    correction: str | None
    user: str | None
    updated_at: float


class FeedbackLog:
    def __init__(self, store: Store):
        self.store = store

    @property
    def _db(self):
        return self.store._db  # this thread's connection

    # -- answers ----------------------------------------------------------------------------

    def record_answer(
        self,
        answer: Answer,
        conversation_id: str | None = None,
        turn: int = 0,
        retrieval_query: str | None = None,
        params: dict | None = None,
    ) -> str:
        """Store `answer` with its trace; returns its id (also set on answer.id)."""
        answer_id = uuid.uuid4().hex
        cited = {c.n for c in answer.citations}
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO answers(id, conversation_id, turn, question, retrieval_query, prompt, answer, raw_reply, "
                "refused, refusal_reason, model, adapter, index_generation, params, timings, tokens, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (answer_id, conversation_id or uuid.uuid4().hex, turn, answer.question,
                 retrieval_query or answer.question, answer.prompt, answer.answer, answer.raw_reply,
                 int(answer.refused), answer.refusal_reason, answer.model, answer.adapter,
                 self.store.generation(), json.dumps(params or {}), json.dumps(answer.timings_ms),
                 json.dumps(answer.tokens), time.time()),
            )
            db.executemany(
                "INSERT INTO answer_passages(answer_id, rank, chunk_id, score, cited, search_rank) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(answer_id, p.rank, p.chunk_id, p.score, int(p.rank in cited), p.search_rank) for p in answer.passages],
            )
        answer.id = answer_id
        return answer_id

    def answer_trace(self, answer_id: str) -> dict:
        row = self._db.execute("SELECT * FROM answers WHERE id = ?", (answer_id,)).fetchone()
        if row is None:
            raise UnknownAnswerError(f"no answer with id {answer_id!r}")
        names = [d[0] for d in self._db.execute("SELECT * FROM answers LIMIT 0").description]
        trace = dict(zip(names, row))
        for key in ("params", "timings", "tokens"):
            trace[key] = json.loads(trace[key])
        trace["refused"] = bool(trace["refused"])
        trace["passages"] = [
            {"rank": r, "chunk_id": c, "score": s, "cited": bool(k), "search_rank": f}
            for r, c, s, k, f in self._db.execute(
                "SELECT rank, chunk_id, score, cited, search_rank FROM answer_passages WHERE answer_id = ? ORDER BY rank",
                (answer_id,),
            )
        ]
        return trace

    # -- feedback ---------------------------------------------------------------------------

    def set_feedback(
        self,
        answer_id: str,
        vote: int | None,
        comment: str | None = None,
        correction: str | None = None,
        user: str | None = None,
    ) -> Feedback | None:
        """Set the vote (+1, -1, or None to remove it) and optional comment / corrected answer.

        Returns the current feedback, or None when nothing remains (vote removed, no text).
        """
        if vote not in (1, -1, None):
            raise RagbotError(f"a vote is +1, -1 or none (got {vote!r})")
        comment = (comment or "").strip() or None
        correction = (correction or "").strip() or None
        now = time.time()
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM answers WHERE id = ?", (answer_id,)).fetchone() is None:
                raise UnknownAnswerError(f"no answer with id {answer_id!r}")
            db.execute(
                "INSERT INTO feedback_history(answer_id, vote, comment, correction, user, at) VALUES (?, ?, ?, ?, ?, ?)",
                (answer_id, vote, comment, correction, user, now),
            )
            if vote is None and not comment and not correction:
                db.execute("DELETE FROM feedback WHERE answer_id = ?", (answer_id,))
                return None
            db.execute(
                "INSERT INTO feedback(answer_id, vote, comment, correction, user, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(answer_id) DO UPDATE SET vote = excluded.vote, comment = excluded.comment, "
                "correction = excluded.correction, user = excluded.user, updated_at = excluded.updated_at",
                (answer_id, vote, comment, correction, user, now),
            )
        return self.feedback(answer_id)

    def feedback(self, answer_id: str) -> Feedback | None:
        row = self._db.execute(
            "SELECT answer_id, vote, comment, correction, user, updated_at FROM feedback WHERE answer_id = ?",
            (answer_id,),
        ).fetchone()
        return Feedback(*row) if row else None

    def history(self, answer_id: str) -> list[dict]:
        rows = self._db.execute(
            "SELECT vote, comment, correction, user, at FROM feedback_history WHERE answer_id = ? ORDER BY id",
            (answer_id,),
        ).fetchall()
        return [dict(zip(("vote", "comment", "correction", "user", "at"), r)) for r in rows]

    def questions_after(self, rowid: int) -> list[tuple[int, str]]:
        """(rowid, question) of the answers logged after `rowid`, oldest first: the questions as
        the user typed them (a follow-up's turn, not the query it was searched with)."""
        return self._db.execute("SELECT rowid, question FROM answers WHERE rowid > ? ORDER BY rowid",
                                (rowid,)).fetchall()

    def question_sample(self, size: int, leaving_out: Sequence[str] = ()) -> list[str]:
        """About `size` distinct questions as typed, spread evenly over the whole log (the first
        answer at or after each of `size` evenly spaced row ids: the same sample for the same
        log, read with `size` index lookups however long it is), oldest first, without those of
        `leaving_out`. Fewer when questions repeat, or where row ids have gaps (answers are
        never deleted today)."""
        low, high = self._db.execute("SELECT MIN(rowid), MAX(rowid) FROM answers").fetchone()
        if low is None:
            return []
        step = max((high - low + 1) / size, 1.0)
        found: dict[str, None] = {}
        for n in range(size):
            row = self._db.execute("SELECT question FROM answers WHERE rowid >= ? ORDER BY rowid LIMIT 1",
                                   (low + int(n * step),)).fetchone()
            if row is None:
                break
            if row[0] not in leaving_out:
                found[row[0]] = None
        return list(found)

    def distinct_questions(self) -> int:
        """How many different questions the log holds, as typed."""
        return self._db.execute("SELECT COUNT(DISTINCT question) FROM answers").fetchone()[0]

    def questions_logged(self) -> int:
        """How many answers (and so questions) the log holds."""
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def stats(self) -> list[dict]:
        """Answers, votes and the thumbs-up rate per (model, adapter)."""
        rows = self._db.execute(
            "SELECT a.model, a.adapter, COUNT(*), "
            "SUM(f.vote = 1), SUM(f.vote = -1), SUM(f.correction IS NOT NULL), SUM(a.refused) "
            "FROM answers a LEFT JOIN feedback f ON f.answer_id = a.id GROUP BY a.model, a.adapter "
            "ORDER BY a.model, a.adapter"
        ).fetchall()
        out = []
        for model, adapter, n, up, down, corrections, refused in rows:
            up, down = up or 0, down or 0
            out.append({
                "model": model, "adapter": adapter, "answers": n, "up": up, "down": down,
                "corrections": corrections or 0, "refused": refused or 0,
                "up_rate": up / (up + down) if up + down else None,
            })
        return out

    # -- exports in TRL's dataset shapes ----------------------------------------------------

    def _voted(self) -> list[tuple]:
        return self._db.execute(
            "SELECT a.id, a.prompt, a.answer, f.vote, f.correction FROM feedback f "
            "JOIN answers a ON a.id = f.answer_id WHERE a.prompt != '' ORDER BY a.created_at, a.id"
        ).fetchall()

    def voted_answers(self) -> list[dict]:
        """Answers with a vote or a correction, refusals on retrieval alone left out: the tuning
        gate's regression set. With each, the retrieval query and the chunks it was answered from."""
        rows = self._db.execute(
            "SELECT a.id, a.prompt, a.answer, f.vote, f.correction, a.retrieval_query, a.params FROM feedback f "
            "JOIN answers a ON a.id = f.answer_id WHERE COALESCE(a.refusal_reason, '') != 'low_retrieval_score' "
            "ORDER BY a.created_at, a.id").fetchall()
        return [{"answer_id": i, "prompt": p, "answer": a, "vote": v, "correction": c, "question": query,
                 "chunk_ids": self._shown_chunk_ids(i, params)} for i, p, a, v, c, query, params in rows]

    def liked_passages(self) -> list[dict]:
        """Answers with a thumbs-up and no correction, with the chunks each cited (a refusal cites none):
        what search should find for that question (`ragbot eval retrieval --feedback`). Each
        with its retrieval query (a follow-up's standalone question) and the cited chunk ids in
        rank order, oldest answer first."""
        rows = self._db.execute(
            "SELECT a.id, a.retrieval_query, p.chunk_id FROM feedback f JOIN answers a ON a.id = f.answer_id "
            "JOIN answer_passages p ON p.answer_id = a.id WHERE f.vote = 1 AND f.correction IS NULL "
            "AND p.cited = 1 ORDER BY a.created_at, a.id, p.rank").fetchall()
        liked: dict[str, dict] = {}
        for answer_id, question, chunk_id in rows:
            liked.setdefault(answer_id, {"answer_id": answer_id, "question": question, "chunk_ids": []})
            liked[answer_id]["chunk_ids"].append(chunk_id)
        return list(liked.values())

    def corrected_passages(self) -> list[dict]:
        """Corrections that cite passages of the answer they correct ("In 2014 [2]."), with the
        chunks cited, as `liked_passages` gives them: the user's own word on which passage
        answers that question. [n] is the answer's n-th passage, as the chat numbered them."""
        rows = self._db.execute(
            "SELECT a.id, a.retrieval_query, f.correction FROM feedback f JOIN answers a ON a.id = f.answer_id "
            "WHERE f.correction IS NOT NULL ORDER BY a.created_at, a.id").fetchall()
        found = []
        for answer_id, question, correction in rows:
            cited, _ = self.passages_cited(answer_id, correction)
            if cited:
                found.append({"answer_id": answer_id, "question": question, "chunk_ids": cited})
        return found

    def passages_cited(self, answer_id: str, text: str) -> tuple[list[int], list[int]]:
        """The chunks that the [n] marks of `text` name among the passages answer `answer_id`
        showed ([n] is its n-th passage, as the chat numbered them), and the numbers that name
        none of them."""
        named = self.cited_chunks(answer_id, text)
        # [0] too: it names no passage either (it was dropped without a word).
        return [c for c, _ in named.values()], [n for n in marked_numbers(text) if n not in named]

    def cited_chunks(self, answer_id: str, text: str) -> dict[int, tuple[int, float]]:
        """For each [n] of `text` that names a passage answer `answer_id` showed: that passage's
        chunk id and the score it was shown with, in first-cited order."""
        shown = {rank: (chunk_id, score) for rank, chunk_id, score in self._db.execute(
            "SELECT rank, chunk_id, score FROM answer_passages WHERE answer_id = ?", (answer_id,))}
        return {n: shown[n] for n in cited_numbers(text) if n in shown}

    def relevant_passages(self) -> list[dict]:
        """Questions with the passages the user said answer them: those a liked answer cited and
        those a correction cites (`liked_passages`, `corrected_passages`), liked ones first."""
        return self.liked_passages() + self.corrected_passages()

    def _shown_chunk_ids(self, answer_id: str, params: str | None) -> list[int]:
        """The chunks an answer was made from, in the order it numbered them ([n]; an extract
        puts the cited ones first, `search_rank` keeps the search's order), so that the gate's
        replay (gate.py) and the training prompts number them as the answer's citations do:
        every retrieved one for an extracted answer, the first `prompt_passages` for one the
        generator wrote (before evidence-first answering, every answer)."""
        params = json.loads(params or "{}")
        shown = 10**6 if params.get("answer_mode") == "extract" else int(params.get("prompt_passages", 3))
        return [c for (c,) in self._db.execute(
            "SELECT chunk_id FROM answer_passages WHERE answer_id = ? AND rank <= ? ORDER BY rank", (answer_id, shown))]

    def corrections(self, user: str | None = None) -> list["Correction"]:
        """`user`'s corrections, and thumbs-down answers without one, for the correction memory
        (corrections.py); `user` None is the feedback given without a name (one user's
        machine). A thumbs-down on a refusal says nothing about which sentence to avoid, so it is
        left out, unless it carries a correction or the refusal came from a correction (then it
        is the feedback on that question, which may take the correction back: corrections.py)."""
        from ragbot.answer.corrections import Correction

        rows = self._db.execute(
            "SELECT a.id, a.retrieval_query, a.answer, f.correction, f.updated_at, a.question FROM feedback f "
            "JOIN answers a ON a.id = f.answer_id WHERE f.user IS ? AND (f.correction IS NOT NULL OR "
            "(f.vote = -1 AND (a.refused = 0 OR a.refusal_reason = 'corrected'))) ORDER BY f.updated_at, a.id",
            (user,)).fetchall()
        return [Correction(answer_id=i, question=q, answer=a, correction=c, at=t, turn=turn if turn != q else "")
                for i, q, a, c, t, turn in rows]

    def fingerprint(self) -> tuple:
        """Changes whenever any feedback does (history only grows), to know when to reload."""
        return self._db.execute("SELECT COUNT(*), MAX(id) FROM feedback_history").fetchone()

    def answerability_labels(self) -> list[dict]:
        """What the votes say about whether the passages shown held the answer, for the
        answerability check (answerability.py). Each row: question (the retrieval query the
        check read), chunk_ids (the passages shown, in prompt order), answerable, answer_id.
        - answerable: a thumbs-up on an answer; a thumbs-down on a refusal, or a correction of
          it that is an answer (the user says the documents do answer it).
        - unanswerable: a thumbs-up on a refusal; a correction of an answer to the refusal.
        A thumbs-down on an answer says nothing here (the answer may just be wrong), and
        refusals made on retrieval scores alone were never the check's to make.
        """
        rows = self._db.execute(
            "SELECT a.id, a.retrieval_query, a.refused, a.refusal_reason, a.params, f.vote, f.correction "
            "FROM feedback f JOIN answers a ON a.id = f.answer_id ORDER BY a.created_at, a.id"
        ).fetchall()
        labels = []
        for answer_id, query, refused, reason, params, vote, correction in rows:
            if reason == "low_retrieval_score":
                continue
            corrected_to_refusal = is_refusal(correction)
            if refused:
                answerable = True if (vote == -1 or (correction and not corrected_to_refusal)) else (
                    False if vote == 1 else None)
            else:
                answerable = False if corrected_to_refusal else (True if vote == 1 else None)
            if answerable is None:
                continue
            labels.append({"answer_id": answer_id, "question": query, "answerable": answerable,
                           "chunk_ids": self._shown_chunk_ids(answer_id, params)})
        return labels

    def export_rows(self, fmt: str) -> Iterator[dict]:
        """SFT {prompt, completion}: thumbs-up answers and corrections.
        KTO {prompt, completion, label}: every vote, plus corrections as desirable.
        DPO {prompt, chosen, rejected}: a correction against the answer it fixed, and a
        thumbs-up against a thumbs-down answer to the same exact prompt.
        Prompts are the exact text the model saw; refusals made without the model are left out.
        """
        if fmt not in EXPORT_FORMATS:
            raise RagbotError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
        rows = self._voted()
        if fmt == "sft":
            for _, prompt, answer, vote, correction in rows:
                if correction:
                    yield {"prompt": prompt, "completion": correction}
                elif vote == 1:
                    yield {"prompt": prompt, "completion": answer}
        elif fmt == "kto":
            for _, prompt, answer, vote, correction in rows:
                if vote in (1, -1):
                    yield {"prompt": prompt, "completion": answer, "label": vote == 1}
                if correction:
                    yield {"prompt": prompt, "completion": correction, "label": True}
        else:
            ups: dict[str, list[str]] = {}
            downs: dict[str, list[str]] = {}
            for _, prompt, answer, vote, correction in rows:
                if correction and correction != answer:
                    yield {"prompt": prompt, "chosen": correction, "rejected": answer}
                if vote == 1:
                    ups.setdefault(prompt, []).append(answer)
                elif vote == -1:
                    downs.setdefault(prompt, []).append(answer)
            for prompt, good in ups.items():
                for chosen in good:
                    for rejected in downs.get(prompt, []):
                        if chosen != rejected:
                            yield {"prompt": prompt, "chosen": chosen, "rejected": rejected}

    def votes_on_quotes(self) -> int:
        """Answers with a vote or a correction that no model wrote (quoted in the extract mode, or
        refused before the generator): the exports leave them out, as there is no prompt to train on."""
        return self._db.execute("SELECT COUNT(*) FROM feedback f JOIN answers a ON a.id = f.answer_id "
                                "WHERE a.prompt = '' AND (f.vote IS NOT NULL OR f.correction IS NOT NULL)").fetchone()[0]

    def export(self, fmt: str, out: Path) -> int:
        """Write the export as JSONL, atomically; returns the number of rows."""
        n = 0
        with atomic_file(Path(out)) as fh:
            for row in self.export_rows(fmt):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        return n
