"""What the chat page does, without the page: `ChatHandlers` answers, votes, saves comments and
corrections, keeps conversations, uploads and deletes documents, and suggests questions, each
method a plain call that tests make without a browser. app.py wires them to Gradio's events.

Every assistant message carries its answer's id in its metadata; a vote reads that id from the
message itself, so feedback can never land on the wrong answer. Ids, names and HTML sent by the
client are never trusted: each is checked against what the server issued or stored.
"""

import logging
import itertools
import os
import re
import shutil
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator
from pathlib import Path

from ragbot.answer.corrections import feedback_key
from ragbot.answer.evidence import quotes_by_passage
from ragbot.answer.generation import HISTORY_TURNS, is_refusal, marked_numbers
from ragbot.bot import RagBot, searched_before
from ragbot.errors import RagbotError
from ragbot.ingest.encoding import guessed_note
from ragbot.ingest.readers import kind_of, supported_suffixes
from ragbot.interfaces.conversations import ConversationError, Conversations
from ragbot.interfaces.rendering import (
    MAX_QUESTION_CHARS,
    NO_PASSAGE_CITED,
    STOPPED_MARK,
    answer_id_of,
    distinct_folders,
    literal,
    message_at,
    message_index,
    message_text,
    panel_heading,
    render_panel,
    render_sources,
    searched_sentence,
    shown,
    shown_answer,
    turn_of,
    unexpected_error_message,
)
from ragbot.learn.feedback import UnknownAnswerError
from ragbot.storage.files import write_atomic
from ragbot.text import counted
from ragbot.types import Passage

log = logging.getLogger(__name__)


MAX_K, MAX_TEMPERATURE = 20, 1.5  # the settings sliders' ranges


MAX_SESSIONS = 10_000  # sessions whose answer ids the server remembers


MAX_IDS_PER_SESSION = 5_000


# The page waits this long for another process's ingest (e.g. `ragbot ingest` in a terminal),
# then says who holds the data dir instead of leaving the user with a silent spinner.
PAGE_WRITE_WAIT = 5.0


CHOOSE_FIRST = "Choose a document first."  # the library's Re-ingest or Delete with no document chosen


DOCUMENT_ROUTE = "/ragbot/documents"  # + "/<stored id>": a stored PDF, for its pages to open in the browser


BUSY = "Answering… Stop it to ask something else."


ANSWERING = "<p class='ragbot-muted'>Answering…</p>"


DEFAULT_MAX_UPLOAD_MB = 50  # the max_upload_mb setting's default


def safe_upload_name(name: str) -> str:
    """A file name that cannot leave the uploads folder: no separators, no dots in front, no
    control or shell-special characters. Letters of any script are kept ("Übersicht.pdf")."""
    base = os.path.basename(name.replace("\\", "/"))
    base = "".join(ch if (ch.isalnum() or ch in "._ -()") else "_" for ch in base).strip(" .")
    stem, dot, suffix = base.rpartition(".")
    if dot and len(base.encode("utf-8")) > 200:  # file systems allow 255 bytes
        stem = stem.encode("utf-8")[: 200 - len(suffix.encode("utf-8"))].decode("utf-8", "ignore")
        base = f"{stem}.{suffix}"
    return base[:200] or "upload"


def _keep_upload(source: Path, folder: Path, name: str) -> tuple[Path, bool]:
    """Copy an upload into the uploads folder: (where it is kept, whether it is a new file). The
    file is created exclusively, so two uploads of one name at once cannot overwrite each other."""
    data_hash = _sha256(source)
    for _ in range(3):
        target = upload_target(folder, name, data_hash)
        try:
            with open(source, "rb") as src, open(target, "xb") as dst:
                shutil.copyfileobj(src, dst)
            return target, True
        except FileExistsError:
            if _sha256(target) == data_hash:
                return target, False  # the same file, kept already
    raise RagbotError(f"{name}: could not be stored under a name of its own; upload it again")


def upload_target(folder: Path, name: str, data_hash: str) -> Path:
    """Where an upload is kept: its own name, or, when an earlier upload with other content has
    that name, the name with the content's hash in it, so neither replaces the other."""
    target = folder / name
    if not target.exists() or _sha256(target) == data_hash:
        return target
    stem, dot, suffix = name.rpartition(".")
    return folder / (f"{stem}-{data_hash[:8]}.{suffix}" if dot else f"{name}-{data_hash[:8]}")


# The hash of its content that `upload_target` puts in an upload's name beside another of that name.
_UPLOAD_HASH = re.compile(r"-([0-9a-f]{8})(?=\.[^.]*$|$)")


def _sha256(path: Path) -> str:
    from ragbot.models import sha256_file

    return sha256_file(path)


SAVED = "Saved "  # how every message of a saved comment or correction begins (ChatHandlers.saved_note)


SUGGESTIONS_SEARCHED = 30  # candidate suggestions searched for an empty conversation (example_questions)


NEWEST_TRIED = 5  # of them, from the document ingested last, tried first


FIRST_VISIT_SUGGESTIONS = "New here? Click a question about your documents to ask it"


NEW_CONVERSATION_SUGGESTIONS = "Click a question about your documents to ask it, or type your own"


class ChatHandlers:
    """The page's events. `session` names who is asking (the browser session, and the user when
    login is on): the server remembers which answer ids it gave to which session, and feedback
    is taken only for those, whatever ids the page sends back."""

    def __init__(self, bot: RagBot, max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB):
        self.bot = bot
        self.max_upload_bytes = max_upload_mb * 1024 * 1024
        self.uploads = (bot.settings.data_dir / "uploads").resolve()  # sources are stored absolute
        # Answer ids given to each session, most recent sessions last; bounded, so a server that
        # runs for months does not grow without end (an evicted session re-opens its conversation).
        self._issued: OrderedDict[str, dict[str, None]] = OrderedDict()  # session -> ids, oldest first
        self._issued_lock = threading.Lock()
        self.conversations = Conversations(bot.store)
        self._stops: dict[str, threading.Event] = {}  # the answer in progress, per session
        # Per session, the order of its last New conversation and of its last question asked
        # (new_since_asked), most recent session last (bounded).
        self._order = itertools.count(1)
        self._started: OrderedDict[str, int] = OrderedDict()
        self._asked: OrderedDict[str, int] = OrderedDict()
        self.exports = (bot.settings.data_dir / "exports").resolve()

    def _issue(self, session: str, answer_id: str) -> None:
        with self._issued_lock:
            ids = self._issued.pop(session, {})
            ids[answer_id] = None
            while len(ids) > MAX_IDS_PER_SESSION:
                del ids[next(iter(ids))]
            self._issued[session] = ids
            while len(self._issued) > MAX_SESSIONS:
                self._issued.popitem(last=False)

    def _was_issued(self, session: str, answer_id: str) -> bool:
        with self._issued_lock:
            return answer_id in self._issued.get(session, ())

    def model_info(self) -> str:
        settings = self.bot.settings
        if settings.answer_mode == "extract":  # no generator runs: naming one would mislead
            tuned = self.bot.store.ranking_embedder()
            ranks = f" (passages ranked by your tuned embedder **{tuned}**)" if tuned else ""
            try:
                adapter, fitted = self.bot.answering_calibration()
            except RagbotError as exc:  # a damaged registry is told here, not a page that fails to load
                adapter, fitted = None, None
                log.warning("settings panel: %s", exc)
            threshold = (f"the threshold adapter **{adapter}** was calibrated with "
                         f"(**{fitted.threshold:.2f}**)" if fitted else
                         f"the `evidence_threshold` setting (**{settings.evidence_threshold:.2f}**)")
            return (f"Answers quote the sentence of your documents that answers best, with its source, found "
                    f"with **{settings.embedder}**{ranks}. No text is generated (answer mode: extract). "
                    f"A question is declined when no sentence comes close enough: {threshold}.")
        adapter = self.bot.generator.adapter if self.bot._generator else None
        return f"Answers are written by **{settings.generator}**, adapter: **{adapter or 'none'}**"

    @staticmethod
    def question_problem(question: str | None) -> str | None:
        """Why a question cannot be asked as typed, or None."""
        text = (question or "").strip()
        if not text:
            return "Type a question first."
        if len(text) > MAX_QUESTION_CHARS:
            return f"A question can be at most {MAX_QUESTION_CHARS} characters (this one has {len(text)})."
        return None

    def respond(
        self, question: str, history: list[dict], conversation_id: str, k: int, temperature: float, show_all: bool,
        session: str = "", user: str | None = None, sources: list[str] | None = None,
    ) -> Iterator[tuple[list[dict], str, str]]:
        """Stream an answer: yields (chat history, sources HTML, cleared input box). A question
        that cannot be asked (question_problem) changes nothing. `sources`: the documents to
        search (chosen_sources; None: all). The turn is one more than the stored answers in
        `history`, so a question asked again (regenerate, edit, with `history` cut before it)
        replaces that turn and the ones after it."""
        if self.question_problem(question):
            return
        question = question.strip()
        # Sent by the page (or any API client): kept to the ranges the page's sliders offer.
        k = min(max(int(k), 1), MAX_K)
        temperature = min(max(float(temperature), 0.0), MAX_TEMPERATURE)
        history = list(history or [])
        earlier_queries = self._earlier_queries(history, session)
        turn = turn_of(history)
        earlier = self._history_messages(history)
        history.append({"role": "user", "content": shown(question)})
        history.append({"role": "assistant", "content": ""})
        text = ""
        answer = None
        searched = None if sources is None else len(sources)  # as stored: reopened, the same count
        stop = self._stops[session] = threading.Event()  # Stop works from the moment the question shows
        try:
            yield history, ANSWERING, ""
            if not stop.is_set():
                query = self.bot.standalone_query(earlier_queries, question)
                for event in self.bot.ask_stream(question, k=int(k), temperature=float(temperature),
                                                 conversation_id=conversation_id, turn=turn, retrieval_query=query,
                                                 history=earlier, stop=stop, user=user, sources=sources):
                    if isinstance(event, str):
                        text += event
                        history[-1] = {"role": "assistant", "content": shown_answer(text, searched=searched)}
                        yield history, ANSWERING, ""
                    else:
                        answer = event
        finally:
            if self._stops.get(session) is stop:  # a newer answer of this session keeps its own
                del self._stops[session]
        # A Stop that came after the answer was logged was too late: the answer is kept, and shown
        # as kept (it comes back after a reload), not as stopped (helper-76's drive).
        if answer is None or answer.id is None:  # stopped: the model ended at its next token; not kept
            assert stop.is_set()  # an answer nobody stopped is always logged (record=True)
            # The message says so itself: the page offers a vote under every answer, and this one
            # can take none (helper-76's drive). Its [n] stay text: no panel shows those passages.
            history[-1] = {"role": "assistant", "content": shown(text + " …") + STOPPED_MARK}
            yield history, "<p>Stopped: this answer was not finished, so it is not kept or rated.</p>", ""
            return
        self._issue(session, answer.id)
        history[-1] = {"role": "assistant", "content": shown_answer(answer.answer, corrected=bool(answer.correction_of),
                                                                    searched=searched),
                       "metadata": {"id": answer.id}}
        served = self._served_correction(answer.id) if answer.correction_of and answer.id else None
        yield history, render_sources(answer, show_all, self.document_links(answer.passages), searched=sources,
                                      corrected_elsewhere=served is not None and not served[0]), ""

    # -- what an answer rests on -----------------------------------------------------------------

    def document_links(self, passages: list[Passage]) -> dict[str, str]:
        """Where the page opens each PDF among `passages` (the document route, by stored id)."""
        links = {}
        for source in {p.source for p in passages}:
            doc = self.bot.store.document(source)
            if doc is not None and doc.kind == "pdf":
                links[source] = f"{DOCUMENT_ROUTE.lstrip('/')}/{doc.id}"
        return links

    def latest_sources(self, history: list[dict], session: str, show_all: bool) -> str:
        """The sources panel of the conversation's latest answer (a reopened or reloaded one), so
        its [n] can be read, and cited in a correction, without a click first."""
        last = next((i for i in range(len(history or []) - 1, -1, -1) if answer_id_of(history[i])), None)
        found = self.sources_of(history, last, session, show_all) if last is not None else None
        return found if found is not None else render_sources(None, show_all)

    def sources_of_answer(self, history: list[dict], answer_id: str | None, session: str, show_all: bool) -> str | None:
        """The sources panel of the chat's answer `answer_id` (the one chosen to comment on or
        correct); None when the chat shows no such answer, or this session was not given it."""
        index = next((i for i, message in enumerate(history or []) if answer_id and answer_id_of(message) == answer_id),
                     None)
        return None if index is None else self.sources_of(history, index, session, show_all)

    def shown_sources(self, history: list[dict], answer_id: str | None, session: str, show_all: bool) -> str:
        """The sources panel of the answer chosen to comment on (a click on an answer chooses
        it), else of the latest answer: what the panel shows, drawn again with `show_all`."""
        found = self.sources_of_answer(history, answer_id, session, show_all)
        return found if found is not None else self.latest_sources(history, session, show_all)

    def sources_of(self, history: list[dict], index, session: str, show_all: bool) -> str | None:
        """The sources panel for the answer at `index` of the chat (the one a user clicked), read
        from the answer log; None when that message is no answer this session was given."""
        answer_id = answer_id_of(message_at(history, index))
        if answer_id is None or not self._was_issued(session, answer_id):
            return None
        try:
            trace = self.bot.feedback.answer_trace(answer_id)
        except RagbotError:
            return None
        corrected_question, served = None, None
        if trace["params"].get("correction_of"):
            served = self._served_correction(answer_id)
            corrected_question = served[1] if served is not None else ""
        chunks = self.bot.store.chunks([row["chunk_id"] for row in trace["passages"]])
        passages = [c.as_passage(row["score"], row["rank"], row["search_rank"])
                    for row in trace["passages"] if (c := chunks.get(row["chunk_id"])) is not None]
        cited = {row["rank"] for row in trace["passages"] if row["cited"]}
        gone = len(trace["passages"]) - len(passages)
        # A cited passage whose document was deleted or changed since: said so, by its number.
        gone_cited = sorted(row["rank"] for row in trace["passages"] if row["cited"] and row["chunk_id"] not in chunks)
        note = ""
        if gone_cited:
            numbers = ", ".join(f"[{n}]" for n in gone_cited)
            note = (f"<p>The passage{'s' if len(gone_cited) > 1 else ''} this answer cites ({numbers}) "
                    f"{'are' if len(gone_cited) > 1 else 'is'} no longer stored: the document was deleted or "
                    f"changed since the answer was given.</p>")
        if gone > len(gone_cited):
            note += f"<p class='ragbot-muted'>{gone - len(gone_cited)} other passage(s) of this answer are no longer stored.</p>"
        panel = render_panel(passages, cited, show_all, self.document_links(passages), refused=trace["refused"],
                             refusal_reason=trace["refusal_reason"], corrected_question=corrected_question,
                             searched=trace["params"].get("sources"), quotes=quotes_by_passage(trace["answer"]),
                             corrected_elsewhere=served is not None and not served[0])
        # The note above already says the cited passages are gone: not also "cites no passage".
        return panel_heading(trace["question"]) + note + (panel.removesuffix(NO_PASSAGE_CITED) if gone_cited else panel)

    def chosen_sources(self, chosen: list[str] | None) -> tuple[list[str] | None, str | None]:
        """The documents a question may search, from what the page sends: (sources, problem).
        Nothing chosen: all documents. Only stored documents count, whatever the page sends."""
        if not chosen:
            return None, None
        stored = {d.source for d in self.bot.store.documents()}
        kept = list(dict.fromkeys(c for c in chosen if isinstance(c, str) and c in stored))
        if not kept:
            return None, "None of the chosen documents is stored any more: choose again, or clear the choice."
        return kept, None

    def limited_refusal(self, history: list[dict], sources: list[str] | None) -> str | None:
        """What the page says beside the latest answer in `history` when it is a refusal from
        the chosen documents alone (the chat's refusal read as the whole library's); None
        otherwise. The sources panel says the same above its passages."""
        answer_id = answer_id_of(history[-1] if history else None)
        if sources is None or answer_id is None:
            return None
        try:
            refused = self.bot.feedback.answer_trace(answer_id)["refused"]
        except RagbotError:
            return None
        return searched_sentence(sources, refused=True) if refused else None

    def started_new(self, session: str) -> None:
        """Remember that this session opened an empty conversation, with its suggestions (New
        conversation, or the open conversation deleted)."""
        self._remember(self._started, session)

    def started_asking(self, session: str) -> None:
        """Remember that this session asked a question (its answer's last step hides the
        suggestions, unless a New conversation came after the question: new_since_asked)."""
        self._remember(self._asked, session)

    def _remember(self, record: OrderedDict, session: str) -> None:
        with self._issued_lock:
            record.pop(session, None)
            record[session] = next(self._order)
            while len(record) > MAX_SESSIONS:
                record.popitem(last=False)

    def new_since_asked(self, session: str) -> bool:
        """Whether this session opened a New conversation after its last question: told by the
        server's own order of events, whatever the page sent with the step that asks. The page
        sends the chat as it held it when the step was sent, possibly before the New conversation
        emptied it, and Gradio reads the conversation's id (a State) when the step runs, possibly
        after the New conversation replaced it, so neither can tell (two CI rehearsals hid a new
        conversation's suggestions, 2026-12-07)."""
        with self._issued_lock:
            return self._started.get(session, 0) > self._asked.get(session, 0)

    def answering(self, session: str) -> bool:
        """Whether an answer of this session is still being written."""
        return session in self._stops

    def request_stop(self, session: str) -> str:
        """Stop this session's answer in progress (the respond loop checks between pieces)."""
        stop = self._stops.get(session)
        if stop is None:
            return "Nothing to stop."
        stop.set()
        return "Stopping…"

    # -- conversations ------------------------------------------------------------------------

    def start_turn(self, conversation_id: str, owner: str, question: str, first: bool = False) -> str | None:
        """Record the turn in the owner's conversation (`first`: it is the first turn, asked
        anew or again); the reason it cannot be, or None."""
        try:
            self.conversations.touch(conversation_id, owner, question, first=first)
        except ConversationError:
            return "This conversation cannot be continued here; start a new one."
        return None

    def conversation_choices(self, owner: str) -> list[tuple[str, str]]:
        """(label, id) of the owner's conversations, newest first: its title and date. Two that
        would read alike (the same first question, the same minute) are told apart by a number
        after the title, the older one the lower: "What is RAG? (2) · 2026-12-03 09:14" (after
        the time, it read as part of it)."""
        import time

        listed = [(c.title, time.strftime('%Y-%m-%d %H:%M', time.localtime(c.updated_at)), c.id)
                  for c in self.conversations.list(owner)]
        alike = Counter((title, when) for title, when, _ in listed)
        left = Counter(alike)  # newest first: the first of a label gets its count
        choices = []
        for title, when, conversation_id in listed:
            number = f" ({left[title, when]})" if alike[title, when] > 1 else ""
            choices.append((f"{title}{number} · {when}", conversation_id))
            left[title, when] -= 1
        return choices

    def reopen(self, conversation_id: str, owner: str, session: str) -> list[dict]:
        """The conversation's messages as the chat shows them, its answers issued to this session
        (so they can be voted on again); empty for an id the owner does not have."""
        try:
            turns = self.conversations.turns(conversation_id, owner)
        except ConversationError:
            return []
        history = []
        for turn in turns:
            self._issue(session, turn.answer_id)
            history.append({"role": "user", "content": shown(turn.question)})
            history.append({"role": "assistant", "content": shown_answer(turn.answer, corrected=turn.corrected,
                                                                         searched=turn.chosen_documents_searched),
                            "metadata": {"id": turn.answer_id}})
        return history

    def example_questions(self, n: int = 3) -> list[str]:
        """The suggestions for an empty conversation (a first visit, a new one), made from the
        user's own documents the way tuning makes questions (their definitions and section
        headings), from different documents. The document ingested last is tried first, so a
        file just uploaded is suggested about (helper-79's drive: a library mostly of the shipped
        corpus suggested only from it).

        A suggestion must find the passage it was made from: first in the search, and closest
        of those found. "What is the loss?" (from "The loss is ...") found other documents'
        losses closer, and read as vague; no threshold is involved, only the search's own order."""
        import random

        from ragbot.learn.trainset import structural_questions

        drawn, latest = self.bot.store.sampled_chunk_ids(200, newest=50)
        ids = list(dict.fromkeys(latest + drawn))
        chunks = self.bot.store.chunks(ids)
        sampled = [chunks[i] for i in ids if i in chunks]
        candidates = [c for c in structural_questions(sampled, self.bot.abbreviations(),
                                                      self.bot.store.document_sections([c.id for c in sampled]))
                      if len(c.question) <= 120]
        random.shuffle(candidates)
        # Definitions first, a few of the newest document's before all; a bounded number
        # searched (one batch, when a conversation starts empty). One suggestion at most comes
        # from each document, so the newest's few leave room for the others'.
        candidates = sorted(candidates, key=lambda c: c.origin != "definition")
        of_newest = set(latest)
        first = [i for i, c in enumerate(candidates) if c.chunk_id in of_newest][:NEWEST_TRIED]
        candidates = ([candidates[i] for i in first]
                      + [c for i, c in enumerate(candidates) if i not in first])[:SUGGESTIONS_SEARCHED]
        found = self.bot.batch_search([c.question for c in candidates]) if candidates else []
        picked, sources = [], set()
        for candidate, passages in zip(candidates, found):
            source = chunks[candidate.chunk_id].source
            own = passages[0].chunk_id == candidate.chunk_id if passages else False
            if own and passages[0].score >= max(p.score for p in passages) and source not in sources:
                picked.append(candidate.question)
                sources.add(source)
            if len(picked) == n:
                break
        return picked

    # -- the document library -------------------------------------------------------------------

    def library(self) -> tuple[list[list], list[tuple[str, str]]]:
        """The stored documents as table rows, and as (label, source) choices."""
        import time

        rows, choices = [], []
        # By name, as a folder lists files (newest first put the shipped corpus in reverse order).
        stored = sorted(self.bot.store.documents(), key=lambda d: (Path(d.source).name.lower(), d.source))
        folders = distinct_folders([d.source for d in stored if not self._is_upload(d.source)])
        for d in stored:
            name = Path(d.source).name
            parent = Path(d.source).parent
            origin = "upload" if self._is_upload(d.source) else folders[d.source]
            # Three columns fit the side column (six made it scroll sideways): the kind, size and
            # the folder's last name together; the choices name as much of the folder as tells
            # documents of one name apart.
            pages = f", {counted(d.n_pages, 'page')}" if d.n_pages else ""
            chunks = counted(d.n_chunks, "chunk")
            where = origin if origin == "upload" else parent.name or origin
            rows.append([name, f"{d.kind}{pages}, {chunks}, from {where}",
                         time.strftime("%Y-%m-%d", time.localtime(d.ingested_at))])
            choices.append((f"{name} ({origin})", d.source))
        return rows, choices

    def shelf(self, searched, chosen) -> tuple[list[list], list[tuple[str, str]], str | None, list[str]]:
        """The library drawn again (rows, choices), with the documents chosen to search and the
        one chosen to act on as the page sends them, kept while they are stored (a re-ingest
        cleared the chosen document); anything else the page sends is dropped."""
        rows, choices = self.library()
        stored = {source for _, source in choices}
        searched = list(dict.fromkeys(s for s in (searched if isinstance(searched, list) else [])
                                      if isinstance(s, str) and s in stored))
        return rows, choices, chosen if isinstance(chosen, str) and chosen in stored else None, searched

    def document_in_row(self, index, row) -> str | None:
        """The stored document a clicked row of the library names, or None. The page sends the
        row's number and its cells as it shows them; both are checked against the library as
        stored now: the row at that number when its cells match (two documents of one name, from
        two folders of one name, read alike), else the one row that reads so (the library
        changed since the page drew it). Nothing else the page sends names a document."""
        rows, choices = self.library()
        at = index[0] if isinstance(index, (list, tuple)) and index and isinstance(index[0], int) else None
        if at is not None and 0 <= at < len(rows) and rows[at] == row:
            return choices[at][1]
        matching = [source for shown, (_, source) in zip(rows, choices) if shown == row]
        return matching[0] if len(matching) == 1 else None

    def has_documents(self) -> bool:
        return self.bot.store.counts()[0] > 0

    def _same_name_notes(self, added: list[str]) -> list[str]:
        """A line for each upload just added under the name of another stored document (a file of
        the user's folders, or an earlier upload with other content, kept beside it as
        "name-<hash>"): both are searched, and answers may quote either. helper-89 uploaded an
        edited recipe file whose folder copy was stored: the old baking time went on answering,
        and nothing said two versions were stored."""
        notes = []
        names = {d.source: self._name_sent(d.source) for d in self.bot.store.documents()} if added else {}
        for path in added:
            name = names.get(path, Path(path).name)
            others = [source for source, other in names.items() if source != path and other == name]
            if not others:
                continue
            uploads = sum(self._is_upload(o) for o in others)
            where = [o for o in others if not self._is_upload(o)] + (
                [] if not uploads else ["an earlier upload" if uploads == 1 else f"{uploads} earlier uploads"])
            notes.append(f"also stored: {name} ({', '.join(where)}). Both are searched, so an answer may quote "
                         "either; if this is a new version, delete the other under “Your documents”.")
        return notes

    def _name_sent(self, source: str) -> str:
        """A stored document's file name as its file was named: an upload kept beside another of
        its name (`upload_target`) without the hash of its content put in its name."""
        name = Path(source).name
        if self._is_upload(source):
            match = _UPLOAD_HASH.search(name)
            if match and match.group(1) == _sha256(Path(source))[:8]:
                return name[:match.start()] + name[match.end():]
        return name

    def _is_upload(self, source: str) -> bool:
        return Path(source).parent == self.uploads

    def _stored(self, source: str | None):
        """The stored document the page names, or None: a value the page sends back is checked."""
        return next((d for d in self.bot.store.documents() if d.source == source), None) if source else None

    def deletion_question(self, source: str | None) -> str | None:
        """What the page asks before deleting a stored document; None when it names none."""
        doc = self._stored(source)
        if doc is None:
            return None
        copy = " and ragbot's copy of the uploaded file" if self._is_upload(doc.source) else ""
        return f"Delete {literal(Path(doc.source).name)}? Its passages{copy} go; answers already given stay."

    def delete_document(self, source: str | None, searched: list[str] | None = None) -> str:
        """Delete a stored document; `searched`: the documents the page searches only (it is said
        when this one was among them, since the choice then changes without a word)."""
        doc = self._stored(source)
        if doc is None:
            return CHOOSE_FIRST
        try:
            report = self.bot.remove([doc.source], wait=PAGE_WRITE_WAIT)
        except RagbotError as exc:
            return f"{literal(Path(doc.source).name)} was not deleted: {exc}"
        except Exception as exc:  # a fault of ragbot's own: the page says what is stored, the log has the rest
            if self._stored(doc.source) is not None:
                return unexpected_error_message(exc, f"{literal(Path(doc.source).name)} was not deleted")
            if self._is_upload(doc.source):
                Path(doc.source).unlink(missing_ok=True)
            return unexpected_error_message(exc, f"{literal(Path(doc.source).name)} was deleted", done=True)
        if self._is_upload(doc.source):
            Path(doc.source).unlink(missing_ok=True)  # ragbot's own copy of an upload
        kept = "".join(f" Its copy {literal(path)} holds the same text and is searched in its place."
                       for path, _ in report.stood_in)
        kept += "".join(f" Its copy {literal(path)} could not be read ({literal(reason)}), so it is not searched."
                        for path, reason in report.failed)
        if isinstance(searched, list) and doc.source in searched:
            rest = [other for other in searched if other != doc.source and self._stored(other) is not None]
            kept += (" It was among the documents chosen to search; the others still are." if rest else
                     " It was the only document chosen to search: every document is searched now.")
        return f"Deleted {literal(Path(doc.source).name)}: its passages are no longer searched." + kept

    def reingest_document(self, source: str | None) -> str:
        doc = self._stored(source)
        if doc is None:
            return CHOOSE_FIRST
        if not Path(doc.source).is_file():
            return f"{literal(Path(doc.source).name)} is no longer on disk; delete it from the library instead."
        try:
            # ragbot's own copy of an upload goes if it turns out to be a copy: no record of it
            report = self.bot.ingest([doc.source], wait=PAGE_WRITE_WAIT, remember_copies=not self._is_upload(doc.source))
        except RagbotError as exc:
            return f"{literal(Path(doc.source).name)} was not re-ingested: {exc}"
        except Exception as exc:
            now = self._stored(doc.source)
            if now is not None and (now.sha256, now.ingested_at) == (doc.sha256, doc.ingested_at):
                return unexpected_error_message(exc, f"{literal(Path(doc.source).name)} was not re-ingested")
            return unexpected_error_message(exc, f"{literal(Path(doc.source).name)} was re-ingested", done=True)
        failed = "; ".join(reason for path, reason in report.failed if path == doc.source)
        # (The ingest may also report other files: copies of this document stored or recorded.)
        for _, original in (d for d in report.duplicates if d[0] == doc.source):  # stored before copies were told apart
            if self._is_upload(doc.source):
                Path(doc.source).unlink(missing_ok=True)
            return (f"{literal(Path(doc.source).name)} has the same content as {literal(original)}, which is "
                    f"stored: this copy was removed from the library.")
        name = literal(Path(doc.source).name)
        if failed:
            return f"{name} was not re-ingested: {literal(failed)}"
        if doc.source in report.unchanged:  # "unchanged 1" read as if the button had done nothing
            return f"{name} is as it was when ingested (the same bytes, read the same way): its passages are up to date."
        return f"{name} was read again and its passages replaced: {report.summary()}"

    def export_conversation(self, conversation_id: str, owner: str) -> Path | None:
        """The conversation written as Markdown, named after its title, in a folder named by its
        id (a random 128-bit name: the page serves only exports, and only to who knows the id)."""
        try:
            text = self.conversations.export(conversation_id, owner)
            title = self.conversations.title(conversation_id, owner)
        except ConversationError:
            return None
        folder = self._export_folder(conversation_id)
        if folder is None:
            return None
        for old in folder.glob("*.md"):  # a rename since the last export
            old.unlink(missing_ok=True)
        name = safe_upload_name(re.sub(r"[\\/]", "_", title))[:80].strip(" .") or "conversation"
        path = folder / f"{name}.md"
        write_atomic(path, text)
        return path

    def delete_conversation(self, conversation_id: str, owner: str) -> None:
        """Hide the conversation from its owner and remove its export (ConversationError if it
        is not the owner's)."""
        self.conversations.delete(conversation_id, owner)
        folder = self._export_folder(conversation_id)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            (self.exports / f"conversation-{conversation_id}.md").unlink(missing_ok=True)  # as exported before 2026-12-04

    def _export_folder(self, conversation_id: str) -> Path | None:
        """exports/<id>, for an id the page made (32 hex digits); None for any other."""
        if not re.fullmatch(r"[0-9a-f]{32}", conversation_id or ""):
            return None
        return self.exports / conversation_id

    def _earlier_queries(self, history: list[dict], session: str) -> list[str]:
        """What the conversation's earlier turns searched, as searched_before gives them to
        RagBot.standalone_query (which reads the last): for an answer this session was given, its
        query and refusal as the answer log holds them; for one it was not given (an id a client
        sent from elsewhere), the question as shown, refused if its answer shows the refusal. A
        stopped answer (not stored) and an empty question count as no turn. Read from the last
        turn back, so a long conversation reads one or two."""
        turns: list[tuple[str, dict]] = []  # (question, the answer message shown after it)
        for m in history:
            if not isinstance(m, dict):
                continue
            if m.get("role") == "user":
                turns.append((message_text(m).strip(), {}))
            elif m.get("role") == "assistant" and turns and not turns[-1][1]:
                turns[-1] = (turns[-1][0], m)
        read: list[tuple[str, bool]] = []  # newest first
        for question, shown_answer_ in reversed(turns):
            answer_id = answer_id_of(shown_answer_)
            if not question or not answer_id:
                continue
            if self._was_issued(session, answer_id):
                try:
                    trace = self.bot.feedback.answer_trace(answer_id)
                    read.append((trace["retrieval_query"], trace["refused"]))
                except UnknownAnswerError:  # a data dir put back from a backup under the running page
                    read.append((question, False))
            else:
                read.append((question, is_refusal(message_text(shown_answer_))))
            if not read[-1][1]:
                break
        return searched_before(reversed(read))

    @staticmethod
    def _history_messages(history: list[dict]) -> list[dict]:
        """The last turns of the conversation, as plain chat messages for the prompt."""
        messages = [{"role": m.get("role"), "content": message_text(m)} for m in history
                    if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
        return [m for m in messages if m["content"]][-2 * HISTORY_TURNS :]

    def on_like(self, history: list[dict], index, liked, user: str | None = None, session: str = "") -> str:
        """Record a vote from the like event: +1, -1, or removal ('' / None)."""
        answer_id = answer_id_of(message_at(history, index))
        if not answer_id:
            return "This message has no recorded answer to rate."
        if not self._was_issued(session, str(answer_id)):
            return self._refuse_foreign(answer_id, session, "vote")
        vote = 1 if liked is True else -1 if liked is False else None
        current = self.bot.feedback.feedback(answer_id)
        self.bot.feedback.set_feedback(answer_id, vote, current.comment if current else None,
                                       current.correction if current else None, user)
        said = {1: "Thanks: marked helpful.", -1: "Thanks: marked unhelpful.", None: "Vote removed."}[vote]
        # A vote on a served correction changes what answers next (corrections.py): said, as
        # nothing on the page showed the correction withdrawn (helper-57's drive).
        served = self._served_correction(answer_id) if self.bot.settings.use_corrections else None
        if served is not None and not (current and current.correction):
            here, corrected = served
            if vote == -1 and here:
                said += (" The saved correction it showed is withdrawn: asked again, the documents answer, "
                         "unless you save a new correction for this answer.")
            elif vote == -1:  # another question: the correction keeps answering its own (corrections.py)
                said += (f" The saved correction it showed no longer answers this question: asked again, the "
                         f"documents answer. It still answers “{literal(corrected)}”; a thumbs-down on its "
                         f"answer to that question withdraws it.")
            elif vote is None and current is not None and current.vote == -1:
                said += " The saved correction it showed answers again."
        if vote is None and current is not None and current.correction and self.bot.settings.use_corrections:
            # Taking a vote back keeps what was written with it (helper-89 read the README's
            # command-line line as saying it withdrew the correction, and the page said nothing).
            said += (" The correction saved with this answer is kept and still answers this question: to withdraw "
                     "it, ask again and give its answer a thumbs-down.")
        return said

    def _served_correction(self, answer_id: str) -> tuple[bool, str] | None:
        """For an answer that was a saved correction, served (Answer.correction_of): whether it
        was served to the question it corrected (the same words, searched the same way:
        `corrections.feedback_key`), where feedback takes it back, and that question as the user
        wrote it. None for any other answer, or when the corrected answer is no longer logged."""
        try:
            served = self.bot.feedback.answer_trace(answer_id)
            if not served["params"].get("correction_of"):
                return None
            corrected = self.bot.feedback.answer_trace(served["params"]["correction_of"])
        except RagbotError:
            return None
        here = (feedback_key(served["retrieval_query"], served["question"])
                == feedback_key(corrected["retrieval_query"], corrected["question"]))
        return here, corrected["question"]

    def saved_feedback(self, history: list[dict], answer_id: str | None, session: str = "") -> str:
        """What is saved with the chosen answer (its comment and correction), said under the
        choice as text: the boxes are emptied once saved, so choosing an answer showed nothing
        of what it had (helper-57's drive). Empty when nothing is, or for an answer this
        session was not given."""
        if not answer_id or answer_id not in {i for _, i in self.answer_choices(history)} \
                or not self._was_issued(session, str(answer_id)):
            return ""
        current = self.bot.feedback.feedback(str(answer_id))
        saved = [f"{name} “{literal(text)}”" for name, text in
                 (("comment", current.comment), ("correction", current.correction)) if text] if current else []
        if not saved:
            return ""
        it = "it" if len(saved) == 1 else "them"
        return f"Saved with this answer: {' and '.join(saved)}. To change {it}, write the new text above and save again."

    def votes(self, history: list[dict] | None, session: str = "", clicked=None) -> list[str | None]:
        """The chat's thumbs for each assistant message of `history`, in order, as stored:
        "Like", "Dislike" or None (the Chatbot's feedback_value). Every path that changes the
        chat's messages sends them, or the page would keep showing a vote where its message
        was (a reopened conversation's, a replaced turn's). Only answers issued to this session
        show theirs: the ids come from the page. `clicked`: the message a vote was just given on
        (the like event's index); "" there, not None, when nothing is stored for it."""
        shown: list[str | None] = []
        at = message_index(history, clicked) if clicked is not None else None
        for i, message in enumerate(history or []):
            if not isinstance(message, dict) or message.get("role") != "assistant":
                continue
            answer_id = answer_id_of(message)
            current = self.bot.feedback.feedback(answer_id) if answer_id and self._was_issued(session, answer_id) \
                else None
            vote = {1: "Like", -1: "Dislike"}.get(current.vote) if current else None
            shown.append("" if vote is None and i == at else vote)
        return shown

    def on_comment(self, history: list[dict], comment: str, correction: str, user: str | None = None,
                   session: str = "", answer_id: str | None = None) -> str:
        """Attach a comment and/or corrected answer to the chosen answer of the conversation
        (`answer_id`, an id the page sends back and so checked like any other), else the latest."""
        comment, correction = (comment or "").strip(), (correction or "").strip()
        if not answer_id:
            answer_id = next((answer_id_of(m) for m in reversed(history or []) if answer_id_of(m)), None)
        if answer_id is None:
            return "Ask a question first."
        if not comment and not correction:
            return "Write a comment or a corrected answer first."
        if not self._was_issued(session, str(answer_id)):
            return self._refuse_foreign(answer_id, session, "comment")
        current = self.bot.feedback.feedback(answer_id)
        # A field left empty keeps what was saved before (the page empties both once saved).
        self.bot.feedback.set_feedback(answer_id, current.vote if current else None,
                                       comment or (current.comment if current else None),
                                       correction or (current.correction if current else None), user)
        note = self.saved_note(history, str(answer_id), bool(comment), bool(correction))
        if not correction:
            return note
        return (note + self._unknown_sources_note(str(answer_id), correction)
                + self._closer_source_note(str(answer_id), correction) + self._no_source_note(str(answer_id), correction))

    def _no_source_note(self, answer_id: str, correction: str) -> str:
        """A nudge when a correction that answers cites no passage at all, though the answer
        showed some: the hint under the box asks for [n], and a correction saved without one
        was taken without a word (helper-81's drive). It is kept as written; asked again, it is
        shown with no source, and `ragbot tune --retriever` cannot learn from it."""
        if marked_numbers(correction) or is_refusal(correction):
            return ""
        shown = len(self.bot.feedback.answer_trace(answer_id)["passages"])
        if not shown:
            return ""
        # The box is emptied once saved (app.save): the correction is written again, with its [n].
        return (f" It cites no passage: if one of that answer's passages ({literal('[1]')} to "
                f"{literal(f'[{shown}]')}) holds the answer, write the correction again citing it as "
                f"{literal('[n]')}, so that it is shown with its source." if shown > 1 else
                f" It cites no passage: if that answer's passage holds the answer, write the correction again "
                f"citing it as {literal('[1]')}, so that it is shown with its source.")

    def _closer_source_note(self, answer_id: str, correction: str) -> str:
        """A hint when the correction cites passages of the answer but another of its passages
        holds the sentence closest to what it says: the [n] may be a slip (the panel lists only
        the cited passages unless "Show all" is on), and the cited passage is what `ragbot tune
        --retriever` learns from. The correction is kept as written."""
        cited = self.bot.feedback.cited_chunks(answer_id, correction)  # the [n] that name a passage
        if not cited:
            return ""
        closest = self.bot.closest_passage(answer_id, correction)
        if closest is None or closest in cited:
            return ""
        return (f" Passage {literal(f'[{closest}]')} of that answer is closer to what your correction says than the "
                f"passage{'s' if len(cited) > 1 else ''} it cites: check the number (“Show all retrieved "
                f"passages” lists them all) and save again if it should cite {literal(f'[{closest}]')}.")

    def _unknown_sources_note(self, answer_id: str, correction: str) -> str:
        """A warning when the correction cites [n] that the answer did not show: those numbers
        name no passage, so they are not read as sources (the correction is kept as written)."""
        _, unknown = self.bot.feedback.passages_cited(answer_id, correction)
        if not unknown:
            return ""
        shown = len(self.bot.feedback.answer_trace(answer_id)["passages"])
        marks = ", ".join(literal(f"[{n}]") for n in unknown)  # the status line is Markdown
        # The Sources panel lists the cited passages only, unless Settings says to show all.
        had = ("had no passages" if not shown else f"had one passage, {literal('[1]')}" if shown == 1
               else f"had passages {literal('[1]')} to {literal(f'[{shown}]')} (“Show all retrieved passages” lists them)")
        one = len(unknown) == 1
        return (f" Its {marks} {'names' if one else 'name'} no passage: that answer {had}, so "
                f"{'it is' if one else 'they are'} not read as {'a source' if one else 'sources'}.")

    def saved_note(self, history: list[dict], answer_id: str, comment: bool, correction: bool) -> str:
        """What was saved, with which answer, and what a correction does from now on."""
        label = dict((i, text) for text, i in self.answer_choices(history)).get(answer_id)
        what = " and ".join(w for w, given in (("comment", comment), ("correction", correction)) if given)
        where = "with the chosen answer"
        if label:  # "2. When were GANs introduced?"
            n, question = label.split(". ", 1)
            where = f"with answer {n} (“{literal(question)}”)"
        note = f"{SAVED}your {what} {where}."
        if correction and self.bot.settings.use_corrections:
            note += self._correction_reach(answer_id)
        return note

    def _correction_reach(self, answer_id: str) -> str:
        """Which questions a correction answers from now on. A follow-up was searched together
        with what the conversation asked before it: its correction answers the same words asked on
        their own (compared by the words alone), and asked after a question, only after one like
        that (compared as searched: corrections.py). helper-60 expected it in a new conversation,
        which, before the words alone were compared (docs/benchmarks.md §42), it did not get."""
        trace = self.bot.feedback.answer_trace(answer_id)
        asked, searched = trace["question"], trace["retrieval_query"]
        if searched == asked or not searched.endswith(asked):
            return " Questions that ask the same get your correction from now on."
        before = searched[: -len(asked)].strip()
        return (f" That question was read together with what the conversation asked before it (“{literal(before)}”): "
                "asked on its own, or after a question like that, it gets your correction from now on.")

    @staticmethod
    def answer_choices(history: list[dict]) -> list[tuple[str, str]]:
        """The conversation's answers as (label, answer id), latest first: what a comment or
        correction can be attached to."""
        choices, question = [], ""
        for message in history or []:
            if not isinstance(message, dict):
                continue
            if message.get("role") == "user":
                question = message_text(message)
            elif answer_id_of(message):
                choices.append((f"{len(choices) + 1}. {question[:70]}", answer_id_of(message)))
        return list(reversed(choices))

    @staticmethod
    def _refuse_foreign(answer_id, session: str, what: str) -> str:
        log.warning("refused a %s for answer %.64r: not an answer this session was given", what, str(answer_id))
        return "Not saved: that answer was not given in this session."

    def on_upload(self, files: list[str] | None, stored: list[str] | None = None) -> Iterator[str]:
        """Ingest uploaded files with the same code and messages as `ragbot ingest`; the sources
        of the uploads stored (added or updated) are appended to `stored` before the last message."""
        if not files:
            yield "No file chosen."
            return
        self.uploads.mkdir(parents=True, exist_ok=True)
        accepted, problems, renamed = [], [], {}  # renamed: where an upload is kept -> the name it was sent with
        for path in files:
            source = Path(path)
            name = safe_upload_name(source.name)
            if kind_of(Path(name)) is None:
                problems.append(f"{name}: unsupported file type; supported: {supported_suffixes()}")
                _discard(source)
                continue
            if source.stat().st_size > self.max_upload_bytes:
                # MB as the upload box and Gradio's own limit count it: 2**20 bytes.
                problems.append(f"{name}: larger than the {self.max_upload_bytes // 2**20} MB upload limit")
                _discard(source)
                continue
            target, fresh = _keep_upload(source, self.uploads, name)
            _discard(source)  # Gradio's own copy: documents live in the data dir only
            if name != source.name:  # shortened, or characters a file name here cannot hold replaced
                renamed[str(target)] = source.name
            accepted.append((target, fresh))
        lines = [f"failed: {p}" for p in problems]
        if accepted:
            names = ", ".join(t.name for t, _ in accepted)
            yield "\n".join(lines + [f"Ingesting {len(accepted)} file(s): {names}…"])
            try:
                # An upload found to be a copy is not kept (below), so it is not recorded as one.
                report = self.bot.ingest([t for t, _ in accepted], wait=PAGE_WRITE_WAIT, remember_copies=False)
            except Exception as exc:
                kept = [t.name for t, _ in accepted if self._stored(str(t)) is not None]  # before a fault of ours
                for target, fresh in accepted:
                    if fresh and target.name not in kept:  # not ingested: ragbot's copy goes (an earlier
                        target.unlink(missing_ok=True)       # upload under that name stays)
                if isinstance(exc, RagbotError):
                    said = f"failed: {exc}"
                elif kept:
                    said = unexpected_error_message(exc, f"Stored {', '.join(kept)}", done=True)
                else:
                    said = unexpected_error_message(exc, f"Not ingested: {names}")
                yield "\n".join(lines + [said])
                return
            new = {str(t) for t, fresh in accepted if fresh}
            for path, reason in report.failed:
                if path in new:  # an earlier upload under another name is never touched
                    Path(path).unlink(missing_ok=True)
                lines.append(f"failed: {Path(path).name}: {reason}")
            sent = {str(t) for t, _ in accepted}  # (copies of a changed document may be reported too)
            for path, original in (d for d in report.duplicates if d[0] in sent):
                if path in new:  # not stored, so ragbot's copy of it goes too
                    Path(path).unlink(missing_ok=True)
                lines.append(f"not stored twice: {Path(path).name} has the same content as {original}, "
                             f"which is stored; this upload was not kept")
            for kind, paths in (("added", report.added), ("updated", report.updated),
                                ("already stored as it is, its passages up to date", report.unchanged)):
                if paths:
                    lines.append(f"{kind}: " + ", ".join(Path(p).name for p in paths))
            if report.added or report.updated:  # counts and speed: "0 chunks in 0.0s" said nothing
                lines.append(report.summary())
            for path, encoding in report.guessed_encodings:
                if path in sent:
                    lines.append(f"read as {encoding}: {Path(path).name}: {guessed_note(encoding)}")
            for path in report.added + report.updated + report.unchanged:  # the name a stored upload has
                if path in renamed:
                    lines.append(f"renamed: {renamed[path]} is stored as {Path(path).name}")
            lines += self._same_name_notes([p for p in report.added if p in sent])
            if stored is not None:
                stored.extend(p for p in report.added + report.updated if p in sent)
        yield "\n".join(lines)


def gradio_upload_dir() -> Path:
    import tempfile

    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def _discard(path: Path) -> None:
    """Remove Gradio's temporary copy of an upload (and the folder Gradio made for it); a path
    outside Gradio's upload folder is left alone."""
    try:
        path = Path(path).resolve()
        if not path.is_relative_to(gradio_upload_dir()):
            return
        path.unlink(missing_ok=True)
        path.parent.rmdir()  # only when empty
    except OSError:
        pass
