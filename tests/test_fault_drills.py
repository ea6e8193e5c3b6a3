"""Fault drills: the platform and the process misbehave, and every message is answered once.

Each drill runs the real daemon against the real local Lark with a durable SQLite state
directory, and ends on the same check, read from the stand-in's records: exactly one
reply per user message, the uuid-suppressed posts the drill expects (a suppressed post
means the daemon tried to answer twice), and no reply to anything else.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import anyio
import pytest

from larkbot.core.agent import Reply
from larkbot.core.frames import ACK_OVERLOADED
from larkbot.lark.client import LarkClient
from larkbot.ops import metrics
from larkbot.reply._posting import ReplyPoster
from larkbot.store import InboxStatus, open_store
from larkbot.testing import LarkStandIn
from tests._daemon import EchoAgent, assert_answered_once, running_daemon, settings_for, settled
from tests._factories import REPLY_ROUTE, inbound
from tests._proc import larkbot_process, llm_env, needs_llm, reply_text, slow_llm

pytestmark = pytest.mark.anyio


def _gauge(name: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name)


def _minutes_ago_ms(minutes: float) -> int:
    return int((time.time() - minutes * 60) * 1000)


async def test_drill_redelivery_same_event_id(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, tmp_path)
        async with running_daemon(settings, EchoAgent()) as daemon:
            message_id = await lark.send_text("hello")
            await lark.wait_for(lambda: len(lark.replies) == 1)
            await lark.redeliver(message_id)
            await lark.redeliver(message_id)
            await settled(lark, daemon, acks=3)
        assert [a.code for a in lark.acks] == [200, 200, 200]
        assert len({a.event_id for a in lark.acks}) == 1
        assert_answered_once(lark, [message_id])


async def test_drill_redelivery_new_event_id(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, tmp_path)
        agent = EchoAgent(held=True)
        async with running_daemon(settings, agent) as daemon:
            message_id = await lark.send_text("hello")
            # One re-delivery while the first answer is still being produced, one after.
            await lark.wait_for(lambda: agent.thinking == 1)
            await lark.redeliver(message_id, new_event_id=True)
            await lark.wait_for(lambda: len(lark.acks) == 2)
            agent.release()
            await lark.wait_for(lambda: len(lark.replies) == 1)
            await lark.redeliver(message_id, new_event_id=True)
            await settled(lark, daemon, acks=3)
        assert len({a.event_id for a in lark.acks}) == 3
        assert_answered_once(lark, [message_id])


async def test_drill_restart_then_redelivery(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, tmp_path)
        async with running_daemon(settings, EchoAgent()):
            message_id = await lark.send_text("before the restart")
            await lark.wait_for(lambda: len(lark.replies) == 1)
        await lark.wait_for(lambda: lark.connections == 0)
        agent = EchoAgent()
        async with running_daemon(settings, agent) as daemon:
            await lark.redeliver(message_id)
            await lark.redeliver(message_id, new_event_id=True)
            fresh = await lark.send_text("after the restart")
            await settled(lark, daemon, acks=4)
            await lark.wait_for(lambda: len(lark.replies) == 2)
        assert [m.message_id for m in agent.seen] == [fresh]
        assert_answered_once(lark, [message_id, fresh])


async def test_drill_stale_message_after_downtime(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, tmp_path)
        agent = EchoAgent()
        async with anyio.create_task_group() as tg:
            # The platform holds these while the daemon is down and delivers them on connect.
            tg.start_soon(lambda: lark.send_text("too old", create_time_ms=_minutes_ago_ms(40)))
            async with running_daemon(settings, agent) as daemon:
                await lark.wait_for(lambda: len(lark.acks) == 1)
                recent = await lark.send_text("recent", create_time_ms=_minutes_ago_ms(29))
                await settled(lark, daemon, acks=2)
                await lark.wait_for(lambda: len(lark.replies) == 1)
        stale = lark.acks[0].chat_message_id
        assert stale is not None and lark.acks[0].code == 200
        assert [m.message_id for m in agent.seen] == [recent]
        assert_answered_once(lark, [recent], unanswered=[stale])


async def test_drill_stale_inbox_item_dropped_at_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with LarkStandIn() as lark:
        stuck = EchoAgent(held=True)
        async with running_daemon(await settings_for(lark, tmp_path), stuck) as daemon:
            message_id = await lark.send_text("left behind", create_time_ms=_minutes_ago_ms(5))
            await lark.wait_for(lambda: stuck.thinking == 1)
            daemon.stop_now()
        # Downtime: the acked, unanswered message is now older than the cutoff. Restarting
        # with a cutoff it has passed stands in for the hours of an outage, without a sleep.
        settings = await settings_for(lark, tmp_path, LARKBOT_ADMISSION__STALE_AFTER_SECONDS="60")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="larkbot"):
            agent = EchoAgent()
            async with running_daemon(settings, agent) as daemon:
                fresh = await lark.send_text("fresh")
                await lark.wait_for(lambda: len(lark.replies) == 1)
                await settled(lark, daemon, acks=2)
        dropped = [
            r
            for r in caplog.records
            if r.name == "larkbot.daemon" and getattr(r, "message_id", None) == message_id
        ]
        assert len(dropped) == 1, [r.getMessage() for r in dropped]
        assert "stale cutoff" in dropped[0].getMessage() and message_id in dropped[0].getMessage()
        assert [m.message_id for m in agent.seen] == [fresh]
        assert_answered_once(lark, [fresh], unanswered=[message_id])


async def test_drill_crash_between_reply_and_settle(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        event = lark.build_message_event("hello")
        lark.remember_event(event)
        message_id = event["event"]["message"]["message_id"]
        message = inbound(event["event"]["message"]["chat_id"], "hello", message_id=message_id)
        # The process that dies: it admitted and answered the message, as the responder
        # does, but its settle was never written.
        async with open_store("sqlite", tmp_path) as store:
            assert await store.admit(message)
            async with LarkClient(lark.url, lark.app_id, lark.app_secret) as client:
                await ReplyPoster(client).post(message, Reply("echo: hello"))
        agent = EchoAgent()
        async with running_daemon(await settings_for(lark, tmp_path), agent):
            # The next process resumes it; its post carries the same uuid as the first.
            await lark.wait_for(lambda: lark.suppressed_duplicates == 1)
        assert [m.message_id for m in agent.seen] == [message_id]
        assert_answered_once(lark, [message_id], suppressed=1)
        async with open_store("sqlite", tmp_path) as store:
            stored = await store.lookup(message_id)
            assert stored is not None and stored.status == InboxStatus.DONE


async def test_drill_connection_dropped_mid_conversation(tmp_path: Path) -> None:
    async with LarkStandIn(reconnect_interval=1, reconnect_nonce=0) as lark:
        settings = await settings_for(lark, tmp_path)
        agent = EchoAgent(held=True)
        async with running_daemon(settings, agent) as daemon:
            first = await lark.send_text("one", chat_id="oc_a")
            second = await lark.send_text("two", chat_id="oc_a")
            # Both acked; the first is being answered and the second waits behind it.
            await lark.wait_for(lambda: agent.thinking == 1 and len(lark.acks) == 2)
            await lark.drop_connections()
            await lark.wait_for(lambda: not daemon.connected, timeout=5)
            # Sent while the daemon is away: delivered once it is back.
            third = await lark.send_text("three", chat_id="oc_a")
            await lark.wait_for(lambda: daemon.connected, timeout=10)
            # After a reconnect the platform re-delivers what it is unsure of.
            await lark.redeliver(first)
            await lark.redeliver(second, new_event_id=True)
            fourth = await lark.send_text("four", chat_id="oc_b")
            agent.release()
            await lark.wait_for(lambda: len(lark.replies) == 4, timeout=10)
            await settled(lark, daemon, acks=6)
        assert lark.handshakes == 2
        order = [r.to_message_id for r in lark.replies if r.chat_id == "oc_a"]
        assert order == [first, second, third]
        assert_answered_once(lark, [first, second, third, fourth])


async def test_drill_429_then_500_on_the_reply(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, tmp_path)
        async with running_daemon(settings, EchoAgent()) as daemon:
            lark.fail_next(1, status=429, route=REPLY_ROUTE, reset_seconds=1)
            lark.fail_next(1, status=500, route=REPLY_ROUTE)
            started = time.monotonic()
            message_id = await lark.send_text("hello")
            await lark.wait_for(lambda: len(lark.replies) == 1, timeout=10)
            took = time.monotonic() - started
            await settled(lark, daemon, acks=1)
        attempts = [c.status for c in lark.api_calls if c.route == REPLY_ROUTE]
        assert attempts == [429, 500, 200]
        assert took >= 1.0  # the rate-limit reset was honoured
        print(f"\nreply landed after 429 + 500 in {took:.2f} s")
        assert_answered_once(lark, [message_id])


async def test_drill_garbage_bytes_on_the_socket(tmp_path: Path) -> None:
    async with LarkStandIn(reconnect_interval=1, reconnect_nonce=0) as lark:
        settings = await settings_for(lark, tmp_path)
        async with running_daemon(settings, EchoAgent()) as daemon:
            before = await lark.send_text("before")
            await lark.wait_for(lambda: len(lark.replies) == 1)
            for garbage in (b"\xff\xfe\x00garbage", b"", b"\x08" * 64, bytes(range(256))):
                await lark.push_raw(garbage)
            await lark.wait_for(lambda: daemon.connected and lark.connections == 1, timeout=10)
            after = await lark.send_text("after")
            await lark.wait_for(lambda: len(lark.replies) == 2, timeout=10)
            await settled(lark, daemon, acks=2)
        print(f"\ngarbage on the socket: {lark.handshakes} handshake(s) in all")
        assert_answered_once(lark, [before, after])
        assert lark.handshakes == 1, "garbage must not cost the connection"


async def test_drill_full_backlog(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        lark.redeliver_after = 0.3
        # The stand-in's re-delivery ladder is flat; give it rungs enough for the burst.
        lark.redelivery_limit = 30
        settings = await settings_for(
            lark,
            tmp_path,
            LARKBOT_DISPATCH__MAX_BACKLOG="2",
            LARKBOT_DISPATCH__MAX_CONCURRENCY="2",
            # Nothing kept in the store beyond the backlog: what does not fit is refused.
            LARKBOT_DISPATCH__MAX_SPILLED="0",
        )
        agent = EchoAgent(held=True)
        async with running_daemon(settings, agent) as daemon:
            sent = [await lark.send_text(f"m{i}", chat_id=f"oc_{i % 3}") for i in range(8)]
            # Two are taken and held; the other six are refused until the agent gets going.
            await lark.wait_for(lambda: {a.chat_message_id for a in lark.acks} == set(sent))
            agent.release()
            await lark.wait_for(lambda: len(lark.replies) == 8, timeout=20)
            await lark.wait_for(lambda: daemon.backlog == 0, timeout=5)
        refused = [a.chat_message_id for a in lark.acks if a.code == ACK_OVERLOADED]
        assert refused, "the backlog never filled up"
        assert lark.redeliveries >= len(set(refused))
        for message_id in sent:
            codes = [a.code for a in lark.acks if a.chat_message_id == message_id]
            assert codes[-1] == 200 and codes.count(200) == 1, (message_id, codes)
        print(f"\n{len(refused)} refusals (non-200 acks), {lark.redeliveries} re-deliveries")
        assert_answered_once(lark, sent)


async def test_drill_full_backlog_spills_to_the_store(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        settings = await settings_for(
            lark,
            tmp_path,
            LARKBOT_DISPATCH__MAX_BACKLOG="2",
            LARKBOT_DISPATCH__MAX_CONCURRENCY="2",
        )
        agent = EchoAgent(held=True)
        async with running_daemon(settings, agent) as daemon:
            sent = [await lark.send_text(f"m{i}", chat_id=f"oc_{i % 3}") for i in range(8)]
            # Two are taken and held; the other six are kept in the store, and acked.
            await lark.wait_for(lambda: len(lark.acks) == 8)
            assert [a.code for a in lark.acks] == [200] * 8
            agent.release()
            await lark.wait_for(lambda: len(lark.replies) == 8, timeout=20)
            await lark.wait_for(lambda: daemon.backlog == 0, timeout=5)
        assert lark.redeliveries == 0
        for chat in ("oc_0", "oc_1", "oc_2"):
            in_chat = [m for i, m in enumerate(sent) if f"oc_{i % 3}" == chat]
            assert [m.message_id for m in agent.seen if m.chat_id == chat] == in_chat
        assert_answered_once(lark, sent)


async def test_drill_restart_with_spilled_messages(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        settings = await settings_for(
            lark,
            tmp_path,
            LARKBOT_DISPATCH__MAX_BACKLOG="2",
            LARKBOT_SHUTDOWN__GRACE_SECONDS="0.2",
        )
        async with running_daemon(settings, EchoAgent(held=True)) as daemon:
            sent = [await lark.send_text(f"m{i}", chat_id="oc_1") for i in range(6)]
            await lark.wait_for(lambda: len(lark.acks) == 6)
            assert [a.code for a in lark.acks] == [200] * 6
            assert daemon.backlog == 6  # two held in memory, four kept in the store
        # The held two outlive the grace period; the spilled four were never moved back.
        assert not lark.replies
        await lark.wait_for(lambda: lark.connections == 0)
        agent = EchoAgent(held=True)
        async with running_daemon(settings, agent) as daemon:
            # Resumed within the bounds: two in the backlog (one chat: one answered at a
            # time), four waiting in the store.
            await lark.wait_for(lambda: agent.thinking == 1)
            assert _gauge("larkbot_dispatch_backlog") == 2
            assert _gauge("larkbot_dispatch_spilled") == 4
            agent.release()
            await lark.wait_for(lambda: len(lark.replies) == 6, timeout=20)
            await settled(lark, daemon, acks=6)
        assert sorted(m.message_id for m in agent.seen) == sorted(sent)
        assert len(lark.acks) == 6  # answered from the inbox, not from re-deliveries
        assert_answered_once(lark, sent)


# ----------------------------------------------------------- larkbot run as a subprocess


@needs_llm
@pytest.mark.slow
async def test_drill_kill_9_between_ack_and_reply(tmp_path: Path) -> None:
    async with LarkStandIn() as lark, slow_llm(delay=30) as llm:
        env = llm_env(llm)
        async with larkbot_process(lark, tmp_path, env) as first:
            message_id = await lark.send_text("what is the plan?")
            await lark.wait_for(lambda: len(lark.acks) == 1 and len(llm.requests) >= 1, timeout=60)
            assert lark.acks[0].code == 200 and not lark.replies
            first.send_signal(signal.SIGKILL)
            assert await first.wait(timeout=30) == -signal.SIGKILL
        llm.delay = 0.2
        await lark.wait_for(lambda: lark.connections == 0, timeout=15)
        restarted = time.monotonic()
        async with larkbot_process(lark, tmp_path, env) as second:
            await lark.wait_for(lambda: len(lark.replies) == 1, timeout=60)
            answered_after = time.monotonic() - restarted
            resumed = second.log_lines("resuming message")
            second.send_signal(signal.SIGTERM)
            assert await second.wait(timeout=30) == 0
        assert [line["message_id"] for line in resumed] == [message_id]
        assert "LLM: what is the plan?" in reply_text(lark.replies[0])
        assert len(lark.acks) == 1  # answered from the inbox, not from a re-delivery
        print(f"\nkill -9 after the ack: answered {answered_after:.2f} s after the restart")
        assert_answered_once(lark, [message_id])
