"""The tools over chat history, chats, documents, wiki, Base schema and people.

Kept apart from :mod:`larkbot.agent.tools.lark_tools`, which adds them after its own nine.
"""

from __future__ import annotations

from typing import Any

from larkbot.agent.tools._base_schema import CreateBaseTable, ListBaseFields, ListBaseTables
from larkbot.agent.tools._chat_admin import CreateChat, ListChats
from larkbot.agent.tools._docs import GrantDocumentPermission, ImportDocument, ReadDocument
from larkbot.agent.tools._history import ListChatMessages
from larkbot.agent.tools._people import LookupUserIds
from larkbot.agent.tools._wiki import GetWikiNode, SearchWiki
from larkbot.agent.tools.base import Tool

__all__ = ["content_tools"]


def content_tools() -> list[Tool[Any]]:
    """Return one instance of each tool; times read in each request's ``ctx.timezone``."""
    return [
        ListChatMessages(),
        ListChats(),
        CreateChat(),
        ReadDocument(),
        ImportDocument(),
        SearchWiki(),
        GetWikiNode(),
        GrantDocumentPermission(),
        ListBaseTables(),
        ListBaseFields(),
        CreateBaseTable(),
        LookupUserIds(),
    ]
