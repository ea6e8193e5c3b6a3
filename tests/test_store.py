"""The seen-message ledger and inbox, against real SQLite files and the memory store."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from larkbot.core.message import InboundMessage
from larkbot.store import InboxStatus, Store, StoreError, open_store
from larkbot.store.sqlite import DATABASE_NAME, SCHEMA_VERSION, SqliteStore
from tests._confirmations import check_confirmation_attempts, pending_write
from tests._factories import inbound

KINDS = ["sqlite", "memory"]


def _message(message_id: str, *, age: float = 0.0, text: str = "hello") -> InboundMessage:
    return inbound(
        "oc_chat",
        text,
        message_id=message_id,
        event_id=f"ev_{message_id}",
        chat_type="group",
        created_at=datetime.now(UTC) - timedelta(seconds=age),
        root_id="om_root",
        mentions_bot=True,
    )


@asynccontextmanager
async def _open(kind: str, state_dir: Path, **limits: float) -> AsyncIterator[Store]:
    async with open_store(kind, state_dir, **limits) as store:  # type: ignore[arg-type]
        yield store


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store of each kind in ``tmp_path``, with the default limits."""
    async with _open(request.param, tmp_path) as opened:
        yield opened


def _sql(path: Path | None, query: str, params: tuple[object, ...] = ()) -> list[tuple]:
    """Read or poke the database file through a connection of its own."""
    assert path is not None
    with sqlite3.connect(path, isolation_level=None) as db:
        return db.execute(query, params).fetchall()


async def _ledger_ids(store: Store) -> set[str]:
    if store.kind == "sqlite":
        return {row[0] for row in _sql(store.path, "SELECT message_id FROM seen")}
    return set(store._ledger)  # type: ignore[attr-defined]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_admit_once_then_duplicate(kind: str, tmp_path: Path) -> None:
    message = _message("om_1")
    async with _open(kind, tmp_path) as store:
        assert await store.admit(message) is True
        assert await store.admit(message) is False
        # A retry may carry a new event id; the message id is what counts.
        assert await store.admit(message.model_copy(update={"event_id": "ev_other"})) is False
        item = await store.lookup("om_1")
        assert item is not None
        assert item.status is InboxStatus.PENDING
        assert item.message == message
        assert await store.lookup("om_unknown") is None


@pytest.mark.anyio
async def test_mark_done_settles_and_stays_duplicate(store: Store) -> None:
    await store.admit(_message("om_1"))
    await store.mark_done("om_1")
    item = await store.lookup("om_1")
    assert item is not None and item.status is InboxStatus.DONE
    assert await store.depth() == 0
    assert await store.admit(_message("om_1")) is False
    # A late failure report cannot turn a sent reply into a failed one.
    await store.mark_failed("om_1", "timeout")
    item = await store.lookup("om_1")
    assert item is not None and item.status is InboxStatus.DONE and item.reason is None
    await store.mark_done("om_never_admitted")
    assert await store.lookup("om_never_admitted") is None


@pytest.mark.anyio
async def test_mark_failed_keeps_item_with_clean_reason(store: Store) -> None:
    await store.admit(_message("om_1"))
    await store.mark_failed(
        "om_1",
        "HTTP 400 from im/v1/messages\n  Authorization: Bearer t-g104secretvalue "
        'body {"app_secret": "s3cr3t"}' + " padding" * 200,
    )
    item = await store.lookup("om_1")
    assert item is not None
    assert item.status is InboxStatus.FAILED
    assert item.reason is not None
    assert item.reason.startswith("HTTP 400 from im/v1/messages Authorization: Bearer ***")
    assert "t-g104secretvalue" not in item.reason and "s3cr3t" not in item.reason
    assert "\n" not in item.reason and len(item.reason) <= 500
    assert await store.depth() == 0
    assert await store.admit(_message("om_1")) is False


@pytest.mark.anyio
async def test_depth_counts_pending(store: Store) -> None:
    assert await store.depth() == 0
    for n in range(4):
        await store.admit(_message(f"om_{n}"))
    await store.mark_done("om_0")
    await store.mark_failed("om_1", "gave up")
    assert await store.depth() == 2


@pytest.mark.anyio
async def test_unfinished_never_returns_own_items(store: Store) -> None:
    await store.admit(_message("om_fresh"))
    await store.admit(_message("om_old", age=7200))
    assert await store.unfinished(60) == ([], [])
    assert await store.depth() == 2


@pytest.mark.anyio
async def test_unfinished_resumes_previous_process_split_by_age(tmp_path: Path) -> None:
    async with _open("sqlite", tmp_path) as previous:
        await previous.admit(_message("om_new", age=10))
        await previous.admit(_message("om_older", age=100))
        await previous.admit(_message("om_stale", age=7200))
        await previous.admit(_message("om_answered", age=50))
        await previous.mark_done("om_answered")
        await previous.admit(_message("om_failed", age=50))
        await previous.mark_failed("om_failed", "gave up")

    async with _open("sqlite", tmp_path) as store:
        resumable, expired = await store.unfinished(3600)
        assert [m.message_id for m in resumable] == ["om_older", "om_new"]
        assert [m.message_id for m in expired] == ["om_stale"]
        stale = await store.lookup("om_stale")
        assert stale is not None and stale.status is InboxStatus.EXPIRED
        assert await store.depth() == 2
        # Taken over once: the items are this store's now.
        assert await store.unfinished(3600) == ([], [])
        assert await store.admit(_message("om_stale")) is False

    async with _open("sqlite", tmp_path) as store:
        # `now` moves the cutoff: an hour later both leftovers are too old.
        later = datetime.now(UTC) + timedelta(hours=1)
        resumable, expired = await store.unfinished(3600, now=later)
        assert resumable == []
        assert {m.message_id for m in expired} == {"om_new", "om_older"}
        assert await store.depth() == 0


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_prune_by_ttl(kind: str, tmp_path: Path) -> None:
    async with _open(kind, tmp_path, ledger_ttl_seconds=100) as store:
        for name in ("om_done", "om_failed", "om_pending"):
            await store.admit(_message(name))
        await store.mark_done("om_done")
        await store.mark_failed("om_failed", "gave up")
        now = datetime.now(UTC)

        assert await store.prune(now=now + timedelta(seconds=50)) == 0
        # Three ledger entries and the done inbox item; failed and pending items stay.
        assert await store.prune(now=now + timedelta(seconds=200)) == 4
        assert await _ledger_ids(store) == set()
        assert await store.lookup("om_done") is None
        assert (await store.lookup("om_failed")) is not None
        assert await store.depth() == 1
        # Forgotten entirely, so a (very late) redelivery would be new; the inbox still
        # knows the others.
        assert await store.admit(_message("om_done")) is True
        assert await store.admit(_message("om_failed")) is False
        assert await store.admit(_message("om_pending")) is False


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_prune_by_max_entries_keeps_newest(kind: str, tmp_path: Path) -> None:
    async with _open(kind, tmp_path, ledger_max_entries=3) as store:
        for n in range(5):
            await store.admit(_message(f"om_{n}"))
            await store.mark_done(f"om_{n}")
        removed = await store.prune()
        # The memory ledger evicts as it fills; SQLite trims when pruning.
        assert removed == (2 if kind == "sqlite" else 0)
        assert await _ledger_ids(store) == {"om_2", "om_3", "om_4"}
        assert await store.prune() == 0


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_run_pruner_prunes_until_cancelled(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _open(kind, tmp_path, ledger_ttl_seconds=0.05, prune_interval=0.05) as store:
        await store.admit(_message("om_1"))
        await store.mark_done("om_1")
        await anyio.sleep(0.06)  # the item must be older than the TTL
        pruned_twice = anyio.Event()
        removed: list[int] = []
        prune = store.prune

        async def observed_prune(now: datetime | None = None) -> int:
            removed.append(await prune(now))
            if len(removed) == 2:
                pruned_twice.set()
            return removed[-1]

        monkeypatch.setattr(store, "prune", observed_prune)
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.run_pruner)
            with anyio.fail_after(5):
                await pruned_twice.wait()
            tg.cancel_scope.cancel()
        assert removed[:2] == [2, 0]
        assert await store.lookup("om_1") is None
        assert await _ledger_ids(store) == set()


@pytest.mark.anyio
async def test_memory_store_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="larkbot.store")
    async with _open("memory", tmp_path) as store:
        assert store.kind == "memory" and store.path is None
    warnings = [r for r in caplog.records if r.name == "larkbot.store"]
    assert [r.getMessage() for r in warnings] == [
        "store = memory: restarts forget which messages were answered"
    ]
    assert [p async for p in anyio.Path(tmp_path).iterdir()] == []


@pytest.mark.anyio
async def test_unwritable_state_dir_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as caught:
        async with _open("sqlite", blocker / "state"):
            pass
    assert str(caught.value) == (
        f"state directory {blocker / 'state'} is not writable: "
        "set LARKBOT_STATE_DIR to a writable directory"
    )


@pytest.mark.anyio
async def test_read_only_state_dir(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    if os.geteuid() == 0:
        pytest.skip("running as root: permissions do not stop writes")
    state_dir.mkdir(mode=0o500)
    try:
        with pytest.raises(StoreError, match=r"^state directory .* is not writable: set LARKBOT"):
            async with _open("sqlite", state_dir):
                pass
    finally:
        state_dir.chmod(0o700)


@pytest.mark.anyio
async def test_bad_kind_or_missing_dir_is_store_error() -> None:
    with pytest.raises(StoreError, match="needs a state directory"):
        async with _open("sqlite", None):  # type: ignore[arg-type]
            pass
    with pytest.raises(StoreError, match="is not a store kind"):
        async with _open("redis", Path("/nonexistent")):
            pass


@pytest.mark.anyio
async def test_sqlite_file_layout_and_schema_version(tmp_path: Path) -> None:
    state_dir = tmp_path / "state" / "larkbot"
    async with _open("sqlite", state_dir) as store:
        assert store.kind == "sqlite"
        assert store.path == state_dir / DATABASE_NAME
        await store.admit(_message("om_1"))
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        assert _sql(store.path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert _sql(store.path, "PRAGMA journal_mode") == [("wal",)]
        # Temporary tables stay in memory (2): no file in /var/tmp for each settle.
        assert await store._query("PRAGMA temp_store") == [(2,)]  # type: ignore[attr-defined]
    # Reopening an up-to-date database changes nothing and keeps the data.
    async with _open("sqlite", state_dir) as store:
        assert await store.admit(_message("om_1")) is False
        assert _sql(store.path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


@pytest.mark.anyio
async def test_confirmation_attempts_are_compare_and_set(store: Store) -> None:
    await check_confirmation_attempts(store, store)


@pytest.mark.anyio
async def test_confirmation_attempts_across_two_processes_on_one_file(tmp_path: Path) -> None:
    async with _open("sqlite", tmp_path) as first, _open("sqlite", tmp_path) as second:
        await check_confirmation_attempts(first, second)


@pytest.mark.anyio
async def test_a_confirmation_approved_before_attempts_were_recorded(tmp_path: Path) -> None:
    async with _open("sqlite", tmp_path) as store:
        await store.add_confirmation(pending_write("cf_old"))
        path = store.path
    # The database as schema version 4 left it: an approving row with no attempt times.
    for statement in (
        "UPDATE confirmations SET state = 'approving'",
        "ALTER TABLE confirmations DROP COLUMN approved_at",
        "ALTER TABLE confirmations DROP COLUMN approving_since",
        "PRAGMA user_version = 4",
    ):
        _sql(path, statement)
    async with _open("sqlite", tmp_path) as store:
        assert _sql(store.path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        old = await store.confirmation("cf_old")
        assert old is not None and old.state == "approving"
        assert old.approved_at is None and old.approving_since is None


@pytest.mark.anyio
async def test_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    _sql(tmp_path / DATABASE_NAME, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="from a newer larkbot"):
        async with _open("sqlite", tmp_path):
            pass


@pytest.mark.anyio
async def test_not_a_database_is_store_error(tmp_path: Path) -> None:
    (tmp_path / DATABASE_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="is not a usable larkbot database"):
        async with _open("sqlite", tmp_path):
            pass


@pytest.mark.anyio
async def test_two_stores_on_one_file_share_the_ledger(tmp_path: Path) -> None:
    async with _open("sqlite", tmp_path) as first, _open("sqlite", tmp_path) as second:
        assert await first.admit(_message("om_1")) is True
        assert await second.admit(_message("om_1")) is False

        results: dict[str, list[bool]] = {f"om_race_{n}": [] for n in range(40)}

        async def admit_all(store: Store) -> None:
            for message_id, outcomes in results.items():
                outcomes.append(await store.admit(_message(message_id)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(admit_all, first)
            tg.start_soon(admit_all, second)
        assert all(sorted(outcomes) == [False, True] for outcomes in results.values())
        assert await first.depth() == await second.depth() == 41


@pytest.mark.anyio
async def test_live_owner_keeps_its_items_frozen_one_loses_them(tmp_path: Path) -> None:
    async with _open("sqlite", tmp_path) as first:
        await first.admit(_message("om_1"))
        async with _open("sqlite", tmp_path) as second:
            # The first store is alive (lock held, fresh heartbeat): nothing to take over.
            assert await second.unfinished(3600) == ([], [])
            # Its heartbeat goes stale, as if its process had been frozen past the lease.
            _sql(
                second.path,
                "UPDATE owners SET heartbeat_at = heartbeat_at - 3600 WHERE owner ="
                " (SELECT owner FROM inbox WHERE message_id = 'om_1')",
            )
            resumable, expired = await second.unfinished(3600)
            assert [m.message_id for m in resumable] == ["om_1"] and expired == []
            assert await second.unfinished(3600) == ([], [])
            # A third store sees the first as alive again (its lock is still held) and the
            # item as the second's.
            async with _open("sqlite", tmp_path) as third:
                assert await third.unfinished(3600) == ([], [])


@pytest.mark.anyio
async def test_closed_owner_items_are_resumed_at_once(tmp_path: Path) -> None:
    async with _open("sqlite", tmp_path) as first:
        await first.admit(_message("om_1"))
        await first.admit(_message("om_2"))
        await first.mark_done("om_2")
    async with _open("sqlite", tmp_path) as second:
        resumable, _ = await second.unfinished(3600)
        assert [m.message_id for m in resumable] == ["om_1"]
    assert [p async for p in anyio.Path(tmp_path, "larkbot.owners").iterdir()] == []


@pytest.mark.anyio
async def test_settles_noted_while_the_settler_runs_are_written_soon_and_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _open("sqlite", tmp_path) as first, _open("sqlite", tmp_path) as other:
        for n in range(3):
            await first.admit(_message(f"om_{n}"))
        written = anyio.Event()
        done_batch = first._done_batch  # type: ignore[attr-defined]

        async def observed_done_batch(message_ids: list[str]) -> list[None]:
            result = await done_batch(message_ids)
            written.set()
            return result

        monkeypatch.setattr(first, "_done_batch", observed_done_batch)
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.run_pruner)
            await anyio.wait_all_tasks_blocked()
            await first.mark_done("om_0")
            # The settler writes it, unasked: another process sees it settled.
            with anyio.fail_after(5):
                await written.wait()
            assert (await other.lookup("om_0")).status == InboxStatus.DONE  # type: ignore[union-attr]
            await first.mark_done("om_1")
            # Its own reads see what it noted at once.
            assert (await first.lookup("om_1")).status == InboxStatus.DONE  # type: ignore[union-attr]
            await first.mark_done("om_2")
            tg.cancel_scope.cancel()  # stopping the settler writes what it still holds
        assert (await other.lookup("om_2")).status == InboxStatus.DONE  # type: ignore[union-attr]
        assert await other.depth() == 0


@pytest.mark.anyio
async def test_cancelled_admits_leave_the_store_consistent(tmp_path: Path) -> None:
    ids = [f"om_{n}" for n in range(30)]
    admitted: list[str] = []

    async def admit(store: Store, message_id: str) -> None:
        if await store.admit(_message(message_id)):
            admitted.append(message_id)

    async with _open("sqlite", tmp_path) as store:
        async with anyio.create_task_group() as tg:
            for message_id in ids:
                tg.start_soon(admit, store, message_id)
            await anyio.sleep(0.001)
            tg.cancel_scope.cancel()
        # Every admit either happened whole or not at all, and the connection is usable.
        pending = await store.depth()
        outcomes = {message_id: await store.admit(_message(message_id)) for message_id in ids}
        assert pending == len(admitted)
        assert {m for m, fresh in outcomes.items() if not fresh} == set(admitted)
        # Admits are shielded: one that started completes, whoever cancels its caller.
        assert sorted(admitted) == sorted(ids)


class _StoreMachine(RuleBasedStateMachine):
    """Any sequence of admits, settlements and restarts keeps the ledger and inbox true."""

    kind = "sqlite"
    message_ids = st.sampled_from([f"om_{n}" for n in range(6)])

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self._portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
        self._portal = self._portal_cm.__enter__()
        self._open()
        self.status: dict[str, InboxStatus] = {}

    def _open(self) -> None:
        self._store_cm = self._portal.wrap_async_context_manager(
            open_store(self.kind, Path(self._tmp.name))
        )
        self.store = self._store_cm.__enter__()

    @rule(message_id=message_ids)
    def admit(self, message_id: str) -> None:
        admitted = self._portal.call(self.store.admit, _message(message_id))
        assert admitted == (message_id not in self.status)
        self.status.setdefault(message_id, InboxStatus.PENDING)

    @rule(message_id=message_ids)
    def mark_done(self, message_id: str) -> None:
        self._portal.call(self.store.mark_done, message_id)
        if message_id in self.status:
            self.status[message_id] = InboxStatus.DONE

    @rule(message_id=message_ids)
    def mark_failed(self, message_id: str) -> None:
        self._portal.call(self.store.mark_failed, message_id, "gave up")
        if self.status.get(message_id) is InboxStatus.PENDING:
            self.status[message_id] = InboxStatus.FAILED

    @rule()
    def look_for_unfinished(self) -> None:
        assert self._portal.call(self.store.unfinished, 3600) == ([], [])

    @precondition(lambda self: self.kind == "sqlite")
    @rule()
    def restart(self) -> None:
        self._store_cm.__exit__(None, None, None)
        self._open()
        resumable, expired = self._portal.call(self.store.unfinished, 3600)
        pending = {m for m, s in self.status.items() if s is InboxStatus.PENDING}
        assert sorted(m.message_id for m in resumable) == sorted(pending)
        assert expired == []

    @invariant()
    def inbox_matches(self) -> None:
        pending = sum(s is InboxStatus.PENDING for s in self.status.values())
        assert self._portal.call(self.store.depth) == pending
        for message_id, status in self.status.items():
            item = self._portal.call(self.store.lookup, message_id)
            assert item is not None and item.status is status

    def teardown(self) -> None:
        try:
            self._store_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)
            self._tmp.cleanup()


class _MemoryStoreMachine(_StoreMachine):
    kind = "memory"


_MACHINE_SETTINGS = settings(max_examples=25, stateful_step_count=15, deadline=None)
TestSqliteStoreProperties = _StoreMachine.TestCase
TestSqliteStoreProperties.settings = _MACHINE_SETTINGS
TestMemoryStoreProperties = _MemoryStoreMachine.TestCase
TestMemoryStoreProperties.settings = _MACHINE_SETTINGS


@pytest.mark.anyio
async def test_a_database_failure_reaches_callers_as_one_sentence(tmp_path: Path) -> None:
    # Regression: only prune() and open() turned SQLite errors into StoreError; admit,
    # mark_* and unfinished raised raw sqlite3 errors, which the CLI shows as a traceback.
    async with _open("sqlite", tmp_path) as store:
        assert store.path is not None
        await anyio.to_thread.run_sync(_sql, store.path, "DROP TABLE inbox")
        with pytest.raises(StoreError, match=r"the state database .* failed: no such table"):
            await store.admit(_message("om_x"))
        with pytest.raises(StoreError):
            await store.mark_done("om_x")
        with pytest.raises(StoreError):
            await store.unfinished(60)


@pytest.mark.anyio
async def test_an_admit_that_fails_leaves_no_row_its_redelivery_would_take_for_a_duplicate(
    tmp_path: Path,
) -> None:
    # Regression: a batch's rows went in with one autocommitted statement, and a second
    # one read which of them had. When that read failed the frames were not acked, but
    # their rows stayed: the redelivery was a "duplicate", and nobody answered.
    async with _open("sqlite", tmp_path) as store:
        assert await store.admit(_message("om_old"))

        def deny_reading_owners(
            action: int, table: str | None, column: str | None, *_: object
        ) -> int:
            # Only the read of which rows went in looks at the inbox's owners.
            if action == sqlite3.SQLITE_READ and (table, column) == ("inbox", "owner"):
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        await store._db.set_authorizer(deny_reading_owners)  # type: ignore[attr-defined]
        failed: list[str] = []

        async def admit(message_id: str) -> None:
            try:
                await store.admit(_message(message_id))
            except StoreError:
                failed.append(message_id)

        # Two batches are written at once; the rest, om_old among them, form a third,
        # whose duplicate makes the read necessary.
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for message_id in [f"om_{index}" for index in range(6)] + ["om_old"]:
                    tg.start_soon(admit, message_id)
        assert "om_old" in failed and len(failed) > 1
        await store._db.set_authorizer(None)  # type: ignore[attr-defined]
        # Redelivered, the new messages of the failed batch are admitted, to be answered.
        for message_id in failed:
            assert await store.admit(_message(message_id)) is (message_id != "om_old")
        assert await store.depth() == 7


@pytest.mark.anyio
async def test_frames_admitted_together_share_one_statement_and_keep_dedup(
    tmp_path: Path,
) -> None:
    async with _open("sqlite", tmp_path) as store:
        statements: list[str] = []
        await store._db.set_trace_callback(statements.append)  # type: ignore[attr-defined]
        # 60 deliveries arrive at once: 40 messages, 20 of them delivered twice.
        ids = [f"om_{index}" for index in range(40)] + [f"om_{index}" for index in range(20)]
        flags: dict[int, bool] = {}

        async def admit(position: int, message_id: str) -> None:
            flags[position] = await store.admit(_message(message_id))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for position, message_id in enumerate(ids):
                    tg.start_soon(admit, position, message_id)
        await store._db.set_trace_callback(None)  # type: ignore[attr-defined]
        # SQLite traces a statement again for each row its trigger writes: count texts.
        inserts = {sql for sql in statements if sql.startswith("INSERT INTO inbox")}
        assert 1 <= len(inserts) <= 3, len(inserts)  # not one statement per message
        assert sum(flags.values()) == 40
        assert all(not flags[position] for position in range(40, 60))
        assert await store.depth() == 40
        assert await _ledger_ids(store) == set(ids)
        await store.admit(_message("om_late"))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for message_id in ids[:40]:
                    tg.start_soon(store.mark_done, message_id)
        assert await store.depth() == 1
        assert not await store.admit(_message("om_3"))


@pytest.mark.anyio
async def test_a_failed_group_commit_fails_every_caller_of_its_batch() -> None:
    from larkbot.store._batch import GroupCommit

    release = anyio.Event()
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            await release.wait()
            return [item * 10 for item in items]
        raise StoreError("the disk is full")

    group: GroupCommit[int, int] = GroupCommit(flush, max_items=100)  # type: ignore[arg-type]
    results: dict[int, int | str] = {}

    async def write(item: int) -> None:
        try:
            results[item] = await group.write(item)
        except StoreError as exc:
            results[item] = str(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(write, 1)
            await anyio.wait_all_tasks_blocked()
            for item in (2, 3, 4):
                tg.start_soon(write, item)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert batches == [[1], [2, 3, 4]]
    assert results == {1: 10, 2: "the disk is full", 3: "the disk is full", 4: "the disk is full"}


@pytest.mark.anyio
async def test_the_wal_is_checkpointed_off_the_admit_path(tmp_path: Path) -> None:
    # Regression: SQLite checkpointed (and synced both files) inside whichever admit
    # commit filled the WAL, stalling that batch's acks for hundreds of milliseconds.
    async with _open("sqlite", tmp_path) as store, anyio.create_task_group() as tg:
        assert store.path is not None
        tg.start_soon(store.run_pruner)
        with anyio.fail_after(10):
            # Nothing signals that the checkpointer has started; the setting is polled.
            while (await store._query("PRAGMA wal_autocheckpoint"))[0][0] != 0:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        before = store.path.stat().st_size
        for index in range(300):
            await store.admit(_message(f"om_{index}", text="x" * 500))
        # The rows reach the main file only through the background checkpoint.
        with anyio.fail_after(10):
            while store.path.stat().st_size <= before:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert len(_sql(store.path, "SELECT message_id FROM inbox")) == 300


@pytest.mark.anyio
async def test_the_store_thread_gets_the_gil_quickly_while_open(tmp_path: Path) -> None:
    # Regression: with Python's 5 ms switch interval, an admit whose statement returned
    # 60 rows waited over 100 ms for the GIL while the event loop was busy answering.
    import sys

    before = sys.getswitchinterval()
    async with _open("sqlite", tmp_path):
        assert sys.getswitchinterval() <= 0.0005
    assert sys.getswitchinterval() == before


@pytest.mark.anyio
async def test_admits_held_back_by_a_transaction_go_after_it_in_the_order_they_came(
    tmp_path: Path,
) -> None:
    async with _open("sqlite", tmp_path) as store:
        turns = store._lock  # type: ignore[attr-defined]
        committed = anyio.Event()
        returned: list[str] = []
        ids = [f"om_{index}" for index in range(20)]

        async def transaction() -> None:
            async with turns.transaction():
                await store._db.execute("BEGIN IMMEDIATE")  # type: ignore[attr-defined]
                await store._db.execute("COMMIT")  # type: ignore[attr-defined]
            committed.set()

        async def admit(message_id: str) -> None:
            assert await store.admit(_message(message_id))
            assert committed.is_set()  # nothing was written inside the transaction
            returned.append(message_id)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg, turns.statement():
                tg.start_soon(transaction)
                await anyio.wait_all_tasks_blocked()
                # The transaction waits for this statement; the admits wait behind it.
                for message_id in ids:
                    tg.start_soon(admit, message_id)
                await anyio.wait_all_tasks_blocked()
                assert returned == []
        assert returned == ids
        assert await store.depth() == len(ids)


@pytest.mark.anyio
async def test_a_stream_of_admits_lets_other_statements_go_between_its_batches(
    tmp_path: Path,
) -> None:
    async with _open("sqlite", tmp_path) as store:
        db = store._db  # type: ignore[attr-defined]
        gate = threading.Event()
        returned: list[str] = []
        admitted_before_query: list[int] = []

        async def admit(message_id: str) -> None:
            assert await store.admit(_message(message_id))
            returned.append(message_id)

        async def query() -> None:
            await store._query("SELECT 1")  # type: ignore[attr-defined]
            admitted_before_query.append(len(returned))

        ids = [f"om_{index}" for index in range(1200)]  # three batches
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                try:
                    # The store's thread is held while the admits queue up, then a query.
                    tg.start_soon(db._execute, gate.wait, 10)
                    await anyio.wait_all_tasks_blocked()
                    for message_id in ids:
                        tg.start_soon(admit, message_id)
                    await anyio.wait_all_tasks_blocked()
                    tg.start_soon(query)
                    await anyio.wait_all_tasks_blocked()
                finally:
                    gate.set()
        # The query went after the first batch, not after all three.
        assert admitted_before_query[0] < len(ids)
        assert returned == ids
        assert await store.depth() == len(ids)


@pytest.mark.anyio
async def test_a_transaction_given_up_while_waiting_does_not_hold_statements_back(
    tmp_path: Path,
) -> None:
    async with _open("sqlite", tmp_path) as store:
        turns = store._lock  # type: ignore[attr-defined]
        ran = anyio.Event()  # the waiting statement ran

        async def transaction(scope: anyio.CancelScope) -> None:
            with scope:
                async with turns.transaction():
                    pass

        async def statement() -> None:
            # A statement of its own, not an admit: an admit cannot be cancelled, and a
            # regression must fail this test, not hang it.
            await store._query("SELECT 1")  # type: ignore[attr-defined]
            ran.set()

        async with turns.statement(), anyio.create_task_group() as tg:
            # A transaction waits for the statement in flight; a statement waits behind it...
            waiting = anyio.CancelScope()
            tg.start_soon(transaction, waiting)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(statement)
            await anyio.wait_all_tasks_blocked()
            assert not ran.is_set()
            # ...until the transaction is given up: then the statement goes at once.
            waiting.cancel()
            with anyio.fail_after(5):
                await ran.wait()


@pytest.mark.anyio
async def test_a_reader_cancelled_while_writing_noted_settles_keeps_them(tmp_path: Path) -> None:
    # Regression: a reader (``depth``, as the inbox watch calls it) took the settles the
    # settler had noted, waited for the connection behind a transaction, was cancelled and
    # dropped them: the answered message stayed pending and was answered again at the
    # next start.
    async with open_store("sqlite", tmp_path) as store:
        await store.admit(inbound("oc_1", "x", message_id="om_1"))
        release, in_transaction = anyio.Event(), anyio.Event()

        async def hold_the_connection() -> None:
            async with store._transaction():
                in_transaction.set()
                await release.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(store.run_pruner)
            tg.start_soon(hold_the_connection)
            await in_transaction.wait()
            await store.mark_done("om_1")
            with anyio.move_on_after(0.05) as waited:
                await store.depth()
            assert waited.cancelled_caught
            release.set()
            tg.cancel_scope.cancel()  # the settler writes what is noted as it stops
    async with open_store("sqlite", tmp_path) as store:
        stored = await store.lookup("om_1")
        assert stored is not None and stored.status is InboxStatus.DONE


@pytest.mark.anyio
async def test_settles_the_database_refuses_are_retried_at_a_growing_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_store("sqlite", tmp_path) as store:
        await store.admit(inbound("oc_1", "x", message_id="om_1"))
        attempts = 0
        written = anyio.Event()
        write = store._done_batch

        async def refused(message_ids: Sequence[str]) -> list[None]:
            nonlocal attempts
            attempts += 1
            if attempts <= 4:
                raise StoreError("database is locked")
            result = await write(message_ids)
            written.set()
            return result

        store._done_batch = refused  # type: ignore[method-assign]
        caplog.set_level(logging.INFO, logger="larkbot.store")
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.run_pruner)
            await anyio.wait_all_tasks_blocked()  # the settler runs: settles are noted
            await store.mark_done("om_1")
            with anyio.fail_after(10):
                await written.wait()
            tg.cancel_scope.cancel()
        stored = await store.lookup("om_1")
        assert stored is not None and stored.status is InboxStatus.DONE
    messages = [record.getMessage() for record in caplog.records]
    # One warning for the outage, one line when it is over (every 20 ms before: ~50 a second).
    assert sum("settling answered inbox items failed" in m for m in messages) == 1
    assert sum("works again" in m for m in messages) == 1


def _connection_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


@pytest.mark.anyio
async def test_a_store_stopped_as_it_starts_leaves_no_connection_thread(tmp_path: Path) -> None:
    # Regression: the checkpointer's connection, cancelled while it was being made, kept
    # its thread, which later reported to an event loop already closed.
    before = _connection_threads()
    async with _open("sqlite", tmp_path) as store, anyio.create_task_group() as tg:
        opened = _connection_threads()
        tg.start_soon(store.run_pruner)
        with anyio.fail_after(10):
            while not _connection_threads() - opened:  # the checkpointer is connecting
                await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    with anyio.fail_after(10):
        while left := _connection_threads() - before:
            await anyio.to_thread.run_sync(lambda: [t.join(0.1) for t in left])


@pytest.mark.anyio
async def test_admit_nowait_calls_back_in_order_once_committed_and_survives_a_failing_callback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[tuple[str, bool, BaseException | None]] = []
    done = anyio.Event()

    def then(message_id: str) -> Callable[[bool, BaseException | None], None]:
        def record(admitted: bool, error: BaseException | None) -> None:
            heard.append((message_id, admitted, error))
            if len(heard) == 6:
                done.set()
            if message_id == "om_2":
                raise RuntimeError("a callback's bug")

        return record

    async with open_store(kind="sqlite", state_dir=tmp_path) as store:
        assert isinstance(store, SqliteStore)
        for message_id in ("om_1", "om_2", "om_3", "om_1", "om_4", "om_5"):
            store.admit_nowait(_message(message_id), then(message_id))
        with anyio.fail_after(5):
            await done.wait()
        # Committed before the callback: each is a duplicate now.
        for message_id in ("om_1", "om_2", "om_3", "om_4", "om_5"):
            assert await store.admit(_message(message_id)) is False
    assert heard == [
        ("om_1", True, None),
        ("om_2", True, None),
        ("om_3", True, None),
        ("om_1", False, None),
        ("om_4", True, None),
        ("om_5", True, None),
    ]
    assert any("admit callback failed for message om_2" in r.getMessage() for r in caplog.records)
