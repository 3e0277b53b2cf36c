"""Durable state on disk: atomic writes, folders swapped in whole, and inter-process locks.

Every writer of ragbot's state goes through here, so a crash at any moment leaves either the old
file or the new one under the real name, never a half-written one:
- `atomic_file` / `write_atomic`: a temporary file with a unique name in the same folder, written,
  flushed and fsync'ed, renamed over the target, then the folder fsync'ed (so the rename itself
  survives a power cut);
- `swap_in_dir`: a folder built under a temporary name (an adapter, a converted model, a BM25
  index) becomes the target by one rename, its files synced first;
- `state_lock`: an inter-process lock (`filelock`) around a change of shared state, which says
  who holds it (pid, command, since when) when it is busy;
- `serving` / `not_served`: a shared lock every `ragbot chat` holds on its data dir while it runs,
  and the exclusive one a restore takes, so a data dir is never swapped under a running server.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ragbot.errors import BusyError, DiskFullError


# How long an older index generation stays once a newer one is saved: another process that read
# the older generation from the database just before may still be opening its files. A leftover
# of an interrupted write is removed once it is this old itself (a big index takes a while).
GRACE_SECONDS = 120
LEFTOVER_SECONDS = 3600
_STALE = ".stale-"  # prefix of the marker that records when a generation became old


def remove_old_generations(directory: Path, pattern: "re.Pattern[str]", keep: int, grace: float = GRACE_SECONDS) -> None:
    """Called after saving generation `keep`: the files (or folders) named like `pattern`
    (group 1: the generation) of other generations are marked old the first time they are seen,
    and removed on a later save once the mark is `grace` seconds old."""
    now = time.time()
    for entry in directory.iterdir():
        try:
            if entry.name.startswith(_STALE):
                if not (directory / entry.name[len(_STALE):]).exists():
                    entry.unlink(missing_ok=True)  # the marker of something already gone
                continue
            if entry.name.startswith(".") and ".tmp" in entry.name:
                if now - entry.stat().st_mtime >= LEFTOVER_SECONDS:
                    remove_path(entry)
                continue
            match = pattern.match(entry.name)
            if not match or int(match.group(1)) == keep:
                continue
            marker = directory / f"{_STALE}{entry.name}"
            if not marker.exists():
                marker.touch()
            elif now - marker.stat().st_mtime >= grace:
                remove_path(entry)
                marker.unlink(missing_ok=True)
        except OSError:
            continue


def remove_path(path: Path) -> None:
    """A file or a whole folder, gone (missing is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def unwritable(folder: Path) -> str | None:
    """Why ragbot could not write in `folder` (its database, locks and indexes), or None."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system"
    except OSError:
        pass
    if not os.access(folder, os.W_OK | os.X_OK):
        return "this user may not write there (permission denied)"
    return None


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full(path: Path) -> DiskFullError:
    try:
        free = f"{shutil.disk_usage(path if path.is_dir() else path.parent).free / 2**20:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(f"{path}: no space left on the device ({free}); what was stored before is kept. "
                         f"Free some space, then run the command again")


@contextmanager
def full_disk_reported(path: Path) -> Iterator[None]:
    """Turn a full disk inside the block into DiskFullError naming `path`."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(Path(path)) from None
        raise


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """Write `path` through a temporary file that replaces it only when the block succeeds.
    A full disk becomes DiskFullError, with the old file still in place."""
    with atomic_path(path) as tmp, full_disk_reported(path):
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name next to `path`, for a writer that wants a file name rather than a file
    object (a library that writes the file itself); when the block succeeds the file is synced
    and renamed over `path`, otherwise removed. A full disk becomes DiskFullError."""
    path = Path(path)
    with full_disk_reported(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    tmp = Path(name)
    try:
        with full_disk_reported(path):
            yield tmp
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_atomic(path: Path, data: str | bytes) -> None:
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)


def new_temp_dir(parent: Path, prefix: str) -> Path:
    """A fresh folder next to where the finished one will go (same filesystem: rename works)."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


@contextmanager
def building_dir(target: Path, prefix: str) -> Iterator[Path]:
    """Build a folder under a temporary name next to `target` (the block fills it); it becomes
    `target` in one swap when the block succeeds, and is removed when it fails."""
    tmp = new_temp_dir(Path(target).parent, prefix)
    try:
        yield tmp
        swap_in_dir(tmp, Path(target))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def swap_in_dir(tmp: Path, target: Path) -> None:
    """Make the finished folder `tmp` the `target`, replacing an older one. Its files are synced
    first; a reader sees the old folder or the new one."""
    for item in tmp.rglob("*"):
        if item.is_file():
            with open(item, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(tmp)
    if target.exists():
        # A folder cannot be renamed over a non-empty one: move the old aside, then drop it.
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    fsync_dir(target.parent)


@contextmanager
def state_lock(path: Path, what: str, timeout: float = 30.0,
               on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the inter-process lock `path` while `what` changes. Waits up to `timeout` seconds
    (0: not at all, negative: as long as it takes; `on_wait` is told who holds it when a wait
    begins), then raises BusyError naming the holder."""
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    holder = path.with_name(path.name + ".holder.json")
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if timeout == 0:
                raise
            if on_wait is not None:
                on_wait(f"waiting for {what}: {describe_holder(holder)}")
            try:
                lock.acquire(timeout=timeout)
            except FileNotFoundError:  # its folder went away meanwhile (a restore moves a data dir aside)
                raise BusyError(f"{path.parent} was moved while waiting for {what} (a restore?); "
                                f"run the command again") from None
    except Timeout:
        raise BusyError(f"{what} is busy: {describe_holder(holder)}; try again when it is done") from None
    try:
        try:
            holder.unlink(missing_ok=True)  # a killed holder's record must not outlive it
            write_atomic(holder, json.dumps({"pid": os.getpid(), "started_at": time.time(), "command": _command()}))
        except (OSError, DiskFullError):
            pass  # naming the holder is a courtesy: a full disk must not keep the lock from working
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _command() -> str:
    """This process's command, short: `ragbot ingest docs` rather than the path of __main__.py."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("ragbot", "__main__.py"):
        program = "ragbot"
    return " ".join([program, *sys.argv[1:3]])


def describe_holder(holder: Path) -> str:
    try:
        info = json.loads(holder.read_text(encoding="utf-8"))
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started_at"]))
        return f"process {info['pid']} ({info.get('command') or 'ragbot'}) holds it since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process holds it"


def serving_lock_path(data_dir: Path) -> Path:
    """The serving lock of `data_dir`: beside it, not in it, so a restore that moves the data
    dir aside and puts another in its place holds one and the same lock throughout."""
    data_dir = Path(data_dir).resolve()
    return data_dir.with_name(f".{data_dir.name}.serving.lock")


@contextmanager
def _flock(data_dir: Path, exclusive: bool, busy: str = "") -> Iterator[bool]:
    """flock(2) on `data_dir`'s serving lock; yields whether it is held. `filelock` has no shared
    mode, so this is flock itself. Where there is none (Windows), or the folder above the data
    dir takes no file or its file system no lock (some network mounts), nothing is locked and it
    yields False. A shared lock waits for an exclusive one; an exclusive one held or shared
    elsewhere is BusyError(`busy`) at once."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    path = serving_lock_path(data_dir)
    try:
        handle = open(path, "a")
    except OSError:
        yield False
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
        except BlockingIOError:
            raise BusyError(busy) from None
        except OSError:
            held = False
        else:
            held = True
        try:
            yield held
        finally:
            if held:
                fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def serving(data_dir: Path) -> Iterator[bool]:
    """Held by a chat server for as long as it serves `data_dir`: a shared lock, so several
    servers may serve one data dir, and `not_served` (a restore) refuses while any does. A
    server that starts during a restore waits for it here. The kernel drops the lock when the
    process ends, however it ends. Yields False where it cannot be taken (`_flock`): the server
    then says a restore will not know of it."""
    with _flock(data_dir, exclusive=False) as held:
        yield held


@contextmanager
def not_served(data_dir: Path) -> Iterator[None]:
    """Held for a whole restore of `data_dir`: taken without waiting, and refused while a chat
    server serves it (`serving`), whose open database would otherwise take its answers and
    votes to the data dir moved aside."""
    with _flock(data_dir, exclusive=True, busy=f"a `ragbot chat` is serving {data_dir}: stop it first, then "
                                               f"restore (its answers and votes would go to the data dir moved aside)"):
        yield
