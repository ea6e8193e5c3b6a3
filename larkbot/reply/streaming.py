"""Streaming an answer into a CardKit card as the agent writes it.

The card entity is created (``POST cardkit/v1/cards``, streaming mode on) and sent as the
reply only when the first text or status arrives, so answers that never stream (commands,
the offline brain) take the usual path. Updates are throttled like lark-oapi's own
channel: at most one per 100 ms unless 50 new characters are waiting, and only the newest
text is ever sent (superseded ones are dropped). Every operation on the card carries a
strictly increasing ``sequence``. Any CardKit refusal before the card was sent leaves
:attr:`StreamingCard.failed` set and nothing posted, so the reply stage posts the answer
the usual way: it is neither lost nor repeated.

An answer may take more than one attempt (a crash and a resume, a replica taking over
another's partition). Replying again under the first message's uuid only returns the card
Lark already has, so the card must be kept: with a :class:`CardJournal` the card id is
kept before the card is sent, with a ceiling on the ``sequence`` numbers used (raised a
block at a time), and a later attempt, given that :class:`~larkbot.store.streamed.
StreamedCard`, puts the answer into the same card with numbers above the ceiling.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from larkbot.core.agent import Reply
from larkbot.lark.client import LarkAPIError, LarkClient, reply_uuid
from larkbot.reply.render import OutboundMessage, render_reply
from larkbot.store.streamed import StreamedCard

__all__ = ["CardJournal", "StreamingCard", "finish_stream"]

log = logging.getLogger("larkbot.reply")

_TEXT_ELEMENT = "answer"
_STATUS_ELEMENT = "status"
_MIN_INTERVAL = 0.1
_MIN_NEW_CHARS = 50
_SUMMARY_CHARS = 60
# Beyond what one message holds (render's limit), the card stops growing while streaming;
# finish() puts in its share and the rest follows as further messages.
_MAX_STREAMED_CHARS = 4_000
_CREATE_ROUTE = "cardkit/v1/cards"
_CONTENT_ROUTE = "cardkit/v1/cards/{card_id}/elements/{element_id}/content"
_SETTINGS_ROUTE = "cardkit/v1/cards/{card_id}/settings"
_CARD_ROUTE = "cardkit/v1/cards/{card_id}"
# What the status element shows when idle: a markdown element needs some content.
_NO_STATUS = " "
# What a resumed card's status element may show: unknown, so finishing clears it.
_UNKNOWN_STATUS = ""
# Sequence numbers reserved in the journal at a time: one journal write per this many
# operations on the card.
_SEQUENCE_BLOCK = 20
# CardKit's refusals of a content update to a card whose streaming mode is over.
_STREAMING_OVER = frozenset({300309, 200850})


class CardJournal(Protocol):
    """Where the card of one answer is kept for a later attempt at the same answer."""

    async def keep(self, card: StreamedCard) -> bool:
        """Keep ``card``; ``False`` when it could not be kept (this attempt must stop)."""
        ...


class _NotKept(Exception):  # noqa: N818 (a state, not a failure of ours)
    """The journal refused the card: another attempt owns the answer now."""


class StreamingCard:
    """One streamed answer to ``message_id``; feed it text, then :meth:`finish` it.

    :param journal: where the card is kept for a later attempt; ``None``: nowhere.
    :param resumed: the card an earlier attempt kept: this one continues it.
    :param clock: monotonic seconds, for the throttle (tests may move it).
    """

    def __init__(
        self,
        client: LarkClient,
        message_id: str,
        *,
        reply_in_thread: bool = False,
        journal: CardJournal | None = None,
        resumed: StreamedCard | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._message_id = message_id
        self._reply_in_thread = reply_in_thread
        self._journal = journal
        self._resumed = resumed
        self._clock = clock
        self.card_id: str | None = None
        self.sent = False
        self.failed = False
        self._sequence = 0
        # No operation may use a number above it before the journal kept a higher one.
        self._ceiling: int | None = 0 if journal is not None else None
        self._finished = False
        self._shown = ""
        self._pending: str | None = None
        self._status = _NO_STATUS
        self._last_update = 0.0
        if resumed is not None:
            self.card_id = resumed.card_id
            self._sequence = resumed.sequence_ceiling
            self._ceiling = resumed.sequence_ceiling if journal is not None else None
            self._finished = resumed.finished
            self._status = _UNKNOWN_STATUS

    @property
    def started(self) -> bool:
        """Whether the card went out as the reply (the answer then belongs in it).

        A resumed card counts as sent: an earlier attempt may have sent it, and its uuid
        would return it to any other first message of the answer.
        """
        return self.sent or self._resumed is not None

    async def text(self, so_far: str) -> None:
        """Show ``so_far`` when the throttle allows; otherwise keep it as the next update."""
        if self.failed or len(so_far) > _MAX_STREAMED_CHARS:
            return
        self._pending = so_far
        if not await self._open():
            return
        due = self._clock() - self._last_update >= _MIN_INTERVAL
        if due or len(so_far) - len(self._shown) >= _MIN_NEW_CHARS:
            await self._flush()

    async def status(self, line: str) -> None:
        """Show ``line`` under the text (a tool call running); ``""`` clears it."""
        if self.failed or not await self._open():
            return
        shown = line or _NO_STATUS
        if shown != self._status:
            self._status = shown
            try:
                await self._update(_STATUS_ELEMENT, shown)
            except (LarkAPIError, _NotKept) as exc:
                self._lost_update(exc)

    async def finish(self, text: str) -> bool:
        """Put the whole ``text`` in the card and close streaming; ``False`` if it could not.

        When this returns ``False`` and the card was never sent, the caller posts ``text``
        the usual way. A resumed card an earlier attempt finished is left as it is.
        """
        if self.failed or not self.started:
            return False
        if self._finished:
            return True
        if not await self._open():
            return False
        try:
            if self._status != _NO_STATUS:
                self._status = _NO_STATUS
                await self._update(_STATUS_ELEMENT, _NO_STATUS)
            if text != self._shown:
                await self._update(_TEXT_ELEMENT, text)
                self._shown = text
            summary = " ".join(text.split())[:_SUMMARY_CHARS]
            settings = {"config": {"streaming_mode": False, "summary": {"content": summary}}}
            await self._call(
                "PATCH",
                f"cardkit/v1/cards/{self.card_id}/settings",
                _SETTINGS_ROUTE,
                {"settings": json.dumps(settings, ensure_ascii=False)},
            )
        except LarkAPIError as exc:
            if exc.code not in _STREAMING_OVER or not await self._replace(text):
                self._finish_failed(exc)
                return False
        except _NotKept as exc:
            self._finish_failed(exc)
            return False
        self._finished = True
        # For a later attempt (the finish of the message may still be lost): the card holds
        # the answer, nothing more to do in it. Losing this only costs that attempt a retry.
        await self._keep(self._sequence)
        return True

    async def _replace(self, text: str) -> bool:
        """Replace the whole card by the finished answer (its streaming mode is over)."""
        card = _card(text, streaming=False)
        try:
            await self._call(
                "PUT",
                f"cardkit/v1/cards/{self.card_id}",
                _CARD_ROUTE,
                {"card": {"type": "card_json", "data": json.dumps(card, ensure_ascii=False)}},
            )
        except (LarkAPIError, _NotKept) as exc:
            log.info("could not replace the card of message %s: %s", self._message_id, exc)
            return False
        self._shown = text
        return True

    def _finish_failed(self, exc: Exception) -> None:
        self._log(logging.WARNING, "could not finish the streamed card of message %s: %s", exc)

    def _log(self, level: int, template: str, exc: Exception) -> None:
        """Log what befell the card: ``template`` takes the message id, then ``exc``."""
        log.log(level, template, self._message_id, exc, extra={"message_id": self._message_id})

    async def _open(self) -> bool:
        """Create the card entity (unless resumed) and reply with it, once.

        ``False`` if CardKit refused, or the journal could not keep the card.
        """
        if self.sent:
            return True
        if self.failed:
            return False
        try:
            if self.card_id is None:
                created = await self._client.request(
                    "POST",
                    _CREATE_ROUTE,
                    route=_CREATE_ROUTE,
                    json={
                        "type": "card_json",
                        "data": json.dumps(_card("", streaming=True), ensure_ascii=False),
                    },
                    write=True,
                )
                self.card_id = str(created["card_id"])
                # Kept before it is sent: once it is, nothing but this card can be the
                # answer's first message.
                if not await self._keep(_SEQUENCE_BLOCK):
                    raise _NotKept("another attempt answers this message now")
            # The uuid of the answer's first message: a normal reply posted later for the
            # same message could never appear beside this card. A resumed card replied
            # again only gets the message Lark already has (or sends it, if it never went).
            await self._client.reply(
                self._message_id,
                msg_type="interactive",
                content={"type": "card", "data": {"card_id": self.card_id}},
                uuid=reply_uuid(self._message_id, 0),
                reply_in_thread=self._reply_in_thread,
            )
        except (LarkAPIError, KeyError, _NotKept) as exc:
            self.failed = True
            self._log(
                logging.WARNING,
                "streaming card refused for message %s, answering without it: %s",
                exc,
            )
            return False
        self.sent = True
        return True

    async def _keep(self, ceiling: int) -> bool:
        """Keep the card with ``ceiling`` in the journal; ``True`` without a journal."""
        if self._journal is None or self.card_id is None:
            return True
        card = StreamedCard(card_id=self.card_id, sequence_ceiling=ceiling, finished=self._finished)
        if not await self._journal.keep(card):
            return False
        self._ceiling = ceiling
        return True

    def _lost_update(self, exc: Exception) -> None:
        if isinstance(exc, _NotKept):
            # Another attempt owns the card now: this one must not touch it again.
            self.failed = True
        # The final text still goes in at finish(); one lost frame only costs smoothness.
        self._log(logging.INFO, "a streamed update of message %s failed: %s", exc)

    async def _flush(self) -> None:
        if self._pending is None or self._pending == self._shown:
            return
        text, self._pending = self._pending, None
        try:
            await self._update(_TEXT_ELEMENT, text)
        except (LarkAPIError, _NotKept) as exc:
            self._lost_update(exc)
            return
        self._shown = text

    async def _update(self, element_id: str, content: str) -> None:
        self._last_update = self._clock()
        await self._call(
            "PUT",
            f"cardkit/v1/cards/{self.card_id}/elements/{element_id}/content",
            _CONTENT_ROUTE,
            {"content": content},
        )

    async def _call(self, method: str, path: str, route: str, body: dict[str, Any]) -> None:
        # Strictly increasing over every operation on the card, failed ones included: a
        # call that reached Lark may have used its number. Above the kept ceiling only
        # once the journal kept a higher one, so a later attempt starts above them all.
        self._sequence += 1
        above = self._ceiling is not None and self._sequence > self._ceiling
        if above and not await self._keep(self._sequence + _SEQUENCE_BLOCK - 1):
            raise _NotKept("another attempt answers this message now")
        await self._client.request(
            method, path, route=route, json={**body, "sequence": self._sequence}, write=True
        )


def _card(text: str, *, streaming: bool) -> dict[str, Any]:
    """The card (JSON 2.0) of a streamed answer: ``text`` and an idle status line."""
    config: dict[str, Any] = {"streaming_mode": streaming}
    if streaming:
        config["summary"] = {"content": "…"}
        config["streaming_config"] = {"print_frequency_ms": {"default": 50}}
    else:
        config["summary"] = {"content": " ".join(text.split())[:_SUMMARY_CHARS]}
    return {
        "schema": "2.0",
        "config": config,
        "body": {
            "elements": [
                {"tag": "markdown", "element_id": _TEXT_ELEMENT, "content": text},
                {"tag": "markdown", "element_id": _STATUS_ELEMENT, "content": _NO_STATUS},
            ]
        },
    }


async def finish_stream(
    stream: StreamingCard | None, reply: Reply
) -> tuple[list[OutboundMessage], int]:
    """What is left to post once the agent answered, and the index of its first part.

    A streamed card that went out holds the answer once it is finished; what it cannot
    hold (a confirmation card, or the answer when finishing failed) follows it under the
    next uuids, so nothing is lost and nothing Lark already has is sent again.
    """
    if stream is None or not stream.started:
        return render_reply(reply), 0
    # The card holds what one message may; the rest follows it, as a long answer's parts
    # always do.
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
