"""Running the real daemon against the real local Lark inside a test."""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from larkbot.config import Settings, load_settings
from larkbot.core.agent import Agent, Reply
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.daemon import Daemon, Overrides
from larkbot.testing import LarkStandIn, OpenAIStandIn, WebhookDriver

WEBHOOK_TOKEN = "webhook-token-6f1d2c84"
"""The Verification Token of the webhook tests' app."""
WEBHOOK_KEY = "webhook-key-8a3e5b17"
"""The Encrypt Key of the webhook tests' app."""

# Lark re-delivers an event whose ack has not come back within 3 s: the one ack bound a
# user would notice (as a duplicate). Tests hold the daemon's own ``biz_rt`` to it.
LARK_ACK_LIMIT_MS = 3000


class EchoAgent:
    """Answers ``echo: <text>`` after ``delay`` seconds; records what it saw, in order.

    ``held=True`` makes it think until ``release()``: a test waits for ``thinking`` to
    reach what it expects instead of guessing how long a delay must be.
    """

    def __init__(self, delay: float = 0.0, *, held: bool = False) -> None:
        self.delay = delay
        self.seen: list[InboundMessage] = []
        self.thinking = 0
        self._held = held
        self._released: anyio.Event | None = None

    async def respond(self, message: InboundMessage, conversation: Conversation) -> Reply:
        self.seen.append(message)
        self.thinking += 1
        try:
            if self._held:
                if self._released is None:
                    self._released = anyio.Event()
                await self._released.wait()
            if self.delay:
                await anyio.sleep(self.delay)
        finally:
            self.thinking -= 1
        return Reply(f"echo: {message.text}")

    def release(self) -> None:
        """Let every answer held so far, and every later one, go out."""
        self._held = False
        if self._released is not None:
            self._released.set()


async def settings_for(lark: LarkStandIn, state_dir: Path | None = None, **env: str) -> Settings:
    """Settings pointing at ``lark``, from environment names as an operator would set them."""
    base: dict[str, str] = {
        "APP_ID": lark.app_id,
        "APP_SECRET": lark.app_secret,
        "LARK_DOMAIN": lark.url,
        "PORT": "0",
    }
    if state_dir is None:
        base["LARKBOT_STORE"] = "memory"
    else:
        base["LARKBOT_STATE_DIR"] = str(state_dir)
    base.update(env)
    # The loader reads files, as it does before the daemon's loop starts; here a loop
    # is already running, so it runs on a worker thread.
    return await anyio.to_thread.run_sync(lambda: load_settings(None, env=base))


async def llm_settings(lark: LarkStandIn, llm: OpenAIStandIn) -> Settings:
    """Settings pointing at ``lark``, thinking with the LLM brain at ``llm``."""
    return await settings_for(
        lark, OPENAI_API_KEY=llm.api_key, OPENAI_BASE_URL=llm.base_url, LLM_MODEL=llm.model
    )


async def answered(lark: LarkStandIn, text: str, timeout: float = 10) -> str:  # noqa: ASYNC109
    """Send ``text`` to the bot; return the message's id once a reply to it is posted."""
    sent = await lark.send_text(text)
    await lark.wait_for(lambda: any(r.to_message_id == sent for r in lark.replies), timeout)
    return sent


def webhook_env(**extra: str) -> dict[str, str]:
    """Environment names that put the daemon in webhook mode, with both keys set."""
    return {
        "LARK_EVENT_MODE": "webhook",
        "LARK_ENCRYPT_KEY": WEBHOOK_KEY,
        "LARK_VERIFICATION_TOKEN": WEBHOOK_TOKEN,
        **extra,
    }


def webhook_driver(lark: LarkStandIn, base_url: str, path: str = "/webhook") -> WebhookDriver:
    """Lark's side of the webhook, POSTing to the daemon's HTTP port at ``base_url``."""
    return WebhookDriver(
        base_url + path,
        verification_token=WEBHOOK_TOKEN,
        encrypt_key=WEBHOOK_KEY,
        lark=lark,
    )


@asynccontextmanager
async def running_daemon(
    settings: Settings,
    agent: Agent | None = None,
    *,
    overrides: Overrides | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 30.0,
) -> AsyncIterator[Daemon]:
    """Start the daemon, wait until it is ready, stop it on exit (gracefully unless failing)."""
    daemon = Daemon(
        settings, agent=agent, overrides=overrides, env=env or {}, working_reaction_after=None
    )
    async with anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        with anyio.fail_after(ready_timeout):
            await daemon.ready.wait()
        try:
            yield daemon
        except BaseException:
            # A failing test need not wait out a graceful drain behind a slow agent.
            daemon.stop_now()
            raise
        daemon.request_stop()


def assert_answered_once(
    lark: LarkStandIn,
    answered: Collection[str],
    *,
    suppressed: int = 0,
    unanswered: Collection[str] = (),
) -> None:
    """Exactly one reply to each of ``answered``, none to anything else, ``suppressed`` dups."""
    counts: dict[str, int] = {}
    for reply in lark.replies:
        assert reply.to_message_id is not None, reply
        counts[reply.to_message_id] = counts.get(reply.to_message_id, 0) + 1
    assert counts == dict.fromkeys(answered, 1), counts
    for message_id in unanswered:
        assert message_id not in counts, f"answered {message_id}, which must stay unanswered"
    assert lark.suppressed_duplicates == suppressed


async def settled(lark: LarkStandIn, daemon: Daemon, acks: int, timeout: float = 30) -> None:  # noqa: ASYNC109
    """Wait until ``acks`` acks are recorded and nothing is queued or being answered.

    Admission decides (and submits) before it acks, so once the ack is in and the backlog
    is empty, no further reply can come from what was delivered: a test that checks that
    something was *not* answered waits for this, not for a while.
    """
    await lark.wait_for(lambda: len(lark.acks) >= acks and daemon.backlog == 0, timeout=timeout)


def assert_acked_within_lark_limit(lark: LarkStandIn, message_ids: Collection[str]) -> None:
    """Each of ``message_ids`` has exactly one ack, code 200, handled within Lark's 3 s."""
    acks = [a for a in lark.acks if a.chat_message_id in message_ids]
    assert sorted(a.chat_message_id or "" for a in acks) == sorted(message_ids), acks
    assert all(a.code == 200 for a in acks), acks
    slow = [a for a in acks if a.biz_rt is None or a.biz_rt >= LARK_ACK_LIMIT_MS]
    assert not slow, slow


def ack_figures(lark: LarkStandIn, message_ids: Collection[str]) -> str:
    """The acks of ``message_ids`` in figures: the daemon's own ``biz_rt`` and the round trip.

    ``biz_rt`` is the time the daemon itself measured from reading the frame to sending
    its ack; the round trip, measured by the stand-in in the test's event loop, includes
    whatever else that loop was busy with.
    """
    acks = [a for a in lark.acks if a.chat_message_id in message_ids]
    handling = [float(a.biz_rt or 0) for a in acks]
    trip = [a.latency_ms for a in acks]
    return (
        f"{len(acks)} acks: biz_rt p50={statistics.median(handling):.0f} ms "
        f"max={max(handling):.0f} ms; round trip p50={statistics.median(trip):.1f} ms "
        f"max={max(trip):.1f} ms"
    )
