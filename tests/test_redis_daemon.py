"""The daemon on ``store.backend = redis``, in process, against a real redis-server.

The multi-process drills (kill -9, SIGSTOP, a Redis outage, shared limits) are in
``test_redis_replicas.py``; these check each step of the Redis path on one replica.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from larkbot.agent.i18n import translate
from larkbot.config import Settings
from larkbot.core.agent import Reply
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.store.redis import ConversationChange, MessageState, RedisStore
from larkbot.store.redis._keys import GROUP
from larkbot.testing import LarkStandIn
from tests._daemon import EchoAgent, running_daemon, settings_for
from tests._factories import inbound
from tests._redis import RedisServer, redis_server, requires_redis

pytestmark = [pytest.mark.anyio, requires_redis]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    async with redis_server(tmp_path / "redis") as running:
        yield running


async def redis_settings(lark: LarkStandIn, server: RedisServer, **env: str) -> Settings:
    return await settings_for(
        lark,
        REDIS_URL=server.url,
        LARKBOT_STORE="redis",
        LARKBOT_STORE__LEASE_SECONDS="3",
        **env,
    )


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
    server: RedisServer,
) -> None:
    agent = HistoryAgent()
    async with LarkStandIn() as lark:
        settings = await redis_settings(lark, server)
        async with running_daemon(settings, agent), RedisStore.open(server.url) as store:
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
            history = await store.history("oc_a")
            assert [t.text for t in history][:2] == ["oc_a 0", "n=0: oc_a 0"]
            assert len(history) == 10
            backlog = await store.backlog()
            assert sum(p.length for p in backlog) == 0, backlog
            # A re-delivery with a new event id is a duplicate, whichever replica it meets.
            first, chat = lark.replies[0].to_message_id, lark.replies[0].chat_id
            assert first is not None and chat is not None
            await lark.redeliver(first, new_event_id=True)
            await lark.wait_for(lambda: len(lark.acks) == 16)
            await anyio.sleep(0.3)  # a wrong second answer would show up by now
            assert len(lark.replies) == 15
            assert lark.acks[-1].code == 200
            assert await store.message_state(chat, first) is MessageState.DONE


async def test_reset_and_language_changes_reach_the_shared_history(server: RedisServer) -> None:
    async with LarkStandIn() as lark:
        settings = await redis_settings(lark, server)
        async with running_daemon(settings, HistoryAgent()), RedisStore.open(server.url) as s:
            for text in ("one", "two", "reset", "three", "lang en"):
                await lark.send_text(text, chat_id="oc_r")
            await lark.wait_for(lambda: len(lark.replies) == 5, timeout=20)
            conversation = await s.conversation("oc_r")
    assert [t.text for t in conversation.turns] == ["three", "n=0: three"]
    assert conversation.language == "en"


async def test_an_answer_generated_by_a_previous_owner_is_sent_not_regenerated(
    server: RedisServer,
) -> None:
    agent = EchoAgent()
    async with LarkStandIn() as lark, RedisStore.open(server.url) as store:
        # What a replica left behind when it died between caching its answer and finishing.
        message = inbound("oc_cached", text="question")
        await store.intake(message)
        change = ConversationChange(user_text="question", answer_text="the cached answer")
        await store.put_answer(
            message.chat_id, message.message_id, "the cached answer", change=change
        )
        async with running_daemon(await redis_settings(lark, server), agent):
            await lark.wait_for(lambda: len(lark.replies) == 1, timeout=20)
            await lark.wait_for(lambda: agent.seen == [] and bool(lark.replies))
            history = await store.history("oc_cached")
    assert lark.replies[0].content == {"text": "the cached answer"}
    assert lark.replies[0].to_message_id == message.message_id
    assert agent.seen == []
    assert [t.text for t in history] == ["question", "the cached answer"]


async def test_a_message_delivered_too_often_gets_an_apology(server: RedisServer) -> None:
    async with LarkStandIn() as lark, RedisStore.open(server.url) as store:
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
        async with running_daemon(await redis_settings(lark, server), agent):
            await lark.wait_for(lambda: len(lark.replies) == 1, timeout=20)
        assert agent.seen == []
        assert lark.replies[0].content == {"text": translate("error", "en")}
        assert lark.replies[0].to_message_id == message.message_id
        assert await client.xlen(store.keys.dead_letters(store.keys.partition_of("oc_poison")))


async def test_redis_down_refuses_acks_and_readyz_says_why(server: RedisServer) -> None:
    async with LarkStandIn() as lark:
        settings = await redis_settings(lark, server)
        async with running_daemon(settings, EchoAgent()) as daemon:
            await server.stop()
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
                await server.start()
                with anyio.fail_after(10):
                    while (await http.get(url)).status_code != 200:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
            message_id = lark.acks[0].chat_message_id
            assert message_id is not None
            await lark.redeliver(message_id, new_event_id=True)
            await lark.wait_for(lambda: len(lark.replies) == 1, timeout=20)
            assert lark.replies[0].to_message_id == message_id


def _first_entry_id(reply: Any) -> str:
    streams = reply.values() if isinstance(reply, dict) else [entry[1] for entry in reply]
    for entries in streams:
        first = entries[0] if not isinstance(entries[0], list) else entries[0][0]
        entry_id = first[0] if isinstance(first, list | tuple) else first
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    raise AssertionError("no entry was read")
