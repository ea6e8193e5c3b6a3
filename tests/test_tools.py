"""The first nine Lark tools against the stand-in's workspace, over real HTTP."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel, ValidationError

from larkbot.agent.tools import (
    TOOL_ENTRY_POINT_GROUP,
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolResult,
    ToolRunner,
    default_registry,
    plugin_tools,
)
from larkbot.agent.tools.lark_tools import (
    BaseFieldCache,
    CreateCalendarEventInput,
    GetUserInfoInput,
    SendMessageInput,
    lark_tools,
)
from larkbot.lark.client import LarkAPIError
from larkbot.testing.workspace import BaseField, FieldType, Workspace
from tests._factories import FIRST_TOOLS, Sample, console_context, customers, openapi_requests

pytestmark = pytest.mark.anyio

SEARCH_ROUTE = "bitable/v1/apps/{app_token}/tables/{table_id}/records/search"


@dataclass
class Env(Sample):
    ctx: ToolContext
    registry: ToolRegistry = field(default_factory=default_registry)

    async def run(self, name: str, ctx: ToolContext | None = None, **arguments: Any) -> Any:
        tool = self.registry.get(name)
        assert tool is not None
        return await tool.run(ctx or self.ctx, tool.input_model.model_validate(arguments))


@pytest.fixture
def env(sample: Sample) -> Env:
    ctx = console_context(sample.client, message_id="om_tools_1", language="ja")
    return Env(sample.ws, sample.lark, sample.client, ctx)


def month_of(millis: int, ws: Workspace) -> tuple[int, int]:
    moment = datetime.fromtimestamp(millis / 1000, tz=UTC).astimezone(ws.timezone)
    return moment.year, moment.month


# --------------------------------------------------------------------------- registry


def test_default_registry_holds_every_tool_with_flags_and_scopes() -> None:
    registry = default_registry()
    assert registry.names() == [
        *FIRST_TOOLS,
        "list_chat_messages",
        "list_chats",
        "create_chat",
        "read_document",
        "import_document",
        "search_wiki",
        "get_wiki_node",
        "grant_document_permission",
        "list_base_tables",
        "list_base_fields",
        "create_base_table",
        "lookup_user_ids",
    ]
    writes = {tool.name for tool in registry if tool.write}
    assert writes == {
        "create_base_record",
        "update_base_record",
        "delete_base_record",
        "send_message",
        "create_calendar_event",
        "create_chat",
        "import_document",
        "grant_document_permission",
        "create_base_table",
    }
    assert all(tool.scopes and len(tool.description) > 80 for tool in registry)


def test_openai_schemas_describe_arguments_and_can_be_narrowed() -> None:
    registry = default_registry()
    schemas = registry.openai_schemas()
    assert len(schemas) == len(registry) == 21
    search = schemas[0]["function"]
    assert search["name"] == "search_base_records"
    properties = search["parameters"]["properties"]
    assert set(properties) == {
        "table",
        "app_token",
        "table_id",
        "query",
        "field_filters",
        "date_range",
        "limit",
    }
    assert properties["date_range"]["anyOf"][0]["enum"] == ["today", "this_week", "this_month"]
    # A table is named by "table" or by "app_token" + "table_id", so neither is required alone.
    assert "required" not in search["parameters"]
    assert all(p.get("description") for p in properties.values())
    narrowed = registry.openai_schemas(["send_message", "nope"])
    assert [s["function"]["name"] for s in narrowed] == ["send_message"]


class EchoInput(BaseModel):
    text: str
    times: int = 1


class Echo(Tool[EchoInput]):
    name: ClassVar[str] = "echo"
    description: ClassVar[str] = "Repeat the text."

    def __init__(self) -> None:
        self.seen: list[EchoInput] = []

    async def run(self, ctx: ToolContext, args: EchoInput) -> ToolResult:
        self.seen.append(args)
        return ToolResult(ok=True, data={"text": args.text * args.times}, text=args.text)


async def test_a_tool_gets_its_own_input_model_from_its_type_argument(env: Env) -> None:
    echo = Echo()
    assert Echo.input_model is EchoInput
    assert Echo.openai_schema()["function"]["parameters"]["required"] == ["text"]
    runner = ToolRunner(
        default_registry(echo), write_limiter=None, writers=None, cache_ttl_seconds=0
    )
    result = await runner.run("echo", '{"text": "hi", "times": 2}', env.ctx)
    assert result.ok and result.data == {"text": "hihi"}
    assert echo.seen == [EchoInput(text="hi", times=2)]
    refused = await runner.run("echo", {"times": "many"}, replace(env.ctx, language="en"))
    assert not refused.ok and "text is required" in (refused.error or "")
    assert len(echo.seen) == 1


def test_a_registry_takes_extra_tools_in_code() -> None:
    registry = default_registry(Echo())
    assert registry.names()[-1] == "echo" and len(registry) == 22
    base = ToolRegistry(lark_tools())
    extended = base.with_tools(Echo())
    assert "echo" in extended and "echo" not in base
    assert extended.names() == [*base.names(), "echo"]
    with pytest.raises(ValueError, match="'echo' is already registered"):
        extended.with_tools(Echo())


@pytest.mark.parametrize(
    ("tool", "problem"),
    [
        (object(), "is not a Tool"),
        (type("Blank", (Tool,), {"name": "has space", "description": "x"})(), "1-64 letters"),
        (type("Mute", (Tool,), {"name": "mute", "input_model": EchoInput})(), "description"),
        (type("Shapeless", (Tool,), {"name": "shapeless", "description": "x"})(), "input_model"),
    ],
)
def test_a_malformed_tool_is_refused(tool: Any, problem: str) -> None:
    with pytest.raises(TypeError, match=problem):
        ToolRegistry([tool])


def _entry_point(name: str, target: str) -> EntryPoint:
    return EntryPoint(name, f"tests._tool_plugins:{target}", TOOL_ENTRY_POINT_GROUP)


def test_plug_ins_load_and_a_broken_one_is_skipped_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = [_entry_point("shout", "Shout"), _entry_point("extras", "make_tools")]
    broken = [
        _entry_point("crm", "failing_factory"),
        _entry_point("text", "returns_text"),
        _entry_point("plain", "NotATool"),
        _entry_point("nameless", "Nameless"),
        _entry_point("schema", "BadSchema"),
        _entry_point("missing", "NoSuchThing"),
        EntryPoint("gone", "tests._no_such_module:Tool", TOOL_ENTRY_POINT_GROUP),
    ]
    with caplog.at_level(logging.WARNING, logger="larkbot.agent"):
        tools = plugin_tools(entry_points=[good[0], *broken, good[1]])
    assert [tool.name for tool in tools] == ["shout", "count_words", "whisper"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(broken)
    for record, entry_point in zip(warnings, broken, strict=True):
        message = record.getMessage()
        assert message.startswith(f"tool plug-in {entry_point.name} ({entry_point.value}) skipped")
        assert "\n" not in message
    assert "RuntimeError: the CRM is unreachable" in warnings[0].getMessage()


def test_a_plug_in_named_like_a_built_in_tool_is_skipped(tmp_path: Path) -> None:
    # Installed the way pip installs a package: a module and its dist-info on the path.
    (tmp_path / "larkbot_demo_tools.py").write_text(
        textwrap.dedent(
            """
            from tests._tool_plugins import SendMessageAgain, Shout, failing_factory
            """
        )
    )
    dist_info = tmp_path / "larkbot_demo_tools-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: larkbot-demo-tools\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[larkbot.tools]\n"
        "shout = larkbot_demo_tools:Shout\n"
        "clash = larkbot_demo_tools:SendMessageAgain\n"
        "crm = larkbot_demo_tools:failing_factory\n"
    )
    script = (
        "from larkbot.agent.tools import default_registry\n"
        "print(default_registry().names()[-1])\n"
        "print(','.join(default_registry(plugins=True).names()))\n"
    )
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo,
        env={"PYTHONPATH": f"{tmp_path}:{repo}", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    without, with_plugins = done.stdout.splitlines()
    assert without == "lookup_user_ids"
    names = with_plugins.split(",")
    assert names[-1] == "shout" and names.count("send_message") == 1 and len(names) == 22
    assert "tool plug-in tool 'send_message' skipped" in done.stderr
    assert "tool plug-in crm (larkbot_demo_tools:failing_factory) skipped" in done.stderr


async def test_a_plug_in_declared_in_its_class_statement_works_in_the_registry(
    env: Env,
) -> None:
    (stamp,) = plugin_tools(entry_points=[_entry_point("stamp", "Stamp")])
    registry = default_registry(stamp)
    assert registry.get("stamp") is stamp and registry.names()[-1] == "stamp"
    assert (stamp.name, stamp.description) == ("stamp", "Stamp the text as approved.")
    assert stamp.write and stamp.cacheable and stamp.scopes == ("im:message:send_as_bot",)
    function = registry.openai_schemas(["stamp"])[0]["function"]
    assert function["description"] == "Stamp the text as approved."
    assert function["parameters"]["required"] == ["text"]
    # A write tool: the runner keeps it from users who may not write.
    denied = ToolRunner(
        registry, write_limiter=None, writers=["ou_someone_else"], cache_ttl_seconds=0
    )
    refused = await denied.run("stamp", {"text": "plan"}, env.ctx)
    assert not refused.ok and "stamp" in (refused.error or "")
    runner = ToolRunner(
        registry, write_limiter=None, writers=[env.ctx.user_open_id], cache_ttl_seconds=0
    )
    done = await runner.run("stamp", {"text": "plan"}, env.ctx)
    assert done.ok and done.data == {"text": "[approved] plan"}


def test_tools_keep_their_descriptions_when_docstrings_are_stripped() -> None:
    # python -OO (PYTHONOPTIMIZE=2) drops every docstring: descriptions must not be one.
    script = (
        "import json, sys\n"
        "from larkbot.agent.tools import Tool, default_registry\n"
        "assert sys.flags.optimize == 2 and Tool.__doc__ is None\n"
        "print(json.dumps([[t.name, t.description, t.write, t.cacheable, list(t.scopes),\n"
        "    t.openai_schema()['function']['description']] for t in default_registry()]))\n"
    )
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-OO", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    stripped = json.loads(done.stdout)
    normal = [
        [t.name, t.description, t.write, t.cacheable, list(t.scopes), t.description]
        for t in default_registry()
    ]
    assert len(stripped) == len(normal) == 21
    assert all(description for _, description, *_ in stripped)
    assert stripped == normal


def test_registering_a_name_twice_is_refused() -> None:
    class Echo(Tool):
        name = "echo"
        description = "Echo."
        input_model = BaseModel

    registry = ToolRegistry([Echo()])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Echo())
    assert "echo" in registry and len(registry) == 1 and registry.get("nope") is None


def test_input_models_enforce_exactly_one_target() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        SendMessageInput(text="hi", chat_id="oc_1", user_open_id="ou_1")
    with pytest.raises(ValidationError, match="exactly one"):
        SendMessageInput(text="hi")
    with pytest.raises(ValidationError, match="exactly one"):
        GetUserInfoInput()
    with pytest.raises(ValidationError, match="end must be after start"):
        CreateCalendarEventInput(
            summary="x", start=datetime(2030, 1, 1, 10), end=datetime(2030, 1, 1, 9)
        )


# ----------------------------------------------------------------------- base records


async def test_search_this_month_by_alias_filters_on_the_server(env: Env) -> None:
    before = openapi_requests(SEARCH_ROUTE)
    result = await env.run("search_base_records", table="顧客", date_range="this_month")
    now = datetime.now(env.ws.timezone)
    expected = {
        rid
        for rid, row in customers(env.ws).items()
        if month_of(row["Last contact"], env.ws) == (now.year, now.month)
    }
    assert result.ok
    assert {r["record_id"] for r in result.data["records"]} == expected
    assert result.data["total"] == len(expected)
    first = result.data["records"][0]["fields"]
    assert first["Name"] == "山田 太郎" and first["Owner"] == "田中 健"
    assert first["Last contact"] == now.date().isoformat()
    assert result.text.startswith(f"customers で {len(expected)} 件見つかりました")
    # The date asked about comes right after the primary field.
    assert (
        f"- **山田 太郎** (recCust000001) — Last contact: {now.date()}, "
        "Company: 山田商事株式会社, Status: 商談中\n" in result.text
    )
    # One page, filtered by Lark: the date condition went to the server.
    assert env.calls(SEARCH_ROUTE) == 1
    assert openapi_requests(SEARCH_ROUTE) == before + 1


async def test_search_query_matches_text_fields_case_insensitively(env: Env) -> None:
    result = await env.run("search_base_records", table="CUSTOMERS", query="acme")
    assert [r["fields"]["Name"] for r in result.data["records"]] == ["John Smith"]
    assert result.text == (
        "customers で 1 件見つかりました:\n- **John Smith** (recCust000002) — "
        "Company: Acme Corporation, Status: 受注, Amount: 3,500,000"
    )
    several = await env.run("search_base_records", table="客户", query="株式会社 商談中")
    assert {r["fields"]["Name"] for r in several.data["records"]} == {"山田 太郎", "中村 由美"}
    none = await env.run("search_base_records", table="customer", query="zzz")
    assert none.ok and none.data["records"] == []
    assert none.text == "customers に条件に合うレコードはありませんでした。"


async def test_search_field_filters_by_type(env: Env) -> None:
    won = await env.run("search_base_records", table="customers", field_filters={"status": "受注"})
    assert {r["fields"]["Name"] for r in won.data["records"]} == {"John Smith", "李娜", "伊藤 健太"}
    amount = await env.run(
        "search_base_records", table="customers", field_filters={"Amount": "3,500,000"}
    )
    assert [r["fields"]["Name"] for r in amount.data["records"]] == ["John Smith"]
    company = await env.run(
        "search_base_records", table="customers", field_filters={"Company": "有限公司"}
    )
    assert len(company.data["records"]) == 4
    done = await env.run("search_base_records", table="タスク", field_filters={"Done": "true"})
    assert {r["fields"]["Task"] for r in done.data["records"]} == {
        "Update the Q3 sales report",
        "社内勉強会の資料作成",
    }


async def test_search_limit_and_rendering_in_english_and_chinese(env: Env) -> None:
    en = replace(env.ctx, language="en")
    result = await env.run("search_base_records", ctx=en, table="customers", limit=3)
    assert len(result.data["records"]) == 3 and result.data["total"] == 13
    lines = result.text.splitlines()
    assert lines[0] == "Found 13 records in customers:"
    assert lines[-1] == "…and 10 more"
    one = await env.run("search_base_records", ctx=en, table="customers", query="Initech")
    assert one.text.splitlines()[0] == "Found 1 record in customers:"
    zh = replace(env.ctx, language="zh")
    result = await env.run("search_base_records", ctx=zh, table="客户", query="有限公司")
    assert result.text.splitlines()[0] == "在 customers 中找到 4 条记录："


async def test_search_scans_pages_for_a_query_and_says_when_it_stopped(env: Env) -> None:
    table = env.ws.table("顧客一覧")
    for index in range(700):
        table.records[f"recBulk{index:06d}"] = {"Name": f"Bulk {index}", "Company": "Filler KK"}
    table.records["recBulk999999"] = {"Name": "Needle", "Company": "Haystack Inc"}
    found = await env.run("search_base_records", table="customers", query="bulk 500")
    assert [r["fields"]["Name"] for r in found.data["records"]] == ["Bulk 500"]
    assert found.data["scan_limited"] is True
    assert "最初の 600 件だけ" in found.text
    assert env.calls(SEARCH_ROUTE) == 3  # bounded: 3 pages of 200, never the whole table
    missed = await env.run("search_base_records", table="customers", query="needle")
    assert missed.data["records"] == [] and missed.data["scan_limited"] is True


async def test_search_refuses_unknown_tables_and_fields_in_the_users_language(env: Env) -> None:
    with pytest.raises(ToolError) as unknown_table:
        await env.run("search_base_records", table="invoices")
    message = str(unknown_table.value)
    assert "「invoices」というテーブルは設定されていません" in message
    assert "customers (顧客, 顧客テーブル, customers, customer, 客户)" in message
    assert "tasks (タスク, tasks, 任务)" in message
    en = replace(env.ctx, language="en")
    with pytest.raises(ToolError) as unknown_field:
        await env.run("search_base_records", ctx=en, table="customers", field_filters={"Size": "1"})
    assert str(unknown_field.value) == (
        "Table “customers” has no field “Size”. "
        "Fields: Name, Company, Status, Amount, Owner, Last contact, Email."
    )
    with pytest.raises(ToolError, match=r"No tables are configured"):
        await env.run("search_base_records", ctx=replace(en, bases={}), table="customers")


async def test_create_converts_values_and_is_idempotent_per_turn(env: Env) -> None:
    arguments = {
        "table": "顧客",
        "fields": {
            "name": "Grace Hopper",
            "Company": "Navy Labs",
            "Status": "見込み",
            "Amount": "1,500,000",
            "Owner": "ou_emma",
            "Last contact": "2030-01-15",
        },
    }
    result = await env.run("create_base_record", **arguments)
    record_id = result.data["record_id"]
    stored = customers(env.ws)[record_id]
    assert stored["Amount"] == 1_500_000 and stored["Owner"] == ["ou_emma"]
    expected_ms = int(datetime(2030, 1, 15, tzinfo=env.ws.timezone).timestamp() * 1000)
    assert stored["Last contact"] == expected_ms
    assert result.data["fields"]["Last contact"] == "2030-01-15"
    assert result.text.startswith("customers にレコードを作成しました: **Grace Hopper**")
    # The same call in the same turn (a retried turn) reuses the client token.
    again = await env.run("create_base_record", **arguments)
    assert again.data["record_id"] == record_id
    other_turn = replace(env.ctx, message_id="om_tools_2")
    third = await env.run("create_base_record", ctx=other_turn, **arguments)
    assert third.data["record_id"] != record_id
    assert len(env.ws.writes) == 2


async def test_create_refuses_values_it_cannot_convert_before_writing(env: Env) -> None:
    en = replace(env.ctx, language="en")
    with pytest.raises(ToolError) as bad_amount:
        await env.run("create_base_record", ctx=en, table="customers", fields={"Amount": "lots"})
    assert str(bad_amount.value) == "The value “lots” for field “Amount” is not a valid number."
    with pytest.raises(ToolError, match=r"is not a valid date"):
        await env.run(
            "create_base_record", ctx=en, table="customers", fields={"Last contact": "soon"}
        )
    with pytest.raises(ToolError, match="has no field “Budget”"):
        await env.run("create_base_record", ctx=en, table="customers", fields={"Budget": 1})
    assert env.ws.writes == []


async def test_update_and_delete_a_record(env: Env) -> None:
    updated = await env.run(
        "update_base_record",
        table="customers",
        record_id="recCust000004",
        fields={"Status": "受注"},
    )
    assert customers(env.ws)["recCust000004"]["Status"] == "受注"
    assert updated.text == (
        "customers のレコードを更新しました: **佐々木 花子** (recCust000004) — Status: 受注"
    )
    deleted = await env.run("delete_base_record", table="customers", record_id="recCust000004")
    assert deleted.data == {"table": "customers", "record_id": "recCust000004", "deleted": True}
    assert "recCust000004" not in customers(env.ws)
    with pytest.raises(LarkAPIError) as missing:
        await env.run("delete_base_record", table="customers", record_id="recCust000004")
    assert missing.value.code == 1254043


# ---------------------------------------------------------------------- other tools


async def test_send_message_posts_once_per_turn(env: Env) -> None:
    result = await env.run("send_message", text="明日の会議は10時からです", chat_id="oc_sales")
    assert result.text == "チャット oc_sales にメッセージを送りました。"
    await env.run("send_message", text="明日の会議は10時からです", chat_id="oc_sales")
    sends = [r for r in env.lark.replies if r.kind == "send"]
    assert len(sends) == 1 and env.lark.suppressed_duplicates == 1
    assert (sends[0].receive_id, sends[0].receive_id_type) == ("oc_sales", "chat_id")
    assert sends[0].text == "明日の会議は10時からです" and sends[0].uuid
    direct = await env.run("send_message", text="hello", user_open_id="ou_emma")
    assert direct.data["receive_id"] == "ou_emma"
    assert env.lark.replies[-1].receive_id_type == "open_id"


async def test_get_user_info_by_open_id_and_by_email(env: Env) -> None:
    by_id = await env.run("get_user_info", user_open_id="ou_chen")
    assert by_id.data["name"] == "陈静" and by_id.data["departments"] == ["销售部"]
    assert "- 部署: 销售部" in by_id.text and "- 名前: 陈静 (Jing Chen)" in by_id.text
    en = replace(env.ctx, language="en")
    by_email = await env.run("get_user_info", ctx=en, email="Emma.Wilson@example.com")
    assert by_email.data["open_id"] == "ou_emma"
    assert "- Job title: Account Executive" in by_email.text
    with pytest.raises(ToolError, match=r"No user has the email nobody@example\.com"):
        await env.run("get_user_info", ctx=en, email="nobody@example.com")


async def test_get_user_info_survives_a_missing_department_scope(env: Env) -> None:
    env.ws.denied_routes.add("contact/v3/departments/{department_id}")
    result = await env.run("get_user_info", user_open_id="ou_sato")
    assert result.ok and result.data["departments"][0].startswith("od-")


async def test_search_documents_lists_titles_and_links(env: Env) -> None:
    en = replace(env.ctx, language="en")
    result = await env.run("search_documents", ctx=en, query="sales")
    assert result.data["total"] == 2
    titles = [d["title"] for d in result.data["documents"]]
    assert titles == ["Q3 Sales Report", "Onboarding guide for new sales staff"]
    assert result.text.splitlines()[0] == "Found 2 documents for “sales”:"
    assert (
        "- [Q3 Sales Report](https://example.feishu.cn/sheets/shtcnQ3Report000001)"
        " (sheet, Emma Wilson," in result.text
    )
    nothing = await env.run("search_documents", query="存在しない")
    assert nothing.text == "「存在しない」に一致するドキュメントはありませんでした。"


async def test_list_chat_members_of_this_chat_and_pages_of_a_big_one(env: Env) -> None:
    here = await env.run("list_chat_members")
    assert here.data["chat_id"] == "oc_console"
    assert [m["name"] for m in here.data["members"]] == ["田中 健", "佐藤 美咲"]
    assert here.text == "このチャットのメンバーは 2 人です:\n田中 健, 佐藤 美咲"
    env.ws.chats["oc_all"].member_open_ids.extend(f"ou_guest{i}" for i in range(250))
    big = await env.run("list_chat_members", chat_id="oc_all")
    assert big.data["total"] == len(big.data["members"]) == 257
    assert env.calls("im/v1/chats/{chat_id}/members") == 4
    assert big.text.endswith("…ほか 227 人")


async def test_create_calendar_event_in_local_time_with_the_requester_invited(env: Env) -> None:
    tomorrow = (datetime.now(env.ws.timezone) + timedelta(days=1)).date()
    start = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 15, 0)  # naive: Tokyo
    result = await env.run(
        "create_calendar_event",
        summary="山田商事 打ち合わせ",
        start=start.isoformat(),
        attendee_open_ids=["ou_sato"],
    )
    event = env.ws.events[result.data["event_id"]]
    assert event.start == int(start.replace(tzinfo=env.ws.timezone).timestamp())
    assert event.end - event.start == 3600
    assert event.attendee_open_ids == ["ou_console_user", "ou_sato"]
    assert result.text.splitlines()[0] == (
        f"予定「山田商事 打ち合わせ」を作成しました: {tomorrow} 15:00–16:00 (Asia/Tokyo)"
    )
    assert [w.route for w in env.ws.writes] == [
        "calendar/v4/calendars/{calendar_id}/events",
        "calendar/v4/calendars/{calendar_id}/events/{event_id}/attendees",
    ]
    # Retried in the same turn, the idempotency key returns the same event.
    again = await env.run(
        "create_calendar_event",
        summary="山田商事 打ち合わせ",
        start=start.isoformat(),
        attendee_open_ids=["ou_sato"],
    )
    assert again.data["event_id"] == result.data["event_id"]
    assert len([e for e in env.ws.events.values() if e.summary == "山田商事 打ち合わせ"]) == 1


# ----------------------------------------------------------- field names and the field list

FIELDS_ROUTE = "bitable/v1/apps/{app_token}/tables/{table_id}/fields"


async def test_fields_are_matched_by_localised_names_and_synonyms(env: Env) -> None:
    result = await env.run(
        "create_base_record",
        table="顧客",
        fields={"名前": "Acme", "状態": "商談中", "金額": "500,000", "担当者": "ou_emma"},
    )
    stored = customers(env.ws)[result.data["record_id"]]
    assert stored == {"Name": "Acme", "Status": "商談中", "Amount": 500_000, "Owner": ["ou_emma"]}
    zh = replace(env.ctx, language="zh")
    found = await env.run(
        "search_base_records", ctx=zh, table="客户", field_filters={"状态": "受注", "公司": "Acme"}
    )
    assert [r["fields"]["Name"] for r in found.data["records"]] == ["John Smith"]
    # A table without a name field takes its primary field for "name".
    task = await env.run(
        "create_base_record", table="タスク", fields={"名前": "見積書", "期限": "2030-01-15"}
    )
    assert env.ws.table("タスク").records[task.data["record_id"]]["Task"] == "見積書"


async def test_a_synonym_matching_two_fields_is_refused(env: Env) -> None:
    table = env.ws.table("顧客一覧")
    table.fields.append(BaseField("Assignee", FieldType.PERSON, "fldAssignee9"))
    en = replace(env.ctx, language="en")
    with pytest.raises(ToolError, match="has no field “担当者”"):
        await env.run("create_base_record", ctx=en, table="customers", fields={"担当者": "ou_emma"})
    assert env.ws.writes == []


async def test_the_field_list_is_reused_and_refreshed_when_it_is_out_of_date(env: Env) -> None:
    await env.run("search_base_records", table="customers", query="acme")
    await env.run("search_base_records", table="customers", field_filters={"status": "受注"})
    assert env.calls(FIELDS_ROUTE) == 1
    # A field added in Lark since the list was fetched: the unknown name fetches it again.
    table = env.ws.table("顧客一覧")
    table.fields.append(BaseField("Region", FieldType.TEXT, "fldRegion001"))
    created = await env.run("create_base_record", table="customers", fields={"Region": "Kanto"})
    assert customers(env.ws)[created.data["record_id"]]["Region"] == "Kanto"
    assert env.calls(FIELDS_ROUTE) == 2
    # A field renamed in Lark: Lark refuses the old name and the cached list is dropped.
    next(f for f in table.fields if f.name == "Company").name = "Firm"
    with pytest.raises(LarkAPIError) as renamed:
        await env.run("create_base_record", table="customers", fields={"Company": "Initech"})
    assert renamed.value.code == 1254045
    with pytest.raises(ToolError, match="「Company」というフィールドはありません"):
        await env.run("create_base_record", table="customers", fields={"Company": "Initech"})
    assert env.calls(FIELDS_ROUTE) == 3


async def test_the_field_list_expires(env: Env) -> None:
    now = [0.0]
    registry = ToolRegistry(lark_tools(field_cache=BaseFieldCache(60, clock=lambda: now[0])))
    search = registry.get("search_base_records")
    assert search is not None
    arguments = search.input_model.model_validate({"table": "customers", "query": "acme"})
    await search.run(env.ctx, arguments)
    now[0] = 59.0
    await search.run(env.ctx, arguments)
    assert env.calls(FIELDS_ROUTE) == 1
    now[0] = 61.0
    await search.run(env.ctx, arguments)
    assert env.calls(FIELDS_ROUTE) == 2


# ---------------------------------------------------------------------- the time zone

UTC_ZONE = ZoneInfo("UTC")
TOKYO = ZoneInfo("Asia/Tokyo")
LONDON = ZoneInfo("Europe/London")


def _at(year: int, month: int, day: int, hour: int) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


async def test_this_month_is_counted_in_the_configured_time_zone(env: Env) -> None:
    table = env.ws.table("顧客一覧")
    table.records.update(
        {
            "recZoneJan001": {"Name": "January", "Last contact": _at(2025, 1, 15, 12)},
            # 18:00 UTC on 31 January is 03:00 on 1 February in Tokyo.
            "recZoneEdge01": {"Name": "Edge", "Last contact": _at(2025, 1, 31, 18)},
            "recZoneFeb001": {"Name": "February", "Last contact": _at(2025, 2, 10, 12)},
        }
    )
    # 20:00 UTC on 31 January: still January in UTC, already February in Tokyo.
    clock = lambda: datetime(2025, 1, 31, 20, tzinfo=UTC)  # noqa: E731
    in_utc = replace(env.ctx, timezone=UTC_ZONE, clock=clock, language="en")
    in_tokyo = replace(env.ctx, timezone=TOKYO, clock=clock, language="en")
    utc = await env.run(
        "search_base_records", ctx=in_utc, table="customers", date_range="this_month"
    )
    tokyo = await env.run(
        "search_base_records", ctx=in_tokyo, table="customers", date_range="this_month"
    )
    assert {r["fields"]["Name"] for r in utc.data["records"]} == {"January", "Edge"}
    assert {r["fields"]["Name"] for r in tokyo.data["records"]} == {"Edge", "February"}
    assert "Last contact: 2025-01-31 18:00" in utc.text
    assert "Last contact: 2025-02-01 03:00" in tokyo.text
    today = await env.run(
        "search_base_records", ctx=in_tokyo, table="customers", date_range="today"
    )
    assert [r["fields"]["Name"] for r in today.data["records"]] == ["Edge"]


async def test_a_time_without_an_offset_is_placed_in_the_configured_zone(env: Env) -> None:
    start = "2030-01-15T10:00:00"
    in_tokyo = await env.run("create_calendar_event", summary="Tokyo sync", start=start)
    in_london = await env.run(
        "create_calendar_event",
        ctx=replace(env.ctx, timezone=LONDON, message_id="om_tools_london"),
        summary="London sync",
        start=start,
    )
    tokyo_event = env.ws.events[in_tokyo.data["event_id"]]
    london_event = env.ws.events[in_london.data["event_id"]]
    assert tokyo_event.start == int(datetime(2030, 1, 15, 10, tzinfo=TOKYO).timestamp())
    assert london_event.start - tokyo_event.start == 9 * 3600
    assert in_london.text.startswith(
        "予定「London sync」を作成しました: 2030-01-15 10:00–11:00 (Europe/London)"
    )
