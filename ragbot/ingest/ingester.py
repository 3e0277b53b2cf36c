"""Ingest: files and folders -> Documents -> Chunks -> vectors, stored in SQLite and FAISS.

Incremental: a file whose bytes (sha256) and pipeline (embedder + chunking settings) match what
is stored is skipped; a changed file replaces its old chunks in one transaction. One bad file
is reported with its reason and never stops the others.

One copy of a document: a file with the same bytes as a document already stored from another
path (still there, unchanged) is reported as a duplicate and not stored, so two copies never
take two of the passages a question is shown. A copy already stored, unchanged, is the one kept;
of new or changed copies in one run, the first read. The store records each such copy's path
(`Store.copies`), so searching under that path finds the document, and when the document is
removed, its file is gone or its bytes change, a copy whose file still holds the old bytes is
read and stored in its place in the same run: nothing a copy held stops being searchable. A
stored document whose file is gone while a file added in the run holds its bytes was moved or
renamed: it goes, and is reported as moved.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragbot.ingest.chunking import chunk_document
from ragbot.retrieve.embed import Embedder
from ragbot.errors import DiskFullError, DocumentError
from ragbot.retrieve.index import VectorIndex, approximate_if_due
from ragbot.ingest.pdf import VERSION as PDF_RULES
from ragbot.ingest.readers import HTML_RULES, TITLE_RULES, kind_of, read_bytes, read_document, supported_suffixes
from ragbot.ingest.tables import VERSION as TABLE_RULES
from ragbot.ingest.word import VERSION as WORD_RULES
from ragbot.settings import Settings
from ragbot.text import counted
from ragbot.storage.store import Store, StoredDocument
from ragbot.types import Chunk, Document

# Bump when reading or chunking changes, so documents are redone (a chunk that comes out the same
# keeps its stored vectors: Ingester._stored_vectors). 2: one Markdown heading rule for every kind
# (92d4b85: "## Learning C#" keeps its "#", a "#1 priority" line is text, not a heading). 3: long
# paragraphs are cut at every script's sentence stops (chunking._SENTENCE_END), not only . ! ?.
PIPELINE_VERSION = 3
# How a chunk's embedding input is made from its title, section, text and tokens (`embedding_input`,
# MAX_PREFIX_TOKENS): a stored vector is used again only for the same way. Bump it when that
# changes. A pipeline written before it was named reads as 1.
EMBEDDING_INPUT = 1
_INPUT_VERSION = re.compile(r"\|input=(\d+)")
MAX_PREFIX_TOKENS = 48
FLUSH_CHUNKS = 512  # embed and store in groups of about this many chunks


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # not failures: unsupported files inside folders
    removed: list[str] = field(default_factory=list)
    # (file, the stored document with the same bytes): not stored twice
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    # (copy, the document it was a copy of): stored because that one was removed, gone or changed
    stood_in: list[tuple[str, str]] = field(default_factory=list)
    copies_forgotten: list[str] = field(default_factory=list)  # copies' paths a remove named
    # (stored path whose file is gone, the file added now with its bytes): moved or renamed
    moved: list[tuple[str, str]] = field(default_factory=list)
    # stored documents under the folders read whose files are gone, kept (an ingest without --prune)
    gone: list[str] = field(default_factory=list)
    # (file stored, Document.guessed_encoding): read in an encoding guessed from its bytes (encoding.py)
    guessed_encodings: list[tuple[str, str]] = field(default_factory=list)
    chunks_added: int = 0
    # of chunks_added, those whose vectors came from the document's stored version (not embedded again)
    chunks_kept: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    vector_index: dict | None = None  # measurements when this ingest made the index approximate

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        rate = self.chunks_added / self.seconds if self.seconds else 0.0
        moved_to = {new for _, new in self.moved}  # a moved file is counted as moved, not also as added
        parts = [
            f"added {sum(path not in moved_to for path in self.added)}",
            f"updated {sum(path not in moved_to for path in self.updated)}",  # `mv -f` onto a stored file
            f"unchanged {len(self.unchanged)}",
            f"failed {len(self.failed)}",
        ]
        if self.moved:
            parts.append(f"moved {len(self.moved)}")
        if self.removed:
            parts.append(f"removed {len(self.removed)}")
        if self.gone:
            parts.append(f"gone but kept {len(self.gone)}")
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)}")
        if self.duplicates:
            parts.append(f"duplicates {len(self.duplicates)}")
        if self.stood_in:
            parts.append(f"copies stored in place {len(self.stood_in)}")
        # With chunks kept, a rate would count chunks not embedded: left out.
        kept = f" ({self.chunks_kept} unchanged, not embedded again)" if self.chunks_kept else ""
        line = (f"{', '.join(parts)} — {counted(self.chunks_added, 'chunk')}{kept} in {self.seconds:.1f}s"
                + ("" if self.chunks_kept else f" ({rate:.0f} chunks/s)"))
        if not (self.added or self.updated or self.unchanged or self.failed or self.skipped or self.removed or self.moved
                or self.duplicates or self.stood_in):
            line += f"\nno files found to read (hidden files and folders are passed over); ragbot reads {supported_suffixes()}"
        built = self.vector_index
        if built and built.get("attempted_at"):
            line += f"\nvector index kept {'approximate' if built['kind'] == 'ivf' else 'exact'}: {built['reason']}"
        elif built and built["kind"] == "ivf":
            line += (f"\nvector index now approximate (IVF, {built['lists']} lists, {built['nprobe']} read per search): "
                     f"recall@10 {built['recall_at_10']:.3f} against exact search on {built['vectors']} vectors "
                     f"(queries made from them), built in {built['seconds']:.0f}s")
        elif built:
            line += f"\nvector index exact ({built['reason']})"
        return line


# (files done, files total, chunks embedded so far); called with done=0 once the files are
# counted, after each file, while a group of chunks is embedded, and once the last are embedded
ProgressFn = Callable[[int, int, int], None]


@dataclass(frozen=True)
class _Duplicate:
    """A file with the bytes of a document kept from another path; `was_stored`: this file's own
    earlier version is stored and goes."""
    source: str
    original: str
    was_stored: bool
    sha256: str


def collect_files(paths: Iterable[str | Path], report: IngestReport) -> list[Path]:
    """Supported files under `paths` (recursive, hidden entries skipped), in a stable order.

    Missing paths, broken links and symlink loops go to report.failed; unsupported files met
    inside folders go to report.skipped (a file named explicitly with such a type is a failure).
    """
    files: list[Path] = []
    seen_files: set[str] = set()
    for raw in paths:
        path = Path(os.path.abspath(os.path.expanduser(str(raw))))
        problem = _stat_problem(path)
        if problem:
            report.failed.append((str(path), problem))
            continue
        if path.is_dir():
            candidates = _walk(path, report)
        else:
            if kind_of(path) is None:
                report.failed.append(
                    (str(path), f"unsupported file type {path.suffix or '(no extension)'}; supported: {supported_suffixes()}")
                )
                continue
            candidates = [path]
        for file in candidates:
            if str(file) not in seen_files:
                seen_files.add(str(file))
                files.append(file)
    return files


def _stat_problem(path: Path) -> str | None:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # bytes Python kept as surrogates: the database stores names as text
        return "the file name is not valid UTF-8; rename the file to ingest it"
    try:
        os.stat(path)
    except FileNotFoundError:
        return "broken symbolic link" if os.path.islink(path) else "no such file or directory"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"cannot access: {exc.strerror or exc}"
    if not (path.is_dir() or path.is_file()):
        return "not a regular file or folder"
    return None


def _walk(root: Path, report: IngestReport) -> list[Path]:
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()

    def on_error(exc: OSError) -> None:
        report.failed.append((str(exc.filename), f"cannot list folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=on_error):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in visited:
            report.failed.append((dirpath, "symbolic link loop (folder already visited)"))
            dirnames[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            file = Path(dirpath) / name
            problem = _stat_problem(file)
            if problem:
                report.failed.append((str(file), problem))
            elif kind_of(file) is None:
                report.skipped.append((str(file), f"unsupported file type {file.suffix or '(no extension)'}"))
            else:
                found.append(file)
    return found


def _input_version(pipeline: str) -> int:
    """The EMBEDDING_INPUT a stored document's pipeline names (1 when it names none)."""
    match = _INPUT_VERSION.search(pipeline)
    return int(match.group(1)) if match else 1


def embedding_input(embedder: Embedder, title: str, section: str, text: str, n_tokens: int) -> str:
    """What is embedded for a chunk: its text behind a short title/section line, within the
    embedder's limit (the same for the shipped embedder and a tuned one, which share a tokenizer)."""
    prefix = section if section.startswith(title) else " > ".join(p for p in (title, section) if p)
    budget = min(MAX_PREFIX_TOKENS, embedder.max_tokens - n_tokens)
    if budget <= 0:
        prefix = ""
    else:
        offsets = embedder.token_offsets(prefix)
        if len(offsets) > budget:
            prefix = prefix[: offsets[budget - 1][1]]
    return f"{prefix}\n{text}" if prefix else text


class Ingester:
    """Writes one generation. `index` is the FAISS index being updated: the shipped embedder's
    vectors, or with `ranking` (a tuned embedder's version and the embedder), that one's; every
    chunk is then embedded by both, since the shipped vectors give the scores (store.py)."""

    def __init__(self, settings: Settings, store: Store, index: VectorIndex, embedder: Embedder,
                 ranking: tuple[str, Embedder] | None = None, index_dir: Path | None = None):
        self.settings = settings
        self.store = store
        self.index = index
        self.embedder = embedder
        self.ranking = ranking
        self.index_dir = index_dir or settings.index_dir
        self.derived_seconds = 0.0  # set by RagBot: the new generation's BM25 index and abbreviations
        self.pipeline = (
            f"v{PIPELINE_VERSION}|{embedder.name}|chunk={settings.chunk_tokens}/{settings.chunk_overlap}"
            f"|input={EMBEDDING_INPUT}"
        )
        # A PDF is read again when the way PDFs are read changes; other files are not.
        self.pdf_pipeline = self.pipeline + (f"|pdf-structure={PDF_RULES}{'+ruled' if settings.pdf_ruled_tables else ''}"
                                             if settings.pdf_structure else "")

    def _pipeline_for(self, file: Path) -> str:
        """What a stored document must have been made with to count as current."""
        kind = kind_of(file)
        if kind == "pdf":
            return self.pdf_pipeline
        # Markdown, HTML and Word are read again when the way their tables are written changes,
        # Markdown and HTML also when the way HTML is read does, Word when the way it is read does,
        # Markdown and text when the way their title line is found does.
        return (self.pipeline + (f"|tables={TABLE_RULES}" if kind in ("markdown", "html", "docx") else "")
                + (f"|html={HTML_RULES}" if kind in ("markdown", "html") else "")
                + (f"|title={TITLE_RULES}" if kind in ("markdown", "text") else "")
                + (f"|word={WORD_RULES}" if kind == "docx" else ""))

    def ingest(self, paths: Sequence[str | Path], prune: bool = False, progress: ProgressFn | None = None,
               store_copies: bool = False, remember_copies: bool = True) -> IngestReport:
        """`store_copies`: store a file even when another path holds its bytes (an evaluation
        set's documents are judged by their names, so each copy must be found under its own).
        `remember_copies=False`: a named file found to be a copy is not recorded as one (the
        chat deletes its own copy of such an upload)."""
        started = time.perf_counter()
        report = IngestReport()
        files = collect_files(paths, report)
        if progress:
            progress(0, len(files), 0)  # the files are counted, the models loaded: reading starts now
        kept: dict[str, str] | None = None if store_copies else {}  # bytes' sha256 -> file, this run
        found: list[_Duplicate] = []
        try:
            superseded = self._read_and_store(files, report, kept, found, progress)
            report.moved = self._moved(report.added + report.updated)
            moved_from = [old for old, _ in report.moved]
            gone = [source for source in self._gone() if source not in moved_from] if prune else []
            if not prune:  # said, not removed: a file of a folder read here that is no longer there
                folders = [os.path.abspath(os.path.expanduser(str(p))) for p in paths]
                said = set(moved_from) | {path for path, _ in report.failed}  # a named file: said as failed
                report.gone = [d.source for d in self.store.documents_under(folders)
                               if d.source not in said and not os.path.isfile(d.source)]
            if prune:
                self.store.forget_copies(self._lapsed_copies())
            # A duplicate's own earlier version, a moved document's old path, and a document whose
            # file is gone, go only once everything read here is stored, their copies included: a
            # failure or a full disk before that leaves them searchable, and their copies recorded.
            leaving = frozenset(superseded + gone + moved_from)
            self._stand_in(report, kept, found, leaving, handled={str(f) for f in files})
            self._remove(superseded + gone + moved_from)
            report.removed.extend(superseded + gone)
            self._record(found, named=() if remember_copies else {str(f) for f in files})
            report.vector_index = self.save_index()
        except DiskFullError as exc:
            raise DiskFullError(f"{exc}. The documents stored before the disk filled are kept and searchable; run "
                                f"the ingest again when there is room (stored, unchanged files are skipped)") from None
        report.seconds = time.perf_counter() - started
        return report

    def _read_and_store(self, files: Sequence[Path], report: IngestReport, kept: dict[str, str] | None,
                        found: list[_Duplicate], progress: ProgressFn | None = None,
                        leaving: frozenset[str] = frozenset()) -> list[str]:
        """Read, chunk, embed and store `files`, filling `report` and `found` (the duplicates);
        returns the stored documents found to be duplicates of another file, which the caller
        removes."""
        pending: list[tuple[Document, list[Chunk], bool]] = []
        superseded: list[str] = []
        done = 0

        def flush() -> None:
            nonlocal pending
            embedded = report.chunks_added

            def tick(n: int) -> None:  # a big file's chunks embed for minutes: the bar moves meanwhile
                nonlocal embedded
                embedded += n
                progress(done, len(files), embedded)

            self._store_batch(pending, report, tick if progress else None)
            pending = []

        for file in files:
            try:
                item = self._prepare(file, kept, leaving)
            except DocumentError as exc:
                # Nothing stored is lost to a file that fails now; the message says the old
                # version still answers (helper-83's drive: an emptied file kept answering).
                kept_version = " (the version stored before is kept and still searched)" \
                    if self.store.document(exc.path) is not None else ""
                report.failed.append((exc.path, exc.reason + kept_version))
                item = None
            if isinstance(item, _Duplicate):
                report.duplicates.append((item.source, item.original))
                found.append(item)
                if item.was_stored:
                    superseded.append(item.source)
            elif item is None or isinstance(item, str):
                if isinstance(item, str):
                    report.unchanged.append(item)
            else:
                pending.append(item)
                if sum(len(c) for _, c, _ in pending) >= FLUSH_CHUNKS:
                    flush()
            done += 1
            if progress:
                progress(done, len(files), report.chunks_added)
        flush()
        if progress and files:  # the last group is embedded now: the rate shown ends as the summary's
            progress(done, len(files), report.chunks_added)
        return superseded

    def _stand_in(self, report: IngestReport, kept: dict[str, str] | None, found: list[_Duplicate],
                  leaving: frozenset[str], handled: set[str] = frozenset()) -> None:
        """Store each recorded copy that holds bytes its document no longer will: the document
        is `leaving` (about to be removed), or its bytes changed. Only a copy whose file still
        holds the bytes it was recorded with stands in; a record whose file is gone or holds
        other bytes now is forgotten (that file is ingested again when the user names it).
        `handled`: files this run read already (stored, or found a copy again, by that reading).
        A stored copy's record goes with its storing (Store.replace_document), so a full disk
        here leaves the records of the copies not yet stored for the next run."""
        waiting, lapsed = [], []
        for path, original, sha256 in self.store.copies_left_behind(leaving):
            if path in handled:
                continue
            try:
                holds = hashlib.sha256(read_bytes(Path(path))).hexdigest() == sha256
            except DocumentError:
                holds = False
            (waiting if holds else lapsed).append((path, original))
        self.store.forget_copies([path for path, _ in lapsed])
        if not waiting:
            return
        added_before = len(report.added)
        self._read_and_store([Path(path) for path, _ in waiting], report, {} if kept is None else kept, found,
                             leaving=leaving)
        stored = set(report.added[added_before:])
        report.stood_in.extend((path, original) for path, original in waiting if path in stored)

    def _record(self, found: Sequence[_Duplicate], named: set[str] | tuple = ()) -> None:
        """Remember the duplicates found as copies of their documents, except those `named`."""
        self.store.record_copies([(d.source, d.original, d.sha256) for d in found if d.source not in named])

    def _remove(self, sources: Sequence[str]) -> None:
        if sources:
            self.index.remove(self.store.remove_documents(sources))

    def _prepare(self, file: Path, kept: dict[str, str] | None,
                 leaving: frozenset[str] = frozenset()) -> tuple[Document, list[Chunk], bool] | str | _Duplicate:
        """The document and its chunks; its source when it is stored and unchanged; or, unless
        `kept` is None, what it duplicates. `kept` gathers the bytes of the files kept so far;
        documents in `leaving` are about to be removed, so nothing is their copy."""
        source = str(file)
        stored = self.store.document(source)
        data = read_bytes(file)
        digest = hashlib.sha256(data).hexdigest()
        if kept is not None:
            original = self._original_of(source, digest, stored, kept, leaving)
            if original is not None:
                return _Duplicate(source, original, stored is not None, digest)
        if stored is not None and stored.pipeline == self._pipeline_for(file) and digest == stored.sha256:
            if kept is not None:
                kept[digest] = source
            return source
        try:
            doc = read_document(file, pdf_structure=self.settings.pdf_structure,
                                ruled_tables=self.settings.pdf_ruled_tables, data=data)
        except DocumentError:
            raise
        except Exception as exc:  # noqa: BLE001 - a reader's bug or limit fails this file, not the ingest
            raise DocumentError(source, f"could not be read ({type(exc).__name__}: {exc})") from None
        chunks = chunk_document(
            doc,
            count_tokens=self.embedder.count_tokens,
            token_offsets=self.embedder.token_offsets,
            chunk_tokens=self.settings.chunk_tokens,
            overlap=self.settings.chunk_overlap,
            max_tokens=self.embedder.max_tokens,
        )
        if kept is not None:  # only a file read without fault stands for its bytes
            kept[digest] = source
        return doc, chunks, stored is not None

    def _original_of(self, source: str, digest: str, stored: StoredDocument | None,
                     kept: dict[str, str], leaving: frozenset[str] = frozenset()) -> str | None:
        """The kept file with these bytes, if any: one stored from another path whose file still
        holds them (a stored, unchanged file defers only to copies stored before it; a changed or
        new one to any), else one kept earlier in this run (which may be a changed stored file
        whose new bytes are not written yet)."""
        for other in self.store.documents_with_sha256(digest):
            unchanged = stored is not None and stored.sha256 == digest
            if other.source == source or other.source in leaving or (unchanged and other.id > stored.id):
                continue
            try:
                if hashlib.sha256(read_bytes(Path(other.source))).hexdigest() == digest:
                    return other.source
            except DocumentError:
                continue  # moved or unreadable: this file is then the copy to keep
        earlier = kept.get(digest)
        return earlier if earlier not in (None, source) else None

    def _store_batch(self, batch: list[tuple[Document, list[Chunk], bool]], report: IngestReport,
                     on_embedded: Callable[[int], None] | None = None) -> None:
        """Embed and store `batch`; `on_embedded(n)` after each n chunks embedded. A chunk that
        the document's stored version already holds, with the same embedding input, keeps its
        stored vectors (`_stored_vectors`): only the passages that changed are embedded."""
        if not batch:
            return
        inputs = [self.embedding_input(doc, chunk) for doc, chunks, _ in batch for chunk in chunks]
        t0 = time.perf_counter()
        vectors, ranked, kept, own = self._stored_vectors(batch)
        todo = [i for i in range(len(inputs)) if i not in kept]
        if on_embedded and kept:
            on_embedded(len(kept))
        # With a tuned ranking embedder every new chunk is embedded twice; the count of chunks
        # embedded moves through both passes, half a chunk a vector.
        passes = 1 if self.ranking is None else 2
        made = 0

        def tick(n: int) -> None:
            nonlocal made
            before = made // passes
            made += n
            if on_embedded and made // passes > before:
                on_embedded(made // passes - before)

        if todo:
            part = [inputs[i] for i in todo]
            vectors[todo] = self.embedder.encode(part, batch_size=self.settings.embed_batch_size, on_progress=tick)
            if self.ranking is not None:
                ranked[todo] = self.ranking[1].encode(part, batch_size=self.settings.embed_batch_size, on_progress=tick)
        if self.ranking is None:
            ranked = vectors
        report.embed_seconds += time.perf_counter() - t0
        report.chunks_kept += len(kept)
        offset = 0
        for (doc, chunks, existed), (unchanged, moved_from) in zip(batch, own):
            part = slice(offset, offset + len(chunks))
            offset += len(chunks)
            tuned = None if self.ranking is None else (self.ranking[0], ranked[part])
            removed, ids, held = self.store.replace_document(doc, chunks, vectors[part],
                                                             self._pipeline_for(Path(doc.source)), ranking=tuned,
                                                             kept=unchanged, moved_from=moved_from)
            self.index.remove(removed)
            # A kept chunk is in the index already, under its id, with these very vectors.
            new = [at for at in range(len(chunks)) if at not in held]
            self.index.add(np.asarray([ids[at] for at in new], dtype=np.int64), ranked[part][new])
            (report.updated if existed else report.added).append(doc.source)
            if doc.guessed_encoding:
                report.guessed_encodings.append((doc.source, doc.guessed_encoding))
            report.chunks_added += len(chunks)

    def _stored_vectors(self, batch: list[tuple[Document, list[Chunk], bool]]
                        ) -> tuple[np.ndarray, np.ndarray, set[int], list[tuple[dict[int, int], list[str]]]]:
        """(vectors, ranking vectors, the positions filled from stored vectors, and for each
        document what Store.replace_document keeps: position in the document -> the id of a chunk
        its earlier version holds unchanged, each id once, and the paths its file moved from). For each chunk of `batch` (in order) that a stored document at its path, or
        one with its bytes, holds with the same embedding input (document title, section, text
        and token count, made the way `EMBEDDING_INPUT` names), the vectors stored with it, of the
        shipped embedder and of the tuned ranking one if any (when that one has them); zeros
        elsewhere. Those are the vectors embedding the chunk again would give, since a store keeps
        one shipped embedder (`Store.claim_embedder`) and a tuned one's vectors are kept under its
        version: a pipeline change that moves few chunks, or an edit to a long document, embeds
        only what moved. The earlier version is the one at its path, or one with its bytes whose
        file is gone (moved here: `_moved` removes it once this is stored). Of two stored copies
        of one passage (a repeated paragraph), the id nearer its place in the document is kept."""
        n = sum(len(chunks) for _, chunks, _ in batch)
        dim = self.embedder.dim
        vectors = np.zeros((n, dim), dtype=np.float32)
        ranked = np.zeros((n, self.ranking[1].dim if self.ranking else dim), dtype=np.float32)
        filled: set[int] = set()
        kept: list[tuple[dict[int, int], list[str]]] = []
        offset = 0
        for doc, chunks, _ in batch:
            here = self.store.document(doc.source)
            others = [d for d in self.store.documents_with_sha256(doc.sha256) if d.source != doc.source]
            usable = [d for d in ([here] if here else []) + others if _input_version(d.pipeline) == EMBEDDING_INPUT]
            moved_from = [d.source for d in others if not os.path.isfile(d.source)]
            mine = set(self.store.chunk_ids_of([d.source for d in usable
                                                if d.source == doc.source or d.source in moved_from]).tolist())
            stored: dict[tuple, list[int]] = {}
            for chunk_id, title, section, text, n_tokens in self.store.embedding_rows(
                    self.store.chunk_ids_of([d.source for d in usable])):
                stored.setdefault((title, section, text, n_tokens), []).append(chunk_id)
            found = {at: stored[key] for at, chunk in enumerate(chunks)
                     if (key := (doc.title, chunk.section, chunk.text, chunk.n_tokens)) in stored}
            ids = sorted({chunk_id for same in found.values() for chunk_id in same})
            shipped = self.store.vectors_of(ids, dim)
            tuned = self.store.ranking_vectors_of(self.ranking[0], ids, ranked.shape[1]) if self.ranking else shipped
            ords = self.store.chunk_ords([i for i in ids if i in mine])
            own: dict[int, int] = {}
            taken: set[int] = set()  # the ids kept so far
            for at, same in found.items():
                ready = [chunk_id for chunk_id in same if chunk_id in shipped and chunk_id in tuned]
                if not ready:
                    continue
                # The document's own earlier chunk, not kept for another position yet, and of
                # those the one that stood nearest this place, keeps its id.
                ours = sorted((chunk_id for chunk_id in ready if chunk_id in ords and chunk_id not in taken),
                              key=lambda chunk_id: abs(ords[chunk_id] - chunks[at].ord))
                source = ours[0] if ours else ready[0]
                vectors[offset + at], ranked[offset + at] = shipped[source], tuned[source]
                filled.add(offset + at)
                if ours:
                    own[at] = source
                    taken.add(source)
            kept.append((own, moved_from))
            offset += len(chunks)
        return vectors, ranked, filled, kept

    def embedding_input(self, doc: Document, chunk: Chunk) -> str:
        return embedding_input(self.embedder, doc.title, chunk.section, chunk.text, chunk.n_tokens)

    def remove(self, paths: Sequence[str | Path]) -> IngestReport:
        """Remove the stored documents at or under `paths` (`removed`), and forget the copies
        recorded there (`copies_forgotten`; their files are not touched). A removed document's
        copy elsewhere is stored in its place first (`stood_in`, `added`; one that fails to read
        is in `failed`)."""
        started = time.perf_counter()
        report = IngestReport()
        targets = [os.path.abspath(os.path.expanduser(str(p))) for p in paths]
        report.removed = [d.source for d in self.store.documents_under(targets)]
        report.copies_forgotten = [path for path, _ in self.store.copies_under(targets)]
        self.store.forget_copies(report.copies_forgotten)
        found: list[_Duplicate] = []
        self._stand_in(report, {}, found, frozenset(report.removed))
        self._remove(report.removed)
        self._record(found)
        report.vector_index = self.save_index()  # a remove that makes the index exact again is reported by status
        report.seconds = time.perf_counter() - started
        return report

    def _lapsed_copies(self) -> list[str]:
        """The recorded copies whose files are gone or hold other bytes now: no copies any more."""
        lapsed = []
        for path, _, sha256 in self.store.copy_records():
            try:
                if hashlib.sha256(read_bytes(Path(path))).hexdigest() != sha256:
                    lapsed.append(path)
            except DocumentError:
                lapsed.append(path)
        return lapsed

    def _moved(self, stored: Sequence[str]) -> list[tuple[str, str]]:
        """(old path, new path) for each stored document whose file is gone and whose bytes a file
        `stored` in this run (added, or updated: `mv -f a b`) now holds: the file was moved or
        renamed, so its old path stops being cited (it stayed, a second copy of the same
        passages, until an `ingest --prune`: helper-83's drive)."""
        moved: list[tuple[str, str]] = []
        taken: set[str] = set()
        for source in stored:
            document = self.store.document(source)
            if document is None:
                continue
            for other in self.store.documents_with_sha256(document.sha256):
                if other.source != source and other.source not in taken and not os.path.isfile(other.source):
                    moved.append((other.source, source))
                    taken.add(other.source)
        return moved

    def _gone(self) -> list[str]:
        """The stored documents whose files no longer exist."""
        return [d.source for d in self.store.documents() if not os.path.isfile(d.source)]

    def save_index(self) -> dict | None:
        """Save the index of this generation (`save_generation_index`); returns the measurements
        of an approximate build, if one was due."""
        self.index, built = save_generation_index(self.store, self.settings, self.index, self.index_dir)
        return built


def save_generation_index(store: Store, settings: Settings, index: VectorIndex,
                          directory: Path) -> tuple[VectorIndex, dict | None]:
    """`index`, of the database's generation, made approximate first when the corpus has grown
    past `approximate_index_above` (index.py) and saved in `directory`; with that build's
    measurements, if any (kept as the store's vector index record)."""
    index, built = approximate_if_due(index, settings.approximate_index_above, store.vector_index_record() or None)
    if built is not None:
        store.set_vector_index_record(built)
    index.save(directory, store.generation())
    return index, built
