"""Card action callbacks as the stages see them: the action, its answer, the handler seam.

Admission parses a ``card.action.trigger`` callback into a :class:`CardAction` and hands it
to the :class:`CardActions` handler the daemon wires in; the handler's :class:`CardAnswer`
goes back to Lark in the ack (long connection) or as the HTTP body (webhook) within 3 s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["CardAction", "CardActions", "CardAnswer", "ToastType"]

ToastType = Literal["info", "success", "error", "warning"]


@dataclass(frozen=True, slots=True)
class CardAction:
    """One click (or other action) on a card the bot sent.

    ``value`` is what the card's component carries (an object or a string); ``token`` is
    Lark's delayed-update token for the card (valid 30 minutes, at most two uses).
    """

    event_id: str
    operator_open_id: str
    value: Mapping[str, Any] | str
    tag: str
    open_message_id: str
    open_chat_id: str
    token: str = ""

    def value_of(self, key: str) -> str | None:
        """The string under ``key`` in an object ``value``; ``None`` otherwise."""
        if isinstance(self.value, Mapping):
            found = self.value.get(key)
            return found if isinstance(found, str) else None
        return None


@dataclass(frozen=True, slots=True)
class CardAnswer:
    """What the bot answers to a card action: a toast, a new card, both or neither."""

    toast: str | None = None
    toast_type: ToastType = "info"
    card: Mapping[str, Any] | None = None

    def to_json(self) -> bytes:
        """The callback response body Lark expects (``{}`` changes nothing)."""
        body: dict[str, Any] = {}
        if self.toast is not None:
            body["toast"] = {"type": self.toast_type, "content": self.toast}
        if self.card is not None:
            body["card"] = {"type": "raw", "data": dict(self.card)}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class CardActions(Protocol):
    """Whatever answers card actions (the write confirmations, for one)."""

    async def on_action(self, action: CardAction) -> CardAnswer:
        """Answer ``action``; must return well within Lark's 3 s."""
        ...
