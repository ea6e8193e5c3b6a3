"""Running the agent with a "working on it" reaction, and posting a reply idempotently.

Shared by both answering paths: the :class:`~larkbot.reply.responder.Responder` and the
Redis path (:mod:`larkbot.reply.shared`), where an answer is stored before anything but
its streamed card is posted, so that the next owner of a message can post the very same
answer under the same ``uuid`` (and finish the card the previous owner streamed into).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import anyio

from larkbot.core.agent import Agent, Reply
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.lark.client import LarkAPIError, LarkClient, reply_uuid
from larkbot.reply.render import OutboundMessage, render_reply
from larkbot.reply.streaming import CardJournal, StreamingCard
from larkbot.store.streamed import StreamedCard

__all__ = ["ReplyPoster"]

log = logging.getLogger("larkbot.reply")

# The reaction shown on the user's message while the agent works.
_WORKING_EMOJI = "OnIt"


class ReplyPoster:
    """Runs the agent with a reaction when it is slow, and posts replies under fixed uuids.

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
        if self._working_reaction_after is None:
            return await agent.respond(message, conversation)
        async with anyio.create_task_group() as tg:
            # A timer rather than a task waiting beside every answer: nearly all answers
            # come before it fires, and a task started and cancelled per message cost more
            # than an echo's whole answer. Cancelled before this block ends, so the
            # reaction task, if any, lives in this task group and is waited for.
            timer = asyncio.get_running_loop().call_later(
                self._working_reaction_after, tg.start_soon, self._react, message, reactions
            )
            try:
                return await agent.respond(message, conversation)
            finally:
                timer.cancel()

    async def post(self, message: InboundMessage, reply: Reply) -> int:
        """Post ``reply`` to ``message``; return the number of parts.

        Each part carries the ``uuid`` derived from the message id and its index, so a
        post repeated by anyone (a retry, a restart, another replica) shows once.

        :raises LarkAPIError: the platform refused it or could not be reached.
        """
        outbound = render_reply(reply)
        await self.post_parts(message, outbound)
        return len(outbound)

    async def post_parts(
        self, message: InboundMessage, parts: Sequence[OutboundMessage], first: int = 0
    ) -> None:
        """Post rendered ``parts`` to ``message``, the first under uuid index ``first``.

        :raises LarkAPIError: the platform refused one or could not be reached.
        """
        in_thread = message.in_thread or self._reply_in_thread
        for index, part in enumerate(parts, first):
            await self._client.reply(
                message.message_id,
                msg_type=part.msg_type,
                content=part.content,
                uuid=reply_uuid(message.message_id, index),
                reply_in_thread=in_thread,
            )

    def streaming_card(
        self,
        message: InboundMessage,
        *,
        journal: CardJournal | None = None,
        resumed: StreamedCard | None = None,
    ) -> StreamingCard:
        """A streaming card for the answer to ``message`` (``resumed``: an earlier one's)."""
        return StreamingCard(
            self._client,
            message.message_id,
            reply_in_thread=message.in_thread or self._reply_in_thread,
            journal=journal,
            resumed=resumed,
        )

    async def unreact(self, message: InboundMessage, reactions: list[str]) -> None:
        """Remove the reactions :meth:`think` added; a failure is only logged."""
        for reaction_id in reactions:
            try:
                with anyio.move_on_after(2, shield=True):
                    await self._client.unreact(message.message_id, reaction_id)
            except LarkAPIError as exc:
                log.debug("could not remove the reaction on %s: %s", message.message_id, exc)

    async def _react(self, message: InboundMessage, reactions: list[str]) -> None:
        # Only a slow answer gets a "working on it" reaction: a fast one would just flash
        # an emoji and cost two extra API calls. A reaction is a courtesy, so its failure
        # never delays or blocks the answer.
        try:
            with anyio.move_on_after(2):
                reactions.append(await self._client.react(message.message_id, _WORKING_EMOJI))
        except LarkAPIError as exc:
            log.debug("could not add a reaction to %s: %s", message.message_id, exc)
