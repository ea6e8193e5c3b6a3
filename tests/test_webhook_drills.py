"""The fault drills of ``test_fault_drills`` and ``test_shutdown``, in webhook mode.

Lark POSTs each event (the stand-in's webhook driver, signed and encrypted) instead of
pushing it down the long connection; the daemon, its durable SQLite state directory and
the check at the end are the same: exactly one reply per user message, none to anything
else, and no reply the stand-in had to suppress as a repeat.
"""

from __future__ import annotations

import copy
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from larkbot.config import Settings
from larkbot.core.agent import Agent
from larkbot.daemon import Daemon
from larkbot.testing import LarkStandIn, WebhookDriver
from tests._daemon import (
    EchoAgent,
    assert_answered_once,
    running_daemon,
    settings_for,
    webhook_driver,
    webhook_env,
)
from tests._factories import REPLY_ROUTE
from tests._proc import LarkbotProcess, larkbot_process, llm_env, needs_llm, reply_text, slow_llm

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _webhook_daemon(
    lark: LarkStandIn, settings: Settings, agent: Agent
) -> AsyncIterator[tuple[Daemon, WebhookDriver]]:
    """The daemon answering with ``agent``, and Lark's side POSTing to its webhook."""
    async with (
        running_daemon(settings, agent) as daemon,
        webhook_driver(lark, f"http://127.0.0.1:{daemon.ops_port}") as lark_side,
    ):
        yield daemon, lark_side


def _renamed(event: dict[str, Any]) -> dict[str, Any]:
    """The same message under a new ``event_id``."""
    again = copy.deepcopy(event)
    again["header"]["event_id"] = uuid.uuid4().hex
    return again


async def _settled(lark: LarkStandIn, daemon: Daemon) -> None:
    """Wait until nothing is queued or being answered.

    Admission decides (and submits) before the request is answered, so once every POST
    has its answer and the backlog is empty, no further reply can come.
    """
    await lark.wait_for(lambda: daemon.backlog == 0, timeout=10)


def _minutes_ago_ms(minutes: float) -> int:
    return int((time.time() - minutes * 60) * 1000)


async def test_webhook_drill_redelivery_same_and_new_event_id(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, tmp_path, **webhook_env())
        agent = EchoAgent(delay=0.3)
        async with _webhook_daemon(lark, settings, agent) as (daemon, lark_side):
            event = lark_side.message_event("hello")
            first = await lark_side.send_event(event, retry=False)
            # Lark pushes again while the answer is being produced, and after it landed:
            # the very same request, and the message under a new event_id.
            during = [
                await lark_side.post(first.request),
                (await lark_side.send_event(_renamed(event), retry=False)).final,
            ]
            await lark.wait_for(lambda: len(lark.replies) == 1)
            after = [
                await lark_side.post(first.request),
                (await lark_side.send_event(_renamed(event), retry=False)).final,
            ]
            await _settled(lark, daemon)
        assert [a.status for a in (first.final, *during, *after)] == [200] * 5
        assert [m.message_id for m in agent.seen] == [first.message_id]
        assert_answered_once(lark, [str(first.message_id)])


async def test_webhook_drill_restart_then_redelivery(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, tmp_path, **webhook_env())
        async with _webhook_daemon(lark, settings, EchoAgent()) as (daemon, lark_side):
            event = lark_side.message_event("before the restart")
            before = await lark_side.send_event(event, retry=False)
            await lark.wait_for(lambda: len(lark.replies) == 1)
        agent = EchoAgent()
        async with _webhook_daemon(lark, settings, agent) as (daemon, lark_side):
            again = await lark_side.post(before.request)
            renamed = await lark_side.send_event(_renamed(event), retry=False)
            fresh = await lark_side.send_text("after the restart", retry=False)
            await lark.wait_for(lambda: len(lark.replies) == 2)
            await _settled(lark, daemon)
        assert [a.status for a in (before.final, again, renamed.final, fresh.final)] == [200] * 4
        assert [m.message_id for m in agent.seen] == [fresh.message_id]
        assert_answered_once(lark, [str(before.message_id), str(fresh.message_id)])


async def test_webhook_drill_stale_message(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, tmp_path, **webhook_env())
        agent = EchoAgent()
        async with _webhook_daemon(lark, settings, agent) as (daemon, lark_side):
            # Lark's later re-pushes (1 h, 6 h) bring events older than the stale cutoff.
            stale = await lark_side.send_text(
                "too old", create_time_ms=_minutes_ago_ms(40), retry=False
            )
            recent = await lark_side.send_text(
                "recent", create_time_ms=_minutes_ago_ms(29), retry=False
            )
            await lark.wait_for(lambda: len(lark.replies) == 1)
            await _settled(lark, daemon)
        # Acked all the same: a refusal would only make Lark push the stale event again.
        assert stale.final.status == recent.final.status == 200
        assert [m.message_id for m in agent.seen] == [recent.message_id]
        assert_answered_once(lark, [str(recent.message_id)], unanswered=[str(stale.message_id)])


async def test_webhook_drill_429_then_500_on_the_reply(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, tmp_path, **webhook_env())
        async with _webhook_daemon(lark, settings, EchoAgent()) as (daemon, lark_side):
            lark.fail_next(1, status=429, route=REPLY_ROUTE, reset_seconds=1)
            lark.fail_next(1, status=500, route=REPLY_ROUTE)
            started = time.monotonic()
            delivery = await lark_side.send_text("hello", retry=False)
            acked = time.monotonic()
            await lark.wait_for(lambda: len(lark.replies) == 1, timeout=10)
            await _settled(lark, daemon)
        attempts = [c.status for c in lark.api_calls if c.route == REPLY_ROUTE]
        assert attempts == [429, 500, 200]
        assert delivery.final.status == 200 and len(delivery.attempts) == 1
        # The ack did not wait for the reply, whose rate-limit reset was honoured.
        assert acked < lark.replies[0].at and lark.replies[0].at - started >= 1.0
        print(
            f"\nwebhook acked in {(acked - started) * 1000:.0f} ms; reply landed after "
            f"429 + 500 in {lark.replies[0].at - started:.2f} s"
        )
        assert_answered_once(lark, [str(delivery.message_id)])


# ----------------------------------------------------------- larkbot run as a subprocess


async def _until_draining(bot: LarkbotProcess) -> None:
    async with httpx.AsyncClient(base_url=bot.url, timeout=2) as http:
        while True:
            response = await http.get("/readyz")
            if response.status_code == 503 and response.json().get("draining"):
                return
            await anyio.sleep(0.01)


@needs_llm
@pytest.mark.slow
async def test_webhook_drill_sigterm_while_the_agent_is_thinking(tmp_path: Path) -> None:
    async with LarkStandIn() as lark, slow_llm(delay=2.0) as llm:
        env = {**llm_env(llm), **webhook_env(), "LARKBOT_SHUTDOWN__GRACE_SECONDS": "10"}
        async with (
            larkbot_process(lark, tmp_path, env, ready_when="readyz") as bot,
            webhook_driver(lark, bot.url) as lark_side,
        ):
            thinking = await lark_side.send_text("think slowly", retry=False)
            await lark.wait_for(lambda: len(llm.requests) == 1, timeout=10)
            signalled = time.monotonic()
            bot.send_signal(signal.SIGTERM)
            with anyio.fail_after(5):
                await _until_draining(bot)
            draining_after = time.monotonic() - signalled
            # Pushed while draining: refused with 503, so Lark tries again later.
            late = await lark_side.send_text("sent while draining", retry=False)
            status = await bot.wait(timeout=15)
            exited_after = time.monotonic() - signalled
        assert status == 0, bot.raw[-20:]
        assert thinking.final.status == 200 and late.final.status == 503
        assert [r.to_message_id for r in lark.replies] == [thinking.message_id]
        assert lark.replies[0].at - signalled < exited_after
        assert "LLM: think slowly" in reply_text(lark.replies[0])
        assert draining_after < 1.0 < exited_after < 10.0

        # Lark's retry of the refused event reaches the next start and is answered, once.
        llm.delay = 0.1
        async with (
            larkbot_process(lark, tmp_path, env, ready_when="readyz") as bot,
            webhook_driver(lark, bot.url) as lark_side,
        ):
            retried = await lark_side.post(late.request, attempt=1)
            await lark.wait_for(lambda: len(lark.replies) == 2, timeout=15)
            bot.send_signal(signal.SIGTERM)
            assert await bot.wait(timeout=10) == 0
        assert retried.status == 200
        print(
            f"\nSIGTERM while thinking (webhook): draining with 503 after {draining_after:.2f} s, "
            f"reply landed and exit 0 after {exited_after:.2f} s (grace 10 s); "
            "the refused push answered after the restart"
        )
        assert_answered_once(lark, [str(thinking.message_id), str(late.message_id)])
