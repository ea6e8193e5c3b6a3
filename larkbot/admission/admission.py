"""Admission: decide, within milliseconds, what happens to each data frame.

Order of the checks (each is cheap; the first that fails decides the outcome)::

    frame type ─▶ size ─▶ parse ─▶ event type ─▶ self ─▶ stale ─▶ policy
        ─▶ room in dispatch ─▶ durable admit (dedup + inbox) ─▶ submit ─▶ ack 200

Card action callbacks (``card.action.trigger``, arriving as ``event`` frames, or as
``card`` frames on some deployments) take a side road after the parse: dedup by event id,
then the :class:`~larkbot.core.cards.CardActions` handler, whose answer is the ack's data.

Room is reserved *before* the message is recorded as seen. When dispatch's backlog is
full, the message *spills*: it is admitted to the inbox all the same and acked, and
dispatch keeps only its place in line until it has room (see
:mod:`larkbot.dispatch.dispatcher`). Only when that overflow is full too, or the message's
chat already has its bound of messages waiting (or the store cannot spill), does the daemon
answer a non-200 ack, and the platform re-delivers later, so overload never loses a message.
The admit step writes the message to the inbox *before* the ack is sent, so a crash after
the ack loses nothing either.

With a queue shared by several replicas (:class:`SharedQueue`, the Redis store), the last
three steps are one: the message is deduplicated and queued in its chat's partition,
atomically, before the ack, and the replica that owns the partition answers it. A queue
that cannot be reached means a non-200 ack, never a 200 for a message not stored.

Two ways in: awaiting :meth:`Admission.__call__` (the webhook, tests), or
:meth:`Admission.offer` (the long connection), which answers every decision that needs no
wait in the caller's own pass and a store admit from the store's callback, so a frame
needs no task of its own; what has to wait (card actions, the shared queue, a store
without callbacks) is handed back to the caller to await.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Protocol, cast

from cachetools import TTLCache

from larkbot.admission.events import (
    CARD_ACTION_TRIGGER,
    MESSAGE_RECEIVE,
    EventEnvelope,
    message_from_event,
    parse_envelope,
)
from larkbot.core.cards import CardAction, CardActions, CardAnswer
from larkbot.core.frames import ACK_FAILED, ACK_OVERLOADED, Ack, InboundFrame, Respond
from larkbot.core.message import InboundMessage
from larkbot.ops import metrics
from larkbot.ops.logging import log_context

__all__ = [
    "Admission",
    "AdmissionPolicy",
    "AdmissionQueue",
    "AdmissionStore",
    "AdmitsWithoutWaiting",
    "BotIdentity",
    "Enqueued",
    "SharedQueue",
    "SpillSlot",
]

log = logging.getLogger("larkbot.admission")

_ACK_TAKEN = Ack()
# Frame types admission reads: lark-oapi drops ``card`` frames; we take card callbacks
# from them.
_EVENT_FRAMES = frozenset({"event", "card"})
# A redelivered callback gets the answer the first delivery got, for as long as Lark
# retries (its card token lives 30 minutes).
_CARD_ANSWER_TTL_SECONDS = 1800.0
_CARD_ANSWERS_KEPT = 10_000


class AdmissionQueue(Protocol):
    """Dispatch, as admission uses it: room is reserved before the store admits."""

    @property
    def backlog(self) -> int:
        """Messages queued or being answered."""
        ...

    def reserve(self, chat_id: str) -> bool:
        """Hold room for one message of ``chat_id``; ``False`` when there is none."""
        ...

    def release(self, chat_id: str) -> None:
        """Give back a reservation."""
        ...

    def spill(self, message_id: str, chat_id: str) -> SpillSlot | None:
        """Hold a place in line for a message kept in the store; ``None`` when full.

        Full means the overflow is, or the message's chat has its bound of messages waiting.
        """
        ...

    def submit(self, message: InboundMessage, *, force: bool = False) -> bool:
        """Queue an admitted message for an answer."""
        ...


class SpillSlot(Protocol):
    """A spilled message's place in dispatch's line, held while the store admits it."""

    def settle(self, admitted: bool) -> None:
        """Keep the place when the store admitted the message, give it up otherwise."""
        ...


class AdmissionStore(Protocol):
    """The seen-message ledger and inbox, as admission uses them."""

    async def admit(self, message: InboundMessage) -> bool:
        """Record ``message`` as seen and pending; ``False`` when it was seen before."""
        ...


class AdmitsWithoutWaiting(Protocol):
    """A store that answers an admit through a callback instead of an awaited result."""

    def admit_nowait(
        self, message: InboundMessage, then: Callable[[bool, BaseException | None], None]
    ) -> None:
        """Record ``message``; ``then(admitted, error)`` runs on the loop once it is durable.

        Callbacks run in the order their messages were given.
        """
        ...


class Enqueued(Enum):
    """What a shared queue did with a message."""

    NEW = "new"
    """Stored and queued: ack it; the owner of its partition answers it."""
    DUPLICATE = "duplicate"
    """Seen before (a re-delivery, maybe to another replica): ack it, nothing more."""
    UNAVAILABLE = "unavailable"
    """Not stored (the queue failed or was too slow): refuse the ack so Lark re-delivers."""


class SharedQueue(Protocol):
    """A queue every replica shares, as admission uses it: the durable step before the ack."""

    async def enqueue(self, message: InboundMessage) -> Enqueued:
        """Record ``message`` as seen and queue it, in one atomic step, within a bound."""
        ...


@dataclass(slots=True)
class BotIdentity:
    """The bot's own ids, known once ``bot/v3/info`` has answered."""

    open_id: str | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """Which messages deserve an answer."""

    stale_after_seconds: float = 1800.0
    respond_to_mention_all: bool = False
    max_payload_bytes: int = 1_048_576
    allowed_users: frozenset[str] | None = None
    allowed_chats: frozenset[str] | None = None


@dataclass(slots=True)
class Admission:
    """The frame handler given to the long connection; returns the ack code.

    With ``shared`` set, accepted messages go to that queue instead of ``store`` and
    ``dispatcher`` (which are then not used).
    """

    store: AdmissionStore | None
    dispatcher: AdmissionQueue | None
    identity: BotIdentity
    policy: AdmissionPolicy = field(default_factory=AdmissionPolicy)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    card_actions: CardActions | None = None
    events_handled: int = 0
    shared: SharedQueue | None = None
    card_action_seconds: float = 0.0
    _card_answers: TTLCache[str, bytes] = field(
        default_factory=lambda: TTLCache(_CARD_ANSWERS_KEPT, _CARD_ANSWER_TTL_SECONDS)
    )

    async def __call__(self, frame: InboundFrame) -> Ack:
        """Admit one data frame; see the module docstring for the order of checks."""
        self.events_handled += 1
        checked = self._check(frame)
        if isinstance(checked, Ack):
            return checked
        envelope = checked
        if envelope.header.event_type == CARD_ACTION_TRIGGER:
            return await self._card_action(envelope, frame)
        assert envelope.message_event is not None
        message = message_from_event(envelope, self.identity.open_id)
        with log_context(message.message_id, message.chat_id):
            return await self._admit(
                message, envelope.header.event_type, envelope.message_event.sender.sender_type
            )

    def offer(self, frame: InboundFrame, respond: Respond) -> Awaitable[Ack] | None:
        """Admit one data frame without a task: ``respond`` gets its ack, maybe later.

        Every decision admission makes without waiting is answered here, in the caller's
        pass; a message for the local store is handed to it with a callback that does what
        :meth:`_admit` does after its await and then responds, in the same loop pass as the
        store's commit is reported. With 100 frames in flight that saves each ack two passes
        of the loop (a task's start and its resume after the admit: p99 3-7 and 4-6 ms).

        :returns: ``None`` when ``respond`` is (or was) called; otherwise the awaitable the
            caller must run to get the ack (card actions, the shared queue, a store that
            only answers an await), and ``respond`` is not called.
        """
        store = self.store
        if self.shared is not None or self.dispatcher is None or not hasattr(store, "admit_nowait"):
            return self(frame)
        self.events_handled += 1
        checked = self._check(frame)
        if isinstance(checked, Ack):
            respond(checked)
            return None
        envelope = checked
        if envelope.header.event_type == CARD_ACTION_TRIGGER:
            return self._card_action(envelope, frame)
        event = envelope.message_event
        assert event is not None
        message = message_from_event(envelope, self.identity.open_id)
        with log_context(message.message_id, message.chat_id):
            self._admit_soon(
                cast(AdmitsWithoutWaiting, store),
                message,
                envelope.header.event_type,
                event.sender.sender_type,
                respond,
            )
        return None

    def _check(self, frame: InboundFrame) -> Ack | EventEnvelope:
        """The checks before the policy's: the ack when they decide, else the parsed event.

        The event returned is a card action (``card_action`` set) or a received message
        (``message_event`` set), told apart by its event type.
        """
        if frame.frame_type not in _EVENT_FRAMES:
            log.debug("ignored a %r frame %s", frame.frame_type, frame.frame_id)
            return self._outcome(frame.frame_type or "unknown", "unsupported")
        if len(frame.payload) > self.policy.max_payload_bytes:
            log.warning(
                "dropped frame %s: payload of %d bytes is over the %d-byte limit",
                frame.frame_id,
                len(frame.payload),
                self.policy.max_payload_bytes,
            )
            return self._outcome("unknown", "invalid")
        try:
            envelope = parse_envelope(frame.payload)
        except ValueError as exc:
            # Re-delivery would bring the same bytes: ack it, say why, move on.
            log.warning("dropped frame %s: %s", frame.frame_id, exc)
            return self._outcome("unknown", "invalid")
        event_type = envelope.header.event_type
        if event_type == CARD_ACTION_TRIGGER and envelope.card_action is not None:
            return envelope
        # A ``card`` frame carries card callbacks only; anything else in one is not ours.
        if (
            frame.frame_type != "event"
            or event_type != MESSAGE_RECEIVE
            or envelope.message_event is None
        ):
            log.debug("ignored event type %s (event %s)", event_type, envelope.header.event_id)
            return self._outcome(event_type, "unsupported")
        return envelope

    async def _admit(self, message: InboundMessage, event_type: str, sender_type: str) -> Ack:
        outcome = self._policy_outcome(message, sender_type)
        if outcome is not None:
            log.info("skipped message %s: %s", message.message_id, outcome)
            return self._outcome(event_type, outcome)

        if self.shared is not None:
            return await self._enqueue_shared(self.shared, message, event_type)
        assert self.store is not None
        room = self._hold_room(message, event_type)
        if isinstance(room, Ack):
            return room
        admitted = False
        try:
            admitted = await self.store.admit(message)
        finally:
            self._give_back(message, room, admitted)
        return self._admitted(message, event_type, room, admitted)

    def _admit_soon(
        self,
        store: AdmitsWithoutWaiting,
        message: InboundMessage,
        event_type: str,
        sender_type: str,
        respond: Respond,
    ) -> None:
        """:meth:`_admit` for a store with ``admit_nowait``: the rest runs in its callback."""
        outcome = self._policy_outcome(message, sender_type)
        if outcome is not None:
            log.info("skipped message %s: %s", message.message_id, outcome)
            respond(self._outcome(event_type, outcome))
            return
        room = self._hold_room(message, event_type)
        if isinstance(room, Ack):
            respond(room)
            return

        def then(admitted: bool, error: BaseException | None) -> None:
            # Runs from the store's loop callback, outside any task: the ids go on the log
            # lines (and on the tasks dispatch starts here) through this block.
            with log_context(message.message_id, message.chat_id):
                try:
                    self._give_back(message, room, admitted)
                    if error is not None:
                        # As an awaited admit's error would: a non-200 ack, Lark retries.
                        log.error(
                            "could not admit message %s: %s",
                            message.message_id,
                            error,
                            exc_info=error,
                        )
                        ack = Ack(ACK_FAILED)
                    else:
                        ack = self._admitted(message, event_type, room, admitted)
                except Exception:
                    # A bug here must not lose the event: a non-200 ack makes Lark retry it.
                    log.exception("admitting message %s failed", message.message_id)
                    ack = Ack(ACK_FAILED)
                respond(ack)

        # The last step: once the store has the message, nothing here may raise. A store
        # that refuses it at once (closed) gives the room back, as an awaited admit does.
        try:
            store.admit_nowait(message, then)
        except BaseException:
            self._give_back(message, room, False)
            raise

    def _hold_room(self, message: InboundMessage, event_type: str) -> SpillSlot | Ack | None:
        """Reserve room in dispatch (``None``), or a spill slot; the refusal's ack if neither.

        Room is reserved before the store admits, so a message recorded as seen always has
        a place to go.
        """
        assert self.dispatcher is not None
        if self.dispatcher.reserve(message.chat_id):
            return None
        spilled = self.dispatcher.spill(message.message_id, message.chat_id)
        if spilled is None:
            log.warning(
                "refused message %s for now: its chat or the backlog (%d) is full; "
                "Lark will re-deliver it",
                message.message_id,
                self.dispatcher.backlog,
            )
            self._outcome(event_type, "overloaded")
            return Ack(ACK_OVERLOADED)
        return spilled

    def _give_back(
        self, message: InboundMessage, spilled: SpillSlot | None, admitted: bool
    ) -> None:
        """Release the reservation, or settle the spill slot, once the store has answered."""
        assert self.dispatcher is not None
        if spilled is None:
            self.dispatcher.release(message.chat_id)
        else:
            spilled.settle(admitted)

    def _admitted(
        self, message: InboundMessage, event_type: str, spilled: SpillSlot | None, admitted: bool
    ) -> Ack:
        """What follows a store's answer: skip a duplicate, else queue for an answer."""
        assert self.dispatcher is not None
        if not admitted:
            log.info("skipped message %s: duplicate delivery", message.message_id)
            return self._outcome(event_type, "duplicate")
        if spilled is not None:
            # Pending in the inbox; dispatch reads it back once it has room.
            log.debug("accepted message %s into the store: backlog full", message.message_id)
            return self._outcome(event_type, "accepted")
        # The reservation held the room until now; force skips a second check that a
        # shutdown (stop_accepting) could fail after the message is already in the inbox,
        # where it would then wait for the next start.
        self.dispatcher.submit(message, force=True)
        log.debug("accepted message %s", message.message_id)
        return self._outcome(event_type, "accepted")

    async def _enqueue_shared(
        self, shared: SharedQueue, message: InboundMessage, event_type: str
    ) -> Ack:
        outcome = await shared.enqueue(message)
        if outcome is Enqueued.UNAVAILABLE:
            log.warning(
                "refused message %s for now: the shared queue did not store it; Lark will "
                "re-deliver it",
                message.message_id,
            )
            self._outcome(event_type, "unavailable")
            return Ack(ACK_OVERLOADED)
        if outcome is Enqueued.DUPLICATE:
            log.info("skipped message %s: duplicate delivery", message.message_id)
            return self._outcome(event_type, "duplicate")
        log.debug("accepted message %s into the shared queue", message.message_id)
        return self._outcome(event_type, "accepted")

    async def _card_action(self, envelope: EventEnvelope, frame: InboundFrame) -> Ack:
        """Answer a card callback; the answer travels back in the ack."""
        assert envelope.card_action is not None
        event = envelope.card_action
        event_id = envelope.header.event_id
        context = {"message_id": event.context.open_message_id, "event_id": event_id}
        if self.card_actions is None:
            log.info(
                "ignored a card action on %s: no handler", context["message_id"], extra=context
            )
            return self._outcome(CARD_ACTION_TRIGGER, "unsupported")
        if event_id and (answer := self._card_answers.get(event_id)) is not None:
            log.info(
                "card action %s on %s delivered again: same answer",
                event_id,
                context["message_id"],
                extra=context,
            )
            self._outcome(CARD_ACTION_TRIGGER, "duplicate")
            return Ack(data=answer)
        action = CardAction(
            event_id=event_id,
            operator_open_id=event.operator.open_id,
            value=event.action.value,
            tag=event.action.tag,
            open_message_id=event.context.open_message_id,
            open_chat_id=event.context.open_chat_id,
            token=event.token,
        )
        started = time.perf_counter()
        try:
            result = await self.card_actions.on_action(action)
        except Exception:
            # The click must still get an answer in time; the handler's bug is logged.
            log.exception("card action on %s failed", context["message_id"], extra=context)
            result = CardAnswer(toast="Something went wrong.", toast_type="error")
        self.card_action_seconds = time.perf_counter() - started
        data = result.to_json()
        if event_id:
            self._card_answers[event_id] = data
        log.info(
            "answered card action %s on %s in %.0f ms",
            event_id,
            context["message_id"],
            self.card_action_seconds * 1000,
            extra=context,
        )
        self._outcome(CARD_ACTION_TRIGGER, "accepted")
        return Ack(data=data)

    def _policy_outcome(self, message: InboundMessage, sender_type: str) -> str | None:
        if sender_type == "app" or (
            self.identity.open_id is not None and message.sender_open_id == self.identity.open_id
        ):
            return "self"
        age = (self.clock() - message.created_at).total_seconds()
        if age > self.policy.stale_after_seconds:
            return "stale"
        if message.chat_type != "p2p" and not (
            message.mentions_bot or (message.mentions_all and self.policy.respond_to_mention_all)
        ):
            return "unmentioned"
        allowed_chats = self.policy.allowed_chats
        if allowed_chats is not None and message.chat_id not in allowed_chats:
            return "not_allowed"
        if (
            self.policy.allowed_users is not None
            and message.sender_open_id not in self.policy.allowed_users
        ):
            return "not_allowed"
        return None

    @staticmethod
    def _outcome(event_type: str, outcome: str) -> Ack:
        metrics.labelled(metrics.EVENTS_RECEIVED, event_type, outcome).inc()
        return _ACK_TAKEN
