"""The whole pipeline against the local Lark: ack-first, exactly once, in order."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import httpx
import pytest

from larkbot.core.frames import ACK_OVERLOADED
from larkbot.daemon import Daemon
from larkbot.testing import LarkStandIn
from tests._daemon import (
    EchoAgent,
    ack_figures,
    assert_acked_within_lark_limit,
    running_daemon,
    settings_for,
    settled,
)

pytestmark = pytest.mark.anyio


def _replies_to(lark: LarkStandIn, message_id: str) -> list[str]:
    return [str(r.content.get("text")) for r in lark.replies if r.to_message_id == message_id]


async def test_a_message_is_answered_once_with_an_idempotency_uuid() -> None:
    agent = EchoAgent()
    async with LarkStandIn() as lark, running_daemon(await settings_for(lark), agent):
        message_id = await lark.send_text("hello")
        await lark.wait_for(lambda: len(lark.replies) == 1)
        reply = lark.replies[0]
        assert reply.to_message_id == message_id
        assert reply.content == {"text": "echo: hello"}
        assert reply.uuid
        ack = next(a for a in lark.acks if a.chat_message_id == message_id)
        assert ack.code == 200 and ack.biz_rt is not None


async def test_fragmented_event_is_reassembled() -> None:
    async with LarkStandIn() as lark, running_daemon(await settings_for(lark), EchoAgent()):
        long_text = "fragment " * 200
        message_id = await lark.send_text(long_text, fragments=4)
        await lark.wait_for(lambda: bool(_replies_to(lark, message_id)))
        assert _replies_to(lark, message_id) == [f"echo: {long_text.strip()}"]
        assert [a.code for a in lark.acks] == [200]


async def test_dropped_messages_get_no_answer() -> None:
    async with (
        LarkStandIn() as lark,
        running_daemon(await settings_for(lark), EchoAgent()) as daemon,
    ):
        stale = await lark.send_text("old", create_time_ms=int((time.time() - 3600) * 1000))
        own = await lark.send_text("mine", sender_open_id=lark.bot_open_id)
        unmentioned = await lark.send_text("chatter", chat_type="group", chat_id="oc_group")
        by_name = await lark.send_text(
            "@_user_1 hi", chat_type="group", chat_id="oc_group", mentions=[("ou_x", "larkbot")]
        )
        mentioned = await lark.send_text(
            "question", chat_type="group", chat_id="oc_group", mention_bot=True
        )
        await lark.wait_for(lambda: len(lark.replies) == 1)
        await lark.redeliver(mentioned)
        await lark.redeliver(mentioned, new_event_id=True)
        # Once all seven are acked and nothing is queued, no further reply can come.
        await settled(lark, daemon, acks=7)
        assert [r.to_message_id for r in lark.replies] == [mentioned]
        assert all(a.code == 200 for a in lark.acks)
        for skipped in (stale, own, unmentioned, by_name):
            assert _replies_to(lark, skipped) == []


async def test_full_backlog_refuses_with_non_200_then_takes_the_redelivery() -> None:
    agent = EchoAgent(held=True)
    async with LarkStandIn() as lark:
        settings = await settings_for(
            lark,
            LARKBOT_DISPATCH__MAX_BACKLOG="1",
            LARKBOT_DISPATCH__MAX_CONCURRENCY="1",
            # The memory store keeps nothing beyond the backlog (it does not outlive the
            # process), whatever dispatch.max_spilled says: the message is refused.
        )
        lark.redeliver_after = 0.5
        async with running_daemon(settings, agent):
            first = await lark.send_text("one", chat_id="oc_a")
            await lark.wait_for(lambda: agent.thinking == 1)
            # The first message fills the backlog until the agent is done with it.
            second = await lark.send_text("two", chat_id="oc_b")
            await lark.wait_for(lambda: any(a.chat_message_id == second for a in lark.acks))
            agent.release()
            await lark.wait_for(lambda: len(lark.replies) == 2, timeout=10)
            codes = [(a.chat_message_id, a.code) for a in lark.acks]
            assert (second, ACK_OVERLOADED) in codes
            assert codes[-1] == (second, 200)
            assert sorted(_replies_to(lark, m)[0] for m in (first, second)) == [
                "echo: one",
                "echo: two",
            ]


async def test_reconnects_after_the_connection_drops() -> None:
    async with (
        LarkStandIn(reconnect_interval=1, reconnect_nonce=0) as lark,
        running_daemon(await settings_for(lark), EchoAgent()) as daemon,
    ):
        await lark.send_text("before")
        await lark.wait_for(lambda: len(lark.replies) == 1)
        await lark.drop_connections()
        await lark.wait_for(lambda: not daemon.connected, timeout=5)
        await lark.wait_for(lambda: daemon.connected and lark.connections == 1, timeout=10)
        await lark.send_text("after")
        await lark.wait_for(lambda: len(lark.replies) == 2, timeout=5)
        assert lark.handshakes == 2


async def test_silent_socket_is_treated_as_dead() -> None:
    async with (
        LarkStandIn(ping_interval=1, reconnect_interval=1, reconnect_nonce=0) as lark,
        running_daemon(await settings_for(lark), EchoAgent()) as daemon,
    ):
        lark.stop_ponging = True
        await lark.wait_for(lambda: not daemon.connected, timeout=10)
        lark.stop_ponging = False
        await lark.wait_for(lambda: daemon.connected and lark.handshakes == 2, timeout=10)


async def test_pong_client_config_is_applied() -> None:
    async with LarkStandIn(ping_interval=30) as lark:
        # The first pong carries the new interval; the daemon must wake from its 30 s wait.
        lark.pong_config = {"PingInterval": 0.2, "ReconnectCount": -1}
        async with running_daemon(await settings_for(lark), EchoAgent()):
            # Seven pings in 10 s only happen at the new 0.2 s interval (the old one: one).
            await lark.wait_for(lambda: lark.pings >= 7, timeout=10)
            assert lark.pong_config is None  # it went out in a pong


async def test_readyz_follows_the_connection() -> None:
    async with (
        LarkStandIn(reconnect_interval=1, reconnect_nonce=0) as lark,
        running_daemon(await settings_for(lark), EchoAgent()) as daemon,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.ops_port}") as http,
    ):
        assert (await http.get("/readyz")).status_code == 200
        assert (await http.get("/healthz")).status_code == 200
        lark.refuse_handshake = (500, None)
        await lark.drop_connections()
        await lark.wait_for(lambda: not daemon.connected, timeout=5)
        assert (await http.get("/readyz")).status_code == 503
        assert (await http.get("/healthz")).status_code == 200
        lark.refuse_handshake = None
        await lark.wait_for(lambda: daemon.connected, timeout=10)
        assert (await http.get("/readyz")).status_code == 200
        metrics = (await http.get("/metrics")).text
        assert "larkbot_connection_up 1.0" in metrics
        assert "larkbot_reconnects_total" in metrics


async def test_bad_credentials_stop_the_daemon_with_a_clear_error() -> None:
    from larkbot.lark.client import CredentialsError

    async with LarkStandIn() as lark:
        settings = await settings_for(lark, APP_SECRET="wrong")
        daemon = Daemon(settings, agent=EchoAgent(), env={})
        with pytest.raises(CredentialsError, match="code 10014"), anyio.fail_after(10):
            await daemon.run()
        assert lark.app_secret not in str(daemon.health)
        assert lark.handshakes == 0  # it never dialled the long connection


async def test_slow_agent_never_delays_acks_and_chats_run_concurrently() -> None:
    agent = EchoAgent(held=True)
    async with LarkStandIn() as lark, running_daemon(await settings_for(lark), agent):
        sent: dict[str, list[str]] = {}
        for chat in range(20):
            for turn in range(2):
                message_id = await lark.send_text(f"c{chat} t{turn}", chat_id=f"oc_{chat}")
                sent.setdefault(f"oc_{chat}", []).append(message_id)
        every = [message_id for ids in sent.values() for message_id in ids]
        # The first turns of all 20 chats are being thought about at once, the second turns
        # wait behind them, and every one of the 40 is acked although none is answered.
        await lark.wait_for(lambda: agent.thinking == 20 and len(lark.acks) == 40, timeout=10)
        assert sorted(m.message_id for m in agent.seen) == sorted(ids[0] for ids in sent.values())
        assert not lark.replies
        assert_acked_within_lark_limit(lark, every)
        agent.release()
        await lark.wait_for(lambda: len(lark.replies) == 40, timeout=10)
        for chat, ids in sent.items():
            order = [r.to_message_id for r in lark.replies if r.to_message_id in ids]
            assert order == ids, chat
        print(f"\n{ack_figures(lark, every)}; 20 chats thinking at once")


async def test_burst_merge_answers_once_and_settles_every_message(tmp_path: Path) -> None:
    from larkbot.store import InboxStatus, open_store

    agent = EchoAgent()
    async with LarkStandIn() as lark:
        # A window wide enough that three sends in a row fall in it on a loaded machine.
        settings = await settings_for(
            lark, state_dir=tmp_path, LARKBOT_AGENT__MERGE_WINDOW_MS="1000"
        )
        async with running_daemon(settings, agent) as daemon:
            ids = [await lark.send_text(t, chat_id="oc_burst") for t in ("a", "b", "c")]
            await lark.wait_for(lambda: len(lark.replies) == 1, timeout=10)
            await settled(lark, daemon, acks=3)  # nothing else can follow
        assert len(lark.replies) == 1
        assert lark.replies[0].to_message_id == ids[-1]
        assert lark.replies[0].content == {"text": "echo: a\nb\nc"}
        async with open_store(kind="sqlite", state_dir=tmp_path) as store:
            for message_id in ids:
                stored = await store.lookup(message_id)
                assert stored is not None and stored.status == InboxStatus.DONE
