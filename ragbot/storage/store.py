"""SQLite storage for documents, chunks and their vectors: the source of truth of a data dir.

The FAISS index (index.py) is a fast copy of the vectors kept here. Every write bumps a
`generation` counter in the same transaction, and the index file is named after the generation
it holds, so a process killed between the two writes leaves an index that is simply rebuilt
from this database on the next open, never one that disagrees with it.

A tuned embedder (`ragbot tune --retriever`) ranks with vectors of its own, kept per chunk in
`ranking_vectors`; the meta key `ranking_embedder` names the one in use (none: the shipped
embedder ranks), and changes in the same transaction as the generation, so the index file of a
generation always holds one embedder's vectors.

The schema changes only through the numbered MIGRATIONS below, recorded in schema_migrations.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragbot.errors import IndexMismatchError, RagbotError
from ragbot.storage.files import disk_full, state_lock
from ragbot.types import Chunk, Document, Passage

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            source TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            n_pages INTEGER,
            pipeline TEXT NOT NULL,
            ingested_at REAL NOT NULL
        );
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ord INTEGER NOT NULL,
            text TEXT NOT NULL,
            section TEXT NOT NULL,
            page INTEGER,
            page_end INTEGER,
            start INTEGER NOT NULL,
            end INTEGER NOT NULL,
            n_tokens INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            vector BLOB NOT NULL
        );
        CREATE INDEX chunks_doc ON chunks(doc_id);
        INSERT INTO meta(key, value) VALUES ('generation', '0');
        """,
    ),
    (
        2,
        """
        CREATE TABLE answers (
            id TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL,
            turn INTEGER NOT NULL,
            question TEXT NOT NULL,
            retrieval_query TEXT NOT NULL,
            prompt TEXT NOT NULL,
            answer TEXT NOT NULL,
            raw_reply TEXT NOT NULL,
            refused INTEGER NOT NULL,
            refusal_reason TEXT,
            model TEXT NOT NULL,
            adapter TEXT,
            index_generation INTEGER NOT NULL,
            params TEXT NOT NULL,
            timings TEXT NOT NULL,
            tokens TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX answers_conversation ON answers(conversation_id, turn);
        CREATE TABLE answer_passages (
            answer_id TEXT NOT NULL REFERENCES answers(id) ON DELETE CASCADE,
            rank INTEGER NOT NULL,
            chunk_id INTEGER NOT NULL,
            score REAL NOT NULL,
            cited INTEGER NOT NULL,
            PRIMARY KEY (answer_id, rank)
        );
        CREATE TABLE feedback (
            answer_id TEXT PRIMARY KEY REFERENCES answers(id) ON DELETE CASCADE,
            vote INTEGER,
            comment TEXT,
            correction TEXT,
            user TEXT,
            updated_at REAL NOT NULL
        );
        CREATE TABLE feedback_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            answer_id TEXT NOT NULL,
            vote INTEGER,
            comment TEXT,
            correction TEXT,
            user TEXT,
            at REAL NOT NULL
        )
        """,
    ),
    (
        3,
        """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX conversations_owner ON conversations(owner, deleted, updated_at)
        """,
    ),
    (
        4,
        # Each chunk's vector from a tuned embedder (learn/retriever.py), which only ranks: the
        # vector in `chunks` stays the shipped embedder's, whose cosines are shown and thresholded.
        """
        CREATE TABLE ranking_vectors (
            embedder TEXT NOT NULL,
            chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
            vector BLOB NOT NULL,
            PRIMARY KEY (embedder, chunk_id)
        );
        CREATE INDEX ranking_vectors_chunk ON ranking_vectors(chunk_id)
        """,
    ),
    (
        5,
        # Each logged passage's place in the search's order: `rank` is the [n] the user saw, which
        # an extracted answer renumbers (cited first). NULL: not from a search, or logged before.
        "ALTER TABLE answer_passages ADD COLUMN search_rank INTEGER",
    ),
    (
        6,
        # Ingest looks a file's bytes up to store one copy of a document (ingester.py).
        "CREATE INDEX documents_sha256 ON documents(sha256)",
    ),
    (
        7,
        # A file ingest found to hold the same bytes (sha256) as a stored document from another
        # path: not stored twice, but searched under its own path too (`ask --in`), and stored in
        # the document's place when that one is removed, gone or changed (ingester.py).
        """
        CREATE TABLE copies (
            path TEXT PRIMARY KEY,
            original TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            recorded_at REAL NOT NULL
        );
        CREATE INDEX copies_original ON copies(original)
        """,
    ),
]


def _apply(db: sqlite3.Connection, sql: str) -> None:
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _columns(db: sqlite3.Connection) -> dict[str, set[str]]:
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: {r[0] for r in db.execute("SELECT name FROM pragma_table_info(?)", (t,))} for t in tables}


def missing_columns(db: sqlite3.Connection) -> list[tuple[str, int]]:
    """The tables and columns that the migrations `db` records as applied would have made, and
    that `db` lacks, each with the migration that makes it: ("copies.sha256", 7), or ("copies",
    7) for a whole table. Tables and columns it has besides are not checked: ragbot's SQL names
    what it reads."""
    have = _columns(db)
    done = {r[0] for r in db.execute("SELECT version FROM schema_migrations")} if "schema_migrations" in have else set()
    made: dict[str, int] = {}  # table or table.column -> the migration that made it
    expected = sqlite3.connect(":memory:")
    try:
        for version, sql in MIGRATIONS:
            if version in done:
                _apply(expected, sql)
                for table, columns in _columns(expected).items():
                    made.setdefault(table, version)
                    for column in columns:
                        made.setdefault(f"{table}.{column}", version)
        wanted = _columns(expected)
    finally:
        expected.close()
    missing = [name for table, columns in sorted(wanted.items())
               for name in ([table] if table not in have else [f"{table}.{c}" for c in sorted(columns - have[table])])]
    return [(name, made[name]) for name in missing]


def schema_mismatch(path: Path, missing: list[tuple[str, int]]) -> str:
    named = ", ".join(f"{name} (migration {version})" for name, version in missing)
    first = min(version for _, version in missing)
    return (f"{path}: its schema lacks {named}, which the migrations it records should have made: it was written "
            f"by a development version of ragbot. Restore a backup made before migration {first} was recorded "
            f"(ragbot restore BACKUP), or ingest the documents into a new data dir")


@dataclass
class StoredDocument:
    id: int
    source: str
    kind: str
    title: str
    sha256: str
    size: int
    n_pages: int | None
    pipeline: str
    ingested_at: float
    n_chunks: int


@dataclass
class StoredChunk:
    id: int
    source: str
    title: str
    section: str
    page: int | None
    text: str

    def as_passage(self, score: float, rank: int, search_rank: int | None = None) -> Passage:
        """This chunk as passage [rank] of an answer, shown with `score` (`search_rank`: its place
        in the search's order, when a search found it)."""
        return Passage(chunk_id=self.id, source=self.source, title=self.title, section=self.section, page=self.page,
                       text=self.text, score=score, rank=rank, search_rank=search_rank)


_IN_LIMIT = 900  # ids bound in one `IN (...)`: SQLite before 3.32 allows 999 variables
# The columns of a StoredChunk, in its field order.
_CHUNK_SELECT = (
    "SELECT c.id, d.source, d.title, c.section, c.page, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id"
)


class Store:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per thread: the chat UI answers several people at once, and SQLite
        # transactions belong to a connection. WAL lets readers and one writer work together.
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        # Processes opening one new database at once (two ingests on a new data dir) take turns:
        # SQLite refuses a second switch to WAL outright, and a schema read before another
        # process applies it would be applied twice.
        with state_lock(path.with_name(path.name + ".schema.lock"), f"preparing {path}", timeout=120):
            self._migrate()
        self._inode = os.stat(path).st_ino

    def replaced(self) -> bool:
        """Whether the database file at `path` is no longer the one opened here (a restore moved
        the data dir aside and put another in its place)."""
        try:
            return os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            return True

    @property
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
                # A new database gives back the pages of removed documents (release_free_pages);
                # this must come before its first table. An older one keeps its mode until a
                # VACUUM (`ragbot doctor --repair`), which then takes this one.
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as exc:
                raise RagbotError(f"{self.path}: not a usable ragbot database ({exc})") from None
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    def close(self) -> None:
        with self._connections_lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    # -- schema -----------------------------------------------------------------------------

    def _migrate(self) -> None:
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        done = {row[0] for row in self._db.execute("SELECT version FROM schema_migrations")}
        newest = max(v for v, _ in MIGRATIONS)
        if done and max(done) > newest:
            self.close()
            raise RagbotError(
                f"{self.path} was written by a newer ragbot (schema {max(done)} > {newest}); upgrade ragbot"
            )
        self._refuse_missing()  # before any migration is added to what is already wrong
        for version, sql in MIGRATIONS:
            if version in done:
                continue
            with self.transaction():
                _apply(self._db, sql)
                self._db.execute(
                    "INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)", (version, time.time())
                )
        self._refuse_missing()

    def _refuse_missing(self) -> None:
        """A database whose migrations are recorded but whose tables lack what they made (one
        written by an unreleased ragbot whose migration was later changed): every use would fail
        on its own SQL error, so it is refused when opened, with what to do."""
        missing = missing_columns(self._db)
        if missing:
            self.close()
            raise RagbotError(schema_mismatch(self.path, missing))

    def space(self) -> tuple[int, int, bool]:
        """(bytes the database's pages take, bytes of them free, whether free pages are given
        back after a write: `release_free_pages`)."""
        db = self._db
        page = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * page, free * page, db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2

    def release_free_pages(self) -> int:
        """Give the free pages that removed or replaced documents left back to the disk (in a
        database made with incremental auto-vacuum: every one made since then); the bytes given
        back. Without this, removing half a library left the database file its size: SQLite keeps
        freed pages for its own later writes. The file shrinks at the next checkpoint of the
        write-ahead log, once no reader still reads the pages as they were."""
        _, free, incremental = self.space()
        if not free or not incremental:
            return 0
        # `executescript` steps the pragma to its end: `execute` runs one step, which frees one page.
        try:
            self._db.executescript("PRAGMA incremental_vacuum;")
            # The moved pages went to the write-ahead log, which keeps its largest size while a
            # connection is open (a chat server's): copied back and emptied now, unless another
            # process still reads (then at a later checkpoint).
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError:  # a full disk (it writes the moved pages to the log first), a lock
            return 0  # held past the timeout: the write itself is committed; a later one gives them back
        return free - self.space()[1]

    def compact(self) -> None:
        """Rewrite the database without its free pages (VACUUM), in incremental auto-vacuum mode
        from then on. The caller holds the write lock; readers in other processes go on reading."""
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def schema_version(self) -> int:
        return self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing; a full disk rolls back and becomes DiskFullError."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise disk_full(self.path) from None
            raise

    # -- meta -------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def vector_index_record(self) -> dict:
        """What the last write measured of the vector index (meta "vector_index", index.py);
        empty when there is none or it cannot be read."""
        try:
            record = json.loads(self.meta("vector_index") or "{}")
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    def set_vector_index_record(self, record: dict) -> None:
        with self.transaction():
            self.set_meta("vector_index", json.dumps(record))

    def generation(self) -> int:
        return int(self.meta("generation") or 0)

    def _bump_generation(self) -> None:
        self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    def claim_embedder(self, name: str, dim: int) -> None:
        """Record the embedder on first use; refuse a different one afterwards."""
        stored_name, stored_dim = self.meta("embedder"), self.meta("embedding_dim")
        if stored_name is None:
            with self.transaction():
                self.set_meta("embedder", name)
                self.set_meta("embedding_dim", str(dim))
            return
        if stored_name != name or int(stored_dim or 0) != dim:
            raise IndexMismatchError(
                f"the index in {self.path.parent} was built with embedder {stored_name!r} (dim {stored_dim}), "
                f"but the settings name {name!r} (dim {dim}). Use the same embedder, or ingest into "
                f"another data dir (--data-dir)."
            )

    # -- documents --------------------------------------------------------------------------

    _DOCUMENT_COLUMNS = (
        "SELECT d.id, d.source, d.kind, d.title, d.sha256, d.size, d.n_pages, d.pipeline, d.ingested_at, "
        "(SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.id) FROM documents d"
    )

    def documents(self) -> list[StoredDocument]:
        rows = self._db.execute(f"{self._DOCUMENT_COLUMNS} ORDER BY d.source").fetchall()
        return [StoredDocument(*row) for row in rows]

    def document(self, source: str) -> StoredDocument | None:
        row = self._db.execute(f"{self._DOCUMENT_COLUMNS} WHERE d.source = ?", (source,)).fetchone()
        return StoredDocument(*row) if row else None

    def documents_with_sha256(self, sha256: str) -> list[StoredDocument]:
        """Stored documents with these bytes, the first stored first."""
        rows = self._db.execute(f"{self._DOCUMENT_COLUMNS} WHERE d.sha256 = ? ORDER BY d.id", (sha256,)).fetchall()
        return [StoredDocument(*row) for row in rows]

    def document_by_id(self, doc_id: int) -> StoredDocument | None:
        row = self._db.execute(f"{self._DOCUMENT_COLUMNS} WHERE d.id = ?", (int(doc_id),)).fetchone()
        return StoredDocument(*row) if row else None

    def documents_under(self, paths: Sequence[str]) -> list[StoredDocument]:
        """Documents whose source is one of `paths` or inside one of them (as folders)."""
        found: dict[int, StoredDocument] = {}
        for path in paths:
            folder = path.rstrip("/") + "/"
            rows = self._db.execute(
                f"{self._DOCUMENT_COLUMNS} WHERE d.source = ? OR substr(d.source, 1, ?) = ?",
                (path, len(folder), folder),
            ).fetchall()
            found.update((row[0], StoredDocument(*row)) for row in rows)
        return sorted(found.values(), key=lambda d: d.source)

    # -- copies: files with the bytes of a stored document, kept as a path to it ------------

    def record_copies(self, copies: Sequence[tuple[str, str, str]]) -> None:
        """Record (path, original, sha256 of the path's bytes) copies; one whose original is not
        a stored document with those bytes, or whose path is a stored document, is left out."""
        def holds(source: str, sha256: str | None = None) -> bool:
            row = self._db.execute("SELECT sha256 FROM documents WHERE source = ?", (source,)).fetchone()
            return row is not None and (sha256 is None or row[0] == sha256)

        rows = [(path, original, sha256, time.time()) for path, original, sha256 in copies
                if path != original and holds(original, sha256) and not holds(path)]
        if rows:
            with self.transaction() as db:
                db.executemany("INSERT OR REPLACE INTO copies(path, original, sha256, recorded_at) VALUES (?, ?, ?, ?)",
                               rows)

    def copy_records(self) -> list[tuple[str, str, str]]:
        """(path, original, sha256 recorded) of every copy, by path."""
        return [tuple(r) for r in self._db.execute("SELECT path, original, sha256 FROM copies ORDER BY path")]

    def copies_left_behind(self, leaving: Sequence[str] = ()) -> list[tuple[str, str, str]]:
        """(path, original, sha256) of the copies whose bytes their document will not hold: it
        is in `leaving`, or its bytes changed since the copy was recorded."""
        rows = self._db.execute("SELECT c.path, c.original, c.sha256 FROM copies c JOIN documents d "
                                "ON d.source = c.original WHERE d.sha256 != c.sha256").fetchall()
        for source in dict.fromkeys(leaving):
            rows += self._db.execute("SELECT path, original, sha256 FROM copies WHERE original = ?", (source,)).fetchall()
        return sorted(set(map(tuple, rows)))

    def copies(self) -> list[tuple[str, str]]:
        """(path, original) of every recorded copy, by path."""
        return [(path, original) for path, original, _ in self.copy_records()]

    def copies_under(self, paths: Sequence[str]) -> list[tuple[str, str]]:
        """(path, original) of the copies at one of `paths` or inside one of them (as folders)."""
        found: dict[str, str] = {}
        for path in paths:
            folder = path.rstrip("/") + "/"
            found.update(self._db.execute("SELECT path, original FROM copies WHERE path = ? OR substr(path, 1, ?) = ?",
                                          (path, len(folder), folder)).fetchall())
        return sorted(found.items())

    def forget_copies(self, paths: Sequence[str]) -> None:
        if paths:
            with self.transaction() as db:
                db.executemany("DELETE FROM copies WHERE path = ?", [(p,) for p in paths])

    def chunk_ids_of(self, sources: Sequence[str]) -> np.ndarray:
        """The chunk ids of the documents `sources` names (exact sources; unknown ones add none)."""
        ids: list[int] = []
        for source in dict.fromkeys(sources):
            ids += [r[0] for r in self._db.execute(
                "SELECT c.id FROM chunks c JOIN documents d ON c.doc_id = d.id WHERE d.source = ?", (source,))]
        return np.array(sorted(ids), dtype=np.int64)

    def counts(self) -> tuple[int, int]:
        docs = self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return docs, chunks

    def chunk_signature(self) -> str:
        """What changes whenever the stored chunks do (their number and their largest id: a chunk
        stored gets a new, larger id), and not when only the generation moves on (a switch of the
        ranking embedder): what text learned from the chunks is kept with."""
        count, largest = self._db.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM chunks").fetchone()
        return f"{count}:{largest}"

    def replace_document(
        self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray, pipeline: str,
        ranking: tuple[str, np.ndarray] | None = None, kept: Mapping[int, int] | None = None,
        moved_from: Sequence[str] = (),
    ) -> tuple[list[int], list[int], set[int]]:
        """Store `doc` with its chunks, replacing any earlier version in the same transaction;
        with `ranking` (a tuned embedder's version and its vectors of the chunks), those too.
        `kept`: for chunks (by position) that the earlier version holds unchanged, the id of that
        stored chunk, which stays theirs (text, section and vectors as they are; place and page
        brought up to date): what answers, votes and corrections say of that passage (the chunk
        ids they cite) still holds after an edit elsewhere in the document, a new pipeline, or a
        move. The earlier version is the document stored at its path, or one at a path of
        `moved_from` (its file moved here: its chunks become this document's, and the ingest
        removes what is left of it). Each id is kept for one position at most.

        Returns (chunk ids removed, the chunks' ids in order, the positions whose ids were kept:
        every other id is new).
        """
        assert len(chunks) == len(vectors)
        assert ranking is None or len(ranking[1]) == len(chunks)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.transaction() as db:
            row = db.execute("SELECT id FROM documents WHERE source = ?", (doc.source,)).fetchone()
            own = {r[0] for r in db.execute("SELECT id FROM chunks WHERE doc_id = ?", (row[0],))} if row else set()
            # (this thread's connection, so read within the transaction)
            keepable = own | set(self.chunk_ids_of([s for s in moved_from if s != doc.source]).tolist())
            keep: dict[int, int] = {}
            for at, chunk_id in (kept or {}).items():
                if chunk_id in keepable:
                    keep[at] = chunk_id
                    keepable.discard(chunk_id)  # each id for one position
            removed = sorted(own - set(keep.values()))
            db.execute("DELETE FROM copies WHERE path = ?", (doc.source,))  # a copy no more: stored itself
            values = (doc.kind, doc.title, doc.sha256, doc.size, len(doc.pages) or None, pipeline, time.time())
            if row:  # the same row, so the kept chunks stay its own
                doc_id = row[0]
                db.execute("UPDATE documents SET kind = ?, title = ?, sha256 = ?, size = ?, n_pages = ?, pipeline = ?, "
                           "ingested_at = ? WHERE id = ?", (*values, doc_id))
                db.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in removed])
            else:
                doc_id = db.execute(
                    "INSERT INTO documents(source, kind, title, sha256, size, n_pages, pipeline, ingested_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (doc.source, *values)).lastrowid
            ids = []
            for at, (chunk, vector) in enumerate(zip(chunks, vectors)):
                place = (chunk.ord, chunk.page, chunk.page_end, chunk.start, chunk.end, chunk.n_tokens, chunk.sha256)
                if at in keep:
                    db.execute("UPDATE chunks SET doc_id = ?, ord = ?, page = ?, page_end = ?, start = ?, end = ?, "
                               "n_tokens = ?, sha256 = ? WHERE id = ?", (doc_id, *place, keep[at]))
                    ids.append(keep[at])
                    continue
                cursor = db.execute(
                    "INSERT INTO chunks(doc_id, ord, text, section, page, page_end, start, end, n_tokens, sha256, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (doc_id, chunk.ord, chunk.text, chunk.section, chunk.page, chunk.page_end, chunk.start,
                     chunk.end, chunk.n_tokens, chunk.sha256, vector.tobytes()),
                )
                ids.append(cursor.lastrowid)
            if ranking is not None:
                new = [at for at in range(len(chunks)) if at not in keep]
                self._insert_ranking_vectors(db, ranking[0], [ids[at] for at in new], ranking[1][new])
            self._bump_generation()
        return removed, ids, set(keep)

    def remove_documents(self, sources: Sequence[str]) -> list[int]:
        """Delete documents by exact source; returns the chunk ids that went with them."""
        if not sources:
            return []
        with self.transaction() as db:
            ids = self._delete_sources(db, sources)
            # Their copies' records go with them (the ingester has stored in their place the
            # copies it could read: Ingester._stand_in).
            db.executemany("DELETE FROM copies WHERE original = ?", [(s,) for s in sources])
            self._bump_generation()
        return ids

    @staticmethod
    def _delete_sources(db: sqlite3.Connection, sources: Sequence[str]) -> list[int]:
        ids: list[int] = []
        for source in sources:
            ids += [row[0] for row in db.execute(
                "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE d.source = ?", (source,)
            )]
            db.execute("DELETE FROM documents WHERE source = ?", (source,))
        return ids

    # -- chunks -----------------------------------------------------------------------------

    def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        return {row[0]: StoredChunk(*row) for row in _rows_of(self._db, f"{_CHUNK_SELECT} WHERE c.id IN ({{}})", ids)}

    def chunk_texts(self, ids: Sequence[int]) -> dict[int, str]:
        """The text of each of these chunks (ids not stored are left out): all that a reader of
        the text alone needs (the abbreviations learned from it), without the rest of the row."""
        return dict(_rows_of(self._db, "SELECT id, text FROM chunks WHERE id IN ({})", ids))

    def document_sections(self, ids: Sequence[int]) -> set[tuple[str, str]]:
        """(source, section) for every section of the documents that hold these chunks."""
        return set(_rows_of(self._db, "SELECT DISTINCT d.source, c.section FROM chunks c JOIN documents d "
                            "ON d.id = c.doc_id WHERE c.doc_id IN (SELECT doc_id FROM chunks WHERE id IN ({}))", ids))

    def sampled_chunk_ids(self, n: int, newest: int = 0) -> tuple[list[int], list[int]]:
        """Up to `n` chunk ids drawn at random from the whole library, and up to `newest` drawn
        from the document ingested last (added or updated): (the library's, the newest's)."""
        drawn = [r[0] for r in self._db.execute("SELECT id FROM chunks ORDER BY RANDOM() LIMIT ?", (n,))]
        latest = [r[0] for r in self._db.execute(
            "SELECT id FROM chunks WHERE doc_id = (SELECT id FROM documents ORDER BY ingested_at DESC, id DESC "
            "LIMIT 1) ORDER BY RANDOM() LIMIT ?", (newest,))] if newest > 0 else []
        return drawn, latest

    def chunk_ids(self) -> np.ndarray:
        """Every stored chunk's id, ascending."""
        rows = self._db.execute("SELECT id FROM chunks ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def all_chunks(self) -> list[StoredChunk]:
        rows = self._db.execute(f"{_CHUNK_SELECT} ORDER BY c.id").fetchall()
        return [StoredChunk(*row) for row in rows]

    def all_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every chunk, for rebuilding the FAISS index."""
        return _unpack(self._db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall(), dim)

    # -- a tuned embedder's vectors ---------------------------------------------------------

    def ranking_embedder(self) -> str | None:
        """The tuned embedder that ranks (its registry version), or None: the shipped one."""
        return self.meta("ranking_embedder") or None

    def ranking_state(self) -> tuple[int, str | None]:
        """(generation, ranking embedder), read together: a switch changes both at once."""
        rows = dict(self._db.execute("SELECT key, value FROM meta WHERE key IN ('generation', 'ranking_embedder')"))
        return int(rows.get("generation") or 0), rows.get("ranking_embedder") or None

    def ranking_history(self) -> list[str | None]:
        """What ranked before, oldest first (None: the shipped embedder), for a rollback."""
        return json.loads(self.meta("ranking_history") or "[]")

    def set_ranking_embedder(self, version: str | None, history: list[str | None]) -> None:
        """Make `version` (None: the shipped embedder) rank from the next generation on. The
        caller holds the write lock and has stored its vectors of every chunk."""
        with self.transaction():
            self.set_meta("ranking_embedder", version or "")
            self.set_meta("ranking_history", json.dumps(history))
            self._bump_generation()

    def chunks_without_ranking_vectors(self, embedder: str) -> np.ndarray:
        rows = self._db.execute(
            "SELECT c.id FROM chunks c LEFT JOIN ranking_vectors r ON r.chunk_id = c.id AND r.embedder = ? "
            "WHERE r.chunk_id IS NULL ORDER BY c.id", (embedder,)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def add_ranking_vectors(self, embedder: str, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Store `embedder`'s vectors of chunks (a chunk removed meanwhile is skipped). Nothing
        searches them until that embedder is made to rank, so the generation stays."""
        ids = [int(i) for i in ids]
        with self.transaction() as db:
            present = {r[0] for r in _rows_of(db, "SELECT id FROM chunks WHERE id IN ({})", ids)}
            keep = [i for i, chunk_id in enumerate(ids) if chunk_id in present]
            self._insert_ranking_vectors(db, embedder, [int(ids[i]) for i in keep], np.asarray(vectors)[keep])

    @staticmethod
    def _insert_ranking_vectors(db: sqlite3.Connection, embedder: str, ids: Sequence[int], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        db.executemany("INSERT OR REPLACE INTO ranking_vectors(embedder, chunk_id, vector) VALUES (?, ?, ?)",
                       [(embedder, int(i), v.tobytes()) for i, v in zip(ids, vectors)])

    def drop_ranking_vectors(self, keep: Sequence[str]) -> int:
        """Delete the vectors of every tuned embedder not in `keep`; how many rows went."""
        marks = ",".join("?" * len(keep)) or "''"
        with self.transaction() as db:
            return db.execute(f"DELETE FROM ranking_vectors WHERE embedder NOT IN ({marks})", list(keep)).rowcount

    def index_snapshot(self, shipped: bool, dim: int) -> tuple[int, str | None, np.ndarray, np.ndarray, int]:
        """What a FAISS index is rebuilt from, read as one snapshot (a commit meanwhile cannot
        mix in): (generation, the ranking embedder, chunk ids, their vectors by it, chunks it
        has no vector of). With `shipped`, the shipped embedder's vectors whatever ranks."""
        db = self._db
        db.execute("BEGIN")  # deferred: the reads below see one state of the database
        try:
            generation, ranking = self.ranking_state()
            if shipped or ranking is None:
                found = db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
                missing = 0
            else:
                found = db.execute("SELECT c.id, r.vector FROM chunks c LEFT JOIN ranking_vectors r ON "
                                   "r.chunk_id = c.id AND r.embedder = ? ORDER BY c.id", (ranking,)).fetchall()
                missing = sum(1 for _, blob in found if blob is None)
                found = [row for row in found if row[1] is not None]
        finally:
            db.execute("COMMIT")
        ids, vectors = _unpack(found, dim)
        return generation, None if shipped else ranking, ids, vectors, missing

    def ranking_vectors(self, embedder: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every chunk by `embedder`, for building its FAISS index."""
        rows = self._db.execute("SELECT chunk_id, vector FROM ranking_vectors WHERE embedder = ? ORDER BY chunk_id",
                                (embedder,)).fetchall()
        return _unpack(rows, dim)

    def vectors_of(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        """The shipped embedder's vectors of chunks `ids`, by id (a chunk not stored is absent)."""
        rows = _rows_of(self._db, "SELECT id, vector FROM chunks WHERE id IN ({})", ids)
        return {chunk_id: np.frombuffer(blob, dtype=np.float32, count=dim) for chunk_id, blob in rows}

    def ranking_vectors_of(self, embedder: str, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        """`embedder`'s (a tuned one's) vectors of chunks `ids`, by id (a chunk it has none of is absent)."""
        rows = _rows_of(self._db, "SELECT chunk_id, vector FROM ranking_vectors WHERE embedder = ? AND chunk_id IN ({})",
                        ids, before=(embedder,))
        return {chunk_id: np.frombuffer(blob, dtype=np.float32, count=dim) for chunk_id, blob in rows}

    def chunk_ords(self, ids: Sequence[int]) -> dict[int, int]:
        """Each chunk's place in its document (0 first), by id."""
        return dict(_rows_of(self._db, "SELECT id, ord FROM chunks WHERE id IN ({})", ids))

    def embedding_rows(self, ids: Sequence[int]) -> list[tuple[int, str, str, str, int]]:
        """(id, document title, section, text, tokens) of chunks: what their embedding input is made of."""
        return sorted(_rows_of(self._db, "SELECT c.id, d.title, c.section, c.text, c.n_tokens FROM chunks c "
                                         "JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({})", ids))


def _rows_of(db: sqlite3.Connection, sql: str, ids: Sequence[int], before: tuple = ()) -> list[tuple]:
    """The rows of `sql`, whose "{}" is an id list, for all of `ids`, _IN_LIMIT at a time;
    `before`: the values of any "?" in `sql` ahead of the list."""
    ids, rows = [int(i) for i in ids], []
    for start in range(0, len(ids), _IN_LIMIT):
        part = ids[start: start + _IN_LIMIT]
        rows += db.execute(sql.format(",".join("?" * len(part))), [*before, *part]).fetchall()
    return rows


def _unpack(rows: Sequence[tuple[int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.zeros((len(rows), dim), dtype=np.float32)
    for i, (_, blob) in enumerate(rows):
        vectors[i] = np.frombuffer(blob, dtype=np.float32)
    return ids, vectors
