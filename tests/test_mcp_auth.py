"""Who may call ``larkbot mcp`` over HTTP: bearer tokens, loopback, user tokens, token modes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from larkbot.testing import LarkStandIn
from larkbot.testing.sample_data import (
    CUSTOMERS_APP_TOKEN,
    CUSTOMERS_TABLE_ID,
)
from larkbot.testing.workspace import Workspace
from tests._mcp import McpProcess, mcp_env, mcp_process

pytestmark = pytest.mark.anyio

_TOKEN = "mcp-test-token-7f3a9c2e51"
_SEARCH = {
    "name": "search_base_records",
    "arguments": {"app_token": CUSTOMERS_APP_TOKEN, "table_id": CUSTOMERS_TABLE_ID},
}
_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"},
    },
}
_CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": _SEARCH}
_ACCEPT = {"Accept": "application/json, text/event-stream"}


def _tool_calls(lark: LarkStandIn) -> list[str]:
    """The OpenAPI routes called for tools (not the start-up token fetch)."""
    return [call.route for call in lark.api_calls if call.route.startswith("bitable/")]


async def _session_call(
    server: McpProcess, token: str | None, name: str, arguments: dict[str, object]
) -> tuple[bool, str, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        streamable_http_client(server.url("/mcp"), http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool(name, arguments)
        text = result.content[0].text  # type: ignore[union-attr]
        return result.is_error, text, result.structured_content


async def test_streamable_http_with_a_token(
    lark: LarkStandIn, ws: Workspace, tmp_path: Path
) -> None:
    env = {"LARKBOT_MCP_TOKEN": _TOKEN}
    async with (
        mcp_process(lark, tmp_path, "streamable", ["--allow-writes"], env) as server,
        httpx2.AsyncClient() as http,
    ):
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": _TOKEN}):
            for body in (_INITIALIZE, _CALL):
                answer = await http.post(
                    server.url("/mcp"), json=body, headers={**_ACCEPT, **headers}
                )
                assert answer.status_code == 401
                assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
        # Nothing ran: no tool call reached Lark and none was logged.
        assert _tool_calls(lark) == []
        assert not [line for line in await server.log.lines() if "called by" in line["message"]]

        failed, text, data = await _session_call(server, _TOKEN, **_SEARCH)  # type: ignore[arg-type]
        assert not failed, text
        assert isinstance(data, dict) and data["total"] == len(
            ws.apps[CUSTOMERS_APP_TOKEN].tables[CUSTOMERS_TABLE_ID].records
        )
        assert _tool_calls(lark) != []

        # Health and metrics share the port and need no token (probes carry none).
        assert (await http.get(server.url("/healthz"))).json() == {"status": "ok"}
        assert (await http.get(server.url("/readyz"))).status_code == 200
        metrics = (await http.get(server.url("/metrics"))).text
        assert 'tool_executions_total{status="success",tool_name="search_base_records"}' in metrics
        assert _TOKEN not in metrics
    assert not any(_TOKEN in line for line in server.log.raw)


@pytest.mark.parametrize("mode", ["sse", "streamable"])
async def test_no_token_refuses_to_serve_beyond_loopback(
    lark: LarkStandIn, tmp_path: Path, mode: str
) -> None:
    result = await anyio.run_process(
        [sys.executable, "-m", "larkbot", "mcp", "--mode", mode, "--host", "0.0.0.0"],
        env=mcp_env(lark, tmp_path),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 78
    assert result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert lines == [
        "larkbot: refusing to serve MCP on 0.0.0.0 without a token: set LARKBOT_MCP_TOKEN "
        "(or LARKBOT_MCP_TOKEN_FILE) so every request must carry it, or serve on --host "
        "127.0.0.1."
    ]


async def test_with_a_token_any_address_may_be_served(lark: LarkStandIn, tmp_path: Path) -> None:
    token_file = tmp_path / "mcp_token"
    token_file.write_text(_TOKEN + "\n")
    env = {"LARKBOT_MCP_TOKEN_FILE": str(token_file)}
    async with mcp_process(lark, tmp_path, "sse", ["--host", "0.0.0.0"], env) as server:
        async with httpx2.AsyncClient() as http:
            refused = await http.get(server.url("/sse"))
            assert refused.status_code == 401
        line = next(
            line["message"]
            for line in await server.log.lines()
            if line["message"].startswith("MCP server (")
        )
        assert "http://0.0.0.0:" in line and "auth by bearer token" in line


async def test_loopback_without_a_token_keeps_dns_rebinding_protection(
    lark: LarkStandIn, tmp_path: Path
) -> None:
    async with mcp_process(lark, tmp_path, "streamable") as server, httpx2.AsyncClient() as http:
        # What a web page on another name would send through the user's browser.
        for headers in ({"Host": "evil.example"}, {"Origin": "http://evil.example"}):
            answer = await http.post(
                server.url("/mcp"), json=_INITIALIZE, headers={**_ACCEPT, **headers}
            )
            assert answer.status_code in (403, 421)
        assert _tool_calls(lark) == []
        failed, _, _ = await _session_call(server, None, **_SEARCH)  # type: ignore[arg-type]
        assert not failed


async def test_user_token_mode_acts_as_the_caller(lark: LarkStandIn, tmp_path: Path) -> None:
    sato = lark.issue_user_token("ou_sato", name="佐藤 花子")
    expired = lark.issue_user_token("ou_sato", ttl=0)
    async with (
        mcp_process(lark, tmp_path, "streamable", ["--token-mode", "user"]) as server,
        httpx2.AsyncClient() as http,
    ):
        for token in (expired, "u-not-a-token-issued-by-lark", _TOKEN):
            answer = await http.post(
                server.url("/mcp"),
                json=_INITIALIZE,
                headers={**_ACCEPT, "Authorization": f"Bearer {token}"},
            )
            assert answer.status_code == 401
        assert _tool_calls(lark) == []

        failed, text, _ = await _session_call(server, sato, **_SEARCH)  # type: ignore[arg-type]
        assert not failed, text
        made = [call for call in lark.api_calls if call.route.startswith("bitable/")]
        assert made and all(call.user_open_id == "ou_sato" for call in made)
    logged = "\n".join(server.log.raw)
    assert sato not in logged and expired not in logged
    assert "called by user:ou_sato as the user" in logged


async def test_auto_mode_acts_as_the_user_for_user_tokens(
    lark: LarkStandIn, tmp_path: Path
) -> None:
    sato = lark.issue_user_token("ou_sato")
    env = {"LARKBOT_MCP_TOKEN": _TOKEN}
    args = ["--token-mode", "auto", "--language", "en"]
    async with mcp_process(lark, tmp_path, "streamable", args, env) as server:
        # The MCP token: the app acts; asking for the user's token gets a sentence.
        failed, _, _ = await _session_call(server, _TOKEN, **_SEARCH)  # type: ignore[arg-type]
        assert not failed
        failed, text, _ = await _session_call(
            server,
            _TOKEN,
            "search_base_records",
            {**_SEARCH["arguments"], "use_user_token": True},  # type: ignore[dict-item]
        )
        assert failed
        assert text == (
            "This call needs a user access token: connect with your Lark user access token "
            "as the bearer token."
        )
        assert {call.user_open_id for call in lark.api_calls if call.route.startswith("bit")} == {
            None
        }
        # A user token acts as that user, asked or not (regression: it used to act as the app
        # unless the call asked, so any user of the tenant borrowed the app's permissions).
        failed, _, _ = await _session_call(server, sato, **_SEARCH)  # type: ignore[arg-type]
        assert not failed
        assert lark.api_calls[-1].user_open_id == "ou_sato"
        failed, _, _ = await _session_call(
            server,
            sato,
            "search_base_records",
            {**_SEARCH["arguments"], "use_user_token": True},  # type: ignore[dict-item]
        )
        assert not failed
        assert lark.api_calls[-1].user_open_id == "ou_sato"


def _list_tools(selection: str, home: Path) -> subprocess.CompletedProcess[str]:
    """``larkbot mcp --list-tools -t SELECTION``, with no credentials in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "larkbot", "mcp", "--list-tools", "-t", selection],
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_listing_needs_no_credentials_and_shows_the_selection(tmp_path: Path) -> None:
    result = _list_tools("preset.base", tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split()[:2] for line in result.stdout.splitlines()]
    assert rows[:4] == [
        ["search_base_records", "read"],
        ["create_base_record", "write"],
        ["update_base_record", "write"],
        ["delete_base_record", "write"],
    ]
    assert rows[4:] == [
        ["list_base_tables", "read"],
        ["list_base_fields", "read"],
        ["create_base_table", "write"],
    ]
    refused = _list_tools("delete_base_record", tmp_path)
    assert refused.returncode == 78
    assert refused.stderr.strip() == (
        "larkbot: delete_base_record changes data in Lark: add --allow-writes to expose it, "
        "or leave it out."
    )
    assert json.dumps(refused.stdout) == '""'
