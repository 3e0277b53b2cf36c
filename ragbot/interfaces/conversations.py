"""Conversations: the chat page's list of past conversations, kept in the data dir's database.

The turns themselves are the answer log (feedback.py): every answer is recorded with its
conversation id and turn. This module adds who a conversation belongs to, its title (the first
question, until renamed) and dates, so a conversation can be listed, reopened after a reload or a
server restart, renamed, exported and deleted. An owner is the logged-in user when the page has
a login, else a random token the browser keeps; every read and change checks it, so an id sent
by another browser opens nothing. Deleting hides a conversation from its owner; its answers and
votes stay in the answer log, which tuning learns from.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ragbot.answer.corrections import SAVED_CORRECTION
from ragbot.answer.generation import cited_numbers
from ragbot.errors import RagbotError
from ragbot.storage.store import Store
from ragbot.text import heading_title, readable_line

TITLE_CHARS = 80
EXCERPT_CHARS = 300  # of each cited passage, in an export


class ConversationError(RagbotError):
    pass


def _title_of(question: str) -> str:
    """The title a conversation takes from its first question."""
    return " ".join(question.split())[:TITLE_CHARS] or "(untitled)"


@dataclass
class Conversation:
    id: str
    title: str
    created_at: float
    updated_at: float
    turns: int


@dataclass
class Turn:
    question: str
    answer: str
    answer_id: str
    refused: bool
    corrected: bool = False  # the answer is a saved correction (Answer.correction_of), not a quote
    chosen_documents_searched: int | None = None  # the question searched only this many, chosen in the library; None: all


class Conversations:
    def __init__(self, store: Store):
        self.store = store

    @property
    def _db(self):
        return self.store._db

    def _exists(self, conversation_id: str, owner: str) -> bool:
        """Whether the owner has this conversation (False: none has it yet). Another owner's, or
        a deleted one, raises, in the same words as a missing one, so nothing is learnt."""
        row = self._db.execute("SELECT owner, deleted FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            return False
        if row[0] != owner or row[1]:
            raise ConversationError("no such conversation")
        return True

    def _require(self, conversation_id: str, owner: str) -> None:
        if not self._exists(conversation_id, owner):
            raise ConversationError("no such conversation")

    def touch(self, conversation_id: str, owner: str, question: str, first: bool = False) -> None:
        """Record a turn's time; a new conversation is created, titled by its first question.
        `first`: `question` is asked as the first turn again (edited or regenerated): a title made
        from the first question follows it; one the owner gave it stays."""
        now = time.time()
        with self.store.transaction() as db:
            row = db.execute("SELECT owner, deleted, title FROM conversations WHERE id = ?",
                             (conversation_id,)).fetchone()
            if row is None:
                db.execute("INSERT INTO conversations(id, owner, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                           (conversation_id, owner, _title_of(question), now, now))
                return
            if row[0] != owner or row[1]:
                raise ConversationError("no such conversation")
            title = row[2]
            if first:
                # The first question shown until now: the latest answer to turn 1 (this one is not logged yet).
                was = db.execute("SELECT question FROM answers WHERE conversation_id = ? AND turn = 1 "
                                 "ORDER BY created_at DESC, rowid DESC LIMIT 1", (conversation_id,)).fetchone()
                # None: the first question shown was stopped (not logged), and this one takes its place.
                if was is None or title == _title_of(was[0]):
                    title = _title_of(question)
            db.execute("UPDATE conversations SET updated_at = ?, title = ? WHERE id = ?", (now, title, conversation_id))

    def list(self, owner: str, limit: int = 50) -> list[Conversation]:
        rows = self._db.execute(
            "SELECT c.id, c.title, c.created_at, c.updated_at, "
            "(SELECT COUNT(*) FROM answers a WHERE a.conversation_id = c.id) "
            "FROM conversations c WHERE c.owner = ? AND c.deleted = 0 ORDER BY c.updated_at DESC LIMIT ?",
            (owner, limit)).fetchall()
        return [Conversation(*row) for row in rows]

    def turns(self, conversation_id: str, owner: str) -> list[Turn]:
        if not self._exists(conversation_id, owner):
            return []
        rows = self._db.execute(
            "SELECT question, answer, id, refused, turn, json_extract(params, '$.correction_of') IS NOT NULL, "
            "json_array_length(params, '$.sources') FROM answers WHERE conversation_id = ? ORDER BY created_at, rowid",
            (conversation_id,)).fetchall()
        # Replayed in the order they were given: an answer to turn n (a question asked again, as
        # it was or edited) replaces turn n and every turn after it, as it did on the page.
        shown: list[Turn] = []
        for question, answer, answer_id, refused, turn, corrected, searched in rows:
            if turn >= 1:
                del shown[turn - 1:]
            shown.append(Turn(question, answer, answer_id, bool(refused), bool(corrected), searched))
        return shown

    def rename(self, conversation_id: str, owner: str, title: str) -> None:
        title = " ".join((title or "").split())[:TITLE_CHARS]
        if not title:
            raise ConversationError("a title needs at least one character")
        self._require(conversation_id, owner)
        with self.store.transaction() as db:
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))

    def delete(self, conversation_id: str, owner: str) -> None:
        self._require(conversation_id, owner)
        with self.store.transaction() as db:
            db.execute("UPDATE conversations SET deleted = 1, updated_at = ? WHERE id = ?", (time.time(), conversation_id))

    def _feedback(self, conversation_id: str) -> dict[str, dict]:
        """The vote, comment and correction given on each answer of the conversation that has any."""
        rows = self._db.execute(
            "SELECT f.answer_id, f.vote, f.comment, f.correction FROM feedback f JOIN answers a ON a.id = f.answer_id "
            "WHERE a.conversation_id = ?", (conversation_id,)).fetchall()
        return {answer_id: {"vote": vote, "comment": comment, "correction": correction}
                for answer_id, vote, comment, correction in rows if vote is not None or comment or correction}

    def title(self, conversation_id: str, owner: str) -> str:
        self._require(conversation_id, owner)
        return self._db.execute("SELECT title FROM conversations WHERE id = ?", (conversation_id,)).fetchone()[0]

    def sources(self, answer_id: str, answer: str) -> list[dict]:
        """The passages an answer cites, in the order its [n] marks first name them: n, the
        document's file name (None once the document is deleted), page and text."""
        shown = {rank: (source, page, text) for rank, source, page, text in self._db.execute(
            "SELECT ap.rank, d.source, c.page, c.text FROM answer_passages ap LEFT JOIN chunks c ON c.id = ap.chunk_id "
            "LEFT JOIN documents d ON d.id = c.doc_id WHERE ap.answer_id = ?", (answer_id,))}
        return [{"n": n, "document": Path(shown[n][0]).name if shown[n][0] else None, "page": shown[n][1],
                 "text": shown[n][2]} for n in cited_numbers(answer) if n in shown]

    def export(self, conversation_id: str, owner: str, fmt: str = "markdown") -> str:
        """The conversation as Markdown or JSON: each question, its answer, and the passages the
        answer cites (the Markdown gives a short excerpt of each, the JSON the whole text)."""
        title = self.title(conversation_id, owner)
        turns = [(t, self.sources(t.answer_id, t.answer)) for t in self.turns(conversation_id, owner)]
        feedback = self._feedback(conversation_id)  # read for the turns shown: title() checked the owner
        if fmt == "json":
            return json.dumps({"id": conversation_id, "title": title,
                               "turns": [{**t.__dict__, "sources": sources, "feedback": feedback.get(t.answer_id)}
                                         for t, sources in turns]},
                              ensure_ascii=False, indent=2)
        lines = [f"# {_closing_marks_kept(as_text(title))}", ""]
        for t, sources in turns:
            said = f"Answer ({SAVED_CORRECTION})" if t.corrected else "Answer"
            lines += [f"**Question:** {as_text(t.question)}", "", f"**{said}:** {as_text(t.answer)}", ""]
            given = feedback.get(t.answer_id)
            if given:  # what the user said of the answer: an export without it read as if it stood
                said = [f"*Your vote:* {VOTE_NAMES[given['vote']]}"] if given["vote"] in VOTE_NAMES else []
                said += [f"*Your {name}:* {as_text(given[name])}" for name in ("comment", "correction") if given[name]]
                lines += [line for item in said for line in (item, "")]
            if sources:
                lines += ["Sources:", ""]
                for s in sources:
                    where = as_text(s["document"]) if s["document"] else "a document since deleted"
                    if s["page"]:
                        where += f", page {s['page']}"
                    excerpt = _excerpt_text(s["text"] or "")
                    if len(excerpt) > EXCERPT_CHARS:
                        excerpt = excerpt[:EXCERPT_CHARS].rsplit(" ", 1)[0] + " …"
                    lines.append(f"- [{s['n']}] {where}" + (f": “{as_text(excerpt)}”" if excerpt else ""))
                lines.append("")
        return "\n".join(lines)


VOTE_NAMES = {1: "thumbs up", -1: "thumbs down"}


def _closing_marks_kept(heading: str) -> str:
    """A heading's text with a run of "#" at its end backslashed: Markdown reads such a run as
    the heading's closing marks and drops it (a conversation titled "Issue #" was exported "Issue")."""
    body = heading.rstrip("#")
    return body + "\\#" * (len(heading) - len(body))


def _excerpt_text(text: str) -> str:
    """A passage on one line as an export shows it: a heading's title set off by a dash from
    the text under it, table rows as an answer quotes them (text.readable_line)."""
    parts = []
    for line in text.splitlines():
        title = heading_title(line)
        parts.append(f"{title} —" if title else readable_line(line))
    return " ".join(" ".join(parts).split())


# The marks that make emphasis, code or strike-through within a line, and the backslash that
# would otherwise take the next one's meaning away or give it back.
_INLINE_MARKS = re.compile(r"([\\*_`~])")


def as_text(text: str) -> str:
    """Text from documents, models and users as an exported Markdown file shows it, rendered or
    read as it is: on one line (so no line of it can open a heading, a list or a link
    definition), HTML escaped (`_html_escaped`), every mark of emphasis, code and strike-through backslashed
    (wherever it stands: an underscore inside a word, which makes no emphasis, shows its
    backslash when the file is read raw), and no "](" left to make a link or an image. The chat
    page's status lines backslash every punctuation mark instead (app.literal); a file is also
    read raw, so the other marks stay, as do ragbot's [n] marks. A renderer that makes links of
    bare addresses (GitHub's) still does."""
    escaped = _INLINE_MARKS.sub(r"\\\1", _html_escaped(" ".join(text.split())))
    return escaped.replace("](", "]\\(")


# An "&" that a renderer would read as the start of a character reference ("&copy;", "&#38;").
_REFERENCE = re.compile(r"&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{1,31};)")


def _html_escaped(text: str) -> str:
    """`text` with "<" and ">" as "&lt;" and "&gt;", and an "&" as "&amp;" only where it would
    begin a character reference: rendered, the text shows as written and makes no markup;
    read raw, "Alder & Sons" stays as written (helper-89 read "Alder &amp; Sons" in an export)."""
    return _REFERENCE.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")
