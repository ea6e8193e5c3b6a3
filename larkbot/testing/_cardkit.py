"""CardKit in the stand-in: card entities, streamed element updates and settings.

It keeps the platform's rules a client can trip over: ``sequence`` must grow strictly
across every operation on one card (300317), a card whose streaming mode is closed takes
no streamed update (300309), streaming closes itself 10 minutes after it was opened
(200850), and only ``markdown`` and ``plain_text`` elements take content. A whole card
may be replaced (``PUT cardkit/v1/cards/:card_id``), streaming or not.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from larkbot.testing._openapi import ApiError, ApiRequest, OpenApiRoute

__all__ = [
    "CARDKIT_CARD",
    "CARDKIT_CARDS",
    "CARDKIT_CONTENT",
    "CARDKIT_SETTINGS",
    "CardEntity",
    "CardKit",
]

CARDKIT_CARDS = "cardkit/v1/cards"
CARDKIT_CARD = "cardkit/v1/cards/{card_id}"
CARDKIT_CONTENT = "cardkit/v1/cards/{card_id}/elements/{element_id}/content"
CARDKIT_SETTINGS = "cardkit/v1/cards/{card_id}/settings"

_SEQUENCE_NOT_INCREASING = 300317
_STREAMING_CLOSED = 300309
_STREAMING_TIMED_OUT = 200850
_BAD_REQUEST = 99992402
_STREAMING_SECONDS = 600.0
_TEXT_TAGS = frozenset({"markdown", "plain_text"})


@dataclass(slots=True)
class CardEntity:
    """One card entity as the stand-in holds it, with every operation it took, in order."""

    card_id: str
    card: dict[str, Any]
    opened_at: float
    sequence: int = 0
    updates: list[tuple[str, str, int]] = field(default_factory=list)
    settings: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    replacements: list[tuple[dict[str, Any], int]] = field(default_factory=list)

    @property
    def streaming(self) -> bool:
        """Whether the card is still in streaming mode."""
        return bool((self.card.get("config") or {}).get("streaming_mode"))

    def element(self, element_id: str) -> dict[str, Any] | None:
        """The element with ``element_id`` in the card's body."""
        for element in (self.card.get("body") or {}).get("elements") or []:
            if isinstance(element, dict) and element.get("element_id") == element_id:
                return element
        return None

    def text(self) -> str:
        """The card's markdown and plain text, as a reader sees it now."""
        parts = []
        for element in (self.card.get("body") or {}).get("elements") or []:
            if isinstance(element, dict) and element.get("tag") in _TEXT_TAGS:
                parts.append(str(element.get("content", "")))
        return "\n".join(parts)


class CardKit:
    """The card entities created through the stand-in, by id."""

    def __init__(self) -> None:
        self.cards: dict[str, CardEntity] = {}
        self._ids = count(1)
        self.clock = time.monotonic

    def card_of(self, card_id: str) -> dict[str, Any] | None:
        """The live card of entity ``card_id`` (it changes as the entity is updated)."""
        entity = self.cards.get(card_id)
        return None if entity is None else entity.card

    def routes(self) -> list[OpenApiRoute]:
        """The CardKit routes the stand-in serves."""
        return [
            OpenApiRoute("POST", CARDKIT_CARDS, self._create),
            OpenApiRoute("PUT", CARDKIT_CONTENT, self._content),
            OpenApiRoute("PATCH", CARDKIT_SETTINGS, self._settings),
            OpenApiRoute("PUT", CARDKIT_CARD, self._replace),
        ]

    async def _create(self, request: ApiRequest) -> dict[str, Any]:
        card = _card_json(request.body)
        card_id = f"7{next(self._ids):018d}"
        self.cards[card_id] = CardEntity(card_id, card, opened_at=self.clock())
        return {"card_id": card_id}

    def _checked(self, request: ApiRequest) -> tuple[CardEntity, int]:
        entity = self.cards.get(request.path_params["card_id"])
        if entity is None:
            raise ApiError(_BAD_REQUEST, "card not found")
        sequence = request.body.get("sequence")
        if not isinstance(sequence, int) or isinstance(sequence, bool):
            raise ApiError(_BAD_REQUEST, "sequence must be an integer")
        if sequence <= entity.sequence:
            raise ApiError(_SEQUENCE_NOT_INCREASING, "sequence number compare failed")
        return entity, sequence

    async def _content(self, request: ApiRequest) -> dict[str, Any]:
        entity, sequence = self._checked(request)
        if entity.streaming and self.clock() - entity.opened_at > _STREAMING_SECONDS:
            entity.card.setdefault("config", {})["streaming_mode"] = False
            raise ApiError(_STREAMING_TIMED_OUT, "card streaming timeout")
        if not entity.streaming:
            raise ApiError(_STREAMING_CLOSED, "card streaming is closed")
        element_id = request.path_params["element_id"]
        element = entity.element(element_id)
        if element is None or element.get("tag") not in _TEXT_TAGS:
            raise ApiError(_BAD_REQUEST, f"no markdown or plain_text element {element_id}")
        content = request.body.get("content")
        if not isinstance(content, str):
            raise ApiError(_BAD_REQUEST, "content must be a string")
        element["content"] = content
        entity.sequence = sequence
        entity.updates.append((element_id, content, sequence))
        return {}

    async def _replace(self, request: ApiRequest) -> dict[str, Any]:
        entity, sequence = self._checked(request)
        card = request.body.get("card")
        entity.card = _card_json(card if isinstance(card, dict) else {})
        entity.sequence = sequence
        entity.replacements.append((entity.card, sequence))
        return {}

    async def _settings(self, request: ApiRequest) -> dict[str, Any]:
        entity, sequence = self._checked(request)
        try:
            settings = json.loads(request.body.get("settings") or "")
        except json.JSONDecodeError:
            raise ApiError(_BAD_REQUEST, "settings is not valid JSON") from None
        config = settings.get("config") if isinstance(settings, dict) else None
        if isinstance(config, dict):
            entity.card.setdefault("config", {}).update(config)
        entity.sequence = sequence
        entity.settings.append((settings, sequence))
        return {}


def _card_json(body: dict[str, Any]) -> dict[str, Any]:
    """The card of a ``{"type": "card_json", "data": "<card JSON>"}`` body (JSON 2.0 only)."""
    if body.get("type") != "card_json" or not isinstance(body.get("data"), str):
        raise ApiError(_BAD_REQUEST, "type must be card_json and data a JSON string")
    try:
        card = json.loads(body["data"])
    except json.JSONDecodeError:
        raise ApiError(_BAD_REQUEST, "data is not valid card JSON") from None
    if not isinstance(card, dict) or card.get("schema") != "2.0":
        raise ApiError(_BAD_REQUEST, "only card JSON 2.0 can be a card entity")
    return card
