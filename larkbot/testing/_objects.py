"""Workspace objects the content routes build too: Base fields, tables, chats, documents, writes.

Kept apart from :mod:`larkbot.testing.workspace`, which re-exports them, so that
:mod:`larkbot.testing._content_routes` can build them without importing the module that
imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BaseField", "BaseTable", "Chat", "Document", "WorkspaceWrite"]


@dataclass(slots=True)
class BaseField:
    """A field (column) of a Base table; ``options`` are the labels of a select field."""

    name: str
    type: int
    field_id: str = ""
    options: list[str] = field(default_factory=list)
    is_primary: bool = False


@dataclass(slots=True)
class BaseTable:
    """A table: its fields, and its records by id (values stored plain, by field name)."""

    table_id: str
    name: str
    fields: list[BaseField]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def field(self, name: str) -> BaseField | None:
        """Return the field called ``name`` (exact, as Lark matches field names)."""
        return next((f for f in self.fields if f.name == name), None)


@dataclass(slots=True)
class Chat:
    """A group chat and its members; ``bot_is_member`` False makes the bot an outsider."""

    chat_id: str
    name: str
    member_open_ids: list[str] = field(default_factory=list)
    bot_is_member: bool = True
    description: str = ""
    owner_open_id: str = ""


@dataclass(slots=True)
class Document:
    """A cloud document, sheet, Base or wiki page the app can see."""

    token: str
    title: str
    doc_type: str
    owner_open_id: str
    url: str
    snippet: str = ""
    updated_at: int = 0
    wiki: bool = False


@dataclass(frozen=True, slots=True)
class WorkspaceWrite:
    """One change made through the OpenAPI: the route template and what was sent."""

    method: str
    route: str
    path: str
    params: dict[str, str]
    body: dict[str, Any]
