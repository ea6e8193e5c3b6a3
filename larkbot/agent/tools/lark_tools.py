"""The Lark tools the agent can use, and the input models of the first nine.

Each tool calls one documented OpenAPI route (or a short fixed sequence of them) through
``ctx.client.request`` with the route template as ``route=``, so metrics and logs group
calls by route and never by ids.
"""

from __future__ import annotations

from typing import Any

from larkbot.agent.tools._base_schema import CreateBaseTable, ListBaseFields, ListBaseTables
from larkbot.agent.tools._bitable import (
    BaseFieldCache,
    CreateBaseRecord,
    CreateBaseRecordInput,
    DeleteBaseRecord,
    DeleteBaseRecordInput,
    SearchBaseRecords,
    SearchBaseRecordsInput,
    UpdateBaseRecord,
    UpdateBaseRecordInput,
)
from larkbot.agent.tools._calendar import CreateCalendarEvent, CreateCalendarEventInput
from larkbot.agent.tools._chat_admin import CreateChat, ListChats
from larkbot.agent.tools._chats import (
    ListChatMembers,
    ListChatMembersInput,
    SendMessage,
    SendMessageInput,
)
from larkbot.agent.tools._content_tools import content_tools
from larkbot.agent.tools._directory import (
    GetUserInfo,
    GetUserInfoInput,
    SearchDocuments,
    SearchDocumentsInput,
)
from larkbot.agent.tools._history import ListChatMessages
from larkbot.agent.tools._people import LookupUserIds
from larkbot.agent.tools.base import Tool

__all__ = [
    "BASE_TOOLS",
    "MESSAGE_TOOLS",
    "BaseFieldCache",
    "CreateBaseRecord",
    "CreateBaseRecordInput",
    "CreateCalendarEvent",
    "CreateCalendarEventInput",
    "DeleteBaseRecord",
    "DeleteBaseRecordInput",
    "GetUserInfo",
    "GetUserInfoInput",
    "ListChatMembers",
    "ListChatMembersInput",
    "SearchBaseRecords",
    "SearchBaseRecordsInput",
    "SearchDocuments",
    "SearchDocumentsInput",
    "SendMessage",
    "SendMessageInput",
    "UpdateBaseRecord",
    "UpdateBaseRecordInput",
    "lark_tools",
]


def _names(*tools: type[Tool[Any]]) -> tuple[str, ...]:
    return tuple(tool.name for tool in tools)


BASE_TOOLS = _names(
    SearchBaseRecords,
    CreateBaseRecord,
    UpdateBaseRecord,
    DeleteBaseRecord,
    ListBaseTables,
    ListBaseFields,
    CreateBaseTable,
)
"""The names of the tools over Base records, tables and fields."""

MESSAGE_TOOLS = _names(
    SendMessage,
    ListChatMembers,
    GetUserInfo,
    ListChatMessages,
    ListChats,
    CreateChat,
    LookupUserIds,
)
"""The names of the tools over messages, chats and the people in them."""


def lark_tools(*, field_cache: BaseFieldCache | None = None) -> list[Tool[Any]]:
    """Return one instance of each Lark tool; the Base tools share one ``field_cache``."""
    fields = field_cache or BaseFieldCache()
    return [
        SearchBaseRecords(field_cache=fields),
        CreateBaseRecord(field_cache=fields),
        UpdateBaseRecord(field_cache=fields),
        DeleteBaseRecord(field_cache=fields),
        SendMessage(),
        GetUserInfo(),
        SearchDocuments(),
        ListChatMembers(),
        CreateCalendarEvent(),
        *content_tools(),
    ]
