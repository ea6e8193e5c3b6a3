"""The reply stage: run the agent on one admitted message and post its answer.

Idempotent by construction: every chunk of an answer carries a ``uuid`` derived from
the inbound message id and the chunk index, so a retried reply, a re-delivered event or
a resumed inbox item can never post the same answer twice (the platform honours the
``uuid`` for about an hour, longer than our retries and restarts take).
"""

from __future__ import annotations

import logging
from typing import Protocol

import anyio
import httpx

from larkbot.core.agent import Agent, Reply
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.lark.client import LarkAPIError, LarkClient, reply_uuid
from larkbot.ops import metrics
from larkbot.reply.render import render_reply

__all__ = ["ReplyPoster", "Responder", "ResponderStore"]

log = logging.getLogger("larkbot.reply")

# The reaction shown on the user's message while the agent works.
_WORKING_EMOJI = "OnIt"


class ResponderStore(Protocol):
    """Where the outcome of a reply is recorded (the inbox)."""

    async def mark_done(self, message_id: str) -> None:
        """The platform accepted the reply."""
        ...

    async def mark_failed(self, message_id: str, reason: str) -> None:
        """The reply finally failed; keep the item for inspection."""
        ...


class ConversationSource(Protocol):
    """The conversation cache, as the responder uses it."""

    def get(self, key: str) -> Conversation:
        """The conversation for ``key``, created when missing."""
        ...


class ReplyPoster:
    """What every answering path shares: run the agent with a "working on it" reaction
    when it is slow, and post a reply idempotently.

    :param reply_in_thread: answer in a thread even when the message is not in one.
    :param working_reaction_after: seconds the agent may think before the user's message
        gets a reaction; ``None`` turns it off.
    """

    def __init__(
        self,
        client: LarkClient,
        *,
        reply_in_thread: bool = False,
        working_reaction_after: float | None = 1.0,
    ) -> None:
        self._client = client
        self._reply_in_thread = reply_in_thread
        self._working_reaction_after = working_reaction_after

    async def think(
        self,
        agent: Agent,
        message: InboundMessage,
        conversation: Conversation,
        reactions: list[str],
    ) -> Reply:
        """The agent's reply; a reaction added meanwhile is appended to ``reactions``.

        The caller removes those reactions (:meth:`unreact`) once the reply is posted.
        """
        thinking_done = anyio.Event()
        async with anyio.create_task_group() as tg:
            if self._working_reaction_after is not None:
                tg.start_soon(self._react_if_slow, message, thinking_done, reactions)
            try:
                return await agent.respond(message, conversation)
            finally:
                thinking_done.set()

    async def post(self, message: InboundMessage, reply: Reply) -> int:
        """Post ``reply`` to ``message``; return the number of parts.

        Each part carries the ``uuid`` derived from the message id and its index, so a
        post repeated by anyone (a retry, a restart, another replica) shows once.

        :raises LarkAPIError: or :class:`httpx.HTTPError`, when the platform refused it.
        """
        outbound = render_reply(reply)
        in_thread = message.in_thread or self._reply_in_thread
        for index, part in enumerate(outbound):
            await self._client.reply(
                message.message_id,
                msg_type=part.msg_type,
                content=part.content,
                uuid=reply_uuid(message.message_id, index),
                reply_in_thread=in_thread,
            )
        return len(outbound)

    async def unreact(self, message: InboundMessage, reactions: list[str]) -> None:
        """Remove the reactions :meth:`think` added; a failure is only logged."""
        for reaction_id in reactions:
            try:
                with anyio.move_on_after(2, shield=True):
                    await self._client.unreact(message.message_id, reaction_id)
            except (LarkAPIError, httpx.HTTPError) as exc:
                log.debug("could not remove the reaction on %s: %s", message.message_id, exc)

    async def _react_if_slow(
        self, message: InboundMessage, thinking_done: anyio.Event, reactions: list[str]
    ) -> None:
        # Only a slow answer gets a "working on it" reaction: a fast one would just flash
        # an emoji and cost two extra API calls. A reaction is a courtesy, so its failure
        # never delays or blocks the answer.
        assert self._working_reaction_after is not None
        with anyio.move_on_after(self._working_reaction_after):
            await thinking_done.wait()
        if thinking_done.is_set():
            return
        try:
            with anyio.move_on_after(2):
                reactions.append(await self._client.react(message.message_id, _WORKING_EMOJI))
        except (LarkAPIError, httpx.HTTPError) as exc:
            log.debug("could not add a reaction to %s: %s", message.message_id, exc)


class Responder:
    """Answers one message: agent, render, post, record (the single-replica path)."""

    def __init__(
        self,
        *,
        agent: Agent,
        client: LarkClient,
        store: ResponderStore,
        conversations: ConversationSource,
        reply_in_thread: bool = False,
        working_reaction_after: float | None = 1.0,
    ) -> None:
        self._agent = agent
        self._store = store
        self._conversations = conversations
        self._poster = ReplyPoster(
            client,
            reply_in_thread=reply_in_thread,
            working_reaction_after=working_reaction_after,
        )

    async def answer(self, message: InboundMessage) -> None:
        """Produce and post the reply to ``message``; never raises for platform errors."""
        context = {"message_id": message.message_id, "chat_id": message.chat_id}
        conversation = self._conversations.get(message.conversation_key)
        reactions: list[str] = []
        try:
            reply = await self._poster.think(self._agent, message, conversation, reactions)
            parts = await self._poster.post(message, reply)
        except (LarkAPIError, httpx.HTTPError) as exc:
            metrics.REPLIES.labels(outcome="failed").inc()
            reason = f"{type(exc).__name__}: {exc}"
            log.error("reply to message %s failed: %s", message.message_id, reason, extra=context)
            with anyio.CancelScope(shield=True):
                for message_id in message.answered_ids:
                    await self._store.mark_failed(message_id, reason)
            return
        finally:
            await self._poster.unreact(message, reactions)
        metrics.REPLIES.labels(outcome="sent").inc()
        log.info(
            "replied to message %s (%d part%s)",
            message.message_id,
            parts,
            "" if parts == 1 else "s",
            extra=context,
        )
        # Shielded: once the platform has the reply, the inbox must learn it even if a
        # hard shutdown is cancelling us right now (else a restart would resume it, and
        # only the uuid would stop a second post).
        with anyio.CancelScope(shield=True):
            for message_id in message.answered_ids:
                await self._store.mark_done(message_id)
