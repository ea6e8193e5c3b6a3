"""What the stand-in records as it happens: acks, outbound messages and API calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "AckRecord",
    "ApiCallRecord",
    "OutboundRecord",
    "PatchRecord",
    "ReactionRecord",
    "ReplyRecord",
]


@dataclass(frozen=True, slots=True)
class AckRecord:
    """One ack received for a delivered data frame.

    ``latency_ms`` runs from the moment the last fragment was written to the socket to
    the moment the ack arrived. ``chat_message_id`` is ``event.message.message_id`` when
    the event carried a chat message.
    """

    frame_id: str
    chat_message_id: str | None
    event_id: str | None
    code: int
    delivered_at: float
    acked_at: float
    latency_ms: float
    biz_rt: int | None
    conn_id: str


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    """A message the bot posted: a reply to a message or a send to a chat or user.

    For ``kind="reply"`` ``to_message_id`` is set; for ``kind="send"`` ``receive_id`` and
    ``receive_id_type`` are. ``chat_id`` is the chat the message landed in when the
    stand-in knows it (the replied-to message was one it delivered or recorded, or the
    send targeted a ``chat_id``).
    """

    kind: Literal["reply", "send"]
    to_message_id: str | None
    receive_id: str | None
    receive_id_type: str | None
    msg_type: str
    content: dict[str, Any]
    uuid: str | None
    reply_in_thread: bool
    message_id: str
    chat_id: str | None
    at: float

    @property
    def text(self) -> str:
        """What the user reads: a text message's text, a card's markdown, a post's text."""
        return readable_text(self.msg_type, self.content)


@dataclass(frozen=True, slots=True)
class PatchRecord:
    """An edit of a posted message (``PATCH im/v1/messages/{message_id}``)."""

    message_id: str
    content: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class ReactionRecord:
    """A reaction added to or deleted from a message."""

    action: Literal["add", "delete"]
    message_id: str
    emoji_type: str
    reaction_id: str
    at: float


@dataclass(frozen=True, slots=True)
class ApiCallRecord:
    """One OpenAPI request and how it was answered.

    ``route`` is the template (``im/v1/messages/{message_id}/reply``), ``path`` the
    concrete path; ``code`` is the Lark code of the JSON body (``None`` when it had none).
    ``user_open_id`` names the user when the call was made with a user access token.
    """

    method: str
    route: str
    path: str
    status: int
    code: int | None
    at: float
    user_open_id: str | None = None


OutboundRecord = ReplyRecord | PatchRecord | ReactionRecord


def readable_text(msg_type: str, content: dict[str, Any]) -> str:
    """The words of a message as the user reads them (card and post markup kept as is)."""
    if msg_type == "text":
        value = content.get("text", "")
        return value if isinstance(value, str) else ""
    if msg_type == "interactive":
        body = content.get("body") if isinstance(content.get("body"), dict) else content
        elements = body.get("elements", []) if isinstance(body, dict) else []
        return "\n\n".join(
            str(e.get("content", ""))
            for e in elements
            if isinstance(e, dict) and e.get("tag") in ("markdown", "lark_md")
        )
    if msg_type == "post":
        post = next((v for v in content.values() if isinstance(v, dict)), content)
        return "\n".join(
            "".join(str(e.get("text", "")) for e in paragraph if isinstance(e, dict))
            for paragraph in post.get("content", [])
            if isinstance(paragraph, list)
        )
    return ""
