"""The Lark tools the agent can use, and the input models of the first nine.

Each tool calls one documented OpenAPI route (or a short fixed sequence of them) through
``ctx.client.request`` with the route template as ``route=``, so metrics and logs group
calls by route and never by ids.
"""

from __future__ import annotations

from datetime import tzinfo

from larkbot.agent.tools._bitable import (
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
from larkbot.agent.tools._common import DEFAULT_TIMEZONE
from larkbot.agent.tools._content_tools import content_tools
from larkbot.agent.tools._directory import (
    GetUserInfo,
    GetUserInfoInput,
    SearchDocuments,
    SearchDocumentsInput,
)
from larkbot.agent.tools.base import Tool

__all__ = [
    "DEFAULT_TIMEZONE",
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


def lark_tools(*, timezone: tzinfo = DEFAULT_TIMEZONE) -> list[Tool]:
    """Return one instance of each Lark tool; ``timezone`` applies to dates without an offset."""
    return [
        SearchBaseRecords(timezone=timezone),
        CreateBaseRecord(timezone=timezone),
        UpdateBaseRecord(timezone=timezone),
        DeleteBaseRecord(timezone=timezone),
        SendMessage(),
        GetUserInfo(),
        SearchDocuments(timezone=timezone),
        ListChatMembers(),
        CreateCalendarEvent(timezone=timezone),
        *content_tools(timezone=timezone),
    ]
