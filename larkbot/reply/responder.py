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

from larkbot.core.agent import Agent, Reply
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.core.streaming import current_reply_stream
from larkbot.lark.client import LarkAPIError, LarkClient
from larkbot.ops import metrics
from larkbot.ops.logging import log_context
from larkbot.reply._posting import ReplyPoster
from larkbot.reply.render import OutboundMessage, render_reply
from larkbot.reply.streaming import StreamingCard

__all__ = ["Responder", "ResponderStore"]

log = logging.getLogger("larkbot.reply")


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


class Responder:
    """Answers one message: agent, render, post, record.

    With ``streaming``, a brain that writes its answer piece by piece (the LLM) shows it
    in a CardKit card as it comes; CardKit refusing costs nothing but the animation.
    """

    def __init__(
        self,
        *,
        agent: Agent,
        client: LarkClient,
        store: ResponderStore,
        conversations: ConversationSource,
        reply_in_thread: bool = False,
        working_reaction_after: float | None = 1.0,
        streaming: bool = False,
    ) -> None:
        self._agent = agent
        self._client = client
        self._store = store
        self._conversations = conversations
        self._reply_in_thread = reply_in_thread
        self._poster = ReplyPoster(
            client, reply_in_thread=reply_in_thread, working_reaction_after=working_reaction_after
        )
        self._streaming = streaming

    async def answer(self, message: InboundMessage) -> None:
        """Produce and post the reply to ``message``; never raises for platform errors.

        Every log line emitted while answering, down to the tools and the Lark client,
        carries the message's ids.
        """
        with log_context(message.message_id, message.chat_id):
            await self._answer(message)

    async def _answer(self, message: InboundMessage) -> None:
        conversation = self._conversations.get(message.conversation_key)
        reactions: list[str] = []
        in_thread = message.in_thread or self._reply_in_thread
        stream = (
            StreamingCard(self._client, message.message_id, reply_in_thread=in_thread)
            if self._streaming
            else None
        )
        try:
            token = current_reply_stream.set(stream)
            try:
                reply = await self._poster.think(self._agent, message, conversation, reactions)
            finally:
                current_reply_stream.reset(token)
            outbound, first = await self._after_stream(stream, reply)
            await self._poster.post_parts(message, outbound, first)
        except LarkAPIError as exc:
            metrics.labelled(metrics.REPLIES, "failed").inc()
            reason = f"{type(exc).__name__}: {exc}"
            log.error("reply to message %s failed: %s", message.message_id, reason)
            with anyio.CancelScope(shield=True):
                for message_id in message.answered_ids:
                    await self._store.mark_failed(message_id, reason)
            return
        finally:
            await self._poster.unreact(message, reactions)
        metrics.labelled(metrics.REPLIES, "sent").inc()
        log.info(
            "replied to message %s (%d part%s)",
            message.message_id,
            len(outbound) + first,
            "" if len(outbound) + first == 1 else "s",
        )
        # Shielded: once the platform has the reply, the inbox must learn it even if a
        # hard shutdown is cancelling us right now (else a restart would resume it, and
        # only the uuid would stop a second post).
        with anyio.CancelScope(shield=True):
            for message_id in message.answered_ids:
                await self._store.mark_done(message_id)

    @staticmethod
    async def _after_stream(
        stream: StreamingCard | None, reply: Reply
    ) -> tuple[list[OutboundMessage], int]:
        """What is left to post once the agent answered, and the index of its first part.

        A streamed card that went out holds the answer once it is finished; what it cannot
        hold (a confirmation card, or the answer when finishing failed) follows it under
        the next uuids, so nothing is lost and nothing Lark already has is sent again.
        """
        if stream is None or not stream.started:
            return render_reply(reply), 0
        # The card holds what one message may; the rest follows it, as a long answer's
        # parts always do.
        parts = render_reply(Reply(reply.text, markdown=True))
        head = _words(parts[0]) if parts else reply.text
        finished = await stream.finish(head)
        rest = parts[1:] if finished else parts
        if reply.card is not None:
            rest = render_reply(Reply(reply.text, card=reply.card))
        return rest, 1


def _words(part: OutboundMessage) -> str:
    """The text of a rendered message: a card's markdown or a text message's text."""
    if part.msg_type == "text":
        return str(part.content.get("text", ""))
    elements = (part.content.get("body") or {}).get("elements") or [{}]
    return str(elements[0].get("content", ""))
