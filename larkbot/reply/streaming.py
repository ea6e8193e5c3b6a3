"""Streaming an answer into a CardKit card as the agent writes it.

The card entity is created (``POST cardkit/v1/cards``, streaming mode on) and sent as the
reply only when the first text or status arrives, so answers that never stream (commands,
the offline brain) take the usual path. Updates are throttled like lark-oapi's own
channel: at most one per 100 ms unless 50 new characters are waiting, and only the newest
text is ever sent (superseded ones are dropped). Every operation on the card carries a
strictly increasing ``sequence``. Any CardKit refusal before the card was sent leaves
:attr:`StreamingCard.failed` set and nothing posted, so the reply stage posts the answer
the usual way: it is neither lost nor repeated.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from larkbot.lark.client import LarkAPIError, LarkClient, reply_uuid

__all__ = ["StreamingCard"]

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
# What the status element shows when idle: a markdown element needs some content.
_NO_STATUS = " "


class StreamingCard:
    """One streamed answer to ``message_id``; feed it text, then :meth:`finish` it.

    :param clock: monotonic seconds, for the throttle (tests may move it).
    """

    def __init__(
        self,
        client: LarkClient,
        message_id: str,
        *,
        reply_in_thread: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._message_id = message_id
        self._reply_in_thread = reply_in_thread
        self._clock = clock
        self.card_id: str | None = None
        self.sent = False
        self.failed = False
        self._sequence = 0
        self._shown = ""
        self._pending: str | None = None
        self._status = _NO_STATUS
        self._last_update = 0.0

    @property
    def started(self) -> bool:
        """Whether the card went out as the reply (the answer then belongs in it)."""
        return self.sent

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
            await self._update(_STATUS_ELEMENT, shown)

    async def finish(self, text: str) -> bool:
        """Put the whole ``text`` in the card and close streaming; ``False`` if it could not.

        When this returns ``False`` and the card was never sent, the caller posts ``text``
        the usual way.
        """
        if self.failed or not self.sent:
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
            log.warning(
                "could not finish the streamed card of message %s: %s",
                self._message_id,
                exc,
                extra={"message_id": self._message_id},
            )
            return False
        return True

    async def _open(self) -> bool:
        """Create the card entity and reply with it, once; ``False`` if CardKit refused."""
        if self.sent:
            return True
        card = {
            "schema": "2.0",
            "config": {
                "streaming_mode": True,
                "summary": {"content": "…"},
                "streaming_config": {"print_frequency_ms": {"default": 50}},
            },
            "body": {
                "elements": [
                    {"tag": "markdown", "element_id": _TEXT_ELEMENT, "content": ""},
                    {"tag": "markdown", "element_id": _STATUS_ELEMENT, "content": _NO_STATUS},
                ]
            },
        }
        try:
            created = await self._client.request(
                "POST",
                _CREATE_ROUTE,
                route=_CREATE_ROUTE,
                json={"type": "card_json", "data": json.dumps(card, ensure_ascii=False)},
                write=True,
            )
            self.card_id = str(created["card_id"])
            # The uuid of the answer's first message: a normal reply posted later for the
            # same message could never appear beside this card.
            await self._client.reply(
                self._message_id,
                msg_type="interactive",
                content={"type": "card", "data": {"card_id": self.card_id}},
                uuid=reply_uuid(self._message_id, 0),
                reply_in_thread=self._reply_in_thread,
            )
        except (LarkAPIError, KeyError) as exc:
            self.failed = True
            log.warning(
                "streaming card refused for message %s, answering without it: %s",
                self._message_id,
                exc,
                extra={"message_id": self._message_id},
            )
            return False
        self.sent = True
        return True

    async def _flush(self) -> None:
        if self._pending is None or self._pending == self._shown:
            return
        text, self._pending = self._pending, None
        try:
            await self._update(_TEXT_ELEMENT, text)
        except LarkAPIError as exc:
            # The final text still goes in at finish(); one lost frame only costs smoothness.
            log.info(
                "a streamed update of message %s failed: %s",
                self._message_id,
                exc,
                extra={"message_id": self._message_id},
            )
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
        # call that reached Lark may have used its number.
        self._sequence += 1
        await self._client.request(
            method, path, route=route, json={**body, "sequence": self._sequence}, write=True
        )
