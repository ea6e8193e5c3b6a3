"""Messaging routes of the stand-in: reply, send, edit, reactions, and their records."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from larkbot.testing._events import new_message_id
from larkbot.testing._openapi import ApiError, ApiRequest, OpenApiRoute
from larkbot.testing._records import OutboundRecord, PatchRecord, ReactionRecord, ReplyRecord

__all__ = ["Messaging"]

_MSG_TYPES = frozenset(
    {
        "text",
        "post",
        "image",
        "file",
        "audio",
        "media",
        "sticker",
        "interactive",
        "share_chat",
        "share_user",
        "system",
    }
)
_RECEIVE_ID_TYPES = frozenset({"open_id", "union_id", "user_id", "email", "chat_id"})
# The platform's size limits of a message body: 150 KB for text, 30 KB for the rest.
_TEXT_LIMIT = 150 * 1024
_OTHER_LIMIT = 30 * 1024

CODE_INVALID_CONTENT = 230001
CODE_CONTENT_TOO_LONG = 230025
CODE_REACTION_NOT_FOUND = 231003
CODE_FIELD_VALIDATION = 99992402


@dataclass(slots=True)
class _StoredMessage:
    chat_id: str | None
    root_id: str | None
    thread_id: str | None
    msg_type: str
    content: str
    # Who sent it and when, for the chat's history; a message without a sender is not listed.
    sender_id: str | None = None
    sender_type: str = "user"
    create_time: str = ""
    parent_id: str | None = None
    mentions: list[dict[str, Any]] | None = None

    def item(self, message_id: str, tenant_key: str) -> dict[str, Any]:
        """The message as the message APIs give it; ids that are ``None`` left out."""
        item: dict[str, Any] = {
            "message_id": message_id,
            "root_id": self.root_id,
            "parent_id": self.parent_id,
            "thread_id": self.thread_id,
            "msg_type": self.msg_type,
            "create_time": self.create_time,
            "update_time": self.create_time,
            "deleted": False,
            "updated": False,
            "chat_id": self.chat_id,
            "sender": {
                "id": self.sender_id,
                "id_type": "open_id" if self.sender_type == "user" else "app_id",
                "sender_type": self.sender_type,
                "tenant_key": tenant_key,
            },
            "body": {"content": self.content},
            "mentions": self.mentions or [],
        }
        return {key: value for key, value in item.items() if value is not None}


def _parse_content(msg_type: Any, content: Any) -> dict[str, Any]:
    if not isinstance(msg_type, str) or msg_type not in _MSG_TYPES:
        raise ApiError(CODE_INVALID_CONTENT, f"invalid msg_type: {msg_type!r}")
    if not isinstance(content, str):
        raise ApiError(CODE_INVALID_CONTENT, "invalid content: content must be a JSON string")
    try:
        parsed = json.loads(content)
    except json.JSONDecodeError:
        raise ApiError(CODE_INVALID_CONTENT, "invalid content: not valid JSON") from None
    if not isinstance(parsed, dict):
        raise ApiError(CODE_INVALID_CONTENT, "invalid content: not a JSON object")
    if msg_type == "text" and not isinstance(parsed.get("text"), str):
        raise ApiError(CODE_INVALID_CONTENT, "invalid content: text message needs a text field")
    limit = _TEXT_LIMIT if msg_type == "text" else _OTHER_LIMIT
    if len(content.encode()) > limit:
        raise ApiError(CODE_CONTENT_TOO_LONG, "message content is too long")
    return parsed


class Messaging:
    """Known messages, the ``im/v1`` routes over them, and the records they produce."""

    def __init__(self, app_id: str, tenant_key: str) -> None:
        self._app_id = app_id
        self._tenant_key = tenant_key
        self._messages: dict[str, _StoredMessage] = {}
        self._by_uuid: dict[str, dict[str, Any]] = {}
        self._reactions: dict[str, tuple[str, str]] = {}
        self._watchers: list[MemoryObjectSendStream[OutboundRecord]] = []
        self.replies: list[ReplyRecord] = []
        self.patches: list[PatchRecord] = []
        self.reactions: list[ReactionRecord] = []
        self.suppressed_duplicates = 0
        self.dropped_notifications = 0
        # The card entities CardKit holds, for messages that send one by its id.
        self.card_entity: Callable[[str], dict[str, Any] | None] = lambda card_id: None

    def routes(self) -> list[OpenApiRoute]:
        """Return the ``im/v1`` message routes."""
        return [
            OpenApiRoute("POST", "im/v1/messages/{message_id}/reply", self._reply),
            OpenApiRoute("POST", "im/v1/messages", self._send),
            OpenApiRoute("PATCH", "im/v1/messages/{message_id}", self._patch),
            OpenApiRoute("POST", "im/v1/messages/{message_id}/reactions", self._add_reaction),
            OpenApiRoute(
                "DELETE",
                "im/v1/messages/{message_id}/reactions/{reaction_id}",
                self._delete_reaction,
            ),
        ]

    def remember(self, message: dict[str, Any], sender: dict[str, Any] | None = None) -> None:
        """Remember a delivered chat message (``event.message``) so replies find its chat.

        ``sender`` is the event's ``sender``; with it the message shows in the chat's history.
        """
        message_id = message.get("message_id")
        if isinstance(message_id, str):
            sender_ids = (sender or {}).get("sender_id") or {}
            open_id = sender_ids.get("open_id") if sender else None
            self._messages[message_id] = _StoredMessage(
                chat_id=message.get("chat_id"),
                root_id=message.get("root_id"),
                thread_id=message.get("thread_id"),
                msg_type=str(message.get("message_type", "")),
                content=str(message.get("content", "")),
                sender_id=open_id if isinstance(open_id, str) else None,
                sender_type=str((sender or {}).get("sender_type", "user")),
                create_time=str(message.get("create_time", "")),
                parent_id=message.get("parent_id"),
                mentions=[
                    {
                        "key": m.get("key", ""),
                        "id": (m.get("id") or {}).get("open_id", ""),
                        "id_type": "open_id",
                        "name": m.get("name", ""),
                        "tenant_key": self._tenant_key,
                    }
                    for m in message.get("mentions") or []
                    if isinstance(m, dict)
                ],
            )

    def history(self, container_type: str, container_id: str) -> list[dict[str, Any]]:
        """Every known message of a chat (``chat``) or topic thread (``thread``), as listed.

        Only messages whose sender is known: the ones delivered with their event, and the
        ones the bot posted. Items have the message list API's shape.
        """
        items: list[dict[str, Any]] = []
        for message_id, stored in self._messages.items():
            if stored.sender_id is None:
                continue
            where = stored.thread_id if container_type == "thread" else stored.chat_id
            if where != container_id:
                continue
            items.append(stored.item(message_id, self._tenant_key))
        return items

    def chat_of(self, message_id: str) -> str | None:
        """Return the chat a known message belongs to."""
        stored = self._messages.get(message_id)
        return stored.chat_id if stored else None

    @asynccontextmanager
    async def watch(
        self, max_buffer: int = 1000
    ) -> AsyncIterator[MemoryObjectReceiveStream[OutboundRecord]]:
        """Stream every reply, send, patch and reaction recorded from now on."""
        send, receive = anyio.create_memory_object_stream[OutboundRecord](max_buffer)
        self._watchers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            self._watchers.remove(send)
            send.close()

    def _notify(self, record: OutboundRecord) -> None:
        for stream in self._watchers:
            try:
                stream.send_nowait(record)
            except anyio.WouldBlock:
                # A watcher that stopped reading must not stall the platform.
                self.dropped_notifications += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    def _duplicate(self, uuid_key: Any) -> dict[str, Any] | None:
        if isinstance(uuid_key, str) and uuid_key in self._by_uuid:
            self.suppressed_duplicates += 1
            return self._by_uuid[uuid_key]
        return None

    def _post(
        self,
        kind: Literal["reply", "send"],
        body: dict[str, Any],
        *,
        to_message_id: str | None,
        receive_id: str | None,
        receive_id_type: str | None,
        chat_id: str | None,
        root_id: str | None,
        thread_id: str | None,
    ) -> dict[str, Any]:
        msg_type = body.get("msg_type")
        content = body.get("content")
        parsed = _parse_content(msg_type, content)
        assert isinstance(msg_type, str) and isinstance(content, str)
        card = None
        if msg_type == "interactive" and parsed.get("type") == "card":
            card_id = str((parsed.get("data") or {}).get("card_id", ""))
            card = self.card_entity(card_id)
            if card is None:
                raise ApiError(CODE_INVALID_CONTENT, f"invalid content: no card entity {card_id}")
        uuid_key = body.get("uuid") if isinstance(body.get("uuid"), str) else None
        message_id = new_message_id()
        stored = _StoredMessage(
            chat_id,
            root_id,
            thread_id,
            msg_type,
            content,
            sender_id=self._app_id,
            sender_type="app",
            create_time=str(int(time.time() * 1000)),
            parent_id=to_message_id,
        )
        self._messages[message_id] = stored
        # The answer to a post is the message as listed, without the (empty) mentions.
        data = stored.item(message_id, self._tenant_key)
        del data["mentions"]
        if uuid_key is not None:
            self._by_uuid[uuid_key] = data
        record = ReplyRecord(
            kind=kind,
            to_message_id=stored.parent_id,
            receive_id=receive_id,
            receive_id_type=receive_id_type,
            msg_type=stored.msg_type,
            content=parsed,
            uuid=uuid_key,
            reply_in_thread=bool(body.get("reply_in_thread", False)),
            message_id=message_id,
            chat_id=stored.chat_id,
            at=time.monotonic(),
            card=card,
        )
        self.replies.append(record)
        self._notify(record)
        return data

    async def _reply(self, request: ApiRequest) -> dict[str, Any]:
        if (earlier := self._duplicate(request.body.get("uuid"))) is not None:
            return earlier
        parent_id = request.path_params["message_id"]
        parent = self._messages.get(parent_id)
        in_thread = bool(request.body.get("reply_in_thread", False))
        root_id = (parent.root_id if parent else None) or parent_id
        thread_id = parent.thread_id if parent else None
        if in_thread and thread_id is None:
            thread_id = "omt_" + uuid.uuid4().hex[:16]
        return self._post(
            "reply",
            request.body,
            to_message_id=parent_id,
            receive_id=None,
            receive_id_type=None,
            chat_id=parent.chat_id if parent else None,
            root_id=root_id,
            thread_id=thread_id,
        )

    async def _send(self, request: ApiRequest) -> dict[str, Any]:
        receive_id_type = request.query.get("receive_id_type")
        if receive_id_type not in _RECEIVE_ID_TYPES:
            raise ApiError(
                CODE_FIELD_VALIDATION,
                "field validation failed: receive_id_type must be one of "
                + ", ".join(sorted(_RECEIVE_ID_TYPES)),
            )
        receive_id = request.body.get("receive_id")
        if not isinstance(receive_id, str) or not receive_id:
            raise ApiError(CODE_FIELD_VALIDATION, "field validation failed: receive_id is required")
        if (earlier := self._duplicate(request.body.get("uuid"))) is not None:
            return earlier
        return self._post(
            "send",
            request.body,
            to_message_id=None,
            receive_id=receive_id,
            receive_id_type=receive_id_type,
            chat_id=receive_id if receive_id_type == "chat_id" else None,
            root_id=None,
            thread_id=None,
        )

    async def _patch(self, request: ApiRequest) -> dict[str, Any]:
        message_id = request.path_params["message_id"]
        content = request.body.get("content")
        stored = self._messages.get(message_id)
        if stored is not None and stored.msg_type != "interactive":
            raise ApiError(CODE_INVALID_CONTENT, "only card (interactive) messages can be patched")
        parsed = _parse_content("interactive", content)
        assert isinstance(content, str)
        if stored is not None:
            stored.content = content
        record = PatchRecord(message_id=message_id, content=parsed, at=time.monotonic())
        self.patches.append(record)
        self._notify(record)
        return {}

    async def _add_reaction(self, request: ApiRequest) -> dict[str, Any]:
        message_id = request.path_params["message_id"]
        reaction_type = request.body.get("reaction_type")
        emoji_type = reaction_type.get("emoji_type") if isinstance(reaction_type, dict) else None
        if not isinstance(emoji_type, str) or not emoji_type:
            raise ApiError(
                CODE_FIELD_VALIDATION, "field validation failed: reaction_type.emoji_type"
            )
        reaction_id = uuid.uuid4().hex
        self._reactions[reaction_id] = (message_id, emoji_type)
        return self._reaction_recorded("add", message_id, emoji_type, reaction_id)

    async def _delete_reaction(self, request: ApiRequest) -> dict[str, Any]:
        message_id = request.path_params["message_id"]
        reaction_id = request.path_params["reaction_id"]
        known = self._reactions.get(reaction_id)
        if known is None or known[0] != message_id:
            raise ApiError(CODE_REACTION_NOT_FOUND, "the reaction does not exist")
        del self._reactions[reaction_id]
        return self._reaction_recorded("delete", message_id, known[1], reaction_id)

    def _reaction_recorded(
        self, action: Literal["add", "delete"], message_id: str, emoji_type: str, reaction_id: str
    ) -> dict[str, Any]:
        record = ReactionRecord(action, message_id, emoji_type, reaction_id, time.monotonic())
        self.reactions.append(record)
        self._notify(record)
        return {
            "reaction_id": reaction_id,
            "operator": {"operator_id": self._app_id, "operator_type": "app"},
            "action_time": str(int(time.time() * 1000)),
            "reaction_type": {"emoji_type": emoji_type},
        }
