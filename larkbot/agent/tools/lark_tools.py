"""The Lark tools the agent can use, and the input models of the first nine.

Each tool calls one documented OpenAPI route (or a short fixed sequence of them) through
``ctx.client.request`` with the route template as ``route=``, so metrics and logs group
calls by route and never by ids.
"""

from __future__ import annotations

from typing import Any

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
from larkbot.agent.tools.base import Tool

__all__ = [
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
