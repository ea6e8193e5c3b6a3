"""stdio: standard output carries nothing but JSON-RPC, through a whole session.

The official ``ClientSession`` drives ``larkbot mcp`` over the process's pipes; the test
stands between them and keeps every line the server writes on standard output, so each
one can be checked to be a JSON-RPC message, even with debug logging on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.text import TextReceiveStream
from mcp import ClientSession, types
from mcp.shared.message import SessionMessage

from larkbot.testing import LarkStandIn
from larkbot.testing.sample_data import CUSTOMERS_APP_TOKEN, CUSTOMERS_TABLE_ID, sample_workspace
from larkbot.testing.workspace import Workspace, workspace_routes
from tests._mcp import mcp_env

pytestmark = pytest.mark.anyio

_TABLE = {"app_token": CUSTOMERS_APP_TOKEN, "table_id": CUSTOMERS_TABLE_ID}


@pytest.fixture
def ws() -> Workspace:
    return sample_workspace()


@pytest.fixture
async def lark(ws: Workspace) -> AsyncIterator[LarkStandIn]:
    async with LarkStandIn(extra_routes=workspace_routes(ws)) as stand_in:
        yield stand_in


async def _read_stdout(
    process: Process, lines: list[str], to_client: MemoryObjectSendStream[SessionMessage]
) -> None:
    assert process.stdout is not None
    buffer = ""
    async with to_client:
        async for chunk in TextReceiveStream(process.stdout):
            buffer += chunk
            *complete, buffer = buffer.split("\n")
            for line in complete:
                lines.append(line)
                message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                await to_client.send(SessionMessage(message))
    if buffer:
        lines.append(buffer)


async def _write_stdin(
    process: Process, from_client: MemoryObjectReceiveStream[SessionMessage]
) -> None:
    assert process.stdin is not None
    async with from_client:
        async for outgoing in from_client:
            text = outgoing.message.model_dump_json(by_alias=True, exclude_unset=True)
            await process.stdin.send((text + "\n").encode())
    await process.stdin.aclose()


async def test_stdout_carries_only_json_rpc(
    lark: LarkStandIn, ws: Workspace, tmp_path: Path
) -> None:
    errlog = tmp_path / "stderr.log"
    env = mcp_env(lark, tmp_path, {"LOG_LEVEL": "DEBUG", "LOG_FORMAT": "rich"})
    command = [sys.executable, "-m", "larkbot", "mcp", "--allow-writes", "-l", "en"]
    stdout_lines: list[str] = []
    to_client, client_reads = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    client_writes, from_client = anyio.create_memory_object_stream[SessionMessage](0)
    with errlog.open("w", encoding="utf-8") as sink:
        process = await anyio.open_process(
            command,
            env=env,
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sink,
        )
        async with process, anyio.create_task_group() as tg:
            tg.start_soon(_read_stdout, process, stdout_lines, to_client)
            tg.start_soon(_write_stdin, process, from_client)
            with anyio.fail_after(60):
                async with ClientSession(client_reads, client_writes) as session:
                    await session.initialize()
                    tools = await session.list_tools()
                    assert "create_base_record" in {tool.name for tool in tools.tools}
                    found = await session.call_tool("search_base_records", _TABLE)
                    assert not found.is_error
                    created = await session.call_tool(
                        "create_base_record", {**_TABLE, "fields": {"Name": "Over stdio"}}
                    )
                    assert not created.is_error
                    bad = await session.call_tool("search_base_records", {"limit": -1})
                    assert bad.is_error
                    unknown = await session.call_tool("no_such_tool", {})
                    assert unknown.is_error
                    asked = await session.call_tool("ask_larkbot", {"question": "help"})
                    assert not asked.is_error
                    await session.send_ping()
                # The client closes the pipe: the server ends the session and exits cleanly.
                client_writes.close()
                assert await process.wait() == 0
    assert len(stdout_lines) >= 8
    for line in stdout_lines:
        parsed = json.loads(line)
        assert parsed["jsonrpc"] == "2.0"
        types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    # The logs went to standard error, debug lines included.
    logged = await anyio.Path(errlog).read_text(encoding="utf-8")
    assert "MCP server on stdio" in logged
    assert "tool create_base_record called by stdio" in logged
    assert "DEBUG" in logged
    assert any(r["Name"] == "Over stdio" for r in ws.table("顧客一覧").records.values())
