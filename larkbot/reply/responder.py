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

from larkbot.core.agent import Agent
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.core.streaming import current_reply_stream
from larkbot.lark.client import LarkAPIError, LarkClient
from larkbot.ops import metrics
from larkbot.ops.logging import log_context
from larkbot.reply._posting import ReplyPoster
from larkbot.reply.streaming import StreamingCard, finish_stream
from larkbot.store.ledger import StoreError
from larkbot.store.streamed import StreamedCard

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

    async def streamed_card(self, message_id: str) -> StreamedCard | None:
        """The streamed card an earlier attempt at this answer kept, if any."""
        ...

    async def keep_streamed_card(self, message_id: str, card: StreamedCard) -> None:
        """Keep the streamed card of the answer to ``message_id`` for a later attempt."""
        ...


class ConversationSource(Protocol):
    """The conversation cache, as the responder uses it."""

    def get(self, key: str) -> Conversation:
        """The conversation for ``key``, created when missing."""
        ...


class Responder:
    """Answers one message: agent, render, post, record.

    With ``streaming``, a brain that writes its answer piece by piece (the LLM) shows it
    in a CardKit card as it comes; CardKit refusing costs nothing but the animation. The
    card is kept in the store before it is sent, so an answer resumed after a crash goes
    into the same card (its reply uuid could only return that card anyway).
    ``reply_in_thread`` and ``working_reaction_after`` are as for
    :class:`~larkbot.reply._posting.ReplyPoster`.
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
        self._store = store
        self._conversations = conversations
        # The poster alone talks to Lark: the client and the thread choice are its.
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
        stream = await self._stream(message) if self._streaming else None
        try:
            token = current_reply_stream.set(stream)
            try:
                reply = await self._poster.think(self._agent, message, conversation, reactions)
            finally:
                current_reply_stream.reset(token)
            outbound, first = await finish_stream(stream, reply)
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

    async def _stream(self, message: InboundMessage) -> StreamingCard:
        """The streaming card of this answer: the one an earlier attempt kept, or a new one."""
        journal = _InboxJournal(self._store, message.message_id)
        try:
            resumed = await self._store.streamed_card(message.message_id)
        except StoreError as exc:
            log.warning("message %s: could not read its streamed card: %s", message.message_id, exc)
            resumed = None
        if resumed is not None:
            log.info(
                "message %s: continuing the streamed card an earlier attempt sent",
                message.message_id,
            )
        return self._poster.streaming_card(message, journal=journal, resumed=resumed)


class _InboxJournal:
    """Keeps a streamed card in the inbox store, beside the message it answers."""

    def __init__(self, store: ResponderStore, message_id: str) -> None:
        self._store = store
        self._message_id = message_id

    async def keep(self, card: StreamedCard) -> bool:
        try:
            await self._store.keep_streamed_card(self._message_id, card)
        except StoreError as exc:
            log.warning("message %s: could not keep its streamed card: %s", self._message_id, exc)
            return False
        return True
