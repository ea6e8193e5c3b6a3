"""Answering on a store shared by replicas (Redis): owned work in, a fenced finish out.

With ``store.backend = redis`` admission only queues a message in its chat's partition;
the replica that holds the partition's lease answers it. :class:`OwnedWork` moves the
items of this replica's partitions (in stream order per partition) into dispatch, which
keeps per-chat order and the concurrency limit as on one replica, and
:class:`SharedResponder` answers them::

    ownership.items ─▶ OwnedWork.feed ─▶ dispatch (per chat) ─▶ SharedResponder.answer
                                                                  history from Redis
                                                                  answer cached? reuse it
                                                                  else agent (streamed into
                                                                    a card), cache it
                                                                  finish the card, post the
                                                                    rest (uuid of the message)
                                                                  fenced finish

Why each step is where it is:

- The answer is stored (first one wins) *before* it is posted: an owner that dies after
  posting leaves the text behind, the next owner posts the very same text under the same
  ``uuid`` (which Lark shows once), and the history records what the chat shows.
- The finish appends both turns, marks the message done and removes it from the stream in
  one script that checks the lease: a replica that was paused past its lease (and whose
  partition another replica took over) writes nothing.
- A streamed answer's card is kept in Redis (card id, a ceiling on its ``sequence``
  numbers) before it is sent, and the ceiling is raised a block at a time, both only
  while the lease holds. An owner taking over a half-streamed answer continues that card
  above the ceiling (or, with the answer cached, just finishes it), so the chat gets
  one answer: the card's reply uuid could only return that card anyway.
- A Redis failure while answering is retried for as long as this replica still holds the
  partition's lease; after that the message is left to the partition's next owner.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import anyio

from larkbot.agent.i18n import translate
from larkbot.core.agent import Agent, Reply
from larkbot.core.conversation import Conversation, Turn
from larkbot.core.language import Language, detect_language
from larkbot.core.message import InboundMessage
from larkbot.core.streaming import current_reply_stream
from larkbot.lark.client import LarkAPIError
from larkbot.ops import metrics
from larkbot.ops.logging import log_context
from larkbot.reply._posting import ReplyPoster
from larkbot.reply.streaming import finish_stream
from larkbot.store.redis import (
    CachedAnswer,
    ConversationChange,
    FinishOutcome,
    PartitionOwnership,
    RedisStore,
    RedisUnavailable,
    WorkItem,
)
from larkbot.store.streamed import StreamedCard

__all__ = ["OwnedWork", "SharedResponder", "WorkQueue"]

log = logging.getLogger("larkbot.reply")

T = TypeVar("T")

# Retries of a failed Redis call while the lease holds: quick at first (a blip), then
# every couple of seconds; the lease (10 s by default) bounds the whole.
_RETRY_FIRST = 0.25
_RETRY_MAX = 2.0
# How long the finish of a posted reply may hold up a hard stop.
_FINISH_SHIELD = 5.0


class WorkQueue(Protocol):
    """Dispatch, as the feed uses it."""

    async def submit_when_room(self, message: InboundMessage) -> bool:
        """Queue ``message`` behind its chat's earlier ones once there is room.

        ``False`` when dispatch no longer accepts work (shutdown).
        """
        ...


class OwnedWork:
    """This replica's work items, from the ownership feed to the answers.

    :meth:`feed` hands each item's message to dispatch and keeps the item under its message
    id, where :meth:`take` finds it when dispatch gets to the message. A message can be
    queued twice: read again under a newer lease after the partition was lost and taken
    back while its first entry still waited. Items of one message id are taken in the
    order they were queued, so each queue entry gets its own item: the older entries find
    items of the lapsed lease and are skipped, and the messages are answered under the new
    lease in stream order (an older entry answering with the newer item could answer a
    chat's second message before its first).
    """

    def __init__(self, ownership: PartitionOwnership) -> None:
        self._ownership = ownership
        self._items: dict[str, deque[WorkItem]] = {}

    def __len__(self) -> int:
        """Items handed to dispatch and not yet taken."""
        return sum(len(items) for items in self._items.values())

    async def feed(self, queue: WorkQueue) -> None:
        """Move items into ``queue`` until the ownership feed ends; run it in a task group."""
        async for item in self._ownership.items:
            message_id = item.message.message_id
            if not item.dead_lettered and not self._ownership.is_current(item):
                # Its partition changed hands while it waited in the feed.
                self._ownership.settle(item)
                continue
            waiting = self._items.setdefault(message_id, deque())
            waiting.append(item)
            if not await queue.submit_when_room(item.message):
                # Shutting down: it stays pending in Redis for the partition's next owner.
                waiting.remove(item)
                if not waiting and self._items.get(message_id) is waiting:
                    del self._items[message_id]
                self._ownership.settle(item)

    def take(self, message_ids: Sequence[str]) -> list[WorkItem]:
        """The oldest item of each of ``message_ids`` not yet taken, in that order.

        The items are the caller's: it finishes or settles every one.
        """
        taken: list[WorkItem] = []
        for message_id in message_ids:
            waiting = self._items.get(message_id)
            if not waiting:
                continue
            taken.append(waiting.popleft())
            if not waiting:
                del self._items[message_id]
        return taken


class _Abandoned(Exception):  # noqa: N818 (a state, not a failure of ours)
    """The partition's lease no longer holds: its next owner answers the message."""


@dataclass(frozen=True, slots=True)
class _Before:
    """A conversation as it was before the agent answered, to see what the agent changed."""

    turns: tuple[Turn, ...]
    language: str | None
    profile: str | None

    @classmethod
    def of(cls, conversation: Conversation) -> _Before:
        return cls(tuple(conversation.turns), conversation.language, conversation.profile)

    def change_to(self, after: Conversation) -> ConversationChange:
        """What the agent did to the conversation, as the fenced finish will apply it.

        Turns are compared by identity: the agent appends new ones and may drop old ones
        (trimming, or the ``reset`` command). When none of the old turns is left, the
        history is emptied before the new turns are appended, which also gives the right
        result when trimming alone dropped them all.
        """
        before = {id(turn) for turn in self.turns}
        kept = {id(turn) for turn in after.turns}
        added = [turn for turn in after.turns if id(turn) not in before]
        reset = bool(self.turns) and not any(id(turn) in kept for turn in self.turns)
        return ConversationChange(
            user_text=next((t.text for t in added if t.role == "user"), None),
            answer_text=next((t.text for t in reversed(added) if t.role == "assistant"), None),
            reset=reset,
            language=after.language,
            profile=after.profile,
        )


class SharedResponder:
    """Answers the messages of this replica's partitions; the dispatch handler with Redis.

    :param agent: answers a message given its conversation.
    :param poster: runs the agent with the working reaction and posts replies.
    :param store: the Redis store (history, the answer cache).
    :param ownership: this replica's partitions (currency checks and the fenced finish).
    :param work: where the items of the messages dispatch hands over are kept.
    :param default_language: the apology's language when a message does not show one.
    :param stale_after_seconds: a message older than this when its turn comes (it waited
        out an outage of every replica, say) is settled without an answer, as the
        single-replica path drops such messages at start-up.
    :param streaming: stream answers into CardKit cards as the agent writes them.
    """

    def __init__(
        self,
        *,
        agent: Agent,
        poster: ReplyPoster,
        store: RedisStore,
        ownership: PartitionOwnership,
        work: OwnedWork,
        default_language: Language,
        stale_after_seconds: float = 1800.0,
        streaming: bool = False,
    ) -> None:
        self._agent = agent
        self._streaming = streaming
        self._poster = poster
        self._store = store
        self._ownership = ownership
        self._work = work
        self._default_language: Language = default_language
        self._stale_after = stale_after_seconds
        self.draining = False
        """Set on shutdown: messages not yet started are left to the next owners."""

    async def answer(self, message: InboundMessage) -> None:
        """Answer ``message`` (maybe a merged burst) if it is still this replica's to answer.

        Every log line emitted meanwhile, down to the tools and the Lark client, carries
        the message's ids.
        """
        with log_context(message.message_id, message.chat_id):
            await self._answer_owned(message)

    async def _answer_owned(self, message: InboundMessage) -> None:
        items = self._work.take(message.answered_ids)
        if not items:
            return
        for item in items:
            if item.dead_lettered:
                await self._apologise(item.message)
        items = [item for item in items if not item.dead_lettered]
        stale = [item for item in items if not self._ownership.is_current(item)]
        if stale:
            self._ownership.settle(stale)
            log.info(
                "message %s: partition %d changed hands, its new owner answers it",
                stale[-1].message.message_id,
                stale[-1].partition,
            )
        items = [item for item in items if item not in stale]
        if not items:
            return
        if self.draining:
            self._ownership.settle(items)
            log.info(
                "message %s: shutting down, left to the partition's next owner",
                items[-1].message.message_id,
            )
            return
        merged = InboundMessage.merge([item.message for item in items])
        waited = (datetime.now(UTC) - items[0].message.created_at).total_seconds()
        try:
            if waited > self._stale_after:
                log.warning(
                    "not answering message %s: it waited longer than the stale cutoff",
                    merged.message_id,
                )
                await self._retrying(items, "settling", lambda: self._finish(items, None))
            else:
                await self._answer(merged, items)
        except _Abandoned:
            log.warning(
                "message %s: this replica lost partition %d before finishing; its next "
                "owner answers it",
                merged.message_id,
                items[0].partition,
            )
        finally:
            # Whatever happened (an agent that raised, a hard stop), the items are no longer
            # in flight here; one not finished stays pending in Redis for the next owner,
            # and goes to the dead-letter stream if it keeps failing.
            self._ownership.settle(items)

    async def _answer(self, message: InboundMessage, items: list[WorkItem]) -> None:
        conversation, cached, card = await self._retrying(
            items, "reading the conversation", lambda: self._load(message)
        )
        stream = journal = None
        if card is not None or (self._streaming and cached is None):
            journal = _LeaseJournal(self._store, message, items[0].token)
            stream = self._poster.streaming_card(message, journal=journal, resumed=card)
            if card is not None:
                log.info(
                    "message %s: continuing the streamed card a previous owner sent",
                    message.message_id,
                )
        reactions: list[str] = []
        change: ConversationChange | None
        try:
            if cached is None:
                before = _Before.of(conversation)
                token = current_reply_stream.set(stream)
                try:
                    reply = await self._poster.think(self._agent, message, conversation, reactions)
                finally:
                    current_reply_stream.reset(token)
                stored = await self._retrying(
                    items,
                    "storing the answer",
                    lambda: self._store.put_answer(
                        message.chat_id,
                        message.message_id,
                        reply.text,
                        markdown=reply.markdown,
                        card=reply.card,
                        change=before.change_to(conversation),
                    ),
                )
            else:
                log.info(
                    "message %s: sending the answer a previous owner generated",
                    message.message_id,
                )
                stored = cached
            change = stored.change
            self._check_current(items)
            try:
                outbound, first = await finish_stream(
                    stream, Reply(stored.text, stored.markdown, stored.card)
                )
                if journal is not None and journal.fenced:
                    # The card is the next owner's now: posting the answer beside it here
                    # would show it twice (this replica's view of its leases may lag).
                    raise _Abandoned
                await self._poster.post_parts(message, outbound, first)
                parts = len(outbound) + first
            except LarkAPIError as exc:
                metrics.REPLIES.labels(outcome="failed").inc()
                log.error(
                    "reply to message %s failed: %s: %s",
                    message.message_id,
                    type(exc).__name__,
                    exc,
                )
                change = None  # the chat does not show it, so the history does not either
            else:
                metrics.REPLIES.labels(outcome="sent").inc()
                log.info(
                    "replied to message %s (%d part%s)",
                    message.message_id,
                    parts,
                    "" if parts == 1 else "s",
                )
        finally:
            await self._poster.unreact(message, reactions)
        # Shielded (for a while): the reply is out, and a shutdown cancelling us now should
        # not leave the message to be answered again (only the uuid would stop a second post).
        outcome: FinishOutcome | None = None
        with anyio.move_on_after(_FINISH_SHIELD, shield=True):
            outcome = await self._retrying(items, "finishing", lambda: self._finish(items, change))
        if outcome is FinishOutcome.FENCED:
            log.info(
                "message %s: partition %d changed hands as it was answered; the new owner "
                "records it",
                message.message_id,
                items[0].partition,
            )

    async def _load(
        self, message: InboundMessage
    ) -> tuple[Conversation, CachedAnswer | None, StreamedCard | None]:
        conversation = await self._store.conversation(message.conversation_key)
        cached = await self._store.get_answer(message.chat_id, message.message_id)
        card = await self._store.streamed_card(message.chat_id, message.message_id)
        return conversation, cached, card

    async def _finish(
        self, items: list[WorkItem], change: ConversationChange | None
    ) -> FinishOutcome:
        if change is None:
            return await self._ownership.finish(items)
        return await self._ownership.finish(items, change.finish_change())

    async def _retrying(
        self, items: list[WorkItem], what: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        """``call()``, retried on Redis failures while the lease holds.

        :raises _Abandoned: the lease no longer holds.
        """
        delay = _RETRY_FIRST
        while True:
            self._check_current(items)
            try:
                return await call()
            except RedisUnavailable as exc:
                log.warning(
                    "message %s: %s failed, retrying in %.2g s: %s",
                    items[-1].message.message_id,
                    what,
                    delay,
                    exc,
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    def _check_current(self, items: list[WorkItem]) -> None:
        if not all(self._ownership.is_current(item) for item in items):
            raise _Abandoned

    async def _apologise(self, message: InboundMessage) -> None:
        """Tell the user their message could not be answered (it failed too many times)."""
        language = detect_language(message.text) or self._default_language
        try:
            with log_context(message.message_id):
                await self._poster.post(message, Reply(translate("error", language)))
        except LarkAPIError as exc:
            log.error(
                "message %s: could not apologise for it: %s",
                message.message_id,
                exc,
            )


class _LeaseJournal:
    """Keeps a streamed card in Redis while the partition's lease is this owner's."""

    def __init__(self, store: RedisStore, message: InboundMessage, token: str) -> None:
        self._store = store
        self._message = message
        self._token = token
        self.fenced = False
        """Set once Redis refused the card because the lease is no longer this owner's."""

    async def keep(self, card: StreamedCard) -> bool:
        message = self._message
        try:
            kept = await self._store.keep_streamed_card(
                message.chat_id, message.message_id, card, token=self._token
            )
        except RedisUnavailable as exc:
            log.warning("message %s: could not keep its streamed card: %s", message.message_id, exc)
            return False
        if not kept:
            self.fenced = True
            log.info(
                "message %s: the partition changed hands, its new owner finishes the card",
                message.message_id,
            )
        return kept
