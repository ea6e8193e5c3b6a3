"""The durable store: one SQLite database in the state directory, shared by processes.

Layout of the state directory (created with mode 0700)::

    larkbot.sqlite3                 the database (WAL mode: ``-wal`` and ``-shm`` beside it)
    larkbot.owners/<owner>.lock     one lock file per open store

Durability: ``journal_mode=WAL`` with ``synchronous=NORMAL``. A commit is in the WAL file
once ``COMMIT`` returns, so it survives any crash of the process (kill -9, OOM killer); only
a power cut or kernel crash can lose the last commits, because fsync happens at
checkpoints. ``FULL`` would fsync every commit, which costs milliseconds on ordinary disks,
and every admit is spent inside an event's 3 s ack budget.

Concurrency: every statement runs on aiosqlite's connection thread, never on the event
loop. Several processes (replicas on one host, a restarted daemon while the old one
drains) may open the same file; write transactions are ``BEGIN IMMEDIATE`` with a busy
timeout, so they queue instead of failing.

Ownership: every open store is an *owner*, with a random id, a heartbeat row in
``owners`` and an exclusive ``flock`` on its lock file. ``admit`` stamps items with their
owner. An owner is gone when its lock is free (the kernel drops it when the process ends,
however abruptly, so a restarted daemon resumes at once) or when its heartbeat is older
than the lease (a process frozen for a minute, or a filesystem that does not share
locks). :meth:`SqliteStore.unfinished` claims the pending items of gone owners in one
write transaction, so each is resumed by exactly one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fcntl
import json
import logging
import os
import re
import sqlite3
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import anyio.to_thread
from pydantic import ValidationError

try:
    from sniffio import current_async_library_cvar
except ImportError:  # pragma: no cover - anyio then finds the running loop by itself
    current_async_library_cvar = None

from larkbot.core.message import InboundMessage
from larkbot.store._batch import GroupCommit
from larkbot.store.confirmations import ConfirmationMove, ConfirmationState, PendingWrite
from larkbot.store.inbox import InboxStatus, StoredMessage
from larkbot.store.ledger import Store, StoreError
from larkbot.store.streamed import StreamedCard

__all__ = ["DATABASE_NAME", "SCHEMA_VERSION", "AdmitCallback", "SqliteStore"]

logger = logging.getLogger("larkbot.store")

DATABASE_NAME = "larkbot.sqlite3"
_OWNERS_DIR = "larkbot.owners"
_LEASE_SECONDS = 60.0
_HEARTBEAT_SECONDS = 15.0
_BUSY_TIMEOUT_MS = 5000
_OWNER_ID = re.compile(r"[0-9a-f]{32}")

# Migration N (1-based) brings a database from user_version N-1 to N. Append, never edit.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE seen (
            message_id TEXT PRIMARY KEY,
            seen_at REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX seen_by_time ON seen (seen_at)",
        """CREATE TABLE inbox (
            message_id TEXT PRIMARY KEY,
            status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed', 'expired')),
            owner TEXT NOT NULL,
            created_at REAL NOT NULL,
            admitted_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            reason TEXT,
            body TEXT NOT NULL
        )""",
        "CREATE INDEX inbox_by_status ON inbox (status, updated_at)",
        """CREATE TABLE owners (
            owner TEXT PRIMARY KEY,
            pid INTEGER NOT NULL,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL
        )""",
    ),
    (
        # Admission is one statement (an insert into the inbox); this trigger records the
        # ledger row inside that same statement, so admitting costs one round trip to the
        # database thread instead of four, and stays atomic across processes.
        """CREATE TRIGGER seen_on_admit AFTER INSERT ON inbox BEGIN
            INSERT OR IGNORE INTO seen (message_id, seen_at)
            VALUES (NEW.message_id, NEW.admitted_at);
        END""",
    ),
    (
        """CREATE TABLE confirmations (
            id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            outcome TEXT NOT NULL DEFAULT '',
            expires_at REAL NOT NULL,
            body TEXT NOT NULL
        )""",
        "CREATE INDEX confirmations_by_expiry ON confirmations (expires_at)",
    ),
    (
        # The card of a streamed answer, kept before the card is sent so that a resumed
        # answer continues it (its reply uuid can only ever return that card).
        """CREATE TABLE streamed_cards (
            message_id TEXT PRIMARY KEY,
            updated_at REAL NOT NULL,
            body TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
    (
        # When a confirmation was first approved, and when its latest attempt at the write
        # began: a write whose process died is taken over by that attempt's successor.
        "ALTER TABLE confirmations ADD COLUMN approved_at REAL",
        "ALTER TABLE confirmations ADD COLUMN approving_since REAL",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

# The owners of pending items are passed as one JSON array parameter.
_GONE = "owner IN (SELECT value FROM json_each(?))"
# Messages admitted, or settled, by one statement at most (3 parameters per admitted row,
# well under SQLite's limit of 32,766).
_MAX_BATCH = 500
# WAL checkpoints run on a connection of their own, off the path of admits and settles.
_CHECKPOINT_SECONDS = 1.0
_DEFAULT_AUTOCHECKPOINT = 1000
_SWITCH_INTERVAL = 0.0005
# While the settler runs (see SqliteStore.run_pruner), replies are settled this often, or
# as soon as a full batch is waiting, whichever comes first.
_SETTLE_SECONDS = 0.02
# The longest wait between retries of settles the database refused.
_SETTLE_RETRY_MAX = 5.0


class SqliteStore(Store):
    """Ledger and inbox in SQLite; open it with :meth:`open` (or ``open_store``)."""

    kind = "sqlite"
    durable = True

    def __init__(
        self,
        db: aiosqlite.Connection,
        state_dir: Path,
        owner: str,
        lock_fd: int,
        *,
        ledger_ttl_seconds: float,
        ledger_max_entries: int,
        prune_interval: float,
    ) -> None:
        super().__init__(
            ledger_ttl_seconds=ledger_ttl_seconds,
            ledger_max_entries=ledger_max_entries,
            prune_interval=prune_interval,
        )
        self.path: Path | None = state_dir / DATABASE_NAME
        self._database = state_dir / DATABASE_NAME
        self._db = db
        self._owners_dir = state_dir / _OWNERS_DIR
        self._owner = owner
        self._lock_fd = lock_fd
        # One connection serves every task of this process: a transaction holds it whole.
        self._lock = _Turns()
        # Frames that arrive together are admitted by one statement, one commit (see
        # _Admits); replies that finish together are settled by one. Each caller still
        # returns only after the commit that holds its own row.
        self._admits = _Admits(db, self._lock, owner, self._database)
        self._dones: GroupCommit[str, None] = GroupCommit(self._done_batch, max_items=_MAX_BATCH)
        # Settles waiting for the settler (run_pruner), which writes them every 20 ms.
        self._unsettled: list[str] = []
        self._settling = False
        self._settle_due = anyio.Event()
        self._settle_full = anyio.Event()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        state_dir: Path,
        *,
        ledger_ttl_seconds: float = 86400,
        ledger_max_entries: int = 1_000_000,
        prune_interval: float = 300.0,
    ) -> AsyncIterator[SqliteStore]:
        """Open (creating as needed) the store in ``state_dir``; close it on exit.

        Raises :class:`StoreError` when the directory or database cannot be used.
        """
        owner = uuid.uuid4().hex
        state_dir, lock_fd = await anyio.to_thread.run_sync(_take_owner_lock, state_dir, owner)
        try:
            db = await _connect(state_dir / DATABASE_NAME)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    _drop_owner_lock, state_dir / _OWNERS_DIR, owner, lock_fd
                )
            raise
        store = cls(
            db,
            state_dir,
            owner,
            lock_fd,
            ledger_ttl_seconds=ledger_ttl_seconds,
            ledger_max_entries=ledger_max_entries,
            prune_interval=prune_interval,
        )
        # Every statement runs on the store's thread, which needs the GIL to hand each row
        # over; while the event loop is busy, Python makes it wait a switch interval (5 ms
        # by default) every time, and an admit returning 60 rows waited over 100 ms, with
        # the acks of all its frames. A short interval bounds each of those waits.
        previous_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(previous_interval, _SWITCH_INTERVAL))
        try:
            await store._renew_lease()
            yield store
        finally:
            sys.setswitchinterval(previous_interval)
            with anyio.CancelScope(shield=True):
                await store._close()

    async def admit(self, message: InboundMessage) -> bool:
        """Record ``message`` as seen and pending; ``False`` when it was seen before.

        Returns once the row is committed (durable before the ack). Shielded: aiosqlite
        runs a queued statement even when its caller is cancelled, and a caller that never
        learns "admitted" would leave the message pending with nobody to answer it.
        """
        return await self._admits.admit(message)

    def admit_nowait(self, message: InboundMessage, then: AdmitCallback) -> None:
        """Record ``message`` as :meth:`admit` does, then call ``then`` on the event loop.

        ``then(admitted, None)`` runs once the row is committed (``admitted`` is ``False``
        when the message was seen before), ``then(False, error)`` when it could not be
        written. Callbacks run in the order their messages were given, with no task
        resumed in between: admission acks and dispatches from there in the same pass.
        """
        self._admits.admit_nowait(message, then)

    async def mark_done(self, message_id: str) -> None:
        """Settle an inbox item whose reply the platform accepted.

        While the settler runs (:meth:`run_pruner`), the item is only noted here and
        written with the others noted within 20 ms, or on close; no caller waits for a
        settle. A crash before that write leaves the item pending, and the next process
        resumes it: its reply goes out under the same ``uuid``, which the platform
        answers with the message it already posted, so the user still sees one reply.
        Without the settler the item is written before this returns.
        """
        if not self._settling:
            await self._dones.write(message_id)
            return
        # Nothing awaited: settling cost each reply a trip through the group commit (its
        # shield, turn and events), about 4 % of the loop's time on the echo benchmark.
        if not self._unsettled:
            self._settle_due.set()
        self._unsettled.append(message_id)
        if len(self._unsettled) >= _MAX_BATCH:
            self._settle_full.set()

    async def _settle_noted(self) -> None:
        """Write the settles :meth:`mark_done` noted; on failure, keep them for the next try."""
        noted, self._unsettled = self._unsettled, []
        for start in range(0, len(noted), _MAX_BATCH):
            try:
                await self._done_batch(noted[start : start + _MAX_BATCH])
            except BaseException:
                # Failed, or its caller (a reader, the settler at a stop) was cancelled
                # while waiting for the connection: they stay noted for the next write.
                self._unsettled[:0] = noted[start:]
                raise

    async def _keep_settling(self) -> None:
        """Write noted settles every 20 ms while there are any, and what is left at the end."""
        self._settling = True
        failing = 0
        try:
            while True:
                if not self._unsettled:
                    await self._settle_due.wait()
                with anyio.move_on_after(_SETTLE_SECONDS):
                    await self._settle_full.wait()
                # Renewed before the noted items are taken: the next one noted wakes us.
                self._settle_due = anyio.Event()
                self._settle_full = anyio.Event()
                try:
                    await self._settle_noted()
                except StoreError as exc:
                    # A locked, full or read-only database: say so once per outage, and
                    # retry at a growing interval rather than every 20 ms.
                    if failing == 0:
                        logger.warning("settling answered inbox items failed, retrying: %s", exc)
                    failing += 1
                    await anyio.sleep(min(_SETTLE_SECONDS * 2**failing, _SETTLE_RETRY_MAX))
                else:
                    if failing:
                        logger.info("settling answered inbox items works again")
                    failing = 0
        finally:
            self._settling = False
            with anyio.CancelScope(shield=True), contextlib.suppress(StoreError):
                await self._settle_noted()

    async def _done_batch(self, message_ids: Sequence[str]) -> list[None]:
        # A done item stays done: a late failure report cannot un-send a reply.
        await self._query(
            "UPDATE inbox SET status = 'done', reason = NULL, updated_at = ?"
            " WHERE message_id IN (SELECT value FROM json_each(?)) AND status != 'done'",
            (time.time(), json.dumps(list(message_ids))),
        )
        return [None] * len(message_ids)

    async def mark_failed(self, message_id: str, reason: str) -> None:
        """Keep an inbox item whose reply finally failed, with a short ``reason``."""
        await self._settle(message_id, InboxStatus.FAILED, self._clean_reason(reason))

    async def unfinished(
        self, max_age_seconds: float, now: datetime | None = None
    ) -> tuple[list[InboundMessage], list[InboundMessage]]:
        """Take over the pending items of owners that are gone: ``(resumable, expired)``."""
        cutoff = self._timestamp(now) - max_age_seconds
        candidates = await self._query(
            "SELECT c.owner, o.heartbeat_at FROM"
            " (SELECT DISTINCT owner FROM inbox WHERE status = 'pending'"
            "  UNION SELECT owner FROM owners) AS c"
            " LEFT JOIN owners AS o ON o.owner = c.owner WHERE c.owner != ?",
            (self._owner,),
        )
        if not candidates:
            return [], []
        gone = await anyio.to_thread.run_sync(
            _gone_owners, self._owners_dir, [(row[0], row[1]) for row in candidates], time.time()
        )
        if not gone:
            return [], []
        owners = json.dumps(gone)
        moment = time.time()
        async with self._transaction() as db:
            expired_rows = await db.execute_fetchall(
                "UPDATE inbox SET status = 'expired', owner = ?, updated_at = ?"
                f" WHERE status = 'pending' AND {_GONE} AND created_at < ?"
                " RETURNING message_id, created_at, body",
                (self._owner, moment, owners, cutoff),
            )
            claimed_rows = await db.execute_fetchall(
                f"UPDATE inbox SET owner = ?, updated_at = ? WHERE status = 'pending' AND {_GONE}"
                " RETURNING message_id, created_at, body",
                (self._owner, moment, owners),
            )
            await db.execute_fetchall(f"DELETE FROM owners WHERE {_GONE}", (owners,))
        if claimed_rows or expired_rows:
            logger.info(
                "took over %d unfinished and %d expired inbox items of %d stopped process(es)",
                len(claimed_rows),
                len(expired_rows),
                len(gone),
            )
        return await self._messages(claimed_rows), await self._messages(expired_rows)

    async def pending_messages(
        self, message_ids: Sequence[str], max_age_seconds: float, now: datetime | None = None
    ) -> tuple[list[InboundMessage], list[InboundMessage]]:
        """This store's pending messages of ``message_ids``: ``(pending, expired)``.

        A read of one statement per 500 ids (not a transaction), so it never holds admits
        back; only items too old to answer are written, marked expired in one more.
        """
        await self._settle_noted()  # an answered message is not pending, written or not
        cutoff = self._timestamp(now) - max_age_seconds
        found: dict[str, InboundMessage] = {}
        stale: list[str] = []
        for start in range(0, len(message_ids), _MAX_BATCH):
            # Only this store's own items: one another process took over (when this one's
            # lease lapsed) is that process's to answer.
            rows = await self._query(
                "SELECT message_id, created_at, body FROM inbox"
                " WHERE message_id IN (SELECT value FROM json_each(?))"
                " AND status = 'pending' AND owner = ?",
                (json.dumps(list(message_ids[start : start + _MAX_BATCH])), self._owner),
            )
            stale += [row[0] for row in rows if row[1] < cutoff]
            fresh = [row for row in rows if row[1] >= cutoff]
            found.update((message.message_id, message) for message in await self._messages(fresh))
        expired: list[InboundMessage] = []
        for start in range(0, len(stale), _MAX_BATCH):
            expired_rows = await self._query(
                "UPDATE inbox SET status = 'expired', updated_at = ?"
                " WHERE message_id IN (SELECT value FROM json_each(?))"
                " AND status = 'pending' AND owner = ?"
                " RETURNING message_id, created_at, body",
                (time.time(), json.dumps(stale[start : start + _MAX_BATCH]), self._owner),
            )
            expired += await self._messages(expired_rows)
        pending = [found[message_id] for message_id in message_ids if message_id in found]
        return pending, expired

    async def depth(self) -> int:
        """Count the pending inbox items (of every process sharing the database)."""
        await self._settle_noted()
        rows = await self._query("SELECT count(*) FROM inbox WHERE status = 'pending'")
        return int(rows[0][0])

    async def lookup(self, message_id: str) -> StoredMessage | None:
        """Return the inbox item of ``message_id``, or ``None`` when there is none."""
        await self._settle_noted()
        rows = await self._query(
            "SELECT status, reason, admitted_at, updated_at, body FROM inbox WHERE message_id = ?",
            (message_id,),
        )
        if not rows:
            return None
        status, reason, admitted_at, updated_at, body = rows[0]
        return StoredMessage(
            message=InboundMessage.model_validate_json(body),
            status=InboxStatus(status),
            admitted_at=datetime.fromtimestamp(admitted_at, UTC),
            updated_at=datetime.fromtimestamp(updated_at, UTC),
            reason=reason,
        )

    async def prune(self, now: datetime | None = None) -> int:
        """Drop old ledger entries and settled inbox items; return how many went."""
        cutoff = self._timestamp(now) - self._ttl
        removed = 0
        async with self._transaction() as db:
            for sql, params in (
                ("DELETE FROM seen WHERE seen_at < ?", (cutoff,)),
                (
                    "DELETE FROM seen WHERE message_id IN (SELECT message_id FROM seen"
                    " ORDER BY seen_at DESC, message_id DESC LIMIT -1 OFFSET ?)",
                    (self._max_entries,),
                ),
                (
                    "DELETE FROM inbox WHERE status IN ('done', 'expired') AND updated_at < ?",
                    (cutoff,),
                ),
                ("DELETE FROM confirmations WHERE expires_at < ?", (cutoff,)),
                ("DELETE FROM streamed_cards WHERE updated_at < ?", (cutoff,)),
            ):
                await db.execute_fetchall(sql, params)
                removed += (await db.execute_fetchall("SELECT changes()", ()))[0][0]
        return removed

    async def add_confirmation(self, pending: PendingWrite) -> None:
        """Keep a new pending write confirmation."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO confirmations (id, state, outcome, expires_at, body)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    pending.id,
                    pending.state.value,
                    pending.outcome,
                    pending.expires_at,
                    pending.model_dump_json(),
                ),
            )

    async def confirmation(self, confirmation_id: str) -> PendingWrite | None:
        """The confirmation as it stands now, or ``None``."""
        rows = await self._query(
            "SELECT state, outcome, approved_at, approving_since, body FROM confirmations"
            " WHERE id = ?",
            (confirmation_id,),
        )
        if not rows:
            return None
        state, outcome, approved_at, approving_since, body = rows[0]
        pending = PendingWrite.model_validate_json(body)
        return pending.model_copy(
            update={
                "state": ConfirmationState(state),
                "outcome": outcome,
                "approved_at": approved_at,
                "approving_since": approving_since,
            }
        )

    async def settle_confirmation(self, move: ConfirmationMove) -> bool:
        """Make ``move`` if the confirmation stands as it expects: one conditional UPDATE."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE confirmations SET state = ?, outcome = ?,"
                " approving_since = COALESCE(?, approving_since),"
                " approved_at = COALESCE(approved_at, ?)"
                " WHERE id = ? AND state = ? AND (? IS NULL OR approving_since = ?)",
                (
                    move.state.value,
                    move.outcome,
                    move.approving_since,
                    move.approving_since,
                    move.confirmation_id,
                    move.expected.value,
                    move.expected_since,
                    move.expected_since,
                ),
            )
            return cursor.rowcount == 1

    async def streamed_card(self, message_id: str) -> StreamedCard | None:
        """The streamed card of the answer to ``message_id``, if an attempt kept one."""
        rows = await self._query(
            "SELECT body FROM streamed_cards WHERE message_id = ?", (message_id,)
        )
        return StreamedCard.model_validate_json(rows[0][0]) if rows else None

    async def keep_streamed_card(self, message_id: str, card: StreamedCard) -> None:
        """Keep (or replace) the streamed card of the answer to ``message_id``."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO streamed_cards (message_id, updated_at, body)"
                " VALUES (?, ?, ?)",
                (message_id, time.time(), card.model_dump_json()),
            )

    async def run_pruner(self) -> None:
        """Renew this process's lease every 15 s, prune every ``prune_interval`` s,
        checkpoint the WAL every second, and write settles (see :meth:`mark_done`).

        Run it for the store's whole life: without it, other processes take this one for
        frozen after 60 s and take over its pending items.
        """
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep_lease)
            tg.start_soon(self._keep_checkpointing)
            tg.start_soon(self._keep_settling)
            await super().run_pruner()

    async def _keep_checkpointing(self) -> None:
        """Checkpoint the WAL from a second connection, so no admit ever waits for one.

        By default SQLite checkpoints inside the commit that fills the WAL past 1,000
        pages, and a checkpoint syncs both files to disk: on a busy disk that commit, and
        the acks of every frame in it, waited hundreds of milliseconds. Here the store's
        own connection never checkpoints while this runs; a passive checkpoint on another
        connection (another thread) copies the WAL back without blocking writers.
        """
        checkpointer = await _connect(self._database)
        try:
            await self._query("PRAGMA wal_autocheckpoint = 0")
            while True:
                await anyio.sleep(_CHECKPOINT_SECONDS)
                try:
                    await checkpointer.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    logger.warning("WAL checkpoint failed, retrying: %s", exc)
        finally:
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(StoreError):
                    await self._query(f"PRAGMA wal_autocheckpoint = {_DEFAULT_AUTOCHECKPOINT}")
                await checkpointer.close()

    async def _keep_lease(self) -> None:
        while True:
            await anyio.sleep(_HEARTBEAT_SECONDS)
            try:
                await self._renew_lease()
            except StoreError as exc:
                logger.warning("could not renew the store lease, retrying: %s", exc)

    async def _renew_lease(self) -> None:
        # An upsert, because a process that was frozen past its lease had its row removed.
        now = time.time()
        await self._query(
            "INSERT INTO owners (owner, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            (self._owner, os.getpid(), now, now),
        )

    async def _settle(self, message_id: str, status: InboxStatus, reason: str | None) -> None:
        # A done item stays done: a late failure report cannot un-send a reply.
        await self._query(
            "UPDATE inbox SET status = ?, reason = ?, updated_at = ?"
            " WHERE message_id = ? AND status != 'done'",
            (status.value, reason, time.time(), message_id),
        )

    async def _messages(self, rows: Sequence[Any]) -> list[InboundMessage]:
        """Parse claimed rows, oldest chat message first; fail those that no longer parse."""
        messages: list[InboundMessage] = []
        for message_id, _created_at, body in sorted(rows, key=lambda row: row[1]):
            try:
                messages.append(InboundMessage.model_validate_json(body))
            except ValidationError:
                logger.warning(
                    "inbox item %s does not match this version of larkbot; marked failed",
                    message_id,
                    extra={"message_id": message_id},
                )
                await self._settle(
                    message_id, InboxStatus.FAILED, "stored message no longer parses"
                )
        return messages

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement on its own (autocommit) and return its rows."""
        async with self._lock.statement():
            try:
                return list(await self._db.execute_fetchall(sql, params))
            except sqlite3.Error as exc:
                raise _store_error(exc, self._database) from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Hold the connection for one write transaction, committed unless the body raises.

        Shielded from cancellation: aiosqlite runs a queued statement even when its caller
        is cancelled, so a cancelled transaction would stay open on the shared connection.
        """
        async with self._lock.transaction():
            with anyio.CancelScope(shield=True):
                # Every SQLite failure leaves the store as one sentence for the operator.
                try:
                    await self._db.execute("BEGIN IMMEDIATE")
                    try:
                        yield self._db
                        await self._db.execute("COMMIT")
                    except BaseException:
                        with contextlib.suppress(sqlite3.Error):
                            await self._db.execute("ROLLBACK")
                        raise
                except sqlite3.Error as exc:
                    raise _store_error(exc, self._database) from exc

    async def _close(self) -> None:
        try:
            # What the settler could not write when it stopped: a last try.
            await self._settle_noted()
        except StoreError as exc:
            logger.warning("could not settle answered inbox items on close: %s", exc)
        try:
            # Without its row and lock, this owner's leftover pending items are free for
            # the next process to resume.
            await self._query("DELETE FROM owners WHERE owner = ?", (self._owner,))
        except sqlite3.Error as exc:
            logger.warning("could not unregister from the store on close: %s", exc)
        finally:
            await self._db.close()
            await anyio.to_thread.run_sync(
                _drop_owner_lock, self._owners_dir, self._owner, self._lock_fd
            )


class _Turns:
    """The store's one connection: statements may overlap, a transaction has it alone.

    aiosqlite runs what it is given on one thread, one call after another in the order the
    calls were made, so single statements (each its own transaction) need not wait for one
    another's results: the next is queued while the last runs, and the thread goes from
    one to the next without a trip through the event loop in between. A transaction
    (``BEGIN`` ... ``COMMIT``) waits until no statement is queued, and holds the connection
    until it ends; statements arriving meanwhile wait for it, so none lands inside it.
    Neither kind yields to the event loop when it need not wait.

    Transactions always go first: once one waits, every new statement waits behind it,
    admits (and so the acks of their frames) included, until it has committed. Keep
    transactions off the hot paths (admitting, settling): a statement, or one function
    run on the connection's thread like ``_admit_rows``, is atomic without holding
    everything else back.
    """

    __slots__ = (
        "_changed",
        "_in_transaction",
        "_statements",
        "_transactions_waiting",
        "on_free",
    )

    def __init__(self) -> None:
        self._statements = 0
        self._in_transaction = False
        self._transactions_waiting = 0
        self._changed = anyio.Event()
        # Called (on the event loop) whenever statements may go again.
        self.on_free: Callable[[], None] | None = None

    @property
    def transaction_waiting(self) -> bool:
        """A transaction waits for the statements in flight, or runs: hold new ones back."""
        return self._in_transaction or self._transactions_waiting > 0

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[None]:
        """Hold a share of the connection for one statement."""
        while self.transaction_waiting:
            await self._changed.wait()
        self._statements += 1
        try:
            yield
        finally:
            self.release()

    def try_hold(self) -> bool:
        """Take a share of the connection without waiting, if no transaction is first."""
        if self.transaction_waiting:
            return False
        self._statements += 1
        return True

    def release(self) -> None:
        """Give back a share taken by :meth:`try_hold` (or :meth:`statement`)."""
        self._statements -= 1
        self._notify()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Hold the whole connection for one transaction."""
        self._transactions_waiting += 1
        try:
            while self._in_transaction or self._statements:
                await self._changed.wait()
        except BaseException:
            self._transactions_waiting -= 1
            self._notify()  # statements held back for this transaction may go
            raise
        self._transactions_waiting -= 1
        self._in_transaction = True
        try:
            yield
        finally:
            self._in_transaction = False
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
        if self.on_free is not None and not self.transaction_waiting:
            self.on_free()


AdmitCallback = Callable[[bool, BaseException | None], None]
"""Told an admit's outcome on the event loop: ``(admitted, None)``, or ``(False, error)``."""


class _AdmitItem:
    __slots__ = ("body", "created_at", "future", "message_id", "then")

    def __init__(
        self,
        message: InboundMessage,
        future: asyncio.Future[bool] | None,
        then: AdmitCallback | None = None,
    ) -> None:
        self.message_id = message.message_id
        self.created_at = message.created_at.timestamp()
        self.body = message.model_dump_json()
        self.future = future
        self.then = then


class _Admits:
    """Admits, written in batches by the store's thread itself, one after another.

    With a batch of admits handed to the connection's thread only from the event loop,
    each batch waited for the loop to come back to it twice: once to learn that the last
    batch was written, once more to start the next; and each of its callers once more
    after that for its result. With 100 frames in flight those waits were most of a
    frame's ack time (p99 of the wait for the next batch to start: 25 ms). Here admits
    queue up where the thread takes them: while it writes one batch, the next gathers,
    and the thread goes on to it at once; each batch's results are handed to its callers
    by one callback on the loop, in the order the admits came, so a caller that acts on
    its result at once (dispatch) still sees one chat's messages in order.

    While the thread is at it, the admits hold one share of the connection (see
    :class:`_Turns`); a transaction that waits stops the thread after its current batch,
    and admits queued meanwhile go once it has committed. Other statements queued on the
    connection stop it too, so a stream of admits never keeps them waiting.
    """

    __slots__ = (
        "_admitted_at",
        "_database",
        "_db",
        "_loop",
        "_owner",
        "_pending",
        "_running",
        "_turns",
    )

    def __init__(self, db: aiosqlite.Connection, turns: _Turns, owner: str, database: Path) -> None:
        self._db = db
        self._turns = turns
        self._owner = owner
        self._database = database
        # Appended to on the loop, taken from on the store's thread: a deque's append and
        # popleft are atomic, so neither side takes a lock (which would block the loop).
        self._pending: deque[_AdmitItem] = deque()
        self._running = False  # the thread has a run of batches queued or under way
        self._loop: asyncio.AbstractEventLoop | None = None
        # Strictly increasing per store, so (owner, admitted_at) names one batch's rows.
        self._admitted_at = 0.0
        turns.on_free = self._start

    async def admit(self, message: InboundMessage) -> bool:
        """Queue ``message``; ``True`` once its row is committed, ``False`` if seen before.

        Shielded from cancellation: a caller that stopped waiting could not tell whether
        its row was committed.
        """
        loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append(_AdmitItem(message, future))
        self._start()
        with anyio.CancelScope(shield=True):
            return await future

    def admit_nowait(self, message: InboundMessage, then: AdmitCallback) -> None:
        """Queue ``message``; ``then`` is called on the loop once its row is committed.

        Called with the admits queued before and after it, in the order they came, from
        the one loop callback that hands a batch its results: no task waits on a future
        and resumes a pass later (with 100 frames in flight that resume was p99 4-6 ms of
        each ack).
        """
        self._loop = asyncio.get_running_loop()
        self._pending.append(_AdmitItem(message, None, then))
        self._start()

    def _start(self) -> None:
        """Hand the store's thread a run of batches, unless it has one or must wait."""
        if self._running or not self._pending or not self._turns.try_hold():
            return
        db = self._db
        if not db._running or db._connection is None:
            closed = list(self._pending)
            self._pending.clear()
            self._turns.release()
            self._fail(closed, ValueError("Connection closed"))
            return
        self._running = True
        # aiosqlite runs what its queue holds on its thread, in order; it has no public way
        # to run a function of ours there, nor one that does not answer through a future
        # (a future would wake this loop once more for nothing).
        db._tx.put_nowait((None, self._write_all))

    def _write_all(self) -> None:
        """Write the queued admits batch after batch, on the store's thread."""
        loop = self._loop
        assert loop is not None
        try:
            while not self._turns.transaction_waiting:
                batch: list[_AdmitItem] = []
                while self._pending and len(batch) < _MAX_BATCH:
                    batch.append(self._pending.popleft())
                if not batch:
                    break
                try:
                    fresh = self._write(batch)
                except BaseException as exc:  # every caller of the batch must hear back
                    loop.call_soon_threadsafe(self._fail, batch, exc)
                else:
                    loop.call_soon_threadsafe(self._deliver, batch, fresh)
                if not self._db._tx.empty():
                    # Other statements (settles, reads) are queued: they go first, and the
                    # admits left over are queued again behind them when this run ends.
                    break
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(self._stopped)

    def _write(self, batch: list[_AdmitItem]) -> set[str] | None:
        """Admit ``batch`` on the store's thread; the ids that went in, if not all.

        A message is new when neither the ledger nor the inbox knows it (the ledger is
        bounded separately and may have forgotten an id the inbox still holds). One
        transaction (see :func:`_admit_rows`): the inserts, their conflict checks, the
        trigger's ledger rows and the read of which rows went in commit together or not at
        all, so a failure leaves no row behind that a redelivery would take for a duplicate.
        """
        now = self._admitted_at = max(time.time(), self._admitted_at + 1e-6)
        params: list[Any] = [self._owner, now, now]
        for item in batch:
            params += [item.message_id, item.created_at, item.body]
        ids = json.dumps([item.message_id for item in batch])
        return _admit_rows(self._db._conn, len(batch), params, ids)

    def _stopped(self) -> None:
        self._running = False
        self._turns.release()  # which starts the next run if admits came meanwhile

    @staticmethod
    def _deliver(batch: list[_AdmitItem], fresh: set[str] | None) -> None:
        for item in batch:
            if fresh is None:
                flag = True
            else:
                # The same id twice in one batch: only its first delivery is new.
                flag = item.message_id in fresh
                fresh.discard(item.message_id)
            if item.then is not None:
                _call_back(item, flag, None)
            elif item.future is not None and not item.future.done():
                item.future.set_result(flag)

    def _fail(self, batch: list[_AdmitItem], exc: BaseException) -> None:
        error = _store_error(exc, self._database) if isinstance(exc, sqlite3.Error) else exc
        for item in batch:
            if item.then is not None:
                _call_back(item, False, error)
            elif item.future is not None and not item.future.done():
                # Each caller raises its own copy: one exception object raised in many
                # tasks would collect all of their tracebacks.
                try:
                    copied = copy.copy(error)
                    copied.__cause__ = exc
                except Exception:  # an exception that cannot be copied: share the one
                    copied = error
                item.future.set_exception(copied)


def _call_back(item: _AdmitItem, admitted: bool, error: BaseException | None) -> None:
    """Run an admit's callback; a failing one must not keep the rest of its batch waiting.

    It runs in a loop callback, outside any task, where anyio (through sniffio) cannot tell
    which event loop runs it: told so, as anyio tells its own callbacks from a thread, the
    callback may use anyio (start a task, make an event).
    """
    assert item.then is not None
    token = (
        None if current_async_library_cvar is None else current_async_library_cvar.set("asyncio")
    )
    try:
        item.then(admitted, error)
    except Exception:
        logger.exception(
            "admit callback failed for message %s",
            item.message_id,
            extra={"message_id": item.message_id},
        )
    finally:
        if token is not None:
            current_async_library_cvar.reset(token)


def _admit_rows(
    db: sqlite3.Connection, count: int, params: Sequence[Any], message_ids: str
) -> set[str] | None:
    """Insert ``count`` inbox rows, on the store's thread; the ids that went in, if not all.

    ``params`` are the owner and admission time twice, then id, creation time and body of
    each message; ``message_ids`` is a JSON array of the ids. Runs as one call on the
    connection's thread: no other statement of this process lands in its transaction, and
    every cursor is used and dropped here (finalising one elsewhere would reset a cached
    statement this thread may be running).

    :returns: ``None`` when every row was inserted (the usual case, settled without a read).
    """
    rows = ", ".join(["(?, ?, ?)"] * count)
    db.execute("BEGIN IMMEDIATE")
    try:
        # No RETURNING: this thread takes the GIL back after every row a statement returns,
        # and while the event loop is busy each of those waits costs up to a switch
        # interval, with every frame of the batch waiting for its ack.
        with contextlib.closing(
            db.execute(
                "INSERT INTO inbox (message_id, status, owner, created_at, admitted_at,"
                " updated_at, body)"
                " SELECT v.column1, 'pending', ?, v.column2, ?, ?, v.column3"
                f" FROM (VALUES {rows}) AS v"
                " WHERE NOT EXISTS (SELECT 1 FROM seen WHERE seen.message_id = v.column1)"
                " ON CONFLICT (message_id) DO NOTHING",
                params,
            )
        ) as cursor:
            inserted = cursor.rowcount
        fresh: set[str] | None = None
        if inserted != count:
            with contextlib.closing(
                db.execute(
                    "SELECT message_id FROM inbox"
                    " WHERE message_id IN (SELECT value FROM json_each(?))"
                    " AND owner = ? AND admitted_at = ?",
                    (message_ids, params[0], params[1]),
                )
            ) as cursor:
                fresh = {row[0] for row in cursor}
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    return fresh


async def _connect(path: Path) -> aiosqlite.Connection:
    """Open the database, set its pragmas and bring its schema up to date.

    Shielded: a caller cancelled half way (a daemon stopped as it starts) would leave the
    connection's thread behind, open or waiting to report to an event loop that is gone.
    """
    with anyio.CancelScope(shield=True):
        return await _connect_unshielded(path)


async def _connect_unshielded(path: Path) -> aiosqlite.Connection:
    try:
        # isolation_level=None: the sqlite3 module opens no transactions of its own; ours
        # are explicit BEGIN IMMEDIATE ... COMMIT.
        db = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise _store_error(exc, path) from exc
    try:
        await db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        (mode,) = (await db.execute_fetchall("PRAGMA journal_mode = WAL"))[0]
        if str(mode).lower() != "wal":
            logger.warning(
                "the state database %s cannot use WAL mode (journal_mode is %s); "
                "replicas sharing it will wait on each other",
                path,
                mode,
            )
        await db.execute("PRAGMA synchronous = NORMAL")
        # Temporary tables and indexes in memory: by default SQLite gave each statement
        # that needs one (the settles' ``IN (SELECT ... json_each)``) a file of its own in
        # /var/tmp, created and unlinked some 20 times a second under load, which a
        # sandboxed service may not be allowed to write.
        await db.execute("PRAGMA temp_store = MEMORY")
        await _migrate(db, path)
    except sqlite3.Error as exc:
        await db.close()
        raise _store_error(exc, path) from exc
    except BaseException:
        await db.close()
        raise
    return db


async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Apply the missing migrations in one transaction, so racing processes apply them once."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        ((version,),) = await db.execute_fetchall("PRAGMA user_version")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the state database {path} has schema version {version} from a newer "
                f"larkbot (this one knows {SCHEMA_VERSION}): upgrade larkbot or set "
                "LARKBOT_STATE_DIR to another directory"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[number - 1]:
                await db.execute(statement)
            logger.info("state database %s migrated to schema version %d", path, number)
        if version < SCHEMA_VERSION:
            # PRAGMA takes no parameters; SCHEMA_VERSION is our own integer.
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        raise


def _store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """Turn an SQLite failure into one sentence for the operator."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and any(
        word in text for word in ("unable to open", "readonly", "disk I/O", "read-only")
    ):
        return _not_writable(path.parent)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the state database {path} stayed locked by another process for more than "
            f"{_BUSY_TIMEOUT_MS // 1000} s: check for a stuck larkbot using that directory"
        )
    if "not a database" in text or "malformed" in text:
        return StoreError(
            f"{path} is not a usable larkbot database ({text}): move it aside or set "
            "LARKBOT_STATE_DIR to another directory"
        )
    return StoreError(f"the state database {path} failed: {text}")


def _not_writable(state_dir: Path) -> StoreError:
    return StoreError(
        f"state directory {state_dir} is not writable: "
        "set LARKBOT_STATE_DIR to a writable directory"
    )


def _take_owner_lock(state_dir: Path, owner: str) -> tuple[Path, int]:
    """Create the state directory and hold this owner's lock; runs in a worker thread."""
    state_dir = Path(state_dir).expanduser()
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        owners_dir = state_dir / _OWNERS_DIR
        owners_dir.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(owners_dir / f"{owner}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise _not_writable(state_dir) from exc
    try:
        # Never contended: the id is fresh. The kernel releases it when the process ends.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StoreError(
            f"state directory {state_dir} does not support file locks ({exc.strerror}): "
            "set LARKBOT_STATE_DIR to a directory on a local filesystem"
        ) from exc
    return state_dir, fd


def _drop_owner_lock(owners_dir: Path, owner: str, fd: int) -> None:
    """Remove and release this owner's lock file; runs in a worker thread."""
    with contextlib.suppress(FileNotFoundError):
        (owners_dir / f"{owner}.lock").unlink()
    os.close(fd)


def _gone_owners(
    owners_dir: Path, candidates: list[tuple[str, float | None]], now: float
) -> list[str]:
    """Return the owners that are gone; runs in a worker thread.

    An owner whose lock is free has ended: its lock file is removed. An owner whose lock
    is held but whose heartbeat is missing or older than the lease is taken for frozen;
    its lock file stays, so once it wakes up it counts as alive again.
    """
    gone: list[str] = []
    for owner, heartbeat_at in candidates:
        if not _OWNER_ID.fullmatch(owner):
            gone.append(owner)
            continue
        lock_path = owners_dir / f"{owner}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            gone.append(owner)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if heartbeat_at is None or heartbeat_at < now - _LEASE_SECONDS:
                gone.append(owner)
        else:
            gone.append(owner)
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
        finally:
            os.close(fd)
    return gone
