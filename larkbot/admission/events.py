"""Typed models of the events the long connection delivers.

Everything is parsed once, here at the edge; nothing past admission sees a raw dict.
Only the fields we use are modelled; unknown ones are ignored so a platform that
adds fields never breaks parsing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from larkbot.core.message import ALL_MENTION_KEY, InboundMessage, Mention, UserId

__all__ = [
    "CARD_ACTION_TRIGGER",
    "MESSAGE_RECEIVE",
    "CardActionEvent",
    "EventEnvelope",
    "EventHeader",
    "MessageEvent",
    "MessagePayload",
    "Sender",
    "extract_text",
    "message_from_event",
    "parse_envelope",
]

MESSAGE_RECEIVE = "im.message.receive_v1"
CARD_ACTION_TRIGGER = "card.action.trigger"
_MESSAGE_RECEIVE_BYTES = MESSAGE_RECEIVE.encode()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# Milliseconds since the epoch a datetime can hold, a day inside either end.
_MIN_MILLIS = int((datetime.min.replace(tzinfo=UTC) - _EPOCH).total_seconds() + 86400) * 1000
_MAX_MILLIS = int((datetime.max.replace(tzinfo=UTC) - _EPOCH).total_seconds() - 86400) * 1000


def _int(value: Any) -> int:
    """``int(value)``, with ``ValueError`` for infinities too (pydantic reports only that)."""
    try:
        return int(value)
    except OverflowError:
        raise ValueError("number out of range") from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Sender(_Model):
    """Who sent a message (``sender_type`` is ``user`` or ``app``)."""

    sender_id: UserId = Field(default_factory=UserId)
    sender_type: str = "user"
    tenant_key: str | None = None


class MessagePayload(_Model):
    """``event.message`` of ``im.message.receive_v1``."""

    message_id: str = Field(min_length=1)
    root_id: str | None = None
    parent_id: str | None = None
    thread_id: str | None = None
    create_time: int = Field(description="milliseconds since the epoch")
    chat_id: str = Field(min_length=1)
    chat_type: str
    message_type: str
    content: str = ""
    mentions: list[Mention] = Field(default_factory=list)

    @field_validator("create_time", mode="before")
    @classmethod
    def _millis(cls, value: Any) -> int:
        millis = _int(value)
        # Beyond these a datetime cannot hold it, and building the message would fail.
        if not _MIN_MILLIS <= millis <= _MAX_MILLIS:
            raise ValueError("timestamp out of range")
        return millis


class MessageEvent(_Model):
    """``event`` of ``im.message.receive_v1``."""

    sender: Sender
    message: MessagePayload


class CardOperator(_Model):
    """``event.operator`` of ``card.action.trigger``: who acted."""

    open_id: str = Field(min_length=1)
    user_id: str | None = None
    union_id: str | None = None


class CardActionPayload(_Model):
    """``event.action``: the component's value and kind."""

    value: dict[str, Any] | str = ""
    tag: str = ""
    name: str | None = None


class CardContext(_Model):
    """``event.context``: the message the card is in."""

    open_message_id: str = ""
    open_chat_id: str = ""


class CardActionEvent(_Model):
    """``event`` of ``card.action.trigger`` (schema 2.0)."""

    operator: CardOperator
    token: str = ""
    action: CardActionPayload
    context: CardContext = Field(default_factory=CardContext)


class EventHeader(_Model):
    """``header`` of a schema 2.0 event."""

    event_id: str = ""
    event_type: str
    create_time: int | None = None
    app_id: str | None = None
    tenant_key: str | None = None

    @field_validator("create_time", mode="before")
    @classmethod
    def _millis(cls, value: Any) -> int | None:
        return None if value in (None, "") else _int(value)


class EventEnvelope(_Model):
    """A schema 2.0 event: its header and, for message events, the typed body."""

    header: EventHeader
    message_event: MessageEvent | None = None
    card_action: CardActionEvent | None = None


class _MessageReceived(_Model):
    """A whole ``im.message.receive_v1`` payload, validated from its bytes in one pass."""

    header: EventHeader
    event: MessageEvent


def parse_envelope(payload: bytes) -> EventEnvelope:
    """Parse an event payload; raise ``ValueError`` with a short reason when it is bad.

    ``im.message.receive_v1`` and ``card.action.trigger`` bodies are modelled; other event
    types come back with neither body so admission can ack and skip them.
    """
    if _MESSAGE_RECEIVE_BYTES in payload:
        # Nearly every event is a chat message: pydantic validates it straight from the
        # bytes, in half the time of decoding the JSON first. Anything that does not fit
        # takes the general path below, which gives the reason.
        try:
            received = _MessageReceived.model_validate_json(payload)
        except ValidationError:
            pass
        else:
            if received.header.event_type == MESSAGE_RECEIVE:
                return EventEnvelope(header=received.header, message_event=received.event)
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ValueError(f"event payload is not JSON: {reason}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("header"), dict):
        raise ValueError("event payload has no header (only schema 2.0 events are supported)")
    try:
        header = EventHeader.model_validate(raw["header"])
        body = card = None
        if header.event_type == MESSAGE_RECEIVE:
            body = MessageEvent.model_validate(raw.get("event"))
        elif header.event_type == CARD_ACTION_TRIGGER:
            card = CardActionEvent.model_validate(raw.get("event"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"event field {where or '(root)'}: {first['msg']}") from None
    return EventEnvelope(header=header, message_event=body, card_action=card)


def _post_text(content: dict[str, Any], mentions: dict[str, Mention]) -> str:
    """Flatten ``post`` rich text (with or without a locale wrapper) to plain text."""
    body: Any = content
    if "content" not in body:
        # {"zh_cn": {"title":..., "content": [...]}, "en_us": {...}}: take the first locale.
        body = next((v for v in content.values() if isinstance(v, dict) and "content" in v), {})
    lines: list[str] = []
    title = body.get("title")
    if isinstance(title, str) and title.strip():
        lines.append(title.strip())
    for paragraph in body.get("content") or []:
        if not isinstance(paragraph, list):
            continue
        parts: list[str] = []
        for element in paragraph:
            if not isinstance(element, dict):
                continue
            tag = element.get("tag")
            if tag in ("text", "a", "code_block", "md"):
                parts.append(str(element.get("text", "")))
            elif tag == "at":
                user = element.get("user_id") or element.get("open_id") or ""
                key = next((k for k, m in mentions.items() if m.id.open_id == user), None)
                parts.append(key or f"@{element.get('user_name', '')}")
            elif tag == "emotion":
                parts.append(f":{element.get('emoji_type', '')}:")
        lines.append("".join(parts))
    return "\n".join(lines)


def extract_text(message: MessagePayload, bot_open_id: str | None) -> str:
    """Return the plain text of a text or post message, mentions resolved.

    The bot's own mention placeholder is removed; other users' placeholders become
    ``@name``. Other message types yield ``""``.
    """
    if message.message_type not in ("text", "post"):
        return ""
    try:
        content = json.loads(message.content) if message.content else {}
    except json.JSONDecodeError:
        return ""
    if not isinstance(content, dict):
        return ""
    by_key = {m.key: m for m in message.mentions}
    if message.message_type == "text":
        text = str(content.get("text", ""))
    else:
        text = _post_text(content, by_key)
    for key, mention in by_key.items():
        is_bot = bot_open_id is not None and mention.id.open_id == bot_open_id
        replacement = "" if is_bot or key == ALL_MENTION_KEY else f"@{mention.name}"
        text = text.replace(key, replacement)
    lines = (" ".join(line.split()) for line in text.strip().splitlines())
    return "\n".join(line for line in lines if line)


def message_from_event(envelope: EventEnvelope, bot_open_id: str | None) -> InboundMessage:
    """Build from a parsed ``im.message.receive_v1`` envelope."""
    assert envelope.message_event is not None
    event = envelope.message_event
    message = event.message
    return InboundMessage(
        message_id=message.message_id,
        event_id=envelope.header.event_id,
        chat_id=message.chat_id,
        chat_type=message.chat_type,
        message_type=message.message_type,
        text=extract_text(message, bot_open_id),
        sender_open_id=event.sender.sender_id.open_id or "",
        root_id=message.root_id or None,
        thread_id=message.thread_id or None,
        created_at=datetime.fromtimestamp(message.create_time / 1000, tz=UTC),
        mentions_bot=bot_open_id is not None
        and any(m.id.open_id == bot_open_id for m in message.mentions),
        mentions_all=any(m.key == ALL_MENTION_KEY for m in message.mentions),
        mentions=tuple(
            m
            for m in message.mentions
            if m.key != ALL_MENTION_KEY and (bot_open_id is None or m.id.open_id != bot_open_id)
        ),
    )
