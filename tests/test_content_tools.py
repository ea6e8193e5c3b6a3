"""The history, chat, document, wiki, Base schema and people tools, through the runner.

Every call goes through ``ToolRunner.run`` with plain JSON arguments (as the MCP server
and the LLM brain send them) and the real OpenAPI client, to the local Lark stand-in
serving the sample workspace.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import pytest

import larkbot.agent.i18n
from larkbot.agent.i18n import MESSAGES
from larkbot.agent.limits import RateLimiter
from larkbot.agent.tools import ToolContext, ToolResult, ToolRunner, default_registry
from larkbot.agent.tools._base_schema import _TYPES as FIELD_TYPES
from larkbot.agent.tools._docs import matching_paragraphs
from larkbot.agent.tools._history import message_text
from larkbot.agent.tools._links import find_links, parse_reference
from larkbot.agent.tools._wiki import _KINDS as OBJECT_KINDS
from larkbot.testing import LarkStandIn
from larkbot.testing._sample_content import (
    ACTIVITIES_TABLE_ID,
    LAUNCH_PLAN_ID,
    LAUNCH_PLAN_URL,
    ONBOARDING_URL,
    SALES_THREAD_ID,
    SAMPLE_FOLDER,
)
from larkbot.testing.sample_data import CUSTOMERS_APP_TOKEN
from larkbot.testing.workspace import Workspace
from tests._factories import Sample, add_history, chat_message, console_context

pytestmark = pytest.mark.anyio

BASE_URL = f"https://example.feishu.cn/base/{CUSTOMERS_APP_TOKEN}"
TABLES_ROUTE = "bitable/v1/apps/{app_token}/tables"
NO_SCOPE = "The app lacks the Lark permission this needs ({scope})"


@dataclass
class Env:
    ws: Workspace
    lark: LarkStandIn
    runner: ToolRunner
    ctx: ToolContext

    async def call(self, tool: str, language: str = "en", /, **arguments: Any) -> ToolResult:
        ctx = replace(self.ctx, language=language)
        return await self.runner.run(tool, json.dumps(arguments, ensure_ascii=False), ctx)

    def routes(self) -> list[str]:
        return [call.route for call in self.lark.api_calls]

    def later_message(self, message_id: str) -> Env:
        """The same workspace and runner, asked by a later message: a new request, so the
        same arguments are a new call rather than a repeat of this message's."""
        return replace(self, ctx=replace(self.ctx, message_id=message_id))


@pytest.fixture
def env(sample: Sample) -> Env:
    runner = ToolRunner(default_registry(), write_limiter=None, writers=None, cache_ttl_seconds=0)
    ctx = console_context(sample.client, message_id="om_content_1", language="en")
    return Env(sample.ws, sample.lark, runner, ctx)


# --- a missing scope and a missing object, for every tool ------------------------------------

# (tool, arguments that succeed, route to deny, the scope its refusal names)
SCOPES: list[tuple[str, dict[str, Any], str, str]] = [
    ("list_chat_messages", {}, "GET im/v1/messages", "im:message.group_msg"),
    ("list_chats", {}, "GET im/v1/chats", "im:chat:readonly"),
    ("create_chat", {"name": "Launch"}, "POST im/v1/chats", "im:chat:create"),
    (
        "read_document",
        {"document": LAUNCH_PLAN_URL},
        "GET docx/v1/documents/{document_id}",
        "docx:document:readonly",
    ),
    (
        "import_document",
        {"title": "Notes", "markdown": "# Notes"},
        "POST docx/v1/documents/blocks/convert",
        "docx:document.block:convert",
    ),
    ("search_wiki", {"query": "onboarding"}, "search/v2/doc_wiki/search", "search:docs:read"),
    (
        "get_wiki_node",
        {"node": ONBOARDING_URL},
        "GET wiki/v2/spaces/get_node",
        "wiki:wiki:readonly",
    ),
    (
        "grant_document_permission",
        {"document": LAUNCH_PLAN_URL, "member": "ou_emma"},
        "POST drive/v1/permissions/{token}/members",
        "docs:permission.member:create",
    ),
    (
        "list_base_tables",
        {"base": BASE_URL},
        "GET bitable/v1/apps/{app_token}/tables",
        "bitable:app:readonly",
    ),
    (
        "list_base_fields",
        {"table": "tasks"},
        "bitable/v1/apps/{app_token}/tables/{table_id}/fields",
        "bitable:app:readonly",
    ),
    (
        "create_base_table",
        {"base": BASE_URL, "name": "Events", "fields": [{"name": "Title"}]},
        "POST bitable/v1/apps/{app_token}/tables",
        "bitable:app",
    ),
    (
        "lookup_user_ids",
        {"emails": ["emma.wilson@example.com"]},
        "contact/v3/users/batch_get_id",
        "contact:user.id:readonly",
    ),
]


@pytest.mark.parametrize(
    ("tool", "arguments", "route", "scope"), SCOPES, ids=[s[0] for s in SCOPES]
)
async def test_a_missing_scope_reads_as_a_sentence_naming_it(
    env: Env, tool: str, arguments: dict[str, Any], route: str, scope: str
) -> None:
    assert (await env.call(tool, **arguments)).ok
    env.ws.denied_routes.add(route)
    result = await env.later_message("om_content_2").call(tool, **arguments)
    assert not result.ok
    assert result.error == result.text
    assert result.error is not None and result.error.startswith(NO_SCOPE.format(scope=scope))
    ja = await env.later_message("om_content_3").call(tool, "ja", **arguments)
    assert ja.error is not None and ja.error.startswith(f"アプリに必要な Lark の権限（{scope}）")
    registry_scopes = default_registry().get(tool).scopes  # type: ignore[union-attr]
    assert scope in registry_scopes


# (tool, arguments naming something that does not exist, the sentence)
NOT_FOUND: list[tuple[str, dict[str, Any], str]] = [
    (
        "list_chat_messages",
        {"chat_id": "oc_board"},
        "That chat was not found, or the bot is not a member of it.",
    ),
    ("list_chats", {"query": "nowhere"}, "No chat the bot is in matches “nowhere”."),
    ("create_chat", {"name": "Launch", "members": ["Nobody"]}, "I could not find: Nobody."),
    (
        "read_document",
        {"document": "doxcnMissingDoc00001"},
        "That document was not found, or it was deleted; please check the link.",
    ),
    (
        "import_document",
        {"title": "Notes", "markdown": "# Notes", "folder": "fldcnMissing00000001"},
        "That folder was not found; please check the link.",
    ),
    ("search_wiki", {"query": "nowhere"}, "No wiki pages match “nowhere”."),
    (
        "get_wiki_node",
        {"node": "https://example.feishu.cn/wiki/wikcnMissingNode01"},
        "That wiki page was not found; please check the link.",
    ),
    (
        "grant_document_permission",
        {"document": "https://example.feishu.cn/docx/doxcnMissingDoc00001", "member": "ou_emma"},
        "That document was not found, or it was deleted; please check the link.",
    ),
    (
        "list_base_tables",
        {"base": "https://example.feishu.cn/base/bascnMissingBase0001"},
        "That Base was not found; check the link or app_token, and share the Base with the app.",
    ),
    (
        "list_base_fields",
        {"base": BASE_URL, "table": "tblMissing000001"},
        "That Base has no such table; check the table_id.",
    ),
    (
        "create_base_table",
        {"base": "bascnMissingBase0001", "name": "Events", "fields": [{"name": "Title"}]},
        "That Base was not found; check the link or app_token, and share the Base with the app.",
    ),
    ("lookup_user_ids", {"emails": ["nobody@example.com"]}, "nobody@example.com → not found"),
]


@pytest.mark.parametrize(
    ("tool", "arguments", "sentence"), NOT_FOUND, ids=[n[0] for n in NOT_FOUND]
)
async def test_something_missing_reads_as_a_polite_sentence(
    env: Env, tool: str, arguments: dict[str, Any], sentence: str
) -> None:
    result = await env.call(tool, **arguments)
    assert sentence in result.text
    assert "Traceback" not in result.text and "code" not in result.text
    assert not env.ws.writes


def _catalogue_keys() -> list[str]:
    """Every key written in the catalogue's source, repeats included."""
    source = Path(larkbot.agent.i18n.__file__).read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "MESSAGES"
            and isinstance(node.value, ast.Dict)
        ):
            return [key.value for key in node.value.keys if isinstance(key, ast.Constant)]
    raise AssertionError("MESSAGES is not a dict literal")


def test_every_tool_has_three_languages_of_help_and_sentences() -> None:
    for tool in default_registry():
        assert set(MESSAGES[f"tool_{tool.name}"]) == {"ja", "en", "zh"}
        assert tool.scopes and len(tool.description) > 80
    # One catalogue: a key written twice would silently keep only its last sentences.
    keys = _catalogue_keys()
    assert len(keys) == len(set(keys)) == len(MESSAGES)
    for key, message in MESSAGES.items():
        assert all(message[language] for language in message), key
        if message.en_one is not None:
            assert message.en_one, key


def test_every_object_kind_and_field_type_has_a_name_in_each_language() -> None:
    # These keys are built at run time (object_<kind>, field_type_<type>), out of sight
    # of the check that every literal key exists.
    for kind in OBJECT_KINDS:
        assert set(MESSAGES[f"object_{kind}"]) == {"ja", "en", "zh"}
    for field_type in FIELD_TYPES:
        assert set(MESSAGES[f"field_type_{field_type}"]) == {"ja", "en", "zh"}
    for permission in ("view", "edit"):
        assert set(MESSAGES[f"perm_{permission}"]) == {"ja", "en", "zh"}


# --- list_chat_messages -------------------------------------------------------------------


async def test_history_is_newest_first_with_names_and_text_of_each_kind(env: Env) -> None:
    result = await env.call("list_chat_messages")
    assert result.ok
    messages = result.data["messages"]
    assert [m["message_id"] for m in messages] == [
        "om_sample_console_05",
        "om_sample_console_04",
        "om_sample_console_03",
        "om_sample_console_02",
        "om_sample_console_01",
    ]
    by_id = {m["message_id"]: m for m in messages}
    assert by_id["om_sample_console_01"]["sender"] == "佐藤 美咲"
    assert by_id["om_sample_console_05"]["sender"] == "Bot"
    assert by_id["om_sample_console_03"]["text"].startswith("Acme デモの件\nAcme の John Smith")
    assert "@田中 健 ご判断をお願いします。" in by_id["om_sample_console_03"]["text"]
    assert result.text.splitlines()[0] == "The last 5 messages in this chat (oldest first):"
    assert result.text.splitlines()[1].endswith(
        f"**佐藤 美咲**: おはようございます。Sakura Cloud のローンチ計画をまとめました: "
        f"{LAUNCH_PLAN_URL}"
    )
    assert result.data["truncated"] is False and result.data["next_before"] is None
    assert "contact/v3/users/batch" in env.routes()


async def test_history_of_a_thread_and_without_bots(env: Env) -> None:
    thread = await env.call("list_chat_messages", thread_id=SALES_THREAD_ID)
    assert [m["sender"] for m in thread.data["messages"]] == ["佐藤 美咲", "田中 健", "小林 さくら"]
    assert thread.text.startswith("The last 3 messages in this thread")
    people = await env.call("list_chat_messages", exclude_bots=True)
    assert "Bot" not in {m["sender"] for m in people.data["messages"]}
    assert people.data["count"] == 4


async def test_history_stops_at_the_limit_and_pages_back_with_next_before(env: Env) -> None:
    first = await env.call("list_chat_messages", limit=2)
    assert first.data["count"] == 2 and first.data["truncated"] is True
    assert "(older messages are not shown)" in first.text
    older = await env.call("list_chat_messages", limit=10, before=first.data["next_before"])
    ids = [m["message_id"] for m in older.data["messages"]]
    # The boundary message may repeat; nothing older is lost.
    assert ids[0] == first.data["messages"][-1]["message_id"]
    assert ids[1:] == ["om_sample_console_03", "om_sample_console_02", "om_sample_console_01"]


async def test_history_stays_within_the_token_budget_over_many_pages(env: Env) -> None:
    checked = "服务器日志已经检查完毕。" * 20
    add_history(env.ws, "oc_dev", "ou_li", [f"第{n}条：{checked}" for n in range(150)])
    result = await env.call("list_chat_messages", chat_id="oc_dev", limit=200, token_budget=2000)
    assert result.data["truncated"] is True
    assert 3 <= result.data["count"] < 20
    assert sum(len(m["text"]) for m in result.data["messages"]) <= 2000
    assert result.data["messages"][0]["message_id"] == "om_long_149"
    calls = env.routes().count("im/v1/messages")
    everything = await env.call(
        "list_chat_messages", chat_id="oc_dev", limit=200, token_budget=20000
    )
    # More than a page of 50 fits this budget: the second page is fetched too.
    assert 50 < everything.data["count"] < 150
    assert env.routes().count("im/v1/messages") - calls == 2


async def test_mentions_in_history_read_as_names(env: Env) -> None:
    mentioning = [("ou_emma", "Emma Wilson")]
    env.ws.messages.append(
        chat_message("om_mention", "see @_user_1 about the plan", mentions=mentioning)
    )
    result = await env.call("list_chat_messages", limit=1)
    (latest,) = result.data["messages"]
    assert latest["text"] == "see @Emma Wilson about the plan"
    assert latest["sender"] == "佐藤 美咲"


def test_text_of_cards_and_other_kinds() -> None:
    card = {
        "schema": "2.0",
        "header": {"title": {"tag": "plain_text", "content": "Weekly report"}},
        "body": {"elements": [{"tag": "markdown", "content": "**Sales** up 5%"}]},
    }
    assert message_text("interactive", json.dumps(card), []) == "Weekly report\n**Sales** up 5%"
    raw = {"json_card": json.dumps(card), "card_schema": 2}
    assert message_text("interactive", json.dumps(raw), []) == "Weekly report\n**Sales** up 5%"
    simple = {"title": "Hi", "elements": [[{"tag": "text", "text": "one"}]]}
    assert message_text("interactive", json.dumps(simple), []) == "Hi\none"
    locale = {"ja_jp": {"title": "件名", "content": [[{"tag": "text", "text": "本文"}]]}}
    assert message_text("post", json.dumps(locale), []) == "件名\n本文"
    assert message_text("image", '{"image_key": "img_1"}', []) == "[image]"
    assert message_text("text", "not json", []) == ""


# --- chats ------------------------------------------------------------------------------


async def test_list_chats_filters_by_name_and_skips_chats_without_the_bot(env: Env) -> None:
    everything = await env.call("list_chats")
    names = {c["chat_id"] for c in everything.data["chats"]}
    assert names == {"oc_console", "oc_sales", "oc_dev", "oc_all"}
    zh = await env.call("list_chats", "zh", query="销售")
    assert zh.text == "有 1 个群聊包含“销售”：\n- **営業チーム / Sales / 销售团队** (oc_sales)"


async def test_create_chat_resolves_names_and_emails_once_per_turn(env: Env) -> None:
    arguments = {"name": "Launch team", "members": ["佐藤", "emma.wilson@example.com"]}
    first = await env.call("create_chat", **arguments)
    again = await env.call("create_chat", **arguments)
    assert first.ok and again.data == first.data
    chat = env.ws.chats[first.data["chat_id"]]
    assert chat.name == "Launch team" and chat.owner_open_id == "ou_console_user"
    assert chat.member_open_ids == ["ou_console_user", "ou_sato", "ou_emma"]
    assert first.text == (
        f"Created the group “Launch team” ({chat.chat_id}) with 田中 健, 佐藤 美咲, "
        "emma.wilson@example.com."
    )
    writes = [w for w in env.ws.writes if w.route == "im/v1/chats"]
    assert len(writes) == 1 and writes[0].params["set_bot_manager"] == "true"


async def test_create_chat_with_someone_the_bot_cannot_see_is_explained(env: Env) -> None:
    result = await env.call("create_chat", "ja", name="x", members=["ou_stranger"])
    assert result.error == (
        "ボットから見えない（アプリの利用範囲外の）人が含まれているため、グループを作成できませんでした。"
    )


async def test_write_tools_obey_writers_the_limit_and_the_audit_log(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    guarded = ToolRunner(
        default_registry(),
        write_limiter=RateLimiter(1),
        writers={"ou_console_user"},
        cache_ttl_seconds=0,
    )
    outsider = replace(env.ctx, user_open_id="ou_li")
    denied = await guarded.run(
        "create_base_table",
        '{"base": "customers", "name": "A", "fields": [{"name": "x"}]}',
        outsider,
    )
    assert (
        denied.error is not None
        and "not allowed to make changes with create_base_table" in denied.error
    )
    with caplog.at_level(logging.INFO, logger="larkbot.agent.audit"):
        made = await guarded.run("import_document", '{"title": "T", "markdown": "hi"}', env.ctx)
        limited = await guarded.run("import_document", '{"title": "U", "markdown": "hi"}', env.ctx)
    assert made.ok
    assert limited.error is not None and limited.error.startswith(
        "You can make 1 changes per minute"
    )
    audited = [r for r in caplog.records if r.name == "larkbot.agent.audit"]
    assert [r.outcome for r in audited] == ["success", "rate_limited"]  # type: ignore[attr-defined]
    assert all(r.tool_name == "import_document" for r in audited)  # type: ignore[attr-defined]


# --- documents ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "query", "paragraph"),
    [
        ("en", "the budget", "Budget: the total budget is ¥12,000,000"),
        ("ja", "予算", "予算: 総予算は 1,200 万円。"),
        ("zh", "预算", "预算：总预算为 1,200 万日元"),
    ],
)
async def test_read_document_finds_the_paragraphs_about_a_topic(
    env: Env, language: str, query: str, paragraph: str
) -> None:
    result = await env.call("read_document", language, document=LAUNCH_PLAN_URL, query=query)
    assert result.ok and result.data["match_count"] == 1
    (match,) = result.data["matches"]
    assert match.startswith(paragraph)
    assert result.text.splitlines()[1] == f"> {match}"


async def test_read_document_says_when_nothing_matches_and_how_it_begins(env: Env) -> None:
    result = await env.call("read_document", document=LAUNCH_PLAN_ID, query="holidays")
    assert result.text.startswith(
        "“Sakura Cloud ローンチ計画 / Launch plan / 发布计划” does not mention “holidays”.\n"
        "It begins: Sakura Cloud ローンチ計画 2025"
    )


async def test_read_document_in_parts_reads_the_whole_text(env: Env) -> None:
    whole = env.ws.docx[LAUNCH_PLAN_ID].raw_content
    parts: list[str] = []
    offset: int | None = 0
    while offset is not None:
        result = await env.call(
            "read_document", document=LAUNCH_PLAN_URL, offset=offset, max_chars=200
        )
        parts.append(result.data["content"])
        assert result.data["total_chars"] == len(whole)
        offset = result.data["next_offset"]
    assert "".join(parts) == whole and len(parts) > 3
    first = await env.call("read_document", document=LAUNCH_PLAN_URL, max_chars=200)
    assert first.text.endswith(
        f"(characters 0–{first.data['next_offset']} of {len(whole)}; ask for "
        f"offset={first.data['next_offset']} to read on)"
    )


async def test_read_document_through_a_wiki_link_and_refusing_a_base(env: Env) -> None:
    page = await env.call("read_document", document=ONBOARDING_URL, query="who to ask")
    assert page.data["title"] == "Onboarding guide for new sales staff"
    assert page.data["matches"][0].startswith("Who to ask: Misaki Sato")
    base = await env.call(
        "read_document", document="https://example.feishu.cn/wiki/wikcnCustomerBase01"
    )
    assert base.error == (
        f"That is not a docx document but a Base ({CUSTOMERS_APP_TOKEN}), "
        "so its text cannot be read."
    )


async def test_import_document_builds_blocks_and_shares_with_the_requester(env: Env) -> None:
    markdown = (
        "# Launch checklist\n\nConfirm the **budget** with Ken.\n\n- book the venue\n"
        "1. press release\n> ship it\n\n```\nmake release\n```\n---\n"
        "| item | owner |\n|---|---|\n| venue | Sato |\n"
    )
    result = await env.call(
        "import_document",
        title="Checklist",
        markdown=markdown,
        folder=f"https://example.feishu.cn/drive/folder/{SAMPLE_FOLDER}",
    )
    assert result.ok and result.data["shared_with_requester"] is True
    document = env.ws.docx[result.data["document_id"]]
    assert document.folder_token == SAMPLE_FOLDER
    assert document.paragraphs == [
        "Launch checklist",
        "Confirm the budget with Ken.",
        "book the venue",
        "press release",
        "ship it",
        "make release",
        "item\towner",
        "venue\tSato",
    ]
    members = env.ws.permissions[document.document_id]
    assert [(m.member_id, m.perm) for m in members] == [("ou_console_user", "full_access")]
    assert result.text == f"Created the document “Checklist” ({document.document_id})."
    # What was written reads back.
    read = await env.call("read_document", document=document.document_id, query="budget")
    assert read.data["matches"] == ["Confirm the budget with Ken."]


async def test_grant_document_permission_by_name_email_and_chat(env: Env) -> None:
    by_name = await env.call(
        "grant_document_permission",
        "ja",
        document=LAUNCH_PLAN_URL,
        member="佐藤",
        permission="edit",
    )
    assert by_name.text == f"佐藤 美咲 に {LAUNCH_PLAN_URL} の編集権限を付与しました。"
    await env.call(
        "grant_document_permission", document=LAUNCH_PLAN_ID, member="emma.wilson@example.com"
    )
    await env.call(
        "grant_document_permission",
        document="https://example.feishu.cn/sheets/shtcnQ3Report000001",
        member="oc_sales",
    )
    assert [(m.member_type, m.member_id, m.perm) for m in env.ws.permissions[LAUNCH_PLAN_ID]] == [
        ("openid", "ou_sato", "edit"),
        ("email", "emma.wilson@example.com", "view"),
    ]
    (chat,) = env.ws.permissions["shtcnQ3Report000001"]
    assert (chat.member_type, chat.type) == ("openchat", "chat")
    share = next(w for w in reversed(env.ws.writes) if "permissions" in w.route)
    assert share.params["type"] == "sheet"


async def test_a_grant_of_what_the_member_already_holds_succeeds(env: Env) -> None:
    """A grant run again (a confirmed write taken over after its first attempt went
    through), or asking for less than the member was given since, is no failure."""
    grant = {"document": LAUNCH_PLAN_ID, "member": "佐藤", "permission": "edit"}
    first = await env.call("grant_document_permission", **grant)
    again = await env.later_message("om_content_2").call("grant_document_permission", **grant)
    assert first.ok and again.ok and not again.data["already_held"]
    # Given full access since: Lark refuses edit (1063003), and the member list says why.
    env.ws.permissions[LAUNCH_PLAN_ID] = [
        replace(member, perm="full_access") for member in env.ws.permissions[LAUNCH_PLAN_ID]
    ]
    held = await env.later_message("om_content_3").call("grant_document_permission", **grant)
    assert held.ok and held.data["already_held"]
    assert held.text == f"佐藤 美咲 already has edit access (or more) to {LAUNCH_PLAN_ID}."
    assert [(m.member_id, m.perm) for m in env.ws.permissions[LAUNCH_PLAN_ID]] == [
        ("ou_sato", "full_access")
    ]
    # Without the member list, the refusal stands.
    env.ws.denied_routes.add("GET drive/v1/permissions/{token}/members")
    refused = await env.later_message("om_content_4").call("grant_document_permission", **grant)
    assert not refused.ok


def test_matching_paragraphs_ranks_by_words_found() -> None:
    content = (
        "Budget overview\nThe travel budget is small.\nNothing here.\n予算の内訳は広告です。\n"
    )
    assert matching_paragraphs(content, "travel budget") == [
        "The travel budget is small.",
        "Budget overview",
    ]
    assert matching_paragraphs(content, "予算の内訳") == ["予算の内訳は広告です。"]
    assert matching_paragraphs(content, "the") == []


def test_links_and_tokens_are_read_wherever_they_appear() -> None:
    text = f"see {LAUNCH_PLAN_URL}, {ONBOARDING_URL}。and {BASE_URL}?table=tblTasks00000001&view=v"
    assert [(link.kind, link.token, link.table_id) for link in find_links(text)] == [
        ("docx", LAUNCH_PLAN_ID, None),
        ("wiki", "wikcnOnboarding0001", None),
        ("bitable", CUSTOMERS_APP_TOKEN, "tblTasks00000001"),
    ]
    bare = parse_reference("doxcnSomething0001", default_kind="docx")
    assert bare is not None and (bare.kind, bare.url) == ("docx", "")
    assert parse_reference("not a link!", default_kind="docx") is None


# --- wiki ---------------------------------------------------------------------------------


async def test_search_wiki_finds_only_wiki_pages(env: Env) -> None:
    result = await env.call("search_wiki", "ja", query="顧客")
    assert [p["node_token"] for p in result.data["pages"]] == ["wikcnCustomerBase01"]
    assert result.text.startswith("「顧客」の Wiki ページが 1 件見つかりました:")
    documents = await env.call("search_documents", query="Sakura")
    assert documents.data["documents"][0]["token"] == LAUNCH_PLAN_ID
    assert not (await env.call("search_wiki", query="Sakura")).data["pages"]


async def test_get_wiki_node_says_what_the_page_holds_and_what_reads_it(env: Env) -> None:
    page = await env.call("get_wiki_node", "zh", node=ONBOARDING_URL)
    assert page.data["obj_type"] == "docx" and page.data["obj_token"] == "doxcnOnboarding0001"
    assert page.data["next"] == {
        "tool": "read_document",
        "arguments": {"document": "doxcnOnboarding0001"},
    }
    assert (
        page.text
        == "知识库页面“Onboarding guide for new sales staff”中是文档（doxcnOnboarding0001）。"
    )
    base = await env.call("get_wiki_node", node="wikcnCustomerBase01")
    assert base.data["next"] == {
        "tool": "list_base_tables",
        "arguments": {"base": CUSTOMERS_APP_TOKEN},
    }
    sheet = await env.call("get_wiki_node", node="wikcnQ3Report00001")
    assert sheet.data["next"] is None and "spreadsheet" in sheet.text
    # A document's own link finds the wiki page that holds it.
    holder = await env.call(
        "get_wiki_node", node="https://example.feishu.cn/docx/doxcnOnboarding0001"
    )
    assert holder.data["node_token"] == "wikcnOnboarding0001"


# --- Base schema --------------------------------------------------------------------------


async def test_list_base_tables_by_link_wiki_link_and_configured_name(env: Env) -> None:
    expected = [
        {"table_id": "tblCustomers0001", "name": "顧客一覧"},
        {"table_id": ACTIVITIES_TABLE_ID, "name": "商談履歴"},
    ]
    for base in (BASE_URL, "https://example.feishu.cn/wiki/wikcnCustomerBase01", "顧客"):
        result = await env.call("list_base_tables", base=base)
        assert result.data["tables"] == expected, base
    assert result.text == (
        "This Base has 2 tables:\n- **顧客一覧** (tblCustomers0001)\n"
        f"- **商談履歴** ({ACTIVITIES_TABLE_ID})"
    )


async def test_list_base_fields_names_types_options_and_the_primary(env: Env) -> None:
    by_name = await env.call("list_base_fields", "ja", base=BASE_URL, table="商談履歴")
    assert by_name.data["fields"][2] == {
        "name": "Type",
        "type": "single_select",
        "primary": False,
        "options": ["訪問", "電話", "メール"],
    }
    assert by_name.text.splitlines()[:2] == [
        "商談履歴 のフィールドは 5 件です:",
        "- **Subject** — テキスト (主フィールド)",
    ]
    by_link = await env.call("list_base_fields", base=f"{BASE_URL}?table={ACTIVITIES_TABLE_ID}")
    assert by_link.data["fields"] == by_name.data["fields"]
    configured = await env.call("list_base_fields", table="tasks")
    assert [f["name"] for f in configured.data["fields"]][:2] == ["Task", "Assignee"]
    unknown = await env.call("list_base_fields", base=BASE_URL, table="Invoices")
    assert unknown.error == "This Base has no table called “Invoices”. Tables: 顧客一覧, 商談履歴."


async def test_create_base_table_with_fields_and_options(env: Env) -> None:
    arguments = {
        "base": BASE_URL,
        "name": "Events",
        "fields": [
            {"name": "Title"},
            {"name": "Kind", "type": "single_select", "options": ["Fair", "Seminar"]},
            {"name": "Day", "type": "date"},
        ],
    }
    result = await env.call("create_base_table", **arguments)
    table = env.ws.apps[CUSTOMERS_APP_TOKEN].tables[result.data["table_id"]]
    assert [(f.name, f.type, f.options, f.is_primary) for f in table.fields] == [
        ("Title", 1, [], True),
        ("Kind", 3, ["Fair", "Seminar"], False),
        ("Day", 5, [], False),
    ]
    assert result.text == (
        f"Created the table “Events” ({table.table_id}) with the fields Title (text), "
        "Kind (single select), Day (date)."
    )
    again = await env.later_message("om_content_2").call("create_base_table", "zh", **arguments)
    assert again.error == "该多维表格中已有名为“Events”的数据表。"
    twins = await env.call(
        "create_base_table", base=BASE_URL, name="X", fields=[{"name": "a"}, {"name": "A"}]
    )
    assert twins.error == "Two fields have the same name; please name them differently."


# --- creations without a platform client token, retried ----------------------------------


async def test_a_retried_create_base_table_answers_the_table_it_made(env: Env) -> None:
    arguments = {"base": BASE_URL, "name": "Events", "fields": [{"name": "Title"}]}
    first = await env.call("create_base_table", **arguments)
    # The same message's turn run again: the same call, the same table, no second request.
    again = await env.call("create_base_table", **arguments)
    assert first.ok and again.ok and again.data == first.data and again.text == first.text
    tables = env.ws.apps[CUSTOMERS_APP_TOKEN].tables.values()
    assert [t.name for t in tables].count("Events") == 1
    assert [w.route for w in env.ws.writes] == ["bitable/v1/apps/{app_token}/tables"]
    # Other arguments in the same turn are another call.
    other = await env.call("create_base_table", **{**arguments, "name": "Fairs"})
    assert other.ok and other.data["table_id"] != first.data["table_id"]


async def test_a_retried_import_document_makes_one_document(env: Env) -> None:
    arguments = {"title": "Minutes", "markdown": "# Minutes\n\nBudget approved."}
    first = await env.call("import_document", **arguments)
    again = await env.call("import_document", **arguments)
    assert first.ok and again.data == first.data
    document = env.ws.docx[first.data["document_id"]]
    assert document.paragraphs == ["Minutes", "Budget approved."]
    assert [d.title for d in env.ws.docx.values()].count("Minutes") == 1
    # A later message asking the same makes a new document: titles need not be unique.
    later = await env.later_message("om_content_2").call("import_document", **arguments)
    assert later.ok and later.data["document_id"] != first.data["document_id"]


async def test_an_import_that_failed_after_creating_fills_that_document_when_retried(
    env: Env,
) -> None:
    arguments = {"title": "Plan", "markdown": "# Plan\n\n- book the venue"}
    env.ws.denied_routes.add(
        "POST " + "docx/v1/documents/{document_id}/blocks/{block_id}/descendant"
    )
    failed = await env.call("import_document", **arguments)
    assert failed.error is not None and failed.error.startswith(
        NO_SCOPE.format(scope="docx:document")
    )
    (empty,) = [d for d in env.ws.docx.values() if d.title == "Plan"]
    assert empty.paragraphs == []
    env.ws.denied_routes.clear()
    retried = await env.call("import_document", **arguments)
    assert retried.ok and retried.data["document_id"] == empty.document_id
    assert [d.title for d in env.ws.docx.values()].count("Plan") == 1
    assert empty.paragraphs == ["Plan", "book the venue"]
    assert retried.data["shared_with_requester"] is True


async def test_the_same_creation_twice_at_once_makes_one(env: Env) -> None:
    tables: list[ToolResult] = []
    documents: list[ToolResult] = []
    table = {"base": BASE_URL, "name": "Twice", "fields": [{"name": "Title"}]}
    document = {"title": "Twice", "markdown": "hello"}
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(lambda: _append(tables, env.call("create_base_table", **table)))
            tg.start_soon(lambda: _append(documents, env.call("import_document", **document)))
    assert all(r.ok for r in tables + documents)
    assert tables[0].data == tables[1].data and documents[0].data == documents[1].data
    created = [w.route for w in env.ws.writes if w.route in ("docx/v1/documents", TABLES_ROUTE)]
    assert sorted(created) == sorted(["docx/v1/documents", TABLES_ROUTE])


async def _append(results: list[ToolResult], call: Awaitable[ToolResult]) -> None:
    results.append(await call)


# --- people -------------------------------------------------------------------------------


async def test_lookup_user_ids_by_email_and_mobile(env: Env) -> None:
    result = await env.call(
        "lookup_user_ids",
        "zh",
        emails=["emma.wilson@example.com", "nobody@example.com"],
        mobiles=["090-1234-5678"],
    )
    assert result.data["people"] == [
        {"query": "emma.wilson@example.com", "open_id": "ou_emma"},
        {"query": "nobody@example.com", "open_id": None},
        {"query": "090-1234-5678", "open_id": "ou_console_user"},
    ]
    assert result.text.splitlines()[0] == "共 3 个，找到 2 个："
    empty = await env.call("lookup_user_ids")
    assert empty.error is not None and "give at least one email or mobile number" in empty.error
