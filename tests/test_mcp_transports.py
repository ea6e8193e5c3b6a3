"""``larkbot mcp`` in a subprocess, driven by the official MCP client over all three transports.

Each test starts the local Lark with the sample workspace, runs ``python -m larkbot mcp``
against it and talks to it through the ``mcp`` package's own client transports
(``stdio_client``, ``sse_client``, ``streamable_http_client``) and ``ClientSession``.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from larkbot.testing import LarkStandIn
from larkbot.testing.sample_data import (
    CUSTOMERS_APP_TOKEN,
    CUSTOMERS_TABLE_ID,
    TASKS_APP_TOKEN,
    TASKS_TABLE_ID,
    sample_workspace,
)
from larkbot.testing.workspace import Workspace, workspace_routes
from tests._mcp import TRANSPORTS, Transport, mcp_process, mcp_session

pytestmark = pytest.mark.anyio

_WRITE_TOOLS = {
    "create_base_record",
    "update_base_record",
    "delete_base_record",
    "send_message",
    "create_calendar_event",
}


@pytest.fixture
def ws() -> Workspace:
    return sample_workspace()


@pytest.fixture
async def lark(ws: Workspace) -> AsyncIterator[LarkStandIn]:
    async with LarkStandIn(extra_routes=workspace_routes(ws)) as stand_in:
        yield stand_in


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_read_only_by_default(
    lark: LarkStandIn, ws: Workspace, tmp_path: Path, transport: Transport
) -> None:
    async with mcp_session(lark, tmp_path, transport) as (session, _):
        listed = (await session.list_tools()).tools
        names = {tool.name for tool in listed}
        assert names == {
            "search_base_records",
            "get_user_info",
            "search_documents",
            "list_chat_members",
            "ask_larkbot",
        }
        assert all(tool.annotations and tool.annotations.read_only_hint for tool in listed)
        search = next(tool for tool in listed if tool.name == "search_base_records")
        assert {"table", "app_token", "table_id", "query", "limit"} <= set(
            search.input_schema["properties"]
        )
        assert search.input_schema["additionalProperties"] is False

        # A write tool is not there to call, whatever the client tries.
        refused = await session.call_tool(
            "create_base_record",
            {"app_token": CUSTOMERS_APP_TOKEN, "table_id": CUSTOMERS_TABLE_ID, "fields": {}},
        )
        assert refused.is_error
        assert "create_base_record" in refused.content[0].text  # type: ignore[union-attr]
    assert ws.writes == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_search_write_and_bad_arguments(
    lark: LarkStandIn, ws: Workspace, tmp_path: Path, transport: Transport
) -> None:
    async with mcp_session(lark, tmp_path, transport, ["--allow-writes", "-l", "en"]) as (
        session,
        log,
    ):
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(listed) >= _WRITE_TOOLS
        create = listed["create_base_record"].annotations
        delete = listed["delete_base_record"].annotations
        assert create is not None and create.read_only_hint is False
        assert create.destructive_hint is False
        assert delete is not None and delete.destructive_hint is True

        # Any table the app can reach, by app_token + table_id: nothing is configured.
        found = await session.call_tool(
            "search_base_records",
            {"app_token": TASKS_APP_TOKEN, "table_id": TASKS_TABLE_ID, "limit": 100},
        )
        assert not found.is_error
        tasks = ws.apps[TASKS_APP_TOKEN].tables[TASKS_TABLE_ID].records
        assert found.structured_content is not None
        records = found.structured_content["records"]
        assert {record["record_id"] for record in records} == set(tasks)
        assert found.structured_content["total"] == len(tasks)
        assert "found" in found.content[0].text.lower()  # type: ignore[union-attr]

        # A write lands in the workspace and in the audit log.
        created = await session.call_tool(
            "create_base_record",
            {
                "table": f"https://example.feishu.cn/base/{CUSTOMERS_APP_TOKEN}"
                f"?table={CUSTOMERS_TABLE_ID}&view=vewAll",
                "fields": {"Name": f"MCP over {transport}", "Amount": 4200},
            },
        )
        assert not created.is_error, created.content
        assert created.structured_content is not None
        record_id = created.structured_content["record_id"]
        customers = ws.apps[CUSTOMERS_APP_TOKEN].tables[CUSTOMERS_TABLE_ID].records
        assert customers[record_id]["Name"] == f"MCP over {transport}"
        assert customers[record_id]["Amount"] == 4200
        assert [w.route for w in ws.writes] == [
            "bitable/v1/apps/{app_token}/tables/{table_id}/records"
        ]
        (audit,) = await log.audit("create_base_record")
        assert audit.outcome == "success"
        assert audit.arguments["fields"] == {"Name": f"MCP over {transport}", "Amount": 4200}
        # No token: stdio is one client; over HTTP each MCP session is one.
        assert (
            audit.caller == "stdio" if transport == "stdio" else audit.caller.startswith("session:")
        )

        # Bad arguments: a tool error with the chat's sentence, and the server carries on.
        bad = await session.call_tool(
            "search_base_records", {"table": "customers", "limit": "many", "colour": "red"}
        )
        assert bad.is_error
        assert bad.content[0].text == (  # type: ignore[union-attr]
            "The arguments for search_base_records are not valid: limit: Input should be a "
            "valid integer, unable to parse string as an integer; colour is not an accepted "
            "argument."
        )
        missing = await session.call_tool(
            "update_base_record", {"record_id": record_id, "fields": {"Amount": 1}}
        )
        assert missing.is_error
        assert "give table (a name or a Base link), or app_token and table_id" in (
            missing.content[0].text  # type: ignore[union-attr]
        )
        again = await session.call_tool(
            "search_base_records",
            {"app_token": CUSTOMERS_APP_TOKEN, "table_id": CUSTOMERS_TABLE_ID, "query": "MCP"},
        )
        assert not again.is_error
        assert again.structured_content is not None
        assert [r["record_id"] for r in again.structured_content["records"]] == [record_id]
    lines = await log.lines()
    assert not any("Traceback" in str(line) for line in lines)
    assert not any(lark.app_secret in str(line) for line in lines)


async def test_sigterm_stops_the_server_while_a_stream_is_open(
    lark: LarkStandIn, tmp_path: Path
) -> None:
    async with (
        mcp_process(lark, tmp_path, "sse") as server,
        httpx2.AsyncClient() as http,
        http.stream("GET", server.url("/sse")) as stream,
    ):
        assert stream.status_code == 200
        events = stream.aiter_lines()
        assert await anext(events) == "event: endpoint"
        server.process.send_signal(signal.SIGTERM)
        # A graceful stop, with the client's event stream still open.
        assert await server.wait(timeout=10) == 0
