"""RagBot: the Python API behind the CLI, the UI, evaluation and notebooks.

    bot = RagBot.open("~/my-ragbot")      # or RagBot.open() for RAGBOT_HOME / the default dir
    bot.ingest(["docs/"])
    bot.search("what is RAG?", k=5)
    bot.ask("what is RAG?").answer

Models load lazily, once per RagBot. Writes (ingest, remove) hold a lock on the data dir so two
processes never interleave; reads notice another process's writes and reload the index.

Which embedder ranks passages is the database's choice (store.py): the shipped one, or one that
`ragbot tune --retriever` tuned on liked answers. A tuned one only orders the passages; every
score shown or compared with a threshold is the shipped embedder's cosine.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragbot.answer.generation import (
    HISTORY_TURNS,
    REFUSAL,
    build_prompt,
    check_citations,
    cited_first,
    citations_for,
    cited_numbers,
    is_refusal,
    renumber_citations,
    settled_sentences,
    strip_citation_marks,
    strip_invalid_citations,
)
from ragbot.answer.answerability import AnswerabilityCheck
from ragbot.answer.corrections import Correction, CorrectionMemory, Match, MatchThreshold
from ragbot.errors import BusyError, ConfigError, DiskFullError, RagbotError
from ragbot.answer.evidence import (CoverageScorer, EmbeddingScorer, Evidence, QuestionLog, SentenceScorer, candidates,
                                   compose, question_idf, rank_both, turn_rank)
from ragbot.learn.feedback import FeedbackLog
from ragbot.storage.files import state_lock, unwritable
from ragbot.retrieve.index import VectorIndex
from ragbot.retrieve.lexical import LexicalIndex, fuse, fuse_scores, with_cosines
from ragbot.ingest.abbreviations import MAX_CHARS as ABBREVIATION_CHARS
from ragbot.ingest.abbreviations import learn as learn_abbreviations
from ragbot.ingest.ingester import Ingester, IngestReport, ProgressFn, save_generation_index
from ragbot.settings import Settings, load_settings
from ragbot.storage.store import Store
from ragbot.types import Answer, Passage


# Candidates each ranking gives the hybrid fusion: deeper than top_k, so a chunk second in one
# ranking and absent from the other's top few can still win.
FUSION_DEPTH = 50
# How long an ingest or remove waits for another process's to finish before it gives up.
WRITE_WAIT_SECONDS = 600.0
# A second turn's rank among the user's other questions (RagBot._comparison_questions) is taken over
# TURN_RANK_QUESTIONS of them spread over the whole log (steps of 0.01, one batch of embeddings:
# the newest alone made the rank depend on what was asked last), and only once the log holds
# TURN_RANK_MIN_QUESTIONS (steps of 0.05).
TURN_RANK_QUESTIONS = 100
TURN_RANK_MIN_QUESTIONS = 20


def searched_before(turns: Iterable[tuple[str, bool]]) -> list[str]:
    """What a conversation's earlier turns searched, oldest first, for RagBot.standalone_query
    (which joins the next turn with the last): `turns` are each earlier turn's (retrieval query,
    refused). A refused turn (a question on another subject, or one the documents do not answer)
    is left out, so the next turn is joined with the subject the conversation last found; when
    every turn was refused, the last one stays (a first question refused just under the
    threshold can still be the next one's subject, docs/benchmarks.md §36; standalone_query
    searches a new subject alone)."""
    turns = list(turns)
    return [query for query, refused in turns if not refused] or [query for query, _ in turns[-1:]]


def ordering_query(retrieval_query: str, turn: str, history: Sequence[dict[str, str]]) -> str:
    """What a turn's sentences are ordered by (evidence.rank_both's `order_by`): a question of
    `history` and the turn, when `retrieval_query` ends with the two, as it does when a subject
    followed over several turns is searched as one chain of questions (searched_before); else the
    retrieval query. The chain still finds the passages, chooses the document the turn is about
    and decides whether to answer, but its words lean on its first question: ordered by it, "How
    is it trained?" after two turns on VAEs quoted the VAE's definition (docs/benchmarks.md §37).
    The newest question the query ends with is taken, so the turns it was not joined with
    (refused, stopped, blank) are passed over, within the history the callers pass (the last
    HISTORY_TURNS exchanges; beyond them, and for a chain cut inside its last question to fit the
    embedder, which happens only when the turn alone nearly fills its input, the retrieval query
    itself). The history comes from the client on the chat page: whatever it holds, the result is
    the retrieval query or a suffix of it."""
    def flat(text: str) -> str:
        return " ".join(text.split())

    chain = flat(retrieval_query)
    for message in reversed(history):
        asked = flat(message.get("content") or "")
        if message.get("role") == "user" and asked and chain.endswith(f" {asked} {flat(turn)}"):
            return f"{asked} {flat(turn)}"
    return retrieval_query


@dataclass
class Conversation:
    """The turns of one conversation as the next turn needs them: what each searched, whether it
    was refused, and the messages for the prompt's history. For `ragbot ask`'s interactive chat
    and evaluation rows (RagBot.next_turn); the chat page reads the same from its history."""

    turns: list[tuple[str, bool]] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)

    def add(self, question: str, query: str, answer: Answer) -> None:
        self.turns.append((query, answer.refused))
        self.messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.answer}]

    @property
    def searched(self) -> list[str]:
        return searched_before(self.turns)

    @property
    def history(self) -> list[dict[str, str]]:
        """The last HISTORY_TURNS exchanges, as the generate mode's prompt takes them."""
        return self.messages[-2 * HISTORY_TURNS :]


class RagBot:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.new_data_dir = not settings.data_dir.exists()  # made by this open: the CLI says so (a typo?)
        try:
            # The user's documents, questions and votes: a data dir ragbot makes is its owner's
            # alone (its folders above it are made as usual; one that exists keeps its mode).
            settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:  # a file of that name, a folder that cannot be made: said, not a traceback
            reason = "a file, not a folder" if settings.data_dir.is_file() else exc.strerror or str(exc)
            raise ConfigError(f"cannot use {settings.data_dir} as the data dir: {reason}") from None
        reason = unwritable(settings.data_dir)
        if reason:
            raise ConfigError(f"cannot use {settings.data_dir} as the data dir: {reason}")
        self.store = Store(settings.db_path)
        self.feedback = FeedbackLog(self.store)
        self._embedder = None
        self._generator = None
        self._scorer: SentenceScorer | None = None
        self._ranker: SentenceScorer | None = None  # the evidence ranking (evidence_ranking setting)
        self._question_log: QuestionLog | None = None  # the questions asked before (answer log)
        self._index: VectorIndex | None = None
        self._index_generation = -1
        self._index_ranking: str | None = None  # the tuned embedder whose vectors _index holds (None: shipped)
        self._tuned_embedders: dict[str, object] = {}  # loaded, by version
        self._shipped_ranking = False  # True: search as if no tuned embedder ranked (with_shipped_ranking)
        self._lexical: tuple[int, LexicalIndex] | None = None
        self._abbreviations: tuple[int, frozenset[str]] | None = None  # (generation, words)
        self._abbreviations_lock = threading.Lock()  # one learning at a time, for all threads
        self._memories: dict[str | None, tuple[tuple, CorrectionMemory]] = {}  # per user
        self._load_lock = threading.RLock()
        # While this process writes the next generation, its searches read the one it started from.
        self._writing_here = False

    @classmethod
    def open(cls, data_dir: str | Path | None = None, **overrides) -> "RagBot":
        return cls(load_settings(data_dir, **overrides))

    def close(self) -> None:
        self.store.close()

    # -- models and index, loaded on first use -----------------------------------------------

    @property
    def embedder(self):
        with self._load_lock:
            if self._embedder is None:
                from ragbot.retrieve.embed import Embedder

                embedder = Embedder.load(self.settings)
                self.store.claim_embedder(embedder.name, embedder.dim)
                self._embedder = embedder
            return self._embedder

    @property
    def generator(self):
        with self._load_lock:
            if self._generator is None:
                from ragbot.generators import load_generator

                self._generator = load_generator(self.settings)
            return self._generator

    def with_settings(self, **overrides) -> "RagBot":
        """A RagBot on the same data dir with some settings changed, sharing the loaded embedder."""
        from ragbot.settings import with_overrides

        other = RagBot(with_overrides(self.settings, **overrides))
        other._embedder = self._embedder
        return other

    def with_shipped_ranking(self) -> "RagBot":
        """A RagBot on the same data dir whose searches rank with the shipped embedder, whatever
        tuned one ranks (`ragbot eval retrieval` compares the two). For reading only."""
        other = self.with_settings()
        other._shipped_ranking = True
        return other

    def use_generator(self, generator) -> None:
        """Answer with `generator` from now on (the tuning gate swaps candidate and active)."""
        with self._load_lock:
            self._generator = generator

    def _ranking_embedder(self, tuned: str | None):
        """The tuned embedder `tuned` (loaded once) when it ranks this bot's searches, else None:
        none is tuned, or BM25 alone ranks."""
        return self.tuned_embedder(tuned) if tuned is not None and self.settings.retrieval != "bm25" else None

    def tuned_embedder(self, version: str):
        """The tuned embedder `version` (EmbedderRegistry), loaded once."""
        with self._load_lock:
            if version not in self._tuned_embedders:
                from ragbot.learn.registry import EmbedderRegistry
                from ragbot.retrieve.embed import Embedder

                info = EmbedderRegistry(self.settings.embedders_dir).get(version)
                self._tuned_embedders[version] = Embedder.load_tuned(self.settings, info.path, version)
            return self._tuned_embedders[version]

    def index_dir_of(self, ranking: str | None) -> Path:
        """Where the FAISS index files of tuned embedder `ranking`'s vectors live (None: the
        shipped embedder's)."""
        return self.settings.index_dir if ranking is None else self.settings.index_dir / f"embedder-{ranking}"

    def _current_index(self) -> VectorIndex:
        """The FAISS index matching the database's generation, loaded or rebuilt as needed: of
        the vectors of the embedder that ranks (store.py)."""
        with self._load_lock:
            generation, ranking = self.store.ranking_state()
            if self._index is not None and (generation == self._index_generation or self._writing_here):
                return self._index
            ranking = None if self._shipped_ranking else ranking
            index = VectorIndex.load(self.index_dir_of(ranking), generation, self.embedder.dim)
            if index is None:  # first run, or a write was interrupted before the index was saved
                generation, ranking, ids, vectors, missing = self.store.index_snapshot(self._shipped_ranking,
                                                                                      self.embedder.dim)
                if missing:  # it ranks, yet some chunks have no vector by it: no commit leaves that
                    raise RagbotError(f"{self.settings.db_path}: the tuned embedder {ranking} has no vector of "
                                      f"{missing} chunks; run `ragbot doctor --repair`")
                index = VectorIndex(self.embedder.dim)
                index.add(ids, vectors)
                if generation == self.store.generation() and not self._shipped_ranking:
                    _save_if_room(index, self.index_dir_of(ranking), generation)
            self._index, self._index_generation, self._index_ranking = index, generation, ranking
            return index

    def index_from_store(self, ranking: str | None) -> VectorIndex | None:
        """An exact index of every chunk's vector by tuned embedder `ranking` (None: the shipped
        one), or None when the database lacks some of them (never embeds: that is an activation's
        work). For a comparison, or a switch under the write lock; searches use _current_index."""
        index = VectorIndex(self.embedder.dim)
        if ranking is None:
            index.add(*self.store.all_vectors(index.dim))
            return index
        if len(self.store.chunks_without_ranking_vectors(ranking)):
            return None
        index.add(*self.store.ranking_vectors(ranking, index.dim))
        return index

    def embed_for_ranking(self, version: str, progress: Callable[[int, int], None] | None = None) -> int:
        """Store tuned embedder `version`'s vectors of every chunk that lacks them; how many it
        embedded. Safe while others write: each vector is of a chunk's stored text."""
        from ragbot.ingest.ingester import embedding_input

        missing = self.store.chunks_without_ranking_vectors(version)
        if not len(missing):
            return 0
        embedder, done = self.tuned_embedder(version), 0
        for start in range(0, len(missing), 512):
            rows = self.store.embedding_rows(missing[start: start + 512])
            texts = [embedding_input(embedder, title, section, text, n) for _, title, section, text, n in rows]
            self.store.add_ranking_vectors(version, [r[0] for r in rows],
                                           embedder.encode(texts, batch_size=self.settings.embed_batch_size))
            done += len(rows)
            if progress:
                progress(done, len(missing))
        return done

    def rank_with(self, version: str | None, progress: Callable[[int, int], None] | None = None,
                  on_wait: Callable[[str], None] | None = None) -> str | None:
        """Make tuned embedder `version` (None: the shipped one) rank passages from the next
        generation on; returns it. Embeds the chunks it has no vectors of first (minutes on a
        large corpus), mostly before taking the write lock."""
        if version is not None:
            self.tuned_embedder(version)  # a missing or unreadable version fails here, before any work
            self.embed_for_ranking(version, progress)
        with self._writing_lock(on_wait):
            current, history = self.store.ranking_embedder(), self.store.ranking_history()
            if version != current:
                self._switch_ranking(version, [*history, current][-10:])
        return version

    def rollback_ranking(self, progress: Callable[[int, int], None] | None = None,
                         on_wait: Callable[[str], None] | None = None) -> str | None:
        """Make what ranked before the current embedder rank again; returns it (None: shipped)."""
        history = self.store.ranking_history()
        if not history:
            raise RagbotError("nothing to roll back to: no earlier ranking embedder is recorded")
        if history[-1] is not None:
            self.tuned_embedder(history[-1])
            self.embed_for_ranking(history[-1], progress)
        with self._writing_lock(on_wait):
            history = self.store.ranking_history()
            if not history:
                raise RagbotError("nothing to roll back to: no earlier ranking embedder is recorded")
            self._switch_ranking(history[-1], history[:-1])
            return history[-1]

    def drop_unkept_ranking_vectors(self, on_wait: Callable[[str], None] | None = None) -> None:
        """Delete the vectors of tuned embedders that neither rank nor are the rollback target
        (a candidate the gate kept out); they are embedded again if chosen later."""
        with self._writing_lock(on_wait):
            self._drop_unkept()

    def _writing_lock(self, on_wait: Callable[[str], None] | None = None, wait: float = WRITE_WAIT_SECONDS):
        """The data dir's write lock (one ingest, remove, repair or switch of the ranking at a
        time, across processes; a second one waits up to `wait` seconds, then BusyError)."""
        return state_lock(self.settings.data_dir / "write.lock", f"the data dir {self.settings.data_dir}",
                          timeout=wait, on_wait=on_wait)

    def _drop_unkept(self) -> None:
        """(The write lock held.) Drop the vectors of tuned embedders that neither rank nor are
        the rollback target, and the index files no generation can use again."""
        current, history = self.store.ranking_embedder(), self.store.ranking_history()
        self.store.drop_ranking_vectors([v for v in (current, history[-1] if history else None) if v is not None])
        for folder in self.settings.index_dir.glob("embedder-*"):
            if folder.name != f"embedder-{current}":
                # Whatever reads these reads an older generation; it loaded the file already, or
                # rebuilds from the database (a save for an old generation is skipped).
                shutil.rmtree(folder, ignore_errors=True)

    def _switch_ranking(self, version: str | None, history: list[str | None]) -> None:
        """(The write lock held, `version`'s vectors stored.) Let `version` rank from a new
        generation, and build that generation's indexes now, so other processes find them."""
        self.check_not_replaced()
        if version is not None:
            self.embed_for_ranking(version)  # chunks ingested meanwhile
        self.store.set_ranking_embedder(version, history)
        self._drop_unkept()
        with self._load_lock:
            # Complete: the write lock is held and its vectors are stored.
            index, _ = save_generation_index(self.store, self.settings, self.index_from_store(version),
                                             self.index_dir_of(version))
            self._index, self._index_generation, self._index_ranking = index, self.store.generation(), version
            if self.settings.uses_bm25:
                self._current_lexical()  # the new generation's, ready for other processes

    def _current_lexical(self) -> LexicalIndex:
        """The BM25 index matching the database's generation, loaded or rebuilt as needed."""
        with self._load_lock:
            generation = self.store.generation()
            if self._lexical is not None and (self._lexical[0] == generation or self._writing_here):
                return self._lexical[1]
            index = self._lexical_of(generation)
            self._lexical = (generation, index)
            return index

    def _lexical_of(self, generation: int) -> LexicalIndex:
        """The BM25 index of `generation` (the database's now): loaded, else built and saved.
        A build reuses the term counts of the index this process last had (lexical.py), so
        after an ingest only its new chunks are read and tokenized."""
        index = LexicalIndex.load(self.settings.index_dir, generation, self.embedder)
        if index is None:
            # Not across a restore: the restored database numbers its chunks anew.
            previous = self._lexical[1] if self._lexical is not None and not self.store.replaced() else None
            index = LexicalIndex.build(self.store.chunk_ids(), lambda ids: list(self.store.chunks(ids).values()),
                                       self.embedder, previous)
            if generation == self.store.generation():
                _save_if_room(index, self.settings.index_dir, generation)
        return index

    def _search_snapshot(self, lexical: bool) -> tuple[VectorIndex, LexicalIndex | None, str | None]:
        """The FAISS index and (when asked) the BM25 index of one and the same generation, and
        the tuned embedder whose vectors the FAISS index holds (None: the shipped one): another
        process may commit an ingest between loading the two."""
        with self._load_lock:
            for _ in range(5):
                index = self._current_index()
                if not lexical:
                    return index, None, self._index_ranking
                words = self._current_lexical()
                if self._lexical is not None and self._lexical[0] == self._index_generation:
                    return index, words, self._index_ranking
            raise BusyError(f"{self.settings.data_dir} changed five times while searching; try again")

    def abbreviations(self) -> frozenset[str]:
        """The abbreviations the stored documents write ("dr", "nr"), which end no sentence when
        their passages are cut into sentences to quote (ingest/abbreviations.py). Learned by each
        write that changes the chunks and kept with the chunks' signature (Store.chunk_signature),
        so a new generation that changed no chunk (a switch of the ranking embedder) reads them as
        they are; a data dir whose record does not match (written by an older ragbot, or its
        chunks changed by a repair) has them learned here, once per process and generation. While
        this process writes, its answers read what they read before (as its searches do). A
        failure to learn (NLTK missing, say) leaves sentences split as before, with a warning."""
        held = self._abbreviations
        if held is not None and (self._writing_here or held[0] == self.store.generation()):
            return held[1]
        with self._abbreviations_lock:  # one thread learns; the others wait and read it
            generation = self.store.generation()
            held = self._abbreviations
            if held is not None and held[0] == generation:
                return held[1]
            signature = self.store.chunk_signature()
            words = _stored_abbreviations(self.store.meta("abbreviations"), signature)
            if words is None:
                words = self._learned_abbreviations()
            found = frozenset(words)
            self._abbreviations = (generation, found)
            return found

    def _learned_abbreviations(self) -> list[str]:
        try:
            return learn_abbreviations(self._chunk_text_sample())
        except Exception as exc:  # noqa: BLE001 - sentences are then split as before; nothing is lost
            warnings.warn(f"the documents' abbreviations were not learned ({type(exc).__name__}: {exc}); "
                          f"sentences are split without them", stacklevel=3)
            return []

    def _chunk_text_sample(self, max_chars: int = ABBREVIATION_CHARS) -> list[str]:
        """Stored chunks' texts, about `max_chars` of them: all of a small library, a random
        sample of a larger one (read a thousand chunks at a time, so a large one is not read whole)."""
        ids = [int(i) for i in self.store.chunk_ids()]
        random.Random(0).shuffle(ids)
        texts, total = [], 0
        for start in range(0, len(ids), 1000):
            for text in self.store.chunk_texts(ids[start:start + 1000]).values():
                texts.append(text)
                total += len(text)
                if total >= max_chars:
                    return texts
        return texts

    def _learn_abbreviations(self, generation: int) -> None:
        """Learn the abbreviations of the chunks of `generation`, written now, and keep them with
        the chunks' signature. The documents are committed already: a failure here costs only the
        abbreviations (a warning; the next answer learns them in memory)."""
        words = self._learned_abbreviations()
        try:
            with self.store.transaction():
                self.store.set_meta("abbreviations", json.dumps({"chunks": self.store.chunk_signature(),
                                                                 "words": words}))
        except Exception as exc:  # noqa: BLE001 - a full disk, say: the ingest itself has succeeded
            warnings.warn(f"the documents' abbreviations were not saved ({exc})", stacklevel=3)
            return
        self._abbreviations = (generation, frozenset(words))

    def check_not_replaced(self) -> None:
        """BusyError if the database file is no longer the one this process opened (a restore put
        another in its place): nothing may be written to, or served from, the one moved aside."""
        if self.store.replaced():
            raise BusyError(f"{self.settings.db_path} was replaced since this process opened it (a restore?); "
                            f"run the command again, or restart `ragbot chat`")

    @contextmanager
    def _writing(self, on_wait: Callable[[str], None] | None = None,
                 wait: float = WRITE_WAIT_SECONDS) -> Iterator[Ingester]:
        """Hold the data dir's write lock (one ingest, remove or repair at a time, across
        processes; a second one waits for the first, up to `wait` seconds, then BusyError).

        The next generation is built on a copy of the index: searches in this process go on
        reading the generation the write started from (an immutable snapshot, never changed
        under them), and the new one replaces it once the write has succeeded."""
        with self._writing_lock(on_wait, wait):
            self.check_not_replaced()
            with self._load_lock:
                before = self._current_index()
                ranking = self._index_ranking
                if self.settings.uses_bm25:
                    self._current_lexical()  # so searches meanwhile have the BM25 of the same generation
                self._writing_here = True
            committed = False
            try:
                ingester = Ingester(self.settings, self.store, before.copy(), self.embedder,
                                    ranking=None if ranking is None else (ranking, self.tuned_embedder(ranking)),
                                    index_dir=self.index_dir_of(ranking))
                started_at = self.store.generation()
                yield ingester
                generation = self.store.generation()
                if generation != started_at:  # the chunks changed: their abbreviations are learned again
                    started = time.perf_counter()
                    self._learn_abbreviations(generation)
                    ingester.derived_seconds += time.perf_counter() - started
                lexical = None
                if self.settings.uses_bm25:
                    # The new generation's BM25 index, built while the write lock is held, so
                    # searches in another process find it ready, and outside the load lock, so
                    # searches here go on reading the generation before it meanwhile.
                    started = time.perf_counter()
                    held = self._lexical
                    # A write that changed nothing keeps its generation, and the index in memory.
                    lexical = held[1] if held is not None and held[0] == generation else self._lexical_of(generation)
                    ingester.derived_seconds += time.perf_counter() - started
                with self._load_lock:
                    self._index, self._index_generation = ingester.index, generation
                    if lexical is not None:
                        self._lexical = (generation, lexical)
                    self._writing_here = False
                committed = True
                if generation != started_at:  # documents removed or replaced left pages free
                    self.store.release_free_pages()
            finally:
                if not committed:
                    with self._load_lock:
                        self._writing_here = False  # the next search loads (or rebuilds) what was committed

    # -- writing ----------------------------------------------------------------------------

    def ingest(self, paths: Sequence[str | Path], prune: bool = False, progress: ProgressFn | None = None,
               on_wait: Callable[[str], None] | None = None, wait: float = WRITE_WAIT_SECONDS,
               store_copies: bool = False, remember_copies: bool = True) -> IngestReport:
        with self._writing(on_wait, wait) as ingester:
            report = ingester.ingest(paths, prune=prune, progress=progress, store_copies=store_copies,
                                     remember_copies=remember_copies)
        report.seconds += ingester.derived_seconds  # the BM25 index and abbreviations are part of the ingest
        return report

    def remove(self, paths: Sequence[str | Path], on_wait: Callable[[str], None] | None = None,
               wait: float = WRITE_WAIT_SECONDS) -> IngestReport:
        """Remove the documents at or under `paths`; see Ingester.remove for the report."""
        with self._writing(on_wait, wait) as ingester:
            report = ingester.remove(paths)
        report.seconds += ingester.derived_seconds
        return report

    def never_held_documents(self) -> bool:
        """Whether no document was ever stored or removed here: none is stored, and the store's
        generation is still 0 (every store and every removal moves it on). A library the user
        emptied is not a first run (helper-74: removing every document, then asking, ingested
        the shipped corpus into it again)."""
        return self.store.counts()[0] == 0 and self.store.generation() == 0

    def ensure_default_corpus(self, progress: ProgressFn | None = None) -> IngestReport | None:
        """Ingest the shipped corpus into a data dir that never held a document."""
        corpus = self.settings.default_corpus
        if not self.never_held_documents() or corpus is None or not Path(corpus).is_dir():
            return None
        return self.ingest([corpus], progress=progress)

    # -- reading ----------------------------------------------------------------------------

    def search(self, query: str, k: int | None = None, sources: Sequence[str] | None = None) -> list[Passage]:
        return self.batch_search([query], k, sources)[0]

    def batch_search(self, queries: Sequence[str], k: int | None = None,
                     sources: Sequence[str] | None = None) -> list[list[Passage]]:
        """The k best passages for each query, by the `retrieval` setting: dense (FAISS), bm25,
        or hybrid (both fused, lexical.py). A passage's score is always its cosine with the
        query, whichever ranking found it, so thresholds on it mean one thing. With `sources`,
        only those documents are searched (None: all of them)."""
        k = k or self.settings.top_k
        vectors = self.embedder.encode(list(queries), batch_size=self.settings.embed_batch_size)
        index, lexical_index, tuned = self._search_snapshot(self.settings.retrieval != "dense")
        only = None if sources is None else self.store.chunk_ids_of(sources)
        ranking_vectors = vectors  # a tuned embedder ranks with its own query vectors (bm25 ranks without)
        if (ranking := self._ranking_embedder(tuned)) is not None:
            ranking_vectors = ranking.encode(list(queries), batch_size=self.settings.embed_batch_size)
        rankings = self.rank(queries, ranking_vectors, index, lexical_index, k, only)
        wanted = sorted({c for row in rankings for c in row[:k]})
        found = self.store.chunks(wanted)
        # The shipped embedder's vectors give every score, whichever embedder ranked: from the
        # index, or while a tuned one ranks, from the database (a chunk removed meanwhile is left out).
        shipped = self.store.vectors_of(wanted, index.dim) if tuned is not None else None
        results = []
        for vector, ranking in zip(vectors, rankings):
            ranking = [c for c in ranking[:k] if c in found and (shipped is None or c in shipped)]
            if shipped is None and ranking:  # BM25's generation may hold a chunk this index has not got yet
                ranking = [c for c, held in zip(ranking, index.holds(np.asarray(ranking, dtype=np.int64))) if held]
            if not ranking:
                cosines = []
            else:
                cosines = (index.vectors(ranking) if shipped is None else np.stack([shipped[c] for c in ranking])) @ vector
            passages = []
            for chunk_id, score in zip(ranking, cosines):
                chunk = found[chunk_id]
                passages.append(chunk.as_passage(float(score), rank=len(passages) + 1, search_rank=len(passages) + 1))
            results.append(passages)
        return results

    def rank(self, queries: Sequence[str], vectors: np.ndarray, index: VectorIndex,
             lexical_index: LexicalIndex | None, k: int, only: np.ndarray | None = None) -> list[list[int]]:
        """The k best chunk ids for each query by the `retrieval` setting: dense (the FAISS
        `index`, searched with the query `vectors` of the embedder whose vectors it holds),
        bm25, or hybrid (both fused by the `fusion` setting, lexical.py)."""
        mode = self.settings.retrieval
        depth = k if mode == "dense" else max(k, FUSION_DEPTH)
        dense_scores, dense_ids = index.search(vectors, depth, only)
        rankings = [[int(i) for i in row if i >= 0] for row in dense_ids]
        if lexical_index is not None and mode != "dense":
            weigh = self._question_weights if self.settings.lexical_question_weights \
                and self.settings.question_log_weights else None
            lexical = lexical_index.search(queries, depth, only, weigh)
            if mode == "bm25":
                rankings = [[c for c, _ in hits][:k] for hits in lexical]
            elif self.settings.fusion == "scores":
                rankings = [fuse_scores(with_cosines(index, vector, ranking, scores, hits), hits,
                                        self.settings.lexical_weight, k)
                            for vector, ranking, scores, hits in zip(vectors, rankings, dense_scores, lexical)]
            else:
                weights = (1.0, self.settings.lexical_weight)
                rankings = [fuse([dense, [c for c, _ in hits]], weights, k) for dense, hits in zip(rankings, lexical)]
        return rankings

    def warm_up(self) -> None:
        """Load now what the first answer would otherwise wait for: the embedder, the search
        indexes of the database's generation (built and saved if missing, as a first search
        would), the sentence ranker with the earlier questions it learns from (the answer log,
        read once), the documents' abbreviations (learned here for a data dir that has none kept),
        the corrections given without a login, and in the generate mode the generator. No answer
        is logged. The chat page calls it before it serves."""
        probe = "warm-up"
        self.search(probe)
        if self.settings.answer_mode == "generate":
            self.generator
        self.evidence_ranker.score(probe, [probe])
        self.abbreviations()
        self.correction_memory()

    def standalone_query(self, searched: Sequence[str], question: str) -> str:
        """The retrieval query for a question asked after turns that searched `searched` (the
        retrieval queries of the conversation's answered turns, oldest first, as searched_before
        gives them; only the last is read).

        Whether the turn continues the subject before it is told from the whole library, also
        when the search is then kept to chosen documents: within them, a question on another
        subject finds nothing its check accepts alone, and was searched joined with the
        question before, whose sentences then answered it ("Which roofing company did the board
        choose?" after a question on a bike warranty, with the warranty chosen, quoted the
        warranty's frame sentence: helper-89's drive). The answer is then looked for in the
        chosen documents, with the query told here.

        A follow-up ("Who proposed it?") names its subject in a turn before, so it is also
        searched together with what the last answered turn searched: a third turn ("Why are they
        slow?" after "What is a diffusion model?" and "Which paper described the method?") keeps
        the subject the second turn was joined with, and a turn after a refused one (an off-topic
        question) is joined with the subject before it (docs/benchmarks.md §36). The query whose
        best passage scores higher wins, unless joining only borrowed the previous query's match
        (below), or the turn does not ask about what the joined search finds first (a question on
        another subject, told by the earlier questions: `_comparison_questions`); and a turn the
        answer check refuses alone is searched joined when it does ask about that. Nothing here
        depends on the language's words.
        """
        previous = self._fitting_before(searched[-1], question) if searched else ""
        if not previous:  # nothing before, or the question alone fills what the embedder reads
            return question
        joined = f"{previous} {question}"
        alone, together, before = self.batch_search([question, joined, previous])
        best = lambda found: max((p.score for p in found), default=0.0)  # noqa: E731
        check = self.answerability_check()
        evidence_scores: dict[str, float | None] = {}

        def answerable(query: str, found: Sequence[Passage]) -> bool:
            if query not in evidence_scores:
                evidence_scores[query] = self._evidence_score(query, found)
            return evidence_scores[query] is not None and not check.lacks_answer(evidence_scores[query])

        others = self._comparison_questions(previous, question)  # None: too few to tell a follow-up by

        def asks_about_joined() -> bool:
            rank = turn_rank(*self._turn_vectors(previous, joined, together[0].text, others))
            return rank >= self.settings.follow_up_rank

        def joined_if_about_passage() -> str:
            if others is not None and answerable(joined, together) and not asks_about_joined():
                return question
            return joined

        if best(together) <= best(alone):
            # Alone finds a closer passage. A turn that names no subject ("How can it be
            # avoided?" after "What is mode collapse?") can, on another subject. When the check
            # refuses it there and answers it joined, and the earlier questions tell that the turn
            # asks about the joined passage (never without them), it is searched joined.
            if others is not None and not answerable(question, alone) and answerable(joined, together) \
                    and asks_about_joined():
                return joined
            return question
        # Joined finds more. A follow-up's words sharpen what the question before found, or the
        # turn alone finds nothing the answer check accepts; a new subject dilutes the question
        # before ("What is RLHF?" after a healthcare question found the healthcare passage less
        # well than that question alone, and the turn alone is answered): it is searched alone.
        if best(together) >= best(before):
            # Unless only the turn is answered: "What is mode collapse?" after a question on an
            # accident report found more joined than that question alone, and was refused joined
            # though answered alone (helper-60's drive).
            if answerable(joined, together) or not answerable(question, alone):
                return joined_if_about_passage()
            return question
        return question if answerable(question, alone) else joined_if_about_passage()

    def next_turn(self, earlier: Sequence[str], question: str, sources: Sequence[str] | None = None,
                  passages: Sequence[str | dict] | None = None) -> dict:
        """What `ask` takes (retrieval_query, history) for `question` asked after the questions
        `earlier` in one conversation, as the chat page would: each earlier question is asked in
        turn, unrecorded, to learn what it searched, whether it was answered and what the prompt's
        history holds. For evaluation rows with earlier turns; `passages` as in `ask`."""
        conversation = Conversation()
        for asked in earlier:
            query = self.standalone_query(conversation.searched, asked)
            conversation.add(asked, query, self.ask(asked, passages=passages, record=False, retrieval_query=query,
                                                    history=conversation.history, sources=sources))
        return {"retrieval_query": self.standalone_query(conversation.searched, question),
                "history": conversation.history}

    def _fitting_before(self, previous: str, question: str) -> str:
        """`previous` cut from its start so that `previous question` fits the embedder's input:
        a subject followed for many turns joins them all, and the embedder would cut the end, the
        new turn's own words, first (helper-70)."""
        embedder = self.embedder
        room = embedder.max_tokens - embedder.count_tokens([question])[0] - 1
        offsets = embedder.token_offsets(previous)
        if len(offsets) <= room:
            return previous
        return previous[offsets[len(offsets) - room][0]:] if room > 0 else ""

    def _comparison_questions(self, previous: str, turn: str) -> list[str] | None:
        """The questions a turn asked after `previous` is ranked among (evidence.turn_rank): up
        to TURN_RANK_QUESTIONS of those asked before in this data dir (the answer log, every
        user's), spread over it, without the turn and the questions `previous` holds. A
        follow-up ("In which year?" after "Who introduced GANs?") ranks high among them; a
        question on another subject ("What is the capital of Australia?"), whose joined search
        finds only the question before's passage, low. None (cannot tell) while the log holds
        fewer than TURN_RANK_MIN_QUESTIONS, and with `question_log_weights` off (a first day's
        answers) or `follow_up_rank` 0: every turn is then searched as before
        (docs/benchmarks.md §33)."""
        if not self.settings.question_log_weights or self.settings.follow_up_rank <= 0:
            return None
        # `previous` may join several questions (searched_before): the conversation's own, each
        # logged, are left out, as the previous question alone was.
        others = [q for q in self.feedback.question_sample(TURN_RANK_QUESTIONS, leaving_out=(turn,))
                  if q not in previous]
        return others if len(others) >= TURN_RANK_MIN_QUESTIONS else None

    def _turn_vectors(self, previous: str, joined: str, passage: str,
                      others: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For evidence.turn_rank: the embeddings of `joined`, of `passage` (the joined search's
        first) and of each of `others` put after `previous`."""
        # The passage (a chunk, ~200 tokens) is embedded on its own: in the questions' batch it
        # padded a batch of them to its length (448 ms against 124 ms, helper-65).
        queries = self.embedder.encode([joined, *(f"{previous} {other}" for other in others)])
        return queries[0], self.embedder.encode([passage])[0], queries[1:]

    def _evidence_score(self, question: str, passages: Sequence[Passage]) -> float | None:
        """The best score the answer check's scorer gives a sentence of `passages` for
        `question` (as _make_answer judges it, without a correction); None when no passage
        reaches min_score or none holds a sentence."""
        if not passages or max(p.score for p in passages) < self.settings.min_score:
            return None
        pool = passages if self.settings.answer_mode == "extract" else passages[: self.settings.prompt_passages]
        sentences = [sentence for _, sentence in candidates(pool, self.abbreviations())]
        if not sentences:
            return None
        return float(max(self.evidence_scorer.score(question, sentences)))

    def ask(
        self, question: str, k: int | None = None, temperature: float | None = None,
        passages: Sequence[str | dict] | None = None, record: bool = True, **trace,
    ) -> Answer:
        """Retrieve, generate and return the whole answer.

        `passages` (texts, or dicts with "text" and optional "id") replaces retrieval, to
        evaluate generation alone on given passages. With `record`, the answer and its trace
        go to the answer log (answer.id is set); `trace` may name conversation_id and turn, and
        `sources`, the documents to search (None: all).
        """
        answer = None
        for event in self._answer(question, k, temperature, stream=False, given=passages, record=record, **trace):
            answer = event
        assert isinstance(answer, Answer)
        return answer

    def ask_stream(
        self, question: str, k: int | None = None, temperature: float | None = None, record: bool = True, **trace,
    ) -> Iterator[str | Answer]:
        """Yield the answer's text in pieces as it is generated, then the finished Answer. Setting
        the event `stop` (a trace keyword) ends generation at the next token; a stopped answer is
        not recorded (its Answer has no id)."""
        return self._answer(question, k, temperature, stream=True, record=record, **trace)

    def _answer(
        self, question: str, k: int | None, temperature: float | None, stream: bool,
        given: Sequence[str | dict] | None = None, record: bool = True,
        conversation_id: str | None = None, turn: int = 0, retrieval_query: str | None = None,
        history: Sequence[dict[str, str]] = (), stop: threading.Event | None = None, user: str | None = None,
        sources: Sequence[str] | None = None,
    ) -> Iterator[str | Answer]:
        settings = self.settings
        temperature = settings.temperature if temperature is None else temperature
        for event in self._make_answer(question, retrieval_query or question, k, temperature, stream, given, history,
                                       stop, user, sources):
            if isinstance(event, Answer) and record and not (stop is not None and stop.is_set()):
                params = {"temperature": temperature, "max_new_tokens": settings.max_new_tokens,
                          "top_k": k or settings.top_k, "prompt_passages": settings.prompt_passages,
                          "min_score": settings.min_score}
                params["answer_mode"] = settings.answer_mode
                if sources is not None:
                    params["sources"] = list(sources)
                if event.correction_of:
                    params["correction_of"] = event.correction_of
                if event.evidence_score is not None:
                    params.update(evidence_score=round(event.evidence_score, 4),
                                  evidence_threshold=round(event.evidence_threshold, 4))
                self.feedback.record_answer(event, conversation_id, turn, retrieval_query, params)
            yield event

    def _make_answer(
        self, question: str, retrieval_query: str, k: int | None, temperature: float, stream: bool,
        given: Sequence[str | dict] | None, history: Sequence[dict[str, str]] = (), stop: threading.Event | None = None,
        user: str | None = None, sources: Sequence[str] | None = None,
    ) -> Iterator[str | Answer]:
        """Evidence first: retrieve, rank the passages' sentences, refuse when the best one falls
        below the calibrated threshold, else answer from the best sentences (evidence.py).
        `sources` limits retrieval to those documents; the user's corrections still answer."""
        settings = self.settings
        if given is None:  # loaded before the clock starts (the first answer's work): loading is no search time
            self.embedder
            self._ranking_embedder(self._search_snapshot(settings.retrieval != "dense")[2])
        started = time.perf_counter()
        passages = self.search(retrieval_query, k, sources) if given is None else _given_passages(given)
        retrieve_ms = (time.perf_counter() - started) * 1000
        adapter = self.answering_adapter()
        metadata = self._adapter_metadata(adapter)  # read once: both thresholds come from it
        common = dict(question=question, passages=passages, model=settings.generator, adapter=adapter)

        def refusal(reason: str, timings: dict, best: float | None = None,
                    threshold: float | None = None) -> Iterator[str | Answer]:
            if stream:
                yield REFUSAL
            yield Answer(answer=REFUSAL, refused=True, citations=[], prompt="", raw_reply="",
                         timings_ms={"retrieve": retrieve_ms, **timings}, tokens={"prompt": 0, "completion": 0},
                         refusal_reason=reason, evidence_score=best, evidence_threshold=threshold, **common)

        # The user's own corrections, for questions ragbot retrieved for (not on given passages).
        match = self.correction_for(retrieval_query, user, metadata, turn=question) if given is None else None
        if match is not None and match.correction.correction is not None:
            # The user said what the answer to this question is: that is the answer, citing the
            # passages it names.
            refused = is_refusal(match.correction.correction)
            text, shown = (REFUSAL, passages) if refused else cited_first(*self._correction_cited(match.correction, passages))
            if stream:
                yield text
            yield Answer(answer=text, refused=refused, citations=citations_for(cited_numbers(text, len(shown)), shown),
                         prompt="", raw_reply="", timings_ms={"retrieve": retrieve_ms, "generate": 0.0},
                         tokens={"prompt": 0, "completion": 0}, refusal_reason="corrected" if refused else None,
                         correction_of=match.correction.answer_id, corrected_question=match.correction.asked,
                         **{**common, "passages": shown})
            return
        if not passages or max(p.score for p in passages) < settings.min_score:
            yield from refusal("low_retrieval_score", {"generate": 0.0})
            return
        t0 = time.perf_counter()
        check = self.answerability_check(metadata)
        # The generate mode shows the model the first `prompt_passages`: its evidence must be there.
        pool = passages if settings.answer_mode == "extract" else passages[: settings.prompt_passages]
        # A follow-up is judged against the standalone query it was retrieved with, and its
        # sentences ranked by that and the question as asked. The ranker chooses what to quote;
        # the check's scorer (the cosine) decides whether to answer.
        # A follow-up's sentences that the conversation's last answers (`history`) quoted are not
        # quoted again unless the turn's own words point to them (evidence.follow_up_order).
        earlier_answers = [m.get("content", "") for m in history if m.get("role") == "assistant"]
        # A later turn's query joins its subject's whole chain; its sentences are ordered by the
        # last question of that chain and the turn (ordering_query).
        ranked, judged = rank_both(retrieval_query, pool, self.evidence_ranker, self.evidence_scorer, turn=question,
                                   abbreviations=self.abbreviations(), earlier_answers=earlier_answers,
                                   order_by=ordering_query(retrieval_query, question, history))
        if match is not None:  # a thumbs-down alone: what was rejected is not quoted again
            ranked = _without(ranked, match.correction.answer)
            judged = _without(judged, match.correction.answer)
        evidence_ms = (time.perf_counter() - t0) * 1000
        best = judged[0].score if judged else None
        if best is None or check.lacks_answer(best):
            yield from refusal("no_evidence", {"evidence": evidence_ms, "generate": 0.0}, best, check.threshold)
            return
        chosen = ranked[: settings.answer_sentences]
        timings = {"retrieve": retrieve_ms, "evidence": evidence_ms}
        shown = passages
        if settings.answer_mode == "extract":
            # Nothing has been shown yet, so the quoted passages can be numbered first. (A
            # generated answer keeps the prompt's numbers: its sentences stream as they settle.)
            answer_text, shown = cited_first(compose(chosen), passages)
            if stream:
                yield answer_text
            prompt_text = raw_reply = ""
            tokens = {"prompt": 0, "completion": 0}
            timings["generate"] = 0.0
        else:
            # The prompt the tuned adapters are trained on (trainset.py). The evidence has already
            # decided that the passages hold the answer, so the reply may not open with the refusal.
            generator = self.generator
            prompt = build_prompt(question, passages[: settings.prompt_passages], render=generator.render,
                                  count_tokens=generator.count_tokens,
                                  budget=generator.context_tokens - settings.max_new_tokens, history=history)
            prompt_text, n_shown = prompt.text, len(prompt.passages)
            similarity = self._similarity_to(prompt.passages)
            t0 = time.perf_counter()
            totals: dict = {}
            # Only settled sentences are shown, each with its citations checked, so what streams
            # is what stays: no copied prompt markup, no sentence cut at the token limit.
            said = []
            reply = generator.stream(prompt_text, settings.max_new_tokens, temperature, totals=totals,
                                     avoid_start=REFUSAL, stop=stop)
            cut = lambda: totals["generation"].completion_tokens >= settings.max_new_tokens  # noqa: E731
            with closing(reply):  # a reader who leaves early frees the model at once, not at GC
                abbreviations = self.abbreviations()
                for sentence in settled_sentences(reply, prompt.passages, was_cut=cut, abbreviations=abbreviations):
                    checked, _ = check_citations(strip_invalid_citations(sentence, n_shown), n_shown, similarity,
                                                 abbreviations)
                    said.append(checked)
                    if stream:
                        yield checked if len(said) == 1 else " " + checked
            generation = totals["generation"]
            timings["generate"] = (time.perf_counter() - t0) * 1000
            raw_reply = generation.text
            answer_text = " ".join(said)
            stopped = stop is not None and stop.is_set()
            if not said and not stopped:  # the reply held nothing but markup: the evidence answers instead
                answer_text = compose(chosen)
                if stream:
                    yield answer_text
            tokens = {"prompt": generation.prompt_tokens, "completion": generation.completion_tokens}
        numbers = cited_numbers(answer_text, len(shown))
        yield Answer(answer=answer_text, refused=False, citations=citations_for(numbers, shown),
                     prompt=prompt_text, raw_reply=raw_reply, timings_ms=timings, tokens=tokens,
                     evidence_score=best, evidence_threshold=check.threshold, **{**common, "passages": shown})

    def _correction_cited(self, correction: Correction, passages: Sequence[Passage]) -> tuple[str, list[Passage]]:
        """A correction as the answer: its [n] marks (the n-th passage of the answer it corrects)
        renumbered to the passages of this answer, a cited passage this search did not find added
        after them with the score it was shown with; a mark that names no passage is taken out."""
        cited = self.feedback.cited_chunks(correction.answer_id, correction.correction)
        shown = list(passages)
        number = {p.chunk_id: i for i, p in enumerate(shown, start=1)}
        missing = self.store.chunks([c for c, _ in cited.values() if c not in number])
        for chunk_id, score in cited.values():
            chunk = missing.get(chunk_id)
            if chunk is not None and chunk_id not in number:  # a chunk removed since is not cited
                shown.append(chunk.as_passage(score, rank=len(shown) + 1))
                number[chunk_id] = len(shown)
        marks = {n: number[c] for n, (c, _) in cited.items() if c in number}
        return " ".join(renumber_citations(correction.correction, marks).split()), shown

    def closest_passage(self, answer_id: str, text: str) -> int | None:
        """The number [n] of the passage of answer `answer_id` that holds the sentence closest
        to `text` (a correction, its [n] marks left out), by the cosine the evidence threshold
        reads; None when no sentence reaches that threshold (none says what `text` says, as far
        as the answer check can tell), the answer showed no passage still stored, or `text` has
        no words."""
        trace = self.feedback.answer_trace(answer_id)
        chunks = self.store.chunks([row["chunk_id"] for row in trace["passages"]])
        passages = [chunks[row["chunk_id"]].as_passage(row["score"], row["rank"])
                    for row in trace["passages"] if row["chunk_id"] in chunks]
        said = " ".join(strip_citation_marks(text).split())
        pool = candidates(passages, self.abbreviations())
        if not said or not pool:
            return None
        scores = self.evidence_scorer.score(said, [sentence for _, sentence in pool])
        best = int(np.argmax(scores))
        return passages[pool[best][0] - 1].rank if scores[best] >= self.answerability_check().threshold else None

    def correction_for(self, query: str, user: str | None = None, metadata: dict | None = None,
                       turn: str | None = None) -> Match | None:
        """`user`'s correction (or thumbs-down) of an earlier answer to a question that asks
        what `query` asks, if any (corrections.py). `turn`: the user's own words, when `query`
        is a follow-up searched with the question before it."""
        memory = self.correction_memory(user, metadata)
        if memory is None or not len(memory):
            return None
        if turn is None or turn == query:
            return memory.match(self.embedder.encode([query])[0])
        query_vector, turn_vector = self.embedder.encode([query, turn])
        return memory.match(query_vector, turn_vector)

    def correction_memory(self, user: str | None = None, metadata: dict | None = None) -> CorrectionMemory | None:
        """`user`'s corrections as they stand now, rebuilt when feedback or the threshold changes."""
        if not self.settings.use_corrections:
            return None
        threshold = self.correction_threshold(metadata)
        key = (self.feedback.fingerprint(), threshold)
        with self._load_lock:
            cached = self._memories.get(user)
            if cached is None or cached[0] != key:
                cached = (key, CorrectionMemory.build(self.feedback.corrections(user), self.embedder, threshold))
                self._memories[user] = cached
            return cached[1]

    def correction_threshold(self, metadata: dict | None = None) -> float:
        """The answering adapter's fitted match threshold (from its `metadata` when the caller has
        read it), else the `correction_match` setting."""
        stored = (self._adapter_metadata() if metadata is None else metadata).get("corrections")
        fitted = MatchThreshold.from_dict(stored, where="the adapter's metadata") if stored else None
        return fitted.threshold if fitted else self.settings.correction_match

    def _adapter_metadata(self, version: str | None = "") -> dict:
        """The metadata of adapter `version` (default: the answering one; None: the base model)."""
        from ragbot.learn.registry import AdapterRegistry

        version = self.answering_adapter() if version == "" else version
        return AdapterRegistry(self.settings.adapters_dir).get(version).metadata if version else {}

    @property
    def evidence_scorer(self) -> SentenceScorer:
        """The scorer whose best score the answerability check thresholds (the cosine)."""
        with self._load_lock:
            if self._scorer is None:
                self._scorer = EmbeddingScorer(self.embedder)
            return self._scorer

    @property
    def evidence_ranker(self) -> SentenceScorer:
        """The scorer that ranks sentences to quote, by the `evidence_ranking` setting."""
        if self.settings.evidence_ranking == "embedding":
            return self.evidence_scorer
        with self._load_lock:
            if self._ranker is None:
                if self.settings.evidence_ranking == "coverage-questions":
                    asked = self.question_log if self.settings.question_log_weights else None
                    self._ranker = CoverageScorer(self.embedder, self._document_frequencies, asked, share=None,
                                                  name="coverage-questions")
                else:
                    self._ranker = CoverageScorer(self.embedder, self._document_frequencies)
            return self._ranker

    @property
    def question_log(self) -> QuestionLog:
        """The questions asked before in this data dir (the answer log), as term counts: the
        sentence ranking and, with `lexical_question_weights`, BM25 weigh terms by them."""
        if self._question_log is not None:  # read on every BM25 search: no lock once made
            return self._question_log
        with self._load_lock:
            if self._question_log is None:
                self._question_log = QuestionLog(self.embedder.word_pieces, self.feedback.questions_after)
            return self._question_log

    def _question_weights(self, terms: Sequence[str]) -> np.ndarray:
        """Each term's IDF over the questions asked before, scaled to [0, 1] (1 while none were)."""
        return question_idf(*self.question_log(terms))

    def _document_frequencies(self, terms: Sequence[str]) -> tuple[np.ndarray, int]:
        """How many chunks hold each term, and how many chunks there are (from the BM25 index: the
        coverage scorer's IDF). The index need not be of the FAISS index's generation: an IDF
        one ingest old is as good, so this never waits for a write to finish."""
        words = self._current_lexical()
        return words.document_frequencies(terms), len(words)

    def answerability_check(self, metadata: dict | None = None) -> AnswerabilityCheck:
        """The threshold the best evidence score must reach: the adapter's calibration (of the
        loaded generator, else of the `adapter` setting's choice, from its `metadata` when the
        caller has read it) when it has one for this scorer, else the `evidence_threshold` setting."""
        return (self.adapter_answerability(metadata)
                or AnswerabilityCheck(scorer=self.evidence_scorer.name, threshold=self.settings.evidence_threshold))

    def answering_calibration(self) -> tuple[str | None, AnswerabilityCheck | None]:
        """The answering adapter and its answerability calibration (adapter_answerability), from
        one read of the registry, so an adapter activated meanwhile cannot mix in; (None, None)
        for the base model."""
        adapter = self.answering_adapter()
        return (adapter, self.adapter_answerability(self._adapter_metadata(adapter))) if adapter else (None, None)

    def adapter_answerability(self, metadata: dict | None = None) -> AnswerabilityCheck | None:
        """The answering adapter's calibration of the answerability threshold for this scorer,
        None when it has none (or answers come from the base model). It decides refusals in
        extract mode too, where the adapter writes nothing."""
        if self._generator is not None:
            check = self._generator.answerability
        else:
            stored = (self._adapter_metadata() if metadata is None else metadata).get("answerability")
            check = AnswerabilityCheck.from_dict(stored, where="the adapter's metadata") if stored else None
        return check if check is not None and check.scorer == self.evidence_scorer.name else None

    def _similarity_to(self, passages: Sequence[Passage]):
        """sentences -> cosine similarity of each sentence to each passage."""

        shown = []  # the passages' vectors, computed on the first call

        def similarity(sentences: list[str]):
            if not shown:
                shown.append(self.embedder.encode([p.text for p in passages]))
            return (self.embedder.encode(sentences) @ shown[0].T).tolist()

        return similarity

    def status(self) -> dict:
        docs, chunks = self.store.counts()
        return {
            "data_dir": str(self.settings.data_dir),
            "documents": docs,
            "chunks": chunks,
            "generation": self.store.generation(),
            "embedder": self.store.meta("embedder") or self.settings.embedder,
            "ranking_embedder": self.store.ranking_embedder() or "the shipped embedder",
            "retrieval": self.settings.retrieval,
            "fusion": (f"{self.settings.fusion} (BM25's weight {self.settings.lexical_weight:g})"
                       if self.settings.retrieval == "hybrid" else f"not used ({self.settings.retrieval} alone)"),
            "evidence_ranking": self._evidence_ranking_status(),
            "follow_ups": self._follow_ups_status(),
            "vector_index": self._vector_index_status(),
            "bm25_index_saved": (self.settings.index_dir / f"{self.store.generation()}.bm25").is_dir(),
            "generator": self.settings.generator,
            "generator_backend": self._backend_in_use(),
            "adapter": self.adapter_in_use(),
            "schema_version": self.store.schema_version(),
        }

    def _evidence_ranking_status(self) -> str:
        """The `evidence_ranking` setting, and for the ranking that learns from the answer log,
        how many earlier questions it has to learn from."""
        ranking = self.settings.evidence_ranking
        if ranking != "coverage-questions":
            return ranking
        if not self.settings.question_log_weights:
            return f"{ranking} (earlier questions not used: question_log_weights is off)"
        asked = self.feedback.questions_logged()
        return f"{ranking} (question words learned from {asked} earlier question{'s' * (asked != 1)})"

    def _follow_ups_status(self) -> str:
        """Whether a turn that finds more joined to the question before is checked against the
        earlier questions before it is searched joined (_comparison_questions), and with how many."""
        if not self.settings.question_log_weights:
            return "searched joined when that finds more (earlier questions not used: question_log_weights is off)"
        if self.settings.follow_up_rank <= 0:
            return "searched joined when that finds more (follow_up_rank is 0)"
        asked = self.feedback.distinct_questions()
        if asked < TURN_RANK_MIN_QUESTIONS + 2:
            return (f"searched joined when that finds more; from {TURN_RANK_MIN_QUESTIONS} earlier questions besides "
                    f"a conversation's last two, only when the turn ranks {self.settings.follow_up_rank:g} or more "
                    f"among them ({asked} distinct questions logged)")
        return (f"searched joined when that finds more and the turn ranks {self.settings.follow_up_rank:g} or more "
                f"among the earlier questions ({asked} distinct questions logged)")

    def _vector_index_status(self) -> str:
        """Which vector index searches use, and its recall on the check it was built with. From
        the index this process holds, else from the record the last write kept (store meta
        "vector_index") and the saved file's presence: status never loads an index (1.5 GB at a
        million chunks), the embedder, or rebuilds anything."""
        generation = self.store.generation()
        record = self.store.vector_index_record()
        with self._load_lock:
            index = self._index if self._index is not None and self._index_generation == generation else None
        if index is not None:
            described, kind = index.describe(), index.kind
        elif not (self.index_dir_of(self.store.ranking_embedder()) / f"{generation}.faiss").is_file():
            return "not saved for this generation (the next search builds it, exact)"
        else:
            kind = "ivf" if record.get("kind") == "ivf" else "exact"
            chunks = self.store.counts()[1]
            described = (f"approximate (IVF: {record.get('lists')} lists, {record.get('nprobe')} read per search), "
                         f"{chunks} vectors" if kind == "ivf" else f"exact (flat), {chunks} vectors")
        if kind == "ivf" and record.get("kind") == "ivf" and "recall_at_10" in record:
            described += (f"; recall@10 {record['recall_at_10']:.3f} on its check against exact search when built "
                          f"on {record['vectors']} vectors")
        if record.get("attempted_at"):
            described += f"; kept as it is: {record.get('reason')}"
        return described

    def _backend_in_use(self) -> str:
        """What runs the generator (generators/), or why it cannot run, without loading it."""
        if self._generator is not None:
            return self._generator.backend
        from ragbot.generators import pick_backend

        try:
            return pick_backend(self.settings)
        except RagbotError as exc:
            return f"unavailable: {exc}"

    def answering_adapter(self) -> str | None:
        """The adapter answers come from now, None for the base model: the loaded generator's
        (the tuning gate swaps generators), else the registry's choice, without loading it."""
        adapter = self._generator.adapter if self._generator is not None else self.adapter_in_use()
        return None if adapter in (None, "none") else adapter

    def adapter_in_use(self) -> str:
        """The adapter version answers come from ("none": the base model), without loading it."""
        from ragbot.learn.registry import AdapterRegistry

        if self.settings.adapter != "active":
            return self.settings.adapter
        return AdapterRegistry(self.settings.adapters_dir).state()["active"] or "none"

def _save_if_room(index, directory: Path, generation: int) -> None:
    """Save a rebuilt index for the next start; on a full disk (or a folder removed meanwhile:
    the ranking embedder changed) keep it in memory only, so reading goes on from the database
    (the next start rebuilds it again)."""
    try:
        index.save(directory, generation)
    except (DiskFullError, OSError) as exc:
        warnings.warn(f"search index kept in memory only: {exc}", stacklevel=3)


def _without(ranked: list[Evidence], rejected: str) -> list[Evidence]:
    """The evidence minus the sentences a rejected answer quoted. Compared without white space
    (the citation marks leave spaces), bars and semicolons: a table row quoted before b471f0e
    read "Engine Manufacturer: | Lycoming", the same row now reads "Engine Manufacturer: Lycoming"."""
    said = _quote_key(strip_citation_marks(rejected))
    return [e for e in ranked if _quote_key(e.text) not in said]


def _quote_key(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace() and ch not in "|;")


def _given_passages(given: Sequence[str | dict]) -> list[Passage]:
    """Passages supplied by the caller instead of retrieved (scored 1.0, negative chunk ids).

    A dict may also carry "title", "section" and "page", shown in the passage's header."""
    passages = []
    for i, item in enumerate(given, start=1):
        if isinstance(item, str):
            item = {"text": item}
        ident = str(item.get("id", f"passage-{i}"))
        passages.append(Passage(chunk_id=-i, source=ident, title=item.get("title") or ident,
                                section=item.get("section") or "", page=item.get("page"),
                                text=item["text"], score=1.0, rank=i))
    return passages


def _stored_abbreviations(record: str | None, signature: str) -> list[str] | None:
    """The abbreviations the meta record keeps, when it was learned from chunks of `signature`;
    None when it was not, or cannot be read (a damaged record is learned again, not fatal)."""
    try:
        stored = json.loads(record or "{}")
    except ValueError:
        return None
    if not isinstance(stored, dict) or stored.get("chunks") != signature or not isinstance(stored.get("words"), list):
        return None
    return [w for w in stored["words"] if isinstance(w, str)]
