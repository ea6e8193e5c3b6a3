"""Running the real daemon against the real local Lark inside a test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from larkbot.config import Settings, load_settings
from larkbot.core.agent import Agent, Reply
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.daemon import Daemon
from larkbot.testing import LarkStandIn, WebhookDriver

WEBHOOK_TOKEN = "webhook-token-6f1d2c84"
"""The Verification Token of the webhook tests' app."""
WEBHOOK_KEY = "webhook-key-8a3e5b17"
"""The Encrypt Key of the webhook tests' app."""


class EchoAgent:
    """Answers ``echo: <text>`` after ``delay`` seconds; records what it saw, in order."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[InboundMessage] = []

    async def respond(self, message: InboundMessage, conversation: Conversation) -> Reply:
        self.seen.append(message)
        if self.delay:
            await anyio.sleep(self.delay)
        return Reply(f"echo: {message.text}")


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
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 10.0,
) -> AsyncIterator[Daemon]:
    """Start the daemon, wait until it is ready, stop it on exit (gracefully unless failing)."""
    daemon = Daemon(settings, agent=agent, env=env or {}, working_reaction_after=None)
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
