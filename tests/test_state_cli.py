"""``larkbot state backup | restore | inspect`` as an operator runs them, on both stores.

The commands run as real subprocesses (``python -m larkbot state ...``) against a state the
real daemon is using (SQLite) or a real ``redis-server`` that a replica is answering from.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from larkbot.core.agent import Reply
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.store.redis import FinishChange, PartitionOwnership, RedisStore, _admin
from larkbot.store.sqlite import SqliteStore
from larkbot.testing import LarkStandIn
from tests._daemon import EchoAgent, running_daemon, settings_for
from tests._factories import inbound
from tests._redis import RedisServer, redis_server, requires_redis

pytestmark = pytest.mark.anyio

_ESCAPE = "\x1b"


async def _larkbot(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    full = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": env.get("HOME", "/nonexistent"),
        "COLUMNS": "200",
        **env,
    }
    with anyio.fail_after(120):
        result = await anyio.run_process(
            [sys.executable, "-m", "larkbot", *args], env=full, check=False
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def _one_sentence(err: str) -> str:
    """The error line of a failed command: exactly one line, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _fields(out: str) -> dict[str, str]:
    """``name: value`` lines of plain output, by name."""
    pairs = (line.partition(":") for line in out.splitlines())
    return {name: value.strip() for name, _, value in pairs}


def _seen_ids(database: Path) -> set[str]:
    with sqlite3.connect(database) as db:
        return {row[0] for row in db.execute("SELECT message_id FROM seen")}


async def _wait_for(predicate: Callable[[], bool], within: float) -> None:
    # Records and counters change without an event to wait on: they are polled.
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.02)


@dataclass
class _Backup:
    """``larkbot state backup`` run while messages kept coming: its outcome, and the load."""

    code: int
    out: str
    err: str
    sent: list[tuple[str, str, str]]  # chat, text, message id, in the order sent
    acked_before: set[str | None]
    sent_during: int


async def _backup_while_sending(
    lark: LarkStandIn, chats: list[str], backup: Path, env: dict[str, str], *, replies_first: int
) -> _Backup:
    """Send messages round ``chats``; once ``replies_first`` are answered, back up to ``backup``.

    The sending goes on until 20 messages have gone after the backup finished.
    """
    sent: list[tuple[str, str, str]] = []
    backup_done = anyio.Event()

    async def send_until_after_the_backup() -> None:
        n = after = 0
        while after < 20:
            chat = chats[n % len(chats)]
            text = f"message {n}"
            sent.append((chat, text, await lark.send_text(text, chat_id=chat)))
            n += 1
            after += backup_done.is_set()
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(send_until_after_the_backup)
        await _wait_for(lambda: len(lark.replies) >= replies_first, within=30)
        acked_before = {a.chat_message_id for a in lark.acks if a.code == 200}
        sent_before = len(sent)
        code, out, err = await _larkbot("state", "backup", str(backup), env=env)
        sent_during = len(sent) - sent_before
        backup_done.set()
    return _Backup(code, out, err, sent, acked_before, sent_during)


# --- SQLite ------------------------------------------------------------------------------------


async def test_sqlite_backup_while_the_daemon_answers_restores_every_message_as_seen(
    tmp_path: Path,
) -> None:
    """A backup taken mid-load restores into a fresh directory where every message it
    holds (and every message acked before it began) is a duplicate, and no other is."""
    source_dir, fresh_dir = tmp_path / "running", tmp_path / "fresh"
    backup = tmp_path / "larkbot-backup.sqlite3"
    chats = [f"oc_backup_{n}" for n in range(8)]
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, state_dir=source_dir)
        async with running_daemon(settings, EchoAgent(delay=0.01)):
            source_env = {"LARKBOT_STATE_DIR": str(source_dir)}
            taken = await _backup_while_sending(lark, chats, backup, source_env, replies_first=30)
            await _wait_for(lambda: len(lark.replies) >= len(taken.sent), within=60)
    assert taken.code == 0, taken.err
    assert taken.err == ""
    assert taken.out.startswith("backed up ") and str(backup) in taken.out
    assert taken.out.count("\n") == 1 and _ESCAPE not in taken.out
    # The daemon kept taking and answering messages while the backup ran.
    assert taken.sent_during > 0
    assert backup.stat().st_mode & 0o077 == 0

    in_backup = await anyio.to_thread.run_sync(_seen_ids, backup)
    all_ids = {message_id for _, _, message_id in taken.sent}
    assert taken.acked_before <= in_backup <= all_ids
    assert in_backup != all_ids, "the backup should predate the last messages"

    code, out, err = await _larkbot(
        "state", "restore", str(backup), env={"LARKBOT_STATE_DIR": str(fresh_dir)}
    )
    assert code == 0, err
    assert f"restored {len(in_backup)} seen message ids" in out

    code, out, err = await _larkbot(
        "state", "inspect", "--json", env={"LARKBOT_STATE_DIR": str(fresh_dir)}
    )
    assert code == 0, err
    inventory = json.loads(out)
    assert inventory["store"] == "sqlite"
    assert inventory["seen"] == len(in_backup)
    assert inventory["conversations"] is None
    assert inventory["processes"] == []

    async with SqliteStore.open(fresh_dir) as restored:
        for chat, _, message_id in taken.sent:
            admitted = await restored.admit(inbound(chat, message_id=message_id))
            assert admitted is (message_id not in in_backup), message_id


async def test_pending_messages_of_a_backup_are_answered_after_a_restore(tmp_path: Path) -> None:
    """Acked but unanswered when the backup was taken: the daemon started on the restored
    state answers them once."""
    source_dir, fresh_dir = tmp_path / "crashed", tmp_path / "restored"
    backup = tmp_path / "backup.sqlite3"
    async with LarkStandIn() as lark:
        slow = EchoAgent(delay=60)
        settings = await settings_for(lark, state_dir=source_dir)
        async with running_daemon(settings, slow) as daemon:
            pending = [await lark.send_text(f"slow {n}", chat_id=f"oc_p{n}") for n in range(3)]
            await _wait_for(lambda: len(slow.seen) == 3, within=15)
            code, out, err = await _larkbot(
                "state", "backup", str(backup), env={"LARKBOT_STATE_DIR": str(source_dir)}
            )
            assert code == 0, err
            assert "(3 pending)" in out
            daemon.stop_now()
        assert lark.replies == []

        code, out, err = await _larkbot(
            "state", "restore", str(backup), env={"LARKBOT_STATE_DIR": str(fresh_dir)}
        )
        assert code == 0, err
        assert "3 pending item(s) will be answered" in out

        agent = EchoAgent()
        async with running_daemon(await settings_for(lark, state_dir=fresh_dir), agent):
            await _wait_for(lambda: len(lark.replies) == 3, within=15)
    assert sorted(r.to_message_id or "" for r in lark.replies) == sorted(pending)


async def test_restore_refuses_while_a_daemon_has_the_state_open(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    backup = tmp_path / "backup.sqlite3"
    env = {"LARKBOT_STATE_DIR": str(state_dir)}
    async with SqliteStore.open(state_dir) as store:
        assert await store.admit(inbound("oc_a", message_id="om_before"))
        code, _, err = await _larkbot("state", "backup", str(backup), env=env)
        assert code == 0, err

        code, out, err = await _larkbot("state", "restore", str(backup), env=env)
        assert code == 78
        assert out == ""
        line = _one_sentence(err)
        assert f"pid {os.getpid()}" in line
        assert "--force" in line and "stop it first" in line

        code, out, err = await _larkbot("state", "inspect", env=env)
        assert code == 0, err
        assert _fields(out)["processes"] == str(os.getpid())

        code, out, err = await _larkbot("state", "restore", "--force", str(backup), env=env)
        assert code == 0, err
        assert "0 inbox items" in out and "1 kept" in out


async def test_restore_replace_drops_what_was_there(tmp_path: Path) -> None:
    old_dir, state_dir = tmp_path / "old", tmp_path / "state"
    backup = tmp_path / "backup.sqlite3"
    async with SqliteStore.open(old_dir) as old:
        assert await old.admit(inbound("oc_a", message_id="om_old"))
    code, _, err = await _larkbot(
        "state", "backup", str(backup), env={"LARKBOT_STATE_DIR": str(old_dir)}
    )
    assert code == 0, err
    async with SqliteStore.open(state_dir) as store:
        assert await store.admit(inbound("oc_a", message_id="om_newer"))
        await store.mark_done("om_newer")
    env = {"LARKBOT_STATE_DIR": str(state_dir)}
    code, out, err = await _larkbot("state", "restore", "--replace", "--json", str(backup), env=env)
    assert code == 0, err
    assert json.loads(out) == {
        "store": "sqlite",
        "location": str(state_dir),
        "seen_added": 1,
        "inbox_added": 1,
        "inbox_kept": 0,
        "pending_to_resume": 1,
        "replaced": True,
    }
    async with SqliteStore.open(state_dir) as store:
        assert not await store.admit(inbound("oc_a", message_id="om_old"))
        assert await store.admit(inbound("oc_a", message_id="om_newer"))


async def test_state_errors_are_one_sentence_with_exit_78(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    env = {"LARKBOT_STATE_DIR": str(empty)}
    junk = tmp_path / "junk.txt"
    junk.write_text("not a backup\n")
    redis_backup = tmp_path / "redis.jsonl"
    redis_backup.write_text('{"format": "larkbot-redis-state", "version": 1}\n')
    other_db = tmp_path / "other.sqlite3"
    with sqlite3.connect(other_db) as db:
        db.execute("CREATE TABLE t (x)")

    cases = [
        (("state", "inspect"), env, "there is no larkbot state in"),
        (("state", "backup", str(tmp_path / "b")), env, "there is no larkbot state in"),
        (("state", "restore", str(tmp_path / "missing")), env, "cannot read the backup"),
        (("state", "restore", str(junk)), env, "is not a larkbot state backup"),
        (("state", "restore", str(redis_backup)), env, "LARKBOT_STORE=redis"),
        (("state", "restore", str(other_db)), env, "but not larkbot state"),
        (("state", "inspect"), {"LARKBOT_STORE": "memory"}, "store = memory keeps no state"),
        (("state", "inspect"), {"LARKBOT_STORE": "redis"}, "needs a Redis URL"),
        (("state", "inspect"), {"REDIS_URL": "http://x"}, "has scheme 'http'"),
    ]
    for args, case_env, words in cases:
        code, out, err = await _larkbot(*args, env=case_env)
        assert (code, out) == (78, ""), (args, err)
        line = _one_sentence(err)
        assert words in line, (args, line)
        assert line.endswith(".")
    assert not empty.exists(), "inspect and backup must not create a state directory"

    async with SqliteStore.open(empty):
        pass
    code, _, err = await _larkbot("state", "backup", str(tmp_path / "no" / "dir" / "b"), env=env)
    assert code == 78
    assert "cannot write the backup" in _one_sentence(err)


# --- Redis -------------------------------------------------------------------------------------


def _redis_env(server: RedisServer) -> dict[str, str]:
    return {"REDIS_URL": server.url}


class _TurnAgent:
    """Answers ``echo: <text>`` and records both turns, as the assistant does."""

    async def respond(self, message: InboundMessage, conversation: Conversation) -> Reply:
        answer = f"echo: {message.text}"
        conversation.add("user", message.text, 10_000)
        conversation.add("assistant", answer, 10_000)
        return Reply(answer)


async def _turns(store: RedisStore, chat: str) -> list[tuple[str, str]]:
    return [(turn.role, turn.text) for turn in await store.history(chat)]


@pytest.fixture
async def two_redis(tmp_path: Path) -> AsyncIterator[tuple[RedisServer, RedisServer]]:
    async with (
        redis_server(tmp_path / "redis-a") as first,
        redis_server(tmp_path / "redis-b") as second,
    ):
        yield first, second


@requires_redis
async def test_redis_backup_while_the_daemon_answers_restores_duplicates_and_conversations(
    tmp_path: Path, two_redis: tuple[RedisServer, RedisServer]
) -> None:
    """Backup mid-load on the Redis a daemon answers from, restore into an empty Redis:
    every message the backup holds is a duplicate there, each conversation is a consistent
    prefix of the original, and what was still queued is queued again."""
    source, target = two_redis
    backup = tmp_path / "redis-backup.jsonl"
    chats = [f"oc_redis_{n}" for n in range(12)]
    async with (
        LarkStandIn() as lark,
        RedisStore.open(source.url, command_timeout=10, max_turns=10_000) as store,
    ):
        settings = await settings_for(
            lark,
            REDIS_URL=source.url,
            LARKBOT_STORE="redis",
            LARKBOT_AGENT__MAX_CONVERSATION_HISTORY="10000",
        )
        async with running_daemon(settings, _TurnAgent()):
            env = _redis_env(source)
            taken = await _backup_while_sending(lark, chats, backup, env, replies_first=40)
            assert taken.code == 0, taken.err
            assert taken.sent_during > 0, "the backup should run while messages arrive"
            sent = taken.sent
            await _wait_for(lambda: len(lark.replies) >= len(sent), within=60)
            await _wait_for_empty_backlog(store)
            originals = {chat: await _turns(store, chat) for chat in chats}

            code, out, err = await _larkbot("state", "inspect", env=_redis_env(source))
            assert code == 0, err
            assert len(_fields(out)["replicas"].split()) == 1
            code, out, err = await _larkbot("state", "restore", str(backup), env=_redis_env(source))
            assert code == 78
            assert "replica(s) are running" in _one_sentence(err)
            assert out == ""

    assert backup.stat().st_mode & 0o077 == 0
    code, out, err = await _larkbot("state", "restore", str(backup), env=_redis_env(target))
    assert code == 0, err
    assert out.startswith("restored ") and out.count("\n") == 1

    async with RedisStore.open(target.url, command_timeout=10, max_turns=10_000) as restored:
        known: set[str] = set()
        for chat, text, message_id in sent:
            message = inbound(chat, text, message_id=message_id)
            if not (await restored.intake(message)).new:
                known.add(message_id)
        # Everything acked before the backup began is known to the restored store.
        assert taken.acked_before <= known
        assert len(known) < len(sent), "messages after the backup are new there"
        ids_by_text = {(chat, text): message_id for chat, text, message_id in sent}
        for chat in chats:
            turns = await _turns(restored, chat)
            # A consistent cut: a prefix of the final conversation, and every message whose
            # turns it holds is known (a re-delivery would not be answered again).
            assert turns == originals[chat][: len(turns)]
            for role, text in turns:
                if role == "user":
                    assert ids_by_text[(chat, text)] in known

        code, out, err = await _larkbot("state", "inspect", "--json", env=_redis_env(target))
        assert code == 0, err
        inventory = json.loads(out)
        assert inventory["store"] == "redis"
        assert inventory["conversations"] == len(chats)
        assert inventory["processes"] == []
        assert inventory["pending"] == sum(q.length for q in await restored.backlog())


async def _wait_for_empty_backlog(store: RedisStore) -> None:
    with anyio.fail_after(60):
        while sum(q.length for q in await store.backlog()):  # noqa: ASYNC110
            await anyio.sleep(0.05)


@requires_redis
async def test_redis_state_errors(tmp_path: Path) -> None:
    async with redis_server(tmp_path / "redis") as server:
        env = _redis_env(server)
        sqlite_backup = tmp_path / "sqlite-backup"
        async with SqliteStore.open(tmp_path / "state"):
            pass
        code, _, err = await _larkbot(
            "state",
            "backup",
            str(sqlite_backup),
            env={"LARKBOT_STATE_DIR": str(tmp_path / "state")},
        )
        assert code == 0, err
        code, out, err = await _larkbot("state", "restore", str(sqlite_backup), env=env)
        assert (code, out) == (78, "")
        assert "LARKBOT_STORE=sqlite" in _one_sentence(err)

        other = tmp_path / "other.jsonl"
        sixteen = {"LARKBOT_STORE__PARTITIONS": "16", "LARKBOT_STORE__REDIS_PREFIX": "other"}
        code, _, err = await _larkbot("state", "backup", str(other), env={**env, **sixteen})
        assert code == 0, err
        code, out, err = await _larkbot("state", "restore", str(other), env=env)
        assert (code, out) == (78, "")
        assert "restore with the same partition count" in _one_sentence(err)

        # The deployment under the default prefix has 64 partitions now (the restore above
        # recorded its layout): counting it with 16 would be wrong.
        code, out, err = await _larkbot(
            "state", "inspect", env={**env, "LARKBOT_STORE__PARTITIONS": "16"}
        )
        assert (code, out) == (78, "")
        assert "use the same partition count on every replica" in _one_sentence(err)

        code, _, err = await _larkbot(
            "state", "inspect", env={"REDIS_URL": "redis://127.0.0.1:1/0"}
        )
        assert code == 1
        assert "Redis at redis://127.0.0.1:1/0" in _one_sentence(err)


@requires_redis
async def test_a_busy_partition_is_read_in_one_script_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback for a partition that kept changing dumps what the MULTI/EXEC read
    dumps: every key of the partition, the lease left out, the epoch as a number."""
    async with redis_server(tmp_path / "redis") as server, RedisStore.open(server.url) as store:
        client, keys = store._client, store.keys
        await store.intake_many([inbound("oc_busy", f"m{n}") for n in range(5)])
        partition = keys.partition_of("oc_busy")
        await client.incr(keys.epoch(partition))
        await client.set(keys.lease(partition), "replica|1", px=60_000)
        await client.rpush(keys.conversation(partition, "oc_busy"), '{"role": "user"}')
        names = [name.decode() async for name in client.scan_iter(match=f"{keys.tag(partition)}:*")]
        names.remove(keys.lease(partition))
        listed, _ = await _admin._dump_partition(client, keys, partition, names)
        monkeypatch.setattr(_admin, "_OPTIMISTIC_TRIES", 0)
        atomic = await _admin._consistent_partition(client, keys, partition, [], None)

    def records(lines: list[str]) -> dict[str, dict[str, object]]:
        return {record["key"]: record for record in map(json.loads, lines)}

    assert len(listed) == 5 + 1 + 1 + 1  # seen markers, stream, epoch, conversation
    by_script, by_multi = records(atomic), records(listed)
    assert by_script.keys() == by_multi.keys()
    for key, record in by_script.items():
        other = by_multi[key]
        assert (record.get("dump"), record.get("counter")) == (
            other.get("dump"),
            other.get("counter"),
        )
        # Each read computes the expiry from its own clock reading: equal within a few ms.
        if record["expire_at_ms"] is None:
            assert other["expire_at_ms"] is None
        else:
            assert abs(int(record["expire_at_ms"]) - int(other["expire_at_ms"])) < 100
    assert by_script[keys.epoch(partition)]["counter"] == 1


@requires_redis
async def test_a_message_answered_after_the_key_listing_is_in_the_backup(tmp_path: Path) -> None:
    """Regression: a backup listed the keys first and read them later, so a message taken
    in and answered in between left its turns in the backup without its seen marker."""
    async with redis_server(tmp_path / "redis") as server, RedisStore.open(server.url) as store:
        client, keys = store._client, store.keys
        chat = "oc_cut"
        partition = keys.partition_of(chat)
        await store.intake(inbound(chat, "before the listing"))
        marks = await _admin._stream_marks(client, keys, [partition])
        listed = [
            name.decode() async for name in client.scan_iter(match=f"{keys.tag(partition)}:*")
        ]
        late = inbound(chat, "after the listing")
        await store.intake(late)
        ownership = PartitionOwnership(store, owner="replica", lease_ttl=5, tick=0.25)
        async with anyio.create_task_group() as tg:
            await tg.start(ownership.run)
            with anyio.fail_after(15):
                async for item in ownership.items:
                    await ownership.finish(
                        item, FinishChange(user_text=item.message.text, answer_text="ok")
                    )
                    if item.message.message_id == late.message_id:
                        break
            tg.cancel_scope.cancel()
        lines = await _admin._consistent_partition(
            client, keys, partition, listed, marks[partition]
        )
    backed_up = {json.loads(line)["key"] for line in lines}
    assert keys.seen(partition, late.message_id) in backed_up
    assert keys.done(partition, late.message_id) in backed_up
    assert keys.conversation(partition, chat) in backed_up
