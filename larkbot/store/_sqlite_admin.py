"""Backup, restore and inventory of the SQLite state, for ``larkbot state``.

A backup is an SQLite database of its own, taken with SQLite's online backup API
(``sqlite3.Connection.backup``) in one step: the copy reads one snapshot of the database
inside a read transaction, and in WAL mode readers never block writers, so a running
daemon keeps admitting and answering while it is taken. The file is written beside its
destination, switched to ``journal_mode=DELETE`` (one self-contained file), checked,
synced and renamed into place, readable by its owner only (it holds messages).

A restore copies the backup's seen ids and inbox items into the state database in one
write transaction, after the store has brought the database's schema up to date. Items
still pending in the backup are handed to an owner that no process holds, so the next
daemon to start takes them over and answers them. A restore refuses while a process has
the state open (its lock file in ``larkbot.owners`` is held), unless forced.

Every function here blocks (files, SQLite): the async wrappers run it on a worker thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from pathlib import Path

import anyio.to_thread
from pydantic import BaseModel, ConfigDict

from larkbot.store.ledger import StoreError
from larkbot.store.sqlite import _OWNERS_DIR, DATABASE_NAME, SCHEMA_VERSION, SqliteStore

__all__ = [
    "SqliteBackupSummary",
    "SqliteInventory",
    "SqliteRestoreSummary",
    "backup_sqlite",
    "inspect_sqlite",
    "restore_sqlite",
]

_BUSY_TIMEOUT_S = 5.0
_SQLITE_MAGIC = b"SQLite format 3\x00"
_REDIS_BACKUP_MARK = b"larkbot-redis-state"
# Restored pending items belong to this owner. It is not an owner id a process can have
# (those are 32 hex digits), so the next store to look for unfinished work takes them over.
_RESTORED_OWNER = "restored"
_INBOX_COLUMNS = "message_id, status, owner, created_at, admitted_at, updated_at, reason, body"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SqliteInventory(_Frozen):
    """What the SQLite state holds: message ids seen, inbox items by status, open processes.

    :ivar oldest_pending_age_seconds: how long ago the oldest pending item was admitted.
    :ivar processes: process ids of the larkbot processes that have the state open.
    """

    path: str
    schema_version: int
    seen: int
    pending: int
    done: int
    failed: int
    expired: int
    oldest_pending_age_seconds: float | None
    processes: list[int]


class SqliteBackupSummary(_Frozen):
    """What a backup wrote: the file, its size, and the state it holds."""

    path: str
    bytes: int
    seconds: float
    inventory: SqliteInventory


class SqliteRestoreSummary(_Frozen):
    """What a restore did: seen ids and inbox items added, and items kept as they were."""

    seen_added: int
    inbox_added: int
    inbox_kept: int
    pending_to_resume: int
    replaced: bool


async def backup_sqlite(state_dir: Path, target: Path) -> SqliteBackupSummary:
    """Copy the state database in ``state_dir`` to ``target``, consistent while it is in use.

    Raises :class:`StoreError` (one sentence) when there is no state or the file cannot
    be written.
    """
    return await anyio.to_thread.run_sync(_backup, Path(state_dir), Path(target))


async def inspect_sqlite(state_dir: Path) -> SqliteInventory:
    """Count what the state database in ``state_dir`` holds, without changing it."""
    return await anyio.to_thread.run_sync(_inspect_state, Path(state_dir))


async def restore_sqlite(
    state_dir: Path, source: Path, *, replace: bool = False, force: bool = False
) -> SqliteRestoreSummary:
    """Load a backup into the state in ``state_dir`` (created when missing).

    Seen ids and inbox items already there are kept, unless ``replace``, which first
    empties the ledger and the inbox. Refuses while a process has the state open unless
    ``force``. Raises :class:`StoreError` with one sentence for the operator.
    """
    state_dir, source = Path(state_dir), Path(source)
    await anyio.to_thread.run_sync(_check_backup_file, source)
    if not force:
        await anyio.to_thread.run_sync(_refuse_if_in_use, state_dir)
    # Opening the store creates the directory and database, and migrates the schema.
    async with SqliteStore.open(state_dir):
        pass
    return await anyio.to_thread.run_sync(_restore, state_dir, source, replace)


def _backup(state_dir: Path, target: Path) -> SqliteBackupSummary:
    started = time.monotonic()
    database = _existing_database(state_dir)
    target = target.expanduser().absolute()
    partial = target.with_name(f".{target.name}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot write the backup {target}: {exc.strerror or exc}") from None
    try:
        source = _connect(database)
        try:
            copy = _connect(partial)
            try:
                # pages=-1: the whole database in one step, inside one read transaction. A
                # stepwise copy restarts whenever the daemon writes, and might never end.
                source.backup(copy, pages=-1)
                copy.execute("PRAGMA journal_mode = DELETE")
                (check,) = copy.execute("PRAGMA quick_check").fetchone()
                if check != "ok":
                    raise StoreError(f"the backup {target} failed its check ({check}): try again")
            finally:
                copy.close()
        finally:
            source.close()
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
        _sync_directory(target.parent)
    except sqlite3.Error as exc:
        raise _failure(exc, database) from None
    except OSError as exc:
        raise StoreError(f"cannot write the backup {target}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    inventory = _inspect_database(target, processes=[])
    return SqliteBackupSummary(
        path=str(target),
        bytes=target.stat().st_size,
        seconds=time.monotonic() - started,
        inventory=inventory,
    )


def _inspect_state(state_dir: Path) -> SqliteInventory:
    database = _existing_database(state_dir)
    return _inspect_database(database, processes=_processes_holding(state_dir, database))


def _inspect_database(database: Path, *, processes: list[int]) -> SqliteInventory:
    try:
        db = _connect(database)
        try:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            _require_tables(db, database)
            (seen,) = db.execute("SELECT count(*) FROM seen").fetchone()
            by_status = dict(db.execute("SELECT status, count(*) FROM inbox GROUP BY status"))
            (oldest,) = db.execute(
                "SELECT min(admitted_at) FROM inbox WHERE status = 'pending'"
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise _failure(exc, database) from None
    return SqliteInventory(
        path=str(database),
        schema_version=int(version),
        seen=int(seen),
        pending=int(by_status.get("pending", 0)),
        done=int(by_status.get("done", 0)),
        failed=int(by_status.get("failed", 0)),
        expired=int(by_status.get("expired", 0)),
        oldest_pending_age_seconds=max(0.0, time.time() - oldest) if oldest else None,
        processes=processes,
    )


def _check_backup_file(source: Path) -> None:
    """Refuse, in one sentence, anything but a readable larkbot SQLite backup."""
    try:
        with open(source, "rb") as file:
            head = file.read(512)
    except OSError as exc:
        raise StoreError(f"cannot read the backup {source}: {exc.strerror or exc}") from None
    if not head.startswith(_SQLITE_MAGIC):
        if _REDIS_BACKUP_MARK in head:
            raise StoreError(
                f"{source} is a backup of the Redis store and this larkbot uses the SQLite "
                "store: set LARKBOT_STORE=redis and REDIS_URL to restore it into Redis"
            )
        raise StoreError(
            f"{source} is not a larkbot state backup: restore a file written by "
            "'larkbot state backup'"
        )
    try:
        db = _connect(source, read_only=True)
        try:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the backup {source} has schema version {version} from a newer larkbot "
                    f"(this one knows {SCHEMA_VERSION}): restore it with that larkbot or a "
                    "later one"
                )
            _require_tables(db, source)
            (check,) = db.execute("PRAGMA quick_check").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise _failure(exc, source) from None
    if check != "ok":
        raise StoreError(f"the backup {source} is damaged ({check}): restore another one")


def _restore(state_dir: Path, source: Path, replace: bool) -> SqliteRestoreSummary:
    database = state_dir / DATABASE_NAME
    try:
        db = _connect(database)
    except sqlite3.Error as exc:
        raise _failure(exc, database) from None
    try:
        db.execute("ATTACH DATABASE ? AS backup", (_uri(source, read_only=True),))
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if replace:
                    db.execute("DELETE FROM inbox")
                    db.execute("DELETE FROM seen")
                (offered,) = db.execute("SELECT count(*) FROM backup.inbox").fetchone()
                seen_added = db.execute(
                    "INSERT OR IGNORE INTO seen (message_id, seen_at)"
                    " SELECT message_id, seen_at FROM backup.seen"
                ).rowcount
                # The seen_on_admit trigger also records each added item's id as seen.
                inbox_added = db.execute(
                    f"INSERT INTO inbox ({_INBOX_COLUMNS})"
                    " SELECT message_id, status,"
                    "  CASE status WHEN 'pending' THEN ? ELSE owner END,"
                    "  created_at, admitted_at, updated_at, reason, body"
                    " FROM backup.inbox WHERE true ON CONFLICT (message_id) DO NOTHING",
                    (_RESTORED_OWNER,),
                ).rowcount
                (pending,) = db.execute(
                    "SELECT count(*) FROM inbox WHERE status = 'pending' AND owner = ?",
                    (_RESTORED_OWNER,),
                ).fetchone()
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        finally:
            db.execute("DETACH DATABASE backup")
    except sqlite3.Error as exc:
        raise _failure(exc, database) from None
    finally:
        db.close()
    return SqliteRestoreSummary(
        seen_added=seen_added,
        inbox_added=inbox_added,
        inbox_kept=int(offered) - inbox_added,
        pending_to_resume=int(pending),
        replaced=replace,
    )


def _refuse_if_in_use(state_dir: Path) -> None:
    database = state_dir / DATABASE_NAME
    if not database.exists():
        return
    holders = _processes_holding(state_dir, database)
    if holders:
        who = ", ".join(str(pid) for pid in holders if pid) or "unknown"
        raise StoreError(
            f"a running larkbot (pid {who}) has the state in {state_dir} open: stop it first "
            "(systemctl stop larkbot), or pass --force to restore under it"
        )


def _processes_holding(state_dir: Path, database: Path) -> list[int]:
    """Process ids of the owners whose lock file is held (0 when the pid is unknown)."""
    owners_dir = state_dir / _OWNERS_DIR
    try:
        lock_files = sorted(owners_dir.glob("*.lock"))
    except OSError:
        return []
    held: list[str] = []
    for lock_file in lock_files:
        try:
            fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(lock_file.stem)
        finally:
            os.close(fd)  # also releases a lock taken here
    if not held:
        return []
    pids: dict[str, int] = {}
    with contextlib.suppress(sqlite3.Error):
        db = _connect(database)
        try:
            pids = {
                str(owner): int(pid) for owner, pid in db.execute("SELECT owner, pid FROM owners")
            }
        finally:
            db.close()
    return sorted(pids.get(owner, 0) for owner in held)


def _existing_database(state_dir: Path) -> Path:
    database = state_dir.expanduser() / DATABASE_NAME
    if not database.is_file():
        raise StoreError(
            f"there is no larkbot state in {state_dir} (no {DATABASE_NAME}): set "
            "LARKBOT_STATE_DIR to the daemon's state directory"
        )
    return database


def _connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open an existing database (never create one) with autocommit and a busy timeout."""
    return sqlite3.connect(
        _uri(path, read_only=read_only),
        uri=True,
        timeout=_BUSY_TIMEOUT_S,
        isolation_level=None,
        check_same_thread=False,
    )


def _uri(path: Path, *, read_only: bool) -> str:
    return f"{path.expanduser().absolute().as_uri()}?mode={'ro' if read_only else 'rw'}"


def _require_tables(db: sqlite3.Connection, path: Path) -> None:
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"seen", "inbox"} <= names:
        raise StoreError(
            f"{path} is an SQLite database but not larkbot state: restore a file written by "
            "'larkbot state backup'"
        )


def _failure(exc: sqlite3.Error, path: Path) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"{path} stayed locked by another process for more than {_BUSY_TIMEOUT_S:g} s: "
            "try again, or check for a stuck larkbot"
        )
    if "not a database" in text or "malformed" in text:
        return StoreError(f"{path} is not a usable larkbot database ({text})")
    if "unable to open" in text:
        return StoreError(f"cannot open {path}: check that it exists and is readable")
    return StoreError(f"{path} failed: {text}")


def _sync_directory(directory: Path) -> None:
    # The rename is durable once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
