"""The history, chat, document, wiki, Base schema and people tools through ``larkbot mcp``.

Each fault setup is one ``python -m larkbot mcp --allow-writes`` subprocess over stdio,
driven by the official MCP client and shared by every tool's test: a workspace that
grants everything (success), one that refuses every route these tools call with 99991672
(a missing scope), and one asked about things that do not exist (not found).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, types

from larkbot.agent.tools import default_registry
from larkbot.testing import LarkStandIn
from larkbot.testing._sample_content import (
    ACTIVITIES_TABLE_ID,
    LAUNCH_PLAN_ID,
    LAUNCH_PLAN_URL,
    ONBOARDING_URL,
)
from larkbot.testing.sample_data import CUSTOMERS_APP_TOKEN, sample_workspace
from larkbot.testing.workspace import Workspace, workspace_routes
from tests._factories import FIRST_TOOLS
from tests._mcp import ServerLog, mcp_session

pytestmark = pytest.mark.anyio

BASE_URL = f"https://example.feishu.cn/base/{CUSTOMERS_APP_TOKEN}"
NO_SCOPE = "The app lacks the Lark permission this needs ({scope})"

NEW_READ_TOOLS = (
    "list_chat_messages",
    "list_chats",
    "read_document",
    "search_wiki",
    "get_wiki_node",
    "list_base_tables",
    "list_base_fields",
    "lookup_user_ids",
)
NEW_WRITE_TOOLS = (
    "create_chat",
    "import_document",
    "grant_document_permission",
    "create_base_table",
)
WRITE_TOOLS = (
    "create_base_record",
    "update_base_record",
    "delete_base_record",
    "send_message",
    "create_calendar_event",
    *NEW_WRITE_TOOLS,
)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """One event loop for the module, so each ``larkbot mcp`` serves every test of its setup."""
    return "asyncio"


@dataclass
class Served:
    """A running ``larkbot mcp`` over one workspace, and a session with it."""

    ws: Workspace
    session: ClientSession
    log: ServerLog

    async def call(self, tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        with anyio.fail_after(30):
            return await self.session.call_tool(tool, arguments)


@asynccontextmanager
async def _serve(
    home: Path, *, denied: frozenset[str] = frozenset(), args: tuple[str, ...] = ()
) -> AsyncIterator[Served]:
    ws = sample_workspace()
    ws.denied_routes |= denied
    async with (
        LarkStandIn(extra_routes=workspace_routes(ws)) as lark,
        mcp_session(lark, home, "stdio", [*args, "-l", "en"]) as (session, log),
    ):
        yield Served(ws, session, log)


def _text(result: types.CallToolResult) -> str:
    (content,) = result.content
    assert isinstance(content, types.TextContent)
    return content.text


# --- what each tool is called with, what it must do, and how it fails ---------------------


def _history(ws: Workspace, data: dict[str, Any], text: str) -> None:
    assert [m["message_id"] for m in data["messages"]][:2] == [
        "om_sample_console_05",
        "om_sample_console_04",
    ]
    assert text.splitlines()[0] == "The last 5 messages in this chat (oldest first):"


def _chats(ws: Workspace, data: dict[str, Any], text: str) -> None:
    assert {chat["chat_id"] for chat in data["chats"]} == {"oc_sales"}
    assert "(oc_sales)" in text


def _chat_created(ws: Workspace, data: dict[str, Any], text: str) -> None:
    chat = ws.chats[data["chat_id"]]
    assert chat.name == "Launch over MCP" and "ou_emma" in chat.member_open_ids
    assert text.startswith(f"Created the group “Launch over MCP” ({chat.chat_id}) with ")


def _document_read(ws: Workspace, data: dict[str, Any], text: str) -> None:
    assert data["document_id"] == LAUNCH_PLAN_ID and data["match_count"] == 1
    assert data["matches"][0].startswith("Budget: the total budget is ¥12,000,000")
    assert text.splitlines()[1] == f"> {data['matches'][0]}"


def _document_imported(ws: Workspace, data: dict[str, Any], text: str) -> None:
    document = ws.docx[data["document_id"]]
    assert document.title == "MCP notes"
    assert document.paragraphs == ["Decisions", "The budget is approved.", "book the venue"]
    # No Lark user called: there is nobody to share it with.
    assert data["shared_with_requester"] is None
    assert text == f"Created the document “MCP notes” ({document.document_id})."


def _wiki_found(ws: Workspace, data: dict[str, Any], text: str) -> None:
    assert [page["node_token"] for page in data["pages"]] == ["wikcnOnboarding0001"]
    assert "Onboarding guide for new sales staff" in text


def _wiki_node(ws: Workspace, data: dict[str, Any], text: str) -> None:
    assert data["obj_type"] == "docx" and data["obj_token"] == "doxcnOnboarding0001"
    assert data["next"] == {
        "tool": "read_document",
        "arguments": {"document": "doxcnOnboarding0001"},
    }
    assert "Onboarding guide for new sales staff" in text


def _granted(ws: Workspace, data: dict[str, Any], text: str) -> None:
    members = [(m.member_type, m.member_id, m.perm) for m in ws.permissions[LAUNCH_PLAN_ID]]
    assert members == [("email", "emma.wilson@example.com", "edit")]
    assert data["permission"] == "edit" and data["kind"] == "docx"
    assert text.startswith("Gave emma.wilson@example.com ")


def _tables(ws: Workspace, data: dict[str, Any], text: str) -> None:
    assert [t["name"] for t in data["tables"]] == ["顧客一覧", "商談履歴"]
    assert text.startswith("This Base has 2 tables:")


def _fields(ws: Workspace, data: dict[str, Any], text: str) -> None:
    assert data["fields"][0]["primary"] is True
    assert data["fields"][2] == {
        "name": "Type",
        "type": "single_select",
        "primary": False,
        "options": ["訪問", "電話", "メール"],
    }
    assert "Subject" in text


def _table_created(ws: Workspace, data: dict[str, Any], text: str) -> None:
    table = ws.apps[CUSTOMERS_APP_TOKEN].tables[data["table_id"]]
    assert [(f.name, f.type, f.options) for f in table.fields] == [
        ("Title", 1, []),
        ("Kind", 3, ["Fair", "Seminar"]),
    ]
    assert text.startswith(f"Created the table “Events” ({table.table_id}) with the fields ")


def _people(ws: Workspace, data: dict[str, Any], text: str) -> None:
    assert data["people"] == [
        {"query": "emma.wilson@example.com", "open_id": "ou_emma"},
        {"query": "090-1234-5678", "open_id": "ou_console_user"},
    ]
    assert "ou_emma" in text


Check = Callable[[Workspace, dict[str, Any], str], None]


@dataclass(frozen=True)
class Case:
    """One tool: a call that works and its check, the route to refuse and the scope named,
    and a call about something missing with the sentence it answers."""

    tool: str
    works: dict[str, Any]
    check: Check
    route: str
    scope: str
    missing: dict[str, Any]
    sentence: str
    # Arguments that reach the refused route first (``works`` when not given).
    refused_with: dict[str, Any] | None = None


CASES = [
    Case(
        "list_chat_messages",
        {"chat_id": "oc_console"},
        _history,
        "GET im/v1/messages",
        "im:message.group_msg",
        {"chat_id": "oc_board"},
        "That chat was not found, or the bot is not a member of it.",
    ),
    Case(
        "list_chats",
        {"query": "Sales"},
        _chats,
        "GET im/v1/chats",
        "im:chat:readonly",
        {"query": "nowhere"},
        "No chat the bot is in matches “nowhere”.",
    ),
    Case(
        "create_chat",
        {"name": "Launch over MCP", "members": ["emma.wilson@example.com"]},
        _chat_created,
        "POST im/v1/chats",
        "im:chat:create",
        {"name": "Launch", "members": ["Nobody"]},
        "I could not find: Nobody.",
        # Members given by email are looked up first, on a route of their own.
        refused_with={"name": "Launch over MCP"},
    ),
    Case(
        "read_document",
        {"document": LAUNCH_PLAN_URL, "query": "the budget"},
        _document_read,
        "GET docx/v1/documents/{document_id}",
        "docx:document:readonly",
        {"document": "doxcnMissingDoc00001"},
        "That document was not found, or it was deleted; please check the link.",
    ),
    Case(
        "import_document",
        {
            "title": "MCP notes",
            "markdown": "# Decisions\n\nThe budget is approved.\n\n- book the venue",
        },
        _document_imported,
        "POST docx/v1/documents/blocks/convert",
        "docx:document.block:convert",
        {"title": "Notes", "markdown": "# Notes", "folder": "fldcnMissing00000001"},
        "That folder was not found; please check the link.",
    ),
    Case(
        "search_wiki",
        {"query": "onboarding"},
        _wiki_found,
        "search/v2/doc_wiki/search",
        "search:docs:read",
        {"query": "nowhere"},
        "No wiki pages match “nowhere”.",
    ),
    Case(
        "get_wiki_node",
        {"node": ONBOARDING_URL},
        _wiki_node,
        "GET wiki/v2/spaces/get_node",
        "wiki:wiki:readonly",
        {"node": "https://example.feishu.cn/wiki/wikcnMissingNode01"},
        "That wiki page was not found; please check the link.",
    ),
    Case(
        "grant_document_permission",
        {"document": LAUNCH_PLAN_URL, "member": "emma.wilson@example.com", "permission": "edit"},
        _granted,
        "POST drive/v1/permissions/{token}/members",
        "docs:permission.member:create",
        {"document": "https://example.feishu.cn/docx/doxcnMissingDoc00001", "member": "ou_emma"},
        "That document was not found, or it was deleted; please check the link.",
    ),
    Case(
        "list_base_tables",
        {"base": BASE_URL},
        _tables,
        "GET bitable/v1/apps/{app_token}/tables",
        "bitable:app:readonly",
        {"base": "https://example.feishu.cn/base/bascnMissingBase0001"},
        "That Base was not found; check the link or app_token, and share the Base with the app.",
    ),
    Case(
        "list_base_fields",
        {"base": BASE_URL, "table": ACTIVITIES_TABLE_ID},
        _fields,
        "bitable/v1/apps/{app_token}/tables/{table_id}/fields",
        "bitable:app:readonly",
        {"base": BASE_URL, "table": "tblMissing000001"},
        "That Base has no such table; check the table_id.",
    ),
    Case(
        "create_base_table",
        {
            "base": BASE_URL,
            "name": "Events",
            "fields": [
                {"name": "Title"},
                {"name": "Kind", "type": "single_select", "options": ["Fair", "Seminar"]},
            ],
        },
        _table_created,
        "POST bitable/v1/apps/{app_token}/tables",
        "bitable:app",
        {"base": "bascnMissingBase0001", "name": "Events", "fields": [{"name": "Title"}]},
        "That Base was not found; check the link or app_token, and share the Base with the app.",
    ),
    Case(
        "lookup_user_ids",
        {"emails": ["emma.wilson@example.com"], "mobiles": ["090-1234-5678"]},
        _people,
        "contact/v3/users/batch_get_id",
        "contact:user.id:readonly",
        {"emails": ["nobody@example.com"]},
        "nobody@example.com → not found",
    ),
]
IDS = [case.tool for case in CASES]


def test_the_cases_cover_every_new_tool() -> None:
    assert sorted(IDS) == sorted(NEW_READ_TOOLS + NEW_WRITE_TOOLS)
    registry = default_registry()
    for case in CASES:
        tool = registry.get(case.tool)
        assert tool is not None and case.scope in tool.scopes
        assert tool.write is (case.tool in NEW_WRITE_TOOLS)


# --- one server per fault setup ----------------------------------------------------------


@pytest.fixture(scope="module")
async def granted(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with _serve(tmp_path_factory.mktemp("granted"), args=("--allow-writes",)) as served:
        yield served


@pytest.fixture(scope="module")
async def refused(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    every_route = frozenset(case.route for case in CASES)
    home = tmp_path_factory.mktemp("refused")
    async with _serve(home, denied=every_route, args=("--allow-writes",)) as served:
        yield served


@pytest.fixture(scope="module")
async def missing(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with _serve(tmp_path_factory.mktemp("missing"), args=("--allow-writes",)) as served:
        yield served


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_each_tool_works_over_mcp(granted: Served, case: Case) -> None:
    result = await granted.call(case.tool, case.works)
    assert not result.is_error, _text(result)
    assert result.structured_content is not None
    case.check(granted.ws, result.structured_content, _text(result))
    if case.tool in NEW_WRITE_TOOLS:
        (audit,) = await granted.log.audit(case.tool)
        assert (audit.outcome, audit.caller) == ("success", "stdio")


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_a_missing_scope_over_mcp_names_the_scope(refused: Served, case: Case) -> None:
    result = await refused.call(case.tool, case.refused_with or case.works)
    assert result.is_error
    assert _text(result).startswith(NO_SCOPE.format(scope=case.scope))
    assert result.structured_content is None
    assert refused.ws.writes == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_something_missing_over_mcp_reads_as_a_sentence(missing: Served, case: Case) -> None:
    result = await missing.call(case.tool, case.missing)
    text = _text(result)
    assert case.sentence in text
    assert "Traceback" not in text and "code" not in text
    assert missing.ws.writes == []


# --- what is listed, with and without --allow-writes ---------------------------------------


async def test_allow_writes_lists_every_tool_by_name(granted: Served) -> None:
    listed = {tool.name: tool for tool in (await granted.session.list_tools()).tools}
    assert set(listed) == {*FIRST_TOOLS, *NEW_READ_TOOLS, *NEW_WRITE_TOOLS, "ask_larkbot"}
    assert len(listed) == 22
    for name in WRITE_TOOLS:
        annotations = listed[name].annotations
        assert annotations is not None and annotations.read_only_hint is False
    # Adding a table, a chat, a document or a member destroys nothing.
    for name in NEW_WRITE_TOOLS:
        annotations = listed[name].annotations
        assert annotations is not None and annotations.destructive_hint is False


async def test_without_allow_writes_no_write_tool_is_listed_or_callable(tmp_path: Path) -> None:
    async with _serve(tmp_path) as served:
        listed = {tool.name for tool in (await served.session.list_tools()).tools}
        assert listed == {
            *(name for name in FIRST_TOOLS if name not in WRITE_TOOLS),
            *NEW_READ_TOOLS,
            "ask_larkbot",
        }
        assert not listed & set(WRITE_TOOLS)
        for case in CASES:
            if case.tool in NEW_WRITE_TOOLS:
                refused = await served.call(case.tool, case.works)
                assert refused.is_error and case.tool in _text(refused)
        assert served.ws.writes == []
