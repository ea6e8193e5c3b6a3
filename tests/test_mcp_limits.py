"""Rate limits per MCP client: the chat's ``requestsPerMinute`` and ``writeRequestsPerMinute``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from larkbot.testing import LarkStandIn
from larkbot.testing.sample_data import CUSTOMERS_APP_TOKEN, CUSTOMERS_TABLE_ID, sample_workspace
from larkbot.testing.workspace import Workspace, workspace_routes
from tests._mcp import McpProcess, mcp_process, mcp_session

pytestmark = pytest.mark.anyio

_TABLE = {"app_token": CUSTOMERS_APP_TOKEN, "table_id": CUSTOMERS_TABLE_ID}
_WRITE_LIMITED = re.compile(r"^You can make 10 changes per minute; try again in \d+ seconds\.$")


@pytest.fixture
def ws() -> Workspace:
    return sample_workspace()


@pytest.fixture
async def lark(ws: Workspace) -> AsyncIterator[LarkStandIn]:
    async with LarkStandIn(extra_routes=workspace_routes(ws)) as stand_in:
        yield stand_in


async def _create(session: ClientSession, name: str) -> tuple[bool, str]:
    result = await session.call_tool("create_base_record", {**_TABLE, "fields": {"Name": name}})
    return result.is_error, result.content[0].text  # type: ignore[union-attr]


@asynccontextmanager
async def _client(server: McpProcess) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient() as http,
        streamable_http_client(server.url("/mcp"), http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def test_the_eleventh_write_in_a_minute_is_refused(
    lark: LarkStandIn, ws: Workspace, tmp_path: Path
) -> None:
    args = ["--allow-writes", "-l", "en"]
    async with mcp_process(lark, tmp_path, "streamable", args) as server:
        async with _client(server) as alice:
            outcomes = [await _create(alice, f"Customer {n}") for n in range(1, 12)]
            assert [failed for failed, _ in outcomes] == [False] * 10 + [True]
            assert _WRITE_LIMITED.match(outcomes[-1][1]), outcomes[-1][1]
            # Reads are not writes: the same client may still search.
            found = await alice.call_tool("search_base_records", {**_TABLE, "query": "Customer"})
            assert not found.is_error
            # Another client has a limit of its own.
            async with _client(server) as bob:
                failed, text = await _create(bob, "Bob's customer")
                assert not failed and text.startswith("Created a record in"), text
        audits = await server.log.audit("create_base_record", count=12)
        assert [a.outcome for a in audits] == ["success"] * 10 + ["rate_limited", "success"]
        assert len({a.caller for a in audits[:11]}) == 1
        assert audits[11].caller != audits[0].caller
    table = ws.apps[CUSTOMERS_APP_TOKEN].tables[CUSTOMERS_TABLE_ID]
    names = {record["Name"] for record in table.records.values()}
    assert "Customer 10" in names and "Customer 11" not in names and "Bob's customer" in names


async def test_requests_per_minute_apply_to_every_call(lark: LarkStandIn, tmp_path: Path) -> None:
    env = {"LARKBOT_RATE_LIMITING__REQUESTS_PER_MINUTE": "3"}
    async with mcp_session(lark, tmp_path, "stdio", ["-l", "en"], env=env) as (session, _):
        results = [await session.call_tool("search_base_records", _TABLE) for _ in range(4)]
    assert [result.is_error for result in results] == [False, False, False, True]
    assert re.match(
        r"^You are sending requests too quickly \(up to 3 a minute\)\. "
        r"Please try again in \d+ s\.$",
        results[-1].content[0].text,  # type: ignore[union-attr]
    )
    searches = [call for call in lark.api_calls if call.route.endswith("records/search")]
    assert len(searches) == 3
