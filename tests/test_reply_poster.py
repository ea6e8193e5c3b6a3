"""The reply poster's "working on it" reaction and its running of the agent, on the stand-in.

Only an answer that takes a while gets the reaction, removed once the reply is posted; the
agent sees what ``await`` gives it (results, exceptions, cancellation) and its own cancel
scopes nest with whatever the poster wraps around it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from larkbot.core.agent import Reply
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.lark.client import LarkClient
from larkbot.reply._posting import ReplyPoster
from larkbot.testing import LarkStandIn
from tests._factories import inbound

pytestmark = pytest.mark.anyio


class InstantAgent:
    """Answers without ever waiting."""

    async def respond(self, message: InboundMessage, conversation: Conversation) -> Reply:
        return Reply(f"echo: {message.text}")


class WaitingAgent:
    """Waits several times (for a value handed over, for ``go``) before it answers."""

    def __init__(self) -> None:
        self.go = anyio.Event()
        self.waiting = anyio.Event()
        self.steps: list[str] = []

    async def respond(self, message: InboundMessage, conversation: Conversation) -> Reply:
        send, receive = anyio.create_memory_object_stream[str](1)
        # A cancel scope held across every wait, as an LLM call's timeout is: whatever
        # the poster wraps around the agent must nest properly with it.
        with anyio.fail_after(60):
            await self._steps(send, receive)
        return Reply(f"thought about {message.text}")

    async def _steps(
        self,
        send: anyio.abc.ObjectSendStream[str],
        receive: anyio.abc.ObjectReceiveStream[str],
    ) -> None:
        async with send, receive:
            await anyio.lowlevel.checkpoint()
            await send.send("handed over")
            self.steps.append(await receive.receive())
            self.waiting.set()
            try:
                await self.go.wait()
            except anyio.get_cancelled_exc_class():
                self.steps.append("cancelled")
                raise
            self.steps.append("went on")


class FailingAgent(WaitingAgent):
    """Waits for ``go``, then fails."""

    async def respond(self, message: InboundMessage, conversation: Conversation) -> Reply:
        await self.go.wait()
        raise LookupError("the brain failed")


@asynccontextmanager
async def poster_on(lark: LarkStandIn, after: float | None) -> AsyncIterator[ReplyPoster]:
    async with LarkClient(lark.url, lark.app_id, lark.app_secret) as client:
        yield ReplyPoster(client, working_reaction_after=after)


async def test_an_instant_answer_gets_no_reaction() -> None:
    async with LarkStandIn() as lark, poster_on(lark, 0.0) as poster:
        reactions: list[str] = []
        with anyio.fail_after(10):
            reply = await poster.think(InstantAgent(), inbound(), Conversation("oc_1"), reactions)
            # Whatever was due would have been started by now.
            await anyio.sleep(0.05)
    assert reply == Reply("echo: hi")
    assert reactions == [] and lark.reactions == []


async def test_a_waiting_answer_gets_the_reaction_and_sees_what_await_gives() -> None:
    async with LarkStandIn() as lark, poster_on(lark, 0.0) as poster:
        agent, message, reactions = WaitingAgent(), inbound(text="tea"), []

        async def release_once_reacted() -> None:
            await lark.wait_for(lambda: len(lark.reactions) == 1, timeout=10)
            agent.go.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(release_once_reacted)
                reply = await poster.think(agent, message, Conversation("oc_1"), reactions)
            await poster.unreact(message, reactions)
    assert reply == Reply("thought about tea")
    assert agent.steps == ["handed over", "went on"]
    assert [(r.action, r.message_id, r.emoji_type) for r in lark.reactions] == [
        ("add", message.message_id, "OnIt"),
        ("delete", message.message_id, "OnIt"),
    ]
    assert reactions == [lark.reactions[0].reaction_id]


async def test_a_failure_after_waiting_reaches_the_caller() -> None:
    async with LarkStandIn() as lark, poster_on(lark, 60.0) as poster:
        agent = FailingAgent()
        agent.go.set()
        caught: list[BaseException] = []
        with anyio.fail_after(10):
            try:
                await poster.think(agent, inbound(), Conversation("oc_1"), [])
            except* LookupError as failed:  # the task group wraps it, as it always did
                caught.extend(failed.exceptions)
    assert [str(exc) for exc in caught] == ["the brain failed"]
    assert lark.reactions == []


async def test_cancelling_a_waiting_answer_cancels_the_agent() -> None:
    async with LarkStandIn() as lark, poster_on(lark, 60.0) as poster:
        agent = WaitingAgent()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def think() -> None:
                    await poster.think(agent, inbound(), Conversation("oc_1"), [])

                tg.start_soon(think)
                await agent.waiting.wait()
                tg.cancel_scope.cancel()
    assert agent.steps == ["handed over", "cancelled"]
    assert lark.reactions == []


async def test_without_a_reaction_the_agent_is_awaited_as_is() -> None:
    async with LarkStandIn() as lark, poster_on(lark, None) as poster:
        agent = WaitingAgent()
        agent.go.set()
        with anyio.fail_after(10):
            reply = await poster.think(agent, inbound(text="x"), Conversation("oc_1"), [])
    assert reply == Reply("thought about x")
    assert agent.steps == ["handed over", "went on"]
