"""What the workspace holds besides tables and people: chat history, documents, wiki, sharing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChatMessage", "DocxDocument", "PermissionMember", "WikiNode"]


@dataclass(slots=True)
class ChatMessage:
    """A message already in a chat's history before the stand-in started.

    ``content`` is the message body as the platform stores it (``{"text": ...}`` for a text
    message); ``sender_type`` is ``user`` or ``app``; ``mentions`` are ``(open_id, name)``
    in the order of their ``@_user_N`` keys.
    """

    message_id: str
    chat_id: str
    sender_id: str
    create_time_ms: int
    content: dict[str, Any]
    msg_type: str = "text"
    sender_type: str = "user"
    thread_id: str | None = None
    root_id: str | None = None
    mentions: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class DocxDocument:
    """A docx document: its title, its plain text by paragraph, and where it lives.

    ``blocks`` are the blocks inserted through the block API; their text is appended to
    ``paragraphs`` as they arrive, so the raw content reads what was written.
    """

    document_id: str
    title: str
    paragraphs: list[str]
    owner_open_id: str = ""
    folder_token: str = ""
    revision_id: int = 1
    blocks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def raw_content(self) -> str:
        """The document's plain text, one paragraph per line, as ``raw_content`` returns it."""
        return "".join(f"{paragraph}\n" for paragraph in self.paragraphs)


@dataclass(slots=True)
class WikiNode:
    """A page of a wiki space and the object (document, sheet, Base...) it holds."""

    node_token: str
    space_id: str
    title: str
    obj_type: str
    obj_token: str
    parent_node_token: str = ""
    has_child: bool = False
    owner_open_id: str = ""
    created_at: int = 0


@dataclass(frozen=True, slots=True)
class PermissionMember:
    """A collaborator added to a document: who (``member_type``/``member_id``) and how."""

    member_type: str
    member_id: str
    perm: str
    type: str
