"""Schema 2.0 ``im.message.receive_v1`` events, shaped as the platform sends them."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

__all__ = ["MESSAGE_RECEIVE", "build_message_event", "new_message_id", "user_ids"]

MESSAGE_RECEIVE = "im.message.receive_v1"


def new_message_id() -> str:
    """Return a fresh chat message id (``om_`` and 32 hex digits)."""
    return "om_" + uuid.uuid4().hex


def user_ids(open_id: str) -> dict[str, str]:
    """Return the id triple of a user, derived from ``open_id`` so it is stable."""
    digest = hashlib.sha1(open_id.encode(), usedforsecurity=False).hexdigest()
    return {"open_id": open_id, "union_id": "on_" + digest[:32], "user_id": digest[:8]}


def _content_of(message_type: str, text: str, content: dict[str, Any] | None) -> dict[str, Any]:
    if content is not None:
        return content
    if message_type == "text":
        return {"text": text}
    if message_type == "post":
        return {"title": "", "content": [[{"tag": "text", "text": text}]]}
    raise ValueError(f"content is required for message_type {message_type!r}")


def build_message_event(
    text: str,
    *,
    app_id: str,
    tenant_key: str,
    bot_open_id: str,
    bot_name: str,
    chat_id: str,
    chat_type: str,
    sender_open_id: str,
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
        "chat_id": chat_id,
        "chat_type": chat_type,
        "message_type": message_type,
        "content": json.dumps(
            _content_of(message_type, text, content), ensure_ascii=False, separators=(",", ":")
        ),
    }
    message = {key: value for key, value in message.items() if value is not None}
    if mention_list:
        message["mentions"] = mention_list
    return {
        "schema": "2.0",
        "header": {
            "event_id": uuid.uuid4().hex,
            "event_type": MESSAGE_RECEIVE,
            "create_time": str(now_ms),
            "token": "",
            "app_id": app_id,
            "tenant_key": tenant_key,
        },
        "event": {
            "sender": {
                "sender_id": user_ids(sender_open_id),
                "sender_type": sender_type,
                "tenant_key": tenant_key,
            },
            "message": message,
        },
    }
