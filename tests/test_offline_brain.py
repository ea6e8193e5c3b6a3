"""The offline brain: intents in Japanese, English and Chinese, and the tools they run.

The parsing tests check the exact tool call planned for a request; the scenario tests
send requests through the real assistant, the real ``ToolRunner`` and the real OpenAPI
client to the local Lark stand-in serving the sample workspace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from larkbot.agent.assistant import Assistant
from larkbot.agent.brain import TurnContext
from larkbot.agent.i18n import MESSAGES, translate
from larkbot.agent.offline import OfflineBrain, ToolCall
from larkbot.agent.profiles import BUILTIN_PROFILES
from larkbot.agent.tools._content_tools import content_tools
from larkbot.agent.tools.registry import default_registry
from larkbot.agent.tools.runner import ToolRunner
from larkbot.config.settings import Settings
from larkbot.core.conversation import Conversation
from larkbot.core.language import Language, detect_language
from larkbot.core.message import InboundMessage, Mention, UserId
from larkbot.ops.metrics import REGISTRY
from larkbot.testing import LarkStandIn
from larkbot.testing.sample_data import SAMPLE_BASES
from larkbot.testing.workspace import User
from tests._factories import REQUEST_PIECES, Sample, Status, console_message

TOKYO = ZoneInfo("Asia/Tokyo")
# A Wednesday morning, so "tomorrow", "Friday" and "today 9am" have fixed answers.
NOW = datetime(2025, 1, 15, 10, 0, tzinfo=TOKYO)
MENTIONS = (
    Mention(key="@_user_1", id=UserId(open_id="ou_tom"), name="Tom"),
    Mention(key="@_user_2", id=UserId(open_id="ou_tanaka"), name="田中"),
    Mention(key="@_user_3", id=UserId(open_id="ou_wang"), name="小王"),
    Mention(key="@_user_4", id=UserId(open_id="ou_emma"), name="Emma Wilson"),
)


def message(
    text: str, *, mentions: tuple[Mention, ...] = MENTIONS, chat: str = "oc_sales", index: int = 0
) -> InboundMessage:
    message_id = f"om_offline_{index}_{abs(hash(text))}"
    return console_message(text, message_id=message_id, chat=chat, mentions=mentions)


def plan(
    text: str, language: Language | None = None, *, mentions: tuple[Mention, ...] = MENTIONS
) -> ToolCall | str | None:
    """Plan ``text`` as the assistant would, answering in its language (default Japanese)."""
    brain = OfflineBrain(now=lambda: NOW)
    turn = TurnContext(
        settings=Settings(bases=SAMPLE_BASES),
        language=language or detect_language(text) or "ja",
        profile=BUILTIN_PROFILES["LarkAssistant"],
    )
    return brain.plan(message(text, mentions=mentions), turn)


def at(day: int, hour: int, minute: int = 0) -> str:
    return datetime(2025, 1, day, hour, minute, tzinfo=TOKYO).isoformat()


# --- what each request plans ----------------------------------------------------------

PLANS: list[tuple[str, str, dict[str, Any]]] = [
    # Base search: table by alias, date range, query, filters, limit.
    (
        "顧客テーブルから今月の案件を検索して",
        "search_base_records",
        {"table": "customers", "query": "", "date_range": "this_month"},
    ),
    ("search customers for Acme", "search_base_records", {"table": "customers", "query": "Acme"}),
    ("在客户表中搜索 Acme", "search_base_records", {"table": "customers", "query": "Acme"}),
    ("find Acme in customers", "search_base_records", {"table": "customers", "query": "Acme"}),
    ("顧客からAcmeを検索", "search_base_records", {"table": "customers", "query": "Acme"}),
    (
        "顧客から「山田商事」を探して",
        "search_base_records",
        {"table": "customers", "query": "山田商事"},
    ),
    (
        'search customers for "Acme Corp"',
        "search_base_records",
        {"table": "customers", "query": "Acme Corp"},
    ),
    (
        "search customers for deals this month",
        "search_base_records",
        {"table": "customers", "query": "", "date_range": "this_month"},
    ),
    (
        "帮我查一下任务表里本周的记录",
        "search_base_records",
        {"table": "tasks", "query": "", "date_range": "this_week"},
    ),
    (
        "今日のタスクを表示して",
        "search_base_records",
        {"table": "tasks", "query": "", "date_range": "today"},
    ),
    (
        "search customers where Status=商談中",
        "search_base_records",
        {"table": "customers", "query": "", "field_filters": {"Status": "商談中"}},
    ),
    (
        "顧客テーブルで Status＝受注 のレコードを検索",
        "search_base_records",
        {"table": "customers", "query": "", "field_filters": {"Status": "受注"}},
    ),
    (
        "show me top 5 customers",
        "search_base_records",
        {"table": "customers", "query": "", "limit": 5},
    ),
    ("タスク一覧", "search_base_records", {"table": "tasks", "query": ""}),
    # Base writes: field=value pairs in any of the three styles.
    (
        "顧客に追加 名前=Acme, 状態=商談中",
        "create_base_record",
        {"table": "customers", "fields": {"名前": "Acme", "状態": "商談中"}},
    ),
    (
        "add to customers name=Acme Corp, status=open",
        "create_base_record",
        {"table": "customers", "fields": {"name": "Acme Corp", "status": "open"}},
    ),
    (
        "在客户表中添加 名称：Acme，状态：洽谈中",
        "create_base_record",
        {"table": "customers", "fields": {"名称": "Acme", "状态": "洽谈中"}},
    ),
    (
        "add a task Task: Call Acme, Priority: 高",
        "create_base_record",
        {"table": "tasks", "fields": {"Task": "Call Acme", "Priority": "高"}},
    ),
    (
        "update recCust000002 in customers Amount=4000000",
        "update_base_record",
        {"table": "customers", "record_id": "recCust000002", "fields": {"Amount": "4000000"}},
    ),
    (
        "顧客の recCust000001 を Status=受注 に更新",
        "update_base_record",
        {"table": "customers", "record_id": "recCust000001", "fields": {"Status": "受注"}},
    ),
    (
        "修改客户表记录 recCust000003 Status=失注",
        "update_base_record",
        {"table": "customers", "record_id": "recCust000003", "fields": {"Status": "失注"}},
    ),
    (
        "delete record recCust000013 from customers",
        "delete_base_record",
        {"table": "customers", "record_id": "recCust000013"},
    ),
    (
        "顧客から recCust000013 を削除して",
        "delete_base_record",
        {"table": "customers", "record_id": "recCust000013"},
    ),
    (
        "从客户表删除记录 recCust000013",
        "delete_base_record",
        {"table": "customers", "record_id": "recCust000013"},
    ),
    # Messages: quoted or plain text, to a chat, a user id or a mention.
    ("send 'hello' to oc_dev", "send_message", {"text": "hello", "chat_id": "oc_dev"}),
    ("send hello to @Tom", "send_message", {"text": "hello", "user_open_id": "ou_tom"}),
    (
        "send a message to @Tom saying see you at 5",
        "send_message",
        {"text": "see you at 5", "user_open_id": "ou_tom"},
    ),
    (
        "tell @Tom the demo moved",
        "send_message",
        {"text": "the demo moved", "user_open_id": "ou_tom"},
    ),
    (
        "「こんにちは」を @田中 に送って",
        "send_message",
        {"text": "こんにちは", "user_open_id": "ou_tanaka"},
    ),
    ("@田中 にお疲れ様と伝えて", "send_message", {"text": "お疲れ様", "user_open_id": "ou_tanaka"}),
    (
        "oc_dev に「リリースしました」とメッセージを送って",
        "send_message",
        {"text": "リリースしました", "chat_id": "oc_dev"},
    ),
    ("把“你好”发给 @小王", "send_message", {"text": "你好", "user_open_id": "ou_wang"}),
    (
        "send 'delete everything' to ou_abc123",
        "send_message",
        {"text": "delete everything", "user_open_id": "ou_abc123"},
    ),
    # People.
    ("who is @Tom", "get_user_info", {"user_open_id": "ou_tom"}),
    ("tell me about @Emma Wilson", "get_user_info", {"user_open_id": "ou_emma"}),
    ("@田中 さんの情報", "get_user_info", {"user_open_id": "ou_tanaka"}),
    ("@小王 是谁", "get_user_info", {"user_open_id": "ou_wang"}),
    ("who is misaki.sato@example.com", "get_user_info", {"email": "misaki.sato@example.com"}),
    ("ou_sato は誰？", "get_user_info", {"user_open_id": "ou_sato"}),
    # Documents.
    ("find documents about budget", "search_documents", {"query": "budget"}),
    ("予算のドキュメントを探して", "search_documents", {"query": "予算"}),
    ("搜索文档 预算", "search_documents", {"query": "预算"}),
    ("搜索关于预算的文档", "search_documents", {"query": "预算"}),
    # Chat members.
    ("who is in this chat", "list_chat_members", {}),
    ("メンバー一覧", "list_chat_members", {}),
    ("群成员", "list_chat_members", {}),
    ("list the members of oc_dev", "list_chat_members", {"chat_id": "oc_dev"}),
    # Calendar: day, time (12 h, 24 h, 時, 点, 半), duration or end, title, attendees.
    (
        "book a meeting tomorrow 3pm for 30 min about planning",
        "create_calendar_event",
        {"summary": "planning", "start": at(16, 15), "end": at(16, 15, 30)},
    ),
    ("明日15時に会議を予約", "create_calendar_event", {"summary": "会議", "start": at(16, 15)}),
    ("明天下午3点预约会议", "create_calendar_event", {"summary": "会议", "start": at(16, 15)}),
    (
        "schedule a meeting on Friday 10:30 with @Tom",
        "create_calendar_event",
        {"summary": "Meeting", "start": at(17, 10, 30), "attendee_open_ids": ["ou_tom"]},
    ),
    (
        "Q3予算の会議を明日15時から16時半まで入れて",
        "create_calendar_event",
        {"summary": "Q3予算", "start": at(16, 15), "end": at(16, 16, 30)},
    ),
    (
        "来週の月曜日 午後2時に @田中 さんと打ち合わせを設定",
        "create_calendar_event",
        {"summary": "会議", "start": at(20, 14), "attendee_open_ids": ["ou_tanaka"]},
    ),
    (
        "下周一上午十点安排关于预算的会议 1个小时",
        "create_calendar_event",
        {"summary": "预算", "start": at(20, 10), "end": at(20, 11)},
    ),
    (
        "book a call on 1/20 at 9am for an hour",
        "create_calendar_event",
        {"summary": "Meeting", "start": at(20, 9), "end": at(20, 10)},
    ),
    (
        "book a meeting today at noon",
        "create_calendar_event",
        {"summary": "Meeting", "start": at(15, 12)},
    ),
    ("明天十二点半预约会议", "create_calendar_event", {"summary": "会议", "start": at(16, 12, 30)}),
    # Today is Wednesday: 11 am is still ahead, 9 am means next week's.
    (
        "book a meeting wednesday 11am",
        "create_calendar_event",
        {"summary": "Meeting", "start": at(15, 11)},
    ),
    (
        "book a meeting wednesday 9am",
        "create_calendar_event",
        {"summary": "Meeting", "start": at(22, 9)},
    ),
    # A length of nothing or of years is not a length: the tool's one hour applies.
    (
        "book a meeting tomorrow 3pm for 0 min",
        "create_calendar_event",
        {"summary": "Meeting", "start": at(16, 15)},
    ),
    (
        "book a meeting tomorrow 3pm for 99999999999 hours",
        "create_calendar_event",
        {"summary": "Meeting", "start": at(16, 15)},
    ),
]


@pytest.mark.parametrize(("text", "tool", "arguments"), PLANS)
def test_request_plans_the_right_tool_call(text: str, tool: str, arguments: dict[str, Any]) -> None:
    assert plan(text) == ToolCall(tool, arguments)


QUESTIONS: list[tuple[str, Language, str]] = [
    ("search for Acme", "en", "Which table? Available tables: customers (顧客, 顧客テーブル"),
    ("delete recCust000001", "en", "Which table?"),
    ("顧客に追加して", "ja", "設定する項目を `項目=値` の形で指定してください"),
    ("update customers status=won", "en", "Please give the record ID"),
    ("从客户表删除记录", "zh", "请提供记录 ID"),
    ("@田中 にメッセージを送って", "ja", '送る内容を「」や "" で囲んで指定してください'),
    ("send 'hi'", "en", "Who should I send it to?"),
    ("send 'hi' to @Nobody", "en", "I could not find the ID of @Nobody."),
    ("@佐藤さんの情報", "ja", "@佐藤 さんの ID が分かりませんでした。"),
    ("who is Tom?", "en", "Whose details should I look up?"),
    ("ドキュメントを探して", "ja", "何についてのドキュメントを探しますか？"),
    ("book a meeting tomorrow", "en", "What time should the meeting start?"),
    # "3点" could be 3 am or 3 pm: ask instead of guessing.
    ("明天3点预约会议", "zh", "会议几点开始？"),
    ("明日3時に会議を予約", "ja", "会議の開始時刻を教えてください"),
    ("book a meeting today 9am", "en", "9:00 today has already passed."),
    ("book a meeting on 2024-01-10 at 3pm", "en", "2024-01-10 15:00 has already passed."),
    ("book a meeting on 2/29 at 3pm", "en", "There is no such date as 2/29."),
    ("明天十十点预约会议", "zh", "会议几点开始？"),
]


@pytest.mark.parametrize(("text", "language", "question"), QUESTIONS)
def test_missing_details_are_asked_for(text: str, language: Language, question: str) -> None:
    asked = plan(text, language)
    assert isinstance(asked, str)
    assert question in asked


def test_no_tables_configured_is_said_plainly() -> None:
    brain = OfflineBrain(now=lambda: NOW)
    turn = TurnContext(
        settings=Settings(), language="en", profile=BUILTIN_PROFILES["LarkAssistant"]
    )
    asked = brain.plan(message("delete recCust000001"), turn)
    assert asked == (
        "No Base tables are configured. Please ask the administrator to set up `[bases]`."
    )


def test_a_single_table_is_used_without_being_named() -> None:
    brain = OfflineBrain(now=lambda: NOW)
    one = {"customers": SAMPLE_BASES["customers"]}
    turn = TurnContext(
        settings=Settings(bases=one), language="en", profile=BUILTIN_PROFILES["LarkAssistant"]
    )
    assert brain.plan(message("search for Acme"), turn) == ToolCall(
        "search_base_records", {"table": "customers", "query": "Acme"}
    )


@pytest.mark.parametrize(
    "text", ["what can you do?", "こんにちは", "你能做什么", "the weather is nice", "👍", "recipe"]
)
def test_unclear_requests_are_not_guessed(text: str) -> None:
    assert plan(text) is None


def test_placeholder_characters_typed_by_a_user_are_ignored() -> None:
    # Shaped like the placeholder of a quoted part that does not exist.
    assert plan("search customers for \ue0007\ue001") == ToolCall(
        "search_base_records", {"table": "customers", "query": "7"}
    )


_PIECES = st.sampled_from(REQUEST_PIECES)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=10).map("".join))
def test_reading_any_request_never_fails(text: str) -> None:
    planned = plan(text)
    if isinstance(planned, ToolCall):
        assert planned.name in {tool.name for tool in default_registry()}
    elif isinstance(planned, str):
        assert planned.strip()


# --- against the stand-in -------------------------------------------------------------


@dataclass
class Env(Sample):
    assistant: Assistant

    async def ask(self, text: str, *, index: int = 0, language: Language | None = None) -> str:
        conversation = Conversation("oc_sales", language=language)
        reply = await self.assistant.respond(message(text, index=index), conversation)
        return reply.text


@pytest.fixture
def env(sample: Sample) -> Env:
    runner = ToolRunner(default_registry(), write_limiter=None, writers=None, cache_ttl_seconds=60)
    # The sample workspace is in Tokyo; so is the bot, whatever the host's zone.
    settings = Settings(bases=SAMPLE_BASES, agent={"timezone": "Asia/Tokyo"})
    assistant = Assistant(settings, status=Status(), runner=runner, client=sample.client)
    return Env(sample.ws, sample.lark, sample.client, assistant)


def routes(lark: LarkStandIn) -> list[str]:
    return [call.route for call in lark.api_calls]


@pytest.mark.anyio
async def test_scenario_this_months_customers_in_japanese(env: Env) -> None:
    text = await env.ask("顧客テーブルから今月の案件を検索して")
    now = datetime.now(env.ws.timezone)
    this_month, older = [], []
    for record in env.ws.table("顧客一覧").records.values():
        contact = datetime.fromtimestamp(record["Last contact"] / 1000, tz=UTC)
        local = contact.astimezone(env.ws.timezone)
        (this_month if (local.year, local.month) == (now.year, now.month) else older).append(
            record["Name"]
        )
    assert this_month and older
    assert text.startswith(f"customers で {len(this_month)} 件見つかりました")
    for name in this_month:
        assert f"**{name}**" in text
    for name in older:
        assert name not in text
    assert "bitable/v1/apps/{app_token}/tables/{table_id}/records/search" in routes(env.lark)


@pytest.mark.anyio
async def test_search_by_query_in_english_and_chinese(env: Env) -> None:
    english = await env.ask("search customers for Acme")
    assert english.startswith("Found 1 record in customers:")
    assert "**John Smith** (recCust000002) — Company: Acme Corporation" in english
    chinese = await env.ask("在客户表中搜索 王伟")
    assert chinese.startswith("在 customers 中找到 1 条记录")
    assert "**王伟**" in chinese


@pytest.mark.anyio
async def test_create_update_delete_reach_the_table(env: Env) -> None:
    created = await env.ask("顧客に追加 Name=テスト商事, Status=見込み", index=1)
    assert "テスト商事" in created
    updated = await env.ask("update recCust000002 in customers Amount=4000000", index=2)
    assert "4,000,000" in updated
    deleted = await env.ask("从客户表删除记录 recCust000013", index=3)
    assert "recCust000013" in deleted
    writes = [(w.method, w.path.rsplit("/", 1)[-1], w.body) for w in env.ws.writes]
    assert writes == [
        ("POST", "records", {"fields": {"Name": "テスト商事", "Status": "見込み"}}),
        ("PUT", "recCust000002", {"fields": {"Amount": 4000000}}),
        ("DELETE", "recCust000013", {}),
    ]
    records = env.ws.table("顧客一覧").records
    assert records["recCust000002"]["Amount"] == 4_000_000
    assert "recCust000013" not in records


@pytest.mark.anyio
async def test_a_tool_error_is_shown_as_its_sentence(env: Env) -> None:
    text = await env.ask("delete record recGone000001 from customers", language="en")
    assert text == "That record was not found (it was deleted, or the ID is wrong)."
    wrong_field = await env.ask("顧客から 色=赤 を検索")
    assert "「色」というフィールドはありません" in wrong_field
    assert "Name, Company, Status" in wrong_field


@pytest.mark.anyio
async def test_send_message_to_a_chat_and_to_a_mentioned_user(env: Env) -> None:
    to_chat = await env.ask("send 'hello' to oc_dev", index=1)
    assert "oc_dev" in to_chat
    to_user = await env.ask("「こんにちは」を @田中 に送って", index=2)
    assert "ou_tanaka" in to_user
    sent = [
        (r.receive_id_type, r.receive_id, r.content) for r in env.lark.replies if r.kind == "send"
    ]
    assert sent == [
        ("chat_id", "oc_dev", {"text": "hello"}),
        ("open_id", "ou_tanaka", {"text": "こんにちは"}),
    ]


@pytest.mark.anyio
async def test_people_documents_and_members(env: Env) -> None:
    emma = await env.ask("who is @Emma Wilson")
    assert "emma.wilson@example.com" in emma and "Account Executive" in emma
    sato = await env.ask("who is misaki.sato@example.com")
    assert "佐藤 美咲 (Misaki Sato)" in sato
    docs = await env.ask("議事録のドキュメントを探して")
    assert "[議事録 週次営業会議](https://example.feishu.cn/docx/doxcnMinutes0000001)" in docs
    roadmap = await env.ask("搜索文档 路线图")
    assert "产品路线图 2025" in roadmap
    members = await env.ask("メンバー一覧")
    assert members.startswith("このチャットのメンバーは 5 人です")
    for name in ("田中 健", "小林 さくら", "佐藤 美咲", "Emma Wilson", "陈静"):
        assert name in members


@pytest.mark.anyio
async def test_calendar_event_lands_in_the_calendar(env: Env) -> None:
    text = await env.ask("book a meeting tomorrow 3pm for 30 min about planning with @Emma Wilson")
    tomorrow = (datetime.now(TOKYO) + timedelta(days=1)).date()
    start = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 15, tzinfo=TOKYO)
    assert f"{tomorrow.isoformat()} 15:00–15:30" in text
    event = next(w for w in env.ws.writes if w.path.endswith("/events"))
    assert event.body["summary"] == "planning"
    assert event.body["start_time"] == {"timestamp": str(int(start.timestamp()))}
    assert event.body["end_time"] == {"timestamp": str(int(start.timestamp()) + 1800)}
    attendees = next(w for w in env.ws.writes if w.path.endswith("/attendees"))
    invited = {a["user_id"] for a in attendees.body["attendees"]}
    assert invited == {"ou_console_user", "ou_emma"}


@pytest.mark.anyio
async def test_without_a_client_the_brain_says_tools_are_unavailable() -> None:
    assistant = Assistant(Settings(bases=SAMPLE_BASES), status=Status())
    reply = await assistant.respond(message("メンバー一覧"), Conversation("c"))
    assert reply.text == (
        "申し訳ありません。現在 Lark のツールを利用できないため、このご依頼には対応できません。"
    )


@pytest.mark.anyio
async def test_fallback_lists_what_the_brain_can_do(env: Env) -> None:
    english = await env.ask("what can you do?")
    assert english.startswith("I could not tell what you would like me to do.")
    assert "• search customers for Acme" in english
    assert "• book a meeting tomorrow 3pm for 30 min about planning" in english
    japanese = await env.ask("今日はいい天気ですね")
    assert japanese.startswith("ご依頼の内容を判断できませんでした。")
    chinese = await env.ask("你能做什么")
    assert chinese.startswith("我无法确定您想让我做什么。")
    # Nothing was guessed, so nothing was called.
    assert env.lark.api_calls == []


# --- the time zone ----------------------------------------------------------------------


def test_tomorrow_at_ten_is_placed_in_the_configured_zone() -> None:
    # 20:00 UTC on 15 January is already 05:00 on 16 January in Tokyo.
    brain = OfflineBrain(now=lambda: datetime(2025, 1, 15, 20, tzinfo=UTC))
    starts = {}
    for zone in (ZoneInfo("UTC"), TOKYO):
        turn = TurnContext(
            settings=Settings(bases=SAMPLE_BASES),
            language="en",
            profile=BUILTIN_PROFILES["LarkAssistant"],
            timezone=zone,
        )
        planned = brain.plan(message("book a meeting tomorrow at 10am"), turn)
        assert isinstance(planned, ToolCall)
        starts[str(zone)] = planned.arguments["start"]
    assert starts == {
        "UTC": "2025-01-16T10:00:00+00:00",
        "Asia/Tokyo": "2025-01-17T10:00:00+09:00",
    }


# Built outside the event loop: validating a zone name reads the time zone database.
IN_LONDON = Settings(bases=SAMPLE_BASES, agent={"timezone": "Europe/London"})


@pytest.mark.anyio
async def test_the_assistant_places_times_in_agent_timezone(env: Env) -> None:
    runner = ToolRunner(default_registry(), write_limiter=None, writers=None, cache_ttl_seconds=0)
    settings = IN_LONDON
    client = env.assistant._client
    london = Assistant(settings, status=Status(), runner=runner, client=client)
    await london.warm_up()  # resolves agent.timezone off the event loop, once
    reply = await london.respond(
        message("book a meeting tomorrow 3pm about planning"), Conversation("oc_sales")
    )
    tomorrow = (datetime.now(ZoneInfo("Europe/London")) + timedelta(days=1)).date()
    assert f"{tomorrow.isoformat()} 15:00–16:00 (Europe/London)" in reply.text


# --- people typed by name ---------------------------------------------------------------


@pytest.mark.anyio
async def test_a_typed_name_is_found_in_the_chats_members(env: Env) -> None:
    sent = await env.assistant.respond(
        message("「お疲れ様」を @田中 さんに送って", mentions=()), Conversation("oc_sales")
    )
    assert sent.text == "ou_console_user にメッセージを送りました。"
    emma = await env.assistant.respond(
        message("who is @Emma Wilson", mentions=(), index=1), Conversation("oc_sales")
    )
    assert "emma.wilson@example.com" in emma.text
    chen = await env.assistant.respond(message("@陈 是谁", mentions=()), Conversation("oc_sales"))
    assert "chen.jing@example.com" in chen.text
    # Someone who is not in this chat is not looked for elsewhere.
    nobody = await env.assistant.respond(
        message("who is @Daisuke", mentions=()), Conversation("oc_sales")
    )
    assert nobody.text.startswith("I could not find the ID of @Daisuke.")


@pytest.mark.anyio
async def test_a_typed_name_matching_two_members_is_asked_about(env: Env) -> None:
    env.ws.users["ou_tanaka2"] = User("ou_tanaka2", "田中 一郎", "ichiro.tanaka@example.com")
    env.ws.chats["oc_sales"].member_open_ids.append("ou_tanaka2")
    asked = await env.assistant.respond(
        message("@田中 さんの情報", mentions=()), Conversation("oc_sales")
    )
    assert asked.text.startswith("@田中 に当てはまるメンバーが複数います（田中 健、田中 一郎）")
    exact = await env.assistant.respond(
        message("@田中 一郎 さんの情報", mentions=(), index=1), Conversation("oc_sales")
    )
    assert "ichiro.tanaka@example.com" in exact.text


# --- the help examples ------------------------------------------------------------------

# Of the chat, document, wiki, Base schema and people tools, the examples show what the
# offline brain does with them: summarise the chat, answer from a document link and from a
# wiki link; the others it reaches from other pasted links (test_content_agent.py) or only
# through the LLM.
_CONTENT_EXAMPLES = {"list_chat_messages", "read_document", "get_wiki_node"}
_EVERY_TOOL = {tool.name for tool in default_registry()} - {
    "update_base_record",
    "delete_base_record",
    *(tool.name for tool in content_tools() if tool.name not in _CONTENT_EXAMPLES),
}
# Sentences that mean the request was not done: questions back and refusals, each as a
# pattern in which its placeholders match anything.
_NOT_DONE = [
    re.compile(".*?".join(re.escape(part) for part in re.split(r"\{[^}]*\}", template)), re.DOTALL)
    for key, variants in MESSAGES.items()
    if key.startswith(("ask_", "mention_", "no_", "unknown_", "bad_", "lark_", "llm_"))
    or key in ("error", "fallback", "tool_not_allowed", "denied", "time_passed", "date_passed")
    for template in variants.values()
]


def _executions(status: str) -> dict[str, float]:
    return {
        name: REGISTRY.get_sample_value(
            "tool_executions_total", {"tool_name": name, "status": status}
        )
        or 0.0
        for name in {tool.name for tool in default_registry()}
    }


def _examples(language: Language) -> list[str]:
    lines = translate("examples", language).splitlines()[1:]
    return [line.removeprefix("• ") for line in lines]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("language", "chat"),
    [("ja", "oc_sales"), ("en", "oc_sales"), ("zh", "oc_sales"), ("ja", "oc_console")],
)
async def test_every_help_example_works_on_the_sample_workspace(
    env: Env, language: Language, chat: str
) -> None:
    examples = _examples(language)
    assert len(examples) == 10
    assert f"• {examples[0]}" in (await env.ask("help", language=language))
    done: set[str] = set()
    for index, text in enumerate(examples):
        succeeded, failed = _executions("success"), _executions("error")
        inbound = message(text, mentions=(), chat=chat, index=index)
        reply = await env.assistant.respond(inbound, Conversation(chat))
        newly = {n for n, v in _executions("success").items() if v > succeeded[n]}
        assert newly, f"{text!r} ran no tool: {reply.text!r}"
        assert _executions("error") == failed, f"{text!r}: {reply.text!r}"
        assert not any(p.fullmatch(reply.text) for p in _NOT_DONE), f"{text!r}: {reply.text!r}"
        done |= newly
    assert done >= _EVERY_TOOL


# What the summary, document and wiki examples answer, in each language.
_SUMMARY_HEADER = {
    "ja": "このチャットの直近のメッセージ 4 件（古い順）:",
    "en": "The last 4 messages in this chat (oldest first):",
    "zh": "本群聊最近的 4 条消息（按时间顺序）：",
}
_BUDGET_QUOTE = {
    "ja": "> 予算: 総予算は 1,200 万円。内訳は広告 600 万円、イベント 350 万円、"
    "予備費 250 万円。予算の変更は田中が承認する。",
    "en": "> Budget: the total budget is ¥12,000,000: ¥6,000,000 for advertising, "
    "¥3,500,000 for events and ¥2,500,000 in reserve. Ken Tanaka approves any change to "
    "the budget.",
    "zh": "> 预算：总预算为 1,200 万日元，其中广告 600 万日元、活动 350 万日元、"
    "预备金 250 万日元。预算变更需由田中批准。",
}
_WIKI_HEADER = {
    "ja": "Wiki ページ「Onboarding guide for new sales staff」の中身はドキュメントです"
    "（doxcnOnboarding0001）。",
    "en": "The wiki page “Onboarding guide for new sales staff” holds a document "
    "(doxcnOnboarding0001).",
    "zh": "知识库页面“Onboarding guide for new sales staff”中是文档（doxcnOnboarding0001）。",
}


@pytest.mark.anyio
@pytest.mark.parametrize("language", ["ja", "en", "zh"])
async def test_the_summary_document_and_wiki_examples_answer_from_the_content(
    env: Env, language: Language
) -> None:
    """What the help promises for chat history, documents and the wiki, answered offline."""
    replies = []
    for index, text in enumerate(_examples(language)[-3:]):
        inbound = message(text, mentions=(), chat="oc_console", index=index)
        replies.append((await env.assistant.respond(inbound, Conversation("oc_console"))).text)
    summary, document, wiki = replies
    # The chat's messages, oldest first, with who wrote them.
    assert summary.splitlines()[0] == _SUMMARY_HEADER[language]
    assert "**佐藤 美咲**: おはようございます。Sakura Cloud のローンチ計画をまとめました" in summary
    # The budget paragraph of the launch plan, quoted in the asker's language.
    assert document.splitlines()[1] == _BUDGET_QUOTE[language]
    # The wiki link resolves to its document, which is read.
    assert wiki.splitlines()[0] == _WIKI_HEADER[language]
    assert "Who to ask: Misaki Sato for Japan, Jing Chen for China" in wiki
