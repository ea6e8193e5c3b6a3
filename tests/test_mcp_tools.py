"""The MCP server in process: presets, plug-in tools, descriptions, Base links, user tokens."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pytest
from mcp import Client
from pydantic import BaseModel, ConfigDict, SecretStr

from larkbot.agent.llm import LLMBrain
from larkbot.agent.tools import Tool, ToolContext, ToolRegistry, ToolResult, default_registry
from larkbot.agent.tools.runner import ToolRunner
from larkbot.config import Settings, load_settings
from larkbot.config.settings import describe_settings
from larkbot.lark.client import UserTokenError
from larkbot.mcp import (
    PRESETS,
    LarkToolServer,
    McpOptions,
    McpSetupError,
    ToolSelectionError,
    check_options,
    select_tools,
)
from larkbot.testing import OpenAIStandIn
from larkbot.testing.sample_data import (
    CUSTOMERS_APP_TOKEN,
    CUSTOMERS_TABLE_ID,
    SAMPLE_BASES,
    TASKS_APP_TOKEN,
    TASKS_TABLE_ID,
)
from tests._factories import Sample, console_context

pytestmark = pytest.mark.anyio

_CUSTOMERS_LINK = (
    f"https://sample.feishu.cn/base/{CUSTOMERS_APP_TOKEN}?table={CUSTOMERS_TABLE_ID}&view=vew1"
)
_TASKS_LINK = f"https://sample.larksuite.com/base/{TASKS_APP_TOKEN}?table={TASKS_TABLE_ID}"


@dataclass
class Env(Sample):
    def settings(self, **sections: Any) -> Settings:
        return Settings.model_validate(
            {
                "app": {"id": self.lark.app_id, "secret": self.lark.app_secret},
                "lark": {"domain": self.lark.url},
                **sections,
            }
        )

    def ctx(self, **changes: Any) -> ToolContext:
        ctx = console_context(self.client, message_id="om_mcp_tools_1", language="en")
        return replace(ctx, **changes)


@pytest.fixture
def env(sample: Sample) -> Env:
    return Env(sample.ws, sample.lark, sample.client)


# -------------------------------------------------------------------------- presets


def test_presets_select_tools_and_guard_writes() -> None:
    tools = list(default_registry())
    names = lambda chosen: [tool.name for tool in chosen]  # noqa: E731
    assert names(select_tools(tools, [], allow_writes=False)) == [
        tool.name for tool in tools if not tool.write
    ]
    assert {"search_base_records", "get_user_info", "search_documents", "list_chat_members"} <= set(
        names(select_tools(tools, [], allow_writes=False))
    )
    assert names(select_tools(tools, [], allow_writes=True)) == [tool.name for tool in tools]
    # A preset made for writing is consent to its writes.
    assert names(select_tools(tools, ["preset.base"], allow_writes=False))[:4] == [
        "search_base_records",
        "create_base_record",
        "update_base_record",
        "delete_base_record",
    ]
    assert names(select_tools(tools, ["preset.im"], allow_writes=False))[:3] == [
        "send_message",
        "get_user_info",
        "list_chat_members",
    ]
    assert names(select_tools(tools, ["preset.light"], allow_writes=False)) == [
        "search_base_records",
        "get_user_info",
        "search_documents",
    ]
    assert "send_message" in names(select_tools(tools, ["preset.light"], allow_writes=True))
    mixed = select_tools(tools, ["get_user_info", "preset.im", "get_user_info"], allow_writes=False)
    # Each tool once, in the registry's order.
    assert names(mixed) == [t.name for t in tools if t.name in set(PRESETS["preset.im"].tools)]
    with pytest.raises(ToolSelectionError, match="create_base_record changes data in Lark"):
        select_tools(tools, ["create_base_record"], allow_writes=False)
    with pytest.raises(ToolSelectionError, match="there is no tool serch_base_records: tools"):
        select_tools(tools, ["serch_base_records"], allow_writes=False)
    with pytest.raises(ToolSelectionError, match=r"there is no preset preset\.docs: presets are"):
        select_tools(tools, ["preset.docs"], allow_writes=False)
    assert set(PRESETS) == {
        "preset.default",
        "preset.light",
        "preset.base",
        "preset.im",
        "preset.doc",
    }


def test_http_without_a_token_serves_loopback_only() -> None:
    bare = Settings()
    with_token = Settings.model_validate({"mcp": {"token": "a-long-enough-token"}})
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_options(bare, McpOptions(mode="sse", host=host))
    for host in ("0.0.0.0", "::", "192.0.2.10", "mcp.example.com"):
        with pytest.raises(McpSetupError, match=f"refusing to serve MCP on {host} without"):
            check_options(bare, McpOptions(mode="streamable", host=host))
        check_options(with_token, McpOptions(mode="streamable", host=host))
        # Lark checks every caller's own token in user mode.
        check_options(bare, McpOptions(mode="streamable", host=host, token_mode="user"))
    with pytest.raises(McpSetupError, match="--token-mode user needs an HTTP mode"):
        check_options(bare, McpOptions(mode="stdio", token_mode="user"))


# ----------------------------------------------------------------------- the server


class _EchoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    words: str


class _Echo(Tool):
    """A plug-in tool, registered beside the Lark tools."""

    name: ClassVar[str] = "echo_words"
    description: ClassVar[str] = "Repeat the words back."
    input_model: ClassVar[type[BaseModel]] = _EchoInput

    async def run(self, ctx: ToolContext, args: BaseModel) -> ToolResult:
        assert isinstance(args, _EchoInput)
        return ToolResult(ok=True, data=[args.words, ctx.caller], text=args.words)


class _Archive(_Echo):
    name: ClassVar[str] = "archive_words"
    description: ClassVar[str] = "Archive the words."
    write: ClassVar[bool] = True


async def test_plugged_in_tools_are_served_too(env: Env) -> None:
    registry = ToolRegistry([*default_registry(), _Echo(), _Archive()])
    server = LarkToolServer(env.settings(), client=env.client, registry=registry)
    async with Client(server.server) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert "echo_words" in listed and "archive_words" not in listed
        assert listed["echo_words"].input_schema["required"] == ["words"]
        echoed = await client.call_tool("echo_words", {"words": "hello"})
    assert not echoed.is_error
    assert echoed.content[0].text == "hello"  # type: ignore[union-attr]
    # Structured content is an object on every protocol version: a list is wrapped.
    assert echoed.structured_content == {"result": ["hello", "stdio"]}

    writes = LarkToolServer(env.settings(), client=env.client, registry=registry, allow_writes=True)
    archive = next(tool for tool in writes.listed_tools() if tool.name == "archive_words")
    assert archive.annotations is not None and archive.annotations.destructive_hint is True


async def test_descriptions_and_sentences_in_the_chosen_language(env: Env) -> None:
    settings = env.settings(bases={"customers": SAMPLE_BASES["customers"].model_dump()})
    server = LarkToolServer(settings, client=env.client, registry=default_registry(), language="zh")
    search = next(tool for tool in server.listed_tools() if tool.name == "search_base_records")
    assert search.description is not None
    assert search.description.startswith("在多维表格中搜索记录\n\nSearch or list records")
    async with Client(server.server) as client:
        unknown = await client.call_tool("search_base_records", {"table": "发票"})
    assert unknown.is_error
    assert unknown.content[0].text.startswith("未配置名为“发票”的数据表")  # type: ignore[union-attr]


async def test_instructions_name_the_configured_tables(env: Env) -> None:
    settings = env.settings(bases={k: v.model_dump() for k, v in SAMPLE_BASES.items()})
    server = LarkToolServer(settings, client=env.client, registry=default_registry())
    async with Client(server.server) as client:
        instructions = client.instructions or ""
    assert "- customers (also: 顧客" in instructions
    assert "- tasks (also: タスク" in instructions


# -------------------------------------------------------------- Base links and ids


async def test_base_tools_take_a_link_or_ids_as_well_as_a_name(env: Env) -> None:
    runner = ToolRunner(default_registry(), write_limiter=None, writers=None, cache_ttl_seconds=0)
    by_name = await runner.run("search_base_records", {"table": "顧客"}, env.ctx())
    by_link = await runner.run("search_base_records", {"table": _CUSTOMERS_LINK}, env.ctx())
    by_ids = await runner.run(
        "search_base_records",
        {"app_token": CUSTOMERS_APP_TOKEN, "table_id": CUSTOMERS_TABLE_ID},
        env.ctx(),
    )
    assert by_name.ok and by_link.ok and by_ids.ok
    # A configured table keeps its name however it is reached.
    assert by_name.data == by_link.data == by_ids.data
    assert by_link.data["table"] == "customers"

    # A table nobody configured: named by its id.
    tasks = await runner.run("search_base_records", {"table": _TASKS_LINK}, env.ctx(bases={}))
    assert tasks.ok and tasks.data["table"] == TASKS_TABLE_ID
    assert tasks.data["total"] == len(env.ws.apps[TASKS_APP_TOKEN].tables[TASKS_TABLE_ID].records)

    not_a_table = await runner.run(
        "search_base_records",
        {"table": f"https://sample.feishu.cn/base/{TASKS_APP_TOKEN}"},
        env.ctx(),
    )
    assert not_a_table.error == (
        f"“https://sample.feishu.cn/base/{TASKS_APP_TOKEN}” is not a link to a Base table "
        "(it looks like https://…/base/<app_token>?table=<table_id>)."
    )
    half = await runner.run("search_base_records", {"app_token": TASKS_APP_TOKEN}, env.ctx())
    assert half.error == (
        "The arguments for search_base_records are not valid: give app_token and table_id together."
    )
    gone = await runner.run(
        "search_base_records", {"app_token": TASKS_APP_TOKEN, "table_id": "tblGone"}, env.ctx()
    )
    assert gone.error is not None and gone.error.startswith("The table does not exist in Lark")


async def test_allowed_bases_limit_where_writes_go(env: Env) -> None:
    runner = ToolRunner(default_registry(), write_limiter=None, writers=None, cache_ttl_seconds=0)
    ctx = env.ctx(
        bases={"customers": SAMPLE_BASES["customers"]}, allowed_bases=frozenset({"bascnOther"})
    )
    refused = await runner.run(
        "create_base_record", {"table": _TASKS_LINK, "fields": {"Task": "Not here"}}, ctx
    )
    assert refused.error == (
        f"Changes to this Base ({TASKS_APP_TOKEN}) are not allowed; ask an administrator to "
        "add it to tools.allowed_bases."
    )
    # Reads go anywhere; the configured tables stay writable.
    read = await runner.run("search_base_records", {"table": _TASKS_LINK}, ctx)
    assert read.ok
    written = await runner.run(
        "create_base_record", {"table": _CUSTOMERS_LINK, "fields": {"Name": "Allowed"}}, ctx
    )
    assert written.ok
    listed = await runner.run(
        "create_base_record",
        {"table": _TASKS_LINK, "fields": {"Task": "Listed"}},
        env.ctx(allowed_bases=frozenset({TASKS_APP_TOKEN})),
    )
    assert listed.ok
    assert [w.path.split("/")[5] for w in env.ws.writes] == [CUSTOMERS_APP_TOKEN, TASKS_APP_TOKEN]


async def test_the_chat_agent_honours_allowed_bases(env: Env) -> None:
    """The assistant's tool context carries ``tools.allowed_bases`` (here through the LLM)."""
    async with OpenAIStandIn(api_key="sk-test") as llm:
        settings = env.settings(
            llm={"api_key": "sk-test", "base_url": llm.base_url, "model": "test-model"},
            tools={"allowed_bases": [_CUSTOMERS_LINK]},
        )
        assert settings.tools.allowed_bases == [CUSTOMERS_APP_TOKEN]
        llm.script(
            {
                "tool_calls": [
                    {
                        "name": "create_base_record",
                        "arguments": {"table": _TASKS_LINK, "fields": {"Task": "x"}},
                    }
                ]
            },
            {"content": "done"},
        )
        brain = LLMBrain(settings)
        try:
            server = LarkToolServer(
                settings,
                client=env.client,
                registry=default_registry(),
                allow_writes=True,
                brain=brain,
            )
            async with Client(server.server) as client:
                answered = await client.call_tool("ask_larkbot", {"question": "add a task"})
        finally:
            await brain.aclose()
    assert answered.content[0].text == "done"  # type: ignore[union-attr]
    tool_message = llm.requests[1]["messages"][-1]["content"]
    assert f"Changes to this Base ({TASKS_APP_TOKEN}) are not allowed" in tool_message
    assert env.ws.writes == []


# ---------------------------------------------------------------------- user tokens


async def test_a_client_acting_as_a_user(env: Env) -> None:
    token = env.lark.issue_user_token("ou_sato", name="佐藤 花子")
    as_sato = env.client.as_user(token)
    assert "as_user=True" in repr(as_sato) and token not in repr(as_sato)
    info = await as_sato.request("GET", "authen/v1/user_info", route="authen/v1/user_info")
    assert info["open_id"] == "ou_sato" and info["name"] == "佐藤 花子"
    await as_sato.request(
        "POST",
        f"bitable/v1/apps/{CUSTOMERS_APP_TOKEN}/tables/{CUSTOMERS_TABLE_ID}/records/search",
        route="search",
        json={},
    )
    assert [call.user_open_id for call in env.lark.api_calls[-2:]] == ["ou_sato", "ou_sato"]
    # The app's own client is untouched, and keeps its pool open.
    await env.client.bot_info()
    assert env.lark.api_calls[-1].user_open_id is None

    expired = env.client.as_user(env.lark.issue_user_token("ou_sato", ttl=0))
    with pytest.raises(UserTokenError) as refused:
        await expired.request("GET", "authen/v1/user_info", route="authen/v1/user_info")
    assert refused.value.code == 99991663
    assert "user access token was refused" in str(refused.value)
    # The app's token is never asked for on the user's behalf.
    token_fetches = [c for c in env.lark.api_calls if c.route.startswith("auth/v3/")]
    assert len(token_fetches) == 1


# ---------------------------------------------------------------------- settings


def test_the_mcp_token_is_a_secret_from_the_environment_or_a_file(tmp_path: Any) -> None:
    plain = load_settings(env={"LARKBOT_MCP_TOKEN": "token-from-env-123"})
    assert plain.mcp.token == SecretStr("token-from-env-123")
    assert "token-from-env-123" in plain.secrets()
    row = next(row for row in describe_settings(plain) if row.key == "mcp.token")
    assert (row.value, row.source) == ("****", "env LARKBOT_MCP_TOKEN")

    (tmp_path / "mcp_token").write_text("token-from-credentials\n")
    from_dir = load_settings(env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert from_dir.mcp.token == SecretStr("token-from-credentials")
    named = tmp_path / "other"
    named.write_text("token-from-file")
    from_file = load_settings(
        env={"LARKBOT_MCP_TOKEN_FILE": str(named), "CREDENTIALS_DIRECTORY": str(tmp_path)}
    )
    assert from_file.mcp.token == SecretStr("token-from-file")
    assert load_settings(env={"LARKBOT_MCP_TOKEN": " "}).mcp.token is None
