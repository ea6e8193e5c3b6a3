"""Schema 2.0 events and callbacks, shaped as the platform sends them.

``im.message.receive_v1`` (a chat message) and ``card.action.trigger`` (a click or a form
submitted on an interactive card).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any, Required, TypedDict

__all__ = [
    "CARD_ACTION_TRIGGER",
    "MESSAGE_RECEIVE",
    "CardActionFields",
    "MessageFields",
    "build_card_action_event",
    "build_message_event",
    "event_ids",
    "new_message_id",
    "user_ids",
]

MESSAGE_RECEIVE = "im.message.receive_v1"
CARD_ACTION_TRIGGER = "card.action.trigger"


def new_message_id() -> str:
    """Return a fresh chat message id (``om_`` and 32 hex digits)."""
    return "om_" + uuid.uuid4().hex


def user_ids(open_id: str) -> dict[str, str]:
    """Return the id triple of a user, derived from ``open_id`` so it is stable."""
    digest = hashlib.sha1(open_id.encode(), usedforsecurity=False).hexdigest()
    return {"open_id": open_id, "union_id": "on_" + digest[:32], "user_id": digest[:8]}


def event_ids(event: dict[str, Any]) -> tuple[str | None, str | None]:
    """Return ``(header.event_id, event.message.message_id)``, each ``None`` when absent."""
    header = event.get("header")
    body = event.get("event")
    event_id = header.get("event_id") if isinstance(header, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    message_id = message.get("message_id") if isinstance(message, dict) else None
    return (
        event_id if isinstance(event_id, str) else None,
        message_id if isinstance(message_id, str) else None,
    )


def _content_of(message_type: str, text: str, content: dict[str, Any] | None) -> dict[str, Any]:
    if content is not None:
        return content
    if message_type == "text":
        return {"text": text}
    if message_type == "post":
        return {"title": "", "content": [[{"tag": "text", "text": text}]]}
    raise ValueError(f"content is required for message_type {message_type!r}")


class MessageFields(TypedDict, total=False):
    """What a test may set of a chat message; every key is optional.

    ``chat_id`` defaults to ``oc_p2p_1`` or ``oc_group_1`` after ``chat_type`` (``p2p``),
    ``sender_open_id`` to ``ou_user_1``. ``mention_bot`` mentions the bot as ``@_user_1``;
    ``mentions`` are other users' ``(open_id, name)``. ``content`` (a dict) replaces the
    content built from the text.
    """

    chat_id: str | None
    chat_type: str
    sender_open_id: str
    sender_type: str
    mention_bot: bool
    mentions: Sequence[tuple[str, str]]
    message_id: str | None
    create_time_ms: int | None
    root_id: str | None
    parent_id: str | None
    thread_id: str | None
    message_type: str
    content: dict[str, Any] | None


def build_message_event(
    text: str,
    *,
    app_id: str,
    tenant_key: str,
    bot_open_id: str,
    bot_name: str,
    chat_id: str | None = None,
    chat_type: str = "p2p",
    sender_open_id: str = "ou_user_1",
    sender_type: str = "user",
    mention_bot: bool = False,
    mentions: Sequence[tuple[str, str]] = (),
    message_id: str | None = None,
    create_time_ms: int | None = None,
    root_id: str | None = None,
    parent_id: str | None = None,
    thread_id: str | None = None,
    message_type: str = "text",
    content: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the event of one chat message.

    Mention keys are given in order: the bot first (``@_user_1``) when ``mention_bot``,
    then each ``(open_id, name)`` of ``mentions``. For text messages, the placeholder of
    every mention that ``text`` does not already contain is put in front of it, the way a
    user types "@bot help". Ids that are ``None`` are left out rather than sent as null.
    The keywords after ``bot_name`` are :class:`MessageFields`.
    """
    now_ms = int(time.time() * 1000) if create_time_ms is None else create_time_ms
    people: list[tuple[str, str, bool]] = []
    if mention_bot:
        people.append((bot_open_id, bot_name, True))
    people.extend((open_id, name, False) for open_id, name in mentions)
    mention_list: list[dict[str, Any]] = []
    missing: list[str] = []
    for index, (open_id, name, is_bot) in enumerate(people, start=1):
        key = f"@_user_{index}"
        ids = user_ids(open_id)
        if is_bot:
            # A bot has no tenant user_id.
            del ids["user_id"]
        mention_list.append({"key": key, "id": ids, "name": name, "tenant_key": tenant_key})
        if key not in text:
            missing.append(key)
    if missing and message_type == "text" and content is None:
        text = " ".join([*missing, text]) if text else " ".join(missing)
    message: dict[str, Any] = {
        "message_id": message_id or new_message_id(),
        "root_id": root_id,
        "parent_id": parent_id if parent_id is not None else root_id,
        "thread_id": thread_id,
        "create_time": str(now_ms),
        "update_time": str(now_ms),
        "chat_id": chat_id or ("oc_group_1" if chat_type == "group" else "oc_p2p_1"),
        "chat_type": chat_type,
        "message_type": message_type,
        "content": json.dumps(
            _content_of(message_type, text, content), ensure_ascii=False, separators=(",", ":")
        ),
    }
    message = {key: value for key, value in message.items() if value is not None}
    if mention_list:
        message["mentions"] = mention_list
    sender = {
        "sender_id": user_ids(sender_open_id),
        "sender_type": sender_type,
        "tenant_key": tenant_key,
    }
    return _schema2(
        MESSAGE_RECEIVE,
        app_id=app_id,
        tenant_key=tenant_key,
        token="",
        now_ms=now_ms,
        event={"sender": sender, "message": message},
    )


class CardActionFields(TypedDict, total=False):
    """Which card is clicked, where and by whom; only ``open_message_id`` is required.

    ``open_chat_id`` defaults to ``oc_p2p_1``, ``operator_open_id`` to ``ou_user_1``,
    ``tag`` (the component clicked) to ``button``; ``name`` and ``form_value`` are sent
    when given (a form submitted).
    """

    open_message_id: Required[str]
    open_chat_id: str
    operator_open_id: str
    tag: str
    name: str | None
    form_value: dict[str, Any] | None


def build_card_action_event(
    value: dict[str, Any] | str,
    *,
    app_id: str,
    tenant_key: str,
    open_message_id: str,
    open_chat_id: str = "oc_p2p_1",
    operator_open_id: str = "ou_user_1",
    tag: str = "button",
    name: str | None = None,
    form_value: dict[str, Any] | None = None,
    token: str = "",
    create_time_ms: int | None = None,
) -> dict[str, Any]:
    """Build the ``card.action.trigger`` callback of one action on a card the bot sent.

    ``value`` is what the card's component carries; ``event.token`` is a fresh ``c-``
    delayed-update token; ``header.token`` is the app's verification token (``token``).
    The keywords from ``open_message_id`` to ``form_value`` are :class:`CardActionFields`.
    """
    now_ms = int(time.time() * 1000) if create_time_ms is None else create_time_ms
    action: dict[str, Any] = {"value": value, "tag": tag}
    if name is not None:
        action["name"] = name
    if form_value is not None:
        action["form_value"] = form_value
    return _schema2(
        CARD_ACTION_TRIGGER,
        app_id=app_id,
        tenant_key=tenant_key,
        token=token,
        now_ms=now_ms,
        event={
            "operator": {"tenant_key": tenant_key, **user_ids(operator_open_id)},
            "token": "c-" + uuid.uuid4().hex,
            "action": action,
            "host": "im_message",
            "context": {"open_message_id": open_message_id, "open_chat_id": open_chat_id},
        },
    )


def _schema2(
    event_type: str, *, app_id: str, tenant_key: str, token: str, now_ms: int, event: dict[str, Any]
) -> dict[str, Any]:
    """Wrap ``event`` in a schema 2.0 envelope with a fresh ``event_id``."""
    return {
        "schema": "2.0",
        "header": {
            "event_id": uuid.uuid4().hex,
            "event_type": event_type,
            "create_time": str(now_ms),
            "token": token,
            "app_id": app_id,
            "tenant_key": tenant_key,
        },
        "event": event,
    }
