"""The daemon on ``store.backend = redis``, in process, against a real redis-server.

The multi-process drills (kill -9, SIGSTOP, a Redis outage, shared limits) are in
``test_redis_replicas.py``; these check each step of the Redis path on one replica.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, ClassVar

import anyio
import httpx
import pytest

from larkbot.agent.i18n import translate
from larkbot.config import Settings, load_settings
from larkbot.core.agent import Reply
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.ops.startup import startup_banner
from larkbot.store.redis import ConversationChange, MessageState, RedisStore, SharedRateLimiter
from larkbot.store.redis._keys import GROUP
from larkbot.testing import LarkStandIn
from tests._daemon import EchoAgent, running_daemon, settings_for
from tests._factories import inbound
from tests._redis import RedisServer, requires_redis

pytestmark = [pytest.mark.anyio, requires_redis]


@pytest.fixture
async def lark() -> AsyncIterator[LarkStandIn]:
    """A bare Lark stand-in: these tests need no workspace behind it."""
    async with LarkStandIn() as stand_in:
        yield stand_in


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    """A store on ``server`` beside the daemon's, to set up and read what the daemon shares."""
    async with RedisStore.open(redis_server.url) as opened:
        yield opened


async def redis_settings(lark: LarkStandIn, server: RedisServer, **env: str) -> Settings:
    values = {
        "REDIS_URL": server.url,
        "LARKBOT_STORE": "redis",
        "LARKBOT_STORE__LEASE_SECONDS": "3",
        **env,
    }
    return await settings_for(lark, **values)


class HistoryAgent:
    """Answers ``n=<turns it was shown>: <text>`` and records both turns, as the assistant does."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def respond(self, message: InboundMessage, conversation: Conversation) -> Reply:
        self.seen.append(message.message_id)
        answer = f"n={len(conversation.turns)}: {message.text}"
        if message.text == "reset":
            conversation.turns.clear()
            return Reply("cleared")
        if message.text.startswith("lang "):
            conversation.language = message.text.removeprefix("lang ")  # type: ignore[assignment]
            return Reply("ok")
        conversation.add("user", message.text, 50)
        conversation.add("assistant", answer, 50)
        return Reply(answer)


def texts_by_chat(lark: LarkStandIn) -> dict[str, list[str]]:
    replies: dict[str, list[str]] = defaultdict(list)
    for reply in lark.replies:
        replies[str(reply.chat_id)].append(str(reply.content.get("text")))
    return replies


async def test_messages_are_queued_in_redis_answered_in_order_and_remembered(
    redis_server: RedisServer,
) -> None:
    agent = HistoryAgent()
    async with LarkStandIn() as lark:
        settings = await redis_settings(lark, redis_server)
        async with running_daemon(settings, agent), RedisStore.open(redis_server.url) as store:
            sent: dict[str, list[str]] = defaultdict(list)
            for n in range(5):
                for chat in ("oc_a", "oc_b", "oc_c"):
                    await lark.send_text(f"{chat} {n}", chat_id=chat)
                    sent[chat].append(f"{chat} {n}")
            await lark.wait_for(lambda: len(lark.replies) == 15, timeout=20)
            # Each chat in order, and each answer saw the history of the ones before it.
            for chat, texts in sent.items():
                expected = [f"n={2 * i}: {text}" for i, text in enumerate(texts)]
                assert texts_by_chat(lark)[chat] == expected
            assert all(ack.code == 200 for ack in lark.acks)
            await _wait_drained(store)  # each finish comes just after its post
            history = await store.history("oc_a")
            assert [t.text for t in history][:2] == ["oc_a 0", "n=0: oc_a 0"]
            assert len(history) == 10
            # A re-delivery with a new event id is a duplicate, whichever replica it meets.
            first, chat = lark.replies[0].to_message_id, lark.replies[0].chat_id
            assert first is not None and chat is not None
            await lark.redeliver(first, new_event_id=True)
            await lark.wait_for(lambda: len(lark.acks) == 16)
            await anyio.sleep(0.3)  # a wrong second answer would show up by now
            assert len(lark.replies) == 15
            assert lark.acks[-1].code == 200
            assert await store.message_state(chat, first) is MessageState.DONE


async def test_reset_and_language_changes_reach_the_shared_history(
    redis_server: RedisServer,
) -> None:
    async with LarkStandIn() as lark:
        settings = await redis_settings(lark, redis_server)
        async with running_daemon(settings, HistoryAgent()), RedisStore.open(redis_server.url) as s:
            for text in ("one", "two", "reset", "three", "lang en"):
                await lark.send_text(text, chat_id="oc_r")
            await lark.wait_for(lambda: len(lark.replies) == 5, timeout=20)
            await _wait_drained(s)
            conversation = await s.conversation("oc_r")
    assert [t.text for t in conversation.turns] == ["three", "n=0: three"]
    assert conversation.language == "en"


async def test_an_answer_generated_by_a_previous_owner_is_sent_not_regenerated(
    redis_server: RedisServer, lark: LarkStandIn, store: RedisStore
) -> None:
    agent = EchoAgent()
    # What a replica left behind when it died between caching its answer and finishing.
    message = inbound("oc_cached", text="question")
    await store.intake(message)
    change = ConversationChange(user_text="question", answer_text="the cached answer")
    await store.put_answer(message.chat_id, message.message_id, "the cached answer", change=change)
    async with running_daemon(await redis_settings(lark, redis_server), agent):
        await lark.wait_for(lambda: len(lark.replies) == 1, timeout=20)
        await _wait_done(store, message)  # the finish comes just after the post
        history = await store.history("oc_cached")
    assert lark.replies[0].content == {"text": "the cached answer"}
    assert lark.replies[0].to_message_id == message.message_id
    assert agent.seen == []
    assert [t.text for t in history] == ["question", "the cached answer"]


async def test_a_message_delivered_too_often_gets_an_apology(
    redis_server: RedisServer, lark: LarkStandIn, store: RedisStore
) -> None:
    message = inbound("oc_poison", text="crash me")
    await store.intake(message)
    stream = store.keys.stream(store.keys.partition_of(message.chat_id))
    # Handed out six times to replicas that all died before finishing it.
    client: Any = store._client
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    entries = await client.xreadgroup(GROUP, "dead-replica", {stream: ">"}, count=1)
    entry_id = _first_entry_id(entries)
    await client.xclaim(stream, GROUP, "dead-replica", 0, [entry_id], retrycount=6)
    agent = EchoAgent()
    async with running_daemon(await redis_settings(lark, redis_server), agent):
        await lark.wait_for(lambda: len(lark.replies) == 1, timeout=20)
    assert agent.seen == []
    assert lark.replies[0].content == {"text": translate("error", "en")}
    assert lark.replies[0].to_message_id == message.message_id
    assert await client.xlen(store.keys.dead_letters(store.keys.partition_of("oc_poison")))


async def test_redis_down_refuses_acks_and_readyz_says_why(redis_server: RedisServer) -> None:
    async with LarkStandIn() as lark:
        settings = await redis_settings(lark, redis_server)
        async with running_daemon(settings, EchoAgent()) as daemon:
            await redis_server.stop()
            await lark.send_text("while Redis is down", chat_id="oc_down")
            await lark.wait_for(lambda: len(lark.acks) == 1, timeout=5)
            assert lark.acks[0].code != 200
            url = f"http://127.0.0.1:{daemon.ops_port}/readyz"
            async with httpx.AsyncClient() as http:
                with anyio.fail_after(5):
                    while (ready := await http.get(url)).status_code == 200:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                assert ready.status_code == 503
                assert ready.json()["store_reachable"] is False
                await redis_server.start()
                with anyio.fail_after(10):
                    while (await http.get(url)).status_code != 200:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
            message_id = lark.acks[0].chat_message_id
            assert message_id is not None
            await lark.redeliver(message_id, new_event_id=True)
            await lark.wait_for(lambda: len(lark.replies) == 1, timeout=20)
            assert lark.replies[0].to_message_id == message_id


async def _wait_done(store: RedisStore, message: InboundMessage, timeout: float = 10) -> None:  # noqa: ASYNC109
    with anyio.fail_after(timeout):
        while (  # noqa: ASYNC110
            await store.message_state(message.chat_id, message.message_id) is not MessageState.DONE
        ):
            await anyio.sleep(0.02)


async def _wait_drained(store: RedisStore, timeout: float = 10) -> None:  # noqa: ASYNC109
    """Wait until no partition holds an unfinished message."""
    with anyio.fail_after(timeout):
        while sum(p.length for p in await store.backlog()):  # noqa: ASYNC110
            await anyio.sleep(0.02)


def _first_entry_id(reply: Any) -> str:
    streams = reply.values() if isinstance(reply, dict) else [entry[1] for entry in reply]
    for entries in streams:
        first = entries[0] if not isinstance(entries[0], list) else entries[0][0]
        entry_id = first[0] if isinstance(first, list | tuple) else first
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    raise AssertionError("no entry was read")


class HeldAgent:
    """Echoes; its first answer waits until the test releases it (a long LLM call)."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.seen: list[str] = []

    async def respond(self, message: InboundMessage, conversation: Conversation) -> Reply:
        self.seen.append(message.text)
        if len(self.seen) == 1:
            await self.release.wait()
        return Reply(f"echo: {message.text}")


async def test_a_partition_lost_and_taken_back_still_answers_its_chat_in_order(
    redis_server: RedisServer, lark: LarkStandIn, store: RedisStore
) -> None:
    # Regression: after the lease lapsed (Redis frozen past it) and the replica took the
    # partition back, the chat's messages sat in dispatch twice (read under each lease),
    # and an old entry answered with the newer read: the second message before the first.
    agent = HeldAgent()
    chat = "oc_order"
    settings = await redis_settings(lark, redis_server, LARKBOT_STORE__LEASE_SECONDS="2")
    partition = store.keys.partition_of(chat)
    # A first intake slower than its 0.5 s bound (a fresh Redis on a busy machine) is
    # refused; the platform delivers it again, and so does the stand-in here.
    lark.redeliver_after = 0.5
    async with running_daemon(settings, agent) as daemon:
        sent = []
        for n in range(4):
            sent.append(await lark.send_text(f"m{n}", chat_id=chat))
            await lark.wait_accepted(sent[-1], timeout=5)
        await lark.wait_for(lambda: agent.seen == ["m0"], timeout=10)
        epoch = int(await store._client.get(store.keys.epoch(partition)))
        redis_server.freeze()
        await anyio.sleep(4)  # twice the lease
        redis_server.thaw()
        with anyio.fail_after(15):
            while int(await store._client.get(store.keys.epoch(partition))) == epoch:  # noqa: ASYNC110
                await anyio.sleep(0.1)
            # Read again under the new lease: three old entries wait, and four new ones.
            assert daemon._parts is not None and daemon._parts.shared is not None
            work = daemon._parts.shared.work
            while len(work) < 7:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        agent.release.set()
        await lark.wait_for(lambda: len(lark.replies) == 4, timeout=20)
        await anyio.sleep(0.5)  # a wrong extra answer would show up by now
        history = await store.history(chat)
    assert [r.to_message_id for r in lark.replies] == sent
    assert [r.content["text"] for r in lark.replies] == [f"echo: m{n}" for n in range(4)]
    assert agent.seen[0] == "m0" and agent.seen[-4:] == ["m0", "m1", "m2", "m3"]
    assert history == []  # EchoAgent records no turns; nothing else did either


async def test_a_message_that_waited_past_the_stale_cutoff_is_settled_unanswered(
    redis_server: RedisServer, lark: LarkStandIn, store: RedisStore
) -> None:
    agent = EchoAgent()
    old = inbound("oc_stale", text="from before the outage")
    old = old.model_copy(update={"created_at": old.created_at - timedelta(hours=2)})
    fresh = inbound("oc_stale", text="fresh")
    await store.intake_many([old, fresh])
    async with running_daemon(await redis_settings(lark, redis_server), agent):
        await lark.wait_for(lambda: len(lark.replies) == 1, timeout=20)
        await _wait_done(store, old)
    assert [m.message_id for m in agent.seen] == [fresh.message_id]
    assert lark.replies[0].to_message_id == fresh.message_id


async def test_limits_are_counted_once_for_all_replicas(redis_server: RedisServer) -> None:
    async with RedisStore.open(redis_server.url) as one, RedisStore.open(redis_server.url) as two:
        replicas = [SharedRateLimiter(one, "write", 3), SharedRateLimiter(two, "write", 3)]
        waits = [await replicas[n % 2].acquire("ou_writer") for n in range(5)]
        other_user = await replicas[1].acquire("ou_someone_else")
        await redis_server.stop()
        while_down = await replicas[0].acquire("ou_writer")
    assert waits[:3] == [None, None, None]
    assert all(wait is not None and 0 < wait <= 60 for wait in waits[3:])
    assert other_user is None
    assert while_down is None  # a limit Redis cannot check lets the call through


async def test_metrics_show_redis_up_and_every_partitions_backlog(
    redis_server: RedisServer,
) -> None:
    async with LarkStandIn() as lark:
        settings = await redis_settings(lark, redis_server, LARKBOT_STORE__PARTITIONS="8")
        async with running_daemon(settings, EchoAgent()) as daemon, httpx.AsyncClient() as http:
            body = (await http.get(f"http://127.0.0.1:{daemon.ops_port}/metrics")).text
    assert "larkbot_redis_up 1.0" in body
    for partition in range(8):
        assert f'larkbot_redis_backlog{{partition="{partition}"}}' in body
        assert f'larkbot_redis_oldest_pending_age_seconds{{partition="{partition}"}}' in body


async def test_the_start_up_line_names_redis_and_never_its_password() -> None:
    env = {
        "APP_ID": "cli_a1b2c3d4e5f6",
        "APP_SECRET": "abcdefghijklmnopqrstuvwxyz123456",
        "REDIS_URL": "redis://:s3cret-pass@redis.internal:6379/0",
    }
    settings = await anyio.to_thread.run_sync(lambda: load_settings(None, env=env))
    banner = startup_banner(settings, env)
    assert "state in Redis (prefix lb, 64 partitions)" in banner
    assert "s3cret" not in banner and "redis.internal" not in banner


class CardAgent:
    """Answers with a card (as a write confirmation does), its text for the history."""

    CARD: ClassVar[dict[str, Any]] = {
        "schema": "2.0",
        "body": {"elements": [{"tag": "markdown", "content": "Approve the change?"}]},
    }

    async def respond(self, message: InboundMessage, conversation: Conversation) -> Reply:
        conversation.add("user", message.text, 50)
        conversation.add("assistant", "asked for approval", 50)
        return Reply("asked for approval", card=self.CARD)


async def test_a_card_answer_is_kept_with_the_cached_answer_and_sent_as_the_card(
    redis_server: RedisServer, lark: LarkStandIn, store: RedisStore
) -> None:
    async with running_daemon(await redis_settings(lark, redis_server), CardAgent()):
        message_id = await lark.send_text("add a record", chat_id="oc_card")
        await lark.wait_for(lambda: len(lark.replies) == 1, timeout=20)
        await _wait_drained(store)
    history = await store.history("oc_card")
    # What a next owner would have found, had this one died before finishing.
    message = inbound("oc_card", text="again")
    cached = await store.put_answer(
        message.chat_id, message.message_id, "asked", card=CardAgent.CARD
    )
    assert lark.replies[0].to_message_id == message_id
    assert lark.replies[0].msg_type == "interactive"
    assert lark.replies[0].content == CardAgent.CARD
    assert [t.text for t in history] == ["add a record", "asked for approval"]
    assert cached.card == CardAgent.CARD
